"""What the datapath knows of an H.323 packet: :class:`H323Context` (manual
chapter 1), and a transport address as text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class H323Context:
    """What the datapath knows of the packet.

    ``channel``: "ras", "q931" or "h245". ``direction``: "outbound" (private
    to public), "inbound" or "none". ``src``/``dst``: as the packet arrived;
    ``nat_src``: the public source NAT gives it (outbound: interface IP, MIP
    or DIP); ``nat_dst``: the private destination (inbound to a MIP), None
    for an inbound packet to an incoming DIP address (the registration
    table decides, ``Result.route_to``). ``conn``: an identifier of the TCP
    connection the same for both directions (Q.931 call references are per
    connection)."""

    channel: str
    direction: str
    src: tuple[str, int]
    dst: tuple[str, int]
    nat_src: tuple[str, int] | None = None
    nat_dst: tuple[str, int] | None = None
    conn: str = ""
    # True when ``nat_src`` is a MIP's address (gateway.alg_nat.dedicated_of):
    # a one-to-one translation, every port of it the host's, so an embedded
    # media port another call of the host holds is kept, not moved (a phone
    # that announces one RTP port for every call; the newest pinhole to it
    # answers, gateway.datapath.pinholes).
    dedicated: bool = False

    def connection(self) -> str:
        if self.conn:
            return self.conn
        a, b = sorted([f"{self.src[0]}:{self.src[1]}", f"{self.dst[0]}:{self.dst[1]}"])
        return f"{a}-{b}"


def _ep(a: tuple) -> str:
    return f"{a[0]}:{a[1]}"
