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
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from ipaddress import IPv4Address
from typing import Any

from pycrate_asn1dir import H225 as _H225
from pycrate_asn1dir import H245 as _H245
from pycrate_asn1rt import asnobj_construct as _construct
from pycrate_asn1rt.codecs import ASN1CodecPER
from pycrate_asn1rt.utils import T_UINT

RAS = _H225.H323_MESSAGES.RasMessage
UUIE = _H225.H323_MESSAGES.H323_UserInformation
H245 = _H245.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage
OLC = _H245.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel

CODEC_LOCK = threading.RLock()

# H.225.0 v4 (0.0.8.2250.0.4) and H.245 v7 (0.0.8.245.0.7) protocol identifiers.
H225_PROTOCOL = (0, 0, 8, 2250, 0, 4)
H245_PROTOCOL = (0, 0, 8, 245, 0, 7)
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
G711_FRAMES = 20            # ms of audio per packet (H.245 g711Alaw64k maxAl-sduAudioFrames)


# --- pycrate's SEQUENCE extension encoding, corrected ------------------------------------

_orig_to_per = _construct._CONSTRUCT._to_per


def _to_per_fixed(self):
    if self._ext is None or self.TYPE != _construct.TYPE_SEQ:
        return _orig_to_per(self)
    val = self._val
    present = [k for k in val if k in self._ext]
    if not present:
        return _orig_to_per(self)
    if any(isinstance(i, list) for i in self._ext_nest) or any(k[:5] == "_ext_" for k in val):
        raise NotImplementedError(f"{self.fullname()}: extension groups are not encoded here")
    self._val = {k: v for k, v in val.items() if k not in self._ext}
    try:
        gen = _orig_to_per(self)            # root, extension bit 0 (X.691 19.1)
    finally:
        self._val = val
    assert gen[0] == (T_UINT, 0, 1)
    gen[0] = (T_UINT, 1, 1)
    # X.691 19.8: a normally small length (n - 1 in 6 bits after a 0 bit; the
    # H.225.0 / H.245 sequences have fewer than 64 additions), then the bitmap.
    n = len(self._ext_nest)
    assert n <= 64
    bits = sum(1 << (n - 1 - i) for i, ident in enumerate(self._ext_nest) if ident in val)
    gen.append((T_UINT, n - 1, 7))
    gen.append((T_UINT, bits, n))
    ASN1CodecPER._off[-1] += 7 + n
    for ident in self._ext_nest:
        if ident in val:
            comp = self._cont[ident]
            par, comp._parent = comp._parent, self
            comp._val = val[ident]
            # X.691 19.9 / 10.2: each an open type, octet aligned.
            gen.extend(ASN1CodecPER.encode_unconst_open(comp))
            comp._parent = par
    return gen


@contextmanager
def _fixed_encoder():
    _construct._CONSTRUCT._to_per = _to_per_fixed
    try:
        yield
    finally:
        _construct._CONSTRUCT._to_per = _orig_to_per


class EncodeError(ValueError):
    """pycrate's encoding does not decode back to the value."""


def encode(obj, value: Any) -> bytes:
    """Aligned PER of ``value``; decoded again and compared."""
    with CODEC_LOCK:
        with _fixed_encoder():
            obj.set_val(value)
            data = obj.to_aper()
        obj.from_aper(data)
        back = obj.get_val()
    if back != value:
        raise EncodeError(f"{obj._name}: encoding does not decode to the value: {back!r} != {value!r}")
    return data


class DecodeError(ValueError):
    """Not a decodable message."""


def decode(obj, data: bytes) -> Any:
    """The value of ``data``; anything pycrate cannot decode is a DecodeError."""
    with CODEC_LOCK:
        try:
            obj.from_aper(data)
            return obj.get_val()
        except Exception as exc:        # pycrate raises many kinds
            raise DecodeError(f"{obj._name}: {type(exc).__name__}: {exc}") from None


# --- common values -----------------------------------------------------------------------

def transport(ip: str, port: int):
    """H.225.0 TransportAddress ipAddress."""
    return ("ipAddress", {"ip": IPv4Address(ip).packed, "port": port})


