"""What the datapath knows of an MGCP datagram: :class:`MgcpContext`, the
:class:`gateway.alg_contract.PacketContext` of the MGCP ALG (manual chapter 3;
who sent it, RFC 3435 3.5.3 ports, and the NAT its media gets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gateway.alg_contract import PacketContext
from gateway.mgcp.transitions import GW


@dataclass(frozen=True, slots=True)
class MgcpContext(PacketContext):
    """What the datapath knows of an MGCP datagram (:class:`PacketContext`),
    and:

    ``role``: who sent it: "gateway" (e.g. sent to the
    call agent's UDP 2727, service MGCP-CA), "call-agent", or "either" when
    the datapath cannot tell (two 2427 ports: a call agent on 2427, as in
    PacketCable/NCS); :func:`step` then reads it from the messages
    (:mod:`gateway.mgcp.roles`).
    ``media_nat``: optional, the public address NAT gives media of a private
    host other than the sender toward this message's destination (e.g. a
    second gateway's SDP relayed by the call agent, manual "ISP-Hosted
    Service": sf_gw's media leaves by ``nat src``); None when it is not
    translated."""

    role: str = GW
    media_nat: Callable[[str], str | None] | None = None
    # As gateway.sip.alg.SipContext.far_side: True for an address in the zone
    # the message goes to (no pinhole is opened to it). None: not checked.
    far_side: Callable[[str], bool] | None = None
    # As gateway.sip.alg.SipContext.dedicated: True for a public address
    # that is one host's alone (a MIP's), whose ports are the host's own, so
    # media translated to it keeps its port (gateway/mgcp/alg_media.py
    # ``kept_port``). None: not known (a pair is allocated).
    dedicated: Callable[[str], bool] | None = None

    @property
    def gateway(self) -> str:
        """The media gateway's own address (as seen on its side of the NAT):
        the key of its endpoints, calls and flood counters."""
        if self.role == GW:
            return str(self.src[0])
        return str(self.nat_dst[0] if self.nat_dst is not None else self.dst[0])
