"""RAS, the registration, admission and status channel (H.225.0 7.1,
UDP 1719): one ``RasMessage`` in aligned PER per datagram."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import RemoteProtocolError
from gateway.h323 import per
from gateway.h323.per import Address


@dataclass(frozen=True, slots=True)
class RasMessage:
    """``kind``: the RasMessage choice (``registrationRequest``...);
    ``seq``: its requestSeqNum (None for the few kinds without one)."""

    kind: str
    seq: int | None
    fields: Any
    addresses: tuple[Address, ...]

    def address(self, field: str) -> Address | None:
        return next((a for a in self.addresses if a.field == field), None)

    def all(self, field: str) -> tuple[Address, ...]:
        return tuple(a for a in self.addresses if a.field == field)


def parse_ras(datagram: bytes) -> RasMessage:
    if not datagram:
        raise RemoteProtocolError("empty RAS datagram")
    value = per.decode(per.RAS_MESSAGE, datagram, "RasMessage")
    addresses, _ = per.locate(per.RAS_MESSAGE, datagram, 0, value, "RasMessage")
    kind, fields = value
    seq = fields.get("requestSeqNum") if isinstance(fields, dict) else None
    return RasMessage(kind, seq, fields, addresses)
