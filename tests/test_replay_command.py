"""gwctl replay on journals with a missing start, unusable records, MGCP
state, and the order of its output (ops/commands/replay.py, journal/replay.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.mgcp.alg import EMPTY as MGCP_EMPTY
from gateway.mgcp.alg import MgcpContext, step as mgcp_step
from gateway.sip.alg import EMPTY as SIP_EMPTY
from gateway.sip.alg import step as sip_step
from gateway.sip.alg import SipContext
from journal.record import Record, encode_record
from journal.replay import JournalGap, UnusableRecord, replay
from journal.segment import list_segments
from journal.store import Journal
from gateway import domain
from ops.gwctl import main as gwctl

ROOT = Path(__file__).resolve().parents[1]
CA = ("10.1.1.101", 2727)
GW = ("2.2.2.201", 2427)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def mgcp_events():
    """One MGCP call: CRCX from the call agent answered 200 with SDP."""
    to_gw = MgcpContext("none", CA, GW, role="call-agent")
    from_gw = MgcpContext("none", GW, CA, role="gateway")
    st, out = MGCP_EMPTY, []
    sdp = "\nv=0\no=- 1 1 IN IP4 2.2.2.201\ns=-\nc=IN IP4 2.2.2.201\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
    for ctx, msg, t in [
        (from_gw, "RSIP 1 aaln/1@[2.2.2.201] MGCP 1.0\nRM: restart\n", 1.0),
        (to_gw, "CRCX 7 aaln/1@[2.2.2.201] MGCP 1.0\nC: A1\nM: sendrecv\n", 2.0),
        (from_gw, "200 7 OK\nI: C1\n" + sdp, 2.1),
    ]:
        r = mgcp_step(st, ctx, crlf(msg), t)
        st = r.state
        out += [(e, t) for e in r.events]
    assert st.calls
    return out


def sip_events(call_ids):
    """An INVITE per Call-ID (outbound, no NAT)."""
    st, out = SIP_EMPTY, []
    for i, cid in enumerate(call_ids):
        ctx = SipContext("outbound", ("10.1.1.3", 5060), ("1.1.1.4", 5060), None, None,
                         "ethernet1", "ethernet3", "udp")
        inv = crlf(f"INVITE sip:b@1.1.1.4 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.3:5060;branch=z9hG4bK{i}\n"
                   f"From: <sip:a@10.1.1.3>;tag=a{i}\nTo: <sip:b@1.1.1.4>\nCall-ID: {cid}\n"
                   f"CSeq: 1 INVITE\nContact: <sip:a@10.1.1.3>\nContent-Length: 0\n\n")
        r = sip_step(st, ctx, inv, 10.0 + i)
        st = r.state
        out += [(e, 10.0 + i) for e in r.events]
    assert len(st.calls) == len(call_ids)
    return out


def journal_of(path: Path, batches, segment_bytes: int = 64 << 20) -> int:
    j = Journal.open(path, fsync=False, segment_bytes=segment_bytes)
    try:
        for batch in batches:
            j.append_batch(batch, 1)
        return j.head
    finally:
        j.close()


def replay_json(capsys, *args) -> tuple[int, dict, str]:
    rc = gwctl(["replay", *map(str, args), "--json"])
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out) if cap.out else {}), cap.err


def test_mgcp_state_is_printed(tmp_path, capsys):
    journal_of(tmp_path, [mgcp_events()])
    rc, out, _ = replay_json(capsys, tmp_path)
    assert rc == 0
    (call,) = out["mgcp_calls"]
    assert (call["gateway"], call["call_id"], call["connections"]) == ("2.2.2.201", "A1", ["C1"])
    assert call["media"] and call["media"][0]["dst"] == "2.2.2.201:4000"
    assert [e["endpoint"] for e in out["mgcp_endpoints"]] == ["aaln/1@[2.2.2.201]"]
    rc = gwctl(["replay", str(tmp_path)])
    text = capsys.readouterr().out
    assert "MGCP calls (1)" in text
    assert [line.split() for line in text.splitlines() if line.startswith("  2.2.2.201  A1 ")] \
        == [["2.2.2.201", "A1", "C1", "1970-01-01", "00:00:02.000", "1", "2"]]
    rc = gwctl(["replay", str(tmp_path), "--call", "A1", "--json"])
    one = json.loads(capsys.readouterr().out)
    assert [c["call_id"] for c in one["mgcp_calls"]] == ["A1"]
    assert {e["type"] for e in one["events"]} >= {"mgcp.call_started"}


def _missing_first_segment(tmp_path: Path) -> int:
    # Small segments: each batch after the first starts a new file.
    first = sip_events(["one@x"])
    second = sip_events(["two@x"])
    journal_of(tmp_path, [first, second, mgcp_events()], segment_bytes=1)
    segs = list_segments(tmp_path)
    assert len(segs) >= 2
    os.unlink(segs[0][1])
    return segs[1][0]


def test_a_missing_first_segment_is_reported_not_folded_silently(tmp_path, capsys):
    start = _missing_first_segment(tmp_path)
    with pytest.raises(JournalGap) as info:
        replay(tmp_path, domain.apply, domain.EMPTY)
    assert info.value.first == start and info.value.expected == 1
    rc, out, err = replay_json(capsys, tmp_path)
    assert rc == 1 and out == {}
    assert f"starts at record {start}: records 1-{start - 1} are missing" in err
    assert "--partial" in err and "Traceback" not in err


def test_partial_folds_from_the_gap_and_lists_what_it_skipped(tmp_path, capsys):
    start = _missing_first_segment(tmp_path)
    rc, out, err = replay_json(capsys, tmp_path, "--partial")
    assert rc == 0
    assert out["skipped"][0] == {"seq": start, "type": "", "why": out["skipped"][0]["why"]}
    assert "missing" in out["skipped"][0]["why"]
    # The second call's records stand on their own; the MGCP call too.
    assert [c["call_id"] for c in out["calls"]] == ["two@x"]
    assert [c["call_id"] for c in out["mgcp_calls"]] == ["A1"]
    assert "skipped gap" in err


def _append_raw(path: Path, records) -> None:
    """CRC-valid frames appended to the newest segment as they are."""
    seg = list_segments(path)[-1][1]
    with open(seg, "ab") as f:
        for rec in records:
            f.write(encode_record(rec))


def test_unknown_type_and_incomplete_payload_are_reported_with_their_record(tmp_path, capsys):
    last = journal_of(tmp_path, [sip_events(["a@x"])])
    _append_raw(tmp_path, [
        Record(last + 1, 1, 20.0, "call/zz", 1, "sip.no_such_event", 1, {}),
        Record(last + 2, 1, 21.0, "call/zz", 1, "sip.call_ended", 1, {"nothing": 1}),
    ] + [Record(last + 3 + i, 1, 22.0, "mgcp-call/2.2.2.201/A1", 1 + i, e.TYPE, e.SCHEMA, e.to_payload())
         for i, (e, _t) in enumerate(mgcp_events())])
    with pytest.raises(UnusableRecord) as info:
        replay(tmp_path, domain.apply, domain.EMPTY)
    assert info.value.problem.seq == last + 1 and info.value.last_seq == last
    # Default: stop there, print the state before it, say why, exit 1.
    rc, out, err = replay_json(capsys, tmp_path)
    assert rc == 1 and out["last_seq"] == last
    assert out["stopped_at"]["seq"] == last + 1 and out["stopped_at"]["type"] == "sip.no_such_event"
    assert f"stopped at record {last + 1} (sip.no_such_event)" in err and "unknown event type" in err
    # --partial: both skipped with their reasons, the rest folded.
    rc, out, err = replay_json(capsys, tmp_path, "--partial")
    assert rc == 0
    assert [(p["seq"], p["type"]) for p in out["skipped"]] == [
        (last + 1, "sip.no_such_event"), (last + 2, "sip.call_ended")]
    assert "cannot be decoded" in out["skipped"][1]["why"]
    assert [c["call_id"] for c in out["mgcp_calls"]] == ["A1"]
    assert "Traceback" not in err


def test_json_output_is_the_same_on_every_run(tmp_path):
    # Maps iterate in hash order, and str hashes differ between processes.
    ids = [f"call-{i}@host" for i in range(12)]
    journal_of(tmp_path, [sip_events(ids), mgcp_events()])
    outs = set()
    for seed in ("1", "2", "3", "4"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        r = subprocess.run([sys.executable, "-m", "ops.gwctl", "replay", str(tmp_path), "--json"],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.add(r.stdout)
    assert len(outs) == 1
    calls = json.loads(outs.pop())["calls"]
    assert [c["call"] for c in calls] == sorted(c["call"] for c in calls)
