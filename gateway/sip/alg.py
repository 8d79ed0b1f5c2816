"""The SIP ALG, sans-I/O: ``step(state, ctx, data, now) -> Result``.

The datapath has already decided policy and NAT for the signalling packet and
describes it in a :class:`SipContext`. :func:`step` parses the message, finds
its call, looks the transition up in :mod:`gateway.sip.transitions`, and runs
its actions. Every change is an event (:mod:`gateway.sip.events`), folded
into the state as it is emitted with :func:`gateway.sip.state.apply`: the
state returned is exactly the fold of the events returned. A message that is
dropped changes nothing: its events are discarded with it.

Time comes in as ``now``; deadlines are absolute and live in the state. The
caller arms one timer per key of ``Result.timers`` and calls
:func:`on_timer` when it passes (a stale deadline is harmless: the state is
checked again). RTP/RTCP activity comes in through :func:`media_activity`.

Manual references are to chapter 2 of the ScreenOS guide.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

from gateway.config.model import SipSettings
from gateway.errors import RemoteProtocolError
from gateway.ports import MEDIA_PORT_LOW
from gateway.sip import parse_message, rewrite_message
from gateway.sip import events as ev
from gateway.sip import nat
from gateway.sip.portmap import allocate_pair, allocate_port
from gateway.sip.state import (EMPTY, HANDLERS, Call, Pinhole, SipDraft, SipState, _call_base,
                               apply)
from gateway.sip.transitions import (CALLING, CONFIRMED, NONE, REJECTED, TABLE, TERMINATING, lookup,
                                     request_trigger, response_trigger)
from gateway.span import Edit
from gateway.alg_contract import PacketContext
from gateway.alg_result import Dropped, Result, Run, Timer, close_hole

# "the ALG delays call teardown for five seconds to allow time for
# transmission of the 200 OK" (Call Termination, Call Cancellation).
TEARDOWN_DELAY = 5.0
# "Juniper Networks security devices support up to 6 SDP channels negotiated
# for each direction, for a total of 12 channels per call" (SIP Body).
MAX_CHANNELS_PER_DIRECTION = 6
# Private transport addresses (Via, Contact, Record-Route) one call may bind
# to public ports, each with an inbound pinhole, until it ends. A call has a
# handful (the party, a proxy or two); without a bound one datagram of Via
# lines took hundreds of the ALG address's ports.
MAX_BINDINGS_PER_CALL = 16
# A REGISTER waiting for its answer: a non-INVITE transaction ends within
# 64*T1 = 32 s (RFC 3261 §17.1.2.2, Timer F).
PENDING_REGISTRATION = 32.0
# RFC 3261 §10.2.1.1: a registration without Expires lasts 3600 s.
DEFAULT_REGISTRATION = 3600
# The longest lifetime an Incoming DIP table entry gets, whatever the registrar says.
MAX_REGISTRATION = 86400
DEFAULT_SETTINGS = SipSettings()


@dataclass(frozen=True, slots=True)
class SipContext(PacketContext):
    """What the datapath knows of a SIP packet (:class:`PacketContext`), and
    ``transport``: "udp" or "tcp". ``far_side``: optional, True for an
    address that lies in the zone the message is going to: media or requests
    to it would not cross the gateway from the side the message came from,
    so no pinhole is opened to it (an SDP or Contact naming a third party
    behind the gateway must not open a path to it from anywhere). None: not
    checked (no routing known)."""

    transport: str = "udp"
    far_side: Callable[[str], bool] | None = None


def _max_duration(settings: SipSettings) -> int:
    # The hard bound on a call (Call Session Timers: "hard timeout values to
    # set the maximum amount of time a call can exist").
    return getattr(settings, "max_call_duration", 86400)


def _port(p) -> int:
    return int(p)


# The events whose stream is their call's (``call/<key>``).
_CALL_EVENTS = frozenset({
    ev.CallStarted, ev.CallActivity, ev.TransactionSeen, ev.BindingAdded, ev.CallAnswered,
    ev.CallRejected, ev.CallRetried, ev.CallForwarded, ev.CallTerminating, ev.MediaBound,
    ev.MediaReleased, ev.MediaSeen, ev.PinholeOpened, ev.PinholeClosed, ev.CallEnded})


def _pinhole_opened(st: SipState, e: ev.PinholeOpened, opened: dict, closed: list) -> None:
    call = st.calls.get(e.key)
    if call is not None:
        pid = e.pinhole
        for p in call.pinholes:
            if p.id == pid:
                # The first of that id, as a search of the call's pinholes finds
                # it (open_hole, inline: an answer opens three).
                opened[pid] = p
                return


def _pinhole_closed(st: SipState, e: ev.PinholeClosed, opened: dict, closed: list) -> None:
    close_hole(e.pinhole, opened, closed)


class _Run(Run):
    """One evaluation: the running state, and what it emitted."""

    apply = staticmethod(apply)
    KEYED = dict.fromkeys(_CALL_EVENTS, ev.call_stream)
    PINHOLES = {ev.PinholeOpened: _pinhole_opened, ev.PinholeClosed: _pinhole_closed}

    def __init__(self, state: SipState, now: float, settings: SipSettings) -> None:
        super().__init__(state, now, settings)
        self.draft: SipDraft | None = None

    def emit(self, e: ev.Event) -> None:
        # The events of one evaluation are folded into one draft, frozen
        # once in :meth:`result`: the same state as applying them one by
        # one (state.apply_to), without a Call and a SipState per event.
        d = self.draft
        if d is None:
            d = self.draft = SipDraft(self.st)
            self.st = d
        HANDLERS[type(e)](d, e)      # state.apply_to, without its check
        self.events.append(e)

    def snapshot(self) -> SipState:
        """The state as it is now, frozen (the run goes on from it)."""
        return self.draft.freeze() if self.draft is not None else self.st

    def result(self, verdict: str = "forward", reason: str = "", data: bytes = b"") -> Result:
        if self.draft is not None:
            self.st = self.draft.freeze()
            self.draft = None
        return super().result(verdict, reason, data)

    # --- calls ending ------------------------------------------------------

    def close_pinhole(self, call: Call, pid: str, reason: str) -> None:
        self.emit(ev.new.PinholeClosed(call.key, pid, reason))

    def release_group(self, key: str, group: str, reason: str) -> None:
        call = self.st.calls[key]
        for p in call.pinholes:
            if p.group == group:
                self.close_pinhole(call, p.id, reason)
        self.emit(ev.new.MediaReleased(key, group, reason))

    def end_call(self, key: str, reason: str) -> None:
        call = self.st.calls[key]
        for p in call.pinholes:
            self.close_pinhole(call, p.id, reason)
        self.emit(ev.new.CallEnded(key, reason))
        self.logs.append(f"call {call.call_id} ended: {reason}")


# --------------------------------------------------------------------------
# public API

def step(state: SipState, ctx: SipContext, data: bytes, now: float,
         settings: SipSettings = DEFAULT_SETTINGS) -> Result:
    """Process one SIP message. Never raises on wire input: a malformed
    message is a drop with the parser's reason."""
    try:
        msg = parse_message(data)
    except RemoteProtocolError as e:
        return Result(state, "drop", f"malformed SIP message: {e}", data, logs=(f"drop: {e}",))
    run = _Run(state, now, settings)
    try:
        _Message(run, ctx, msg, data).process()
    except Dropped as d:
        return Result(state, "drop", d.reason, data, logs=tuple(run.logs) + (f"drop: {d.reason}",))
    out = rewrite_message(data, msg, run.edits) if run.edits else data
    return run.result("forward", "", out)


