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

from gateway.alg_result import Result, Timer
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
    st = state
    edits: list[Edit] = []
    events: list = []
    logs: list[str] = []
    opened: list = []
    closed: list[str] = []
    streams: dict[str, None] = {}
    route_to = None
    size = len(data)
    for off, msg in pctx.messages:
        r = step(st, ctx, msg, now, settings)
        logs.extend(r.logs)
        if r.verdict != "forward":
            return Result(state, "drop", r.reason, data, logs=tuple(logs))
        st = r.state
        events.extend(r.events)
        for t in r.timers:
            streams[t.key] = None
        for p in r.pinholes_open:
            opened.append(p)
        for pid in r.pinholes_close:
            if any(p.id == pid for p in opened):
                opened = [p for p in opened if p.id != pid]
            else:
                closed.append(pid)
        if r.route_to is not None:
            route_to = r.route_to
        for e in r.edits:
            a, b = off + e.start, off + e.end
            if 0 <= a and b <= size:
                edits.append(Edit(a, b, e.new))
            elif msg[e.start:e.end] != e.new:
                logs.append(f"{SPLIT_NOT_REWRITTEN} ({ctx.channel} {ctx.src[0]}:{ctx.src[1]} -> "
                            f"{ctx.dst[0]}:{ctx.dst[1]}, octets {e.start}-{e.end} of a "
                            f"{len(msg)}-octet message)")
    timers = tuple(Timer(k, st.next_deadline(k)) for k in streams)
    out = apply_edits(data, edits) if edits else data
    return Result(st, "forward", "", out, tuple(edits), tuple(opened), tuple(closed), timers,
                  tuple(events), tuple(logs), route_to)
