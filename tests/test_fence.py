"""The fence supervisor (actors/fence.py): its bookkeeping of what the node
holds, and, in a network namespace with a dummy interface, that it removes
the node's addresses and NFQUEUE rules within a second of the node's SIGKILL,
and the addresses when the lease ends while the node is stalled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import actors.fence as fence
from actors.fence import Fence, Supervisor
from scratch_netns import scratch_namespace, sh

ROOT = Path(__file__).resolve().parents[1]


def test_supervisor_tracks_the_last_report():
    s = Supervisor(-1, clock=lambda: 5.0)
    s.handle(b'{"addrs": [["eth0", "10.0.0.1/32"]], "lease": 4.0}')
    assert s.addrs == [["eth0", "10.0.0.1/32"]] and s.lease_ended()
    s.handle(b'{"lease": 6.0}')
    assert not s.lease_ended()
    s.handle(b'{"lease": null}')
    assert not s.lease_ended()
    s.handle(b'{"rules": [["PREROUTING", "-i", "x", "-j", "NFQUEUE"]]}')
    assert s.rules == [["PREROUTING", "-i", "x", "-j", "NFQUEUE"]]
    s.handle(b"not json")       # logged, ignored
    s.handle(b'{"addrs": []}')
    assert s.addrs == []


def test_client_writes_one_json_line_per_report():
    out = []
    f = Fence(None, write=out.append)
    f.lease(12.5)
    f.hold([("eth1", "10.1.1.1/24")])
    f.rules([["PREROUTING", "-i", "eth1"]])
    assert [json.loads(x) for x in out] == [{"lease": 12.5}, {"addrs": [["eth1", "10.1.1.1/24"]]},
                                           {"rules": [["PREROUTING", "-i", "eth1"]]}]


def test_client_survives_a_dead_supervisor():
    def broken(_data):
        raise BrokenPipeError(32, "Broken pipe")
    f = Fence(None, write=broken)
    f.lease(1.0)
    f.hold([])            # logged once, never raised


def test_supervisor_imports_nothing_heavy():
    """It must start fast and stay small whatever the node loads."""
    code = ("import runpy, sys; runpy.run_path(%r, run_name='fence');"
            "print(','.join(m for m in ('scapy', 'pykka', 'zmq', 'msgpack', 'actors') if m in sys.modules))"
            % str(ROOT / "actors" / "fence.py"))
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


# ------------------------------------------------------------- in a namespace

@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with scratch_namespace("fenceT", ("fx0",)) as ns:
        yield ns


# The node's part, in a process of its own inside the namespace: spawn the
# supervisor, report an address (added) and a raw-table rule, then wait.
NODE = textwrap.dedent("""
    import subprocess, sys, time
    sys.path.insert(0, {root!r})
    from actors.fence import Fence
    lease = float(sys.argv[1])
    f = Fence.spawn()
    f.lease(None if lease == 0 else time.monotonic() + lease)
    f.hold([("fx0", "10.77.0.1/32")])
    subprocess.run(["ip", "addr", "add", "10.77.0.1/32", "dev", "fx0"], check=True)
    rule = ["PREROUTING", "-i", "fx0", "-m", "comment", "--comment", "fence-test", "-j", "ACCEPT"]
    if subprocess.run(["iptables", "-w", "5", "-t", "raw", "-I", *rule]).returncode == 0:
        f.rules([rule])
    print("ready", flush=True)
    time.sleep(60)