def on_timer(state: SipState, key: str, now: float,
             settings: SipSettings = DEFAULT_SETTINGS) -> Result:
    """A deadline of ``key`` (a stream: ``call/..``, ``reg/..``,
    ``sip-protect/..``) has passed: end what is due."""
    run = _Run(state, now, settings)
    kind, _, rest = key.partition("/")
    if kind == "call" and rest in state.calls:
        call = state.calls[rest]
        reason = None
        if call.teardown_at is not None and call.teardown_at <= now:
            reason = {TERMINATING: "torn down 5 s after BYE/CANCEL",
                      REJECTED: "INVITE rejected"}.get(call.phase, "torn down")
        elif call.max_deadline <= now:
            reason = "maximum call duration reached"
        elif call.teardown_at is not None:
            pass        # ending anyway, at teardown_at, with its own reason
        elif call.signalling_deadline <= now:
            reason = (f"no final answer to the INVITE within Timer C ({settings.timer_c} s, "
                      "RFC 3261 16.6)" if call.phase == CALLING
                      else "signalling inactivity timeout")
        else:
            for g in call.groups:
                if g.media_deadline is not None and g.media_deadline <= now:
                    reason = f"media inactivity timeout (voice channel {g.group})"
                    break
        if reason is not None:
            run.end_call(call.key, reason)
        else:
            for p in call.pinholes:
                if p.expires_at is not None and p.expires_at <= now:
                    # "When the lifetime expires, the SIP ALG removes the
                    # pinhole" (Pinhole Creation).
                    run.close_pinhole(call, p.id, "pinhole lifetime expired")
    elif kind == "reg":
        ip, _, port = rest.rpartition(":")
        reg = state.registrations.get((ip, int(port))) if _is_port(port) else None
        if reg is not None and reg.expires_at is not None and reg.expires_at <= now:
            run.emit(ev.new.RegistrationRemoved(reg.public_ip, reg.public_port, "registration expired"))
    elif kind == "sip-protect":
        src, _, proxy = rest.partition(">")
        until = state.protect.get((src, proxy))
        if until is not None and until <= now:
            run.emit(ev.new.ProtectDenyExpired(src, proxy))
    res = run.result()
    if not any(t.key == key for t in res.timers):
        res = replace(res, timers=res.timers + (Timer(key, state.next_deadline(key) if not run.events
                                                      else res.state.next_deadline(key)),))
    return res


def media_activity(state: SipState, group: str, now: float,
                   settings: SipSettings = DEFAULT_SETTINGS, pinhole: str | None = None) -> Result:
    """RTP or RTCP of voice channel ``group`` was seen (the datapath reports
    in batches). The group's media inactivity timer restarts; ``pinhole``,
    when given, is the pinhole the packet used, which is then removed: "When a
    packet goes through the pinhole within the lifetime period, immediately
    after, the SIP ALG removes the pinhole for the direction from which the
    packet came" (Pinhole Creation)."""
    run = _Run(state, now, settings)
    key = state.group_index.get(group)
    if key is None or key not in state.calls:
        return run.result()
    call = state.calls[key]
    if call.group(group) is None:
        return run.result()
    run.emit(ev.new.MediaSeen(key, group, now, now + settings.media_inactivity_timeout))
    if pinhole is not None and any(p.id == pinhole for p in call.pinholes):
        run.close_pinhole(call, pinhole, "used")
    return run.result()


