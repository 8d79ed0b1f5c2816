"""One H.323 call as one side sees it: :class:`CallLeg`, its record, and
:class:`Q931`, the messages on its call signalling connection."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field

from ops.lab import h323msg as m
from ops.lab.h323peer_sockets import STEP_TIMEOUT, PeerError, TpktReader


@dataclass
class CallLeg:
    """What one side of one call saw."""

    role: str                       # "caller" / "callee"
    mode: str
    guid: str = ""
    steps: list[str] = field(default_factory=list)
    connected: bool = False
    media_to: str | None = None     # where this side sent RTP (as signalled by the other)
    rtp_sent: int = 0
    rtp_received: int = 0
    rtp_sources: list[str] = field(default_factory=list)
    released: bool = False          # ReleaseComplete sent/received, H.245 closed, DCF
    error: str | None = None


class Q931:
    """Q.931 messages on one call signalling connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = TpktReader(sock)
        self.tunnelled: list[bytes] = []        # h245Control items not yet consumed
        self.release_seen = False

    def send(self, mtype: int, cr: int, from_dest: bool, body, *, tunnelling: bool = False,
             h245: list[bytes] | None = None, extra: bytes = b"") -> None:
        self.sock.sendall(m.q931(mtype, cr, from_dest, m.uuie(body, tunnelling=tunnelling, h245=h245), extra))

    def read(self, timeout: float = STEP_TIMEOUT):
        msg = self.reader.read(timeout)
        if msg is None:
            raise PeerError("call signalling connection closed")
        out = m.parse_q931(msg)
        if out[2] == m.RELEASE_COMPLETE:
            self.release_seen = True
        return out

    def has_release(self) -> bool:
        """Non-blocking: has a ReleaseComplete arrived (or the connection closed)?"""
        while True:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r and len(self.reader.buf) < 4:
                return self.release_seen
            try:
                msg = self.reader.read(0.01)
            except PeerError:
                return self.release_seen
            if msg is None:
                return True
            if m.parse_q931(msg)[2] == m.RELEASE_COMPLETE:
                self.release_seen = True

    def wait_release(self, leg: CallLeg, timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.release_seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError("no ReleaseComplete from the caller")
            msg = self.reader.read(left)
            if msg is None:
                raise PeerError("connection closed without a ReleaseComplete")
            if m.parse_q931(msg)[2] == m.RELEASE_COMPLETE:
                self.release_seen = True
        leg.steps.append("releaseComplete")
        leg.released = True

    def wait_closed(self, timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.reader.closed and time.monotonic() < deadline:
            try:
                self.reader.read(max(0.0, deadline - time.monotonic()))
            except PeerError:
                break
