"""The numbers of framed TCP signalling (:mod:`gateway.datapath.tcp_stream`):
sequence arithmetic (RFC 793 §3.3), what each direction remembers for
retransmissions and past gaps, how much SIP holds back and retains, a
segment's cached bytes, and the counters of the streams."""

from __future__ import annotations

_MOD = 1 << 32
_HALF = 1 << 31
# Per direction: what is remembered of rewritten/dropped segments for
# retransmissions, and of segments past a gap.
CACHE_ENTRIES = 32
MAX_OUT_OF_ORDER = 16
MAX_PENDING = 65536          # a TPKT message is at most 65535 octets
# SIP: the most octets of one incomplete message held back (see SipStream).
SIP_HOLD_LIMIT = 1400
# SIP: the longest message reassembled from retained segments (``set sip
# tcp-max-message``; a 64 KiB SDP with its headers fits), the octets all
# connections together may retain, the segments of one message, and how
# long retained segments wait for the rest (under the ingest's 5 s verdict
# timeout, so the datapath forgets them before the kernel queue does).
SIP_MAX_MESSAGE = 131072
SIP_RETAINED_TOTAL = 8 << 20
SIP_MAX_PARTS = 128
SIP_RETAIN_SECONDS = 4.0


def seq_diff(a: int, b: int) -> int:
    """``a - b`` in sequence space (RFC 793 §3.3: modulo 2**32)."""
    return ((a - b + _HALF) % _MOD) - _HALF


class _Cached:
    """Bytes of a segment the ALG answered for (or still holds)."""

    __slots__ = ("start", "orig", "final", "pending")

    def __init__(self, start: int, orig: bytes) -> None:
        self.start = start
        self.orig = orig
        self.final: bytes | None = None      # None and not pending: dropped
        self.pending = True



class StreamStats:
    __slots__ = ("segments", "alg", "partial", "split_messages", "retransmitted", "out_of_order",
                 "unsynced", "not_tpkt", "held_retransmissions", "held", "hold_given_up",
                 "too_long_to_hold", "queued", "adjusted", "resegmented", "retained",
                 "retained_messages", "retained_octets", "retained_expired", "over_limit", "refused",
                 "retained_retransmissions")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
