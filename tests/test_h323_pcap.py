"""pcap mode over the corpus H.323 capture, its calling sides behind NAT
(tests/data/pcap-h323-behind-nat.cfg): every packet accounted for, H.323
through the ALG, nothing malformed per tshark in what the gateway emits,
and no private address in what leaves by the NAT side.

The capture was taken without NAT, so its answers are addressed to the
private hosts. A gateway doing NAT receives them addressed to its public
address: the test first derives that capture (the destination of packets
from outside to a NATed segment becomes the untrust interface's address,
10.1.6.1, checksums fixed) in a temporary file."""

from __future__ import annotations

import json
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from gateway.packet import parse, rewrite
from ops.gatewayd import main as gatewayd
from ops.gwctl import main as gwctl

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT.parent / "shared" / "corpus" / "pcap" / "h323.pcap"
CFG = ROOT / "tests" / "data" / "pcap-h323-behind-nat.cfg"
PUBLIC = "10.1.6.1"
NATED = [IPv4Network(n) for n in ("10.1.3.0/24", "192.168.0.128/25", "17.2.0.0/25", "10.47.208.192/26")]
PRIVATE_HOSTS = ["10.1.3.143", "192.168.0.208", "17.2.0.124", "10.47.208.204"]

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason="corpus capture missing")


def _inside(addr) -> bool:
    a = IPv4Address(addr)
    return any(a in n for n in NATED)


def derive(path: Path) -> int:
    """The capture as the gateway's untrust side would deliver it."""
    from scapy.all import IP, Ether, rdpcap, wrpcap
    frames = []
    for p in rdpcap(str(CAPTURE)):
        ip = p[IP]
        raw = bytes(ip)[:ip.len]
        if not _inside(ip.src) and _inside(ip.dst):
            # Checksums computed afresh: an incremental update of a capture's
            # unfinished (transmit-offload) checksum is neither right nor
            # recognisably unfinished.
            pkt = parse(raw)
            raw = rewrite(pkt, dst=PUBLIC, payload=pkt.payload_bytes)
        f = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(raw)
        f.time = p.time
        frames.append(f)
    wrpcap(str(path), frames)
    return len(frames)


def records(path: Path, ether: bool = False):
    """(timestamp, IPv4 bytes) of a classic little-endian pcap file."""
    data = path.read_bytes()[24:]
    while data:
        sec, usec, incl = (int.from_bytes(data[k:k + 4], "little") for k in (0, 4, 8))
        frame = data[16:16 + incl]
        yield sec + usec / 1e6, frame[14:] if ether else frame
        data = data[16 + incl:]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("h323pcap")
    src, out, journal = tmp / "in.pcap", tmp / "out.pcap", tmp / "journal"
    n = derive(src)
    import io
    from contextlib import redirect_stdout
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = gatewayd(["--pcap-in", str(src), "--pcap-out", str(out), "--config", str(CFG), "--json",
                       "--journal", str(journal), "--log-level", "ERROR"])
    assert rc == 0
    return n, json.loads(buf.getvalue()), out, journal


def test_every_packet_accounted_for_and_h323_inspected(run):
    n, s, _out, _journal = run
    assert s["packets"] == n == 75
    assert s["forwarded"] + s["dropped"] == s["packets"] and s["written"] == s["forwarded"]
    assert sum(s["drop_reasons"].values()) == s["dropped"]
    # Through the ALG: RAS 14 (all 15 RAS datagrams but frame 60, see
    # below), Q.931 4 + 2 + 2 (Setup ..
    # Connect; the 192.168.0.x Setup and Alerting, whose TPKT header came
    # alone in frame 48; the 17.2.0.x Setup and ReleaseComplete), H.245 11.
    # The capture's duplicated frames are retransmissions: they leave as the
    # first copy did, without a second pass through the ALG.
    assert s["alg_messages"]["h323"] == 14 + 8 + 11
    # Dropped: the two malformed frames (GRQ 59, Setup 65), the
    # ReleaseComplete of that refused Setup's call (66), and the GCF (60)
    # answering the refused GRQ: with no RAS session its destination is the
    # gateway's own address.
    reasons = s["drop_reasons"]
    assert s["dropped"] == 4, reasons
    assert sum(v for k, v in reasons.items() if "malformed" in k) == 2
    assert sum(v for k, v in reasons.items() if "no known call" in k) == 1
    assert sum(v for k, v in reasons.items() if "address of ethernet3" in k) == 1


