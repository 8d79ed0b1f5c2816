"""The NFQUEUE worker in a real kernel: three network namespaces, a host on
each side and the gateway in the middle, the worker bound in the gateway's
namespace (a subprocess, ``python -m actors.ingest``: entering a namespace
from a test process's thread would move the whole test). UDP passes with
interface NAT both ways, a denied flow is dropped with its reason logged,
and the rules go away on stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
PEER = str(ROOT / "tests" / "netns_udp.py")

pytestmark = pytest.mark.netns

CONFIG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 route
set policy from trust to untrust any any mgcp-ca deny
set policy from trust to untrust any any any permit
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


def _can_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables, NFQUEUE)"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "netfilterqueue is not installed"
    for tool in ("ip", "iptables"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            return f"{tool} not found"
    return None


@pytest.fixture
def lab(tmp_path):
    why = _can_run()
    if why:
        pytest.skip(why)
    tag = f"{os.getpid() % 100000}"
    a, gw, b = f"dpA{tag}", f"dpG{tag}", f"dpB{tag}"
    made: list[str] = []
    try:
        for ns in (a, gw, b):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # veth pairs: A <-> GW (gwa), GW (gwb) <-> B
        sh("ip", "link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", "name", "gwa",
           "netns", gw)
        sh("ip", "link", "add", f"vb{tag}", "netns", b, "type", "veth", "peer", "name", "gwb",
           "netns", gw)
        sh("ip", "-n", a, "addr", "add", "10.1.1.3/24", "dev", f"va{tag}")
        sh("ip", "-n", a, "link", "set", f"va{tag}", "up")
        sh("ip", "-n", a, "route", "add", "default", "via", "10.1.1.1")
        sh("ip", "-n", b, "addr", "add", "1.1.1.9/24", "dev", f"vb{tag}")
        sh("ip", "-n", b, "link", "set", f"vb{tag}", "up")
        sh("ip", "-n", gw, "addr", "add", "10.1.1.1/24", "dev", "gwa")
        sh("ip", "-n", gw, "addr", "add", "1.1.1.1/24", "dev", "gwb")
        sh("ip", "-n", gw, "link", "set", "gwa", "up")
        sh("ip", "-n", gw, "link", "set", "gwb", "up")
        cfg = tmp_path / "gw.cfg"
        cfg.write_text(CONFIG)
        yield {"a": a, "gw": gw, "b": b, "cfg": cfg, "tmp": tmp_path}
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def start_worker(lab, queue: int = 7, *extra: str):
    err = open(lab["tmp"] / "worker.log", "w")
    p = subprocess.Popen(["ip", "netns", "exec", lab["gw"], PY, "-m", "actors.ingest",
                          "--config", str(lab["cfg"]), "--queue", str(queue),
                          "--iface", "gwa=ethernet1", "--iface", "gwb=ethernet3", *extra],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    line = p.stdout.readline()
    assert line.strip() == "ready", (line, (lab["tmp"] / "worker.log").read_text())
    return p


def stop_worker(p) -> dict:
    p.terminate()
    out, _ = p.communicate(timeout=10)
    return json.loads(out.strip().splitlines()[-1])


def test_udp_with_interface_nat_and_policy_drop(lab):
    gw = lab["gw"]
    worker = start_worker(lab)
    try:
        rules = sh("ip", "netns", "exec", gw, "iptables", "-t", "raw", "-S", "PREROUTING").stdout
        assert rules.count("NFQUEUE --queue-num 7") == 2
        assert sh("ip", "netns", "exec", gw, "sysctl", "-n", "net.ipv4.conf.gwa.accept_local"
                  ).stdout.strip() == "1"
        echo = subprocess.Popen(["ip", "netns", "exec", lab["b"], PY, PEER, "echo", "9000", "2727",
                                 "6"], stdout=subprocess.PIPE, text=True)
        assert echo.stdout.readline().strip() == "listening"
        ok = sh("ip", "netns", "exec", lab["a"], PY, PEER, "send", "1.1.1.9", "9000", "hello", "3")
        denied = sh("ip", "netns", "exec", lab["a"], PY, PEER, "send", "1.1.1.9", "2727",
                    "RSIP 1 aaln/1@gw MGCP 1.0", "1")
        echo.terminate()
        seen = [json.loads(x) for x in echo.communicate(timeout=10)[0].splitlines() if x.strip()]
    finally:
        stats = stop_worker(worker)
    # The permitted datagram reached B from the gateway's public address...
    assert [s["port"] for s in seen] == [9000]
    assert seen[0]["from"][0] == "1.1.1.1" and seen[0]["data"] == "hello"
    # ... and the answer came back to A through the session, from B.
    reply = json.loads(ok.stdout)
    assert reply["data"] == "echo:hello" and reply["from"] == ["1.1.1.9", 9000]
    # The denied one never arrived, and the worker said why.
    assert denied.stdout.strip() == "null"
    logged = (lab["tmp"] / "worker.log").read_text()
    assert "drop [policy-deny]: denied by policy 1 (trust->untrust)" in logged
    assert stats["datapath"]["drops"].get("policy") == 1
    assert stats["datapath"]["paths"]["policy"] == 1
    assert stats["datapath"]["paths"]["fast-session"] >= 1
    # Stopped: the rules and the sysctls are gone.
    rules = sh("ip", "netns", "exec", gw, "iptables", "-t", "raw", "-S", "PREROUTING").stdout
    assert "NFQUEUE" not in rules
    assert sh("ip", "netns", "exec", gw, "sysctl", "-n", "net.ipv4.conf.gwa.accept_local"
              ).stdout.strip() == "0"


def test_fail_closed_without_a_worker_and_bypass_fails_open(lab):
    gw = lab["gw"]
    # A queue rule with nobody listening: the kernel drops (fail-closed) ...
    sh("ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for k in ("gwa", "gwb", "all"):
        sh("ip", "netns", "exec", gw, "sysctl", "-qw", f"net.ipv4.conf.{k}.rp_filter=0")
    from actors.ingest import NfqueueWorker
    from gateway.config import parse_text
    from gateway.datapath import Datapath

    dp = Datapath(parse_text(CONFIG))
    spec = NfqueueWorker(9, {"gwa": "ethernet1"}, dp).rule_specs()[0]
    bypass = NfqueueWorker(9, {"gwa": "ethernet1"}, dp, bypass=True).rule_specs()[0]
    assert bypass == spec + ["--queue-bypass"]
    sh("ip", "netns", "exec", gw, "iptables", "-t", "raw", "-I", *spec)
    # B needs a route back to A's subnet: no NAT without a worker.
    sh("ip", "-n", lab["b"], "route", "add", "10.1.1.0/24", "via", "1.1.1.1")
    echo = subprocess.Popen(["ip", "netns", "exec", lab["b"], PY, PEER, "echo", "9000", "4"],
                            stdout=subprocess.PIPE, text=True)
    assert echo.stdout.readline().strip() == "listening"
    closed = sh("ip", "netns", "exec", lab["a"], PY, PEER, "send", "1.1.1.9", "9000", "x", "1")
    assert closed.stdout.strip() == "null"
    # ... and with --queue-bypass it accepts.
    sh("ip", "netns", "exec", gw, "iptables", "-t", "raw", "-D", *spec)
    sh("ip", "netns", "exec", gw, "iptables", "-t", "raw", "-I", *bypass)
    opened = sh("ip", "netns", "exec", lab["a"], PY, PEER, "send", "1.1.1.9", "9000", "y", "2")
    echo.terminate()
    echo.communicate(timeout=10)
    assert json.loads(opened.stdout)["data"] == "echo:y"


def test_sip_call_held_for_the_alg_then_media_through_pinholes(lab):
    # The INVITE and its 200 OK are held in the queue while the SIP ALG runs
    # on another thread, then released rewritten; RTP passes both ways through
    # the pinholes the ALG opened.
    worker = start_worker(lab, 8, "--sip-inline")
    try:
        uas = subprocess.Popen(["ip", "netns", "exec", lab["b"], PY, PEER, "uas", "1.1.1.9", "6"],
                               stdout=subprocess.PIPE, text=True)
        assert uas.stdout.readline().strip() == "listening"
        uac = sh("ip", "netns", "exec", lab["a"], PY, PEER, "uac", "10.1.1.3", "1.1.1.9", "4")
        uas.terminate()
        seen = [json.loads(x) for x in uas.communicate(timeout=10)[0].splitlines() if x.strip()]
    finally:
        stats = stop_worker(worker)
    log_text = (lab["tmp"] / "worker.log").read_text()
    invite = next(s for s in seen if s["data"].startswith("INVITE"))
    # The INVITE left as the gateway, with its addresses rewritten by the ALG.
    assert invite["from"] == ["1.1.1.1", 5060], log_text
    assert "Via: SIP/2.0/UDP 1.1.1.1:5060" in invite["data"]
    assert "c=IN IP4 1.1.1.1" in invite["data"] and "10.1.1.3" not in invite["data"]
    out = json.loads(uac.stdout)
    # The 200 OK reached the caller, from the callee.
    assert out["answer"] and out["answer"]["from"] == ["1.1.1.9", 5060]
    assert "SIP/2.0 200 OK" in out["answer"]["data"]
    # Media: the callee's RTP reached the caller's private port through the
    # pinhole; the caller's RTP reached the callee from the public pair.
    assert out["rtp"] and out["rtp"][0]["data"] == "rtp-from-uas"
    rtp_at_b = [s for s in seen if s["port"] == 7000]
    assert rtp_at_b and rtp_at_b[0]["from"][0] == "1.1.1.1", log_text
    assert stats["worker"]["held"] == 2 and stats["held_now"] == 0
    assert stats["datapath"]["paths"]["fast-pinhole"] >= 1