""")


def _has_addr(ns: str) -> bool:
    return "10.77.0.1" in sh("ip", "-n", ns, "-4", "addr", "show", "dev", "fx0").stdout


def _has_rule(ns: str) -> bool:
    r = sh("ip", "netns", "exec", ns, "iptables", "-w", "5", "-t", "raw", "-S", check=False)
    return "fence-test" in r.stdout


def _start_node(ns: str, lease: float) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", NODE.format(root=str(ROOT)),
                          str(lease)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def _wait_gone(ns: str, limit: float, pred) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if not pred(ns):
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


@pytest.mark.netns
def test_sigkill_of_the_node_removes_its_address_and_rule_within_a_second(netns):
    p = _start_node(netns, lease=0)
    try:
        assert _has_addr(netns)
        rule_installed = _has_rule(netns)
        p.send_signal(signal.SIGKILL)
        p.wait(5)
        took = _wait_gone(netns, 1.0, _has_addr)
        assert took is not None, "address still on the dead node's interface after 1 s"
        if rule_installed:
            assert _wait_gone(netns, 1.0, _has_rule) is not None
            # fail closed: no forwarding on the device the rule queued
            fwd = sh("ip", "netns", "exec", netns, "cat", "/proc/sys/net/ipv4/conf/fx0/forwarding")
            assert fwd.stdout.strip() == "0"
    finally:
        p.kill()


@pytest.mark.netns
def test_lease_end_removes_the_address_of_a_stalled_node(netns):
    p = _start_node(netns, lease=0.3)
    try:
        # The node is alive (sleeping: as stalled as it gets) and never renews.
        took = _wait_gone(netns, 2.0, _has_addr)
        assert took is not None and p.poll() is None
    finally:
        p.kill()
        p.wait(5)


def test_rule_devices_and_forwarding_switch(tmp_path):
    from actors.fence import rule_devices, set_forwarding
    rules = [["PREROUTING", "-i", "eth0.100", "-j", "NFQUEUE"], ["PREROUTING", "-i", "gw1", "-j", "NFQUEUE"],
             ["PREROUTING", "-i", "gw1", "-p", "udp"]]
    assert rule_devices(rules) == ["eth0.100", "gw1"]
    for dev in ("eth0.100", "gw1"):
        d = tmp_path / "net/ipv4/conf" / dev
        d.mkdir(parents=True)
        (d / "forwarding").write_text("1\n")
    assert set_forwarding(["eth0.100", "gw1", "gone", "../x"], False, proc_sys=str(tmp_path)) == ["gone", "../x"]
    assert (tmp_path / "net/ipv4/conf/gw1/forwarding").read_text() == "0\n"
    set_forwarding(["gw1"], True, proc_sys=str(tmp_path))
    assert (tmp_path / "net/ipv4/conf/gw1/forwarding").read_text() == "1\n"


@pytest.mark.parametrize("bypass, forwarding_off", [(False, [["gw1"]]), (True, [])])
def test_after_a_death_forwarding_goes_off_unless_the_rules_fail_open(monkeypatch, bypass, forwarding_off):
    """Without `set flow queue-bypass` the removed queue rules must not leave
    the device routing past the policy (fail closed); with it the operator
    chose to let packets pass when no gatewayd listens, and that holds."""
    import actors.fence as fence
    switched = []
    monkeypatch.setattr(fence, "remove_rules", lambda rules: len(rules))
    monkeypatch.setattr(fence, "set_forwarding", lambda devs, on: switched.append(devs) or [])
    s = Supervisor(-1)
    spec = ["PREROUTING", "-i", "gw1", "-j", "NFQUEUE", "--queue-num", "0"]
    s.handle(json.dumps({"rules": [spec + (["--queue-bypass"] if bypass else [])]}).encode())
    s.cleanup()
    assert switched == forwarding_off and s.rules == []


def test_after_a_death_the_screens_nftables_table_goes_too(monkeypatch):
    """The per-source screen (actors/kernel_screen.py) is kernel state the
    node installed: the supervisor deletes its table when the node dies."""
    calls = []

    def run(args, **kw):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")
    monkeypatch.setattr(fence.subprocess, "run", run)
    s = fence.Supervisor(fd=-1)
    s.handle(b'{"nft": ["inet voipgw_screen_q0"]}')
    assert s.nft == ["inet voipgw_screen_q0"]
    s.cleanup()
    assert ["nft", "delete", "table", "inet", "voipgw_screen_q0"] in calls and s.nft == []


def test_after_a_death_the_media_programs_filters_and_pin_go_too(monkeypatch, tmp_path):
    """The media offload's tc filters and pinned program
    (actors/kernel_media_bpf.py) outlive the node's process: without the
    supervisor a dead node would go on forwarding media."""
    calls = []

    def run(args, **kw):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")
    monkeypatch.setattr(fence.subprocess, "run", run)
    pin = tmp_path / "voipgw_media_q0"
    pin.write_text("")
    specs = [["dev", "gwa", "ingress", "pref", "7"], ["dev", "gwb", "ingress", "pref", "7"]]
    s = fence.Supervisor(fd=-1)
    s.handle(json.dumps({"tc": specs, "pins": [str(pin)]}).encode())
    assert s.tc == specs and s.pins == [str(pin)]
    s.cleanup()
    assert [["tc", "filter", "del", *spec] for spec in specs] == calls
    assert not pin.exists() and s.tc == [] and s.pins == []


def test_the_node_reports_its_media_filters_in_one_line():
    lines = []
    f = fence.Fence(None, write=lines.append)
    f.tc_filters([["dev", "gwa", "ingress", "pref", "7"]], ["/sys/fs/bpf/voipgw_media_q0"])
    assert json.loads(lines[0]) == {"tc": [["dev", "gwa", "ingress", "pref", "7"]],
                                    "pins": ["/sys/fs/bpf/voipgw_media_q0"]}
