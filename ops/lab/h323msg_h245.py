"""H.245 messages of the lab's H.323 peer (MultimediaSystemControlMessage:
capabilities, master/slave determination, logical channels, end of session)
and the fastStart channels carried in Setup and Connect (H.323 8.1.7)."""

from __future__ import annotations

from typing import Any

from ops.lab.h323msg_codec import H245, OLC, DecodeError, decode, encode
from ops.lab.h323msg_values import H245_PROTOCOL, from_unicast, unicast

G711_FRAMES = 20            # ms of audio per packet (H.245 g711Alaw64k maxAl-sduAudioFrames)
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
