"""The session table: established flows, looked up per packet by 5-tuple.

A session is entered under two keys, both the 5-tuple *as the packet arrives*
(``(proto, src, sport, dst, dport)``, addresses as ints): the forward key of
the packet that opened it and the reply key, which is the forward packet's
translated tuple turned around. Each key carries the header rewrite that
direction gets (new ``src, sport, dst, dport``, or None when the packet leaves
as it came), so the fast path is one dict probe and one
:func:`gateway.packet.rewrite` (DESIGN.md, "A packet's way through", step 2).

Source port translation: when NAT changes the source address, many private
hosts share one public address; a second flow wanting a public ``(ip, port)``
that another flow holds gets another port (:func:`gateway.ports.allocate_port`,
preferring the original port, which signalling keeps whenever it can:
ARCHITECTURE.md "Policy and NAT engine").

Idle deadlines are absolute (time is passed in); every packet moves its
session's deadline. :meth:`SessionTable.expire` keeps a heap of deadlines and
checks each popped session against its current deadline (lazy refresh: the
per-packet cost is one attribute store, not a heap operation); a deadline
moved earlier is pushed again (:meth:`SessionTable.reschedule`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from gateway.alg_contract import Direction
from gateway.datapath.fastpath import FastEntry, key_bytes, make_entry
from gateway.ports import allocate_port

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

# Default idle timeouts, seconds: ScreenOS's service defaults (UDP 1 minute,
# TCP 30 minutes); ICMP and other protocols as UDP.
DEFAULT_TIMEOUTS = {PROTO_UDP: 60.0, PROTO_TCP: 1800.0, PROTO_ICMP: 60.0}
OTHER_TIMEOUT = 60.0

Key = tuple[int, int, int, int, int]            # proto, src, sport, dst, dport
Rewrite = tuple[int, int, int, int]              # new src, sport, dst, dport


@dataclass(slots=True, eq=False)
class Session:
    """One flow, both directions. Mutable: counters and deadline change per packet."""

    id: int
    proto: int
    fwd_key: Key
    rev_key: Key
    fwd_rewrite: Rewrite | None          # None: forward packets leave unchanged
    rev_rewrite: Rewrite | None
    ingress: str
    egress: str
    from_zone: str | None
    to_zone: str | None
    policy_id: int | None
    kind: str                            # "policy", "media", "signalling"
    timeout: float
    deadline: float
    created: float
    alg: str | None = None               # "sip"/"mgcp": packets go to the ALG, not the fast path
    direction: Direction = Direction.NONE    # the forward packet's NAT direction
    call: str | None = None              # ALG call (or endpoint) owning the flow
    group: str | None = None             # media group (voice channel)
    pinhole: str | None = None           # pinhole that opened it
    rev_group: str | None = None         # media group of the reply direction (its own pinhole's)
    rev_pinhole: str | None = None       # pinhole the first reply satisfies (reported then cleared)
    public: tuple[int, int] | None = None    # (ip, port) reserved by source translation
    note: str = ""
    fwd_packets: int = 0
    fwd_bytes: int = 0
    rev_packets: int = 0
    rev_bytes: int = 0
    removed: bool = field(default=False, repr=False)
    # Firewall mark of its packets (gateway.shaping.policy_mark of the
    # policy it belongs to; 0: none), given in every verdict.
    mark: int = 0
    # Directions of it the kernel forwards (gateway/datapath/offload.py).
    offloaded: int = 0

    @property
    def translated(self) -> tuple[int, int, int, int]:
        """The forward packet's tuple after NAT: (src, sport, dst, dport)."""
        _p, s, sp, d, dp = self.fwd_key
        return self.fwd_rewrite if self.fwd_rewrite is not None else (s, sp, d, dp)

    def describe(self) -> str:
        p, s, sp, d, dp = self.fwd_key
        ts, tsp, td, tdp = self.translated
        return (f"{_PROTO_NAMES.get(p, p)} {IPv4Address(s)}:{sp} -> {IPv4Address(d)}:{dp}"
                f" as {IPv4Address(ts)}:{tsp} -> {IPv4Address(td)}:{tdp}")


_PROTO_NAMES = {PROTO_UDP: "udp", PROTO_TCP: "tcp", PROTO_ICMP: "icmp"}


def reverse(key: Key, rw: Rewrite | None) -> Key:
    """The reply key of a forward key and its rewrite."""
    p, s, sp, d, dp = key
    if rw is not None:
        s, sp, d, dp = rw
    return (p, d, dp, s, sp)


