"""The tc BPF forwarding experiment (bench/tc_bpf_forward.py), run in the
kernel on crafted frames (BPF_PROG_TEST_RUN: no device, no namespace): a
flow in its map leaves translated, one hop older, with right checksums,
counted and redirected; anything else goes on to the stack untouched."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import tc_bpf_forward as tb  # noqa: E402

TC_ACT_OK, TC_ACT_REDIRECT = 0, 7
OUT_MAC, NEXT_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


@pytest.fixture(scope="module")
def loaded():
    if os.geteuid() != 0:
        pytest.skip("loading a BPF program needs root")
    try:
        map_fd = tb.create_map(16)
        prog_fd = tb.load(map_fd)
    except OSError as e:
        pytest.skip(f"BPF not available here: {e}")
    tb.put(map_fd, tb.flow_key("10.1.1.3", "1.1.1.9", 4000, 7000),
           tb.flow_value("1.1.1.1", "1.1.1.9", 20000, 7000, 5, NEXT_MAC, OUT_MAC))
    yield map_fd, prog_fd
    os.close(prog_fd)
    os.close(map_fd)


def frame(src="10.1.1.3", dst="1.1.1.9", sport=4000, dport=7000, ttl=64, chksum=None, **ip) -> bytes:
    udp = UDP(sport=sport, dport=dport) if chksum is None else UDP(sport=sport, dport=dport, chksum=chksum)
    return bytes(Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src=src, dst=dst, ttl=ttl, **ip)
                 / udp / Raw(b"\x80" * 172))


def _checksums_right(data: bytes) -> bool:
    p = Ether(data)
    again = p.copy()
    del again[IP].chksum
    del again[UDP].chksum
    again = Ether(bytes(again))
    return p[IP].chksum == again[IP].chksum and p[UDP].chksum == again[UDP].chksum


def test_a_flow_in_the_map_leaves_translated_and_redirected(loaded):
    map_fd, prog_fd = loaded
    rc, out = tb.test_run(prog_fd, frame())
    assert rc == TC_ACT_REDIRECT
    p = Ether(out)
    assert (p[IP].src, p[IP].dst, p[UDP].sport, p[UDP].dport, p[IP].ttl) == ("1.1.1.1", "1.1.1.9", 20000, 7000, 63)
    assert (p.dst, p.src) == (NEXT_MAC, OUT_MAC)
    assert _checksums_right(out)
    assert bytes(p[Raw]) == b"\x80" * 172
    value = tb.VALUE.unpack(tb.get(map_fd, tb.flow_key("10.1.1.3", "1.1.1.9", 4000, 7000)))
    assert value[7] >= 1 and value[8] >= len(out) - 14


def test_a_zero_udp_checksum_stays_zero(loaded):
    _map_fd, prog_fd = loaded
    rc, out = tb.test_run(prog_fd, frame(chksum=0))
    assert rc == TC_ACT_REDIRECT and Ether(out)[UDP].chksum == 0


@pytest.mark.parametrize("what", [dict(dport=7002), dict(src="10.1.1.4"), dict(ttl=1), dict(flags="MF"),
                                  dict(frag=8), dict(options=b"\x01\x01\x01\x01")])
def test_anything_else_goes_on_to_the_stack_untouched(loaded, what):
    _map_fd, prog_fd = loaded
    data = frame(**what)
    rc, out = tb.test_run(prog_fd, data)
    assert (rc, out) == (TC_ACT_OK, data)


def test_short_and_foreign_frames_go_on(loaded):
    _map_fd, prog_fd = loaded
    arp = bytes.fromhex("ffffffffffff02000000000a0806") + bytes(28)
    for data in (frame()[:40], arp):
        rc, out = tb.test_run(prog_fd, data)
        assert (rc, out) == (TC_ACT_OK, data)
