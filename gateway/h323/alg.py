"""The H.323 ALG, sans-I/O: ``step(state, ctx, data, now) -> Result``.

The datapath has decided policy and NAT for the packet and describes it in an
:class:`H323Context`; ``data`` is one RAS datagram, or one TPKT-framed Q.931
or H.245 message (:func:`gateway.h323.tpkt.frame_tpkt` splits a TCP stream).
:func:`step` parses it into the positions of its transport addresses, looks
the transition up in :mod:`gateway.h323.transitions`, runs its actions and
rewrites every embedded address NAT changes, in place (same length). Every
change is an event folded with :func:`gateway.h323.state.apply` as it is
emitted, so ``Result.state`` is the fold of ``Result.events``; a dropped
message changes nothing.

Manual: chapter 1 ("H.323 Application Layer Gateway") and its examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from gateway.alg_result import Dropped, Result, Run, close_hole, open_hole
from gateway.errors import RemoteProtocolError
from gateway.h323 import events as ev
from gateway.h323.h245 import logical_channel, parse_h245
from gateway.h323.nat import address_edit
from gateway.h323.per import Address
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from gateway.h323.state import DISENGAGED, H323State, apply, requester_ip
from gateway.h323.transitions import ANY, lookup
from gateway.ports import allocate_port
from gateway.span import apply_edits


@dataclass(frozen=True, slots=True)
class H323Settings:
    """Timers of the H.323 ALG. The manual gives none for H.323; these are
    the SIP ALG's defaults (ch. 2 "Session Inactivity Timeout": signalling
    43200 s, media 120 s) and the MGCP ALG's 30 s transaction timeout, which
    covers H.225.0's RAS retries (Annex A: 3 s, a few times) with room."""

    ras_transaction_timeout: int = 30
    signaling_inactivity_timeout: int = 43200
    media_inactivity_timeout: int = 120
    max_call_duration: int = 86400
    # RCF without timeToLive: the registration is kept this long (H.225.0
    # 7.9.1: without timeToLive the gatekeeper sets no expiry; a bound keeps
    # the incoming DIP table from growing forever).
    registration_ttl: int = 3600
    # Bounds on what hostile traffic can make the ALG hold. The
    # configuration language has no H.323 section (the manual gives H.323 no
    # such settings), so these are constants:
    # - a call admitted or set up but not connected ends after this long.
    #   Q.931 lets the called side ring for T301 (3 min at least) after the
    #   T303 (4 s) and T310 (10 s) waits; a minute more covers them.
    setup_timeout: int = 240
    # - calls in setup (before Connect) one source IP may have: a Setup or
    #   ARQ over it is dropped. A PBX or gateway behind one address places
    #   many calls at once, so the bound is generous.
    max_setups_per_source: int = 256
    # - RAS transactions awaiting an answer per requester IP (an endpoint
    #   has one or two outstanding; H.225.0 7.5 retries with the same seq).
    max_ras_per_source: int = 64


DEFAULT_SETTINGS = H323Settings()
MEDIA_FIELDS = {"mediaChannel": "rtp", "mediaControlChannel": "rtcp"}


@dataclass(frozen=True, slots=True)
class H323Context:
    """What the datapath knows of the packet.

    ``channel``: "ras", "q931" or "h245". ``direction``: "outbound" (private
    to public), "inbound" or "none". ``src``/``dst``: as the packet arrived;
    ``nat_src``: the public source NAT gives it (outbound: interface IP, MIP
    or DIP); ``nat_dst``: the private destination (inbound to a MIP), None
    for an inbound packet to an incoming DIP address (the registration
    table decides, ``Result.route_to``). ``conn``: an identifier of the TCP
    connection the same for both directions (Q.931 call references are per
    connection)."""

    channel: str
    direction: str
    src: tuple[str, int]
    dst: tuple[str, int]
    nat_src: tuple[str, int] | None = None
    nat_dst: tuple[str, int] | None = None
    conn: str = ""

    def connection(self) -> str:
        if self.conn:
            return self.conn
        a, b = sorted([f"{self.src[0]}:{self.src[1]}", f"{self.dst[0]}:{self.dst[1]}"])
        return f"{a}-{b}"


def _ep(a: tuple) -> str:
    return f"{a[0]}:{a[1]}"


def _pinhole_opened(st: H323State, e: ev.PinholeOpened, opened: dict, closed: list) -> None:
    c = st.calls.get(e.key)
    open_hole(c.pinholes.get(e.pinhole) if c else None, opened)