def _owners(sess: Session) -> tuple[tuple[str, str], ...]:
    """The index keys of what owns a session: its voice channel (``group``,
    whatever its kind) and, for media, the reply direction's channel and the
    call. Fixed at creation (none of these fields changes afterwards)."""
    out = []
    if sess.group is not None:
        out.append(("group", sess.group))
    if sess.kind == "media":
        if sess.rev_group is not None and sess.rev_group != sess.group:
            out.append(("group", sess.rev_group))
        if sess.call is not None:
            out.append(("call", sess.call))
    return tuple(out)


def _by_sid(sess: Session) -> int:
    return sess.id


class SessionTable:
    """Sessions by both keys. Entries of ``lookup``: ``(session, rewrite, forward)``."""

    def __init__(self, timeouts: dict[int, float] | None = None) -> None:
        self.timeouts = dict(DEFAULT_TIMEOUTS)
        if timeouts:
            self.timeouts.update(timeouts)
        self._map: dict[Key, tuple[Session, Rewrite | None, bool]] = {}
        # The UDP entries of _map again, precomputed for the fast path
        # (gateway.datapath.fastpath), by the packet's address and port bytes.
        # Kept in step wherever _map changes: a UDP key of _map has an entry
        # here exactly when its session is not an ALG's, and it is that session's.
        self.fast: dict[bytes, FastEntry] = {}
        self._by_id: dict[int, Session] = {}
        # ("call", call) / ("group", group) -> the sessions an ALG's call or
        # voice channel owns (see _owners), so that a call's or channel's end
        # removes its media without a scan of every session (a scan per ended
        # call made teardown quadratic in the calls held).
        self._owned: dict[tuple[str, str], dict[int, Session]] = {}
        self._heap: list[tuple[float, int]] = []
        self._next_id = 1
        # Per protocol: (public ip, port) held by source-translated sessions, with
        # how many hold it (media of one stream may share it); a dict answers
        # the membership test allocate_port makes.
        self._public_in_use: dict[int, dict[tuple[IPv4Address, int], int]] = {}
        self.created = 0
        self.expired = 0
        self.removed = 0
        self.port_translations = 0
        self.port_exhausted = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(list(self._by_id.values()))

    def get(self, sid: int) -> Session | None:
        return self._by_id.get(sid)

    def lookup(self, key: Key):
        """``(session, rewrite, is_forward)`` for a packet's key, or None."""
        return self._map.get(key)

    def timeout_for(self, proto: int) -> float:
        return self.timeouts.get(proto, OTHER_TIMEOUT)

    # -- source port translation -------------------------------------------------

    def public_port(self, proto: int, ip: int, sport: int) -> int | None:
        """The port a flow from ``sport`` gets on public address ``ip``:
        ``sport`` itself when free, else another free one (None: none left)."""
        used = self._public_in_use.get(proto)
        addr = IPv4Address(ip)
        if not used or (addr, sport) not in used:
            return sport
        return allocate_port(used, addr, hint=sport)

    # -- create / remove ---------------------------------------------------------

    def create(self, key: Key, rewrite: Rewrite | None, now: float, *, ingress: str = "",
               egress: str = "", from_zone: str | None = None, to_zone: str | None = None,
               policy_id: int | None = None, kind: str = "policy", timeout: float | None = None,
               alg: str | None = None, direction: Direction = Direction.NONE, call: str | None = None,
               group: str | None = None, pinhole: str | None = None,
               rev_group: str | None = None, rev_pinhole: str | None = None,
               translate_port: bool = True,
               note: str = "", mark: int = 0) -> Session | None:
        """Enter a session for the packet with ``key`` leaving as ``rewrite``.

        When ``rewrite`` changes the source address of a TCP/UDP flow and its
        ``(public ip, sport)`` is held by another flow, the source port is
        translated (``translate_port``); None when no port is left. When the
        key is already a session's forward key, that session is returned
        (two packets of one new flow may both have been decided)."""
        have = self._map.get(key)
        if have is not None and have[2]:
            return have[0]
        proto = key[0]
        public = None
        if rewrite is not None and proto in (PROTO_TCP, PROTO_UDP) and rewrite[0] != key[1]:
            nsrc, nsport, ndst, ndport = rewrite
            port = nsport
            if translate_port:
                port = self.public_port(proto, nsrc, nsport)
                if port is None:
                    self.port_exhausted += 1
                    return None
                if port != nsport:
                    self.port_translations += 1
                    rewrite = (nsrc, port, ndst, ndport)
            public = (nsrc, port)
        if rewrite is not None and rewrite == key[1:]:
            rewrite = None
        rkey = reverse(key, rewrite)
        if rkey in self._map or rkey == key:
            # The reply tuple belongs to another session (or the flow is its own
            # reply): entering it would steal that session's packets.
            return None
        p, s, sp, d, dp = key
        rev_rw = None if rewrite is None else (d, dp, s, sp)
        if timeout is None:
            timeout = self.timeouts.get(proto, OTHER_TIMEOUT)
        sid = self._next_id
        self._next_id += 1
        sess = Session(sid, proto, key, rkey, rewrite, rev_rw, ingress, egress, from_zone,
                       to_zone, policy_id, kind, timeout, now + timeout, now, alg, direction,
                       call, group, pinhole, rev_group, rev_pinhole, public, note)
        sess.mark = mark
        self._map[key] = (sess, rewrite, True)
        self._map[rkey] = (sess, rev_rw, False)
        if proto == PROTO_UDP:
            self._fast_set(sess, key, rewrite, True)
            self._fast_set(sess, rkey, rev_rw, False)
        self._by_id[sid] = sess
        for owner in _owners(sess):
            self._owned.setdefault(owner, {})[sid] = sess
        if public is not None:
            used = self._public_in_use.setdefault(proto, {})
            k = (IPv4Address(public[0]), public[1])
            used[k] = used.get(k, 0) + 1
        heapq.heappush(self._heap, (sess.deadline, sid))
        self.created += 1
        return sess

    def _fast_set(self, sess: Session, key: Key, rw: Rewrite | None, forward: bool) -> None:
        kb = key_bytes(key)
        if sess.alg is None:
            self.fast[kb] = make_entry(sess, key, rw, forward)
        else:
            # An ALG's session takes this key (from another session's reply
            # key, see create): its packets must not be forwarded unseen.
            self.fast.pop(kb, None)

    def reschedule(self, sess: Session, deadline: float) -> None:
        """Move a session's deadline earlier (a later one needs no call: the
        heap entry is checked against ``sess.deadline`` when it comes up)."""
        sess.deadline = deadline
        heapq.heappush(self._heap, (deadline, sess.id))

    def remove(self, sess: Session) -> bool:
        """Remove a session (both keys); False when it was already gone."""
        if sess.removed or self._by_id.get(sess.id) is not sess:
            return False
        sess.removed = True
        del self._by_id[sess.id]
        for owner in _owners(sess):
            mine = self._owned.get(owner)
            if mine is not None:
                mine.pop(sess.id, None)
                if not mine:
                    del self._owned[owner]
        for k in (sess.fwd_key, sess.rev_key):
            e = self._map.get(k)
            if e is not None and e[0] is sess:
                del self._map[k]
                if sess.proto == PROTO_UDP:
                    self.fast.pop(key_bytes(k), None)
        if sess.public is not None:
            used = self._public_in_use.get(sess.proto)
            k = (IPv4Address(sess.public[0]), sess.public[1])
            if used is not None and k in used:
                if used[k] <= 1:
                    del used[k]
                else:
                    used[k] -= 1
        self.removed += 1
        return True

    def media_of_call(self, call: str) -> list[Session]:
        """The media sessions of an ALG call, oldest first."""
        return sorted(self._owned.get(("call", call), {}).values(), key=_by_sid)

    def of_groups(self, groups) -> list[Session]:
        """The sessions of these voice channels (a session's own group, or
        the reply direction's group of a media session), oldest first."""
        found: dict[int, Session] = {}
        for g in groups:
            found.update(self._owned.get(("group", g), {}))
        return sorted(found.values(), key=_by_sid)

    def remove_all(self, sessions) -> list[Session]:
        """Remove these sessions; those actually removed (not already gone)."""
        return [s for s in sessions if self.remove(s)]

    def expire(self, now: float) -> list[Session]:
        """Remove and return the sessions idle past their deadline."""
        out: list[Session] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _dl, sid = heapq.heappop(heap)
            sess = self._by_id.get(sid)
            if sess is None:
                continue
            if sess.deadline > now:
                # Refreshed since it was pushed: look again at its new deadline.
                heapq.heappush(heap, (sess.deadline, sid))
                continue
            self.remove(sess)
            self.expired += 1
            out.append(sess)
        if len(heap) > 4 * len(self._by_id) + 64:
            # Removed sessions leave entries behind; rebuild when they dominate.
            self._heap = [(s.deadline, s.id) for s in self._by_id.values()]
            heapq.heapify(self._heap)
        return out

    def clear(self) -> None:
        for s in list(self._by_id.values()):
            self.remove(s)
        self._heap.clear()

    def stats(self) -> dict[str, int]:
        return {"sessions": len(self._by_id), "created": self.created, "expired": self.expired,
                "removed": self.removed, "port_translations": self.port_translations,
                "port_exhausted": self.port_exhausted}
