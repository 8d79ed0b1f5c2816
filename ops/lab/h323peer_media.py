"""The H.323 peer's RTP: G.711 A-law in 20 ms packets (RFC 3550 header, RFC
3551 PT 8) sent to the signalled address while what arrives is counted."""

from __future__ import annotations

import random
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable

PCMA = 8
FRAME = 0.020               # 20 ms packets
PAYLOAD = b"\xd5" * 160     # 20 ms of A-law silence at 8 kHz


@dataclass
class Media:
    """One side's RTP and RTCP sockets (RTCP bound so nothing answers it
    with ICMP; RTP port even, RTCP the next, RFC 3550 11)."""

    sock: socket.socket
    rtcp: socket.socket
    address: tuple[str, int]
    sent: int = 0
    received: int = 0
    sources: set = field(default_factory=set)

    @property
    def rtcp_address(self) -> tuple[str, int]:
        return self.address[0], self.address[1] + 1

    def close(self) -> None:
        self.sock.close()
        self.rtcp.close()


def rtp_packet(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, PCMA, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + PAYLOAD


def play(media: Media, to: tuple[str, int], seconds: float, stop: Callable[[], bool] = lambda: False
         ) -> None:
    """Send 20 ms packets to ``to`` for ``seconds`` and count what arrives
    meanwhile, then drain for a short while (the other side's last packets)."""
    ssrc = random.getrandbits(32)
    start = time.monotonic()
    n = int(seconds / FRAME)
    for i in range(n):
        if stop():
            break
        try:
            media.sock.sendto(rtp_packet(i, ssrc), to)
            media.sent += 1
        except OSError:
            pass                    # e.g. ICMP unreachable reported on the socket: counted as not sent
        _receive(media, start + (i + 1) * FRAME)
    _receive(media, time.monotonic() + 0.3)


def _receive(media: Media, until: float) -> None:
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([media.sock], [], [], left)
        if not r:
            return
        try:
            data, peer = media.sock.recvfrom(2048)
        except OSError:
            continue
        if len(data) >= 12 and data[0] >> 6 == 2 and data[1] & 0x7F == PCMA:
            media.received += 1
            media.sources.add(f"{peer[0]}:{peer[1]}")