def from_transport(ta) -> tuple[str, int] | None:
    if not ta or ta[0] != "ipAddress":
        return None
    return str(IPv4Address(ta[1]["ip"])), int(ta[1]["port"])


def unicast(ip: str, port: int):
    """H.245 TransportAddress unicastAddress iPAddress."""
    return ("unicastAddress", ("iPAddress", {"network": IPv4Address(ip).packed, "tsapIdentifier": port}))


def from_unicast(ta) -> tuple[str, int] | None:
    if not ta or ta[0] != "unicastAddress" or ta[1][0] != "iPAddress":
        return None
    a = ta[1][1]
    return str(IPv4Address(a["network"])), int(a["tsapIdentifier"])


def alias(name: str):
    return ("h323-ID", name)


TERMINAL = {"terminal": {}, "mc": False, "undefinedNode": False}
VENDOR = {"vendor": {"t35CountryCode": 0, "t35Extension": 0, "manufacturerCode": 0}}


# --- RAS (H.225.0 7.1; UDP 1719) ---------------------------------------------------------

def grq(seq: int, ras: tuple[str, int], name: str) -> bytes:
    return encode(RAS, ("gatekeeperRequest", {
        "requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL, "rasAddress": transport(*ras),
        "endpointType": TERMINAL, "endpointAlias": [alias(name)]}))


def gcf(seq: int, ras: tuple[str, int], gk_id: str) -> bytes:
    return encode(RAS, ("gatekeeperConfirm", {
        "requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL, "gatekeeperIdentifier": gk_id,
        "rasAddress": transport(*ras)}))


def rrq(seq: int, signal: tuple[str, int], ras: tuple[str, int], name: str, ttl: int = 300) -> bytes:
    return encode(RAS, ("registrationRequest", {
        "requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL, "discoveryComplete": True,
        "callSignalAddress": [transport(*signal)], "rasAddress": [transport(*ras)],
        "terminalType": TERMINAL, "terminalAlias": [alias(name)], "endpointVendor": VENDOR,
        "timeToLive": ttl, "keepAlive": False, "willSupplyUUIEs": False, "maintainConnection": False}))


def rcf(seq: int, signal: list, name: str, endpoint_id: str, ttl: int = 300) -> bytes:
    return encode(RAS, ("registrationConfirm", {
        "requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL, "callSignalAddress": signal,
        "terminalAlias": [alias(name)], "endpointIdentifier": endpoint_id, "timeToLive": ttl,
        "willRespondToIRR": False, "maintainConnection": False}))


