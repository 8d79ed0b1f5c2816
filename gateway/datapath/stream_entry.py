"""What a framed TCP stream is given, packet by packet (:mod:`gateway.datapath.tcp_stream`):
a SYN (the direction's data starts at a message boundary), a data segment
(octets a SIP stream holds back, and their retransmissions, RFC 896 and RFC
9293 3.8.1), and a segment without data, which keeps its place behind data
still at the ALG."""

from __future__ import annotations

from gateway.datapath.stream_limits import _MOD, seq_diff

HELD_DUPLICATE = "duplicate of octets held until the rest of their SIP message arrives"


class SegmentEntry:
    """The per-packet entry points of :class:`gateway.datapath.framed_stream.FramedStream`
    (a base class; slotted, as the streams are)."""

    __slots__ = ()

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
        if self._held_duplicate(side, seq):
            return "drop", HELD_DUPLICATE
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

    def _held_duplicate(self, side, seq: int) -> bool:
        """A copy of a held part other than the first (counted): a sender
        retransmits from its oldest unacknowledged octet (RFC 9293 3.8.1),
        the first held one, so this is a duplicate the network made. It is
        dropped and the holding goes on (ending it here would discard the
        held octets with no retransmission of the first ones to come and
        refill them)."""
        if side.held and seq_diff(seq, side.held_start) > 0 and seq_diff(seq, side.next) < 0:
            self.stats.held_retransmissions += 1
            return True
        return False

    def empty(self, forward: bool, seq: int):
        """A segment without data (an acknowledgement, FIN or RST; not a
        SYN): ``("forward", b"")``, or ``("alg", SegmentWork)`` behind a
        segment of its direction still at the ALG. Its sequence number lies
        after that segment's data, so it takes that segment's change of
        length; leaving at once it would overtake the data and name a number
        inside it (Linux's seqadj sees a connection's packets in order)."""
        return self._out(self.sides[0 if forward else 1], forward, seq, b"")
