"""Media pinholes opened by the ALGs, and the media activity reported back.

A pinhole admits packets whose source is not known in advance (manual ch. 2,
"Pinhole Creation": "Protocol: UDP / Source IP: unknown / Source port:
unknown / Destination IP ... Destination port ... Lifetime"). So the table is
keyed by ``(proto, dst ip, dst port)`` as the packet arrives, and holds what
the ALG decided: ``to`` (where the packet really goes after NAT) and
``src_to`` (the source it leaves with), the lifetime and the owning call and
voice channel (group).

The first packet through a pinhole becomes a media session (both directions,
:mod:`gateway.datapath.sessions`); the pinhole is then reported as used: "When
a packet goes through the pinhole within the lifetime period, immediately
after, the SIP ALG removes the pinhole for the direction from which the packet
came". The ALG decides the removal (it owns the state, which is journaled and
replicated); this table keeps the pinhole until told to remove it or until its
lifetime passes, so a standby rebuilt from the state matches the same packets.

Media activity (packets per group, last time seen, pinholes used) is counted
here per packet and drained in batches (DESIGN.md step 2: "Media activity is
counted and delivered to the pinhole's actor in batches").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Iterable

from gateway.pinhole import Pinhole

PROTO_NUMBERS = {"udp": 17, "tcp": 6}


# What an ALG hands the pinhole table (every ALG's pinholes are of this type).
PinholeLike = Pinhole


@dataclass(slots=True, eq=False)
class Hole:
    """A pinhole in the table: the ALG's object, its key and translations as ints."""

    pinhole: PinholeLike
    key: tuple[int, int, int]                    # proto, dst ip, dst port
    to: tuple[int, int] | None
    src_to: tuple[int, int] | None
    expires_at: float | None
    uses: int = 0
    # The policy that permitted the signalling that opened it (its media
    # takes that policy's traffic class, gateway.shaping); None: unknown.
    policy_id: int | None = None

    @property
    def id(self) -> str:
        return self.pinhole.id

    @property
    def group(self) -> str:
        return self.pinhole.group

    @property
    def call(self) -> str:
        return self.pinhole.call

    @property
    def party(self) -> tuple[int, int]:
        """Where the party behind this media pinhole is, and sends from
        (symmetric RTP, RFC 4961): its private address when the pinhole
        translates, else the pinhole's destination."""
        return self.to if self.to is not None else (self.key[1], self.key[2])


def _ip_port(v) -> tuple[int, int] | None:
    if v is None:
        return None
    return int(IPv4Address(str(v[0]))), int(v[1])


def _opened_order(p: PinholeLike) -> float:
    """Sort key: pinholes without a deadline first, then by deadline."""
    return -1.0 if p.expires_at is None else p.expires_at


class PinholeTable:
    def __init__(self) -> None:
        # Several pinholes may share a destination (two calls to one media
        # address: a phone that announces one RTP port for every call, behind
        # a MIP that keeps it); the newest live one answers, as the newest
        # negotiation is the one the phone sends for (media_takeover.py).
        self._by_key: dict[tuple[int, int, int], list[Hole]] = {}
        self._by_id: dict[str, Hole] = {}
        # (proto, to ip, to port) -> pinholes translating to that private
        # media address (see :meth:`translating_to`).
        self._by_to: dict[tuple[int, int, int], list[Hole]] = {}
        # call -> its pinholes by id: a call's end removes them without a
        # scan of every pinhole of every call (O(table) per ended call made
        # call teardown quadratic in the number of calls held).
        self._by_call: dict[str, dict[str, Hole]] = {}
        self.installed = 0
        self.removed = 0
        self.expired = 0
        self.matched = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, pid: str) -> bool:
        return pid in self._by_id

    def get(self, pid: str) -> Hole | None:
        return self._by_id.get(pid)

    def holes(self) -> list[Hole]:
        return list(self._by_id.values())

    def install(self, pinhole: PinholeLike) -> Hole:
        """Add (or replace, by id) one pinhole. Raises ValueError for a pinhole
        an ALG should never produce (unknown protocol, bad address)."""
        proto = PROTO_NUMBERS.get(pinhole.proto)
        if proto is None:
            raise ValueError(f"pinhole {pinhole.id}: protocol {pinhole.proto!r} not supported")
        dst = _ip_port(pinhole.dst)
        hole = Hole(pinhole, (proto, dst[0], dst[1]), _ip_port(pinhole.to),
                    _ip_port(pinhole.src_to), pinhole.expires_at)
        if pinhole.id in self._by_id:
            self.remove(pinhole.id)
        self._by_key.setdefault(hole.key, []).append(hole)
        self._by_id[pinhole.id] = hole
        if hole.to is not None:
            self._by_to.setdefault((proto,) + hole.to, []).append(hole)
        self._by_call.setdefault(pinhole.call, {})[pinhole.id] = hole
        self.installed += 1
        return hole

    def remove(self, pid: str) -> Hole | None:
        hole = self._by_id.pop(pid, None)
        if hole is None:
            return None
        lst = self._by_key.get(hole.key)
        if lst is not None:
            lst.remove(hole)
            if not lst:
                del self._by_key[hole.key]
        if hole.to is not None:
            tkey = (hole.key[0],) + hole.to
            lst = self._by_to.get(tkey)
            if lst is not None:
                lst.remove(hole)
                if not lst:
                    del self._by_to[tkey]
        mine = self._by_call.get(hole.call)
        if mine is not None:
            mine.pop(pid, None)
            if not mine:
                del self._by_call[hole.call]
        self.removed += 1
        return hole

    def of_call(self, call: str) -> list[Hole]:
        """The pinholes of ``call``."""
        return list(self._by_call.get(call, {}).values())

    def remove_call(self, call: str) -> list[Hole]:
        """Remove and return every pinhole of ``call``."""
        gone = list(self._by_call.get(call, {}).values())
        for h in gone:
            self.remove(h.id)
        return gone

    def match(self, proto: int, dst: int, dport: int, now: float) -> Hole | None:
        """The live pinhole for a packet to ``dst:dport`` (any source): of
        several, the newest."""
        lst = self._by_key.get((proto, dst, dport))
        if not lst:
            return None
        for hole in reversed(lst):
            if hole.expires_at is None or hole.expires_at > now:
                return hole
        return None

    def translating_to(self, proto: int, ip: int, port: int, now: float) -> Hole | None:
        """A live pinhole whose packets are translated to ``ip:port``: that
        private media address has a public pair (the pinhole's destination);
        of several, the newest."""
        for hole in reversed(self._by_to.get((proto, ip, port), ())):
            if hole.expires_at is None or hole.expires_at > now:
                return hole
        return None

    def expire(self, now: float) -> list[Hole]:
        """Remove and return the pinholes whose lifetime has passed ("When the
        lifetime expires, the SIP ALG removes the pinhole")."""
        gone = [h for h in self._by_id.values() if h.expires_at is not None and h.expires_at <= now]
        for h in gone:
            self.remove(h.id)
        self.expired += len(gone)
        return gone

    def rebuild(self, pinholes: Iterable[PinholeLike]) -> None:
        """Replace the whole table (after failover or replay, from state).

        The state holds calls in no order, so pinholes that share a
        destination are installed oldest first by their deadline (a pinhole
        opened later, with the same lifetime, ends later): the newest still
        answers :meth:`match` after a takeover."""
        self._by_key.clear()
        self._by_id.clear()
        self._by_to.clear()
        self._by_call.clear()
        for p in sorted(pinholes, key=_opened_order):
            self.install(p)

    def stats(self) -> dict[str, int]:
        return {"pinholes": len(self._by_id), "installed": self.installed,
                "removed": self.removed, "expired": self.expired, "matched": self.matched}


