"""The SIP ALG's state, and :func:`apply`, the fold of its events.

The state is a frozen value. :func:`apply` never mutates its argument: it
returns a new state sharing what did not change. The ALG's ``step`` computes
events and folds them with this same function, so the state a live node holds
is, by construction, the fold of its journal (tests/test_sip_alg_replay.py
checks it on random message sequences).

Calls are keyed by Call-ID and the caller's From tag (manual ch. 2 "SIP with
Network Address Translation": the ALG matches From, To and Call-ID against its
call table); the Call-ID as seen on either side of the NAT and the tag index
the same call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Mapping

from gateway.sip import events as ev

# Transactions remembered per call: enough to match responses and recognise
# retransmissions of the requests in flight (RFC 3261 §17: a transaction
# lives at most 64*T1 = 32 s; a call has only a few at once).
MAX_TXNS = 16


@dataclass(frozen=True, slots=True)
class Binding:
    private_ip: str
    private_port: int
    public_ip: str
    public_port: int
    owned: bool


@dataclass(frozen=True, slots=True)
class Txn:
    branch: str
    cseq: int
    method: str
    sender: str
    src_ip: str
    dst_ip: str


@dataclass(frozen=True, slots=True)
class MediaGroup:
    group: str
    side: str
    index: int
    dst_ip: str
    dst_port: int
    rtcp_port: int
    public_ip: str | None
    public_port: int | None
    media_deadline: float | None


@dataclass(frozen=True, slots=True)
class Pinhole:
    """An opening for packets from any source to ``dst``; ``to``/``src_to``
    are the destination/source translations (None: unchanged)."""

    id: str
    call: str
    group: str
    kind: str
    proto: str
    direction: str
    dst: tuple[str, int]
    to: tuple[str, int] | None
    src_to: tuple[str, int] | None
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Call:
    key: str
    call_id: str
    public_call_id: str
    from_tag: str
    mode: str
    private_ip: str | None
    alg_ip: str | None
    ingress: str
    egress: str
    started_at: float
    max_deadline: float
    signalling_deadline: float
    phase: str = "calling"
    to_tag: str | None = None
    session_expires: int | None = None
    teardown_at: float | None = None
    forwarded: bool = False
    bindings: tuple[Binding, ...] = ()
    txns: tuple[Txn, ...] = ()
    groups: tuple[MediaGroup, ...] = ()
    pinholes: tuple[Pinhole, ...] = ()
    seq: int = 0

    @property
    def stream(self) -> str:
        return ev.call_stream(self.key)

    def next_deadline(self) -> float:
        d = min(self.signalling_deadline, self.max_deadline)
        if self.teardown_at is not None:
            d = min(d, self.teardown_at)
        for g in self.groups:
            if g.media_deadline is not None:
                d = min(d, g.media_deadline)
        for p in self.pinholes:
            if p.expires_at is not None:
                d = min(d, p.expires_at)
        return d

    def txn(self, branch: str, cseq: int, method: str) -> Txn | None:
        for t in self.txns:
            if t.branch == branch and t.cseq == cseq and t.method == method:
                return t
        return None

    def group(self, group: str) -> MediaGroup | None:
        for g in self.groups:
            if g.group == group:
                return g
        return None

    def binding_for_private(self, ip: str, port: int) -> Binding | None:
        for b in self.bindings:
            if b.private_ip == ip and b.private_port == port:
                return b
        return None

    def binding_for_public(self, ip: str, port: int) -> Binding | None:
        for b in self.bindings:
            if b.public_ip == ip and b.public_port == port:
                return b
        return None


@dataclass(frozen=True, slots=True)
class Registration:
    public_ip: str
    public_port: int
    private_ip: str
    private_port: int
    call_id: str
    expires_at: float | None
    owned: bool

    @property
    def stream(self) -> str:
        return ev.reg_stream(self.public_ip, self.public_port)


@dataclass(frozen=True, slots=True)
class SipState:
    calls: Mapping[str, Call] = field(default_factory=dict)
    # (Call-ID text as seen on either side, caller's From tag) -> call key
    call_index: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # pinhole id / group id -> call key, for the datapath's reports
    group_index: Mapping[str, str] = field(default_factory=dict)
    registrations: Mapping[tuple[str, int], Registration] = field(default_factory=dict)
    protect: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # public (ALG) ports held by media pairs, ALG-allocated signalling
    # bindings and registrations: the input of gateway.ports allocation.
    ports_in_use: frozenset[tuple[IPv4Address, int]] = frozenset()

    def find_call(self, call_id: str, *tags: str | None) -> Call | None:
        for tag in tags:
            if tag is None:
                continue
            key = self.call_index.get((call_id, tag))
            if key is not None:
                return self.calls[key]
        return None

    def registration_for_private(self, ip: str, port: int) -> Registration | None:
        for r in self.registrations.values():
            if r.private_ip == ip and r.private_port == port:
                return r
        return None

    def next_deadline(self, stream: str) -> float | None:
        """The earliest absolute deadline of an entity (its timer key is its
        stream), or None when it has none (or no longer exists)."""
        kind, _, rest = stream.partition("/")
        if kind == "call":
            call = self.calls.get(rest)
            return call.next_deadline() if call else None
        if kind == "reg":
            ip, _, port = rest.rpartition(":")
            reg = self.registrations.get((ip, int(port)))
            return reg.expires_at if reg else None
        if kind == "sip-protect":
            src, _, proxy = rest.partition(">")
            return self.protect.get((src, proxy))
        return None


EMPTY = SipState()


def _ports(ip: str, *ports: int) -> set[tuple[IPv4Address, int]]:
    a = IPv4Address(ip)
    return {(a, p) for p in ports}


def _with_call(state: SipState, call: Call, **more) -> SipState:
    calls = dict(state.calls)
    calls[call.key] = call
    return replace(state, calls=calls, **more)


def apply(state: SipState, event: ev.Event) -> SipState:
    """Fold one event into the state (pure)."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a SIP ALG event: {type(event).__name__}")
    return handler(state, event)


