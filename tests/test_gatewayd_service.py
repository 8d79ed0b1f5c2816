"""gatewayd as the systemd unit runs it, without systemd: a lone node in a
network namespace, as root bounded to the unit's four capabilities
(setpriv, as CapabilityBoundingSet= does), with a NOTIFY_SOCKET this test
binds, WATCHDOG_USEC, and its stderr as the "journal stream". It must say
READY=1 once it holds the pair's addresses and its NFQUEUE rules, ping the
watchdog while it runs, say STOPPING=1 at SIGTERM, exit 0, and the unit's
ExecStopPost command must then find nothing left to remove."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lab_requirements as lab
from scratch_netns import scratch_namespace, sh
from test_systemd_unit import unit_settings

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ch2-incoming-call-with-mip.cfg"
UNIT = ROOT / "ops" / "systemd" / "voip-alg-gateway@.service"
WHY = lab.missing(lab.tools("iptables", "setpriv"), lab.netfilterqueue)


@pytest.fixture
def netns():
    if WHY:
        pytest.skip(WHY)
    with scratch_namespace("svcT", ("sv1", "sv3"), kind="bridge") as ns:
        yield ns


def unit_capabilities() -> list[str]:
    (caps,) = unit_settings(UNIT.read_text())["Service.CapabilityBoundingSet"]
    return [c.removeprefix("CAP_").lower() for c in caps.split()]


def _addrs(ns: str) -> str:
    return sh("ip", "-n", ns, "-4", "-o", "addr", "show").stdout


def _rules(ns: str) -> str:
    return sh("ip", "netns", "exec", ns, "iptables", "-w", "5", "-t", "raw", "-S").stdout


def test_the_unit_s_life_of_a_node(netns, tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "gw.cfg")
    node_file = tmp_path / "gw-a.toml"
    node_file.write_text('node = "gw-a"\nconfig = "gw.cfg"\njournal = "j"\nqueue = 4078\n'
                         'control_socket = "run/gw-a.sock"\n'
                         '[interfaces]\nethernet1 = "sv1"\nethernet3 = "sv3"\n'
                         '[metrics]\nlisten = "127.0.0.1:9478"\n')
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(60)
    log = tmp_path / "gatewayd.log"
    bounded = ["setpriv", "--bounding-set", "-all," + ",".join(f"+{c}" for c in unit_capabilities()),
               "--no-new-privs"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(tmp_path / "notify"),
           "WATCHDOG_USEC": "2000000"}
    with open(log, "w") as err:
        st = os.fstat(err.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *bounded, sys.executable, "-m",
                                 "ops.gatewayd", "--node-file", str(node_file)],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
    try:
        msgs = []
        while not any("READY=1" in m for m in msgs):
            try:
                msgs.append(notify.recv(4096).decode())
            except socket.timeout:
                pytest.fail(f"no READY=1 within 60 s; log:\n{log.read_text()[-3000:]}")
        ready = next(m for m in msgs if "READY=1" in m)
        assert "STATUS=active (epoch 1)" in ready
        # Ready means running: the addresses taken over and the rules in place.
        assert "10.1.1.1/24" in _addrs(netns) and "1.1.1.5/32" in _addrs(netns)
        assert "voip-alg-q4078" in _rules(netns)
        # Pings while it runs (WATCHDOG_USEC 2 s: one every second).
        pings = 0
        deadline = time.monotonic() + 30
        while pings < 2 and time.monotonic() < deadline:
            if notify.recv(4096).decode().startswith("WATCHDOG=1"):
                pings += 1
        assert pings == 2
        # The metrics endpoint runs with the node, inside its namespace.
        code = ("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                "'http://127.0.0.1:9478/metrics', timeout=5).read().decode())")
        body = sh("ip", "netns", "exec", netns, sys.executable, "-c", code).stdout
        assert 'voipgw_role{role="active"} 1.0' in body

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        rest = []
        notify.settimeout(5)
        try:
            while True:
                rest.append(notify.recv(4096).decode())
        except socket.timeout:
            pass
        assert "STOPPING=1" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
    text = log.read_text()
    # Under a journal stream every line carries its syslog priority.
    assert re.search(r"^<6>gatewayd INFO gatewayd: node gw-a running", text, re.M), text[-3000:]
    assert "<6>gatewayd.metrics INFO metrics: serving http://127.0.0.1:9478/metrics" in text
    # The capabilities sufficed: no permission refused anywhere.
    assert "Operation not permitted" not in text and "Permission denied" not in text, text[-3000:]

    # ExecStopPost after a clean stop: nothing left to remove.
    post = subprocess.run(["ip", "netns", "exec", netns, *bounded, sys.executable, "-m", "ops.gatewayd",
                           "--cleanup", "--node-file", str(node_file)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=60)
    assert post.returncode == 0, post.stderr
    assert "removed 0 of 3 address(es), 0 NFQUEUE rule(s)" in post.stderr
    assert "10.1.1.1" not in _addrs(netns) and "voip-alg-q" not in _rules(netns)
