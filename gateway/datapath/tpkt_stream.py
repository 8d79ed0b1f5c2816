"""TPKT framing of a TCP signalling connection (H.225.0 call signalling and
H.245; RFC 1006 §6): messages never held, never resized
(:mod:`gateway.datapath.tcp_stream`)."""

from __future__ import annotations

from gateway.datapath.framed_stream import FramedStream
from gateway.errors import RemoteProtocolError
from gateway.h323.tpkt import TPKT_VERSION, frame_tpkt


class TpktStream(FramedStream):
    """TPKT messages (H.225.0 Q.931, H.245): never held, never resized."""

    __slots__ = ()
    protocol = "H.323"

    def _frame(self, buf: bytes):
        return frame_tpkt(buf)

    def _boundary(self, data: bytes) -> bool:
        try:
            msgs, rest = frame_tpkt(data)
        except RemoteProtocolError:
            return False
        return bool(msgs) or rest[:1] == bytes([TPKT_VERSION]) or not rest
