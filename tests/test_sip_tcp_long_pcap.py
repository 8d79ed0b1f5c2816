"""A 64 KiB SDP over TCP (45 segments) through gatewayd in pcap mode (the
node, its journal, the datapath): what leaves is what the in-line harness
of tests/test_sip_tcp_long.py gives, and tshark, on what each side of the
gateway sees, finds no malformed packet and no TCP analysis problem, and
reassembles one INVITE whose SDP names only the public address."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from actors.pcap_ingest import RawPcapWriter
from gateway.packet import ACK, build_tcp, parse
from ops.gatewayd import main as gatewayd
from test_sip_tcp_long import CFG, ISN_S, PEER, PHONE, PUBLIC, Gate, _MOD, invite
from test_sip_tcp_pcap import _records, _tshark_problems

pytestmark = pytest.mark.skipif(not shutil.which("tshark"), reason="tshark missing")


def test_a_64k_sdp_through_gatewayd_and_tshark(tmp_path: Path) -> None:
    gate = Gate()
    gate.connect()
    msg = invite(64 * 1024 - 450)
    segs = gate.segments(msg)
    assert len(segs) == 45
    for s, p in segs:
        gate.send(s, p)
    sent = [q for d, q in gate.out if d == "c2s"]
    end = (sent[-1].tcp_seq + len(sent[-1].payload_bytes)) % _MOD
    gate.feed(build_tcp(PEER, PUBLIC, 5060, gate.public_port, ISN_S + 1, end, ACK))
    assert gate.drops == []

    src, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    with RawPcapWriter(str(src)) as w:
        for ts, raw in gate.fed:
            w.write(raw, ts)
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = gatewayd(["--pcap-in", str(src), "--pcap-out", str(out), "--config", str(CFG), "--json",
                       "--journal", str(tmp_path / "journal"), "--log-level", "ERROR"])
    assert rc == 0
    summary = json.loads(buf.getvalue())
    got = [raw for _ts, raw in _records(out)]
    assert summary["dropped"] == 0 and summary["written"] == len(gate.fed)
    assert got == [raw for _ts, raw in gate.emitted]

    # Each side's view: what arrived from it and what the gateway sent to it.
    trust, untrust = tmp_path / "trust.pcap", tmp_path / "untrust.pcap"
    with RawPcapWriter(str(trust)) as t, RawPcapWriter(str(untrust)) as u:
        events = [(ts, 0, raw) for ts, raw in gate.fed] + [(ts, 1, raw) for ts, raw in gate.emitted]
        for ts, emitted, raw in sorted(events, key=lambda e: (e[0], e[1])):
            p = parse(raw)
            untrust_side = str(p.dst) == PEER if emitted else str(p.src) == PEER
            (u if untrust_side else t).write(raw, ts)
    assert _tshark_problems(trust) == []
    assert _tshark_problems(untrust) == []
    r = subprocess.run(["tshark", "-r", str(untrust), "-Y", "sip.Method == \"INVITE\"", "-T", "fields",
                        "-e", "sdp.connection_info.address", "-e", "sip.Via"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stdout
    assert PUBLIC in lines[0] and PHONE not in lines[0]