def _pinhole_closed(st: H323State, e: ev.PinholeClosed, opened: dict, closed: list) -> None:
    close_hole(e.pinhole, opened, closed)


def _registered(st: H323State, e: ev.Registered, opened: dict, closed: list) -> None:
    # The registration's pinhole as it stands now: opened anew, last.
    reg = st.registrations.get(tuple(e.public))
    if reg is not None:
        hole = reg.pinhole
        opened.pop(hole.id, None)
        opened[hole.id] = hole


def _unregistered(st: H323State, e: ev.Unregistered, opened: dict, closed: list) -> None:
    close_hole(f"h323-reg/{e.public[0]}:{e.public[1]}", opened, closed)


class _Run(Run):
    apply = staticmethod(apply)
    # The events whose stream is their call's (``h323-call/<key>``).
    KEYED = dict.fromkeys((ev.CallStarted, ev.CallProgressed, ev.PortMapped, ev.H245Bound, ev.PinholeOpened,
                           ev.PinholeClosed, ev.PinholeShared, ev.MediaSeen, ev.CallEnded), ev.call_stream)
    PINHOLES = {ev.PinholeOpened: _pinhole_opened, ev.PinholeClosed: _pinhole_closed,
                ev.Registered: _registered, ev.Unregistered: _unregistered}

    def __init__(self, state: H323State, ctx: H323Context, now: float, settings: H323Settings) -> None:
        super().__init__(state, now, settings)
        self.ctx = ctx
        # (original, final) of every address, by id()
        self.moved: dict[int, tuple[tuple, tuple]] = {}

    # --- NAT of embedded addresses ----------------------------------------

    def translate(self, addresses: tuple[Address, ...], key: str | None) -> None:
        """Outbound: the sender's private address becomes its public one
        (manual ch. 1 "Outgoing Calls with NAT": the MIP; interface or DIP
        address otherwise). Inbound: our public address becomes the private
        host's (MIP, or the registration behind an incoming DIP)."""
        ctx = self.ctx
        for a in addresses:
            orig = (str(a.ip), a.port)
            new = None
            if ctx.direction == "outbound" and ctx.nat_src is not None and orig[0] == str(ctx.src[0]):
                new = self._outbound(orig, key)
            elif ctx.direction == "inbound" and orig[0] == str(ctx.dst[0]):
                new = self._inbound(orig, key)
            if new is not None and new != orig:
                self.edits.append(address_edit(a, new[0], new[1]))
            self.moved[id(a)] = (orig, new or orig)

    def _outbound(self, orig: tuple, key: str | None) -> tuple:
        ctx = self.ctx
        pub_ip = str(ctx.nat_src[0])
        if orig == (str(ctx.src[0]), int(ctx.src[1])):
            return (pub_ip, int(ctx.nat_src[1]))
        port = orig[1]
        owner = self.st.ports_in_use.get((pub_ip, port))
        if key is not None and owner is not None and owner != key:
            # Another call holds this public port (interface or DIP NAT
            # shares one address among hosts): take a free one.
            used = {(IPv4Address(i), p) for (i, p) in self.st.ports_in_use}
            got = allocate_port(used, IPv4Address(pub_ip), hint=port)
            if got is None:
                raise Dropped("no free public port for an embedded address")
            port = got
        if key is not None and (pub_ip, port) not in self.st.calls[key].ports:
            self.emit(ev.PortMapped(key, (pub_ip, port), orig))
        return (pub_ip, port)

    def _inbound(self, orig: tuple, key: str | None) -> tuple:
        ctx = self.ctx
        if key is not None:
            private = self.st.calls[key].ports.get(orig)
            if private is not None:
                return private
        reg = self.st.registrations.get(orig)
        if reg is not None:
            return reg.private
        if ctx.nat_dst is not None:
            return (str(ctx.nat_dst[0]), orig[1])
        reg = self.st.registrations.get((str(ctx.dst[0]), int(ctx.dst[1])))
        if reg is not None:
            return (reg.private[0], orig[1])
        return orig

    def final(self, a: Address) -> tuple:
        return self.moved[id(a)][1]

    def pinhole_for(self, a: Address) -> tuple[tuple, tuple | None]:
        """Where the far side sends (``dst``) and where that goes inside."""
        orig, new = self.moved[id(a)]
        if self.ctx.direction == "outbound" and new != orig:
            return new, orig
        return new, None

    # --- call helpers ---------------------------------------------------------

    def open(self, key: str, kind: str, transport: str, a: Address, group: str) -> None:
        dst, to = self.pinhole_for(a)
        pid = f"{key}/{kind}/{dst[0]}:{dst[1]}"
        held = self.st.calls[key].pinholes.get(pid)
        if held is not None:
            # A retransmission, or another channel naming the same address
            # (an endpoint's RTCP port serves its channels both ways): the
            # pinhole stays while any of them is open.
            if group not in held.groups:
                self.emit(ev.PinholeShared(key, pid, group, True))
            return
        deadline = self.now + self.settings.media_inactivity_timeout if kind in ("rtp", "rtcp") else None
        self.emit(ev.PinholeOpened(key, pid, kind, transport, dst, to, group, deadline))

    def end_call(self, key: str, reason: str) -> None:
        call = self.st.calls[key]
        for pid in list(call.pinholes):
            self.emit(ev.PinholeClosed(key, pid, reason))
        self.emit(ev.CallEnded(key, reason))
        self.logs.append(f"h323 call {key} ended: {reason}")

    def start_call(self, key: str, conn: str, call_reference: int, origin: str) -> None:
        """A Setup or an ACF begins call ``key``; one that admitted it
        before (ACF then Setup) is joined and not counted again."""
        s = self.settings
        if key not in self.st.calls and self.st.setups_by_source.get(origin, 0) >= s.max_setups_per_source:
            raise Dropped(f"{s.max_setups_per_source} calls of {origin} already in setup")
        self.emit(ev.CallStarted(key, conn, call_reference, self.now, self.now + s.signaling_inactivity_timeout,
                                 self.now + s.max_call_duration, origin, self.now + s.setup_timeout))

    def touch(self, key: str, phase: str | None) -> None:
        c = self.st.calls[key]
        self.emit(ev.CallProgressed(key, phase or c.phase, self.now + self.settings.signaling_inactivity_timeout))


