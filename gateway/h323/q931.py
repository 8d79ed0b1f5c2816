"""Q.931 call signalling with its H.225.0 user-user information element.

H.225.0 7.2 / Q.931 4: protocol discriminator 0x08, a call reference (length
octet, then the value with the flag in its top bit: 0 from the side that
originated the call reference, 1 from the other), the message type, then
information elements. An IE with its top bit set is one octet (Q.931 4.5.1);
the others are ``id, length, contents``; the user-user IE (0x7e) has a
two-octet length (H.225.0 7.2.2.1), then a protocol discriminator (5: X.208 /
X.209 coded user information) and the ``H323-UserInformation`` in aligned PER.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import RemoteProtocolError
from gateway.h323 import per
from gateway.h323.per import Address, Nested
from gateway.h323.tpkt import HEADER, TPKT_VERSION

PROTOCOL_DISCRIMINATOR = 0x08
USER_USER_IE = 0x7E

# Q.931 Table 4-2 (the types H.225.0 7.3 uses).
MESSAGE_TYPES = {
    0x01: "alerting", 0x02: "callProceeding", 0x03: "progress", 0x05: "setup",
    0x07: "connect", 0x0D: "setupAcknowledge", 0x5A: "releaseComplete",
    0x62: "facility", 0x6E: "notify", 0x75: "statusEnquiry", 0x7B: "information",
    0x7D: "status",
}


@dataclass(frozen=True, slots=True)
class Q931Message:
    """One call signalling message. ``call_reference``: the value without
    its flag; ``from_destination``: the flag (Q.931 4.3). ``body``: the
    ``h323-message-body`` choice name (``setup``, ``connect``, ``empty``...)
    or None without a UUIE; ``uuie``: the decoded H323-UserInformation."""

    call_reference: int
    from_destination: bool
    message_type: int
    name: str
    body: str | None
    uuie: Any
    addresses: tuple[Address, ...]
    nested: tuple[Nested, ...]

    @property
    def uu_pdu(self) -> dict:
        return self.uuie["h323-uu-pdu"] if self.uuie else {}

    @property
    def fields(self) -> dict:
        """The message body's own components (empty for ``empty``)."""
        b = self.uu_pdu.get("h323-message-body")
        return b[1] if b and isinstance(b[1], dict) else {}

    def call_identifier(self) -> bytes | None:
        ci = self.fields.get("callIdentifier")
        return ci["guid"] if ci else None

    def address(self, field: str) -> Address | None:
        return next((a for a in self.addresses if a.field == field), None)


def parse_call_signal(message: bytes) -> Q931Message:
    """Parse one TPKT-framed Q.931 message (what :func:`frame_tpkt` gives).
    Address spans are offsets into ``message``."""
    if len(message) < HEADER or message[0] != TPKT_VERSION:
        raise RemoteProtocolError("call signalling outside TPKT")
    if ((message[2] << 8) | message[3]) != len(message):
        raise RemoteProtocolError("TPKT length does not match the message")
    pos = HEADER
    end = len(message)
    if end - pos < 3:
        raise RemoteProtocolError("Q.931 message too short", offset=pos)
    if message[pos] != PROTOCOL_DISCRIMINATOR:
        raise RemoteProtocolError(f"Q.931 protocol discriminator {message[pos]:#x}, not 0x08", offset=pos)
    crl = message[pos + 1] & 0x0F
    if message[pos + 1] & 0xF0 or crl > 2 or pos + 2 + crl >= end:
        raise RemoteProtocolError("bad Q.931 call reference length", offset=pos + 1)
    cr = message[pos + 2:pos + 2 + crl]
    from_dest = bool(cr[0] & 0x80) if crl else False
    call_ref = (int.from_bytes(cr, "big") & ~(0x80 << (8 * (crl - 1)))) if crl else 0
    pos += 2 + crl
    mtype = message[pos]
    pos += 1
    name = MESSAGE_TYPES.get(mtype, f"type-{mtype:#04x}")
    uu_start = uu_end = None
    while pos < end:
        ie = message[pos]
        if ie & 0x80:
            pos += 1
            continue
        if ie == USER_USER_IE:
            if end - pos < 3:
                raise RemoteProtocolError("truncated user-user IE", offset=pos)
            ln = (message[pos + 1] << 8) | message[pos + 2]
            start = pos + 3
        else:
            if end - pos < 2:
                raise RemoteProtocolError(f"truncated IE {ie:#x}", offset=pos)
            ln = message[pos + 1]
            start = pos + 2
        if start + ln > end:
            raise RemoteProtocolError(f"IE {ie:#x} longer than the message", offset=pos)
        if ie == USER_USER_IE:
            if uu_start is not None:
                raise RemoteProtocolError("two user-user IEs", offset=pos)
            uu_start, uu_end = start, start + ln
        pos = start + ln
    if uu_start is None:
        return Q931Message(call_ref, from_dest, mtype, name, None, None, (), ())
    if uu_end - uu_start < 2 or message[uu_start] != 0x05:
        raise RemoteProtocolError("user-user IE is not X.208/X.209 coded (H.225.0 7.2.2.1)", offset=uu_start)
    pdu = message[uu_start + 1:uu_end]
    value = per.decode(per.USER_INFORMATION, pdu, "H323-UserInformation")
    addresses, nested = per.locate(per.USER_INFORMATION, pdu, uu_start + 1, value, "H323-UserInformation")
    body = value["h323-uu-pdu"]["h323-message-body"][0]
    return Q931Message(call_ref, from_dest, mtype, name, body, value, addresses, nested)
