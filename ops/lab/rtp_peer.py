"""RTP for the lab's calls: RFC 3550 fixed-header packets with a PCMA payload,
sent and counted on a plain UDP socket inside a namespace; every loop is bounded."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

from ops.lab.netns_socket import ns_socket

PCMA = 8
RTP_PAYLOAD = b"\xd5" * 160     # 20 ms of A-law silence


def rtp_packet(seq: int, ssrc: int, payload: bytes = RTP_PAYLOAD) -> bytes:
    """RFC 3550 5.1 fixed header: V=2, PT 8 (PCMA), 160 samples per packet."""
    return struct.pack("!BBHII", 0x80, PCMA, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


@dataclass
class RtpPeer:
    """An RTP endpoint on one UDP socket inside a namespace."""

    netns: str
    address: tuple[str, int]
    ssrc: int
    sock: socket.socket = field(init=False)
    seq: int = 0
    received: list[tuple[tuple[str, int], int]] = field(default_factory=list)  # (source, ssrc)

    def __post_init__(self) -> None:
        self.sock = ns_socket(self.netns, self.address)
        self.sock.setblocking(False)

    def send(self, to: tuple[str, int], n: int = 1) -> None:
        for _ in range(n):
            self.sock.sendto(rtp_packet(self.seq, self.ssrc), to)
            self.seq += 1

    def drain(self) -> int:
        got = 0
        while True:
            try:
                data, peer = self.sock.recvfrom(2048)
            except BlockingIOError:
                return got
            if len(data) >= 12 and data[0] >> 6 == 2:
                self.received.append((peer, struct.unpack_from("!I", data, 8)[0]))
                got += 1

    def take(self) -> list[tuple[tuple[str, int], int]]:
        self.drain()
        out, self.received = self.received, []
        return out

    def close(self) -> None:
        self.sock.close()


def exchange(a: RtpPeer, a_to: tuple[str, int], b: RtpPeer, b_to: tuple[str, int], *,
             packets: int = 20, interval: float = 0.01, settle: float = 0.3
             ) -> tuple[list, list]:
    """``a`` sends to ``a_to`` and ``b`` to ``b_to``, ``packets`` each (alternating,
    ``interval`` apart); returns (what b received, what a received) as
    (source, ssrc) lists, counted after a short settle time."""
    a.take()
    b.take()
    for _ in range(packets):
        a.send(a_to)
        b.send(b_to)
        time.sleep(interval)
        a.drain()
        b.drain()
    end = time.monotonic() + settle
    while time.monotonic() < end:
        time.sleep(0.02)
        a.drain()
        b.drain()
    return b.take(), a.take()