# --------------------------------------------------------------------------

def step(state: H323State, ctx: H323Context, data: bytes, now: float,
         settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    """Process one message. Never raises on wire input: malformed is a drop."""
    run = _Run(state, ctx, now, settings)
    try:
        if ctx.channel == "ras":
            _ras(run, parse_ras(data))
        elif ctx.channel == "q931":
            _q931(run, parse_call_signal(data))
        elif ctx.channel == "h245":
            _h245(run, parse_h245(data))
        else:
            raise ValueError(f"unknown H.323 channel {ctx.channel!r}")
    except RemoteProtocolError as e:
        return Result(state, "drop", f"malformed H.323 message: {e}", data, logs=(f"drop: {e}",))
    except Dropped as d:
        return Result(state, "drop", d.reason, data, logs=tuple(run.logs) + (f"drop: {d.reason}",))
    return run.result("forward", "", apply_edits(data, run.edits) if run.edits else data)


def _ras(run: _Run, msg) -> None:
    ctx = run.ctx
    rule = lookup("ras", msg.kind)
    run.translate(msg.addresses, None)
    if rule is None or msg.seq is None:
        return
    if "request" in rule.actions:
        requester = _ep(ctx.src)
        if (requester, msg.seq) in run.st.ras:
            return          # a retransmission (H.225.0 Annex A: same seq)
        binding: tuple = ()
        call = ""
        if msg.kind == "registrationRequest":
            for a in msg.all("callSignalAddress"):
                orig, new = run.moved[id(a)]
                if new != orig or ctx.direction == "none":
                    binding = (new, orig)
                    break
        if msg.kind in ("admissionRequest", "disengageRequest"):
            ci = msg.fields.get("callIdentifier")
            if ci:
                call = ci["guid"].hex()
        if run.st.ras_by_source.get(requester_ip(requester), 0) >= run.settings.max_ras_per_source:
            raise Dropped(f"RAS {msg.kind}: {run.settings.max_ras_per_source} transactions of "
                        f"{requester_ip(requester)} already await an answer")
        run.emit(ev.RasRequested(requester, msg.seq, msg.kind, run.now + run.settings.ras_transaction_timeout,
                                 binding, call))
        return
    # An answer goes back to the requester: the destination as it arrived
    # is the public side of a NATed requester (inbound), else the requester.
    requester = _ep(ctx.nat_dst) if ctx.nat_dst is not None else _ep(ctx.dst)
    txn = run.st.ras.get((requester, msg.seq)) or run.st.ras.get((_ep(ctx.dst), msg.seq))
    if txn is None:
        run.logs.append(f"h323 RAS {msg.kind} seq {msg.seq} answers no request")
        return
    run.emit(ev.RasEnded(txn.requester, txn.seq, msg.kind))
    if "register" in rule.actions and txn.binding:
        ttl = msg.fields.get("timeToLive", run.settings.registration_ttl)
        public, private = txn.binding
        run.emit(ev.Registered(tuple(public), tuple(private), run.now + ttl))
    elif "unregister" in rule.actions:
        for pub, reg in list(run.st.registrations.items()):
            if _ep(reg.private).split(":")[0] == txn.requester.split(":")[0]:
                run.emit(ev.Unregistered(pub, "unregistered (UCF)"))
    elif "admit" in rule.actions and txn.call:
        dest = msg.address("destCallSignalAddress")
        if dest is None:
            return
        key = txn.call
        if key not in run.st.calls:
            run.start_call(key, "", 0, requester_ip(txn.requester))
        run.open(key, "q931", "tcp", dest, "q931")
    elif "disengage" in rule.actions and txn.call in run.st.calls:
        # DCF confirms the endpoint's DRQ (H.225.0 7.10): the call is over,
        # as after ReleaseComplete.
        run.end_call(txn.call, DISENGAGED)


def _q931(run: _Run, msg) -> None:
    ctx = run.ctx
    conn = ctx.connection()
    rule = lookup("q931", msg.name)
    key = run.st.call_refs.get((conn, msg.call_reference))
    if rule is None:
        if key is None:
            raise Dropped(f"Q.931 {msg.name} of no known call")
        run.translate(msg.addresses, key)
        return
    if "start" in rule.actions:
        if key is None:
            guid = msg.call_identifier()
            key = guid.hex() if guid else f"{conn}#{msg.call_reference}"
            if key in run.st.calls and run.st.calls[key].conn:
                raise Dropped(f"Setup of call {key} already on another connection")
            run.start_call(key, conn, msg.call_reference, str(ctx.src[0]))
        if ctx.direction == "inbound" and ctx.nat_dst is None:
            reg = run.st.registrations.get((str(ctx.dst[0]), int(ctx.dst[1])))
            if reg is None:
                raise Dropped("Setup to an incoming DIP address with no registration behind it")
            run.route_to = (reg.private[0], reg.private[1])
    elif key is None:
        raise Dropped(f"Q.931 {msg.name} of no known call")
    elif key not in run.st.calls:
        if "release" not in rule.actions:
            raise Dropped(f"Q.931 {msg.name} of call {key}, ended by its DCF")
        # The call already ended here, by the DCF of its DRQ (H.225.0 7.10:
        # an endpoint may disengage before it releases): its ReleaseComplete
        # must still reach the other endpoint, which otherwise waits for it.
        run.emit(ev.CallEnded(key, "ReleaseComplete"))
        run.logs.append(f"h323 ReleaseComplete of call {key} after its DCF")
        return
    call = run.st.calls[key]
    if rule.phases is not None and ANY not in rule.phases and call.phase not in rule.phases:
        raise Dropped(f"Q.931 {msg.name} in call phase {call.phase}")
    run.translate(msg.addresses, key)
    if "release" in rule.actions:
        run.end_call(key, "ReleaseComplete")
        return
    run.touch(key, rule.to if "progress" in rule.actions else None)
    if "h245" in rule.actions:
        a = msg.address("h245Address")
        if a is not None:
            orig, new = run.moved[id(a)]
            run.emit(ev.H245Bound(key, (orig, new) if orig != new else (orig,)))
            run.open(key, "h245", "tcp", a, "h245")
    if msg.nested:
        _tunnelled_h245(run, key, msg)
    if "faststart" in rule.actions:
        for a in msg.addresses:
            if a.path and a.path[0] == "h323-uu-pdu" and "fastStart" in a.path and a.field in MEDIA_FIELDS:
                i = a.path.index("fastStart")
                run.open(key, MEDIA_FIELDS[a.field], "udp", a, f"{key}/fs{a.path[i + 1]}")


def _h245(run: _Run, msg) -> None:
    ctx = run.ctx
    key = (run.st.h245_index.get((str(ctx.dst[0]), int(ctx.dst[1])))
           or run.st.h245_index.get((str(ctx.src[0]), int(ctx.src[1]))))
    if key is None or key not in run.st.calls:
        raise Dropped("H.245 of no known call")
    run.translate(msg.addresses, key)
    _logical_channel(run, key, msg.name, msg.fields, msg.addresses)


def _tunnelled_h245(run: _Run, key: str, msg) -> None:
    """H.245 messages tunnelled in the Q.931 message's h245Control (H.225.0
    7.3.1 / 8.2.1): each is handled as on an H.245 connection. Their
    addresses were translated with the rest of the message."""
    for n in msg.nested:
        if "h245Control" not in n.path or not (isinstance(n.value, tuple) and len(n.value) == 2
                                                and isinstance(n.value[1], tuple) and len(n.value[1]) == 2):
            continue
        name, fields = n.value[1]
        depth = len(n.path)
        inner = tuple(a for a in msg.addresses if a.path[:depth] == n.path)
        _logical_channel(run, key, name, fields, inner)


def _channel_owner(run: _Run, name: str) -> str:
    """The endpoint that opened the logical channel a message names (H.245
    8.4: forwardLogicalChannelNumber is the transmitting side's number, so
    both sides may use the same one): the sender of OpenLogicalChannel and
    CloseLogicalChannel, the receiver of OpenLogicalChannelAck. The
    receiver is named by its real address (before the packet's NAT), as the
    sender of the OLC was."""
    ctx = run.ctx
    if name == "openLogicalChannelAck":
        return _ep(ctx.nat_dst if ctx.nat_dst is not None else ctx.dst)
    return _ep(ctx.src)


def _logical_channel(run: _Run, key: str, name: str, fields, addresses) -> None:
    rule = lookup("h245", name)
    if rule is None:
        return
    number, _ = logical_channel(name, fields)
    if number is None:
        return
    # Media is keyed by the logical channel, not the RTP session: a
    # session's two directions are two channels, each closed on its own.
    group = f"{key}/lc{number}@{_channel_owner(run, name)}"
    if "media" in rule.actions:
        for a in addresses:
            if a.field in MEDIA_FIELDS:
                run.open(key, MEDIA_FIELDS[a.field], "udp", a, group)
    elif "close" in rule.actions:
        call = run.st.calls[key]
        for pid, p in list(call.pinholes.items()):
            if p.kind not in ("rtp", "rtcp") or group not in p.groups:
                continue
            if len(p.groups) > 1:
                run.emit(ev.PinholeShared(key, pid, group, False))
            else:
                run.emit(ev.PinholeClosed(key, pid, "CloseLogicalChannel"))


def on_timer(state: H323State, key: str, now: float, settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    """A deadline of ``key`` (a stream) has passed: end what is due."""
    run = _Run(state, H323Context("ras", "none", ("0.0.0.0", 0), ("0.0.0.0", 0)), now, settings)
    kind, _, rest = key.partition("/")
    if kind == "h323-call" and rest in state.calls:
        c = state.calls[rest]
        reason = None
        if c.max_deadline <= now:
            reason = "maximum call duration reached"
        elif c.in_setup and c.setup_deadline is not None and c.setup_deadline <= now:
            reason = "setup timeout (no Connect)"
        elif c.signalling_deadline <= now:
            reason = "signalling inactivity timeout"
        else:
            for group, deadline in c.media.items():
                if deadline is not None and deadline <= now:
                    reason = f"media inactivity timeout ({group})"
                    break
        if reason is not None:
            run.end_call(rest, reason)
    elif kind == "h323-ras":
        requester, _, seq = rest.rpartition("/")
        t = state.ras.get((requester, int(seq))) if seq.isdigit() else None
        if t is not None and t.expires_at <= now:
            run.emit(ev.RasEnded(t.requester, t.seq, "timeout"))
    elif kind == "h323-reg":
        ip, _, port = rest.rpartition(":")
        r = state.registrations.get((ip, int(port))) if port.isdigit() else None
        if r is not None and r.expires_at <= now:
            run.emit(ev.Unregistered(r.public, "registration expired"))
    return run.result()


def media_activity(state: H323State, pinhole_id: str, now: float,
                   settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    """RTP/RTCP went through ``pinhole_id``: its voice channel stays."""
    run = _Run(state, H323Context("ras", "none", ("0.0.0.0", 0), ("0.0.0.0", 0)), now, settings)
    key = pinhole_id.split("/", 1)[0]
    call = state.calls.get(key)
    p = call.pinholes.get(pinhole_id) if call else None
    if p is not None and p.group in call.media:
        run.emit(ev.MediaSeen(key, p.group, now + settings.media_inactivity_timeout))
    return run.result()


def end_calls(state: H323State, calls, now: float, settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    """End the calls ``calls`` names ((call key, reason) each: those a new
    configuration no longer permits, gateway/rematch.py), each as the ALG
    ends a call (its pinholes closed, then ``CallEnded``); a key no longer
    known is skipped."""
    run = _Run(state, H323Context("ras", "none", ("0.0.0.0", 0), ("0.0.0.0", 0)), now, settings)
    for key, reason in calls:
        if key in run.st.calls:
            run.end_call(key, reason)
    return run.result()
