"""The H.323 ALG's H.245 messages (manual chapter 1), on their own
connection or tunnelled in Q.931: logical channels open and close media
pinholes."""

from __future__ import annotations

from gateway.alg_result import Dropped
from gateway.h323 import events as ev
from gateway.h323.alg_context import _ep
from gateway.h323.alg_run import _Run
from gateway.h323.h245 import logical_channel
from gateway.h323.transitions import lookup

MEDIA_FIELDS = {"mediaChannel": "rtp", "mediaControlChannel": "rtcp"}


def _h245(run: _Run, msg) -> None:
    ctx = run.ctx
    key = (run.st.h245_index.get((str(ctx.dst[0]), int(ctx.dst[1])))
           or run.st.h245_index.get((str(ctx.src[0]), int(ctx.src[1]))))
    if key is None or key not in run.st.calls:
        raise Dropped("H.245 of no known call")
    run.translate(msg.addresses, key)
    _logical_channel(run, key, msg.name, msg.fields, msg.addresses)


def _tunnelled_h245(run: _Run, key: str, msg) -> None:
    """H.245 messages tunnelled in the Q.931 message's h245Control (H.225.0
    7.3.1 / 8.2.1): each is handled as on an H.245 connection. Their
    addresses were translated with the rest of the message."""
    for n in msg.nested:
        if "h245Control" not in n.path or not (isinstance(n.value, tuple) and len(n.value) == 2
                                                and isinstance(n.value[1], tuple) and len(n.value[1]) == 2):
            continue
        name, fields = n.value[1]
        depth = len(n.path)
        inner = tuple(a for a in msg.addresses if a.path[:depth] == n.path)
        _logical_channel(run, key, name, fields, inner)


def _channel_owner(run: _Run, name: str) -> str:
    """The endpoint that opened the logical channel a message names (H.245
    8.4: forwardLogicalChannelNumber is the transmitting side's number, so
    both sides may use the same one): the sender of OpenLogicalChannel and
    CloseLogicalChannel, the receiver of OpenLogicalChannelAck. The
    receiver is named by its real address (before the packet's NAT), as the
    sender of the OLC was."""
    ctx = run.ctx
    if name == "openLogicalChannelAck":
        return _ep(ctx.nat_dst if ctx.nat_dst is not None else ctx.dst)
    return _ep(ctx.src)


def _logical_channel(run: _Run, key: str, name: str, fields, addresses) -> None:
    rule = lookup("h245", name)
    if rule is None:
        return
    number, _ = logical_channel(name, fields)
    if number is None:
        return
    # Media is keyed by the logical channel, not the RTP session: a
    # session's two directions are two channels, each closed on its own.
    group = f"{key}/lc{number}@{_channel_owner(run, name)}"
    if "media" in rule.actions:
        for a in addresses:
            if a.field in MEDIA_FIELDS:
                run.open(key, MEDIA_FIELDS[a.field], "udp", a, group)
    elif "close" in rule.actions:
        call = run.st.calls[key]
        for pid, p in list(call.pinholes.items()):
            if p.kind not in ("rtp", "rtcp") or group not in p.groups:
                continue
            if len(p.groups) > 1:
                run.emit(ev.PinholeShared(key, pid, group, False))
            else:
                run.emit(ev.PinholeClosed(key, pid, "CloseLogicalChannel"))
