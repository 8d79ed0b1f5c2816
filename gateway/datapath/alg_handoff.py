"""What an ALG is told of a packet the datapath hands it: the NAT direction,
the public source and private destination of the flow, an H.323
connection's name, and the one integrity guard every way into an ALG takes
(:func:`_alg_entry`; :mod:`gateway.datapath.integrity` says why)."""

from __future__ import annotations

from functools import wraps
from ipaddress import IPv4Address

from gateway.alg_contract import Direction
from gateway.datapath.integrity import signalling_damage
from gateway.datapath.sessions import Rewrite
from gateway.packet import Packet
from gateway.policy import Decision


def _direction(d: Decision) -> Direction:
    """outbound (private to public: source translated), inbound (destination
    translated), or none: what the ALGs call the NAT direction."""
    nat = d.nat
    if nat.dst is not None:
        return Direction.INBOUND
    if nat.src is not None:
        return Direction.OUTBOUND
    return Direction.NONE


# A reply's direction (a session's text from the journal maps as its member does).
_FLIP = {"outbound": Direction.INBOUND, "inbound": Direction.OUTBOUND}


def _ip(n: int) -> str:
    return str(IPv4Address(n))


def _conn_name(a: tuple[str, int], b: tuple[str, int]) -> str:
    """An H.323 connection's name, the same in both directions: its two real
    endpoints (the sender, and the receiver after NAT), in sorted order. A
    node that takes over mid-call names it the same, whichever direction it
    sees first (Q.931 call references are per connection)."""
    x, y = f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}"
    return f"{x}-{y}" if x <= y else f"{y}-{x}"


def session_ends(sess) -> tuple[tuple[str, int], tuple[str, int]]:
    """A session's two real ends: its first packet's source as it arrived,
    and its destination after NAT (the private host of a MIP or VIP), the
    ends :func:`_conn_name` names a connection by."""
    _p, s, sp, d, dp = sess.fwd_key
    frw = sess.fwd_rewrite
    return (_ip(s), sp), ((_ip(frw[2]), frw[3]) if frw is not None else (_ip(d), dp))


def session_connection(sess) -> str:
    """The name of the connection a TCP session carries, as the ALG it
    hands the connection's messages to knows it (an H.323 call's ``conn``)."""
    return _conn_name(*session_ends(sess))


def _nat_of(rw: Rewrite | None, s: int, sp: int, d: int, dp: int,
            port_translates: bool = True) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """What an ALG is told of the packet's NAT: ``nat_src``, the public
    source (outbound), and ``nat_dst``, the private destination (inbound to a
    MIP), each None where NAT leaves it as it is. ``port_translates``: a
    changed source port alone counts as a source translation (not for a
    flow decided by policy, whose source NAT is an address change)."""
    if rw is None:
        return None, None
    changed = (rw[0], rw[1]) != (s, sp) if port_translates else rw[0] != s
    nat_src = (_ip(rw[0]), rw[1]) if changed else None
    nat_dst = (_ip(rw[2]), rw[3]) if (rw[2], rw[3]) != (d, dp) else None
    return nat_src, nat_dst


def _rw_direction(key, rw: Rewrite | None) -> Direction:
    if rw is None:
        return Direction.NONE
    if rw[2] != key[3]:
        return Direction.INBOUND
    if rw[0] != key[1]:
        return Direction.OUTBOUND
    return Direction.NONE


def _alg_entry(handoff):
    """Marks a way into an ALG: before it, the one integrity guard. A
    signalling packet reaches an ALG only whole and undamaged (checksums
    right, not a fragment; :mod:`gateway.datapath.integrity` says why);
    otherwise it is dropped with the reason. Every path that hands a packet
    to an ALG goes through a method so marked, after the policy (whose
    refusal is the drop reason when both apply) and before any session."""
    @wraps(handoff)
    def guarded(self, pkt: Packet, *args, **kwargs):
        damage = signalling_damage(pkt, self.offloaded_checksums_ok)
        if damage is not None:
            return self._drop(*damage)
        return handoff(self, pkt, *args, **kwargs)
    return guarded
