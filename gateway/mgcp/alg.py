"""The MGCP ALG, sans-I/O: ``step(state, ctx, data, now) -> Result``.

The datapath has already decided policy and NAT for the signalling datagram
and describes it in an :class:`MgcpContext`. :func:`step` parses the datagram
(RFC 3435, :mod:`gateway.mgcp.message`), applies per-gateway flood control,
then for each message looks its transition up in
:mod:`gateway.mgcp.transitions` and runs the actions. Every durable change is
an event (:mod:`gateway.mgcp.events`) folded into the state as it is emitted
with :func:`gateway.mgcp.state.apply`: the state returned is the fold of the
events returned (plus the soft flood counters). A dropped datagram changes
nothing durable: its events are discarded with it.

Time comes in as ``now``; deadlines are absolute and live in the state. The
caller arms one timer per key of ``Result.timers`` (call streams and
transaction keys) and calls :func:`on_timer` when it passes. RTP/RTCP
activity comes in through :func:`media_activity`.

Manual references are to chapter 3 of the ScreenOS guide; RFC 3435 sections
are given as "RFC 3435 x.y".

The message's parts are in sibling modules: commands (``alg_commands``), SDP
and media (``alg_media``), one evaluation's running state (``alg_run``), the
datagram's context (``alg_context``), ports and bounds (``alg_limits``) and
wire-text numbers (``alg_literals``). This module holds the entry points and
a message's driver and responses.
"""

from __future__ import annotations

from dataclasses import replace as _with

from gateway.config.model import MgcpSettings
from gateway.errors import RemoteProtocolError
from gateway.mgcp import events as ev
from gateway.mgcp.alg_commands import _Commands
from gateway.mgcp.alg_context import MgcpContext
from gateway.mgcp.alg_limits import (CA_PORT, DEFAULT_SETTINGS, GW_PORT, MAX_ACK_RANGE,
                                     MAX_ENDPOINTS_PER_GATEWAY, STATEFUL)
from gateway.mgcp.alg_literals import _ascii_int
from gateway.mgcp.alg_media import _Media
from gateway.mgcp.alg_run import _release_pending, _Run
from gateway.mgcp.flood import admit, idle, sweep
from gateway.mgcp.message import MgcpMessage, parse_datagram
from gateway.mgcp.nat import Translation, dedupe, header_edits, translation
from gateway.mgcp.roles import sender_role
from gateway.mgcp.state import EMPTY, MgcpState, Txn, replace
from gateway.mgcp.transitions import CA, FINAL, GW, OPEN, response_actions, response_kind
from gateway.span import apply_edits
from gateway.alg_result import Dropped, Result, Timer


# --------------------------------------------------------------------------
# public API

def step(state: MgcpState, ctx: MgcpContext, data: bytes, now: float,
         settings: MgcpSettings = DEFAULT_SETTINGS) -> Result:
    """Process one MGCP datagram (one message or several piggy-backed ones,
    RFC 3435 3.5.5). Never raises on wire input: a malformed datagram is a
    drop with the parser's reason; if any message of a datagram is dropped,
    the whole datagram is."""
    try:
        msgs = parse_datagram(data)
    except RemoteProtocolError as e:
        reason = f"malformed MGCP message: {e}"
        return Result(state, "drop", reason, data, logs=(f"drop: {reason}",))
    role = sender_role(state, ctx, msgs)
    if role != ctx.role:
        ctx = _with(ctx, role=role)
    gw = ctx.gateway
    is_crcx = any(m.verb == "CRCX" for m in msgs)
    counters, flood_reason = admit(state.flood.get(gw), now, is_crcx=is_crcx,
                                   count_message=ctx.role == GW,
                                   message_threshold=settings.message_flood_threshold,
                                   connection_threshold=settings.connection_flood_threshold)
    if flood_reason is not None:
        reason = f"{flood_reason} (gateway {gw})"
        return Result(state, "drop", reason, data, logs=(f"drop: {reason}",))
    flood, mark = sweep(state.flood.set(gw, counters), state.flood_mark, now)
    state = replace(state, flood=flood, flood_mark=mark)
    run = _Run(state, now, settings)
    try:
        for m in msgs:
            _Message(run, ctx, m).process()
    except Dropped as d:
        return Result(state, "drop", d.reason, data, logs=tuple(run.logs) + (f"drop: {d.reason}",))
    run.edits = dedupe(run.edits)
    out = apply_edits(data, run.edits) if run.edits else data
    return run.result("forward", "", out)


