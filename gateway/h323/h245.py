"""H.245 on its own TCP connection (TPKT framed, H.245 Annex / H.225.0 7.4)
and the logical channels it opens.

The media addresses come from OpenLogicalChannel (the reverse channel's, or
the RTCP address the opener listens on) and OpenLogicalChannelAck
(``mediaChannel``: where the acknowledging side receives RTP;
``mediaControlChannel``: its RTCP), H.245 8.4.1 / H.225.0 Annex ... and the
same values inside fastStart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import RemoteProtocolError
from gateway.h323 import per
from gateway.h323.per import Address
from gateway.h323.tpkt import HEADER, TPKT_VERSION


@dataclass(frozen=True, slots=True)
class H245Message:
    """``kind``: ``request`` / ``response`` / ``command`` / ``indication``;
    ``name``: the message within it (``openLogicalChannel``...)."""

    kind: str
    name: str
    fields: Any
    addresses: tuple[Address, ...]

    def address(self, field: str) -> Address | None:
        return next((a for a in self.addresses if a.field == field), None)


def parse_h245_pdu(pdu: bytes, base: int = 0) -> H245Message:
    """One MultimediaSystemControlMessage (``base``: its offset in the
    buffer the spans refer to)."""
    if not pdu:
        raise RemoteProtocolError("empty H.245 message")
    value = per.decode(per.H245_MESSAGE, pdu, "MultimediaSystemControlMessage")
    # A CHOICE of a CHOICE: (request|response|command|indication, (name, fields)).
    # pycrate can hand back an empty value for some truncated encodings.
    if not (isinstance(value, tuple) and len(value) == 2
            and isinstance(value[1], tuple) and len(value[1]) == 2):
        raise RemoteProtocolError("H.245 message without a message type")
    addresses, _ = per.locate(per.H245_MESSAGE, pdu, base, value, "MultimediaSystemControlMessage")
    kind, (name, fields) = value
    return H245Message(kind, name, fields, addresses)


def parse_h245(message: bytes) -> H245Message:
    """Parse one TPKT-framed H.245 message."""
    if len(message) < HEADER or message[0] != TPKT_VERSION:
        raise RemoteProtocolError("H.245 outside TPKT")
    if ((message[2] << 8) | message[3]) != len(message):
        raise RemoteProtocolError("TPKT length does not match the message")
    return parse_h245_pdu(message[HEADER:], HEADER)


def logical_channel(name: str, fields: Any) -> tuple[int | None, int | None]:
    """(forwardLogicalChannelNumber, sessionID) of an OLC or OLCAck."""
    if not isinstance(fields, dict):
        return None, None
    number = fields.get("forwardLogicalChannelNumber")
    session = None
    if name == "openLogicalChannel":
        mp = fields.get("forwardLogicalChannelParameters", {}).get("multiplexParameters")
        if mp and mp[0] == "h2250LogicalChannelParameters":
            session = mp[1].get("sessionID")
    elif name == "openLogicalChannelAck":
        ack = fields.get("forwardMultiplexAckParameters")
        if ack and ack[0] == "h2250LogicalChannelAckParameters":
            session = ack[1].get("sessionID")
    return number, session
