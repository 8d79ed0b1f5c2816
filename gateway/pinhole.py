"""The one pinhole type the datapath's pinhole table takes from every ALG.

The SIP and MGCP ALGs' states hold these (``gateway.sip.state.Pinhole`` is
this class; ``gateway.mgcp.state.media_pinhole`` builds MGCP's). H.323 keeps
its own record (its channel kind and the other logical channels sharing an
address) and hands the datapath :meth:`Pinhole.of` it. A snapshot names a
state record's class and its field values in order (``journal.state_codec``):
a SIP pinhole written before ``channel`` and ``alg`` existed loads with
their defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pinhole:
    """An opening for ``proto`` packets from any source to ``dst``, translated
    to ``to`` (destination) and ``src_to`` (source; None: unchanged), until
    ``expires_at`` (None: until its call closes it).

    ``kind``: "media" (RTP/RTCP), "signalling" (an H.323 Q.931 or H.245
    connection, inspected like TCP 1720: ``channel`` says which), or
    "registration" (not a pinhole: the datapath routes a TCP connection to
    this incoming DIP address by it at its SYN, under policy). ``alg``: the
    ALG whose signalling the connections it admits carry ("" for media)."""

    id: str
    call: str
    group: str
    kind: str
    proto: str
    direction: str
    dst: tuple[str, int]
    to: tuple[str, int] | None
    src_to: tuple[str, int] | None = None
    expires_at: float | None = None
    channel: str = ""
    alg: str = ""

    @classmethod
    def of(cls, p) -> "Pinhole":
        """The datapath's pinhole for an ALG state's record: one already
        (SIP, MGCP) or an H.323 one (``gateway.h323.state.Pinhole``)."""
        if isinstance(p, cls):
            return p
        return _of_h323(cls, p)


def _of_h323(cls: type[Pinhole], p) -> Pinhole:
    """RTP/RTCP pinholes are media (any source, translated to ``to``); Q.931
    (from an ACF) and H.245 (from an h245Address) pinholes are signalling
    over TCP: the connection they admit is framed and inspected like TCP
    1720. Lifetimes: none; they close with their call (ReleaseComplete,
    CloseLogicalChannel, timers)."""
    if p.kind == "registration":
        return cls(p.id, p.call, p.group, "registration", "tcp", "inbound", tuple(p.dst), tuple(p.to),
                   channel="q931", alg="h323")
    media = p.kind in ("rtp", "rtcp")
    # Media groups already name their call (``<call>/lc<channel>@<opener>``); the
    # signalling ones ("q931", "h245") are made unique here.
    group = p.group if media else f"{p.call}/{p.group}"
    return cls(p.id, p.call, group, "media" if media else "signalling", p.transport,
               "inbound" if p.to is not None else "any", tuple(p.dst),
               tuple(p.to) if p.to is not None else None, channel="" if media else p.kind, alg="h323")
