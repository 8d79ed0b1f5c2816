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
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace as _with
from ipaddress import IPv4Address
from typing import Callable

from gateway.config.model import MgcpSettings
from gateway.errors import RemoteProtocolError
from gateway.mgcp import events as ev
from gateway.mgcp.flood import admit, idle, sweep
from gateway.mgcp.message import MgcpMessage, parse_datagram
from gateway.mgcp.nat import Translation, dedupe, header_edits, translation
from gateway.mgcp.roles import EITHER, sender_role
from gateway.mgcp.state import EMPTY, Call, MgcpState, Pinhole, Txn, apply, replace, txn_key
from gateway.mgcp.transitions import CA, FINAL, GW, OPEN, command_rule, response_actions, response_kind
from gateway.ports import MEDIA_PORT_HIGH, MEDIA_PORT_LOW, allocate_pair
from gateway.span import Edit, apply_edits
from gateway.alg_contract import PacketContext
from gateway.alg_result import Dropped, Result, Run, Timer, close_hole, open_hole

DEFAULT_SETTINGS = MgcpSettings()
# RFC 3435 3.5.3: the call agent listens on 2727, the gateway on 2427; a
# NotifiedEntity without a port means the call agent's default port.
CA_PORT = 2727
GW_PORT = 2427
# K: ranges wider than this are not expanded (RFC 3435 3.5.6 confirms a
# handful of recent transactions at a time).
MAX_ACK_RANGE = 256
# Endpoint records per media gateway: a residential gateway has a handful of
# lines, a trunking gateway some hundreds; past this a gateway naming ever new
# endpoints (RSIP, N:) is refused rather than growing the state without end.
MAX_ENDPOINTS_PER_GATEWAY = 2048
_NUMBER = re.compile(r"[0-9]{1,9}\Z")
STATEFUL = "stateful inspection at the UDP packet, transaction and call level"


@dataclass(frozen=True, slots=True)
class MgcpContext(PacketContext):
    """What the datapath knows of an MGCP datagram (:class:`PacketContext`),
    and:

    ``role``: who sent it: "gateway" (e.g. sent to the
    call agent's UDP 2727, service MGCP-CA), "call-agent", or "either" when
    the datapath cannot tell (two 2427 ports: a call agent on 2427, as in
    PacketCable/NCS); :func:`step` then reads it from the messages
    (:mod:`gateway.mgcp.roles`).
    ``media_nat``: optional, the public address NAT gives media of a private
    host other than the sender toward this message's destination (e.g. a
    second gateway's SDP relayed by the call agent, manual "ISP-Hosted
    Service": sf_gw's media leaves by ``nat src``); None when it is not
    translated."""

    role: str = GW
    media_nat: Callable[[str], str | None] | None = None
    # As gateway.sip.alg.SipContext.far_side: True for an address in the zone
    # the message goes to (no pinhole is opened to it). None: not checked.
    far_side: Callable[[str], bool] | None = None

    @property
    def gateway(self) -> str:
        """The media gateway's own address (as seen on its side of the NAT):
        the key of its endpoints, calls and flood counters."""
        if self.role == GW:
            return str(self.src[0])
        return str(self.nat_dst[0] if self.nat_dst is not None else self.dst[0])


_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                   r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")


def _is_ipv4(text: str) -> bool:
    """A dotted quad of ASCII digits (str.isdigit() would let "\u00b2" through
    to int(), which refuses it)."""
    return _IPV4.match(text) is not None


def _ascii_int(text: str) -> int | None:
    """``text`` as a number of 1-9 ASCII digits, else None."""
    return int(text) if _NUMBER.match(text) else None


def _covers(pattern: str, name: str) -> bool:
    """Whether endpoint ``pattern`` (possibly ``*`` wildcarded, RFC 3435
    2.1.2) names endpoint ``name`` (both lower case)."""
    if pattern == name:
        return True
    plocal, _, pdomain = pattern.rpartition("@")
    local, _, domain = name.rpartition("@")
    if pdomain != domain:
        return False
    if plocal == "*":
        return True
    return plocal.endswith("/*") and local.startswith(plocal[:-1])


