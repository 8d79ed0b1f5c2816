"""The H.323 ALG's state and :func:`apply`, the fold of its events.

Mappings are ``immutables.Map`` (shared structure, O(log n) updates) as in
the MGCP ALG; :func:`apply` never mutates its argument."""

from __future__ import annotations

from dataclasses import dataclass, replace

from immutables import Map

from gateway.fold import Fold
from gateway.h323 import events as ev
from gateway.h323.transitions import EARLY, SETUP, Phase

_EMPTY: Map = Map()


@dataclass(frozen=True, slots=True)
class RasTxn:
    requester: str
    seq: int
    kind: str
    expires_at: float
    binding: tuple = ()
    call: str = ""


@dataclass(frozen=True, slots=True)
class Registration:
    public: tuple
    private: tuple
    expires_at: float

    @property
    def pinhole(self) -> "Pinhole":
        """The registration as the datapath needs it: a TCP connection to
        ``public`` (an incoming DIP address) is decided at its SYN, before
        any Setup, and goes to ``private`` (manual ch. 1 "Incoming Calls
        with NAT"). Kind "registration": policy still decides the flow."""
        stream = f"h323-reg/{self.public[0]}:{self.public[1]}"
        return Pinhole(stream, stream, "registration", "tcp", tuple(self.public), tuple(self.private),
                       "registration")


@dataclass(frozen=True, slots=True)
class Pinhole:
    """An opening for ``transport`` packets to ``dst``, translated to ``to``
    (None: unchanged). RTP and RTCP of one logical channel share a group."""

    id: str
    call: str
    kind: str
    transport: str
    dst: tuple
    to: tuple | None
    group: str
    shared: tuple = ()              # other channels' groups naming the same address

    @property
    def groups(self) -> tuple:
        return (self.group,) + self.shared


@dataclass(frozen=True, slots=True)
class Call:
    key: str
    conn: str
    call_reference: int
    started_at: float
    phase: Phase
    signalling_deadline: float
    max_deadline: float
    pinholes: Map = _EMPTY          # id -> Pinhole
    media: Map = _EMPTY             # group -> media deadline
    ports: Map = _EMPTY             # public (ip, port) -> private (ip, port)
    h245: tuple = ()
    origin: str = ""                # source IP that started the call
    setup_deadline: float | None = None     # until Connect

    @property
    def in_setup(self) -> bool:
        return self.phase in EARLY

    def next_deadline(self) -> float:
        d = min(self.signalling_deadline, self.max_deadline)
        if self.setup_deadline is not None and self.in_setup:
            d = min(d, self.setup_deadline)
        for m in self.media.values():
            d = min(d, m)
        return d


@dataclass(frozen=True, slots=True)
class H323State:
    calls: Map = _EMPTY             # key -> Call
    call_refs: Map = _EMPTY         # (conn, call reference) -> key
    h245_index: Map = _EMPTY        # (ip, port) of an H.245 listener -> key
    ras: Map = _EMPTY               # (requester, seq) -> RasTxn
    registrations: Map = _EMPTY     # public (ip, port) -> Registration
    ports_in_use: Map = _EMPTY      # public (IPv4 ip str, port) -> call key
    # Counts that bound hostile traffic (H323Settings.max_setups_per_source,
    # max_ras_per_source): calls in setup by their origin's IP, RAS
    # transactions by their requester's IP. A count at zero has no entry.
    setups_by_source: Map = _EMPTY
    ras_by_source: Map = _EMPTY

    def next_deadline(self, key: str) -> float | None:
        kind, _, rest = key.partition("/")
        if kind == "h323-call":
            c = self.calls.get(rest)
            return c.next_deadline() if c else None
        if kind == "h323-ras":
            requester, _, seq = rest.rpartition("/")
            t = self.ras.get((requester, int(seq))) if seq.isdigit() else None
            return t.expires_at if t else None
        if kind == "h323-reg":
            ip, _, port = rest.rpartition(":")
            r = self.registrations.get((ip, int(port))) if port.isdigit() else None
            return r.expires_at if r else None
        return None


EMPTY = H323State()


def _call(s: H323State, c: Call, **more) -> H323State:
    return replace(s, calls=s.calls.set(c.key, c), **more)


def _count(m: Map, k: str, by: int) -> Map:
    n = m.get(k, 0) + by
    return m.set(k, n) if n > 0 else (m.delete(k) if k in m else m)


def requester_ip(requester: str) -> str:
    return requester.rpartition(":")[0]


def _ras_requested(s, e):
    key = (e.requester, e.seq)
    counts = s.ras_by_source if key in s.ras else _count(s.ras_by_source, requester_ip(e.requester), 1)
    return replace(s, ras=s.ras.set(key, RasTxn(e.requester, e.seq, e.kind, e.expires_at, e.binding, e.call)),
                   ras_by_source=counts)


def _ras_ended(s, e):
    key = (e.requester, e.seq)
    if key not in s.ras:
        return s
    return replace(s, ras=s.ras.delete(key),
                   ras_by_source=_count(s.ras_by_source, requester_ip(e.requester), -1))


def _registered(s, e):
    return replace(s, registrations=s.registrations.set(tuple(e.public), Registration(tuple(e.public), tuple(e.private), e.expires_at)))


def _unregistered(s, e):
    return replace(s, registrations=s.registrations.delete(tuple(e.public)))