class MediaActivity:
    """Per voice channel: packets seen, the last time, the pinholes used.
    ``drain()`` gives a batch for the ALG's ``media_activity``."""

    __slots__ = ("_last", "_used", "packets")

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._used: dict[str, list[str]] = {}
        self.packets: dict[str, int] = {}

    def seen(self, group: str, now: float) -> None:
        self._last[group] = now
        packets = self.packets
        packets[group] = packets.get(group, 0) + 1

    def used(self, group: str, pinhole: str, now: float) -> None:
        self._used.setdefault(group, []).append(pinhole)
        self.seen(group, now)

    def forget(self, groups: Iterable[str]) -> None:
        for g in groups:
            self._last.pop(g, None)
            self._used.pop(g, None)
            self.packets.pop(g, None)

    def drain(self) -> list[tuple[str, str | None, float]]:
        """``(group, pinhole id or None, last seen)`` since the last drain: one
        entry per pinhole used, and one with None for a group that only had
        traffic. Per-group packet totals stay in ``packets``."""
        out: list[tuple[str, str | None, float]] = []
        used = self._used
        for group, last in self._last.items():
            holes = used.get(group)
            if holes:
                out.extend((group, pid, last) for pid in holes)
            else:
                out.append((group, None, last))
        self._last = {}
        self._used = {}
        return out


# ------------------------------------------------------------------ after failover

TAKEOVER_PINHOLE = "#takeover-"


def sip_media_pinholes(state) -> list:
    """Pinholes that let the media of calls in progress find their way on a
    node taking over (:class:`gateway.sip.state.SipState` in, for
    :meth:`Datapath.rebuild`).

    The media sessions a used pinhole turned into live only in the old
    active's datapath (the ALG removes a pinhole once a packet went through
    it, ch. 2 "Pinhole Creation"), so the new active reopens, for every voice
    channel still bound, the openings the ALG made when it bound it
    (``bind_media`` in :mod:`gateway.sip.alg_pinholes`): to the channel's public pair
    translated to the private party, or toward the party from the private
    side's public pair. Their ids carry ``TAKEOVER_PINHOLE``; the node removes
    each on first use, like the ALG's own (the ALG does not know the ids)."""
    out = []
    for c in state.calls.values():
        if c.forwarded:
            continue
        open_dst = {p.dst for p in c.pinholes}
        for g in c.groups:
            for port, n in ((g.dst_port, 0), (g.rtcp_port, 1)):
                if g.public_port is not None and g.public_ip is not None:
                    dst, to, src_to, direction = ((g.public_ip, g.public_port + n), (g.dst_ip, port),
                                                  None, "inbound")
                else:
                    src_to = None
                    if c.alg_ip is not None:
                        for o in c.groups:
                            if o.side != g.side and o.index == g.index and o.public_port is not None:
                                src_to = (o.public_ip, o.public_port + n)
                    dst, to = (g.dst_ip, port), None
                    direction = "any" if c.alg_ip is None else "outbound"
                if dst in open_dst:
                    continue
                out.append(Pinhole(f"{g.group}{TAKEOVER_PINHOLE}{n}", c.key, g.group, "media", "udp",
                                   direction, dst, to, src_to, g.media_deadline))
    # A pinhole matches by destination only. Calls in progress that all send
    # to one media address (many phones to one media server) would all take
    # the first one's source translation, whose reply tuple is taken: where a
    # destination is shared, the source gets an ordinary NAT port instead.
    seen: dict = {}
    for p in out:
        seen[p.dst] = seen.get(p.dst, 0) + 1
    return [replace(p, src_to=None) if p.src_to is not None and seen[p.dst] > 1 else p for p in out]
