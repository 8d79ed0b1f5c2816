"""The lab's H.323 test peer without namespaces: its messages decode with
pycrate and with the gateway's own parsers (the addresses where they were
put), tshark calls none of them malformed, and a gatekeeper and two
endpoints complete calls over loopback in each H.245 mode."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
from hypothesis import given, settings, strategies as st

from gateway.h323.h245 import parse_h245
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from ops.lab import h323msg as m
from ops.lab.h323peer import MODES, Endpoint, Gatekeeper, PeerError, RasClient, make_socket

GUID = bytes(range(16))
A, B, GK = "10.1.1.5", "2.2.2.5", "10.1.1.25"


def _ras_messages():
    return {
        "gatekeeperRequest": (m.grq(1, (A, 1719), "p1"), [("rasAddress", f"{A}:1719")]),
        "gatekeeperConfirm": (m.gcf(1, (GK, 1719), "GK"), [("rasAddress", f"{GK}:1719")]),
        "registrationRequest": (m.rrq(2, (A, 1720), (A, 1719), "p1"),
                                [("callSignalAddress", f"{A}:1720"), ("rasAddress", f"{A}:1719")]),
        "registrationConfirm": (m.rcf(2, [m.transport(A, 1720)], "p1", "EP1"),
                                [("callSignalAddress", f"{A}:1720")]),
        "registrationReject": (m.rrj(2), []),
        "admissionRequest": (m.arq(3, "EP1", "p1", "p2", 7, GUID, True, (A, 1720)),
                             [("destCallSignalAddress", f"{A}:1720")]),
        "admissionConfirm": (m.acf(3, (B, 1720)), [("destCallSignalAddress", f"{B}:1720")]),
        "admissionReject": (m.arj(3), []),
        "disengageRequest": (m.drq(4, "EP1", 7, GUID, False), []),
        "disengageConfirm": (m.dcf(4), []),
        "unregistrationRequest": (m.urq(5, (A, 1720), "EP1"), [("callSignalAddress", f"{A}:1720")]),
        "unregistrationConfirm": (m.ucf(5), []),
    }


def _h245_messages():
    return {
        "terminalCapabilitySet": (m.h245_tcs(1), []),
        "terminalCapabilitySetAck": (m.h245_tcs_ack(1), []),
        "masterSlaveDetermination": (m.h245_msd(12345), []),
        "masterSlaveDeterminationAck": (m.h245_msd_ack(True), []),
        "openLogicalChannel": (m.h245_olc(1, (A, 5001)), [("mediaControlChannel", f"{A}:5001")]),
        "openLogicalChannelAck": (m.h245_olc_ack(1, (A, 5000), (A, 5001)),
                                  [("mediaChannel", f"{A}:5000"), ("mediaControlChannel", f"{A}:5001")]),
        "closeLogicalChannel": (m.h245_clc(1), []),
        "closeLogicalChannelAck": (m.h245_clc_ack(1), []),
        "endSessionCommand": (m.h245_end_session(), []),
    }


def _q931_messages():
    offer = m.faststart_offer((A, 5000), (A, 5001))
    answer, _ = m.faststart_answer(offer, (B, 6000), (B, 6001))
    return {
        "setup-faststart": (m.q931(m.SETUP, 7, False, m.uuie(m.setup_body(
            "p1", "p2", GUID, (A, 33000), (B, 1720), offer)), m.BEARER_SPEECH),
            [("destCallSignalAddress", f"{B}:1720"), ("sourceCallSignalAddress", f"{A}:33000"),
             ("mediaControlChannel", f"{A}:5001"), ("mediaChannel", f"{A}:5000"),
             ("mediaControlChannel", f"{A}:5001")]),
        "setup-tunnel": (m.q931(m.SETUP, 7, False, m.uuie(m.setup_body(
            "p1", "p2", GUID, (A, 33000), (B, 1720), None), tunnelling=True), m.BEARER_SPEECH),
            [("destCallSignalAddress", f"{B}:1720"), ("sourceCallSignalAddress", f"{A}:33000")]),
        "callProceeding": (m.q931(m.CALL_PROCEEDING, 7, True, m.uuie(m.proceeding_body(GUID))), []),
        "alerting": (m.q931(m.ALERTING, 7, True, m.uuie(m.alerting_body(GUID))), []),
        "connect-h245": (m.q931(m.CONNECT, 7, True, m.uuie(m.connect_body(GUID, (B, 1300), None))),
                         [("h245Address", f"{B}:1300")]),
        "connect-faststart": (m.q931(m.CONNECT, 7, True, m.uuie(m.connect_body(GUID, None, answer))),
                              [("mediaChannel", f"{B}:6000"), ("mediaControlChannel", f"{B}:6001"),
                               ("mediaChannel", f"{A}:5000"), ("mediaControlChannel", f"{B}:6001")]),
        "facility-tunnel": (m.q931(m.FACILITY, 7, False, m.uuie(m.EMPTY_BODY, tunnelling=True,
                                                                h245=[m.h245_olc(1, (A, 5001))])),
                            [("mediaControlChannel", f"{A}:5001")]),
        "releaseComplete": (m.q931(m.RELEASE_COMPLETE, 7, False, m.uuie(m.release_body(GUID))), []),
    }


def _addresses(msg) -> list:
    return [(a.field, a.span.text) for a in msg.addresses]


def test_ras_messages_decode_with_the_gateway_parser() -> None:
    for kind, (data, addresses) in _ras_messages().items():
        with m.CODEC_LOCK:
            msg = parse_ras(data)
        assert msg.kind == kind
        assert _addresses(msg) == addresses, kind


def test_h245_messages_decode_with_the_gateway_parser() -> None:
    for name, (pdu, addresses) in _h245_messages().items():
        with m.CODEC_LOCK:
            msg = parse_h245(m.tpkt(pdu))
        assert msg.name == name
        assert _addresses(msg) == addresses, name


def test_q931_messages_decode_with_the_gateway_parser() -> None:
    for label, (data, addresses) in _q931_messages().items():
        with m.CODEC_LOCK:
            msg = parse_call_signal(data)
        assert msg.name == label.split("-")[0], label
        assert msg.call_identifier() == GUID or msg.body == "empty"
        assert _addresses(msg) == addresses, label
        cr, from_dest, mtype, info = m.parse_q931(data)
        assert (cr, from_dest) == (7, msg.from_destination) and mtype == msg.message_type


def test_pycrates_own_encoding_of_extension_additions_does_not_decode() -> None:
    """Why ``h323msg`` corrects pycrate's SEQUENCE encoder: an ARQ with its
    callIdentifier (an extension addition) as pycrate writes it decodes
    neither in pycrate nor (checked by hand) in tshark; ours decodes to the
    value."""
    value = ("admissionRequest", {
        "requestSeqNum": 3, "callType": ("pointToPoint", 0), "endpointIdentifier": "EP1",
        "destinationInfo": [m.alias("p2")], "srcInfo": [m.alias("p1")], "bandWidth": 640,
        "callReferenceValue": 1, "conferenceID": GUID, "activeMC": False, "answerCall": False,
        "callIdentifier": {"guid": GUID}})
    with m.CODEC_LOCK:
        m.RAS.set_val(value)
        broken = m.RAS.to_aper()
        with pytest.raises(Exception):
            m.RAS.from_aper(broken)
            assert m.RAS.get_val() == value
    fixed = m.encode(m.RAS, value)
    assert m.decode(m.RAS, fixed) == value
    assert len(fixed) == len(broken) - 1            # the spurious octet


def test_corpus_arq_reencodes_to_a_decodable_value() -> None:
    """A real ARQ (OpenH323's, corpus h323.pcap frame 63) with many
    extension additions comes back to the same value through our encoder."""
    from pathlib import Path
    from scapy.all import rdpcap
    from scapy.layers.inet import IP, UDP
    pcap = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pcap" / "h323.pcap"
    if not pcap.exists():
        pytest.skip(f"{pcap} missing")
    frame = rdpcap(str(pcap))[62]
    arq = bytes(frame[UDP].payload) if UDP in frame else bytes(frame[IP].payload)[8:]
    value = m.decode(m.RAS, arq)
    assert value[0] == "admissionRequest" and "callIdentifier" in value[1]
    assert m.decode(m.RAS, m.encode(m.RAS, value)) == value


ipv4 = st.integers(1, 0xDFFFFFFE).map(lambda n: socket.inet_ntoa(n.to_bytes(4, "big")))
ports = st.integers(1, 65535)
names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


@settings(max_examples=40, deadline=None)
@given(ipv4, ports, ipv4, ports, st.integers(1, 65535), names, st.binary(min_size=16, max_size=16))
def test_random_messages_round_trip_through_the_gateway_parsers(ip, port, ip2, port2, seq, name, guid) -> None:
    rrq = m.rrq(seq, (ip, port), (ip2, port2), name)
    arq = m.arq(seq, name, name, name, seq & 0x7FFF, guid, False)
    setup = m.q931(m.SETUP, seq & 0x7FFF, False, m.uuie(m.setup_body(
        name, name, guid, (ip, port), (ip2, port2), m.faststart_offer((ip, port), (ip2, port2)))),
        m.BEARER_SPEECH)
    ack = m.tpkt(m.h245_olc_ack(seq % 65535 + 1, (ip, port), (ip2, port2)))
    with m.CODEC_LOCK:
        assert _addresses(parse_ras(rrq)) == [("callSignalAddress", f"{ip}:{port}"),
                                              ("rasAddress", f"{ip2}:{port2}")]
        assert parse_ras(arq).fields["callIdentifier"]["guid"] == guid
        s = parse_call_signal(setup)
        assert s.call_identifier() == guid
        assert ("mediaChannel", f"{ip}:{port}") in _addresses(s)
        assert _addresses(parse_h245(ack)) == [("mediaChannel", f"{ip}:{port}"),
                                              ("mediaControlChannel", f"{ip2}:{port2}")]


_Q931 = _q931_messages()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(sorted(_Q931)), st.integers(0, 400))
def test_peer_parsers_raise_only_decode_error(noise, label, cut) -> None:
    """What reaches a peer through a gateway may be anything: its parsers
    answer or raise DecodeError (the peer reports it), nothing else."""
    data = _Q931[label][0]
    for candidate in (noise, data[:cut], data[:cut] + noise, b"\x03\x00" + noise):
        for parse in (m.parse_q931, m.decode_h245, lambda d: m.decode(m.RAS, d)):
            try:
                parse(candidate)
            except m.DecodeError:
                pass


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_finds_no_malformed_message(tmp_path) -> None:
    from scapy.all import wrpcap
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    pkts = []
    for data, _ in _ras_messages().values():
        pkts.append(Ether() / IP(src=A, dst=GK) / UDP(sport=1719, dport=1719) / data)
    seq = 1000
    for data, _ in _q931_messages().values():
        pkts.append(Ether() / IP(src=A, dst=B) / TCP(sport=33000, dport=1720, flags="PA", seq=seq) / data)
        seq += len(data)
    seq = 5000
    for pdu, _ in _h245_messages().values():
        data = m.tpkt(pdu)
        pkts.append(Ether() / IP(src=A, dst=B) / TCP(sport=33001, dport=1300, flags="PA", seq=seq) / data)
        seq += len(data)
    path = tmp_path / "peer.pcap"
    wrpcap(str(path), pkts)
    # The H.245 connection's port is the Connect's h245Address: told to tshark.
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-d", "tcp.port==1300,h245",
                          "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Protocol",
                          "-e", "_ws.malformed"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [ln.split("\t") for ln in out.stdout.splitlines()]
    assert len(rows) == len(pkts)
    assert [r for r in rows if len(r) > 2 and r[2]] == []
    assert {r[1] for r in rows} >= {"H.225.0", "H.245"}


# --- over loopback ---------------------------------------------------------------------------

def _loopback_ok() -> bool:
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.3", 0))
        s.close()
        return True
    except OSError:
        return False


pytestmark_loopback = pytest.mark.skipif(not _loopback_ok(), reason="127.0.0.0/8 not bindable")


@pytest.fixture
def peers():
    gk_port = 20000 + os.getpid() % 20000
    gk = Gatekeeper(None, "127.0.0.1", gk_port).start()
    a = Endpoint(None, "127.0.0.2", "alice", signal_port=gk_port + 1, media_base=40000)
    b = Endpoint(None, "127.0.0.3", "bob", signal_port=gk_port + 1, media_base=42000)
    try:
        yield gk, a, b, ("127.0.0.1", gk_port)
    finally:
        a.close()
        b.close()
        gk.close()


@pytestmark_loopback
def test_two_peers_call_in_every_mode_over_loopback(peers) -> None:
    gk, a, b, gk_addr = peers
    assert a.register(gk_addr) != b.register(gk_addr)
    assert gk.registrations["bob"].signal == [m.transport("127.0.0.3", b.signal[1])]
    b.serve(0.6)
    legs = [a.call("bob", mode, 0.6) for mode in MODES]
    deadline = time.monotonic() + 10
    while len([x for x in b.answered if x.released]) < len(MODES) and time.monotonic() < deadline:
        time.sleep(0.05)
    answered = {x.guid: x for x in b.answered}
    for leg in legs:
        other = answered[leg.guid]
        assert leg.error is None and other.error is None, (leg, other)
        assert leg.connected and other.connected and leg.released and other.released
        assert other.mode == leg.mode
        assert leg.rtp_sent == 30 and other.rtp_sent == 30        # 0.6 s of 20 ms packets
        assert other.rtp_received == leg.rtp_sent and leg.rtp_received == other.rtp_sent
        assert leg.media_to == other.rtp_sources[0] or leg.media_to.startswith("127.0.0.3:")
    assert legs[0].steps == ["ACF", "setup", "callProceeding", "alerting", "connect",
                             "releaseComplete", "DCF"]
    assert "h245-connected" in legs[1].steps and "h245-connected" not in legs[2].steps
    assert all("h245-open" in x.steps and "h245-closed" in x.steps for x in legs[1:])
    kinds = [k for k, _ in gk.received]
    assert kinds.count("admissionRequest") == 2 * len(MODES)
    assert kinds.count("disengageRequest") == 2 * len(MODES)
    assert len(gk.disengaged) == 2 * len(MODES) and gk.errors == []
    a.unregister()
    b.unregister()
    assert gk.registrations == {}


@pytestmark_loopback
def test_unknown_callee_is_rejected(peers) -> None:
    gk, a, _b, gk_addr = peers
    a.register(gk_addr)
    leg = a.call("nobody", "faststart", 0.2)
    assert leg.error is not None and "admissionReject" in leg.error and not leg.connected


@pytestmark_loopback
def test_gatekeeper_answers_at_the_signalled_ras_address(peers) -> None:
    """The answer goes where the RRQ's rasAddress says, not to the source:
    through a gateway that forgot to translate it, the answer is lost."""
    gk, _a, _b, gk_addr = peers
    sender = make_socket(None, socket.SOCK_DGRAM, ("127.0.0.2", 0))
    listener = make_socket(None, socket.SOCK_DGRAM, ("127.0.0.4", 0))
    try:
        client = RasClient(sender, gk_addr, rto=(0.3,))
        with pytest.raises(PeerError, match="no registrationConfirm"):
            client.request(lambda s: m.rrq(s, ("127.0.0.4", 1720), listener.getsockname(), "carol"),
                           "registrationConfirm")
        listener.settimeout(1)
        data, _ = listener.recvfrom(65535)
        assert m.decode(m.RAS, data)[0] == "registrationConfirm"
    finally:
        sender.close()
        listener.close()