def _call_started(s, e):
    old = s.calls.get(e.key)
    if old is not None:
        # admitted by ACF before its Setup: the Setup's connection joins it
        c = replace(old, conn=e.conn, call_reference=e.call_reference,
                    signalling_deadline=e.signalling_deadline)
        return _call(s, c, call_refs=s.call_refs.set((e.conn, e.call_reference), e.key))
    c = Call(e.key, e.conn, e.call_reference, e.at, SETUP, e.signalling_deadline, e.max_deadline,
             origin=e.origin, setup_deadline=e.setup_deadline)
    counts = _count(s.setups_by_source, e.origin, 1) if e.origin else s.setups_by_source
    return _call(s, c, call_refs=s.call_refs.set((e.conn, e.call_reference), e.key), setups_by_source=counts)


def _call_progressed(s, e):
    c = s.calls[e.key]
    counts = s.setups_by_source
    if c.origin and c.in_setup and e.phase not in EARLY:
        counts = _count(counts, c.origin, -1)
    # The event carries the phase as text (a replayed one decodes as str): the
    # state holds the member either way, so live and replayed states are equal
    # to the byte.
    return _call(s, replace(c, phase=Phase(e.phase), signalling_deadline=e.signalling_deadline),
                 setups_by_source=counts)


def _port_mapped(s, e):
    c = s.calls[e.key]
    pub = tuple(e.public)
    return _call(s, replace(c, ports=c.ports.set(pub, tuple(e.private))),
                 ports_in_use=s.ports_in_use.set(pub, e.key))


def _h245_bound(s, e):
    c = s.calls[e.key]
    idx = s.h245_index
    for a in e.addresses:
        idx = idx.set(tuple(a), e.key)
    return _call(s, replace(c, h245=c.h245 + tuple(tuple(a) for a in e.addresses)), h245_index=idx)


def _pinhole_opened(s, e):
    c = s.calls[e.key]
    p = Pinhole(e.pinhole, e.key, e.kind, e.transport, tuple(e.dst), tuple(e.to) if e.to else None, e.group)
    media = c.media.set(e.group, e.media_deadline) if e.media_deadline is not None else c.media
    return _call(s, replace(c, pinholes=c.pinholes.set(e.pinhole, p), media=media))


def _pinhole_shared(s, e):
    c = s.calls[e.key]
    p = c.pinholes[e.pinhole]
    if e.add:
        if e.group not in p.groups:
            p = replace(p, shared=p.shared + (e.group,))
    elif e.group in p.groups and len(p.groups) > 1:
        rest = tuple(g for g in p.groups if g != e.group)
        p = replace(p, group=rest[0], shared=rest[1:])
    pins = c.pinholes.set(e.pinhole, p)
    media = c.media
    # A channel no pinhole belongs to any more keeps no media deadline; the
    # one that now holds the pinhole keeps the closed one's.
    if e.group in media and not any(e.group == q.group for q in pins.values()):
        deadline = media[e.group]
        media = media.delete(e.group)
        if p.group not in media:
            media = media.set(p.group, deadline)
    return _call(s, replace(c, pinholes=pins, media=media))


def _pinhole_closed(s, e):
    c = s.calls[e.key]
    p = c.pinholes[e.pinhole]
    pins = c.pinholes.delete(e.pinhole)
    media = c.media
    if p.group in media and not any(q.group == p.group for q in pins.values()):
        media = media.delete(p.group)
    return _call(s, replace(c, pinholes=pins, media=media))


def _media_seen(s, e):
    c = s.calls[e.key]
    return _call(s, replace(c, media=c.media.set(e.group, e.media_deadline)))


DISENGAGED = "DisengageConfirm"


def _call_ended(s, e):
    c = s.calls.get(e.key)
    if c is None:
        # The ReleaseComplete of a call its DCF ended: the call reference
        # kept for it goes.
        gone = [k for k, v in s.call_refs.items() if v == e.key]
        refs = s.call_refs
        for k in gone:
            refs = refs.delete(k)
        return replace(s, call_refs=refs)
    refs = s.call_refs
    if refs.get((c.conn, c.call_reference)) == c.key and e.reason != DISENGAGED:
        # After a DCF (H.225.0 7.10) the call reference stays until the
        # call's ReleaseComplete, which must still reach the other side.
        refs = refs.delete((c.conn, c.call_reference))
    idx = s.h245_index
    for a in c.h245:
        if idx.get(a) == c.key:
            idx = idx.delete(a)
    used = s.ports_in_use
    for pub in c.ports:
        if used.get(pub) == c.key:
            used = used.delete(pub)
    counts = _count(s.setups_by_source, c.origin, -1) if c.origin and c.in_setup else s.setups_by_source
    return replace(s, calls=s.calls.delete(c.key), call_refs=refs, h245_index=idx, ports_in_use=used,
                   setups_by_source=counts)


_HANDLERS = {
    ev.RasRequested: _ras_requested, ev.RasEnded: _ras_ended, ev.Registered: _registered,
    ev.Unregistered: _unregistered, ev.CallStarted: _call_started, ev.CallProgressed: _call_progressed,
    ev.PortMapped: _port_mapped, ev.H245Bound: _h245_bound, ev.PinholeOpened: _pinhole_opened,
    ev.PinholeClosed: _pinhole_closed, ev.PinholeShared: _pinhole_shared, ev.MediaSeen: _media_seen, ev.CallEnded: _call_ended,
}
_FOLD = Fold(_HANDLERS, "an H.323 ALG")


def apply(state: H323State, event) -> H323State:
    return _FOLD.apply(state, event)


def fold(events, state: H323State = EMPTY) -> H323State:
    return _FOLD.fold(events, state)
