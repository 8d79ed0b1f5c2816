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

Only when the new flow's source is not port-translated (a pinhole with the
party's own public pair, or no source NAT): a translated source would get
another public port instead, and the reply tuple then belongs to a different
endpoint, whose session must stay."""

from __future__ import annotations

from gateway.datapath.sessions import reverse


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
