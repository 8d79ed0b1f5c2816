"""The kernel's per-source screen of new SIP dialogs (actors/kernel_screen.py,
`set flow overload source-rate`): one source's INVITE flood is cut to the
rate before the queue, another source keeps its own budget, in-dialog
requests and responses are never touched, and the drops are counted."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from actors import kernel_screen
from actors.ingest import source_screen_of
from gateway.config import parse_text
from gateway.datapath import Datapath
from gateway.policy import Engine


def _datapath(extra: str = "") -> Datapath:
    cfg = parse_text(extra)
    return Datapath(cfg, Engine(cfg))


def test_the_screen_follows_the_configuration():
    s = source_screen_of(_datapath(), 3, ["eth1", "eth3"])
    assert (s.table, s.rate, s.ifaces) == ("voipgw_screen_q3", 100, ["eth1", "eth3"])
    assert source_screen_of(_datapath("set flow overload source-rate 40\n"), 0, ["e"]).rate == 40
    assert source_screen_of(_datapath("set flow overload source-rate 0\n"), 0, ["e"]) is None
    # Shedding off: no screen either (the operator asked for nothing to be shed).
    assert source_screen_of(_datapath("set flow overload new-dialog-rate 0\n"), 0, ["e"]) is None
    assert source_screen_of(_datapath(), 0, []) is None
    cfg = parse_text("set flow overload source-rate 40\n")
    from gateway.config.render import render
    assert "set flow overload source-rate 40" in render(cfg)


def test_the_script_matches_each_new_dialog_method_per_source():
    text = kernel_screen.nft_script("voipgw_screen_q0", ["eth1", "eth3"], 100)
    assert text.startswith("table inet voipgw_screen_q0 {}\ndelete table inet voipgw_screen_q0\n")
    assert "priority raw - 10" in text          # before the raw table's NFQUEUE rules
    assert text.count("limit rate over 100/second burst 50 packets") == 4
    assert '@ih,0,56 0x' + b"INVITE ".hex() in text
    assert '@ih,0,72 0x' + b"REGISTER ".hex() in text
    assert 'iifname { "eth1", "eth3" } udp dport 5060' in text
    with pytest.raises(ValueError):
        kernel_screen.nft_script("t", [], 100)
    with pytest.raises(ValueError):
        kernel_screen.nft_script("t", ["e"], 0)


def test_drops_are_read_from_the_rules_counters():
    listing = ("table inet t {\n chain pre {\n  ... counter packets 275 bytes 14300 drop\n"
               "  ... counter packets 0 bytes 0 drop\n  ... counter packets 5 bytes 9 drop\n }\n}\n")
    assert kernel_screen.dropped_in(listing) == 280
    assert kernel_screen.dropped_in("") == 0


def _ns(*args, input=None):
    return subprocess.run(["ip", "netns", "exec", *args], input=input, capture_output=True,
                          text=True, timeout=20)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root (network namespaces) and nft")
    ns = f"kscreen{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "127.0.0.2/8", "dev", "lo"], check=False)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


_FLOOD = r"""
import socket, sys, time
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 5060)); rx.settimeout(0.3)
def send(src, data, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0))
    for _ in range(n): s.sendto(data, ("127.0.0.1", 5060))
send("127.0.0.1", b"INVITE sip:b@x SIP/2.0\r\n\r\n", 400)        # the flood
send("127.0.0.1", b"ACK sip:b@x SIP/2.0\r\n\r\n", 20)            # in-dialog: never screened
send("127.0.0.1", b"SIP/2.0 200 OK\r\n\r\n", 20)                # responses: never screened
send("127.0.0.2", b"INVITE sip:b@x SIP/2.0\r\n\r\n", 5)          # another source
got = {}
try:
    while True:
        data, (src, _) = rx.recvfrom(2048)
        key = src + " " + data.split(b" ")[0].decode()
        got[key] = got.get(key, 0) + 1
except socket.timeout:
    pass
print(sorted(got.items()))
"""


@pytest.mark.netns
def test_a_flooding_source_is_cut_to_its_rate_in_the_kernel(netns):
    def run(args, **kw):
        return subprocess.run(["ip", "netns", "exec", netns, *args], **kw)
    screen = kernel_screen.SourceRateScreen(9, ["lo"], 50, run=run)
    screen.install()
    try:
        out = _ns(netns, "python3", "-c", _FLOOD)
        assert out.returncode == 0, out.stderr
        got = dict(eval(out.stdout))                    # noqa: S307 (our own printout)
        # The flood: its burst (25) and what the rate refilled while it was
        # sent (well under a second), not 400.
        assert 25 <= got["127.0.0.1 INVITE"] <= 60, got
        assert got["127.0.0.1 ACK"] == 20 and got["127.0.0.1 SIP/2.0"] == 20, got
        assert got["127.0.0.2 INVITE"] == 5, got        # its own bucket
        dropped = screen.read()
        assert dropped == 400 - got["127.0.0.1 INVITE"], (dropped, got)
        seen = []
        screen.interval = 0.1
        screen.dropped = 0
        screen.watch(seen.append)
        deadline = time.monotonic() + 3
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen == [dropped]
    finally:
        screen.remove()
    assert _ns(netns, "nft", "list", "table", "inet", screen.table).returncode != 0   # gone
