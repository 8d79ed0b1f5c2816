"""A media flow that a newer negotiation claims (sans-I/O).

Phones reuse their RTP port: the next call from one phone announces the same
port while the previous call's session lingers (BYE + 5 s, RFC 3261 gives
the BYE's transaction that long), and a phone behind a one-to-one
translation (a MIP) is reached on one public port for every call. A packet
through the new call's pinhole then makes a session whose reply tuple is
the old session's: the same two endpoints, the same ports. Refusing it
("the reply tuple of this flow belongs to another session") cut the new
call's media for as long as the old session lived. The endpoints send the
new call's media on that flow, so the newest negotiation takes it: the old
session ends (its call's media on this flow is over: a phone has one stream
per port) and the reason is logged with the packet.

The same holds when the new call's flow is exactly the old session's (the
same 5-tuple: both parties reuse their ports, or a phone behind a MIP, which
keeps its port, is called again from the same far port): its packets match
the old session and never meet the new pinholes, so they would ride the old
call (its media activity, its source translation) until it ended. When a
call opens media pinholes, the sessions of other calls on the flows those
pinholes pair with the call's own are ended (:func:`claimed`): the next
packet meets the newest pinhole.

Only when the new flow's source is not port-translated (a pinhole with the
party's own public pair, or no source NAT): a translated source would get
another public port instead, and the reply tuple then belongs to a different
endpoint, whose session must stay."""

from __future__ import annotations

from gateway.datapath.sessions import PROTO_UDP, reverse


def displaced(sessions, key, rw, hole, translated: bool):
    """The media session (of another call, or another voice channel of the
    same call) whose reply tuple the new flow ``key`` -> ``rw`` through
    ``hole`` needs; None when there is none or it must stay."""
    if translated:
        return None
    rkey = reverse(key, rw)
    if rkey == key:
        return None
    have = sessions.lookup(rkey)
    if have is None:
        return None
    old = have[0]
    if old.kind != "media" or (old.call == hole.pinhole.call and old.group == hole.pinhole.group):
        return None
    return old


def note(old, hole) -> str:
    """The log line's reason."""
    return (f"media flow taken over by call {hole.pinhole.call} (pinhole {hole.pinhole.id}): "
            f"session {old.id} of call {old.call} ended")


def claimed(sessions, pinholes, opened) -> list[tuple]:
    """``(session, call)``: the media sessions of other calls on exactly the
    flows that the UDP media pinholes ``opened`` negotiate with their call's
    other voice channel: a packet from one party's media address to the
    other's pinhole (either way round). Such a session was an older call's;
    the newest negotiation takes the flow, so it ends and the next packet
    meets the new pinhole (gateway.datapath.pinholes: of pinholes sharing a
    destination, the newest answers); ``call`` is the call that takes it."""
    out: list[tuple] = []
    seen: set[int] = set()
    for hole in opened:
        p = hole.pinhole
        if p.kind != "media" or hole.key[0] != PROTO_UDP:
            continue
        for other in pinholes.of_call(p.call):
            q = other.pinhole
            if q.kind != "media" or q.group == p.group or other.key[0] != PROTO_UDP:
                continue
            for src, dst in ((other.party, hole.key[1:]), (hole.party, other.key[1:])):
                have = sessions.lookup((PROTO_UDP, src[0], src[1], dst[0], dst[1]))
                if have is None:
                    continue
                old = have[0]
                if old.kind == "media" and old.call != p.call and old.id not in seen:
                    seen.add(old.id)
                    out.append((old, p.call))
    return out


def claim_note(old, call: str) -> str:
    """The log line's reason for a session :func:`claimed` ended."""
    return (f"media flow taken over by call {call}: session {old.id} of call {old.call} ended "
            f"({old.describe()})")
