"""Whether a signalling packet may reach an ALG: whole and undamaged.

An ALG rewrites a message's payload, and ``gateway.packet.rewrite`` then
computes the IPv4 and UDP/TCP checksums from scratch: a packet damaged on the
way would leave the gateway with valid checksums, its damage laundered and its
corrupt content acted on (a corrupt INVITE opening pinholes). So before any
ALG work both checksums are verified (RFC 791 header checksum, RFC 768 /
RFC 9293 pseudo-header checksum; a UDP checksum of 0 means none was sent,
RFC 768, and is accepted). The established-media fast path does not come
here: its incremental updates (RFC 1624) keep a wrong checksum wrong, so the
receiver still discards the packet, at no per-packet cost.

A fragment of a signalling flow is dropped: the gateway does not reassemble
(RFC 791 leaves reassembly to the destination host). A first fragment holds
only part of the message, which the ALG can neither parse whole nor rewrite
(its checksum covers the whole datagram, and a length change would need the
later fragments moved). SIP over UDP near the MTU is to go over TCP instead
(RFC 3261 section 18.1.1), and with conntrack loaded the kernel reassembles
before the raw table where the gateway's queue sits, so a signalling fragment
here is rare; reassembling in the gateway would add per-flow buffers an
attacker could fill (RFC 1858, RFC 3128 overlapping fragments) for no
benefit.

Captures taken on the sending host carry the unfinished checksums of transmit
offload: the L4 checksum field holds the pseudo-header sum, which the network
card would have completed (what Wireshark calls "maybe caused by TCP checksum
offload"). pcap mode accepts exactly that value (``offloaded_ok``); live
NFQUEUE packets reach userspace with the checksum completed by the kernel, so
the live datapath does not. An unfinished checksum is no less likely to be a
corruption's result than a right one (1 in 65,536 either way).
"""

from __future__ import annotations

from gateway.packet import Packet, fold, pseudo_header_sum

SIGNALLING_FRAGMENT = ("fragment: a fragmented signalling message is not reassembled "
                       "(RFC 3261 18.1.1: large SIP goes over TCP)")
BAD_IP_CHECKSUM = "bad IPv4 header checksum on a signalling packet"
BAD_UDP_CHECKSUM = "bad UDP checksum on a signalling packet"
BAD_TCP_CHECKSUM = "bad TCP checksum on a signalling packet"


def signalling_damage(pkt: Packet, offloaded_ok: bool = False) -> tuple[str, str] | None:
    """``(reason, drop category)`` when ``pkt`` must not reach an ALG, else None."""
    if pkt.more_fragments or pkt.frag_offset:
        return SIGNALLING_FRAGMENT, "fragment"
    if not pkt.ip_checksum_ok:
        return BAD_IP_CHECKSUM, "checksum"
    if pkt.l4_checksum_ok is False and not (offloaded_ok and _unfinished(pkt)):
        return (BAD_UDP_CHECKSUM if pkt.udp_length is not None else BAD_TCP_CHECKSUM), "checksum"
    return None


def _unfinished(pkt: Packet) -> bool:
    """The L4 checksum field holds the pseudo-header sum (transmit offload)."""
    length = pkt.udp_length if pkt.udp_length is not None else pkt.total_length - pkt.l4_offset
    return pkt.l4_checksum == fold(pseudo_header_sum(pkt.src_int, pkt.dst_int, pkt.proto, length))
