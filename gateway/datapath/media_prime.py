"""Media sessions made ahead of their first packet, from the pinholes a
node takes over with (sans-I/O).

After a takeover the new active has the calls (replicated ALG state) and
their media pinholes (``sip_media_pinholes``), but no media sessions: the
first RTP packet of each direction would go through userspace to make one,
and only then could the kernel take the flow (gateway/datapath/offload.py).
Made here before the node announces its addresses, the sessions are in the
kernel when the first packet arrives, so the media goes on at the kernel's
rate from the first packet on.

Where a packet through a pinhole comes from: the other party's media
address, the one its SDP announced (RFC 4961, symmetric RTP: an endpoint
sends from the port it receives on, which is what phones do and what the
ALG's own source translation assumes): the private target (``to``) of the
pinhole toward the other party, else its destination. A call of one voice
channel has a group of pinholes per party (the ALG binds each party's media
as a group: RTP, and RTCP on the next port or its ``a=rtcp`` port), so the
pinholes of its two groups pair in port order: RTP with RTP, RTCP with RTCP
(RFC 3550 11: RTCP on the next higher port, or as RFC 3605 announces).
Calls of several voice channels (audio and video: four groups) are left to
their first packets: which group answers which is not in the pinholes. A
source that turns out wrong costs nothing: its packets meet the pinhole as
before.

A made session is the one the datapath itself makes from such a packet
(``Datapath.process`` on a synthetic datagram: same NAT, ports, policy,
mark), with its packet and activity accounting undone."""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.packet import build_udp

PROTO_UDP = 17


def expected_flows(holes) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``((src, sport), (dst, dport))`` of the first packet each media
    pinhole of a one-channel call expects."""
    by_call: dict[str, dict[str, list]] = {}
    for h in holes:
        p = h.pinhole
        if p.kind == "media" and h.key[0] == PROTO_UDP:
            by_call.setdefault(p.call, {}).setdefault(p.group, []).append(h)
    out = []
    for groups in by_call.values():
        if len(groups) != 2:
            continue
        a, b = (sorted(hs, key=lambda h: h.key[2]) for hs in groups.values())
        if len(a) != len(b):
            continue                     # one party's RTCP still open, the other's used
        for x, y in zip(a, b):
            for hole, other in ((x, y), (y, x)):
                out.append((other.party, (hole.key[1], hole.key[2])))
    return out


def prime(datapath, now: float) -> int:
    """Make the media sessions the open pinholes expect (both directions
    ready: the reply's pinhole reported as the datapath does on its first
    packet); how many directions were made ready. Their counters and the voice channels' activity are
    as before (no packet was seen)."""
    made = 0
    groups = set()
    for (src, sport), (dst, dport) in expected_flows(datapath.pinholes.holes()):
        key = (PROTO_UDP, src, sport, dst, dport)
        have = datapath.sessions.lookup(key)
        if have is not None and (have[2] or have[0].rev_pinhole is None):
            continue                     # this direction is established already
        route = datapath.engine.route(IPv4Address(src))
        if route is None:
            continue
        out = datapath.process(build_udp(IPv4Address(src), IPv4Address(dst), sport, dport, b""),
                               route[0], now)
        found = datapath.sessions.lookup(key)
        if found is None or getattr(out, "path", None) not in ("fast-pinhole", "fast-session"):
            continue
        sess, _rw, forward = found
        made += 1
        datapath.paths[out.path] -= 1
        if forward:
            sess.fwd_packets -= 1
            sess.fwd_bytes -= 28
        else:
            sess.rev_packets -= 1
            sess.rev_bytes -= 28
        for g in (sess.group, sess.rev_group):
            if g is not None:
                groups.add(g)
    datapath.activity.forget(groups)
    return made
