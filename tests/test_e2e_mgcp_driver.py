"""The MGCP lab driver's pieces that need no root (ops/lab/mgcp.py): message
formatting and reading, the call agent's transactions over loopback sockets
(responses matched by transaction id, RFC 3435 3.5 retransmission, a
provisional response then the 000 acknowledgement, commands from the
gateway answered), osmo-mgw's configuration, and who is who in the manual's
chapter 3 examples."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from gateway.config import load_file
from ops.lab.mgcp import (
    CallAgent, MgcpTimeout, format_command, osmo_mgw_config, parse_message, rtp_packet, sdp_media,
    sdp_offer, translated_toward,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_command_format_is_rfc3435_with_crlf_and_sdp_after_an_empty_line():
    data = format_command("MDCX", 7, "rtpbridge/1@mgw", [("C", "AB"), ("I", "1F")],
                          sdp_offer("2.2.2.201", 4000))
    text = data.decode()
    head, _, body = text.partition("\r\n\r\n")
    assert head.split("\r\n") == ["MDCX 7 rtpbridge/1@mgw MGCP 1.0", "C: AB", "I: 1F"]
    assert "\n" not in body.replace("\r\n", "")
    assert sdp_media(body.replace("\r\n", "\n")) == ("2.2.2.201", 4000)
    assert format_command("AUEP", 1, "*@mgw", []) == b"AUEP 1 *@mgw MGCP 1.0\r\n"


def test_response_reading():
    first, words, params, sdp = parse_message(
        b"200 12 OK\r\nZ: rtpbridge/1@mgw\r\nI: 0EBC9323\r\n\r\nv=0\r\nc=IN IP4 3.3.3.110\r\n"
        b"m=audio 16002 RTP/AVP 8\r\n")
    assert words[:2] == ["200", "12"] and params == {"Z": "rtpbridge/1@mgw", "I": "0EBC9323"}
    assert sdp_media(sdp) == ("3.3.3.110", 16002)
    assert sdp_media("v=0\n") is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_reading_any_datagram_never_raises(data):
    first, words, params, sdp = parse_message(data)
    assert isinstance(params, dict) and isinstance(sdp, str)


def test_rtp_fixed_header():
    pkt = rtp_packet(70000, 0xABCDEF01)
    b0, pt, seq, ts, ssrc = struct.unpack_from("!BBHII", pkt)
    assert (b0 >> 6, pt, seq, ts, ssrc) == (2, 8, 70000 & 0xFFFF, 70000 * 160, 0xABCDEF01)
    assert len(pkt) == 12 + 160


class FakeGateway:
    """A loopback UDP peer answering the way the test says."""

    def __init__(self, answer) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.addr = self.sock.getsockname()
        self.answer = answer
        self.got: list[tuple[float, bytes]] = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self) -> None:
        end = time.monotonic() + 20
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            self.got.append((time.monotonic(), data))
            for out in self.answer(data, len(self.got)):
                self.sock.sendto(out, peer)

    def close(self) -> None:
        self.stop.set()
        self.t.join()
        self.sock.close()


def agent_for(gw: FakeGateway, **kw) -> CallAgent:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return CallAgent(s, gw.addr, **kw)


def tid_of(data: bytes) -> int:
    return int(data.split()[1])


def test_retransmits_with_doubling_timer_and_matches_by_transaction_id():
    # The gateway ignores the first two sends; it first answers a stale
    # transaction id, then the right one.
    def answer(data, n):
        if n < 3:
            return []
        tid = tid_of(data)
        return [f"200 {tid - 1} OK\r\n".encode(), f"200 {tid} OK\r\nI: 1\r\n".encode()]
    gw = FakeGateway(answer)
    ca = agent_for(gw, first_tid=500, rto=0.05)
    try:
        r = ca.crcx("rtpbridge/1@mgw", "A1", "recvonly")
    finally:
        gw.close()
        ca.close()
    assert r.code == 200 and r.tid == 500 and r.tries == 3 and r.get("I") == "1"
    assert len(ca.sent) == 3 and len(set(ca.sent)) == 1        # same bytes each time
    assert ca.stray == [b"200 499 OK\r\n"]
    gaps = [b[0] - a[0] for a, b in zip(gw.got, gw.got[1:])]
    assert gaps[1] > gaps[0] * 1.5                             # 50 ms, then 100 ms
    assert ca.next_tid == 501


def test_gives_up_after_max_tries():
    gw = FakeGateway(lambda data, n: [])
    ca = agent_for(gw, first_tid=1, rto=0.01, max_tries=3)
    try:
        with pytest.raises(MgcpTimeout, match="after 3 sends"):
            ca.auep("*@mgw")
    finally:
        gw.close()
        ca.close()
    assert len(gw.got) == 3


def test_provisional_stops_retransmission_and_final_is_acknowledged():
    def answer(data, n):
        if data.startswith(b"000"):
            return []
        tid = tid_of(data)
        return [f"100 {tid} pending\r\n".encode()]
    gw = FakeGateway(answer)
    ca = agent_for(gw, first_tid=42, rto=0.02)

    def late_final():
        time.sleep(0.3)
        gw.sock.sendto(b"200 42 OK\r\n", ca.sock.getsockname())
    t = threading.Thread(target=late_final)
    t.start()
    try:
        r = ca.mdcx("rtpbridge/1@mgw", "A1", "1", mode="sendrecv")
        t.join()
        time.sleep(0.1)
    finally:
        gw.close()
        ca.close()
    assert r.code == 200 and r.provisional and r.tries == 1
    # 3.5.6: no retransmission while provisional; the final is acknowledged.
    assert [d for _, d in gw.got] == [ca.sent[0], b"000 42\r\n"]


def test_commands_from_the_gateway_are_answered():
    def answer(data, n):
        tid = tid_of(data)
        return [b"NTFY 77 rtpbridge/1@mgw MGCP 1.0\r\nX: 1\r\nO: L/hu\r\n",
                f"250 {tid} OK\r\n".encode()]
    gw = FakeGateway(answer)
    ca = agent_for(gw, first_tid=9)
    try:
        r = ca.dlcx("rtpbridge/1@mgw", "A1", "1")
        time.sleep(0.1)
    finally:
        gw.close()
        ca.close()
    assert r.code == 250 and r.ok
    assert ca.commands_in and [d for _, d in gw.got][-1] == b"200 77 OK\r\n"


def test_osmo_mgw_configuration_binds_mgcp_and_rtp_to_the_host_address():
    cfg = osmo_mgw_config("3.3.3.110")
    lines = [ln.strip() for ln in cfg.splitlines()]
    assert "bind ip 3.3.3.110" in lines and "rtp bind-ip 3.3.3.110" in lines
    assert "bind port 2427" in lines and lines.count("bind 127.0.0.1") == 2   # vty, ctrl


def test_who_is_translated_toward_the_media_gateway_in_the_examples():
    isp = load_file(EXAMPLES / "ch3-isp-hosted-service.cfg")
    # The call agent leaves by its MIP, sf_gw by the egress interface (nat src).
    assert translated_toward(isp, "10.1.1.101", "3.3.3.110") == "3.3.3.101"
    assert translated_toward(isp, "2.2.2.201", "3.3.3.110") == "3.3.3.10"
    # Between the DMZ and the trust zone: route mode.
    assert translated_toward(isp, "10.1.1.101", "2.2.2.201") is None
    homes = load_file(EXAMPLES / "ch3-media-gateway-in-subscribers-homes.cfg")
    assert translated_toward(homes, "10.1.1.101", "2.2.2.101") is None