# --------------------------------------------------------------------------
# one message

class _Message:
    def __init__(self, run: _Run, ctx: SipContext, msg, data: bytes) -> None:
        self.run = run
        self.ctx = ctx
        self.msg = msg
        self.data = data
        self.now = run.now
        self.settings = run.settings
        self.src_ip = str(ctx.src[0])
        self.dst_ip = str(ctx.dst[0])
        self.key: str | None = None
        self.fork_loser = False

    # --- helpers -------------------------------------------------------

    @property
    def call(self) -> Call | None:
        return self.run.st.calls.get(self.key) if self.key else None

    def sender(self, call: Call) -> str:
        """"a" when the message comes from the party that sent the initial
        INVITE, else "b" (a request's From is its sender; a response's From
        is the other party)."""
        mine = self.msg.from_tag == call.from_tag
        return ("a" if mine else "b") if self.msg.is_request else ("b" if mine else "a")

    def of_another_dialog(self, call: Call) -> bool:
        """The message belongs to a dialog of the call other than the one its
        first 2xx set up (another fork). A dialog is its Call-ID and the two
        tags, whichever party sent the request (RFC 3261 §12.2): in a request
        from the callee, and in the caller's answer to it, the From tag is the
        callee's and the To tag the caller's."""
        msg = self.msg
        if call.to_tag is None or (msg.to_tag == call.to_tag and msg.from_tag == call.from_tag):
            return False
        tags = (msg.from_tag or "", msg.to_tag or "")
        return tags != (call.from_tag, call.to_tag) and tags != (call.to_tag, call.from_tag)

    def private_side(self, call: Call) -> str | None:
        if call.mode == "outbound":
            return "a"
        if call.mode == "inbound":
            return "b"
        return None

    # --- driver --------------------------------------------------------

    def process(self) -> None:
        msg = self.msg
        cseq_method = msg.cseq[1]
        if msg.is_request:
            trigger = request_trigger(msg.method)
        else:
            trigger = response_trigger(msg.status_code, cseq_method)
        if msg.is_request and msg.method == "INVITE":
            self.check_protect()
        phase = NONE
        if cseq_method != "REGISTER":
            call = self.run.st.find_call(msg.call_id, msg.from_tag or "", msg.to_tag)
            if call is not None:
                self.key = call.key
                phase = call.phase
                if trigger == "INVITE" and self.is_forward(call):
                    trigger = "FORWARD"
                if not msg.is_request and cseq_method == "INVITE":
                    self.check_invite_transaction(call)
        t = lookup(phase, trigger)
        for action in t.actions:
            _ACTIONS[action](self)

    def is_forward(self, call: Call) -> bool:
        # The same INVITE (no To tag yet) leaving by the interface its caller
        # came in on: "B and C are reached using the same interface"
        # (Forwarded Calls).
        return (self.msg.to_tag is None and call.phase == CALLING
                and bool(self.ctx.egress) and self.ctx.egress == call.ingress
                and self.msg.via_branch is not None
                and call.txn(self.msg.via_branch, self.msg.cseq[0], "INVITE") is None)

    # --- protection ----------------------------------------------------

    def check_protect(self) -> None:
        until = self.run.st.protect.get((self.src_ip, self.dst_ip))
        if until is not None and until > self.now:
            raise Dropped(f"sip protect deny: INVITE from {self.src_ip} to {self.dst_ip} "
                        f"refused for {until - self.now:.1f} s more after a 3xx/4xx/5xx answer")

    def check_invite_transaction(self, call: Call) -> None:
        """A response to an INVITE must answer an INVITE transaction of the call
        (its Via branch and CSeq): a stray or forged one (it is UDP) must not
        answer, reject or fork the call ("stateful inspection", ch. 2 "SIP ALG")."""
        branch = self.msg.via_branch
        if branch is None or call.txn(branch, self.msg.cseq[0], "INVITE") is None:
            raise Dropped(f"SIP {self.msg.status_code} to INVITE answers no INVITE transaction of "
                        f"call {call.call_id} (Via branch {branch}, CSeq {self.msg.cseq[0]})")

    def do_protect(self) -> None:
        s = self.settings
        code = self.msg.status_code or 0
        if not s.protect_deny or not 300 <= code < 600:
            return
        # Only a reply to an INVITE the ALG passed ("monitor INVITE requests
        # and proxy server replies to them", SIP Attack Protection): the
        # request's own transaction names its source and the proxy. A
        # response matching none (stray, or forged: it is UDP) would let
        # anyone block a phone's INVITEs to its proxy.
        call = self.call
        txn = None
        if call is not None and self.msg.via_branch is not None:
            txn = call.txn(self.msg.via_branch, self.msg.cseq[0], "INVITE")
        if txn is None:
            return
        src, proxy = txn.src_ip, txn.dst_ip
        if s.protect_deny_dst is not None and proxy != str(s.protect_deny_dst.ip):
            return
        self.run.emit(ev.new.ProtectDenyAdded(src, proxy, self.now + s.protect_deny_timeout))

    # --- call lifecycle ------------------------------------------------

    def do_start(self) -> None:
        msg, ctx = self.msg, self.ctx
        limit = self.settings.max_setup_calls_per_source
        if self.run.st.setup_by_src.get(self.src_ip, 0) >= limit:
            # Each call in setup holds ports, pinholes and a timer until its
            # answer or Timer C: one source flooding INVITEs that are never
            # answered must not take them all.
            raise Dropped(f"sip setup limit: INVITE from {self.src_ip} refused, it already has "
                        f"{limit} calls in setup (set sip max-setup-calls-per-source)")
        from_tag = msg.from_tag or ""
        key = f"{msg.call_id};{from_tag}"
        mode, private_ip, alg_ip = "none", None, None
        if ctx.direction == "outbound" and ctx.nat_src is not None:
            mode, private_ip, alg_ip = "outbound", self.src_ip, str(ctx.nat_src[0])
        elif ctx.direction == "inbound":
            target = ctx.nat_dst
            if target is None:
                reg = self.run.st.registrations.get((self.dst_ip, _port(ctx.dst[1])))
                if reg is None:
                    raise Dropped(f"inbound INVITE to {self.dst_ip}:{ctx.dst[1]} matches no MIP, "
                                "VIP or Incoming DIP registration")
                target = (reg.private_ip, reg.private_port)
                self.run.route_to = target
            mode, private_ip, alg_ip = "inbound", str(target[0]), self.dst_ip
        if private_ip == alg_ip:
            mode, private_ip, alg_ip = "none", None, None
        public_call_id = msg.call_id
        if mode == "outbound":
            local, at, host = msg.call_id.rpartition("@")
            if at and host == private_ip:
                public_call_id = f"{local}@{alg_ip}"
        self.run.emit(ev.new.CallStarted(key, msg.call_id, public_call_id, from_tag, mode,
                                     private_ip, alg_ip, ctx.ingress, ctx.egress, self.now,
                                     self.now + _max_duration(self.settings)))
        self.key = key
        self.record_txn()
        if ctx.ingress and ctx.ingress == ctx.egress:
            # Both legs by one interface: media never crosses the device.
            self.run.emit(ev.new.CallForwarded(key))

    def record_txn(self) -> None:
        call, msg = self.call, self.msg
        if call is None or not msg.is_request or msg.via_branch is None:
            return
        if call.txn(msg.via_branch, msg.cseq[0], msg.method) is None:
            self.run.emit(ev.new.TransactionSeen(call.key, msg.via_branch, msg.cseq[0], msg.method,
                                             self.sender(call), self.src_ip, self.dst_ip))

    def do_activity(self) -> None:
        call = self.call
        if call is None:
            return
        self.record_txn()
        if call.phase == CALLING:
            # No final answer yet: the call lasts as long as its INVITE
            # transaction, which Timer C bounds (RFC 3261 §16.6 bullet 11,
            # §16.8): started by the INVITE, restarted by a provisional
            # answer 101-199 (§16.7 step 2), otherwise left running. An
            # unanswered INVITE (a scanner's) goes after it, with its ports
            # and pinholes.
            if self.restarts_timer_c():
                deadline = self.now + self.settings.timer_c
            else:
                deadline = call.signalling_deadline
            self.run.emit(ev.new.CallActivity(call.key, self.now, deadline, call.session_expires))
            return
        timeout = call.session_expires or self.settings.signaling_inactivity_timeout
        self.run.emit(ev.new.CallActivity(call.key, self.now, self.now + timeout, call.session_expires))

    def restarts_timer_c(self) -> bool:
        msg = self.msg
        if msg.is_request:
            return msg.method == "INVITE"
        return msg.cseq[1] == "INVITE" and 101 <= (msg.status_code or 0) <= 199

    def do_session(self) -> None:
        # "If the ALG receives another INVITE before the session times out,
        # it resets all timeout values to this new INVITE or to default
        # values" (Call Session Timers).
        call = self.call
        self.run.emit(ev.new.CallActivity(call.key, self.now,
                                      self.now + self.settings.signaling_inactivity_timeout, None))

    def do_answer(self) -> None:
        call, msg = self.call, self.msg
        to_tag = msg.to_tag or ""
        if self.of_another_dialog(call):
            # Forking: "the SIP ALG parses but updates call information with
            # the first 200 OK message it receives".
            self.fork_loser = True
            self.run.logs.append(f"call {call.call_id}: 2xx from another fork (tag {to_tag!r}) "
                                 "passed; call kept from the first 2xx")
            return
        if call.to_tag is None:
            self.run.emit(ev.new.CallAnswered(call.key, to_tag, self.now,
                                          self.now + self.settings.media_inactivity_timeout,
                                          self.now + self.settings.media_inactivity_timeout))
        # Session-Expires of the 2xx sets the signalling timeout (Call
        # Session Timers); without it the configured default applies.
        se = msg.session_expires if msg.session_expires else None
        timeout = se or self.settings.signaling_inactivity_timeout
        self.run.emit(ev.new.CallActivity(call.key, self.now, self.now + timeout, se))

    def do_reject(self) -> None:
        self.run.emit(ev.new.CallRejected(self.key, self.msg.status_code, self.now + TEARDOWN_DELAY))

    def do_retry(self) -> None:
        self.run.emit(ev.new.CallRetried(self.key, self.now))

    def do_teardown(self) -> None:
        self.run.emit(ev.new.CallTerminating(self.key, self.msg.method, self.now + TEARDOWN_DELAY))

    def do_forward(self) -> None:
        call = self.call
        if not call.forwarded:
            self.run.emit(ev.new.CallForwarded(call.key))
        for g in call.groups:
            self.run.release_group(call.key, g.group, "forwarded call: media bypasses the device")

    # --- header NAT ----------------------------------------------------

    def msg_direction(self, call: Call | None) -> str:
        if call is not None and call.mode == "none":
            return "none"
        if self.ctx.direction == "outbound" and self.ctx.nat_src is None:
            return "none"
        return self.ctx.direction

    def do_headers(self) -> None:
        call = self.call
        if call is None:
            return self.do_stateless()
        direction = self.msg_direction(call)
        if direction == "none" or call.alg_ip is None:
            return
        msg = self.msg
        actions = nat.field_actions(msg.cseq[1] if not msg.is_request else msg.method, direction,
                                    msg.is_request, call.call_id != call.public_call_id)
        if direction == "outbound":
            self.run.edits += nat.header_edits(msg.addresses, actions, self.call_l2a, self.call_a2l)
        else:
            self.route_inbound(call)
            self.run.edits += nat.header_edits(msg.addresses, actions, self.call_l2a, self.call_a2l)
            self.contact_pinholes(call)

    def route_inbound(self, call: Call) -> None:
        if self.ctx.nat_dst is not None or not self.msg.is_request:
            return
        b = call.binding_for_public(self.dst_ip, _port(self.ctx.dst[1]))
        if b is not None:
            self.run.route_to = (b.private_ip, b.private_port)

    def _local_ips(self, call: Call) -> set[str]:
        ips = {call.private_ip} if call.private_ip else set()
        if self.ctx.direction == "outbound":
            ips.add(self.src_ip)
        return ips

    def call_l2a(self, field: str, ip: str, port: int | None):
        call = self.call
        eff = port if port is not None else nat.SIP_PORT
        b = call.binding_for_private(ip, eff)
        if b is not None:
            return b.public_ip, b.public_port
        if not ((ip == call.private_ip and call.private_ip)
                or (ip == self.src_ip and self.ctx.direction == "outbound")):
            return None     # not in _local_ips(call)
        if field not in nat.TRANSPORT_FIELDS:
            return call.alg_ip, None
        # A transport address of the private party: bind it to a public
        # port so requests from outside reach it (Outgoing Calls: "The
        # pinholes also allow incoming packets to reach the Contact:, Via:,
        # and Record-Route: IP addresses and ports").
        b = self.bind(call, ip, eff)
        return b.public_ip, b.public_port

    def bind(self, call: Call, ip: str, port: int):
        ctx = self.ctx
        if len(self.run.st.calls[call.key].bindings) >= MAX_BINDINGS_PER_CALL:
            raise Dropped(f"call {call.call_id}: more than {MAX_BINDINGS_PER_CALL} private transport "
                        f"bindings ({ip}:{port}); SIP message discarded")
        if (ctx.direction == "outbound" and ctx.nat_src is not None
                and (ip, port) == (self.src_ip, _port(ctx.src[1]))
                and str(ctx.nat_src[0]) == call.alg_ip):
            pub, owned = _port(ctx.nat_src[1]), False
        else:
            reg = self.run.st.registration_for_private(ip, port)
            if reg is not None and reg.public_ip == call.alg_ip:
                pub, owned = reg.public_port, False
            else:
                got = allocate_port(self.run.st.ports, call.alg_ip, hint=port, low=MEDIA_PORT_LOW)
                if got is None:
                    raise Dropped(f"no free public port on {call.alg_ip} for {ip}:{port}")
                pub, owned = got, True
        self.run.emit(ev.new.BindingAdded(call.key, ip, port, call.alg_ip, pub, owned))
        self.open_pinhole(call, "", "signalling", "inbound", (call.alg_ip, pub), (ip, port), None,
                          None, proto=ctx.transport)
        return self.call.binding_for_private(ip, port)

    def call_a2l(self, field: str, ip: str, port: int | None):
        call = self.call
        eff = port if port is not None else nat.SIP_PORT
        if field == "via-rport":
            b = call.binding_for_public(ip, eff) or call.binding_for_public(call.alg_ip, eff)
            return (b.private_ip, b.private_port) if b else None
        b = call.binding_for_public(ip, eff)
        if b is not None:
            return b.private_ip, (b.private_port if port is not None or b.private_port != eff else None)
        reg = self.run.st.registrations.get((ip, eff))
        if reg is not None:
            return reg.private_ip, (reg.private_port if port is not None
                                    or reg.private_port != eff else None)
        ctx = self.ctx
        if ctx.nat_dst is not None and (ip, eff) == (self.dst_ip, _port(ctx.dst[1])):
            return str(ctx.nat_dst[0]), (_port(ctx.nat_dst[1]) if port is not None else None)
        if ip == call.alg_ip and call.private_ip:
            return call.private_ip, None
        return None

    def contact_pinholes(self, call: Call) -> None:
        # The public party's Contact is where the private side sends its
        # next requests: open a Via/Contact pinhole toward it (Figure 9).
        # A dialog has one remote target, the latest Contact of a request or
        # a 1xx/2xx (RFC 3261 §12.1, §12.2.1.2 target refresh), so the call
        # holds one such pinhole and a new target replaces the old one;
        # the Contacts of a 3xx-6xx are alternatives, not a target. Opening
        # one per Contact ever seen let a peer grow the table without bound.
        msg = self.msg
        if not msg.is_request and (msg.status_code or 0) >= 300:
            return
        target = next((c for c in msg.contacts if c.host is not None and not c.star), None)
        if target is None:
            return
        port = (int(target.port.text) if target.port is not None and _is_port(target.port.text)
                else nat.SIP_PORT)
        dst = (target.host.text, port)
        if dst[0] == call.alg_ip:
            return
        holes = [p for p in self.call.pinholes
                 if p.kind == "signalling" and p.direction == "outbound"]
        if any(p.dst == dst for p in holes):
            return
        for p in holes:
            self.run.close_pinhole(self.call, p.id, "remote target changed")
        self.open_pinhole(self.call, "", "signalling", "outbound", dst, None, None, None,
                          proto=self.ctx.transport)

    def stateless_mapper(self):
        """Translation with the packet's own NAT only (messages of no call):
        the binding of its source or destination, and registrations."""
        ctx, st = self.ctx, self.run.st
        if ctx.direction == "outbound" and ctx.nat_src is not None:
            local, alg = self.src_ip, str(ctx.nat_src[0])
            pair = ((self.src_ip, _port(ctx.src[1])), (alg, _port(ctx.nat_src[1])))
        elif ctx.direction == "inbound":
            alg = self.dst_ip
            target = ctx.nat_dst
            if target is None:
                reg = st.registrations.get((self.dst_ip, _port(ctx.dst[1])))
                if reg is not None:
                    target = (reg.private_ip, reg.private_port)
                    if self.msg.is_request:
                        self.run.route_to = target
            if target is None:
                return None, None
            local = str(target[0])
            pair = ((local, _port(target[1])), (self.dst_ip, _port(ctx.dst[1])))
        else:
            return None, None

        def l2a(field, ip, port):
            eff = port if port is not None else nat.SIP_PORT
            if (ip, eff) == pair[0]:
                return pair[1]
            reg = st.registration_for_private(ip, eff)
            if reg is not None:
                return reg.public_ip, reg.public_port
            if ip == local:
                return alg, None
            return None

        def a2l(field, ip, port):
            eff = port if port is not None else nat.SIP_PORT
            if (ip, eff) == pair[1]:
                return pair[0][0], (pair[0][1] if port is not None or pair[0][1] != eff else None)
            reg = st.registrations.get((ip, eff))
            if reg is not None:
                return reg.private_ip, (reg.private_port if port is not None
                                        or reg.private_port != eff else None)
            if ip == alg:
                return local, None
            return None

        return l2a, a2l

    def do_stateless(self) -> None:
        direction = self.msg_direction(None)
        if direction == "none":
            return
        l2a, a2l = self.stateless_mapper()
        if l2a is None:
            return
        msg = self.msg
        actions = nat.field_actions(msg.method if msg.is_request else msg.cseq[1], direction,
                                    msg.is_request)
        self.run.edits += nat.header_edits(msg.addresses, actions, l2a, a2l)

    # --- registrations (Incoming DIP table) ------------------------------

    def do_register(self) -> None:
        ctx, msg, st = self.ctx, self.msg, self.run.st
        if self.msg_direction(None) != "outbound":
            return self.do_stateless()
        alg = str(ctx.nat_src[0])
        for c in msg.contacts:
            if c.star or c.host is None or c.host.text != self.src_ip:
                continue
            port = int(c.port.text) if c.port is not None and _is_port(c.port.text) else nat.SIP_PORT
            reg = st.registration_for_private(c.host.text, port)
            if reg is not None and reg.public_ip == alg:
                # A refresh keeps its binding (and its lifetime until the
                # registrar answers).
                continue
            if (c.host.text, port) == (self.src_ip, _port(ctx.src[1])):
                pub, owned = _port(ctx.nat_src[1]), False
            else:
                got = allocate_port(st.ports, alg, hint=port, low=MEDIA_PORT_LOW)
                if got is None:
                    raise Dropped(f"no free public port on {alg} for contact {c.host.text}:{port}")
                pub, owned = got, True
            self.run.emit(ev.new.RegistrationBound(alg, pub, c.host.text, port, msg.call_id,
                                               self.now + PENDING_REGISTRATION, owned))
            st = self.run.st
        self.do_stateless()

    def do_registered(self) -> None:
        msg = self.msg
        if self.msg_direction(None) != "inbound":
            return self.do_stateless()
        st = self.run.snapshot()
        listed: set[tuple[str, int]] = set()
        for c in msg.contacts:
            if c.star or c.host is None:
                continue
            port = int(c.port.text) if c.port is not None and _is_port(c.port.text) else nat.SIP_PORT
            reg = st.registrations.get((c.host.text, port))
            if reg is None:
                continue
            if _call_base(reg.call_id) != _call_base(msg.call_id):
                # A binding of another REGISTER (RFC 3261 §10.3 lists all
                # of the AOR's): not this answer's to change, and a forged
                # answer naming only a public contact must change nothing.
                continue
            listed.add((reg.public_ip, reg.public_port))
            # The lifetime is the registrar's: the contact's expires
            # parameter, else the Expires header (Figure 10: 3600 from the
            # 200 OK replaces the 7200 asked for).
            life = c.expires if c.expires is not None else msg.expires
            if life is None:
                life = DEFAULT_REGISTRATION
            # An Incoming DIP entry holds a public port and a way in: the
            # registrar's word is capped, so a forged or careless 2^31 s cannot
            # pin them for ever (phones refresh well within a day).
            life = min(life, MAX_REGISTRATION)
            if life == 0:
                self.run.emit(ev.new.RegistrationRemoved(reg.public_ip, reg.public_port, "unregistered"))
            else:
                self.run.emit(ev.new.RegistrationBound(reg.public_ip, reg.public_port, reg.private_ip,
                                                   reg.private_port, reg.call_id,
                                                   self.now + life, reg.owned))
        # Bindings of this REGISTER the registrar no longer lists were
        # removed (e.g. Expires: 0, RFC 3261 §10.2.2).
        # The answer carries the Call-ID as the registrar saw it (the ALG's
        # address after the @); the binding keeps the one ph1 sent.
        for reg in st.registrations_of(self.dst_ip, msg.call_id):
            if (reg.public_ip, reg.public_port) not in listed:
                self.run.emit(ev.new.RegistrationRemoved(reg.public_ip, reg.public_port, "unregistered"))
        # Translate with the bindings as they were when the answer arrived.
        saved = self.run.st
        self.run.st = st
        self.do_stateless()
        self.run.st = saved

    # --- REFER -----------------------------------------------------------

    def do_refer(self) -> None:
        """REFER from inside naming a party inside: that party gets a public
        address (its registration's when it has one) so the referred party
        outside can reach it (SIP Request Methods, "Refer")."""
        ctx, msg = self.ctx, self.msg
        if self.msg_direction(self.call) != "outbound":
            return
        for h in msg.headers:
            if h.name not in ("refer-to", "r"):
                continue
            span = h.value
            text = span.text
            at = text.find("@")
            if at < 0:
                continue
            i = at + 1
            j = i
            while j < len(text) and ("0" <= text[j] <= "9" or text[j] == "."):
                j += 1
            host = text[i:j]
            if not _is_ipv4(host):
                continue
            port, k = nat.SIP_PORT, j
            if j < len(text) and text[j] == ":":
                k = j + 1
                while k < len(text) and "0" <= text[k] <= "9":
                    k += 1
                digits = text[j + 1:k]
                if digits:
                    if not _is_port(digits):
                        continue
                    port = int(digits)
            call = self.call
            alg = call.alg_ip if call is not None else str(ctx.nat_src[0])
            if host == alg:
                continue
            reg = self.run.st.registration_for_private(host, port)
            if reg is not None:
                pub = (reg.public_ip, reg.public_port)
            elif call is not None:
                b = call.binding_for_private(host, port) or self.bind(call, host, port)
                pub = (b.public_ip, b.public_port)
            else:
                continue
            new = f"{pub[0]}:{pub[1]}" if (pub[1] != nat.SIP_PORT or k > j) else pub[0]
            self.run.edits.append(Edit(span.start + i, span.start + k, new.encode("ascii")))

    # --- SDP and pinholes ------------------------------------------------

    def open_pinhole(self, call: Call, group: str, kind: str, direction: str,
                     dst: tuple[str, int], to, src_to, expires, proto: str = "udp") -> None:
        target = to if to else dst
        if not _is_ipv4(dst[0]) or (to and not _is_ipv4(to[0])):
            # A host name (a Contact of "sip:x@pbx.example.com") is not an
            # address ("Pinhole Creation" opens pinholes to IP addresses;
            # SipMessage.addresses lists IPv4 literals only): decided here,
            # before any event, so nothing is journaled for it.
            self.run.logs.append(f"call {call.call_id}: no {kind} pinhole to {target[0]}: "
                                 "not an IPv4 address")
            return
        far = self.ctx.far_side
        if far is not None and far(str(target[0])):
            self.run.logs.append(
                f"call {call.call_id}: no {kind} pinhole to {target[0]}:{target[1]}: it lies in the "
                f"zone the message goes to ({self.ctx.egress}), so traffic to it does not cross the "
                "gateway from the sender's side")
            return
        call = self.run.st.calls[call.key]
        pid = f"{call.key}#p{call.seq}"
        self.run.emit(ev.new.PinholeOpened(
            call.key, pid, group, kind, proto, direction, dst[0], dst[1],
            to[0] if to else None, to[1] if to else None,
            src_to[0] if src_to else None, src_to[1] if src_to else None, expires))

    def do_media(self) -> None:
        msg, call = self.msg, self.call
        if call is None or self.fork_loser:
            return
        if msg.body_kind == "encrypted":
            # "the SIP ALG permits it through the firewall anyway, but
            # generates a log message" (note in "ALG").
            self.run.logs.append(f"call {call.call_id}: encrypted SDP ({msg.content_type}) "
                                 "passed uninspected; no pinholes opened for it")
            return
        sd = msg.sdp
        if sd is None:
            return
        if (not msg.is_request and msg.to_tag is not None and call.phase == CONFIRMED
                and self.of_another_dialog(call)):
            return
        side = self.sender(call)
        key = call.key
        nat_side = call.alg_ip is not None and side == self.private_side(call)
        existing = {g.index: g for g in call.groups if g.side == side}
        ports: dict[int, int] = {}
        rejected: set[int] = set()
        local = self._local_ips(call) if nat_side else set()
        channels = 0
        for i, m in enumerate(sd.media):
            old = existing.get(i)
            dest = m.conn if m.conn is not None else m.session_conn
            if m.port == 0:
                # A stream removed (RFC 3264 §8.2): its channel goes.
                if old:
                    self.run.release_group(key, old.group, "media stream removed")
                continue
            if dest is None:
                raise Dropped(f"SDP m= line {i + 1} has no c= at media or session level")
            addr = dest.addr.text
            if dest.is_multicast:
                self.run.logs.append(f"call {call.call_id}: multicast c= {addr} unsupported; "
                                     "no pinhole")
                if old:
                    self.run.release_group(key, old.group, "multicast")
                continue
            if addr == "0.0.0.0":
                # On hold: "The SIP ALG does not create pinholes for RTP and
                # RTCP traffic when the destination IP address is 0.0.0.0".
                if old:
                    self.run.release_group(key, old.group, "on hold")
                continue
            if not _is_ipv4(addr):
                self.run.logs.append(f"call {call.call_id}: c= {addr} is not an IPv4 address; "
                                     "no pinhole")
                continue
            channels += 1
            if channels > MAX_CHANNELS_PER_DIRECTION:
                self.run.logs.append(
                    f"call {call.call_id}: media channel {channels} of one direction refused "
                    f"(at most {MAX_CHANNELS_PER_DIRECTION}); m= port set to 0")
                if old:
                    self.run.release_group(key, old.group, "too many channels")
                rejected.add(i)
                continue
            rtcp_port = m.rtcp_port if m.rtcp_port is not None else m.port + 1
            rtcp_ip = m.rtcp_addr.text if m.rtcp_addr is not None else addr
            if nat_side:
                local.add(addr)
            if (old is not None and old.dst_ip == addr and old.dst_port == m.port
                    and old.rtcp_port == rtcp_port):
                if old.public_port is not None:
                    ports[i] = old.public_port
                continue
            if old is not None:
                self.run.release_group(key, old.group, "media changed")
            self.bind_media(i, side, addr, m.port, rtcp_ip, rtcp_port, nat_side, ports)
        for idx, g in existing.items():
            if idx >= len(sd.media):
                self.run.release_group(key, g.group, "media stream removed")
        if nat_side:
            self.run.edits += nat.sdp_edits(sd, call.alg_ip, local, ports, rejected)
        elif rejected and self.msg_direction(call) != "none":
            self.run.edits += nat.sdp_edits(sd, call.alg_ip or "", set(), {}, rejected)
        elif rejected:
            self.run.edits += nat.sdp_edits(sd, "", set(), {}, rejected)

    def bind_media(self, i: int, side: str, addr: str, port: int, rtcp_ip: str, rtcp_port: int,
                   nat_side: bool, ports: dict[int, int]) -> None:
        call = self.call
        key = call.key
        pub = None
        if nat_side:
            # "the ALG provides consecutive even-odd ports. If it is unable
            # to find a pair of ports it discards the SIP message."
            pub = allocate_pair(self.run.st.ports, call.alg_ip, hint=port)
            if pub is None:
                raise Dropped(f"no free even/odd port pair on {call.alg_ip} for media "
                            f"{addr}:{port}; SIP message discarded")
            ports[i] = pub
        group = f"{key}#g{call.seq}"
        deadline = (self.now + self.settings.media_inactivity_timeout
                    if call.phase == CONFIRMED else None)
        self.run.emit(ev.new.MediaBound(key, group, side, i, addr, port, rtcp_port,
                                    call.alg_ip if nat_side else None, pub, deadline))
        if call.forwarded:
            return
        expires = self.now + self.settings.media_inactivity_timeout
        if nat_side:
            # Media from outside to the ALG's pair, translated to the
            # private party (Outgoing Calls; Figure 8).
            self.open_pinhole(call, group, "media", "inbound", (call.alg_ip, pub), (addr, port),
                              None, expires)
            self.open_pinhole(call, group, "media", "inbound", (call.alg_ip, pub + 1),
                              (rtcp_ip, rtcp_port), None, expires)
            return
        # Media toward this party (public, or either side without NAT);
        # from the private party it leaves as its own public pair when
        # the private side has already announced one for this stream.
        direction = "any" if call.alg_ip is None else "outbound"
        src_rtp = src_rtcp = None
        if call.alg_ip is not None:
            mine = self.private_side(call)
            for g in self.call.groups:
                if g.side == mine and g.index == i and g.public_port is not None:
                    src_rtp = (g.public_ip, g.public_port)
                    src_rtcp = (g.public_ip, g.public_port + 1)
        self.open_pinhole(call, group, "media", direction, (addr, port), None, src_rtp, expires)
        self.open_pinhole(call, group, "media", direction, (rtcp_ip, rtcp_port), None, src_rtcp,
                          expires)


# The transition table's actions, as methods of _Message.
_ACTIONS = {a: getattr(_Message, "do_" + a) for t in TABLE.values() for a in t.actions}


@lru_cache(maxsize=1024)
def _is_ipv4(text: str) -> bool:
    # ASCII digits only: str.isdigit() is true of "²" and other Unicode
    # digits, which int() then refuses (the text is the wire's, read as
    # latin-1).
    if len(text) > 15 or not text.isascii():
        return False
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def _is_port(text: str) -> bool:
    """1-5 ASCII digits, at most 65535."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535


__all__ = ["SipContext", "Result", "Timer", "step", "on_timer", "media_activity", "EMPTY",
           "SipState", "TEARDOWN_DELAY", "MAX_CHANNELS_PER_DIRECTION", "MAX_BINDINGS_PER_CALL"]
