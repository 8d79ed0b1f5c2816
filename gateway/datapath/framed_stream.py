"""One TCP connection carrying framed signalling, both directions
(:mod:`gateway.datapath.tcp_stream` says how and why): each direction's
state, the segments that complete messages for the ALG
(:class:`SegmentWork`), the SIP segments retained until a message boundary
(:class:`Retained`), and the framing, retransmission and gap handling common
to TPKT and SIP (:class:`FramedStream`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gateway.datapath import resegment, seqadj
from gateway.datapath.stream_entry import SegmentEntry
from gateway.datapath.stream_limits import (
    CACHE_ENTRIES, MAX_OUT_OF_ORDER, MAX_PENDING, StreamStats, _Cached, _MOD, seq_diff,
)
from gateway.errors import RemoteProtocolError


class _Side:
    """One direction of the connection."""

    __slots__ = ("next", "synced", "buffer", "out_of_order", "cache", "adj", "held", "held_start",
                 "passing", "pending", "retained", "refused")

    def __init__(self, cache_entries: int = CACHE_ENTRIES) -> None:
        self.next: int | None = None         # next expected sequence number
        self.synced = False                  # message boundaries known
        self.buffer = b""                    # start of an incomplete message
        self.out_of_order: dict[int, bytes] = {}
        self.cache: deque[_Cached] = deque(maxlen=cache_entries)
        self.adj: seqadj.Adjust = seqadj.NONE   # this direction's sequence adjustment
        self.held = b""                      # octets held back (dropped, kept), from held_start
        self.held_start = 0
        self.passing = False                 # holding given up until a message completes
        self.pending = 0                     # segments at the ALG, not answered yet
        self.retained: Retained | None = None   # SIP: segments held until a message boundary
        self.refused = ""                    # SIP: why this direction's data is dropped for good


class Retained:
    """Segments of one direction of a SIP connection held without a verdict
    (the packets stay queued in the kernel) until their octets end at a
    message boundary; then the rewritten messages leave spread over them
    (:mod:`gateway.datapath.resegment`).

    ``start``: the sender's sequence number of ``data[0]``; ``data``: the
    octets in order from there; ``layout``: ``(start, length, work)`` of the
    segments whose octets are in ``data``, in sequence order; ``parts``: every
    retained segment's work (also ones past a gap not reached yet, and
    segments without data queued behind the message); ``since``: when the
    first was retained.

    The node (``handle_alg``) enters the release function of each retained
    segment with :meth:`wait`; the datapath, answering the segment that
    completes the messages, enters each one's verdict in ``verdicts``;
    :meth:`release` pairs them, in sequence order."""

    __slots__ = ("start", "data", "layout", "parts", "since", "waiting", "verdicts", "cached",
                 "outcomes", "messages", "gap")

    def __init__(self, start: int, since: float, cached: "_Cached") -> None:
        self.start = start
        self.data = bytearray()
        self.layout: list[tuple[int, int, SegmentWork | None]] = []   # None: the completing one
        self.messages: list[tuple[int, bytes]] = []    # complete ones, offsets in data
        self.gap: dict[int, SegmentWork] = {}          # retained past a gap, by sequence number
        self.parts: list[SegmentWork] = []
        self.since = since
        self.waiting: dict[int, object] = {}
        self.verdicts: dict[int, object] | None = None
        self.cached = cached
        self.outcomes: dict[int, object] = {}   # the datapath's outcome of each part

    def wait(self, work: "SegmentWork", release) -> None:
        self.waiting[id(work)] = release

    def release(self, final, work: "SegmentWork", release) -> list:
        """``(release, verdict)`` for every retained segment and for
        ``work`` (the segment that completed the messages, whose verdict is
        ``final``), in sequence order, the segments queued behind the
        messages last. Without verdicts (the messages were dropped) every
        segment takes ``final``, the drop."""
        order = [work if w is None else w for _s, _n, w in self.layout]
        if work not in order:
            order.append(work)
        order += [w for w in self.parts if w not in order]
        verdicts = self.verdicts or {}
        out = []
        for w in order:
            if w is work:
                out.append((release, final))
                continue
            done = self.waiting.pop(id(w), None)
            if done is not None:
                out.append((done, verdicts.get(id(w), final)))
        return out


@dataclass(frozen=True, slots=True, eq=False)
class SegmentWork:
    """A segment with complete messages, for the ALG.

    ``prefix``: the retransmitted part at the front of the segment, already
    as it left the first time (usually empty); ``data``: the rest, which the
    ALG may rewrite; ``messages``: ``(offset in data, whole message)``.
    ``start``: the sender's sequence number of ``data[0]`` (``data`` may
    begin with octets held back from earlier segments); the packet leaves
    with ``start - len(prefix)``, adjusted."""

    stream: "FramedStream"
    forward: bool
    seq: int
    prefix: bytes
    data: bytes
    messages: tuple[tuple[int, bytes], ...]
    cached: _Cached | None
    start: int = 0
    # SIP, segments retained for a message longer than one (SipStream):
    # ``part``: this one only waits for the rest (no ALG); the completing
    # one has the ``layout`` ((start, length) of every segment its ``data``
    # came in, in sequence order) and the ``retained`` set they belong to.
    layout: tuple[tuple[int, int], ...] = ()
    retained: "Retained | None" = None
    part: bool = False

    def regions(self) -> tuple[tuple[int, int], ...]:
        return self.layout or ((self.start, len(self.data)),)

    @property
    def emit_seq(self) -> int:
        return (self.start - len(self.prefix)) % _MOD



class FramedStream(SegmentEntry):
    """Both directions of one TCP connection carrying framed messages.
    ``forward`` is True for the direction of the packet that opened the
    session. ``channel`` says what the messages are.

    Subclasses give the framing (:meth:`_frame`, :meth:`_boundary`) and say
    whether partial messages are held (``hold_limit``) and whether the ALG
    may change lengths (``rewrites_length``: then segments of a direction
    that has one at the ALG queue behind it, so that each leaves with the
    sequence adjustment of everything before it)."""

    __slots__ = ("channel", "sides", "stats")
    protocol = ""
    hold_limit = 0
    rewrites_length = False

    def __init__(self, channel: str, stats: StreamStats | None = None) -> None:
        self.channel = channel
        self.sides = (_Side(), _Side())
        self.stats = stats if stats is not None else StreamStats()

    # -- framing hooks -----------------------------------------------------------

    def _frame(self, buf: bytes) -> tuple[list[bytes], bytes]:
        raise NotImplementedError

    def _boundary(self, data: bytes) -> bool:
        """Does ``data`` (first seen mid-stream) begin at a message boundary?"""
        raise NotImplementedError

    def _pending_size(self, rest: bytes) -> int | None:
        return None

    def close(self) -> None:
        """The connection's session is gone."""

    # -- segments ----------------------------------------------------------------

    def side(self, forward: bool) -> _Side:
        return self.sides[0 if forward else 1]


    def _segment(self, side: _Side, forward: bool, seq: int, payload: bytes):
        st = self.stats
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
            return self._out(side, forward, seq, payload)
        old = min(size, -rel)
        prefix = b""
        if old:
            st.retransmitted += 1
            patched = self._patch(side, seq, payload[:old])
            if patched is None:
                st.held_retransmissions += 1
                return "drop", f"retransmission of a segment the {self.protocol} ALG has not answered yet"
            if isinstance(patched, str):
                return "drop", patched
            if old == size:
                return self._out(side, forward, seq, patched)
            prefix = patched
        data = payload[old:]
        start = (seq + old) % _MOD
        if not side.synced:
            if not self._boundary(data):
                # Not at a message boundary: pass, and look again at the next segment.
                st.unsynced += 1
                side.next = (start + len(data)) % _MOD
                return self._out(side, forward, seq, payload)
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
            msgs, rest = self._frame(pending + data + extra)
        except RemoteProtocolError as e:
            st.not_tpkt += 1
            # Not advanced: the retransmission meets the same verdict, and the
            # connection's signalling stops here (it cannot be resynchronised).
            side.out_of_order.clear()
            return "drop", f"{self.protocol} signalling over TCP: {e}"
        if len(rest) > MAX_PENDING:
            rest = rest[-MAX_PENDING:]
        if not msgs:
            st.partial += 1
            if side.held:
                total = side.held + data
                known = self._pending_size(rest)
                if not extra and len(total) <= self.hold_limit and (known is None or known <= self.hold_limit):
                    side.held = total
                    side.buffer = rest
                    side.next = end
                    st.held += 1
                    return "hold", f"part of a {self.protocol} message, held until the rest arrives"
                # Held octets and this segment would not leave in one packet:
                # this one is forgotten (its sender sends it again), and the
                # retransmission of the held ones ends the holding (above).
                st.too_long_to_hold += 1
                return "drop", f"{self.protocol} message too long to hold back; awaiting retransmission"
            side.next = end
            side.buffer = rest
            if self.hold_limit and not pending and not prefix and not extra and not side.passing:
                known = self._pending_size(rest)
                if len(data) <= self.hold_limit and (known is None or known <= self.hold_limit):
                    side.held = bytes(data)
                    side.held_start = start
                    st.held += 1
                    return "hold", f"part of a {self.protocol} message, held until the rest arrives"
            return self._out(side, forward, seq, payload)
        side.next = end
        side.buffer = rest
        side.passing = False
        if side.held:
            pos = len(side.held) - len(pending)
            data = side.held + data
            start = side.held_start
            side.held = b""
        else:
            pos = -len(pending)
        out: list[tuple[int, bytes]] = []
        for m in msgs:
            if pos < 0 or pos + len(m) > len(data):
                st.split_messages += 1
            out.append((pos, m))
            pos += len(m)
        st.alg += 1
        cached = _Cached(start, bytes(data))
        side.cache.append(cached)
        side.pending += 1
        return "alg", SegmentWork(self, forward, seq, bytes(prefix), bytes(data), tuple(out), cached,
                                  start)

    def _out(self, side: _Side, forward: bool, seq: int, payload: bytes):
        """A segment to forward as it is: at once, or, where the ALG may
        change lengths and holds an earlier segment of this direction, behind
        that one (its sequence number depends on the ALG's answer)."""
        if self.rewrites_length and side.pending:
            self.stats.queued += 1
            side.pending += 1
            return "alg", SegmentWork(self, forward, seq, b"", bytes(payload), (), None, seq)
        return "forward", payload

    @staticmethod
    def finished(work: SegmentWork, final: bytes | None) -> None:
        """The ALG answered for ``work``: ``final`` is what left (None: dropped).
        A change of length is entered in the direction's sequence adjustment."""
        side = work.stream.sides[0 if work.forward else 1]
        side.pending = max(0, side.pending - 1)
        c = work.cached
        if c is None:
            return
        c.pending = False
        c.final = final
        if final is not None and len(final) != len(work.data):
            work.stream.stats.adjusted += 1
            for position, change in resegment.changes(work.regions(), len(final)):
                side.adj = seqadj.add(side.adj, position, change)
        if final is not None and work.layout:
            # Each segment's share as it left, for its retransmission.
            try:
                side.cache.remove(c)
            except ValueError:
                pass
            pos = 0
            for (start, n), m in zip(work.layout, resegment.spread([n for _s, n in work.layout],
                                                                 len(final))):
                off = seq_diff(start, work.start)
                piece = _Cached(start, work.data[off:off + n])
                piece.final = final[pos:pos + m]
                piece.pending = False
                pos += m
                if piece.final != piece.orig:
                    side.cache.append(piece)
            return
        if final is not None and final == c.orig:
            # Nothing to patch in a retransmission: forget it.
            try:
                side.cache.remove(c)
            except ValueError:
                pass

    def _patch(self, side: _Side, seq: int, old: bytes):
        """``old`` (bytes already seen once) as they left then: bytes, a
        reason to drop (str), or None while the ALG still holds them."""
        out = None
        n = len(old)
        moved: list[tuple[int, int, bytes]] = []
        for c in side.cache:
            off = seq_diff(c.start, seq)
            a, b = max(0, off), min(n, off + len(c.orig))
            if a >= b:
                continue
            if c.pending:
                return None
            if c.final is None:
                return f"retransmission of {self.protocol} signalling the ALG dropped"
            if len(c.final) != len(c.orig):
                # A rewrite that changed the length can only be repeated
                # whole: the retransmission must cover the segment it was.
                if a != off or b != off + len(c.orig):
                    self.stats.resegmented += 1
                    return (f"retransmission re-segmented across a rewritten {self.protocol} "
                            "message")
                if old[a:b] == c.orig:
                    moved.append((a, b, c.final))
                continue
            if old[a:b] != c.orig[a - off:b - off]:
                continue                    # other bytes (a keep-alive probe's filler)
            if out is None:
                out = bytearray(old)
            out[a:b] = c.final[a - off:b - off]
        res = old if out is None else bytes(out)
        for a, b, final in sorted(moved, reverse=True):
            res = res[:a] + final + res[b:]
        return res