def _port_hint(in_use, public_ip: str, port: int, salt: str) -> int:
    """Where the search for a free pair starts: the private port itself when
    it is free, else a point spread by a hash of the group. A fixed start
    would make every allocation scan the pairs already taken (O(n) with n
    calls); a spread start finds a free pair in ~1/(1 - load) probes. The
    hint is a pure function of the state, and the port chosen is recorded in
    the event, so replay and the standby agree."""
    a = IPv4Address(public_ip)
    if port >= MEDIA_PORT_LOW and port % 2 == 0 and (a, port) not in in_use and (a, port + 1) not in in_use:
        return port
    pairs = (MEDIA_PORT_HIGH - MEDIA_PORT_LOW) // 2
    return MEDIA_PORT_LOW + 2 * (zlib.crc32(salt.encode()) % pairs)


def _txn_timer(e: ev.TransactionStarted | ev.TransactionAnswered | ev.TransactionEnded) -> str:
    return txn_key(e.gateway, e.origin, e.tid)


def _no_timer(e: ev.Event) -> None:
    return None


def _pinhole_opened(st: MgcpState, e: ev.PinholeOpened, opened: dict, closed: list) -> None:
    call = st.calls.get((e.gateway, e.call_id))
    open_hole(call.pinholes.get(e.pinhole) if call else None, opened)


def _pinhole_closed(st: MgcpState, e: ev.PinholeClosed, opened: dict, closed: list) -> None:
    close_hole(e.pinhole, opened, closed)


class _Run(Run):
    """One evaluation: the running state and what it emitted."""

    apply = staticmethod(apply)
    # A transaction's timer is its own key, not the endpoint's stream; an
    # endpoint's restart or notified entity arms nothing.
    TIMER_KEYS = {ev.TransactionStarted: _txn_timer, ev.TransactionAnswered: _txn_timer,
                  ev.TransactionEnded: _txn_timer, ev.EndpointRestarted: _no_timer,
                  ev.NotifiedEntitySet: _no_timer}
    PINHOLES = {ev.PinholeOpened: _pinhole_opened, ev.PinholeClosed: _pinhole_closed}

    # --- calls and connections ----------------------------------------------

    def release_group(self, call: Call, group: str, reason: str) -> None:
        for p in list(call.pinholes.values()):
            if p.group == group:
                self.emit(ev.PinholeClosed(call.gateway, call.call_id, p.id, reason))
        self.emit(ev.MediaReleased(call.gateway, call.call_id, group, reason))

    def end_call(self, gateway: str, call_id: str, reason: str) -> None:
        call = self.st.calls[(gateway, call_id)]
        for p in call.pinholes:
            self.emit(ev.PinholeClosed(gateway, call_id, p, reason))
        self.emit(ev.CallEnded(gateway, call_id, reason))
        self.logs.append(f"MGCP call {call_id} of gateway {gateway} ended: {reason}")

    def delete_connection(self, gateway: str, call_id: str, conn_id: str, reason: str) -> None:
        call = self.st.calls[(gateway, call_id)]
        for g in list(call.groups.values()):
            if g.conn_id == conn_id:
                self.release_group(self.st.calls[(gateway, call_id)], g.group, reason)
        self.emit(ev.ConnectionDeleted(gateway, call_id, conn_id, reason))
        self.end_if_empty(gateway, call_id, reason)

    def end_if_empty(self, gateway: str, call_id: str, reason: str) -> None:
        call = self.st.calls.get((gateway, call_id))
        if call is None or len(call.connections):
            return
        # A CRCX still waiting for its response keeps the call.
        if not len(call.pending):
            self.end_call(gateway, call_id, reason)


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


def _release_pending(run: _Run, t: Txn, reason: str) -> None:
    call = run.st.calls.get((t.gateway, t.call_id))
    if call is None:
        return
    for g in list(call.groups.values()):
        if g.conn_id is None and g.tid == t.tid:
            run.release_group(run.st.calls[(t.gateway, t.call_id)], g.group, reason)
    run.end_if_empty(t.gateway, t.call_id, reason)


# --------------------------------------------------------------------------
# one message

