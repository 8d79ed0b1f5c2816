"""Framed signalling over TCP, packet by packet: TPKT (H.225.0 call
signalling on TCP 1720 and H.245 on the connection to an h245Address; RFC
1006 §6) and SIP (Content-Length framing, RFC 3261 §18.3). One base,
:class:`FramedStream`; :class:`TpktStream` and :class:`SipStream` give the
framing and differ in two choices, explained at the end.

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

SIP differs (:class:`SipStream`):

* a SIP rewrite changes lengths (a private address and port for a public
  one, and the Content-Length with them), so the stream keeps per direction
  the sequence adjustment of :mod:`gateway.datapath.seqadj`, and segments of
  a direction that has a segment at the ALG queue behind it (an ``alg``
  outcome with no messages): each leaves in order, with the adjustment of
  every rewrite before it; so do segments without data (acknowledgements,
  FIN, RST), whose sequence number lies after the queued data. A retransmission of a segment whose length the
  ALG changed leaves as its first copy did, at the same adjusted number; one
  re-segmented across such a rewrite is dropped (counted ``resegmented``).
* a partial message is never forwarded before the ALG has seen it whole
  (forwarding the first part would fix its Content-Length and addresses
  before the ALG saw the rest, and a rewrite of the rest would then corrupt
  the stream). While the message (as far as known: its Content-Length once
  the headers are in) is at most :data:`SIP_HOLD_LIMIT` octets, the part is
  held back: the segment is dropped and its octets kept, and the segment
  that completes the message leaves carrying all of it from the first held
  octet, in one packet under an Ethernet MTU. A SIP stack writes a message
  with one send, so a split mostly means a message longer than one segment,
  whose parts the sender sends back to back (Linux's Nagle test lets a
  segment after a full-sized one go, RFC 896 as amended by Minshall).
* a longer message, up to ``set sip tcp-max-message`` octets, is
  reassembled from *retained* segments (:class:`Retained`): each is given
  no verdict yet (the kernel keeps the packet queued; the receiver has not
  acknowledged it, so the sender still holds it for retransmission), and
  once the octets reach a message boundary the ALG gets every message of
  the set and the rewritten octets leave spread over the same segments at
  their own places in the sequence space (:mod:`gateway.datapath.resegment`).
  The sender's window must hold the whole message (an initial window of
  ten segments, RFC 6928, holds about 14 KB; a longer message on a fresh
  connection waits for the sender's retransmission timer and its window
  growth, see :class:`SipStream`). If the sender retransmits octets held
  back to leave coalesced (it waits for their acknowledgement), the
  retransmission is retained the same way: nothing passes uninspected.
  Over the limit, unframeable, or in too many segments, the direction's
  signalling stops (every later data segment dropped, with the reason):
  never forwarded in parts.

Pure: no clock, no I/O; one caller at a time (the datapath's lock).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gateway.datapath import resegment, seqadj
from gateway.errors import RemoteProtocolError
from gateway.h323.tpkt import TPKT_VERSION, frame_tpkt
from gateway.sip.framing import frame_stream, pending_size

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


class FramedStream:
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

    def syn(self, forward: bool, seq: int) -> None:
        """A SYN: the data of this direction starts at ``seq + 1`` (the SYN
        takes one sequence number), at a message boundary."""
        side = self.sides[0 if forward else 1]
        side.next = (seq + 1) % _MOD
        side.synced = True
        side.buffer = b""
        side.held = b""
        side.out_of_order.clear()

    def segment(self, forward: bool, seq: int, payload: bytes):
        """One data segment: ``("forward", bytes)`` to send now (the payload,
        or a retransmission as it first left), ``("drop", reason)``,
        ``("hold", reason)`` (dropped now, its octets kept to leave with the
        rest of their message), or ``("alg", SegmentWork)``."""
        st = self.stats
        st.segments += 1
        side = self.sides[0 if forward else 1]
        if side.held and seq_diff(seq, side.held_start) > 0 and seq_diff(seq, side.next) < 0:
            # A copy of a held part other than the first: a sender
            # retransmits from its oldest unacknowledged octet (RFC 9293
            # 3.8.1), the first held one, so this is a duplicate the network
            # made. Dropped; the holding goes on (ending it here would
            # discard the held octets with no retransmission of the first
            # ones to come and refill them).
            self.stats.segments += 1
            self.stats.held_retransmissions += 1
            return "drop", "duplicate of octets held until the rest of their SIP message arrives"
        if side.held and seq_diff((seq + len(payload)) % _MOD, side.held_start) > 0 \
                and seq_diff(seq, side.next) < 0:
            # The sender retransmits octets the gateway holds back: it waits
            # for their acknowledgement (Nagle's algorithm, RFC 896, or a
            # full window). Holding longer would stall it again; the message
            # passes as it comes, unrewritable where it left unrewritten.
            st.hold_given_up += 1
            side.next = side.held_start
            side.buffer = b""
            side.held = b""
            side.passing = True
        return self._segment(side, forward, seq, payload)

    def empty(self, forward: bool, seq: int):
        """A segment without data (an acknowledgement, FIN or RST; not a
        SYN): ``("forward", b"")``, or ``("alg", SegmentWork)`` behind a
        segment of its direction still at the ALG. Its sequence number lies
        after that segment's data, so it takes that segment's change of
        length; leaving at once it would overtake the data and name a number
        inside it (Linux's seqadj sees a connection's packets in order)."""
        return self._out(self.sides[0 if forward else 1], forward, seq, b"")

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


def _starts_sip(data: bytes) -> bool:
    body = data.lstrip(b"\r\n")
    if not body:
        return True
    line_end = body.find(b"\n", 0, 512)
    if line_end < 0:
        # A start line cut short: its beginning says enough.
        return body[:8] == b"SIP/2.0 "[:len(body[:8])] or (body[:1].isalpha() and body[:1].isupper()
                                                             and b" " in body[:32])
    line = body[:line_end].rstrip(b"\r")
    return line.startswith(b"SIP/2.0 ") or line.endswith(b" SIP/2.0")


class SipStream(FramedStream):
    """SIP messages framed by Content-Length (RFC 3261 §18.3); rewrites may
    change lengths.

    A message split over segments is held until it is whole, in one of two
    ways. Up to :data:`SIP_HOLD_LIMIT` octets (the module docstring): the
    parts are dropped and kept, and leave coalesced with the segment that
    completes the message, in one packet under an Ethernet MTU. Longer, up
    to ``max_message`` octets (``set sip tcp-max-message``): the segments are
    *retained* (:class:`Retained`): each is an ``alg`` outcome marked
    ``part`` that the node keeps without a verdict (the kernel keeps the
    packet queued, unacknowledged by the receiver, so the sender's
    retransmission timer covers a loss here); the segment whose octets end at
    a message boundary goes to the ALG with every message of the set, and
    the rewritten octets leave spread over all of them, each at its place
    in the sequence space (:mod:`gateway.datapath.resegment`). Segments past
    a gap are retained the same way (their octets join once the gap is
    filled), as are segments queued behind the set (acknowledgements,
    FIN). A retransmission of a retained segment is dropped (the original
    is still queued); after the release one leaves as its segment's share
    did (the retransmission cache holds each segment's share).

    Never fail open: a message over ``max_message``, more than
    :data:`SIP_MAX_PARTS` segments, or bytes that cannot be framed stop
    this direction's signalling (every later data segment is dropped with
    the reason: a TCP stream cannot skip a message). Retained octets are
    bounded per connection (the message) and for all connections
    (``retained_total``: over it the segment is dropped and the sender
    retransmits it), and a set waits at most :data:`SIP_RETAIN_SECONDS`:
    then it is forgotten (its packets are dropped by the ingest's verdict
    timeout) and the sender's retransmission starts it again. A takeover
    loses a set the same way: the packets were queued on the failed node,
    the sender retransmits, and the new active retains them afresh (nothing
    of a retained set was ever forwarded, so no sequence adjustment is
    missing)."""

    __slots__ = ("max_message", "retained_total", "holding")
    protocol = "SIP"
    hold_limit = SIP_HOLD_LIMIT
    rewrites_length = True

    def __init__(self, stats: StreamStats | None = None, max_message: int = SIP_MAX_MESSAGE,
                 retained_total: int = SIP_RETAINED_TOTAL, holding: set | None = None) -> None:
        """``holding``: the datapath's set of streams with retained segments,
        swept by :meth:`expire` (a connection that stops sending keeps no
        retained octets past the hold time)."""
        super().__init__("sip", stats)
        self.holding = holding
        # Each segment of a released set is one cache entry (its share).
        self.sides = (_Side(CACHE_ENTRIES + SIP_MAX_PARTS), _Side(CACHE_ENTRIES + SIP_MAX_PARTS))
        self.max_message = max_message
        self.retained_total = retained_total

    def _frame(self, buf: bytes):
        return frame_stream(buf)

    def _boundary(self, data: bytes) -> bool:
        return _starts_sip(data)

    def _pending_size(self, rest: bytes) -> int | None:
        return pending_size(rest)

    def restore(self, forward: bool, adj: seqadj.Adjust) -> None:
        """A direction's sequence adjustment from the journaled state (takeover)."""
        self.sides[0 if forward else 1].adj = adj

    # -- retained segments ---------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget retained sets older than :data:`SIP_RETAIN_SECONDS`."""
        for side in self.sides:
            r = side.retained
            if r is not None and now - r.since > SIP_RETAIN_SECONDS:
                self.stats.retained_expired += 1
                self._forget(side)

    def close(self) -> None:
        for side in self.sides:
            if side.retained is not None:
                self._forget(side)

    def _unhold(self) -> None:
        if self.holding is not None and all(sd.retained is None for sd in self.sides):
            self.holding.discard(self)

    def segment(self, forward: bool, seq: int, payload: bytes, now: float = 0.0):
        side = self.sides[0 if forward else 1]
        if side.refused:
            self.stats.segments += 1
            return "drop", side.refused
        self.expire(now)
        if (side.next is None or not side.synced) and payload and not side.held \
                and _starts_sip(payload) and (side.next is None or seq_diff(seq, side.next) >= 0):
            # First seen mid-stream (a takeover: the sender retransmits what
            # the failed node held, from a message's start): in step from here.
            side.next = seq
            side.synced = True
            side.buffer = b""
            side.out_of_order.clear()
        if not side.synced or side.passing or side.next is None:
            return super().segment(forward, seq, payload)
        if side.held and seq_diff(seq, side.held_start) > 0 and seq_diff(seq, side.next) < 0:
            # A copy of a held part other than the first: a sender
            # retransmits from its oldest unacknowledged octet (RFC 9293
            # 3.8.1), the first held one, so this is a duplicate the network
            # made. Dropped; the holding goes on (ending it here would
            # discard the held octets with no retransmission of the first
            # ones to come and refill them).
            self.stats.segments += 1
            self.stats.held_retransmissions += 1
            return "drop", "duplicate of octets held until the rest of their SIP message arrives"
        if side.held and seq_diff((seq + len(payload)) % _MOD, side.held_start) > 0 \
                and seq_diff(seq, side.next) < 0:
            # The sender retransmits octets held to leave coalesced: it waits
            # for their acknowledgement. Letting the message pass in parts
            # would forward octets the ALG never saw; instead the
            # retransmission is retained (it carries those octets again) and
            # the message leaves once whole. A sender that sends nothing more
            # before that acknowledgement (Nagle after a small first write)
            # stalls until the set expires: the price of never failing open.
            self.stats.hold_given_up += 1
            side.next = side.held_start
            side.buffer = b""
            side.held = b""
            self._retained_set(side, now)
        rel = seq_diff(seq, side.next)
        if rel > 0:
            self.stats.segments += 1
            return self._past_gap(side, forward, seq, payload, now)
        r = side.retained
        if r is not None and rel < 0 and seq_diff((seq + len(payload)) % _MOD, r.start) > 0:
            # The original is retained, still without a verdict. A sender
            # retransmits it when its timer fires: the rest of the message
            # is lost, or does not fit in its window (the message leaves only
            # once whole; nothing acknowledges the retained octets).
            self.stats.segments += 1
            self.stats.retained_retransmissions += 1
            return "drop", ("retransmission of a retained SIP segment: its message is not whole "
                            "yet (the rest lost, or the message larger than the sender's window)")
        old = min(len(payload), -rel)
        if old == len(payload) or side.buffer and not side.held and side.retained is None:
            return super().segment(forward, seq, payload)
        if side.retained is None:
            # Whole messages, or a small part to coalesce: as before.
            data = payload[old:]
            try:
                msgs, rest = frame_stream(side.buffer + data)
            except RemoteProtocolError:
                return super().segment(forward, seq, payload)
            if not rest or (not msgs and self._coalesces(side, old, data, rest)):
                return super().segment(forward, seq, payload)
        self.stats.segments += 1
        return self._retain_in_order(side, forward, seq, payload, old, now)

    def _coalesces(self, side: _Side, old: int, data: bytes, rest: bytes) -> bool:
        """The base's test for holding a part to leave coalesced (dropped, kept)."""
        known = pending_size(rest)
        limit = self.hold_limit
        if side.held:
            return len(side.held) + len(data) <= limit and (known is None or known <= limit)
        return (not side.buffer and not old and len(data) <= limit
                and (known is None or known <= limit))

    def _out(self, side: _Side, forward: bool, seq: int, payload: bytes):
        r = side.retained
        if r is not None:
            # Behind retained octets: its number depends on their rewrite.
            work = SegmentWork(self, forward, seq, b"", bytes(payload), (), None, seq,
                               retained=r, part=True)
            r.parts.append(work)
            self.stats.queued += 1
            return "alg", work
        return super()._out(side, forward, seq, payload)

    def _retained_set(self, side: _Side, now: float) -> Retained:
        r = side.retained
        if r is None:
            start = side.held_start if side.held else side.next
            cached = _Cached(start, b"")
            side.cache.append(cached)
            r = side.retained = Retained(start, now, cached)
            self.stats.retained_messages += 1
            if self.holding is not None:
                self.holding.add(self)
        return r

    def _room(self, side: _Side, octets: int) -> str:
        """Why ``octets`` more cannot be retained ("" when they can)."""
        r = side.retained
        if r is not None and len(r.parts) >= SIP_MAX_PARTS:
            return self._refuse(side, f"SIP message in more than {SIP_MAX_PARTS} segments: "
                                      "not reassembled; this direction's signalling stops")
        if self.stats.retained_octets + octets > self.retained_total:
            # Every connection's retained octets together: this segment is
            # dropped, its sender sends it again once some are released.
            return (f"SIP over TCP: {self.retained_total} octets already retained for "
                    "incomplete messages; segment dropped, its sender retransmits it")
        return ""

    def _refuse(self, side: _Side, reason: str) -> str:
        """Stop this direction's signalling: nothing of it is forwarded again."""
        if side.retained is not None:
            self._forget(side)
        side.refused = reason
        self.stats.refused += 1
        return reason

    def _forget(self, side: _Side) -> None:
        """Drop a retained set's state (expired, refused): its packets get
        the ingest's timeout drop, and the sender retransmits the octets."""
        r = side.retained
        side.retained = None
        self.stats.retained_octets -= len(r.data) + sum(len(w.data) for w in r.gap.values())
        side.out_of_order.clear()
        side.next = r.start
        side.buffer = b""
        side.held = b""
        try:
            side.cache.remove(r.cached)
        except ValueError:
            pass
        self._unhold()

    def _past_gap(self, side: _Side, forward: bool, seq: int, payload: bytes, now: float):
        st = self.stats
        st.out_of_order += 1
        if seq in side.out_of_order:
            return "drop", "SIP segment past a gap: a copy is retained already"
        if len(side.out_of_order) >= MAX_OUT_OF_ORDER \
                or seq_diff((seq + len(payload)) % _MOD, side.next) > 2 * self.max_message:
            return "drop", "SIP segment too far past a gap to retain; its sender retransmits it"
        why = self._room(side, len(payload))
        if why:
            return "drop", why
        r = self._retained_set(side, now)
        side.out_of_order[seq] = bytes(payload)
        work = SegmentWork(self, forward, seq, b"", bytes(payload), (), None, seq,
                           retained=r, part=True)
        r.gap[seq] = work
        r.parts.append(work)
        st.retained += 1
        st.retained_octets += len(payload)
        return "alg", work

    def _retain_in_order(self, side: _Side, forward: bool, seq: int, payload: bytes, old: int,
                         now: float):
        st = self.stats
        prefix = b""
        if old:
            st.retransmitted += 1
            patched = self._patch(side, seq, payload[:old])
            if patched is None:
                st.held_retransmissions += 1
                return "drop", "retransmission of a segment the SIP ALG has not answered yet"
            if isinstance(patched, str):
                return "drop", patched
            prefix = patched
        data = payload[old:]
        start = (seq + old) % _MOD
        end = (start + len(data)) % _MOD
        pulled: list[int] = []
        extra = b""
        while end in side.out_of_order:
            more = side.out_of_order[end]
            pulled.append(end)
            extra += more
            end = (end + len(more)) % _MOD
        pending = side.buffer
        buf = pending + data + extra
        try:
            msgs, rest = frame_stream(buf)
        except RemoteProtocolError as e:
            st.not_tpkt += 1
            return "drop", self._refuse(side, f"SIP signalling over TCP: {e}")
        known = pending_size(rest) if rest else None
        if (known or len(rest)) > self.max_message:
            st.over_limit += 1
            size = f"{known} octets" if known else f"over {len(rest)} octets (headers incomplete)"
            return "drop", self._refuse(
                side, f"SIP message of {size} over tcp-max-message {self.max_message}: dropped, "
                      "this direction's signalling stops")
        region_start = side.held_start if side.held else start
        region = side.held + data
        why = self._room(side, len(region))
        if why:
            return "drop", why
        r = self._retained_set(side, now)
        if len(r.data) + len(region) + len(extra) > 2 * self.max_message:
            return "drop", self._refuse(side, "SIP messages over TCP never reaching a message "
                                              "boundary: not reassembled; this direction's "
                                              "signalling stops")
        # Complete messages of this frame, by their offset in r.data.
        base = len(r.data) + len(side.held) - len(pending)
        p = 0
        for m in msgs:
            while buf[p] in (13, 10):
                p += 1
            r.messages.append((base + p, m))
            p += len(m)
        last = rest == b""
        work = SegmentWork(self, forward, seq, prefix, region, (), None, region_start,
                           retained=r, part=not last)
        r.layout.append((region_start, len(region), None if last else work))
        for at in pulled:
            side.out_of_order.pop(at)
            w = r.gap.pop(at)
            r.layout.append((at, len(w.data), w))
        r.data += region + extra
        r.cached.orig = bytes(r.data)
        st.retained_octets += len(region)
        side.held = b""
        side.next = end
        side.buffer = rest
        if not last:
            r.parts.append(work)
            st.retained += 1
            return "alg", work
        # The octets end at a message boundary: all of it to the ALG.
        side.retained = None
        self._unhold()
        st.retained_octets -= len(r.data)
        for at, w in r.gap.items():
            # Past another gap, never reached: dropped with the release, forgotten.
            side.out_of_order.pop(at, None)
            st.retained_octets -= len(w.data)
        side.passing = False
        side.pending += 1
        st.alg += 1
        layout = tuple((s, n) for s, n, _w in r.layout)
        return "alg", SegmentWork(self, forward, seq, prefix, bytes(r.data), tuple(r.messages),
                                  r.cached, r.start, layout=layout, retained=r)