def fold(events, state: SipState = EMPTY) -> SipState:
    for e in events:
        state = apply(state, e)
    return state


def _call_started(s: SipState, e: ev.CallStarted) -> SipState:
    call = Call(key=e.key, call_id=e.call_id, public_call_id=e.public_call_id,
                from_tag=e.from_tag, mode=e.mode, private_ip=e.private_ip,
                alg_ip=e.alg_ip, ingress=e.ingress, egress=e.egress,
                started_at=e.at, max_deadline=e.max_deadline,
                signalling_deadline=e.max_deadline)
    index = dict(s.call_index)
    index[(e.call_id, e.from_tag)] = e.key
    index[(e.public_call_id, e.from_tag)] = e.key
    return _with_call(s, call, call_index=index)


def _call_activity(s: SipState, e: ev.CallActivity) -> SipState:
    c = s.calls[e.key]
    return _with_call(s, replace(c, signalling_deadline=e.signalling_deadline,
                                 session_expires=e.session_expires))


def _txn_seen(s: SipState, e: ev.TransactionSeen) -> SipState:
    c = s.calls[e.key]
    txns = (c.txns + (Txn(e.branch, e.cseq, e.method, e.sender, e.src_ip, e.dst_ip),))[-MAX_TXNS:]
    return _with_call(s, replace(c, txns=txns))


def _binding_added(s: SipState, e: ev.BindingAdded) -> SipState:
    c = s.calls[e.key]
    b = Binding(e.private_ip, e.private_port, e.public_ip, e.public_port, e.owned)
    used = s.ports_in_use | _ports(e.public_ip, e.public_port) if e.owned else s.ports_in_use
    return _with_call(s, replace(c, bindings=c.bindings + (b,)), ports_in_use=used)


def _call_answered(s: SipState, e: ev.CallAnswered) -> SipState:
    c = s.calls[e.key]
    groups = tuple(replace(g, media_deadline=e.media_deadline) for g in c.groups)
    holes = tuple(replace(p, expires_at=e.pinhole_expires)
                  if p.kind == "media" and p.direction == "inbound" else p
                  for p in c.pinholes)
    return _with_call(s, replace(c, phase="confirmed", to_tag=e.to_tag,
                                 groups=groups, pinholes=holes, teardown_at=None))


def _call_rejected(s: SipState, e: ev.CallRejected) -> SipState:
    c = s.calls[e.key]
    return _with_call(s, replace(c, phase="rejected", teardown_at=e.teardown_at))


def _call_retried(s: SipState, e: ev.CallRetried) -> SipState:
    c = s.calls[e.key]
    return _with_call(s, replace(c, phase="calling", teardown_at=None))


def _call_forwarded(s: SipState, e: ev.CallForwarded) -> SipState:
    c = s.calls[e.key]
    return _with_call(s, replace(c, forwarded=True))


def _call_terminating(s: SipState, e: ev.CallTerminating) -> SipState:
    c = s.calls[e.key]
    return _with_call(s, replace(c, phase="terminating", teardown_at=e.teardown_at))


def _media_bound(s: SipState, e: ev.MediaBound) -> SipState:
    c = s.calls[e.key]
    g = MediaGroup(e.group, e.side, e.index, e.dst_ip, e.dst_port, e.rtcp_port,
                   e.public_ip, e.public_port, e.media_deadline)
    used = s.ports_in_use
    if e.public_ip is not None and e.public_port is not None:
        used = used | _ports(e.public_ip, e.public_port, e.public_port + 1)
    gi = dict(s.group_index)
    gi[e.group] = e.key
    return _with_call(s, replace(c, groups=c.groups + (g,), seq=c.seq + 1),
                      ports_in_use=used, group_index=gi)


