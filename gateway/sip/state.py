"""The SIP ALG's state, and :func:`apply`, the fold of its events.

The state is a frozen value. :func:`apply` never mutates its argument: it
returns a new state sharing what did not change. Every mapping in it is an
``immutables.Map`` (a hash array mapped trie): setting or deleting a key is
O(log n) and shares the rest, so an event of one call among thousands costs
the same as with one call (a dict or frozenset copied per event would cost
O(calls)). Held ports are per-address bitmaps (:mod:`gateway.sip.portmap`). The ALG's ``step`` computes
events and folds them with this same function, so the state a live node holds
is, by construction, the fold of its journal (tests/test_sip_alg_replay.py
checks it on random message sequences).

Calls are keyed by Call-ID and the caller's From tag (manual ch. 2 "SIP with
Network Address Translation": the ALG matches From, To and Call-ID against its
call table); the Call-ID as seen on either side of the NAT and the tag index
the same call.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from ipaddress import IPv4Address

from immutables import Map

from gateway.construct import frozen_constructor
from gateway.fold import Fold
from gateway.pinhole import Pinhole
from gateway.sip import events as ev
from gateway.sip import portmap
from gateway.sip.portmap import EMPTY_PORTS, PortMap
from gateway.sip.transitions import CALLING, CONFIRMED, REJECTED, TERMINATING

_EMPTY_MAP: Map = Map()

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


class _CallQueries:
    """What a call answers, frozen (:class:`Call`) or being changed
    (:class:`CallDraft`)."""

    __slots__ = ()

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
class Call(_CallQueries):
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
    phase: str = CALLING
    to_tag: str | None = None
    session_expires: int | None = None
    teardown_at: float | None = None
    forwarded: bool = False
    bindings: tuple[Binding, ...] = ()
    txns: tuple[Txn, ...] = ()
    groups: tuple[MediaGroup, ...] = ()
    pinholes: tuple[Pinhole, ...] = ()
    seq: int = 0
    # The source address of the initial INVITE (its first transaction from
    # the caller), for the per-source limit on calls in setup.
    setup_src: str | None = None


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


class _StateQueries:
    """What the state answers, frozen (:class:`SipState`) or being changed
    (:class:`SipDraft`)."""

    __slots__ = ()

    @property
    def ports_in_use(self) -> frozenset[tuple[IPv4Address, int]]:
        """The held ports as a set of (address, port) (O(ports): for
        inspection; allocation reads :attr:`ports`)."""
        return portmap.as_set(self.ports)

    def find_call(self, call_id: str, *tags: str | None) -> Call | None:
        for tag in tags:
            if tag is None:
                continue
            key = self.call_index.get((call_id, tag))
            if key is not None:
                return self.calls[key]
        return None

    def _oldest(self, keys: tuple) -> list[Registration]:
        since = self.reg_since
        return [self.registrations[k] for k in sorted(keys, key=since.__getitem__)]

    def registration_for_private(self, ip: str, port: int) -> Registration | None:
        """The oldest registration of the private contact ``ip:port``."""
        keys = self.reg_by_private.get((ip, port))
        if not keys:
            return None
        if len(keys) == 1:
            return self.registrations[keys[0]]
        return self._oldest(keys)[0]

    def registrations_of(self, public_ip: str, call_id: str) -> list[Registration]:
        """The registrations made by the REGISTER of ``call_id`` (compared
        without its host part, which the ALG translates) through
        ``public_ip``, oldest first."""
        return self._oldest(self.reg_by_call.get((public_ip, _call_base(call_id)), ()))

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


@dataclass(frozen=True, slots=True)
class SipState(_StateQueries):
    calls: Map = _EMPTY_MAP                 # call key -> Call
    # (Call-ID text as seen on either side, caller's From tag) -> call key
    call_index: Map = _EMPTY_MAP
    # group id -> call key, for the datapath's reports
    group_index: Map = _EMPTY_MAP
    registrations: Map = _EMPTY_MAP         # (public ip, port) -> Registration
    # (private ip, port) -> public keys of the registrations of that contact
    reg_by_private: Map = _EMPTY_MAP
    # (public ip, Call-ID before its "@") -> public keys of that REGISTER's
    # registrations
    reg_by_call: Map = _EMPTY_MAP
    # public key -> ordinal of the registration's creation, so that "the
    # first registration" means the oldest, whatever the map's hash order
    reg_since: Map = _EMPTY_MAP
    reg_seq: int = 0
    protect: Map = _EMPTY_MAP               # (source ip, proxy ip) -> until
    # public (ALG) ports held by media pairs, ALG-allocated signalling
    # bindings and registrations: the input of port allocation.
    ports: PortMap = EMPTY_PORTS
    # (public ip, port) of an ALG-allocated registration port -> number of
    # call bindings using it (a call of a registered contact shares its
    # port): the port is released when the last of them and the
    # registration are gone, not with whichever goes first.
    borrowed: Map = _EMPTY_MAP
    # source ip -> number of its calls in setup (phase "calling": INVITE
    # sent, no final answer yet), for ``set sip max-setup-calls-per-source``.
    setup_by_src: Map = _EMPTY_MAP


EMPTY = SipState()

_CALL_FIELDS = tuple(f.name for f in fields(Call))
_STATE_FIELDS = tuple(f.name for f in fields(SipState))


class CallDraft(_CallQueries):
    """A :class:`Call` being changed by the fold (see :class:`SipDraft`):
    the same fields, mutable. Its slots are exactly Call's, in the same
    order, so a finished draft becomes a Call in place (``__class__``
    assignment between classes of one layout) instead of being copied."""

    __slots__ = _CALL_FIELDS

    def __init__(self, key: str, call_id: str, public_call_id: str, from_tag: str, mode: str,
                 private_ip: str | None, alg_ip: str | None, ingress: str, egress: str,
                 started_at: float, max_deadline: float) -> None:
        # A new call: Call's defaults for the rest.
        self.key = key
        self.call_id = call_id
        self.public_call_id = public_call_id
        self.from_tag = from_tag
        self.mode = mode
        self.private_ip = private_ip
        self.alg_ip = alg_ip
        self.ingress = ingress
        self.egress = egress
        self.started_at = started_at
        self.max_deadline = max_deadline
        self.signalling_deadline = max_deadline
        self.phase = CALLING
        self.to_tag = None
        self.session_expires = None
        self.teardown_at = None
        self.forwarded = False
        self.bindings = ()
        self.txns = ()
        self.groups = ()
        self.pinholes = ()
        self.seq = 0
        self.setup_src = None

    def __repr__(self) -> str:
        return "CallDraft(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in _CALL_FIELDS) + ")"


if CallDraft.__slots__ != Call.__slots__:       # pragma: no cover - a definition error
    raise TypeError("CallDraft must have exactly Call's slots")

_new = object.__new__


def _thaw_call(c: Call) -> CallDraft:
    """A mutable copy of ``c`` (straight-line: this runs for every call a
    message touches)."""
    d = _new(CallDraft)
    d.key = c.key
    d.call_id = c.call_id
    d.public_call_id = c.public_call_id
    d.from_tag = c.from_tag
    d.mode = c.mode
    d.private_ip = c.private_ip
    d.alg_ip = c.alg_ip
    d.ingress = c.ingress
    d.egress = c.egress
    d.started_at = c.started_at
    d.max_deadline = c.max_deadline
    d.signalling_deadline = c.signalling_deadline
    d.phase = c.phase
    d.to_tag = c.to_tag
    d.session_expires = c.session_expires
    d.teardown_at = c.teardown_at
    d.forwarded = c.forwarded
    d.bindings = c.bindings
    d.txns = c.txns
    d.groups = c.groups
    d.pinholes = c.pinholes
    d.seq = c.seq
    d.setup_src = c.setup_src
    return d


_make_state = frozen_constructor(SipState)
_make_txn = frozen_constructor(Txn)
_make_binding = frozen_constructor(Binding)
_make_group = frozen_constructor(MediaGroup)
_make_pinhole = frozen_constructor(Pinhole)


def _group_until(g: MediaGroup, media_deadline: float | None) -> MediaGroup:
    return _make_group(g.group, g.side, g.index, g.dst_ip, g.dst_port, g.rtcp_port, g.public_ip,
                       g.public_port, media_deadline)


def _pinhole_until(p: Pinhole, expires_at: float | None) -> Pinhole:
    return _make_pinhole(p.id, p.call, p.group, p.kind, p.proto, p.direction, p.dst, p.to,
                         p.src_to, expires_at, p.channel, p.alg)


class SipDraft(_StateQueries):
    """A state being changed by a run of events: the fold's working copy.

    It reads like a :class:`SipState` (same fields and queries; a call that
    was changed reads as its :class:`CallDraft`). Maps are still persistent
    ``immutables.Map`` values, so the state it started from is never touched
    and :meth:`freeze` shares every unchanged part. A call is copied into a
    mutable :class:`CallDraft` at its first change in the run, and becomes
    a :class:`Call` at :meth:`freeze`: a message that emits eight events of
    one call builds one Call and one SipState, not eight of each.
    Collections inside a draft call are replaced, never mutated in place, so
    a tuple read from it before an event stays what it was."""

    __slots__ = _STATE_FIELDS + ("_base", "_drafts")

    def __init__(self, base: SipState) -> None:
        self.calls = base.calls
        self.call_index = base.call_index
        self.group_index = base.group_index
        self.registrations = base.registrations
        self.reg_by_private = base.reg_by_private
        self.reg_by_call = base.reg_by_call
        self.reg_since = base.reg_since
        self.reg_seq = base.reg_seq
        self.protect = base.protect
        self.ports = base.ports
        self.borrowed = base.borrowed
        self.setup_by_src = base.setup_by_src
        self._base = base
        self._drafts: dict[str, CallDraft] = {}

    def edit_call(self, key: str) -> CallDraft:
        """The call ``key`` (which must exist), open for changes."""
        d = self._drafts.get(key)
        if d is None or self.calls.get(key) is not d:
            d = _thaw_call(self.calls[key])
            self._drafts[key] = d
            self.calls = self.calls.set(key, d)
        return d

    def add_call(self, call: CallDraft) -> None:
        self._drafts[call.key] = call
        self.calls = self.calls.set(call.key, call)

    def drop_call(self, key: str) -> None:
        self._drafts.pop(key, None)
        self.calls = self.calls.delete(key)

    def freeze(self) -> SipState:
        """The state as a frozen value. The draft may go on changing after:
        a call changed again is copied again."""
        calls = self.calls
        for key, d in self._drafts.items():
            if calls.get(key) is d:
                d.__class__ = Call      # same slots: the draft is the Call now
        self._drafts.clear()
        base = self._base
        if (calls is base.calls and self.call_index is base.call_index
                and self.group_index is base.group_index
                and self.registrations is base.registrations
                and self.reg_by_private is base.reg_by_private
                and self.reg_by_call is base.reg_by_call and self.reg_since is base.reg_since
                and self.reg_seq == base.reg_seq and self.protect is base.protect
                and self.ports is base.ports and self.borrowed is base.borrowed
                and self.setup_by_src is base.setup_by_src):
            return base
        return _make_state(calls, self.call_index, self.group_index, self.registrations,
                           self.reg_by_private, self.reg_by_call, self.reg_since, self.reg_seq,
                           self.protect, self.ports, self.borrowed, self.setup_by_src)


def _call_base(call_id: str) -> str:
    return call_id.rpartition("@")[0] or call_id


def _index_add(index: Map, key, value) -> Map:
    have = index.get(key, ())
    return index if value in have else index.set(key, have + (value,))


def _index_remove(index: Map, key, value) -> Map:
    have = index.get(key)
    if have is None or value not in have:
        return index
    rest = tuple(v for v in have if v != value)
    return index.set(key, rest) if rest else index.delete(key)


def apply(state: SipState, event: ev.Event) -> SipState:
    """Fold one event into the state (pure)."""
    return _FOLD.apply(state, event)


def apply_to(draft: SipDraft, event: ev.Event) -> None:
    """Fold one event into a draft (in place): a run of events folded this
    way and frozen once equals the same events applied one by one
    (tests/test_sip_alg_replay.py checks it)."""
    _FOLD.handler(event)(draft, event)


def fold(events, state: SipState = EMPTY) -> SipState:
    return _FOLD.fold(events, state)


# A call is "in setup" while its initial INVITE has no final answer: phase
# "calling" with the caller's source known (RFC 3261 §13.3.1.4: a 2xx
# confirms the dialog; a final non-2xx, CANCEL or BYE ends the attempt).
# setup_by_src counts them per source for the per-source limit.
def _count_setup(s: SipDraft, src: str, delta: int) -> None:
    n = s.setup_by_src.get(src, 0) + delta
    s.setup_by_src = s.setup_by_src.set(src, n) if n > 0 else s.setup_by_src.delete(src)


def _leave_setup(s: SipDraft, c) -> None:
    """Before ``c`` leaves phase "calling" (answered, rejected, ending)."""
    if c.phase == CALLING and c.setup_src is not None:
        _count_setup(s, c.setup_src, -1)


def _call_started(s: SipDraft, e: ev.CallStarted) -> None:
    s.add_call(CallDraft(e.key, e.call_id, e.public_call_id, e.from_tag, e.mode, e.private_ip,
                         e.alg_ip, e.ingress, e.egress, e.at, e.max_deadline))
    s.call_index = s.call_index.set((e.call_id, e.from_tag), e.key) \
        .set((e.public_call_id, e.from_tag), e.key)


def _call_activity(s: SipDraft, e: ev.CallActivity) -> None:
    c = s.edit_call(e.key)
    c.signalling_deadline = e.signalling_deadline
    c.session_expires = e.session_expires


def _txn_seen(s: SipDraft, e: ev.TransactionSeen) -> None:
    c = s.edit_call(e.key)
    c.txns = (c.txns + (_make_txn(e.branch, e.cseq, e.method, e.sender, e.src_ip, e.dst_ip),)
              )[-MAX_TXNS:]
    if c.setup_src is None and e.method == "INVITE" and e.sender == "a" and c.to_tag is None:
        # The caller's first INVITE names the call's source (CallStarted
        # is followed by it in the same step).
        c.setup_src = e.src_ip
        if c.phase == CALLING:
            _count_setup(s, e.src_ip, 1)


def _binding_added(s: SipDraft, e: ev.BindingAdded) -> None:
    c = s.edit_call(e.key)
    c.bindings = c.bindings + (_make_binding(e.private_ip, e.private_port, e.public_ip,
                                             e.public_port, e.owned),)
    if e.owned:
        s.ports = portmap.hold(s.ports, e.public_ip, e.public_port)
    else:
        pub = (e.public_ip, e.public_port)
        reg = s.registrations.get(pub)
        if reg is not None and reg.owned:
            s.borrowed = s.borrowed.set(pub, s.borrowed.get(pub, 0) + 1)


def _call_answered(s: SipDraft, e: ev.CallAnswered) -> None:
    c = s.edit_call(e.key)
    _leave_setup(s, c)
    c.groups = tuple([_group_until(g, e.media_deadline) for g in c.groups])
    c.pinholes = tuple([_pinhole_until(p, e.pinhole_expires)
                        if p.kind == "media" and p.direction == "inbound" else p
                        for p in c.pinholes])
    c.phase = CONFIRMED
    c.to_tag = e.to_tag
    c.teardown_at = None


def _call_rejected(s: SipDraft, e: ev.CallRejected) -> None:
    c = s.edit_call(e.key)
    _leave_setup(s, c)
    c.phase = REJECTED
    c.teardown_at = e.teardown_at


def _call_retried(s: SipDraft, e: ev.CallRetried) -> None:
    c = s.edit_call(e.key)
    if c.phase != CALLING and c.setup_src is not None:
        _count_setup(s, c.setup_src, 1)
    c.phase = CALLING
    c.teardown_at = None


def _call_forwarded(s: SipDraft, e: ev.CallForwarded) -> None:
    s.edit_call(e.key).forwarded = True


def _call_terminating(s: SipDraft, e: ev.CallTerminating) -> None:
    c = s.edit_call(e.key)
    _leave_setup(s, c)
    c.phase = TERMINATING
    c.teardown_at = e.teardown_at


def _media_bound(s: SipDraft, e: ev.MediaBound) -> None:
    c = s.edit_call(e.key)
    c.groups = c.groups + (_make_group(e.group, e.side, e.index, e.dst_ip, e.dst_port,
                                       e.rtcp_port, e.public_ip, e.public_port,
                                       e.media_deadline),)
    c.seq += 1
    if e.public_ip is not None and e.public_port is not None:
        s.ports = portmap.hold(s.ports, e.public_ip, e.public_port, e.public_port + 1)
    s.group_index = s.group_index.set(e.group, e.key)


def _media_released(s: SipDraft, e: ev.MediaReleased) -> None:
    c = s.edit_call(e.key)
    g = c.group(e.group)
    if g is not None and g.public_ip is not None and g.public_port is not None:
        s.ports = portmap.release(s.ports, g.public_ip, g.public_port, g.public_port + 1)
    if e.group in s.group_index:
        s.group_index = s.group_index.delete(e.group)
    c.groups = tuple(x for x in c.groups if x.group != e.group)


def _media_seen(s: SipDraft, e: ev.MediaSeen) -> None:
    c = s.edit_call(e.key)
    c.groups = tuple([_group_until(g, e.media_deadline) if g.group == e.group else g
                      for g in c.groups])


def _pinhole_opened(s: SipDraft, e: ev.PinholeOpened) -> None:
    c = s.edit_call(e.key)
    p = _make_pinhole(
        e.pinhole, e.key, e.group, e.kind, e.proto, e.direction, (e.dst_ip, e.dst_port),
        (e.to_ip, e.to_port) if e.to_ip is not None and e.to_port is not None else None,
        (e.from_ip, e.from_port) if e.from_ip is not None and e.from_port is not None else None,
        e.expires_at, "", "")
    c.pinholes = c.pinholes + (p,)
    c.seq += 1


def _pinhole_closed(s: SipDraft, e: ev.PinholeClosed) -> None:
    c = s.edit_call(e.key)
    c.pinholes = tuple(p for p in c.pinholes if p.id != e.pinhole)


def _call_ended(s: SipDraft, e: ev.CallEnded) -> None:
    c = s.calls[e.key]
    used = s.ports
    for g in c.groups:
        if g.public_ip is not None and g.public_port is not None:
            used = portmap.release(used, g.public_ip, g.public_port, g.public_port + 1)
    borrowed = s.borrowed
    for b in c.bindings:
        if b.owned:
            used = portmap.release(used, b.public_ip, b.public_port)
            continue
        pub = (b.public_ip, b.public_port)
        n = borrowed.get(pub)
        if n is None:
            continue
        if n > 1:
            borrowed = borrowed.set(pub, n - 1)
            continue
        borrowed = borrowed.delete(pub)
        if pub not in s.registrations:
            used = portmap.release(used, b.public_ip, b.public_port)
    # Only this call's own entries point at its key: the two Call-ID forms
    # it was started with, and its live groups (a group leaves the index
    # and the call together, on MediaReleased).
    index = s.call_index
    for k in ((c.call_id, c.from_tag), (c.public_call_id, c.from_tag)):
        if index.get(k) == e.key:
            index = index.delete(k)
    gi = s.group_index
    for g in c.groups:
        if gi.get(g.group) == e.key:
            gi = gi.delete(g.group)
    s.drop_call(e.key)
    s.call_index, s.group_index, s.ports, s.borrowed = index, gi, used, borrowed
    _leave_setup(s, c)


def _unindex(s, r: Registration) -> tuple[Map, Map]:
    pub = (r.public_ip, r.public_port)
    return (_index_remove(s.reg_by_private, (r.private_ip, r.private_port), pub),
            _index_remove(s.reg_by_call, (r.public_ip, _call_base(r.call_id)), pub))


def _registration_bound(s: SipDraft, e: ev.RegistrationBound) -> None:
    pub = (e.public_ip, e.public_port)
    new = Registration(e.public_ip, e.public_port, e.private_ip, e.private_port, e.call_id,
                       e.expires_at, e.owned)
    old = s.registrations.get(pub)
    by_private, by_call = s.reg_by_private, s.reg_by_call
    if old is None:
        s.reg_since, s.reg_seq = s.reg_since.set(pub, s.reg_seq), s.reg_seq + 1
    else:
        by_private, by_call = _unindex(s, old)
    s.reg_by_private = _index_add(by_private, (e.private_ip, e.private_port), pub)
    s.reg_by_call = _index_add(by_call, (e.public_ip, _call_base(e.call_id)), pub)
    # As with a set: a port held twice is one port, and it is released by
    # whichever holder goes first.
    if e.owned:
        s.ports = portmap.hold(s.ports, e.public_ip, e.public_port)
    s.registrations = s.registrations.set(pub, new)


def _registration_removed(s: SipDraft, e: ev.RegistrationRemoved) -> None:
    pub = (e.public_ip, e.public_port)
    r = s.registrations.get(pub)
    if r is None:
        return
    s.reg_by_private, s.reg_by_call = _unindex(s, r)
    if r.owned and pub not in s.borrowed:
        s.ports = portmap.release(s.ports, r.public_ip, r.public_port)
    s.registrations = s.registrations.delete(pub)
    s.reg_since = s.reg_since.delete(pub)


def _protect_added(s: SipDraft, e: ev.ProtectDenyAdded) -> None:
    s.protect = s.protect.set((e.src_ip, e.proxy_ip), e.until)


def _protect_expired(s: SipDraft, e: ev.ProtectDenyExpired) -> None:
    k = (e.src_ip, e.proxy_ip)
    if k in s.protect:
        s.protect = s.protect.delete(k)


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
# Event class -> its in-place fold into a SipDraft (what apply_to runs).
HANDLERS = _HANDLERS
_FOLD = Fold(_HANDLERS, "a SIP ALG", SipDraft)
