"""What the datapath's policy engine tells an ALG's context beyond the
packet's own addresses: which addresses lie on the far side of the message
(SIP and MGCP ``far_side``) and where NAT sends a private gateway's media
(MGCP ``media_nat``); used by the adapters (gateway/algs.py)."""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.mgcp import alg as mgcp_alg
from gateway.policy import Flow


def far_side_of(engine, o):
    """The SIP ALG's ``far_side`` test for a message leaving by ``o.egress``:
    True for an address that routes into the egress interface's zone.

    A pinhole exists so that media (or requests) from the far side can reach a
    party on the sender's side. An SDP ``c=`` or a Contact naming an address in
    the zone the message is going to describes traffic that stays inside that
    zone (intra-zone policy governs it), or a third party the sender has no
    business opening a path to: an outside caller writing ``c=`` with an
    inside server's address would otherwise get UDP to that server from
    anywhere for the pinhole's lifetime."""
    if engine is None or not getattr(o, "egress", ""):
        return None
    zone = engine.zone_of(o.egress)
    if zone is None:
        return None

    def far(addr: str) -> bool:
        try:
            where = engine.route(IPv4Address(addr))
        except ValueError:
            return False
        return where is not None and where[1] == zone

    return far


def dedicated_of(engine):
    """The SIP ALG's ``dedicated`` test: True for a MIP's mapped address.

    A MIP is a one-to-one mapping of one private address to one public
    address (manual ch. 2 "Incoming SIP Call Support Using a MIP"; NAT
    "Mapped IP Addresses": every port of the public address is the host's),
    so the host's ports are free on it whatever other hosts do, and keeping
    them is what a phone that reuses its RTP port for every call needs:
    translating each call's media to a port of its own made every call after
    the first meet the first call's flow on the inside."""
    return None if engine is None else engine.is_mip_address


def media_nat_of(engine, o):
    """The public address NAT gives the media of a private gateway named in
    an outbound message's SDP, toward the message's destination gateway, or
    None (the ALG's ``MgcpContext.media_nat``).

    Manual ch. 3 "ISP-Hosted Service": the call agent (behind a MIP) relays
    sf_gw's descriptor (2.2.2.201) to asia_gw, and sf_gw's traffic to asia_gw
    leaves by "set policy from trust to untrust sf_gw asia_gw mgcp-ua nat
    src" ("a single policy is sufficient to allow bidirectional communication
    between gateways"). The policy between two gateways is written for their
    MGCP, so the flow asked about is sf_gw's MGCP-UA datagram to asia_gw; its
    source NAT is where asia_gw must send the media, and the ALG binds a
    public pair there. Without this the private address left in the SDP."""
    dst = IPv4Address(str((o.nat_dst or o.dst)[0]))

    def nat(addr: str) -> str | None:
        try:
            host = IPv4Address(addr)
        except ValueError:
            return None
        where = engine.route(host)
        if where is None:
            return None
        d = engine.decide(Flow(where[0], host, dst, "udp", mgcp_alg.GW_PORT, mgcp_alg.GW_PORT))
        if not d.permitted or d.nat is None or d.nat.src is None:
            return None
        return str(d.nat.src)
    return nat