def _media_released(s: SipState, e: ev.MediaReleased) -> SipState:
    c = s.calls[e.key]
    g = c.group(e.group)
    used = s.ports_in_use
    if g is not None and g.public_ip is not None and g.public_port is not None:
        used = used - _ports(g.public_ip, g.public_port, g.public_port + 1)
    gi = dict(s.group_index)
    gi.pop(e.group, None)
    return _with_call(s, replace(c, groups=tuple(x for x in c.groups if x.group != e.group)),
                      ports_in_use=used, group_index=gi)


def _media_seen(s: SipState, e: ev.MediaSeen) -> SipState:
    c = s.calls[e.key]
    groups = tuple(replace(g, media_deadline=e.media_deadline) if g.group == e.group else g
                   for g in c.groups)
    return _with_call(s, replace(c, groups=groups))


def _pinhole_opened(s: SipState, e: ev.PinholeOpened) -> SipState:
    c = s.calls[e.key]
    p = Pinhole(e.pinhole, e.key, e.group, e.kind, e.proto, e.direction,
                (e.dst_ip, e.dst_port),
                (e.to_ip, e.to_port) if e.to_ip is not None and e.to_port is not None else None,
                (e.from_ip, e.from_port) if e.from_ip is not None and e.from_port is not None else None,
                e.expires_at)
    return _with_call(s, replace(c, pinholes=c.pinholes + (p,), seq=c.seq + 1))


def _pinhole_closed(s: SipState, e: ev.PinholeClosed) -> SipState:
    c = s.calls[e.key]
    return _with_call(s, replace(c, pinholes=tuple(p for p in c.pinholes if p.id != e.pinhole)))


def _call_ended(s: SipState, e: ev.CallEnded) -> SipState:
    c = s.calls[e.key]
    freed: set[tuple[IPv4Address, int]] = set()
    for g in c.groups:
        if g.public_ip is not None and g.public_port is not None:
            freed |= _ports(g.public_ip, g.public_port, g.public_port + 1)
    for b in c.bindings:
        if b.owned:
            freed |= _ports(b.public_ip, b.public_port)
    calls = dict(s.calls)
    del calls[e.key]
    index = {k: v for k, v in s.call_index.items() if v != e.key}
    gi = {k: v for k, v in s.group_index.items() if v != e.key}
    return replace(s, calls=calls, call_index=index, group_index=gi,
                   ports_in_use=s.ports_in_use - freed)


def _registration_bound(s: SipState, e: ev.RegistrationBound) -> SipState:
    regs = dict(s.registrations)
    regs[(e.public_ip, e.public_port)] = Registration(
        e.public_ip, e.public_port, e.private_ip, e.private_port, e.call_id, e.expires_at, e.owned)
    used = s.ports_in_use | _ports(e.public_ip, e.public_port) if e.owned else s.ports_in_use
    return replace(s, registrations=regs, ports_in_use=used)


def _registration_removed(s: SipState, e: ev.RegistrationRemoved) -> SipState:
    regs = dict(s.registrations)
    r = regs.pop((e.public_ip, e.public_port), None)
    used = s.ports_in_use
    if r is not None and r.owned:
        used = used - _ports(r.public_ip, r.public_port)
    return replace(s, registrations=regs, ports_in_use=used)


def _protect_added(s: SipState, e: ev.ProtectDenyAdded) -> SipState:
    p = dict(s.protect)
    p[(e.src_ip, e.proxy_ip)] = e.until
    return replace(s, protect=p)


def _protect_expired(s: SipState, e: ev.ProtectDenyExpired) -> SipState:
    p = dict(s.protect)
    p.pop((e.src_ip, e.proxy_ip), None)
    return replace(s, protect=p)


_HANDLERS = {
    ev.CallStarted: _call_started,
    ev.CallActivity: _call_activity,
    ev.TransactionSeen: _txn_seen,
    ev.BindingAdded: _binding_added,
    ev.CallAnswered: _call_answered,
    ev.CallRejected: _call_rejected,
    ev.CallRetried: _call_retried,
    ev.CallForwarded: _call_forwarded,
    ev.CallTerminating: _call_terminating,
    ev.MediaBound: _media_bound,
    ev.MediaReleased: _media_released,
    ev.MediaSeen: _media_seen,
    ev.PinholeOpened: _pinhole_opened,
    ev.PinholeClosed: _pinhole_closed,
    ev.CallEnded: _call_ended,
    ev.RegistrationBound: _registration_bound,
    ev.RegistrationRemoved: _registration_removed,
    ev.ProtectDenyAdded: _protect_added,
    ev.ProtectDenyExpired: _protect_expired,
}
