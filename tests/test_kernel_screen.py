"""The kernel's per-source screen of new SIP dialogs (actors/kernel_screen.py,
`set flow overload source-rate`): one source's INVITE flood is cut to the
rate before the queue, another source keeps its own budget, in-dialog
requests and responses are never touched, and the drops are counted."""

from __future__ import annotations

import os
import shutil
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
    # By default the screen cuts one source at the node's whole new-dialog
    # budget: a lone proxy carrying every call gets all of it.
    s = source_screen_of(_datapath(), 3, ["eth1", "eth3"])
    assert (s.table, s.rate, s.ifaces) == ("voipgw_screen_q3", 200, ["eth1", "eth3"])
    assert source_screen_of(_datapath("set flow overload new-dialog-rate 900\n"), 0, ["e"]).rate == 900
    assert source_screen_of(_datapath("set flow overload new-dialog-rate 900\n"
                                      "set flow overload source-rate 40\n"), 0, ["e"]).rate == 40
    assert source_screen_of(_datapath("set flow overload source-rate 40\n"
                                      "unset flow overload source-rate\n"), 0, ["e"]).rate == 200
    assert source_screen_of(_datapath("set flow overload source-rate 40\n"), 0, ["e"]).rate == 40
    assert source_screen_of(_datapath("set flow overload source-rate 0\n"), 0, ["e"]) is None
    # Shedding off: no screen either (the operator asked for nothing to be shed).
    assert source_screen_of(_datapath("set flow overload new-dialog-rate 0\n"), 0, ["e"]) is None
    assert source_screen_of(_datapath(), 0, []) is None
    cfg = parse_text("set flow overload source-rate 40\n")
    from gateway.config.render import render
    assert "set flow overload source-rate 40" in render(cfg)
    assert "source-rate" not in render(parse_text("set flow overload new-dialog-rate 900\n"))


def test_the_script_matches_each_new_dialog_method_per_source():
    text = kernel_screen.nft_script("voipgw_screen_q0", ["eth1", "eth3"], 100)
    assert text.startswith("table inet voipgw_screen_q0 {}\ndelete table inet voipgw_screen_q0\n")
    assert "priority raw - 10" in text          # before the raw table's NFQUEUE rules
    assert text.count("limit rate over 100/second burst 50 packets") == 8   # 4 SIP methods, 4 more kinds
    assert '@ih,0,56 0x' + b"INVITE ".hex() in text
    assert '@ih,0,72 0x' + b"REGISTER ".hex() in text
    # One entry rule sends the configured interfaces' packets to the ALGs'
    # ports on to the screens; every other packet (media) meets one lookup.
    (entry,) = [ln for ln in text.splitlines() if "jump screen" in ln]
    assert 'iifname { "eth1", "eth3" }' in entry and entry.count("iifname") == 1
    for proto, port in (("udp", 5060), ("tcp", 5060), ("udp", 2427), ("udp", 2727), ("tcp", 1720),
                        ("udp", 1718), ("udp", 1719)):
        assert f"{proto} . {port}" in entry
    screens = text.split("chain screen {", 1)[1].split("}\n", 1)[0]
    assert "iifname" not in screens and "  udp dport 5060 @ih,0,56 0x" in screens
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


def test_the_script_screens_new_tcp_connections_mgcp_crcx_and_ras_arq():
    text = kernel_screen.nft_script("voipgw_screen_q0", ["eth1"], 100)
    assert text.count("limit rate over 100/second burst 50 packets") == len(kernel_screen.SCREENS) == 8
    assert "tcp dport 5060 tcp flags & (fin|syn|rst|ack) == syn update @sip_tcp" in text
    assert "tcp dport 1720 tcp flags & (fin|syn|rst|ack) == syn update @h323_tcp" in text
    assert "udp dport { 2427, 2727 } @ih,0,32 & 0xdfdfdfdf == 0x43524358 update @mgcp_crcx" in text
    assert "udp dport { 1718, 1719 } @ih,0,6 9 update @ras_arq" in text


def test_the_kernel_matches_mean_what_the_userspace_scan_means():
    """The MGCP and RAS matches are the kernel's form of gateway.overload's
    byte tests: check them against new_dialog_kind on the first octets."""
    from gateway.overload import new_dialog_kind

    def crcx_match(b: bytes) -> bool:         # @ih,0,32 & 0xdfdfdfdf == "CRCX"
        return int.from_bytes(b[:4], "big") & 0xDFDFDFDF == int.from_bytes(b"CRCX", "big")

    def arq_match(b: bytes) -> bool:          # @ih,0,6 == 9
        return b[0] >> 2 == 9

    for msg in (b"CRCX 1 ep@gw MGCP 1.0\r\n", b"crcx 1 ep@gw MGCP 1.0\r\n", b"CrCx\t1 e MGCP 1.0\n",
                b"DLCX 1 ep@gw MGCP 1.0\r\n", b"MDCX 1 ep@gw MGCP 1.0\r\n"):
        assert crcx_match(msg) == (new_dialog_kind("mgcp", msg) == "mgcp-crcx"), msg
    for first in range(256):
        msg = bytes([first, 0x80, 0x01])
        assert arq_match(msg) == (new_dialog_kind("h323", msg) == "h323-arq"), hex(first)


