"""H.323 messages for the lab's test peer: RAS (H.225.0 7.1), Q.931 with the
H.225.0 user-user information element (H.225.0 7.2-7.3), H.245 (TPKT
framed, tunnelled in h245Control, or as fastStart elements), encoded in
aligned PER with pycrate's compiled H.225.0 / H.245 modules.

The gateway never encodes (``gateway/h323/per.py``); this module is test
tooling, so it may, but pycrate 0.7's aligned PER encoder misplaces the
padding of a SEQUENCE's extension additions (X.691 19.7-19.9): it encodes
the additions' open types before it counts the bitmap in front of them, so
the first open type's alignment is computed at the wrong offset and one
spurious 0x00 octet may follow the bitmap; neither pycrate nor tshark
decodes what it wrote ("open type length 0"). :func:`_to_per_fixed` encodes
the root alone (pycrate's own code, extension bit then set), then the
bitmap at the true offset, then each addition as an open type (X.691 10.2).
Every encoding is decoded again and compared with the value (``encode``).

pycrate keeps the last value in module-level objects: every use goes through
:data:`CODEC_LOCK` (the peer runs gatekeeper and endpoints on threads).

The codec is in ``h323msg_codec``, values common to the messages in
``h323msg_values``, RAS in ``h323msg_ras``, H.245 and fastStart in
``h323msg_h245``; this module is Q.931 with the H.225.0 UUIE, and the peer
reaches every message through it.
"""

from __future__ import annotations

from typing import Any

from ops.lab.h323msg_codec import (  # noqa: F401
    CODEC_LOCK, H245, OLC, RAS, UUIE, DecodeError, EncodeError, decode, encode,
)
from ops.lab.h323msg_h245 import (  # noqa: F401
    G711_FRAMES, G711A, decode_h245, faststart_answer, faststart_media, faststart_offer, h245_clc,
    h245_clc_ack, h245_end_session, h245_msd, h245_msd_ack, h245_olc, h245_olc_ack, h245_tcs,
    h245_tcs_ack, olc_ack_media, olc_value,
)
from ops.lab.h323msg_ras import (  # noqa: F401
    acf, arj, arq, dcf, drq, gcf, grq, rcf, rrj, rrq, ucf, urq,
)
from ops.lab.h323msg_values import (  # noqa: F401
    H225_PROTOCOL, H245_PROTOCOL, TERMINAL, VENDOR, alias, from_transport, from_unicast, transport,
    unicast,
)

TPKT_VERSION = 3
Q931_DISCRIMINATOR = 0x08
# Q.931 Table 4-2.
SETUP, CALL_PROCEEDING, ALERTING, CONNECT, RELEASE_COMPLETE, FACILITY = 0x05, 0x02, 0x01, 0x07, 0x5A, 0x62
MESSAGE_NAMES = {SETUP: "setup", CALL_PROCEEDING: "callProceeding", ALERTING: "alerting",
                 CONNECT: "connect", RELEASE_COMPLETE: "releaseComplete", FACILITY: "facility"}
# Q.931 4.5.5 bearer capability: ITU-T coding, speech; circuit mode 64 kbit/s;
# layer 1 G.711 A-law (H.225.0 7.2.2.1: mandatory in Setup).
BEARER_SPEECH = bytes([0x04, 0x03, 0x80, 0x90, 0xA3])
USER_USER_IE = 0x7E


def tpkt(body: bytes) -> bytes:
    """RFC 1006 6: version 3, reserved 0, length including the header."""
    return bytes([TPKT_VERSION, 0]) + (len(body) + 4).to_bytes(2, "big") + body


def uuie(body: tuple[str, Any], *, tunnelling: bool = False, h245: list[bytes] | None = None) -> bytes:
    pdu: dict = {"h323-message-body": body, "h245Tunnelling": tunnelling}
    if h245:
        pdu["h245Control"] = list(h245)
    return encode(UUIE, {"h323-uu-pdu": pdu})


