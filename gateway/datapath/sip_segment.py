"""The SIP ALG over one TCP segment that completed one or more messages
(:class:`gateway.datapath.tcp_stream.SipStream`).

Each complete message goes through :func:`gateway.sip.alg.step` in order and
is replaced in the segment by the step's output (addresses rewritten,
Content-Length set to the new body, RFC 3261 §18.3 and §20.14). A message
whose first octets left in an earlier segment (the gateway stopped holding
it: see the tcp_stream module) is stepped for the ALG's state but left as it
is: its Content-Length and start line already left, a change of its length
would corrupt the stream. If any message of the segment is dropped the whole
segment is, with no events (a TCP segment has one verdict).

When the segment's length changes, a
:class:`gateway.datapath.seqadj.TcpSeqAdjusted` event records it (the
sender's sequence number of the segment's first data octet, and the change;
for messages reassembled from several retained segments, one per segment
whose share of the rewritten octets differs from its length)
so that a node taking over adjusts the connection's later segments the same
way (DESIGN.md, "A packet's way through", item 1)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.alg_result import Combined, Result
from gateway.datapath.resegment import changes
from gateway.datapath.seqadj import TcpSeqAdjusted
from gateway.sip.alg import DEFAULT_SETTINGS, SipContext, step

SPLIT_NOT_REWRITTEN = "SIP message split across segments and partly forwarded: not rewritten"


@dataclass(frozen=True, slots=True)
class SegmentContext:
    """``ctx``: the messages' context (transport "tcp"); ``messages``:
    ``(offset in the segment's data, whole message)``; ``conn``: the
    connection's name; ``start``: the sender's sequence number of the data's
    first octet; ``layout``: for data that came in several retained segments,
    each one's ``(start, length)`` (tcp_stream.SipStream): the change of
    length is recorded per resized segment, as the datapath spreads it
    (gateway.datapath.resegment)."""

    ctx: SipContext
    messages: tuple[tuple[int, bytes], ...]
    conn: str
    start: int
    layout: tuple[tuple[int, int], ...] = ()


def step_segment(state, sctx: SegmentContext, data: bytes, now: float,
                 settings=DEFAULT_SETTINGS) -> Result:
    ctx = sctx.ctx
    acc = Combined(state)
    parts: list[bytes] = []
    pos = 0
    size = len(data)
    for off, msg in sctx.messages:
        r = step(acc.state, ctx, msg, now, settings)
        if not acc.add(r, data):
            return acc.dropped
        whole = 0 <= off and off + len(msg) <= size
        if not whole and r.data != msg:
            acc.logs.append(f"{SPLIT_NOT_REWRITTEN} ({ctx.src[0]}:{ctx.src[1]} -> {ctx.dst[0]}:{ctx.dst[1]}, "
                            f"{len(msg)} octets)")
        if whole and r.data != msg:
            parts.append(data[pos:off])
            parts.append(r.data)
            pos = off + len(msg)
    if parts:
        parts.append(data[pos:])
        out = b"".join(parts)
    else:
        out = data
    if len(out) != size:
        sender = f"{ctx.src[0]}:{ctx.src[1]}"
        for position, change in changes(sctx.layout or ((sctx.start, size),), len(out)):
            acc.events.append(TcpSeqAdjusted(sctx.conn, sender, position, change))
    return acc.result(out)