class _Message:
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

    # --- names --------------------------------------------------------------

    def endpoint_name(self, ep) -> str:
        """The endpoint as its gateway names it (lower case: RFC 3435 2.1.1
        endpoint names are case-insensitive); an ``[IP]`` domain written by the
        call agent is translated to the gateway's side."""
        domain = ep.domain
        if ep.domain_ip_span is not None and self.ctx.role == CA and self.tr is not None:
            new = self.tr.address(ep.domain_ip_span.text)
            if new is not None:
                domain = f"[{new}]"
        return f"{ep.local}@{domain}".lower()

    def in_service(self, name: str) -> bool:
        """The latest RSIP naming this endpoint, itself or through a wildcard
        (``*@gw``, ``aaln/*@gw``), decides (RFC 3435 2.3.12)."""
        local, _, domain = name.rpartition("@")
        names = [name, f"*@{domain}"]
        parts = local.split("/")
        for i in range(1, len(parts)):
            names.append("/".join(parts[:i]) + f"/*@{domain}")
        latest = None
        for n in names:
            ep = self.run.st.endpoints.get((self.gw, n))
            if ep is not None and ep.restart_method is not None and (latest is None or ep.changed_at > latest.changed_at):
                latest = ep
        return latest is None or latest.in_service(self.now)

    # --- commands -------------------------------------------------------------

    def command(self) -> None:
        msg, ctx, run = self.msg, self.ctx, self.run
        verb, tid = msg.verb, msg.transaction_id
        ep = msg.endpoint
        name = self.endpoint_name(ep)
        t = run.st.txns.get((self.gw, ctx.role, tid))
        if t is not None:
            if t.verb != verb or t.src != self.seen_src:
                raise Dropped(f"{STATEFUL}: transaction id {tid} already in use by {t.verb} from "
                            f"{t.src[0]}:{t.src[1]}")
            # RFC 3435 3.5.1: a retransmission of a command in progress (or
            # answered: the gateway repeats its response). Translated the same
            # way; nothing new is bound.
            run.logs.append(f"{verb} {tid}: retransmission")
            if verb in ("CRCX", "MDCX"):
                self.media("remote", t.conn_id, tid, t.call_id)
            else:
                self.sdp_addresses()
            return
        rule = command_rule(ctx.role, verb)
        if rule is None:
            raise Dropped(f"{STATEFUL}: {verb} is not sent by a {ctx.role}")
        if ep.is_wildcard:
            if rule.wildcard == "none" or (rule.wildcard == "any" and (ep.all_wildcard or ep.has_range)):
                raise Dropped(f"{STATEFUL}: {verb} does not take the wildcard endpoint {ep.span.text}")
        if rule.service and not self.in_service(name):
            raise Dropped(f"{STATEFUL}: endpoint {name} of gateway {self.gw} is out of service")
        call_id, conn_id = msg.call_id, msg.connection_id
        if rule.needs == "call-id" and call_id is None:
            raise Dropped(f"{STATEFUL}: {verb} without a call id (C:)")
        if rule.needs == "connection":
            if conn_id is None:
                raise Dropped(f"{STATEFUL}: {verb} without a connection id (I:)")
            owner = run.st.conn_index.get((self.gw, conn_id))
            if owner is None or (call_id is not None and owner != call_id):
                raise Dropped(f"{STATEFUL}: {verb} for unknown connection {conn_id} of gateway {self.gw}")
            if verb == "MDCX" and call_id is None:
                raise Dropped(f"{STATEFUL}: MDCX without a call id (C:)")
            call_id = owner
        limit = self.settings.max_transactions
        if run.st.txn_counts.get(self.seen_src[0], 0) >= limit:
            # RFC 3435 3.5: a transaction is remembered for a bounded time;
            # past the per-source cap a sender's new commands are refused
            # rather than growing the state (set mgcp max-transactions).
            raise Dropped(f"{STATEFUL}: {self.seen_src[0]} already has {limit} transactions in progress "
                        f"or remembered (set mgcp max-transactions); {verb} {tid} refused")
        if "start_call" in rule.actions and (self.gw, call_id) not in run.st.calls:
            run.emit(ev.CallStarted(self.gw, call_id, self.now, self.now + self.settings.max_call_duration))
        run.emit(ev.TransactionStarted(self.gw, name, ctx.role, tid, verb, self.seen_src[0],
                                       self.seen_src[1], call_id, conn_id, self.now,
                                       self.now + self.settings.transaction_timeout))
        self.do_ack_list(name, call_id, conn_id)
        handled_sdp = False
        for action in rule.actions:
            if action == "media":
                handled_sdp = True
                self.media("remote", conn_id, tid, call_id)
            else:
                getattr(self, "do_" + action)(name, call_id, conn_id)
        if not handled_sdp:
            self.sdp_addresses()

    def do_start_call(self, name, call_id, conn_id) -> None:
        """The call exists from here on (started before the transaction, so
        the call knows its CRCX is pending)."""

    def do_notified(self, name, call_id, conn_id) -> None:
        ne = self.msg.notified_entity
        if ne is None:
            return
        if ne.host_is_ip:
            host = ne.host
            port = ne.port if ne.port is not None else CA_PORT
            if self.tr is not None:
                new = self.tr.address(host)
                if new is not None:
                    port = self.tr.port(host, port) or port
                    host = new
            entity = f"{host}:{port}"
        else:
            entity = self.msg.get("N").strip()
        self.check_endpoint_room(name)
        self.run.emit(ev.NotifiedEntitySet(self.gw, name, entity, "N:", self.msg.transaction_id))

    def check_endpoint_room(self, name) -> None:
        st = self.run.st
        if (self.gw, name) not in st.endpoints and \
                st.endpoint_counts.get(self.gw, 0) >= MAX_ENDPOINTS_PER_GATEWAY:
            raise Dropped(f"{STATEFUL}: gateway {self.gw} already has {MAX_ENDPOINTS_PER_GATEWAY} "
                        f"endpoints; {self.msg.verb} naming a new one ({name}) refused")

    def do_notified_check(self, name, call_id, conn_id) -> None:
        """"An endpoint should send any MGCP command to its notified entity"
        (ch. 3 "Call Agent"). Only an entity known as an address can be
        checked (a domain name needs DNS, which the ALG does not do)."""
        ep = self.run.st.endpoints.get((self.gw, name))
        if ep is None or ep.notified_entity is None:
            return
        host, _, port = ep.notified_entity.rpartition(":")
        number = _ascii_int(port)
        if not _is_ipv4(host) or number is None:
            return
        dst = (str(self.ctx.dst[0]), int(self.ctx.dst[1]))
        if dst != (host, number):
            raise Dropped(f"{STATEFUL}: {self.msg.verb} from {name} sent to {dst[0]}:{dst[1]}, not to "
                        f"its notified entity {ep.notified_entity}")

    def do_restart(self, name, call_id, conn_id) -> None:
        method = self.msg.restart_method or "restart"
        if method not in ("graceful", "forced", "restart", "disconnected", "cancel-graceful"):
            self.run.logs.append(f"RSIP {name}: restart method {method} leaves the service state")
            return
        out = None
        if method == "forced":
            out = self.now
        elif method == "graceful":
            rd = self.msg.get("RD")
            out = self.now + (int(rd.strip()) if rd is not None else 0)
        self.check_endpoint_room(name)
        self.run.emit(ev.EndpointRestarted(self.gw, name, method, self.now, out, self.msg.transaction_id))
        if method == "forced":
            # RFC 3435 2.3.12: "forced" -- "the endpoints are taken abruptly
            # out of service and any established connections are lost": their
            # pinholes close now. (A graceful restart leaves them be.)
            run = self.run
            for (g, cid), call in list(run.st.calls.items()):
                if g != self.gw:
                    continue
                for c in list(call.connections.values()):
                    if _covers(name, c.endpoint) and (g, cid) in run.st.calls:
                        run.delete_connection(g, cid, c.conn_id, "RSIP forced")

    def do_ack_list(self, name, call_id, conn_id) -> None:
        """K: (RFC 3435 3.5.6): the sender acknowledges final responses to its
        earlier transactions; they are over."""
        k = self.msg.get("K")
        if k is None:
            return
        run = self.run
        for item in k.split(","):
            # The parser checked the grammar (1-9 ASCII digits each side).
            lo, _, hi = item.partition("-")
            a = _ascii_int(lo.strip(" \t"))
            b = _ascii_int(hi.strip(" \t")) if hi else a
            if a is None or b is None:
                continue
            if b < a or b - a > MAX_ACK_RANGE:
                # A range wider than any sender keeps in flight is not
                # expanded (it would cost the ALG, not the sender).
                continue
            for tid in range(a, b + 1):
                t = run.st.txns.get((self.gw, self.ctx.role, tid))
                if t is not None and t.final:
                    run.emit(ev.TransactionEnded(t.gateway, t.endpoint, t.origin, tid,
                                                 "response acknowledged (K:)"))

    def do_delete(self, name, call_id, conn_id) -> None:
        run, msg = self.run, self.msg
        reason = f"DLCX from the {self.ctx.role}"
        e = msg.get("E")
        if e is not None:
            reason += f" ({e.strip()})"
        if conn_id is not None:
            owner = run.st.conn_index.get((self.gw, conn_id))
            if owner is None or (call_id is not None and owner != call_id):
                raise Dropped(f"{STATEFUL}: DLCX for unknown connection {conn_id} of gateway {self.gw}")
            run.delete_connection(self.gw, owner, conn_id, reason)
            return
        if call_id is not None:
            call = run.st.calls.get((self.gw, call_id))
            if call is None:
                raise Dropped(f"{STATEFUL}: DLCX for unknown call {call_id} of gateway {self.gw}")
            calls = [call]
        else:
            # RFC 3435 2.3.7: without C: every connection of the endpoint(s).
            calls = [c for (g, _), c in run.st.calls.items() if g == self.gw]
        for call in calls:
            for c in list(call.connections.values()):
                if _covers(name, c.endpoint):
                    if (self.gw, call.call_id) in run.st.calls:
                        run.delete_connection(self.gw, call.call_id, c.conn_id, reason)

    # --- responses ------------------------------------------------------------

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

    # --- SDP, media and pinholes -----------------------------------------------

    def sdp_addresses(self, mapped: dict[str, str] | None = None) -> None:
        """Translate the sender's own address in o=, c= and a=rtcp of every
        session description (no ports: those belong to media bindings)."""
        tr = self.tr
        mapped = mapped or {}
        if tr is None and not mapped:
            return
        for d in self.msg.sdp:
            spans = [d.origin_addr]
            if d.session_conn is not None:
                spans.append(d.session_conn.addr)
            for m in d.media:
                if m.conn is not None:
                    spans.append(m.conn.addr)
                spans.append(m.rtcp_addr)
            for s in spans:
                if s is None:
                    continue
                new = mapped.get(s.text)
                if new is None and tr is not None:
                    new = tr.address(s.text)
                if new is not None and new != s.text:
                    self.run.edits.append(Edit.replace(s, new))

    def public_for(self, addr: str) -> str | None:
        """The public address standing for media at ``addr`` in a message
        leaving the private side, or None when it needs no translation."""
        if self.ctx.direction != "outbound":
            return None
        if self.tr is not None:
            new = self.tr.address(addr)
            if new is not None:
                return new
        if self.ctx.media_nat is not None:
            return self.ctx.media_nat(addr)
        return None

    def media(self, side: str, conn_id: str | None, tid: int, call_id: str | None) -> None:
        """Bind the media destinations of the first session description and
        open their pinholes (RTP and RTCP as one group); translate the SDP."""
        run, msg = self.run, self.msg
        key = (self.gw, call_id)
        if call_id is None or key not in run.st.calls or not msg.sdp:
            self.sdp_addresses()
            return
        sd = msg.sdp[0]
        call = run.st.calls[key]

        def mine(g) -> bool:
            if g.side != side:
                return False
            return g.conn_id == conn_id if conn_id is not None else (g.conn_id is None and g.tid == tid)

        existing = {g.index: g for g in call.groups.values() if mine(g)}
        mapped: dict[str, str] = {}
        for i, m in enumerate(sd.media):
            old = existing.get(i)
            dest = m.conn if m.conn is not None else m.session_conn
            if dest is None:
                raise Dropped(f"SDP m= line {i + 1} has no c= at media or session level")
            addr = dest.addr.text
            if m.port == 0 or addr == "0.0.0.0" or dest.is_multicast or not _is_ipv4(addr):
                # No media to this side now (RFC 3264 port 0, on hold, or not
                # a unicast IPv4 destination): no pinhole.
                if old is not None:
                    run.release_group(run.st.calls[key], old.group, "media stream removed")
                continue
            rtcp_port = m.rtcp_port if m.rtcp_port is not None else m.port + 1
            if rtcp_port > 65535:
                # RTCP is on the next port (RFC 3550 11); none follows 65535.
                raise Dropped(f"SDP m= line {i + 1}: RTP port {m.port} leaves no port for RTCP")
            rtcp_ip = m.rtcp_addr.text if m.rtcp_addr is not None else addr
            # An inbound description naming one of the ALG's public pairs:
            # give the private side the destination it stands for.
            if self.ctx.direction == "inbound":
                gid = run.st.ports_in_use.get((IPv4Address(addr), m.port))
                where = run.st.group_index.get(gid) if gid is not None else None
                if where is not None:
                    g = run.st.calls[where].groups[gid]
                    mapped[addr] = g.dst_ip
                    if g.dst_port != m.port:
                        run.edits.append(Edit.replace(m.port_span, str(g.dst_port)))
                    if m.rtcp_port_span is not None and g.rtcp_port != m.rtcp_port:
                        run.edits.append(Edit.replace(m.rtcp_port_span, str(g.rtcp_port)))
                    continue
            public_ip = self.public_for(addr)
            if old is not None and old.dst_ip == addr and old.dst_port == m.port \
                    and old.rtcp_port == rtcp_port and old.public_ip == public_ip:
                pub = old.public_port
            else:
                if old is not None:
                    run.release_group(run.st.calls[key], old.group, "media changed")
                pub = self.bind(key, side, conn_id, tid, i, addr, m.port, rtcp_ip, rtcp_port, public_ip)
            if public_ip is not None and pub is not None:
                mapped[addr] = public_ip
                if m.rtcp_addr is not None:
                    mapped[rtcp_ip] = public_ip
                if pub != m.port:
                    run.edits.append(Edit.replace(m.port_span, str(pub)))
                if m.rtcp_port_span is not None and m.rtcp_port != pub + 1:
                    run.edits.append(Edit.replace(m.rtcp_port_span, str(pub + 1)))
        for idx, g in existing.items():
            if idx >= len(sd.media) and g.group in run.st.calls[key].groups:
                run.release_group(run.st.calls[key], g.group, "media stream removed")
        self.sdp_addresses(mapped)

    def bind(self, key, side, conn_id, tid, index, addr, port, rtcp_ip, rtcp_port, public_ip) -> int | None:
        run = self.run
        call = run.st.calls[key]
        pub = None
        if public_ip is not None:
            # RTP on an even port and RTCP on the next odd one (gateway.ports).
            pub = allocate_pair(run.st.ports_in_use, IPv4Address(public_ip),
                                hint=_port_hint(run.st.ports_in_use, public_ip, port, f"{call.stream}#{call.seq}"))
            if pub is None:
                raise Dropped(f"no free even/odd port pair on {public_ip} for media {addr}:{port}; "
                            "MGCP message discarded")
        group = f"{call.stream}#g{call.seq}"
        deadline = self.now + self.settings.inactive_media_timeout
        run.emit(ev.MediaBound(self.gw, call.call_id, group, conn_id, tid, side, index, addr, port,
                               rtcp_ip, rtcp_port, public_ip, pub, deadline))
        if public_ip is not None:
            holes = (("inbound", (public_ip, pub), (addr, port)),
                     ("inbound", (public_ip, pub + 1), (rtcp_ip, rtcp_port)))
        else:
            holes = (("any", (addr, port), None), ("any", (rtcp_ip, rtcp_port), None))
        far = self.ctx.far_side
        for direction, dst, to in holes:
            target = to if to else dst
            if far is not None and far(str(target[0])):
                # Media to it stays in the zone the message goes to: no path
                # through the gateway is needed, and a descriptor naming a host
                # behind the gateway must not open one from anywhere.
                run.logs.append(f"call {call.call_id}: no media pinhole to {target[0]}:{target[1]}: it "
                                f"lies in the zone the message goes to ({self.ctx.egress})")
                continue
            call = run.st.calls[key]
            pid = f"{call.stream}#p{call.seq}"
            run.emit(ev.PinholeOpened(self.gw, call.call_id, pid, group, direction, dst[0], dst[1],
                                      to[0] if to else None, to[1] if to else None))
        return pub


__all__ = ["MgcpContext", "Result", "Timer", "step", "on_timer", "media_activity", "EMPTY",
           "MgcpState", "DEFAULT_SETTINGS", "CA_PORT", "GW_PORT"]