def rrj(seq: int, reason: str = "undefinedReason") -> bytes:
    return encode(RAS, ("registrationReject", {
        "requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL, "rejectReason": (reason, 0)}))


def arq(seq: int, endpoint_id: str, src: str, dest: str, call_ref: int, guid: bytes,
        answer: bool, dest_signal: tuple[str, int] | None = None) -> bytes:
    f = {"requestSeqNum": seq, "callType": ("pointToPoint", 0), "callModel": ("direct", 0),
         "endpointIdentifier": endpoint_id, "destinationInfo": [alias(dest)], "srcInfo": [alias(src)],
         "bandWidth": 640, "callReferenceValue": call_ref, "conferenceID": guid, "activeMC": False,
         "answerCall": answer, "canMapAlias": False, "callIdentifier": {"guid": guid},
         "willSupplyUUIEs": False, "canMapSrcAlias": False}
    if dest_signal is not None:
        f["destCallSignalAddress"] = transport(*dest_signal)
    return encode(RAS, ("admissionRequest", f))


def acf(seq: int, dest_signal: tuple[str, int]) -> bytes:
    return encode(RAS, ("admissionConfirm", {
        "requestSeqNum": seq, "bandWidth": 640, "callModel": ("direct", 0),
        "destCallSignalAddress": transport(*dest_signal), "willRespondToIRR": False,
        "uuiesRequested": {"setup": False, "callProceeding": False, "connect": False, "alerting": False,
                           "information": False, "releaseComplete": False, "facility": False,
                           "progress": False, "empty": False, "status": False,
                           "statusInquiry": False, "setupAcknowledge": False, "notify": False},
        "multipleCalls": False}))


def arj(seq: int, reason: str = "calledPartyNotRegistered") -> bytes:
    return encode(RAS, ("admissionReject", {"requestSeqNum": seq, "rejectReason": (reason, 0)}))


def drq(seq: int, endpoint_id: str, call_ref: int, guid: bytes, answered: bool) -> bytes:
    return encode(RAS, ("disengageRequest", {
        "requestSeqNum": seq, "endpointIdentifier": endpoint_id, "conferenceID": guid,
        "callReferenceValue": call_ref, "disengageReason": ("normalDrop", 0),
        "callIdentifier": {"guid": guid}, "answeredCall": answered}))


def dcf(seq: int) -> bytes:
    return encode(RAS, ("disengageConfirm", {"requestSeqNum": seq}))


def urq(seq: int, signal: tuple[str, int], endpoint_id: str) -> bytes:
    return encode(RAS, ("unregistrationRequest", {
        "requestSeqNum": seq, "callSignalAddress": [transport(*signal)], "endpointIdentifier": endpoint_id}))


def ucf(seq: int) -> bytes:
    return encode(RAS, ("unregistrationConfirm", {"requestSeqNum": seq}))


# --- H.245 (MultimediaSystemControlMessage) ----------------------------------------------

G711A = ("audioData", ("g711Alaw64k", G711_FRAMES))


def h245_tcs(seq: int) -> bytes:
    """TerminalCapabilitySet: G.711 A-law receive, one descriptor."""
    return encode(H245, ("request", ("terminalCapabilitySet", {
        "sequenceNumber": seq, "protocolIdentifier": H245_PROTOCOL,
        "capabilityTable": [{"capabilityTableEntryNumber": 1,
                             "capability": ("receiveAudioCapability", ("g711Alaw64k", G711_FRAMES))}],
        "capabilityDescriptors": [{"capabilityDescriptorNumber": 0, "simultaneousCapabilities": [[1]]}]})))


def h245_tcs_ack(seq: int) -> bytes:
    return encode(H245, ("response", ("terminalCapabilitySetAck", {"sequenceNumber": seq})))


def h245_msd(number: int) -> bytes:
    # H.245 Table C.1: terminal type 50 for a terminal.
    return encode(H245, ("request", ("masterSlaveDetermination",
                                     {"terminalType": 50, "statusDeterminationNumber": number})))


def h245_msd_ack(master: bool) -> bytes:
    """``master``: the decision for the receiver of the ack (H.245 C.2)."""
    return encode(H245, ("response", ("masterSlaveDeterminationAck",
                                       {"decision": ("master" if master else "slave", 0)})))


def olc_value(number: int, rtcp: tuple[str, int]) -> dict:
    """An OpenLogicalChannel for our transmit channel: RTCP where we listen."""
    return {"forwardLogicalChannelNumber": number,
            "forwardLogicalChannelParameters": {
                "dataType": G711A,
                "multiplexParameters": ("h2250LogicalChannelParameters", {
                    "sessionID": 1, "mediaControlChannel": unicast(*rtcp)})}}


def h245_olc(number: int, rtcp: tuple[str, int]) -> bytes:
    return encode(H245, ("request", ("openLogicalChannel", olc_value(number, rtcp))))


def h245_olc_ack(number: int, rtp: tuple[str, int], rtcp: tuple[str, int]) -> bytes:
    """OpenLogicalChannelAck: where we receive the opener's RTP (mediaChannel)
    and its RTCP (mediaControlChannel), H.245 / H.225.0 6.2.8."""
    return encode(H245, ("response", ("openLogicalChannelAck", {
        "forwardLogicalChannelNumber": number,
        "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", {
            "sessionID": 1, "mediaChannel": unicast(*rtp), "mediaControlChannel": unicast(*rtcp)})})))


def h245_clc(number: int) -> bytes:
    return encode(H245, ("request", ("closeLogicalChannel",
                                     {"forwardLogicalChannelNumber": number, "source": ("user", 0)})))


def h245_clc_ack(number: int) -> bytes:
    return encode(H245, ("response", ("closeLogicalChannelAck", {"forwardLogicalChannelNumber": number})))


def h245_end_session() -> bytes:
    return encode(H245, ("command", ("endSessionCommand", ("disconnect", 0))))


def decode_h245(pdu: bytes) -> tuple[str, str, Any]:
    """(kind, name, fields) of one H.245 PDU."""
    value = decode(H245, pdu)
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], tuple)):
        raise DecodeError("H.245 message without a message type")
    kind, (name, fields) = value
    return kind, name, fields