def _tshark(*args: str) -> str:
    r = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _segments(src: Path, out: Path, tmp: Path) -> tuple[Path, list[int], Path, list[int]]:
    """Captures of the two sides as a sniffer there would see them: what
    arrives from that side (the input) and what the gateway sends to it (the
    output), in order. tshark follows an H.245 connection from the
    h245Address it saw in a Connect, so a side's capture needs both
    directions. Returns each side's capture and the frame numbers in it
    that the gateway emitted."""
    from actors.pcap_ingest import RawPcapWriter
    inputs = list(records(src, ether=True))
    outputs = list(records(out))
    untrust, trust = tmp / "untrust.pcap", tmp / "trust.pcap"
    emitted: dict = {}
    count: dict = {}
    j = 0
    with RawPcapWriter(str(untrust)) as u, RawPcapWriter(str(trust)) as t:
        for i, (ts, raw) in enumerate(inputs):
            p = parse(raw)
            side = t if _inside(p.src) else u
            side.write(raw, ts)
            count[side] = count.get(side, 0) + 1
            if j < len(outputs) and outputs[j][0] == ts:
                q = parse(outputs[j][1])
                if (q.sport, q.dport) == (p.sport, p.dport):
                    side = t if _inside(q.dst) else u
                    side.write(outputs[j][1], ts)
                    count[side] = count.get(side, 0) + 1
                    emitted.setdefault(side, []).append(count[side])
                    j += 1
    assert j == len(outputs)
    return untrust, emitted[u], trust, emitted[t]


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_output_is_well_formed_and_hides_private_addresses(run, tmp_path):
    _n, _s, out, _journal = run
    untrust, emitted, trust, emitted_trust = _segments(out.parent / "in.pcap", out, tmp_path)
    for side, mine in ((untrust, emitted), (trust, emitted_trust)):
        bad = _tshark("-r", str(side), "-Y", "_ws.malformed || _ws.expert.severity >= error",
                      "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info")
        # Only the capture's own two malformed frames (as they arrived,
        # from the trust side), never one the gateway emitted.
        frames = [int(line.split("\t")[0]) for line in bad.splitlines() if line.strip()]
        assert not set(frames) & set(mine), (side.name, bad)
        assert len(frames) == (2 if side is trust else 0), (side.name, bad)
    assert len(emitted) > 20
    text = _tshark("-r", str(untrust), "-V", "-Y", "frame.number in {" + ",".join(map(str, emitted)) + "}")
    assert text.count("Frame ") >= len(emitted)
    assert "H.225.0" in text and "H.245" in text and "openLogicalChannelAck" in text
    for host in PRIVATE_HOSTS:
        assert host not in text, host
    # The raw octets too (an address tshark might not dissect).
    for _ts, raw in records(out):
        p = parse(raw)
        if not _inside(p.dst):
            for host in PRIVATE_HOSTS:
                assert IPv4Address(host).packed not in raw[p.payload_offset:], host


def test_source_ports_kept_so_the_derived_replies_match(run):
    """The derivation assumed the interface NAT keeps each source port."""
    _n, _s, out, _journal = run
    for _ts, raw in records(out):
        p = parse(raw)
        if not _inside(p.dst) and str(p.src) == PUBLIC:
            assert p.sport in (32803, 32804, 56837, 2034, 1719), p.sport


def journaled_events(records) -> list:
    """Each journaled event with its record's seq and stream (a step's
    events share one record: gateway/events.py StepEvents)."""
    from types import SimpleNamespace
    return [SimpleNamespace(seq=r.seq, stream=r.stream, type=t, payload=p)
            for r in records for t, p in r.entries()]


def test_journal_replays_the_h323_calls(run, capsys):
    from journal.segment import iter_records
    _n, _s, _out, journal = run
    recs = journaled_events(iter_records(str(journal)))
    started = [r for r in recs if r.type == "h323.call_started"]
    ended = [r for r in recs if r.type == "h323.call_ended"]
    assert started and len(ended) == len({r.stream for r in started})
    assert any(r.type == "h323.pinhole_opened" and r.payload.get("kind") == "h245" for r in recs)
    assert any(r.type == "h323.pinhole_opened" and r.payload.get("kind") == "rtp" for r in recs)
    capsys.readouterr()
    # The state just before the first call began to end (its pinholes close
    # first, then the call).
    stream = started[0].stream
    before_end = min(r.seq for r in recs if r.stream == stream and r.type in
                     ("h323.pinhole_closed", "h323.call_ended")) - 1
    assert gwctl(["replay", str(journal), "--until", str(before_end), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (call,) = [c for c in out["h323_calls"] if c["call"] == stream.split("/", 1)[1]]
    assert call["phase"] == "connected" and call["h245"] and call["media"]
    assert gwctl(["replay", str(journal), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["h323_calls"] == []


def test_replay_prints_the_h323_state_as_tables(run, capsys):
    """The text form: the call, its media and its pinholes as table rows."""
    from journal.segment import iter_records
    _n, _s, _out, journal = run
    recs = journaled_events(iter_records(str(journal)))
    stream = next(r.stream for r in recs if r.type == "h323.call_started")
    key = stream.split("/", 1)[1]
    before_end = min(r.seq for r in recs if r.stream == stream and r.type in
                     ("h323.pinhole_closed", "h323.call_ended")) - 1
    capsys.readouterr()
    assert gwctl(["replay", str(journal), "--until", str(before_end)]) == 0
    text = capsys.readouterr().out
    assert "H.323 calls (1)" in text and "{'" not in text
    rows = [line.split() for line in text.splitlines() if line.split()[:2] == ["H.323", key]]
    kinds = {r[3] for r in rows if len(r) >= 5 and "/" in r[2]}
    assert {"h245", "rtp", "rtcp"} <= kinds, text
    assert gwctl(["replay", str(journal), "--until", str(before_end), "--call", key]) == 0
    history = capsys.readouterr().out
    assert f"History of {stream}" in history and "h323.pinhole_opened" in history
    assert "{'" not in history