def on_timer(state: MgcpState, key: str, now: float,
             settings: MgcpSettings = DEFAULT_SETTINGS) -> Result:
    """A deadline of ``key`` (a call stream ``mgcp-call/..`` or a transaction
    key ``mgcp-txn/..``) has passed: end what is due. A stale key is harmless."""
    run = _Run(state, now, settings)
    kind, _, rest = key.partition("/")
    if kind == "mgcp-txn":
        parts = rest.split("/")
        tid = _ascii_int(parts[2]) if len(parts) == 3 else None
        t = state.txns.get((parts[0], parts[1], tid)) if tid is not None else None
        if t is not None and t.expires_at <= now:
            run.emit(ev.TransactionEnded(t.gateway, t.endpoint, t.origin, t.tid, "transaction timeout"))
            if t.verb == "CRCX" and not t.final and t.call_id is not None:
                _release_pending(run, t, "CRCX unanswered: transaction timeout")
    elif kind == "mgcp-call":
        gw, _, cid = rest.partition("/")
        call = state.calls.get((gw, cid))
        if call is not None:
            reason = None
            if call.max_deadline <= now:
                reason = "maximum call duration reached"
            else:
                for g in call.groups.values():
                    if g.media_deadline <= now:
                        reason = f"media inactivity timeout (media group {g.group})"
                        break
            if reason is not None:
                run.end_call(gw, cid, reason)
    res = run.result()
    if kind == "mgcp-txn":
        # The gateway's flood counters are soft: once idle they weigh as
        # much as none, and its last transaction ending is a good moment to
        # let them go (a flood's sources are not remembered after it).
        gw = rest.split("/", 1)[0]
        counters = res.state.flood.get(gw)
        if counters is not None and idle(counters, now):
            res = replace(res, state=replace(res.state, flood=res.state.flood.delete(gw)))
    if not any(t.key == key for t in res.timers):
        res = replace(res, timers=res.timers + (Timer(key, res.state.next_deadline(key)),))
    return res


def media_activity(state: MgcpState, group: str, now: float,
                   settings: MgcpSettings = DEFAULT_SETTINGS) -> Result:
    """RTP or RTCP of media group ``group`` was seen (the datapath reports in
    batches): its inactivity timer restarts (``set mgcp inactive-media-timeout``)."""
    run = _Run(state, now, settings)
    where = state.group_index.get(group)
    call = state.calls.get(where) if where is not None else None
    if call is None or group not in call.groups:
        return run.result()
    run.emit(ev.MediaSeen(call.gateway, call.call_id, group, now, now + settings.inactive_media_timeout))
    return run.result()


def end_calls(state: MgcpState, calls, now: float, settings: MgcpSettings = DEFAULT_SETTINGS) -> Result:
    """End the calls ``calls`` names ((``<gateway>/<call id>``, reason) each:
    those a new configuration no longer permits, gateway/rematch.py), each
    as the ALG ends a call (its pinholes closed, then ``CallEnded``); a call
    no longer known is skipped."""
    run = _Run(state, now, settings)
    for key, reason in calls:
        gw, _, cid = key.partition("/")
        if (gw, cid) in run.st.calls:
            run.end_call(gw, cid, reason)
    return run.result()


# --------------------------------------------------------------------------
# one message

