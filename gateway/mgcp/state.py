"""The MGCP ALG's state, and :func:`apply`, the fold of its events.

The state is a frozen value whose mappings are ``immutables.Map`` (a hash
array mapped trie): setting or deleting a key costs O(log n) and shares the
rest, so an event on one of thousands of endpoints or calls does not copy the
others (a plain dict copied per event would be O(n)). :func:`apply` never
mutates its argument.

``flood`` is soft state (per-gateway message and CRCX rates, see
:mod:`gateway.mgcp.flood`): it travels with the state through ``step`` but is
no event's business, so :func:`durable` leaves it out when a fold is compared
with the live state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from ipaddress import IPv4Address

from immutables import Map

from gateway.fold import Fold
from gateway.mgcp import events as ev
from gateway.pinhole import Pinhole

_EMPTY_MAP: Map = Map()
_FIELDS: dict[type, tuple[str, ...]] = {}
_set = object.__setattr__


def replace(obj, **changes):
    """``dataclasses.replace`` for the state's frozen, slotted records, without
    its per-call field introspection and ``__init__`` (the fold runs this
    several times per event, on the per-packet path)."""
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    new = object.__new__(cls)
    for n in names:
        _set(new, n, changes[n] if n in changes else getattr(obj, n))
    return new


@dataclass(frozen=True, slots=True)
class Txn:
    """A command in flight or answered (RFC 3435 3.5). ``code``: the last
    response code seen (None: none yet)."""

    gateway: str
    endpoint: str
    origin: str
    tid: int
    verb: str
    src: tuple[str, int]
    call_id: str | None
    conn_id: str | None
    started_at: float
    expires_at: float
    code: int | None = None

    @property
    def final(self) -> bool:
        return self.code is not None and self.code >= 200

    @property
    def timer_key(self) -> str:
        return txn_key(self.gateway, self.origin, self.tid)


def txn_key(gateway: str, origin: str, tid: int) -> str:
    return f"mgcp-txn/{gateway}/{origin}/{tid}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    gateway: str
    name: str
    out_of_service_at: float | None = None
    restart_method: str | None = None
    changed_at: float = float("-inf")
    notified_entity: str | None = None
    notified_source: str | None = None
    # (origin, tid) of the command that created this record while no command
    # naming the endpoint has succeeded yet; None once one has. A command
    # that fails or is never answered has no effect (RFC 3435 2.4: an error
    # code means the command was not executed), so when that transaction
    # ends the record goes with it: hostile RSIPs or N: parameters naming
    # ever new endpoints leave nothing behind once their transactions time
    # out.
    pending: tuple[str, int] | None = None

    def in_service(self, now: float) -> bool:
        return self.out_of_service_at is None or now < self.out_of_service_at


@dataclass(frozen=True, slots=True)
class Connection:
    conn_id: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class MediaGroup:
    group: str
    conn_id: str | None
    tid: int
    side: str
    index: int
    dst_ip: str
    dst_port: int
    rtcp_ip: str
    rtcp_port: int
    public_ip: str | None
    public_port: int | None
    media_deadline: float


def media_pinhole(pid: str, call: str, group: str, direction: str, dst: tuple[str, int],
                  to: tuple[str, int] | None) -> Pinhole:
    """An MGCP media opening as the datapath's one pinhole type: UDP from any
    source to ``dst``, translated to ``to`` (None: unchanged), for as long as
    its connection lives (DLCX or the call's end closes it)."""
    return Pinhole(pid, call, group, "media", "udp", direction, dst, to)


@dataclass(frozen=True, slots=True)
class Call:
    gateway: str
    call_id: str
    started_at: float
    max_deadline: float
    connections: Map = _EMPTY_MAP     # conn id -> Connection
    groups: Map = _EMPTY_MAP          # group id -> MediaGroup
    pinholes: Map = _EMPTY_MAP        # pinhole id -> Pinhole
    pending: Map = _EMPTY_MAP         # tid of a CRCX not finally answered -> None
    seq: int = 0

    @property
    def stream(self) -> str:
        return ev.call_stream(self.gateway, self.call_id)

    def next_deadline(self) -> float:
        d = self.max_deadline
        for g in self.groups.values():
            d = min(d, g.media_deadline)
        return d


@dataclass(frozen=True, slots=True)
class MgcpState:
    txns: Map = _EMPTY_MAP            # (gateway, origin, tid) -> Txn
    endpoints: Map = _EMPTY_MAP       # (gateway, endpoint) -> Endpoint
    calls: Map = _EMPTY_MAP           # (gateway, call id) -> Call
    group_index: Map = _EMPTY_MAP     # group id -> (gateway, call id)
    conn_index: Map = _EMPTY_MAP      # (gateway, connection id) -> call id
    # public (ip, port) of media pairs -> group id: the in-use set of
    # gateway.ports allocation, and the reverse map for inbound SDP.
    ports_in_use: Map = _EMPTY_MAP
    # gateway -> how many endpoint records it has: an endpoint record is made
    # by an RSIP or N: naming it and is never removed (wildcard RSIP
    # precedence needs them), so the ALG bounds them per gateway.
    endpoint_counts: Map = _EMPTY_MAP
    # source address of commands -> transactions remembered from it (the
    # per-source cap, ``set mgcp max-transactions``).
    txn_counts: Map = _EMPTY_MAP
    call_counts: Map = _EMPTY_MAP     # gateway -> calls
    flood: Map = _EMPTY_MAP           # soft: gateway -> FloodCounters
    # soft: the flood map's size that triggers the next sweep of idle
    # counters (gateway.mgcp.flood.sweep), so sweeps cost O(1) amortised.
    flood_mark: int = 0

    def endpoint(self, gateway: str, name: str) -> Endpoint | None:
        return self.endpoints.get((gateway, name))

    def next_deadline(self, key: str) -> float | None:
        """The earliest deadline of a timer key (a call stream or a
        transaction key), None when it has none."""
        kind, _, rest = key.partition("/")
        if kind == "mgcp-call":
            gw, _, cid = rest.partition("/")
            call = self.calls.get((gw, cid))
            return call.next_deadline() if call else None
        if kind == "mgcp-txn":
            parts = rest.split("/")
            if len(parts) == 3 and parts[2].isascii() and parts[2].isdigit() and len(parts[2]) <= 9:
                t = self.txns.get((parts[0], parts[1], int(parts[2])))
                return t.expires_at if t else None
        return None


EMPTY = MgcpState()


def durable(state: MgcpState) -> MgcpState:
    """The state without its soft part (what the journal rebuilds)."""
    return replace(state, flood=_EMPTY_MAP, flood_mark=0) if state.flood or state.flood_mark else state


def apply(state: MgcpState, event: ev.Event) -> MgcpState:
    """Fold one event into the state (pure)."""
    return _FOLD.apply(state, event)


def fold(events, state: MgcpState = EMPTY) -> MgcpState:
    return _FOLD.fold(events, state)


def _pending(s: MgcpState, t: Txn, add: bool) -> MgcpState:
    """A CRCX not finally answered keeps its call alive (its connection is
    yet to come)."""
    if t.verb != "CRCX" or t.call_id is None:
        return s
    c = s.calls.get((t.gateway, t.call_id))
    if c is None:
        return s
    if add:
        return _with_call(s, replace(c, pending=c.pending.set(t.tid, None)))
    if t.tid in c.pending:
        return _with_call(s, replace(c, pending=c.pending.delete(t.tid)))
    return s


def _count(counts: Map, key, delta: int) -> Map:
    n = counts.get(key, 0) + delta
    return counts.set(key, n) if n > 0 else (counts.delete(key) if key in counts else counts)


def _txn_started(s: MgcpState, e: ev.TransactionStarted) -> MgcpState:
    t = Txn(e.gateway, e.endpoint, e.origin, e.tid, e.verb, (e.src_ip, e.src_port), e.call_id,
            e.conn_id, e.at, e.expires_at)
    return _pending(replace(s, txns=s.txns.set((e.gateway, e.origin, e.tid), t),
                            txn_counts=_count(s.txn_counts, e.src_ip, 1)), t, True)


def _txn_answered(s: MgcpState, e: ev.TransactionAnswered) -> MgcpState:
    k = (e.gateway, e.origin, e.tid)
    t = replace(s.txns[k], code=e.code, expires_at=e.expires_at)
    s = replace(s, txns=s.txns.set(k, t))
    if 200 <= e.code < 300:
        ep = s.endpoints.get((t.gateway, t.endpoint))
        if ep is not None and ep.pending is not None:
            # A command naming the endpoint succeeded: the record is real.
            s = replace(s, endpoints=s.endpoints.set((t.gateway, t.endpoint), replace(ep, pending=None)))
    return _pending(s, t, False) if t.final else s


def _txn_ended(s: MgcpState, e: ev.TransactionEnded) -> MgcpState:
    k = (e.gateway, e.origin, e.tid)
    t = s.txns[k]
    s = replace(s, txns=s.txns.delete(k), txn_counts=_count(s.txn_counts, t.src[0], -1))
    ek = (t.gateway, t.endpoint)
    ep = s.endpoints.get(ek)
    if ep is not None and ep.pending == (t.origin, t.tid):
        s = replace(s, endpoints=s.endpoints.delete(ek),
                    endpoint_counts=_count(s.endpoint_counts, t.gateway, -1))
    return _pending(s, t, False)


def _ep(s: MgcpState, gateway: str, name: str) -> Endpoint:
    return s.endpoints.get((gateway, name)) or Endpoint(gateway, name)


def _set_endpoint(s: MgcpState, ep: Endpoint, creator: tuple[str, int] | None) -> MgcpState:
    """Store ``ep``; a new record made by a command (``creator``: its origin
    and transaction id) is pending until a command naming it succeeds."""
    key = (ep.gateway, ep.name)
    counts = s.endpoint_counts
    if key not in s.endpoints:
        counts = counts.set(ep.gateway, counts.get(ep.gateway, 0) + 1)
        if creator is not None and creator[1] is not None:
            ep = replace(ep, pending=creator)
    return replace(s, endpoints=s.endpoints.set(key, ep), endpoint_counts=counts)


def _endpoint_restarted(s: MgcpState, e: ev.EndpointRestarted) -> MgcpState:
    ep = replace(_ep(s, e.gateway, e.endpoint), out_of_service_at=e.out_of_service_at,
                 restart_method=e.method, changed_at=e.at)
    # RSIP is the gateway's command (RFC 3435 2.3.12).
    return _set_endpoint(s, ep, ("gateway", e.tid))


def _notified_set(s: MgcpState, e: ev.NotifiedEntitySet) -> MgcpState:
    ep = replace(_ep(s, e.gateway, e.endpoint), notified_entity=e.entity, notified_source=e.source)
    # N: comes in the call agent's commands.
    return _set_endpoint(s, ep, ("call-agent", e.tid))


def _with_call(s: MgcpState, call: Call, **more) -> MgcpState:
    return replace(s, calls=s.calls.set((call.gateway, call.call_id), call), **more)


def _call_started(s: MgcpState, e: ev.CallStarted) -> MgcpState:
    return _with_call(s, Call(e.gateway, e.call_id, e.at, e.max_deadline),
                      call_counts=_count(s.call_counts, e.gateway, 1))


def _connection_created(s: MgcpState, e: ev.ConnectionCreated) -> MgcpState:
    c = s.calls[(e.gateway, e.call_id)]
    groups = c.groups
    for g in c.groups.values():
        if g.conn_id is None and g.tid == e.tid:
            groups = groups.set(g.group, replace(g, conn_id=e.conn_id))
    return _with_call(s, replace(c, connections=c.connections.set(e.conn_id, Connection(e.conn_id, e.endpoint)),
                                 groups=groups),
                      conn_index=s.conn_index.set((e.gateway, e.conn_id), e.call_id))


def _connection_deleted(s: MgcpState, e: ev.ConnectionDeleted) -> MgcpState:
    c = s.calls[(e.gateway, e.call_id)]
    ci = s.conn_index
    if ci.get((e.gateway, e.conn_id)) == e.call_id:
        ci = ci.delete((e.gateway, e.conn_id))
    return _with_call(s, replace(c, connections=c.connections.delete(e.conn_id)), conn_index=ci)


def _media_bound(s: MgcpState, e: ev.MediaBound) -> MgcpState:
    c = s.calls[(e.gateway, e.call_id)]
    g = MediaGroup(e.group, e.conn_id, e.tid, e.side, e.index, e.dst_ip, e.dst_port, e.rtcp_ip,
                   e.rtcp_port, e.public_ip, e.public_port, e.media_deadline)
    used = s.ports_in_use
    if e.public_ip is not None and e.public_port is not None:
        a = IPv4Address(e.public_ip)
        used = used.set((a, e.public_port), e.group).set((a, e.public_port + 1), e.group)
    return _with_call(s, replace(c, groups=c.groups.set(e.group, g), seq=c.seq + 1),
                      ports_in_use=used, group_index=s.group_index.set(e.group, (e.gateway, e.call_id)))


def _release_ports(used: Map, g: MediaGroup) -> Map:
    """The group's public pair freed, where the group still owns it: a pair
    kept on a MIP may be shared by several connections' groups, the newest
    owning it (gateway/mgcp/alg_media.py ``kept_port``)."""
    if g.public_ip is not None and g.public_port is not None:
        a = IPv4Address(g.public_ip)
        for p in (g.public_port, g.public_port + 1):
            if used.get((a, p)) == g.group:
                used = used.delete((a, p))
    return used


def _media_released(s: MgcpState, e: ev.MediaReleased) -> MgcpState:
    c = s.calls[(e.gateway, e.call_id)]
    g = c.groups[e.group]
    return _with_call(s, replace(c, groups=c.groups.delete(e.group)),
                      ports_in_use=_release_ports(s.ports_in_use, g),
                      group_index=s.group_index.delete(e.group))


def _media_seen(s: MgcpState, e: ev.MediaSeen) -> MgcpState:
    c = s.calls[(e.gateway, e.call_id)]
    g = c.groups[e.group]
    return _with_call(s, replace(c, groups=c.groups.set(e.group, replace(g, media_deadline=e.media_deadline))))


def _pinhole_opened(s: MgcpState, e: ev.PinholeOpened) -> MgcpState:
    c = s.calls[(e.gateway, e.call_id)]
    p = media_pinhole(e.pinhole, c.stream, e.group, e.direction, (e.dst_ip, e.dst_port),
                      (e.to_ip, e.to_port) if e.to_ip is not None and e.to_port is not None else None)
    return _with_call(s, replace(c, pinholes=c.pinholes.set(e.pinhole, p), seq=c.seq + 1))


def _pinhole_closed(s: MgcpState, e: ev.PinholeClosed) -> MgcpState:
    c = s.calls[(e.gateway, e.call_id)]
    return _with_call(s, replace(c, pinholes=c.pinholes.delete(e.pinhole)))


def _call_ended(s: MgcpState, e: ev.CallEnded) -> MgcpState:
    k = (e.gateway, e.call_id)
    c = s.calls[k]
    used, gi = s.ports_in_use, s.group_index
    for g in c.groups.values():
        used = _release_ports(used, g)
        gi = gi.delete(g.group)
    ci = s.conn_index
    for cid in c.connections:
        if ci.get((e.gateway, cid)) == e.call_id:
            ci = ci.delete((e.gateway, cid))
    return replace(s, calls=s.calls.delete(k), ports_in_use=used, group_index=gi, conn_index=ci,
                   call_counts=_count(s.call_counts, e.gateway, -1))


_HANDLERS = {
    ev.TransactionStarted: _txn_started,
    ev.TransactionAnswered: _txn_answered,
    ev.TransactionEnded: _txn_ended,
    ev.EndpointRestarted: _endpoint_restarted,
    ev.NotifiedEntitySet: _notified_set,
    ev.CallStarted: _call_started,
    ev.ConnectionCreated: _connection_created,
    ev.ConnectionDeleted: _connection_deleted,
    ev.MediaBound: _media_bound,
    ev.MediaReleased: _media_released,
    ev.MediaSeen: _media_seen,
    ev.PinholeOpened: _pinhole_opened,
    ev.PinholeClosed: _pinhole_closed,
    ev.CallEnded: _call_ended,
}
_FOLD = Fold(_HANDLERS, "an MGCP ALG")