def q931(message_type: int, call_ref: int, from_destination: bool, user_info: bytes,
         extra_ies: bytes = b"") -> bytes:
    """A TPKT-framed Q.931 message: discriminator, two-octet call reference
    (Q.931 4.3, flag set by the side that did not originate it), type, the
    other IEs, then user-user (H.225.0 7.2.2.1: two-octet length,
    discriminator 5)."""
    cr = (call_ref & 0x7FFF) | (0x8000 if from_destination else 0)
    uu = bytes([0x05]) + user_info
    body = (bytes([Q931_DISCRIMINATOR, 0x02]) + cr.to_bytes(2, "big") + bytes([message_type])
            + extra_ies + bytes([USER_USER_IE]) + len(uu).to_bytes(2, "big") + uu)
    return tpkt(body)


def setup_body(src: str, dest: str, guid: bytes, src_signal: tuple[str, int],
               dest_signal: tuple[str, int], faststart: list[bytes] | None) -> tuple[str, dict]:
    f = {"protocolIdentifier": H225_PROTOCOL, "sourceAddress": [alias(src)], "sourceInfo": TERMINAL,
         "destinationAddress": [alias(dest)], "destCallSignalAddress": transport(*dest_signal),
         "activeMC": False, "conferenceID": guid, "conferenceGoal": ("create", 0),
         "callType": ("pointToPoint", 0), "sourceCallSignalAddress": transport(*src_signal),
         "callIdentifier": {"guid": guid}, "mediaWaitForConnect": False, "canOverlapSend": False,
         "multipleCalls": False, "maintainConnection": False}
    if faststart:
        f["fastStart"] = list(faststart)
    return ("setup", f)


def proceeding_body(guid: bytes) -> tuple[str, dict]:
    return ("callProceeding", {"protocolIdentifier": H225_PROTOCOL, "destinationInfo": TERMINAL,
                               "callIdentifier": {"guid": guid}, "multipleCalls": False,
                               "maintainConnection": False})


def alerting_body(guid: bytes) -> tuple[str, dict]:
    return ("alerting", {"protocolIdentifier": H225_PROTOCOL, "destinationInfo": TERMINAL,
                         "callIdentifier": {"guid": guid}, "multipleCalls": False,
                         "maintainConnection": False})


def connect_body(guid: bytes, h245: tuple[str, int] | None, faststart: list[bytes] | None
                 ) -> tuple[str, dict]:
    f = {"protocolIdentifier": H225_PROTOCOL, "destinationInfo": TERMINAL, "conferenceID": guid,
         "callIdentifier": {"guid": guid}, "multipleCalls": False, "maintainConnection": False}
    if h245 is not None:
        f["h245Address"] = transport(*h245)
    if faststart:
        f["fastStart"] = list(faststart)
    return ("connect", f)


def release_body(guid: bytes) -> tuple[str, dict]:
    return ("releaseComplete", {"protocolIdentifier": H225_PROTOCOL, "reason": ("undefinedReason", 0),
                                "callIdentifier": {"guid": guid}})


EMPTY_BODY = ("empty", 0)


def parse_q931(message: bytes) -> tuple[int, bool, int, dict | None]:
    """(call reference, from destination, message type, decoded UUIE) of one
    TPKT-framed Q.931 message; DecodeError for anything else."""
    if len(message) < 9 or message[0] != TPKT_VERSION or message[4] != Q931_DISCRIMINATOR:
        raise DecodeError("not TPKT Q.931")
    crl = message[5] & 0x0F
    if crl > 2 or 6 + crl >= len(message):
        raise DecodeError("bad Q.931 call reference length")
    cr = int.from_bytes(message[6:6 + crl], "big")
    from_dest = bool(cr & (0x80 << (8 * (crl - 1)))) if crl else False
    cr &= ~(0x80 << (8 * (crl - 1))) if crl else 0
    pos = 6 + crl
    mtype = message[pos]
    pos += 1
    info = None
    while pos < len(message):
        ie = message[pos]
        if ie & 0x80:
            pos += 1
        elif ie == USER_USER_IE:
            ln = int.from_bytes(message[pos + 1:pos + 3], "big")
            if pos + 3 + ln > len(message) or ln < 2:
                raise DecodeError("truncated user-user IE")
            info = decode(UUIE, message[pos + 4:pos + 3 + ln])
            pos += 3 + ln
        else:
            if pos + 2 > len(message) or pos + 2 + message[pos + 1] > len(message):
                raise DecodeError(f"truncated IE {ie:#x}")
            pos += 2 + message[pos + 1]
    return cr, from_dest, mtype, info
