"""``gatewayd --cleanup``: what the node file's node may have left (the pair's
addresses, the NFQUEUE rules, forwarding on their devices) is taken away,
and only that; a second run changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.gatewayd import main as gatewayd
from scratch_netns import scratch_namespace, sh

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ch2-incoming-call-with-mip.cfg"
QUEUE = 4077


def node_file(tmp_path: Path, extra: str = "") -> str:
    shutil.copy(EXAMPLE, tmp_path / "gw.cfg")
    (tmp_path / "node.toml").write_text(
        f'node = "gw-a"\nconfig = "gw.cfg"\njournal = "j"\nqueue = {QUEUE}\n{extra}'
        '[interfaces]\nethernet1 = "cx1"\nethernet3 = "cx3"\n')
    return str(tmp_path / "node.toml")


@pytest.fixture
def host(monkeypatch, tmp_path):
    """The commands cleanup runs, recorded instead of run."""
    import actors.fence as fence
    import actors.kernel_media_bpf as kernel_media_bpf
    seen = {"ip": [], "iptables": [], "forwarding_off": [], "nft": [], "tc": []}
    monkeypatch.setattr(kernel_media_bpf, "BPF_FS", str(tmp_path))

    def run(args, input=None, **kw):
        if args[0] == "tc":
            seen["tc"].append(args)
            return subprocess.CompletedProcess(args, 0, "", "")
        if args[0] == "ip":
            seen["ip"].append(input)
            return subprocess.CompletedProcess(args, 0, "", "")
        if args[0] == "nft":
            seen["nft"].append(args)
            return subprocess.CompletedProcess(args, 0, "", "")
        seen["iptables"].append(args)
        # the first delete of each rule finds it, the next finds none
        rc = 0 if seen["iptables"].count(args) == 1 else 1
        return subprocess.CompletedProcess(args, rc, "", "")

    def set_forwarding(devs, on, proc_sys="/proc/sys"):
        assert on is False
        seen["forwarding_off"] += devs
        return []
    monkeypatch.setattr(fence.subprocess, "run", run)
    monkeypatch.setattr(fence, "set_forwarding", set_forwarding)
    return seen


def test_cleanup_removes_what_the_node_file_names(tmp_path, host, capsys):
    assert gatewayd(["--cleanup", "--node-file", node_file(tmp_path)]) == 0
    (script,) = host["ip"]
    # Interface addresses with their prefix, the MIP as /32 (actors/addresses.py).
    assert sorted(script.splitlines()) == ["addr del 1.1.1.1/24 dev cx3", "addr del 1.1.1.5/32 dev cx3",
                                           "addr del 10.1.1.1/24 dev cx1"]
    rules = [a for a in host["iptables"] if "-D" in a and "NFQUEUE" in a]
    assert {a[a.index("-i") + 1] for a in rules} == {"cx1", "cx3"}
    assert all(f"voip-alg-q{QUEUE}" in a and str(QUEUE) in a for a in rules)
    assert sorted(host["forwarding_off"]) == ["cx1", "cx3"]
    # The per-source screen's table (actors/kernel_screen.py), then the media
    # offload's (on by default: actors/kernel_media.py).
    assert host["nft"][0] == ["nft", "delete", "table", "inet", f"voipgw_screen_q{QUEUE}"]
    assert ["nft", "delete", "table", "inet", f"voipgw_media_q{QUEUE}"] in host["nft"]
    err = capsys.readouterr().err
    assert "node gw-a: removed 3 of 3 address(es), 2 NFQUEUE rule(s); forwarding off on" in err


def test_cleanup_leaves_forwarding_on_when_the_rules_fail_open(tmp_path, host):
    path = node_file(tmp_path)
    cfg = Path(tmp_path / "gw.cfg")
    cfg.write_text(cfg.read_text().replace("save", "set flow queue-bypass\nsave"))
    assert gatewayd(["--cleanup", "--node-file", path]) == 0
    assert host["forwarding_off"] == []
    assert all("--queue-bypass" in a for a in host["iptables"] if "NFQUEUE" in a)


def test_cleanup_mistakes_are_messages(tmp_path, capsys):
    assert gatewayd(["--cleanup"]) == 2
    assert "--cleanup needs --node-file" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text('node = "gw-a"\n')
    assert gatewayd(["--cleanup", "--node-file", str(tmp_path / "bad.toml")]) == 1
    err = capsys.readouterr().err
    assert "'config' is required" in err and "Traceback" not in err


# ------------------------------------------------------------- in a namespace

@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("needs root (network namespaces) and iptables")
    with scratch_namespace("cleanT", ("cx1", "cx3")) as ns:
        yield ns


def _addrs(ns: str) -> set[str]:
    out = sh("ip", "-n", ns, "-4", "-o", "addr", "show").stdout
    return {f"{ln.split()[3]} {ln.split()[1]}" for ln in out.splitlines() if ln.split()[1] != "lo"}


@pytest.mark.netns
def test_cleanup_in_a_namespace_twice(netns, tmp_path):
    path = node_file(tmp_path)
    for addr, dev in (("10.1.1.1/24", "cx1"), ("1.1.1.1/24", "cx3"), ("1.1.1.5/32", "cx3"),
                      ("192.0.2.9/24", "cx3")):            # the last is not the gateway's
        sh("ip", "-n", netns, "addr", "add", addr, "dev", dev)
    ipt = ["ip", "netns", "exec", netns, "iptables", "-w", "5", "-t", "raw"]
    for dev in ("cx1", "cx3", "cx1"):                      # a copy left by an earlier run
        sh(*ipt, "-I", "PREROUTING", "-i", dev, "-m", "comment", "--comment", f"voip-alg-q{QUEUE}",
            "-j", "NFQUEUE", "--queue-num", str(QUEUE))
    sh(*ipt, "-I", "PREROUTING", "-i", "cx1", "-m", "comment", "--comment", "someone-else", "-j", "ACCEPT")
    for dev in ("cx1", "cx3"):
        sh("ip", "netns", "exec", netns, "sh", "-c", f"echo 1 > /proc/sys/net/ipv4/conf/{dev}/forwarding")

    cmd = ["ip", "netns", "exec", netns, sys.executable, "-m", "ops.gatewayd", "--cleanup",
           "--node-file", path]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "removed 3 of 3 address(es), 3 NFQUEUE rule(s)" in first.stderr
    assert _addrs(netns) == {"192.0.2.9/24 cx3"}
    rules = sh(*ipt, "-S").stdout
    assert "voip-alg-q" not in rules and "someone-else" in rules
    for dev in ("cx1", "cx3"):
        fwd = sh("ip", "netns", "exec", netns, "cat", f"/proc/sys/net/ipv4/conf/{dev}/forwarding")
        assert fwd.stdout.strip() == "0"

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "removed 0 of 3 address(es), 0 NFQUEUE rule(s)" in again.stderr
    assert _addrs(netns) == {"192.0.2.9/24 cx3"}


def test_cleanup_removes_the_media_offload_when_configured(tmp_path, host, capsys):
    # On by default: the example's configuration has no line for it.
    path = node_file(tmp_path)
    assert "media-offload" not in Path(tmp_path / "gw.cfg").read_text()
    (tmp_path / f"voipgw_media_q{QUEUE}").write_text("")        # the program's pin
    assert gatewayd(["--cleanup", "--node-file", path]) == 0
    accepts = [a for a in host["iptables"] if "-D" in a and "ACCEPT" in a]
    assert {a[a.index("-i") + 1] for a in accepts} == {"cx1", "cx3"}
    assert all("UNTRACKED" in a for a in accepts)
    assert ["nft", "delete", "table", "inet", f"voipgw_media_q{QUEUE}"] in host["nft"]
    # Or, where the node ran the tc program: its filters, and its pin.
    assert host["tc"] == [["tc", "filter", "del", "dev", dev, "ingress", "pref", "7"] for dev in ("cx1", "cx3")]
    assert not (tmp_path / f"voipgw_media_q{QUEUE}").exists()
    assert "media offload removed" in capsys.readouterr().err


def test_cleanup_leaves_the_media_offload_alone_when_it_is_unset(tmp_path, host):
    path = node_file(tmp_path)
    cfg = Path(tmp_path / "gw.cfg")
    cfg.write_text(cfg.read_text().replace("save", "unset flow media-offload\nsave"))
    assert gatewayd(["--cleanup", "--node-file", path]) == 0
    assert not any("UNTRACKED" in a for a in host["iptables"])
    assert all("voipgw_media" not in " ".join(a) for a in host["nft"])
    assert host["tc"] == []
