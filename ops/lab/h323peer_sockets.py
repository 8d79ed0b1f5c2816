"""The H.323 peer's sockets: made inside a lab namespace or plain, and TPKT
framing (RFC 1006) read from a TCP connection with bounded waits."""

from __future__ import annotations

import select
import socket
import time

from ops.lab import h323msg as m

STEP_TIMEOUT = 10.0         # any one answer the peer waits for


class PeerError(RuntimeError):
    """The other side did not answer, or answered something unexpected."""


def make_socket(netns: str | None, kind: int, bind: tuple[str, int] | None = None,
                listen: bool = False) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if bind is not None:
                s.bind(bind)
            if listen:
                s.listen(64)
        except BaseException:
            s.close()
            raise
        return s
    if netns is None:
        return make()
    from ops.lab.mgcp import in_netns
    sock = in_netns(netns, make)
    assert isinstance(sock, socket.socket)
    return sock


class TpktReader:
    """TPKT messages from one TCP connection (RFC 1006 6), bounded waits."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.closed = False

    def read(self, timeout: float = STEP_TIMEOUT) -> bytes | None:
        """One framed message, or None at end of stream. Raises PeerError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[2:4], "big")
                if self.buf[0] != m.TPKT_VERSION or n < 4:
                    raise PeerError(f"not TPKT: {self.buf[:8].hex()}")
                if len(self.buf) >= n:
                    msg, self.buf = self.buf[:n], self.buf[n:]
                    return msg
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError("timed out waiting for a TPKT message")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, OSError):
                data = b""
            if not data:
                self.closed = True
            self.buf += data
