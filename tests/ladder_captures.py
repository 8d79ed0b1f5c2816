"""Captures for the call-ladder tests that the corpus lacks: an MGCP call
(CRCX, MDCX, DLCX with their responses, RFC 3435 2.3) between the call
agent and a media gateway of examples/ch3-media-gateway-in-subscribers-homes.cfg."""

from __future__ import annotations

from pathlib import Path

CA = ("10.1.1.101", 2727)
GW = ("2.2.2.201", 2427)
SDP_GW = "v=0\no=- 1 1 IN IP4 2.2.2.201\ns=-\nc=IN IP4 2.2.2.201\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
SDP_FAR = "v=0\no=- 2 2 IN IP4 10.1.1.50\ns=-\nc=IN IP4 10.1.1.50\nt=0 0\nm=audio 6000 RTP/AVP 0\n"

# (seconds, from, to, message) with \n turned into CRLF
MESSAGES = [
    (0.0, CA, GW, "CRCX 1001 aaln/1@[2.2.2.201] MGCP 1.0\nC: A1B2\nM: recvonly\n"),
    (0.1, GW, CA, "200 1001 OK\nI: C1\n\n" + SDP_GW),
    (1.0, CA, GW, "MDCX 1002 aaln/1@[2.2.2.201] MGCP 1.0\nC: A1B2\nI: C1\nM: sendrecv\n\n" + SDP_FAR),
    (1.1, GW, CA, "200 1002 OK\n"),
    (5.0, CA, GW, "DLCX 1003 aaln/1@[2.2.2.201] MGCP 1.0\nC: A1B2\nI: C1\n"),
    (5.1, GW, CA, "250 1003 OK\n"),
]
CALL_ID = "A1B2"


def mgcp_call_capture(path: Path, t0: float = 1_700_000_000.0) -> int:
    from scapy.all import IP, UDP, Ether, wrpcap
    frames = []
    for dt, (sip, sport), (dip, dport), text in MESSAGES:
        f = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=sip, dst=dip)
             / UDP(sport=sport, dport=dport) / text.replace("\n", "\r\n").encode())
        f.time = t0 + dt
        frames.append(f)
    wrpcap(str(path), frames)
    return len(frames)
