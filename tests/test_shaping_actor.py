"""The traffic shaper on the host (actors/shaping.py): what it runs to
install, remove and report the plan of gateway/shaping.py, and that a
failed command leaves nothing installed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from actors.shaping import TrafficShaper
from gateway.config import load_file, parse_text
from gateway.shaping import NFT_TABLE
from ops.commands.node import shaping_lines

FIGURE20 = Path(__file__).resolve().parent / "data" / "bandwidth" / "figure20.cfg"
DEVICES = {"ethernet1": "veth-in", "ethernet3": "veth-out"}


class Recorder:
    def __init__(self, fail_on: str | None = None, stdout: str = "") -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail_on = fail_on
        self.stdout = stdout

    def __call__(self, args, input=None):
        self.calls.append((list(args), input))
        text = " ".join(args)
        rc = 1 if self.fail_on is not None and self.fail_on in text else 0
        out = self.root if args[:3] == ["tc", "qdisc", "show"] else self.stdout
        return subprocess.CompletedProcess(args, rc, out, "boom" if rc else "")

    root = ""


def test_install_builds_the_tree_on_the_mapped_device_and_the_nft_table():
    rec = Recorder()
    shaper = TrafficShaper(load_file(FIGURE20), DEVICES, runner=rec)
    shaper.install()
    lines = [" ".join(a) for a, _ in rec.calls]
    # The device's own root qdisc is not ours: removed, the tree built.
    assert lines[:3] == ["tc qdisc show dev veth-out root", "tc qdisc del dev veth-out root",
                         "tc qdisc replace dev veth-out root handle 1: htb default 2"]
    assert not any("veth-in" in line for line in lines)     # no bandwidth there
    script = [i for a, i in rec.calls if a == ["nft", "-f", "-"]]
    assert len(script) == 1 and "ip dscp set 46" in script[0]
    # The table replaced in one transaction (declare, delete, make).
    assert script[0].startswith(f"table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n")
    assert shaper.installed
    rec.calls.clear()
    shaper.remove()
    assert [" ".join(a) for a, _ in rec.calls] == [
        "tc qdisc del dev veth-out root", f"nft delete table ip {NFT_TABLE}"]


def test_installing_again_keeps_the_root_and_replaces_the_classes():
    """A node taking over under traffic: its tree from the start stays (no
    gap in which packets leave unshaped), the classes are replaced."""
    rec = Recorder()
    rec.root = "qdisc htb 1: root refcnt 2 r2q 10 default 0x2 direct_packets_stat 0\n"
    TrafficShaper(load_file(FIGURE20), DEVICES, runner=rec).install()
    lines = [" ".join(a) for a, _ in rec.calls]
    assert not any(line.startswith("tc qdisc del") for line in lines)
    assert not any("root handle 1: htb" in line for line in lines)
    assert any(line.startswith("tc class replace dev veth-out parent 1:1 classid 1:100")
               for line in lines)


def test_a_failed_command_removes_what_was_installed_and_raises():
    rec = Recorder(fail_on="classid 1:101")
    shaper = TrafficShaper(load_file(FIGURE20), DEVICES, runner=rec)
    with pytest.raises(OSError, match="traffic shaping: tc class replace .*: boom"):
        shaper.install()
    assert rec.calls[-2][0] == ["tc", "qdisc", "del", "dev", "veth-out", "root"]
    assert rec.calls[-1][0] == ["nft", "delete", "table", "ip", NFT_TABLE]
    assert not shaper.installed


def test_nothing_to_do_without_traffic_settings():
    rec = Recorder()
    cfg = parse_text("set interface ethernet1 zone trust\nset interface ethernet1 ip 10.1.1.1/24\n")
    shaper = TrafficShaper(cfg, DEVICES, runner=rec)
    shaper.install()
    shaper.remove()
    assert rec.calls == [] and shaper.status() == []


def test_status_reports_rates_and_drops_per_class():
    out = ("class htb 1:100 parent 1:1 leaf 100: prio 0 rate 512Kbit ceil 1024Kbit burst 1600b\n"
           " Sent 2000 bytes 10 pkt (dropped 2, overlimits 0 requeues 0)\n"
           " rate 8000bit 5pps backlog 0b 0p requeues 0\n")
    shaper = TrafficShaper(load_file(FIGURE20), DEVICES, runner=Recorder(stdout=out))
    (iface,) = shaper.status()
    assert iface["installed"] and iface["device"] == "veth-out"
    voip = [c for c in iface["classes"] if c["policy"] == 1][0]
    assert (voip["packets"], voip["dropped"], voip["rate_bps"]) == (10, 2, 8000)
    text = shaping_lines([iface])
    assert text[0] == "shaping ethernet3 (veth-out): 2000 Kbps"
    assert any("policy 1" in t and "dropped 2" in t and "rate 8 Kbit/s 5 pps" in t for t in text)


def test_a_node_taking_over_installs_the_shaping_again(tmp_path):
    """The new active installs the trees and marks (gatewayd registers the
    shaper's install as a takeover hook); a failing hook does not stop the
    takeover."""
    from actors.node import Node

    cfg = load_file(FIGURE20)
    rec = Recorder()
    shaper = TrafficShaper(cfg, DEVICES, runner=rec)
    node = Node("gw-a", cfg, str(tmp_path / "j"), fsync=False, timer_thread=False)

    def broken() -> None:
        raise RuntimeError("hook failed")

    node.on_takeover += [broken, shaper.install]
    try:
        assert not shaper.installed
        node.start()                      # a lone node takes the active role
        assert node.role.role == "active"
        assert shaper.installed
        assert any(a[:3] == ["tc", "qdisc", "replace"] for a, _ in rec.calls)
    finally:
        node.stop()
