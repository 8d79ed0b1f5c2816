"""TPKT-framed signalling over TCP, packet by packet (H.225.0 call signalling
on TCP 1720 and H.245 on the connection to an h245Address; RFC 1006 §6).

The gateway stays packet-level on TCP (DESIGN.md, "A packet's way through",
step 1: a terminating proxy would not survive a failover), so it follows each
direction's byte stream by sequence number and frames it with
:func:`gateway.h323.tpkt.frame_tpkt`:

* a segment that completes one or more messages goes to the ALG with every
  complete message and its offset in the segment (negative when the message
  began in an earlier segment);
* a segment that only carries part of a message is forwarded unmodified (see
  below why it is not held) and its bytes are kept until the message is
  complete;
* H.323 rewrites keep the length (six octets for six octets), so no sequence
  or acknowledgement number ever changes;
* a retransmission (bytes below the next expected sequence number) leaves
  exactly as those bytes left the first time: patched from a small cache of
  what the ALG rewrote, dropped again if the ALG dropped them, dropped if the
  ALG has not answered for the original yet (the original is on its way);
* a segment beyond the next expected one (a gap: loss or reordering) is
  forwarded unmodified and counted; its bytes are kept, so once the gap is
  filled the messages they complete still reach the ALG (for its state: the
  bytes already left).

Why partial segments are forwarded, not held: a peer with Nagle's algorithm
(RFC 896; on by default) sends the rest of a message only once the part in
flight is acknowledged. Holding that part means the receiver never
acknowledges it, so the rest never comes until the sender's retransmission
timer fires: each split message would stall the call by an RTO or more. The
corpus capture has exactly this (a TPKT header sent alone, the body in the
next segment, which the Linux helper nf_conntrack_h323 also special-cases).
The price: an address inside bytes that already left cannot be rewritten; the
ALG's step says so in its log (``gateway.h323.segment``) and the case is
counted here (``split_messages``). Addresses sit in the message body, so the
common split (header alone, body after) loses nothing.

Pure: no clock, no I/O; one caller at a time (the datapath's lock).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gateway.errors import RemoteProtocolError
from gateway.h323.tpkt import TPKT_VERSION, frame_tpkt

_MOD = 1 << 32
_HALF = 1 << 31
# Per direction: what is remembered of rewritten/dropped segments for
# retransmissions, and of segments past a gap.
CACHE_ENTRIES = 32
MAX_OUT_OF_ORDER = 16
MAX_PENDING = 65536          # a TPKT message is at most 65535 octets


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


class _Side:
    """One direction of the connection."""

    __slots__ = ("next", "synced", "buffer", "out_of_order", "cache")

    def __init__(self) -> None:
        self.next: int | None = None         # next expected sequence number
        self.synced = False                  # message boundaries known
        self.buffer = b""                    # start of an incomplete message
        self.out_of_order: dict[int, bytes] = {}
        self.cache: deque[_Cached] = deque(maxlen=CACHE_ENTRIES)


@dataclass(frozen=True, slots=True, eq=False)
class SegmentWork:
    """A segment with complete messages, for the ALG.

    ``prefix``: the retransmitted part at the front of the segment, already
    as it left the first time (usually empty); ``data``: the rest, which the
    ALG may rewrite; ``messages``: ``(offset in data, whole TPKT message)``."""

    stream: "TpktStream"
    forward: bool
    seq: int
    prefix: bytes
    data: bytes
    messages: tuple[tuple[int, bytes], ...]
    cached: _Cached


class StreamStats:
    __slots__ = ("segments", "alg", "partial", "split_messages", "retransmitted", "out_of_order",
                 "unsynced", "not_tpkt", "held_retransmissions")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class TpktStream:
    """Both directions of one TCP connection carrying TPKT messages.
    ``forward`` is True for the direction of the packet that opened the
    session. ``channel`` says what the messages are ("q931" or "h245")."""

    __slots__ = ("channel", "sides", "stats")

    def __init__(self, channel: str, stats: StreamStats | None = None) -> None:
        self.channel = channel
        self.sides = (_Side(), _Side())
        self.stats = stats if stats is not None else StreamStats()

    def syn(self, forward: bool, seq: int) -> None:
        """A SYN: the data of this direction starts at ``seq + 1`` (the SYN
        takes one sequence number), at a message boundary."""
        side = self.sides[0 if forward else 1]
        side.next = (seq + 1) % _MOD
        side.synced = True
        side.buffer = b""
        side.out_of_order.clear()

    def segment(self, forward: bool, seq: int, payload: bytes):
        """One data segment: ``("forward", bytes)`` to send now (the payload,
        or a retransmission as it first left), ``("drop", reason)``, or
        ``("alg", SegmentWork)``."""
        st = self.stats
        st.segments += 1
        side = self.sides[0 if forward else 1]
        size = len(payload)
        if side.next is None:
            # The connection began before this node saw it (a capture that
            # starts mid-call, or a takeover): this segment is taken as the
            # start of a message, and checked below.
            side.next = seq
            side.synced = False
        rel = seq_diff(seq, side.next)
        if rel > 0:
            st.out_of_order += 1
            if len(side.out_of_order) < MAX_OUT_OF_ORDER:
                side.out_of_order[seq] = bytes(payload)
            return "forward", payload
        old = min(size, -rel)
        prefix = b""
        if old:
            st.retransmitted += 1
            patched = self._patch(side, seq, payload[:old])
            if patched is None:
                st.held_retransmissions += 1
                return "drop", "retransmission of a segment the H.323 ALG has not answered yet"
            if isinstance(patched, str):
                return "drop", patched
            if old == size:
                return "forward", patched
            prefix = patched
        data = payload[old:]
        start = (seq + old) % _MOD
        if not side.synced:
            try:
                msgs, rest = frame_tpkt(data)
            except RemoteProtocolError:
                msgs, rest = (), b"x"
            if not msgs and not (rest[:1] == bytes([TPKT_VERSION]) or not rest):
                # Not at a message boundary: pass, and look again at the next segment.
                st.unsynced += 1
                side.next = (start + len(data)) % _MOD
                return "forward", payload
            side.synced = True
            side.buffer = b""
        # Bytes kept from beyond a gap this segment closes follow it.
        end = (start + len(data)) % _MOD
        extra = b""
        while end in side.out_of_order:
            more = side.out_of_order.pop(end)
            extra += more
            end = (end + len(more)) % _MOD
        pending = side.buffer
        try:
            msgs, rest = frame_tpkt(pending + data + extra)
        except RemoteProtocolError as e:
            st.not_tpkt += 1
            # Not advanced: the retransmission meets the same verdict, and the
            # connection's signalling stops here (it cannot be resynchronised).
            for k in list(side.out_of_order):
                del side.out_of_order[k]
            return "drop", f"H.323 signalling over TCP: {e}"
        side.next = end
        if len(rest) > MAX_PENDING:
            rest = rest[-MAX_PENDING:]
        side.buffer = rest
        if not msgs:
            st.partial += 1
            return "forward", payload
        out: list[tuple[int, bytes]] = []
        pos = -len(pending)
        for m in msgs:
            if pos < 0 or pos + len(m) > len(data):
                st.split_messages += 1
            out.append((pos, m))
            pos += len(m)
        st.alg += 1
        cached = _Cached(start, bytes(data))
        side.cache.append(cached)
        return "alg", SegmentWork(self, forward, seq, bytes(prefix), bytes(data), tuple(out), cached)

    @staticmethod
    def finished(work: SegmentWork, final: bytes | None) -> None:
        """The ALG answered for ``work``: ``final`` is what left (None: dropped)."""
        c = work.cached
        c.pending = False
        c.final = final
        if final is not None and final == c.orig:
            # Nothing to patch in a retransmission: forget it.
            side = work.stream.sides[0 if work.forward else 1]
            try:
                side.cache.remove(c)
            except ValueError:
                pass

    @staticmethod
    def _patch(side: _Side, seq: int, old: bytes):
        """``old`` (bytes already seen once) as they left then: bytes, a
        reason to drop (str), or None while the ALG still holds them."""
        out = None
        n = len(old)
        for c in side.cache:
            off = seq_diff(c.start, seq)
            a, b = max(0, off), min(n, off + len(c.orig))
            if a >= b:
                continue
            if c.pending:
                return None
            if c.final is None:
                return "retransmission of H.323 signalling the ALG dropped"
            if old[a:b] != c.orig[a - off:b - off]:
                continue                    # other bytes (a keep-alive probe's filler)
            if out is None:
                out = bytearray(old)
            out[a:b] = c.final[a - off:b - off]
        return old if out is None else bytes(out)
