"""pcap mode over the corpus's SIP-over-TCP captures through gatewayd (the
node, its journal, the datapath): every packet accounted for, every message
through the SIP ALG, what leaves identical to the pure datapath's closed loop
(tests/test_sip_tcp_datapath.py), and nothing tshark calls malformed or a TCP
analysis problem on either side of the gateway.

The input is the closed loop's: the callee's packets as a callee behind the
gateway's NAT would send them (to the public address, echoing the rewritten
caller, acknowledging the stream it received). Each side's capture for
tshark holds what arrived from that side and what the gateway sent to it,
in order."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from actors.pcap_ingest import RawPcapWriter
from gateway.packet import parse
from ops.gatewayd import main as gatewayd
from ops.gwctl import main as gwctl
from test_sip_tcp_datapath import CFG, CORPUS, PHONE, Loop, _ips, _register_frames

pytestmark = pytest.mark.skipif(not (CORPUS / "sip_ipv4_tcp.pcap").exists() or not shutil.which("tshark"),
                                reason="corpus capture or tshark missing")


def _records(path: Path):
    data = path.read_bytes()[24:]
    while data:
        sec, usec, incl = (int.from_bytes(data[k:k + 4], "little") for k in (0, 4, 8))
        yield sec + usec / 1e6, data[16:16 + incl]
        data = data[16 + incl:]


def _tshark_problems(path: Path) -> list[str]:
    r = subprocess.run(["tshark", "-r", str(path), "-Y",
                        "_ws.malformed || _ws.expert.severity >= error || "
                        "(tcp.analysis.flags && !tcp.analysis.window_update)",
                        "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


def _run(tmp: Path, frames):
    loop = Loop()
    for ts, raw in frames:
        loop.feed(ts, raw)
    src, out, journal = tmp / "in.pcap", tmp / "out.pcap", tmp / "journal"
    with RawPcapWriter(str(src)) as w:
        for ts, raw in loop.fed:
            w.write(raw, ts)
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = gatewayd(["--pcap-in", str(src), "--pcap-out", str(out), "--config", str(CFG), "--json",
                       "--journal", str(journal), "--log-level", "ERROR"])
    assert rc == 0
    return loop, json.loads(buf.getvalue()), src, out, journal


def _sides(tmp: Path, loop: Loop, out: Path) -> tuple[Path, Path]:
    """What a sniffer on each side would see: arrivals from it, and what the
    gateway sent to it, in the order of the run (each emitted packet right
    after the one it answers)."""
    outputs = [raw for _ts, raw in _records(out)]
    trust, untrust = tmp / "trust.pcap", tmp / "untrust.pcap"
    j = 0
    with RawPcapWriter(str(trust)) as t, RawPcapWriter(str(untrust)) as u:
        for ts, raw in loop.fed:
            p = parse(raw)
            from_phone = str(p.src) == PHONE
            (t if from_phone else u).write(raw, ts)
            if j < len(outputs):
                q = parse(outputs[j])
                if _same_packet(p, q):
                    (u if from_phone else t).write(outputs[j], ts)
                    j += 1
    assert j == len(outputs)
    return trust, untrust


def _same_packet(p, q) -> bool:
    """Is ``q`` (emitted) the translation of ``p`` (arrived)? Same ports on
    the far side, same flags, the IP identification kept."""
    return q.ident == p.ident and q.tcp_flags == p.tcp_flags


@pytest.mark.parametrize("name", ["sip_ipv4_tcp.pcap", "sip-tcp-method__sip-tcp.pcap"])
def test_pcap_mode_matches_the_datapath_and_tshark_finds_nothing(tmp_path, name):
    frames = _ips(name) if name == "sip_ipv4_tcp.pcap" else _register_frames()
    loop, s, _src, out, journal = _run(tmp_path, frames)
    assert s["packets"] == len(loop.fed)
    assert s["forwarded"] + s["dropped"] == s["packets"] and s["written"] == s["forwarded"]
    assert s["alg_messages"]["sip"] == len(loop.alg_in["c2s"]) + len(loop.alg_in["s2c"])
    assert s["dropped"] == len(loop.drops)
    emitted = sorted((q.buf for d in ("c2s", "s2c") for _p, q, _w in loop.emitted[d]), key=bytes)
    got = sorted((raw for _ts, raw in _records(out)), key=bytes)
    assert got == emitted
    trust, untrust = _sides(tmp_path, loop, out)
    assert _tshark_problems(trust) == []
    assert _tshark_problems(untrust) == []
    # The journal has the connection's sequence adjustments, and replays.
    if name == "sip_ipv4_tcp.pcap":
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert gwctl(["replay", str(journal), "--json"]) == 0
