"""How a rewritten SIP message leaves in the segments that carried it.

The gateway does not terminate TCP (DESIGN.md, "A packet's way through",
item 1): every segment it holds for a message longer than one segment
still gets exactly one verdict, carrying its share of the rewritten message
at its own place in the sequence space. :func:`spread` says how long each
share is; every segment whose share differs from its original length is
one sequence adjustment (``gateway.datapath.seqadj``, as Linux's
``nf_nat_seqadj`` records one per resized segment) at that segment's
original first octet, so that a retransmission of any of them, and every
acknowledgement of them, maps the same way on this node and on a node that
took over from the journaled adjustments.

The change of length goes to the segments at the end of the message: the
last segment is usually the short one (growth fills it up to the longest
segment's size, the sender's MSS as far as seen, before an earlier one takes
any), and shrinking empties from the end too (each keeps one octet while it
can, so that no segment is left without data). Few segments change: few
adjustments, far under seqadj's 32."""

from __future__ import annotations

from collections.abc import Sequence


def spread(lengths: Sequence[int], total: int) -> list[int]:
    """New lengths for segments of original ``lengths`` (in sequence order)
    that together carry ``total`` octets."""
    new = list(lengths)
    if not new:
        return new
    delta = total - sum(new)
    if delta > 0:
        cap = max(new)
        for i in range(len(new) - 1, -1, -1):
            take = min(cap - new[i], delta)
            new[i] += take
            delta -= take
            if not delta:
                break
        # Longer than the segments can carry at their largest: the last
        # one takes the rest (as one resized segment always did).
        new[-1] += delta
    elif delta < 0:
        for floor in (1, 0):
            for i in range(len(new) - 1, -1, -1):
                take = min(max(new[i] - floor, 0), -delta)
                new[i] -= take
                delta += take
                if not delta:
                    return new
    return new


def changes(layout: Sequence[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """``(original sequence number of a segment's first octet, change of
    its length)`` for each segment of ``layout`` (``(start, length)`` in
    sequence order) whose length changes when they carry ``total`` octets."""
    new = spread([n for _s, n in layout], total)
    return [(s, m - n) for (s, n), m in zip(layout, new) if m != n]
