"""What the lab's hosts count as media: the RTP test for one UDP datagram and
the nft rules that say the same in every host namespace."""

from __future__ import annotations

# nft table in every host namespace counting RTP in and out: how a call's
# media is measured without trusting either peer. A packet counts when it looks
# like RTP (RFC 3550 s. 5.1: a 12-octet fixed header, version 2) and not like
# RTCP (RFC 5761 s. 4: a second octet of 192-223 is an RTCP packet type, which
# RTP payload types avoid), and is not to or from a signalling port of the
# ALGs (SIP 5060, H.323 RAS 1719, MGCP 2427/2727) or DNS. Any other UDP a lab
# host sends or receives (a probe, a stray datagram) is not media.
COUNTER_TABLE = "voiplab"
SIP_PORT = 5060
NOT_MEDIA_PORTS = (53, 1719, 2427, 2727, SIP_PORT)
RTP_HEADER = 12
RTP_VERSION = 2
RTCP_SECOND_OCTET = (192, 223)


def is_counted_media(sport: int, dport: int, payload: bytes) -> bool:
    """What the counters count, for one UDP datagram (the nft rule of
    :func:`counter_rules` says the same)."""
    lo, hi = RTCP_SECOND_OCTET
    return (sport not in NOT_MEDIA_PORTS and dport not in NOT_MEDIA_PORTS
            and len(payload) >= RTP_HEADER and payload[0] >> 6 == RTP_VERSION
            and not lo <= payload[1] <= hi)


def counter_rules() -> dict[str, str]:
    """The nft rules of a host's counters, by name: ``rtp`` counts media
    (:func:`is_counted_media`; ``@th`` is the UDP header, the payload starts
    64 bits in), ``udp`` every UDP datagram off the SIP port (bulk traffic
    that is not media, e.g. the bandwidth tests' competing flow)."""
    ports = "{ " + ", ".join(map(str, NOT_MEDIA_PORTS)) + " }"
    lo, hi = RTCP_SECOND_OCTET
    return {
        "rtp": (f"udp sport != {ports} udp dport != {ports} udp length >= {8 + RTP_HEADER} "
                f"@th,64,2 {RTP_VERSION} @th,72,8 != {lo}-{hi} counter comment \"rtp\""),
        "udp": f"udp sport != {SIP_PORT} udp dport != {SIP_PORT} counter comment \"udp\"",
    }