def olc_ack_media(fields) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    p = fields.get("forwardMultiplexAckParameters")
    if not p or p[0] != "h2250LogicalChannelAckParameters":
        return None, None
    return from_unicast(p[1].get("mediaChannel")), from_unicast(p[1].get("mediaControlChannel"))


# --- fastStart (H.323 8.1.7) -------------------------------------------------------------

def faststart_offer(rtp: tuple[str, int], rtcp: tuple[str, int]) -> list[bytes]:
    """The caller's proposals in Setup: channel 1, our transmit channel
    (RTCP where we listen); channel 2, the channel we receive on
    (reverseLogicalChannelParameters with our RTP and RTCP; the forward
    parameters are nullData, H.323 8.1.7.1)."""
    tx = olc_value(1, rtcp)
    rx = {"forwardLogicalChannelNumber": 2,
          "forwardLogicalChannelParameters": {"dataType": ("nullData", 0), "multiplexParameters": ("none", 0)},
          "reverseLogicalChannelParameters": {
              "dataType": G711A,
              "multiplexParameters": ("h2250LogicalChannelParameters", {
                  "sessionID": 1, "mediaChannel": unicast(*rtp), "mediaControlChannel": unicast(*rtcp)})}}
    return [encode(OLC, tx), encode(OLC, rx)]


def faststart_answer(offer: list[bytes], rtp: tuple[str, int], rtcp: tuple[str, int]
                     ) -> tuple[list[bytes], tuple[str, int] | None]:
    """The callee's accepted channels for Connect and the caller's RTP
    address (from the caller's receive proposal): the caller's transmit
    channel comes back with our RTP (mediaChannel) and RTCP; its receive
    channel with our RTCP (H.323 8.1.7.2)."""
    out = []
    caller_rtp = None
    for item in offer:
        v = decode(OLC, item)
        rev = v.get("reverseLogicalChannelParameters")
        if rev is not None:
            mp = rev["multiplexParameters"][1]
            caller_rtp = from_unicast(mp.get("mediaChannel"))
            ans = {"forwardLogicalChannelNumber": v["forwardLogicalChannelNumber"],
                   "forwardLogicalChannelParameters": v["forwardLogicalChannelParameters"],
                   "reverseLogicalChannelParameters": {
                       "dataType": rev["dataType"],
                       "multiplexParameters": ("h2250LogicalChannelParameters", {
                           "sessionID": 1, "mediaChannel": mp["mediaChannel"],
                           "mediaControlChannel": unicast(*rtcp)})}}
        else:
            fwd = v["forwardLogicalChannelParameters"]
            ans = {"forwardLogicalChannelNumber": v["forwardLogicalChannelNumber"],
                   "forwardLogicalChannelParameters": {
                       "dataType": fwd["dataType"],
                       "multiplexParameters": ("h2250LogicalChannelParameters", {
                           "sessionID": 1, "mediaChannel": unicast(*rtp),
                           "mediaControlChannel": unicast(*rtcp)})}}
        out.append(encode(OLC, ans))
    return out, caller_rtp


def faststart_media(answer: list[bytes]) -> tuple[str, int] | None:
    """Where the callee receives RTP, from its accepted fastStart channels."""
    for item in answer:
        v = decode(OLC, item)
        if "reverseLogicalChannelParameters" in v:
            continue
        mp = v["forwardLogicalChannelParameters"]["multiplexParameters"]
        if mp[0] == "h2250LogicalChannelParameters" and mp[1].get("mediaChannel"):
            return from_unicast(mp[1]["mediaChannel"])
    return None


# --- Q.931 with the H.225.0 UUIE ---------------------------------------------------------

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
