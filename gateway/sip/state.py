"""The SIP ALG's state, folded from its events by :func:`gateway.sip.state_fold.apply`.

The state is a frozen value. :func:`~gateway.sip.state_fold.apply` never mutates its argument: it
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

The fold (gateway/sip/state_fold.py) and its working copy (state_draft.py) import
these classes and this module imports neither, so there is no cycle: take them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from immutables import Map

from gateway.pinhole import Pinhole
from gateway.sip import events as ev
from gateway.sip import portmap
from gateway.sip.portmap import EMPTY_PORTS, PortMap
from gateway.sip.transitions import CALLING, Phase

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
    phase: Phase = CALLING
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


def _call_base(call_id: str) -> str:
    return call_id.rpartition("@")[0] or call_id