class _Message(_Commands, _Media):
    def __init__(self, run: _Run, ctx: MgcpContext, msg: MgcpMessage) -> None:
        self.run = run
        self.ctx = ctx
        self.msg = msg
        self.now = run.now
        self.settings = run.settings
        self.gw = ctx.gateway
        self.tr: Translation | None = translation(ctx)
        # The source of this message as its receiver sees it (after NAT).
        src = ctx.nat_src if ctx.nat_src is not None else ctx.src
        self.seen_src = (str(src[0]), int(src[1]))

    def process(self) -> None:
        if self.tr is not None:
            self.run.edits += header_edits(self.msg, self.tr)
        if self.msg.is_command:
            self.command()
        else:
            self.response()

    def check_endpoint_room(self, name) -> None:
        st = self.run.st
        if (self.gw, name) not in st.endpoints and \
                st.endpoint_counts.get(self.gw, 0) >= MAX_ENDPOINTS_PER_GATEWAY:
            raise Dropped(f"{STATEFUL}: gateway {self.gw} already has {MAX_ENDPOINTS_PER_GATEWAY} "
                        f"endpoints; {self.msg.verb} naming a new one ({name}) refused")

    def response(self) -> None:
        msg, ctx, run = self.msg, self.ctx, self.run
        code, tid = msg.code, msg.transaction_id
        kind = response_kind(code)
        if kind == "ack":
            # RFC 3435 3.5.6: the command's sender acknowledges the final response.
            origin = ctx.role
        else:
            origin = CA if ctx.role == GW else GW
        t = run.st.txns.get((self.gw, origin, tid))
        if t is None:
            raise Dropped(f"{STATEFUL}: response {code} {tid} to no command of gateway {self.gw}")
        actions = response_actions(FINAL if t.final else OPEN, kind)
        if actions is None:
            raise Dropped(f"{STATEFUL}: response {code} {tid} out of state for {t.verb}")
        if kind != "ack":
            dst = (str(ctx.dst[0]), int(ctx.dst[1]))
            if dst != t.src:
                # Only a response addressed elsewhere is redirected. One
                # addressed to the command's source needs nothing: the flow's
                # own NAT takes it to the sender (through a MIP, to the call
                # agent's private address). ``t.src`` is that source as the
                # responder saw it, so rerouting a well-addressed response to
                # it would send it to the MIP itself, i.e. nowhere.
                run.route_to = t.src
                run.logs.append(f"response {code} {tid} addressed to {dst[0]}:{dst[1]}; "
                                f"the command came from {t.src[0]}:{t.src[1]}")
        handled_sdp = False
        for action in actions:
            if action == "answer":
                run.emit(ev.TransactionAnswered(t.gateway, t.endpoint, t.origin, t.tid, code,
                                                self.now + self.settings.transaction_timeout))
            elif action == "retransmission":
                if t.code != code:
                    raise Dropped(f"{STATEFUL}: response {code} {tid} after final response {t.code}")
                run.logs.append(f"response {code} {tid}: retransmission")
                if t.verb in ("CRCX", "MDCX") and kind == "success" and t.call_id is not None:
                    handled_sdp = True
                    self.media("local", self._conn_of(t), t.tid, t.call_id)
            elif action == "ack":
                run.emit(ev.TransactionEnded(t.gateway, t.endpoint, t.origin, t.tid,
                                             "response acknowledged"))
            elif action == "created" and t.verb == "CRCX":
                conn = msg.connection_id
                if conn is None:
                    raise Dropped(f"{STATEFUL}: CRCX success response {tid} without a connection id")
                if (t.gateway, t.call_id) not in run.st.calls:
                    raise Dropped(f"{STATEFUL}: CRCX response {tid} for a call that has ended")
                if (t.gateway, conn) in run.st.conn_index:
                    raise Dropped(f"{STATEFUL}: connection id {conn} already exists on gateway {t.gateway}")
                z = msg.get("Z")
                endpoint = t.endpoint
                if z is not None and z.strip() and "," not in z:
                    endpoint = z.strip().lower()
                run.emit(ev.ConnectionCreated(t.gateway, t.call_id, conn, endpoint, t.tid))
            elif action == "media" and t.verb in ("CRCX", "MDCX"):
                handled_sdp = True
                self.media("local", self._conn_of(t), t.tid, t.call_id)
            elif action == "notified_default" and t.origin == CA and t.verb not in ("AUEP", "AUCX"):
                ep = run.st.endpoints.get((t.gateway, t.endpoint))
                if ep is None and run.st.endpoint_counts.get(t.gateway, 0) >= MAX_ENDPOINTS_PER_GATEWAY:
                    run.logs.append(f"gateway {t.gateway}: endpoint {t.endpoint} not recorded "
                                    f"(already {MAX_ENDPOINTS_PER_GATEWAY} endpoints)")
                elif ep is None or ep.notified_source != "N:":
                    entity = f"{t.src[0]}:{t.src[1]}"
                    if ep is None or ep.notified_entity != entity:
                        run.emit(ev.NotifiedEntitySet(t.gateway, t.endpoint, entity, "command"))
            elif action == "failed" and t.verb == "CRCX" and t.call_id is not None:
                _release_pending(run, replace(t, code=code), f"CRCX failed ({code})")
        if not handled_sdp:
            self.sdp_addresses()

    def _conn_of(self, t: Txn) -> str | None:
        if t.verb == "MDCX":
            return t.conn_id
        return self.msg.connection_id or t.conn_id


__all__ = ["MgcpContext", "Result", "Timer", "step", "on_timer", "media_activity", "end_calls", "EMPTY",
           "MgcpState", "DEFAULT_SETTINGS", "CA_PORT", "GW_PORT"]

# Names other modules and the tests read here.
__all__ += ["CA", "GW", "MAX_ACK_RANGE", "MAX_ENDPOINTS_PER_GATEWAY"]