_UDP_FLOOD = r"""
import socket, sys
port = int(sys.argv[1]); new = bytes.fromhex(sys.argv[2]); other = bytes.fromhex(sys.argv[3])
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", port)); rx.settimeout(0.3)
def send(src, data, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0))
    for _ in range(n): s.sendto(data, ("127.0.0.1", port))
send("127.0.0.1", new, 400)          # the flood of new work
send("127.0.0.1", other, 20)         # the same protocol's other messages: never screened
send("127.0.0.2", new, 5)            # another source
got = {}
try:
    while True:
        data, (src, _) = rx.recvfrom(2048)
        key = src + " " + ("new" if data == new else "other")
        got[key] = got.get(key, 0) + 1
except socket.timeout:
    pass
print(sorted(got.items()))
"""

_TCP_FLOOD = r"""
import select, socket, sys, time
port = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(4096)
def connect(src, n):
    out = []
    for _ in range(n):
        c = socket.socket(); c.setblocking(False); c.bind((src, 0))
        c.connect_ex(("127.0.0.1", port)); out.append(c)
    return out
flood = connect("127.0.0.1", 200)
other = connect("127.0.0.2", 5)
time.sleep(0.5)                       # handshakes done (a dropped SYN is retried after 1 s)
ls.setblocking(False)
got = {}
conns = []
while True:
    try:
        a, (src, _) = ls.accept()
    except BlockingIOError:
        break
    conns.append(a)
    got[src] = got.get(src, 0) + 1
# Data on an established connection is never screened.
srv = next(a for a in conns if a.getpeername()[0] == "127.0.0.1")
cli = next(c for c in flood if c.getsockname() == srv.getpeername())
for _ in range(50):
    cli.send(b"INVITE sip:b@x SIP/2.0\r\n\r\n")
time.sleep(0.2)
data = b""
srv.setblocking(False)
try:
    while True:
        chunk = srv.recv(65536)
        if not chunk: break
        data += chunk
except BlockingIOError:
    pass
got["in-connection INVITEs"] = data.count(b"INVITE ")
print(sorted(got.items()))
"""


def _flood_through_screen(netns, script: str, *args) -> tuple[dict, int]:
    def run(argv, **kw):
        return subprocess.run(["ip", "netns", "exec", netns, *argv], **kw)
    screen = kernel_screen.SourceRateScreen(9, ["lo"], 50, run=run)
    screen.install()
    try:
        out = _ns(netns, "python3", "-c", script, *args)
        assert out.returncode == 0, out.stderr
        return dict(eval(out.stdout)), screen.read()    # noqa: S307 (our own printout)
    finally:
        screen.remove()


@pytest.mark.netns
@pytest.mark.parametrize("port,new,other", [
    (2427, b"crcx 1 aaln/1@gw MGCP 1.0\r\nC: 1\r\n", b"DLCX 2 aaln/1@gw MGCP 1.0\r\n"),
    (1719, bytes([9 << 2, 0x80, 0x01, 0x02]), bytes([6 << 2, 0x80, 0x01, 0x02])),   # ARQ; RRQ
], ids=["mgcp-crcx", "ras-arq"])
def test_a_source_flooding_mgcp_crcx_or_ras_arq_is_cut_to_its_rate(netns, port, new, other):
    got, dropped = _flood_through_screen(netns, _UDP_FLOOD, str(port), new.hex(), other.hex())
    # The burst (25) and what the rate refilled while the flood was sent.
    assert 25 <= got["127.0.0.1 new"] <= 60, got
    assert got["127.0.0.1 other"] == 20, got            # DLCX / RRQ: never screened
    assert got["127.0.0.2 new"] == 5, got               # its own bucket
    assert dropped == 400 - got["127.0.0.1 new"], (dropped, got)


@pytest.mark.netns
@pytest.mark.parametrize("port", [5060, 1720], ids=["sip-tcp", "h323-tcp"])
def test_a_source_opening_connections_too_fast_is_cut_to_its_rate(netns, port):
    got, dropped = _flood_through_screen(netns, _TCP_FLOOD, str(port))
    # New connections from the flooding source: the burst (25) and the
    # refill while 200 SYNs were sent, not 200.
    assert 25 <= got["127.0.0.1"] <= 60, got
    assert got["127.0.0.2"] == 5, got                   # its own bucket
    assert got["in-connection INVITEs"] == 50, got      # established: never screened
    assert dropped >= 200 - got["127.0.0.1"], (dropped, got)
