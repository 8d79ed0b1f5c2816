"""RAS messages of the lab's H.323 peer (H.225.0 7.1; UDP 1719): gatekeeper
discovery, registration, admission, disengage and unregistration, requests
and answers."""

from __future__ import annotations

from ops.lab.h323msg_codec import RAS, encode
from ops.lab.h323msg_values import H225_PROTOCOL, TERMINAL, VENDOR, alias, transport


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
