"""SIP over TCP framed by Content-Length (RFC 3261 §18.3), whose rewrites may
change lengths: held and retained segments, sequence adjustment, and the
limits of ``set sip tcp-max-message`` (:mod:`gateway.datapath.tcp_stream`,
"SIP differs")."""

from __future__ import annotations

from gateway.datapath import seqadj
from gateway.datapath.framed_stream import FramedStream, Retained, SegmentWork, _Side
from gateway.datapath.stream_entry import HELD_DUPLICATE
from gateway.datapath.stream_limits import (
    CACHE_ENTRIES, MAX_OUT_OF_ORDER, SIP_HOLD_LIMIT, SIP_MAX_MESSAGE, SIP_MAX_PARTS,
    SIP_RETAINED_TOTAL, SIP_RETAIN_SECONDS, StreamStats, _Cached, _MOD, seq_diff,
)
from gateway.errors import RemoteProtocolError
from gateway.sip.framing import frame_stream, pending_size


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
        if self._held_duplicate(side, seq):
            self.stats.segments += 1
            return "drop", HELD_DUPLICATE
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
