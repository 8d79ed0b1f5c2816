"""NAT of the addresses an MGCP message carries (manual ch. 3, "Performs
Network Address Translation. Any embedded IP address and port information in
the payload is properly translated based on the existing routing information
and network topology").

The datapath's decision for the signalling packet gives one translation: an
outbound packet's private source becomes ``nat_src``; an inbound packet's
public destination becomes ``nat_dst``. The same translation applies to the
sender's own address inside the message (endpoint names in ``[IP]`` form,
the NotifiedEntity host and port, SDP o= and c=). Media ports are the ALG's
(:mod:`gateway.mgcp.alg_media`, even/odd pairs from :mod:`gateway.ports`)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.span import Edit


@dataclass(frozen=True, slots=True)
class Translation:
    """``private`` <-> ``public`` for one message travelling ``direction``."""

    direction: str
    private: tuple[str, int]
    public: tuple[str, int]

    def address(self, ip: str) -> str | None:
        """The other side's view of address ``ip``, or None (unchanged)."""
        if self.direction == "outbound" and ip == self.private[0]:
            return self.public[0]
        if self.direction == "inbound" and ip == self.public[0]:
            return self.private[0]
        return None

    def port(self, ip: str, port: int) -> int | None:
        """The other side's view of the transport address's port."""
        if self.direction == "outbound" and (ip, port) == self.private:
            return self.public[1]
        if self.direction == "inbound" and (ip, port) == self.public:
            return self.private[1]
        return None


def translation(ctx) -> Translation | None:
    if ctx.direction == "outbound" and ctx.nat_src is not None:
        return Translation("outbound", (str(ctx.src[0]), int(ctx.src[1])),
                           (str(ctx.nat_src[0]), int(ctx.nat_src[1])))
    if ctx.direction == "inbound" and ctx.nat_dst is not None:
        return Translation("inbound", (str(ctx.nat_dst[0]), int(ctx.nat_dst[1])),
                           (str(ctx.dst[0]), int(ctx.dst[1])))
    return None


def header_edits(msg, tr: Translation) -> list[Edit]:
    """Endpoint ``[IP]`` domains (command line, Z:, Z2:) and the NotifiedEntity."""
    edits: list[Edit] = []
    for a in msg.address_spans:
        if a.kind == "endpoint-ip":
            new = tr.address(a.span.text)
            if new is not None:
                edits.append(Edit.replace(a.span, new))
    ne = msg.notified_entity
    if ne is not None and ne.host_is_ip:
        new = tr.address(ne.host)
        if new is not None:
            edits.append(Edit.replace(ne.host_span, new))
            if ne.port is not None and ne.port_span is not None:
                p = tr.port(ne.host, ne.port)
                if p is not None and p != ne.port:
                    edits.append(Edit.replace(ne.port_span, str(p)))
    return edits


def dedupe(edits: list[Edit]) -> list[Edit]:
    """One edit per byte range (a session c= shared by several m= lines)."""
    seen: dict[tuple[int, int], Edit] = {}
    for e in edits:
        seen.setdefault((e.start, e.end), e)
    return list(seen.values())
