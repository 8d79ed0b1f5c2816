"""The H.323 ALG over one packet: a RAS datagram, or a TCP segment that
completed one or more TPKT messages (:mod:`gateway.datapath.tcp_stream`).

Each complete message goes through :func:`gateway.h323.alg.step` in order;
its address edits are moved to the segment's offsets. An edit that falls in
bytes an earlier segment already carried cannot be made (those bytes have
left; the gateway never holds a partial message, see the tcp_stream module
for why): it is logged, and the message is otherwise handled as usual. If any
message of the segment is dropped the whole segment is, and the state is
unchanged (a TCP segment has one verdict)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.alg_result import Combined, Result
from gateway.h323.alg import DEFAULT_SETTINGS, H323Context, H323Settings, step
from gateway.span import Edit, apply_edits

SPLIT_NOT_REWRITTEN = "H.323 message split across segments: address in an earlier segment not rewritten"


@dataclass(frozen=True, slots=True)
class PacketContext:
    """``ctx``: the message context; ``messages``: for TCP, ``(offset in the
    packet's data, whole TPKT message)``; empty for a RAS datagram (the data
    is the message)."""

    ctx: H323Context
    messages: tuple[tuple[int, bytes], ...] = ()


def step_packet(state, pctx: PacketContext, data: bytes, now: float,
                settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    ctx = pctx.ctx
    if ctx.channel == "ras":
        return step(state, ctx, data, now, settings)
    acc = Combined(state)
    edits: list[Edit] = []
    route_to = None
    size = len(data)
    for off, msg in pctx.messages:
        r = step(acc.state, ctx, msg, now, settings)
        if not acc.add(r, data):
            return acc.dropped
        if r.route_to is not None:
            route_to = r.route_to
        for e in r.edits:
            a, b = off + e.start, off + e.end
            if 0 <= a and b <= size:
                edits.append(Edit(a, b, e.new))
            elif msg[e.start:e.end] != e.new:
                acc.logs.append(f"{SPLIT_NOT_REWRITTEN} ({ctx.channel} {ctx.src[0]}:{ctx.src[1]} -> "
                            f"{ctx.dst[0]}:{ctx.dst[1]}, octets {e.start}-{e.end} of a "
                            f"{len(msg)}-octet message)")
    out = apply_edits(data, edits) if edits else data
    return acc.result(out, tuple(edits), route_to)
