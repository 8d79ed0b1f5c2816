"""What the datapath decides for one packet (DESIGN.md, "A packet's way
through"): :class:`Forward`, :class:`Drop`, or :class:`Alg` (a signalling
packet for an ALG, finished by :meth:`gateway.datapath.Datapath.finish_alg`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gateway.datapath.sessions import Rewrite
from gateway.datapath.tcp_stream import SegmentWork
from gateway.packet import Packet
from gateway.policy import Decision
from gateway.sip.alg import SipContext

# Forward and Drop are made for every packet: NamedTuples (about 0.1 us to
# make; a frozen slotted dataclass costs over 1 us, see gateway/packet.py).

class Forward(NamedTuple):
    """Let the packet go as ``data`` (rewritten when NAT applies)."""

    data: bytes
    path: str                       # "fast-session" | "fast-pinhole" | "policy"
    note: str = ""
    # Firewall mark for the verdict: the traffic-shaping class and DSCP of
    # the policy the flow belongs to (gateway.shaping; 0: none).
    mark: int = 0


class Drop(NamedTuple):
    """Drop the packet; ``reason`` is the one line to log."""

    reason: str
    category: str = "other"         # malformed, fragment, policy, screen-*, alg, session


@dataclass(frozen=True, slots=True)
class Alg:
    """A signalling packet for an ALG: the caller runs the ALG (in the owning
    actor, found by ``key``) and calls :meth:`Datapath.finish_alg`.

    ``key``: the Call-ID for SIP (cheap scan; "" when none found: the ALG's
    parser will say why); for MGCP ``ep:<endpoint>`` for a command,
    ``tid:<transaction id>`` for a response. ``direction``/``src``/``dst``/
    ``nat_src``/``nat_dst``/``ingress``/``egress``/``transport`` are the
    :class:`gateway.sip.alg.SipContext` fields (:meth:`sip_context`).
    ``decision`` is None for SIP to an incoming-DIP address: policy is decided
    in ``finish_alg`` once the ALG has named the internal host (``route_to``).
    ``rewrite``: the header translation (new src, sport, dst, dport) as far as
    known. ``session``: id of the signalling session it matched, if any;
    ``pinhole``: id of the signalling pinhole it came through, if any."""

    alg: str
    key: str
    packet: Packet
    decision: Decision | None
    direction: str
    src: tuple[str, int]
    dst: tuple[str, int]
    nat_src: tuple[str, int] | None
    nat_dst: tuple[str, int] | None
    ingress: str
    egress: str
    transport: str
    payload: bytes
    rewrite: Rewrite | None
    session: int | None = None
    pinhole: str | None = None
    # H.323: "ras", "q931" or "h245"; the connection's name, the same for
    # both directions (the two real endpoints: private and public side);
    # for TCP the segment's complete messages (payload is then
    # ``segment.data``, the part the ALG may rewrite).
    channel: str = ""
    conn: str = ""
    segment: SegmentWork | None = None

    def sip_context(self) -> SipContext:
        return SipContext(self.direction, self.src, self.dst, self.nat_src, self.nat_dst,
                          self.ingress, self.egress, self.transport)


Outcome = Forward | Drop | Alg
