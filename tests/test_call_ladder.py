"""Call ladders (gateway/ladder.py, journal/call_ladder.py, `gwctl call
ladder|list`) on journals written by pcap mode: a SIP capture of the corpus
through NAT, an MGCP call, the corpus H.323 call through NAT; and from a
running node over its control channel."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from gateway.ladder import GATEWAY, CallFilter, Ladder, render_text
from journal.call_ladder import calls, ladder
from ops.gatewayd import main as gatewayd
from ops.gwctl import main as gwctl

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pcap"
NAT_CFG = ROOT / "tests" / "data" / "pcap-ua-behind-nat.cfg"
MGCP_CFG = ROOT / "examples" / "ch3-media-gateway-in-subscribers-homes.cfg"
SIP_CALL = "105090259-446faf7a@192.168.1.2"          # INVITE then CANCEL, phone behind NAT


def pcap_journal(tmp: Path, src: Path, cfg: Path) -> Path:
    j = tmp / (src.stem + "-journal")
    with redirect_stdout(io.StringIO()):
        assert gatewayd(["--pcap-in", str(src), "--pcap-out", str(tmp / (src.stem + ".out")),
                         "--config", str(cfg), "--journal", str(j), "--json", "--log-level", "ERROR"]) == 0
    return j


@pytest.fixture(scope="module")
def journals(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ladders")
    out = {}
    if (CORPUS / "sip.pcap").exists():
        out["sip"] = pcap_journal(tmp, CORPUS / "sip.pcap", NAT_CFG)
    from ladder_captures import mgcp_call_capture
    mgcp_call_capture(tmp / "mgcp-call.pcap")
    out["mgcp"] = pcap_journal(tmp, tmp / "mgcp-call.pcap", MGCP_CFG)
    if (CORPUS / "h323.pcap").exists():
        from test_h323_pcap import CFG as H323_CFG, derive
        derive(tmp / "h323-derived.pcap")
        out["h323"] = pcap_journal(tmp, tmp / "h323-derived.pcap", H323_CFG)
    return out


def need(journals, name) -> Path:
    if name not in journals:
        pytest.skip(f"corpus capture for {name} missing")
    return journals[name]


def messages(lad: Ladder) -> list[tuple[str, str, str]]:
    return [(s.src, s.dst, s.label) for s in lad.steps if s.kind == "message"]


def test_sip_ladder_shows_requests_with_nat_and_the_pinholes(journals):
    j = need(journals, "sip")
    lad = ladder(j, SIP_CALL)
    assert lad is not None and lad.protocol == "sip"
    a, gw, b = lad.columns
    assert (a, gw, b) == ("A 192.168.1.2", GATEWAY, "B 200.68.120.81")
    assert messages(lad) == [(a, b, "INVITE (CSeq 1)"), (a, b, "CANCEL (CSeq 1)")]
    invite = next(s for s in lad.steps if s.label == "INVITE (CSeq 1)")
    # as it reached the gateway from the phone, and as it left on the provider's side
    assert invite.before == "192.168.1.2 -> 200.68.120.81"
    assert invite.after == "212.242.33.1 -> 200.68.120.81"
    opened = [s for s in lad.steps if s.label.startswith("pinhole open")]
    closed = [s for s in lad.steps if s.label.startswith("pinhole closed")]
    assert len(opened) == len(closed) == 3
    assert "pinhole open media udp 212.242.33.1:30000 -> 192.168.1.2:30000" in [s.label for s in opened]
    assert ("192.168.1.2:30000", "212.242.33.1:30000") in lad.nat
    assert lad.end_reason == "torn down 5 s after BYE/CANCEL" and lad.ended_at is not None
    # in time order, as journaled
    assert [s.seq for s in lad.steps] == sorted(s.seq for s in lad.steps)
    # the same call by the Call-ID the provider saw
    assert ladder(j, "105090259-446faf7a@212.242.33.1") == lad


def test_sip_call_list_and_other_calls_left_out(journals):
    j = need(journals, "sip")
    listed = calls(j)
    assert [c.call for c in listed][:1] == [SIP_CALL] and len(listed) == 4
    assert listed[-1].ended_at is None                      # still in progress at the end
    other = ladder(j, listed[1].call)
    assert SIP_CALL not in other.ids and all(SIP_CALL not in s.detail for s in other.steps)
    assert ladder(j, "no-such-call") is None


def test_mgcp_ladder_has_every_command_and_response_in_order(journals):
    lad = ladder(need(journals, "mgcp"), "A1B2")
    assert lad is not None and lad.protocol == "mgcp"
    mg, gw, ca = lad.columns
    assert (mg, ca) == ("MG 2.2.2.201", "CA 10.1.1.101")
    assert messages(lad) == [(ca, mg, "CRCX 1001"), (mg, ca, "200 1001 (CRCX)"),
                             (ca, mg, "MDCX 1002"), (mg, ca, "200 1002 (MDCX)"),
                             (ca, mg, "DLCX 1003"), (mg, ca, "250 1003 (DLCX)")]
    opened = sum(s.label.startswith("pinhole open") for s in lad.steps)
    closed = sum(s.label.startswith("pinhole closed") for s in lad.steps)
    assert opened == closed == 4
    assert lad.end_reason == "DLCX from the call-agent"


def test_mgcp_filter_does_not_take_a_reused_transaction_id_of_another_call():
    f = CallFilter("A1B2")
    txn = {"gateway": "g", "endpoint": "e", "origin": "call-agent", "tid": 7}
    assert f.wants("mgcp-ep/g/e", "mgcp.transaction_started", txn | {"call_id": "A1B2"})
    assert f.wants("mgcp-ep/g/e", "mgcp.transaction_ended", txn)
    assert not f.wants("mgcp-ep/g/e", "mgcp.transaction_started", txn | {"call_id": "OTHER"})
    assert not f.wants("mgcp-ep/g/e", "mgcp.transaction_answered", txn | {"code": 200})


def test_h323_ladder_has_the_q931_phases_and_the_translated_media(journals):
    j = need(journals, "h323")
    listed = [c for c in calls(j) if c.protocol == "h323"]
    key = "c0fef93ecd9ed6119ab2000476222017"
    assert key in [c.call for c in listed]
    lad = ladder(j, key)
    a, gw, b = lad.columns
    assert (a, b) == ("A 10.1.3.143", "B 10.1.6.18")
    assert messages(lad) == [(a, b, "Setup"), (b, a, "Call Proceeding"), (b, a, "Alerting"),
                             (b, a, "Connect")]
    assert ("10.1.3.143:5000", "10.1.6.1:5000") in lad.nat
    kinds = [s.label.split()[2] for s in lad.steps if s.label.startswith("pinhole open")]
    assert sorted(kinds) == ["h245", "rtcp", "rtcp", "rtp", "rtp"]
    # a call admitted by RAS: the ARQ and its confirm are on its ladder
    ras = ladder(j, "004091fb7289f911802a050403020100")
    assert [m[2] for m in messages(ras)][:2] == ["RAS admissionRequest 3", "RAS admissionConfirm 3"]


def test_text_drawing_has_a_lifeline_per_column_and_arrows(journals):
    text = render_text(ladder(need(journals, "mgcp"), "A1B2"))
    lines = text.splitlines()
    assert "MG 2.2.2.201" in lines[1] and "CA 10.1.1.101" in lines[1]
    crcx = next(line for line in lines if "CRCX 1001" in line)
    assert "|<-" in crcx and crcx.count("|") == 2       # from the call agent, over the gateway's line
    answer = next(line for line in lines if "200 1001" in line)
    assert "->|" in answer


def test_gwctl_call_ladder_and_list_on_a_journal(journals, capsys):
    j = need(journals, "mgcp")
    assert gwctl(["call", "ladder", "--journal", str(j), "A1B2", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == ladder(j, "A1B2").to_dict()
    assert Ladder.from_dict(got) == ladder(j, "A1B2")
    assert gwctl(["call", "ladder", "--journal", str(j), "A1B2"]) == 0
    assert "DLCX 1003" in capsys.readouterr().out
    assert gwctl(["call", "list", "--journal", str(j)]) == 0
    assert "A1B2" in capsys.readouterr().out
    assert gwctl(["call", "ladder", "--journal", str(j), "nope"]) == 1
    assert "no call 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="holds no journal segments"):
        gwctl(["call", "list", "--journal", str(j.parent)])


def test_a_running_node_answers_ladder_and_call_list(tmp_path):
    from actors.node import Node
    from tests.test_node import CFG, OUT, IN, Clock, invite, response, sdp, PH2, send
    node = Node("gw-a", CFG, str(tmp_path / "j"), clock=Clock(), fsync=False, timer_thread=False)
    node.start()
    try:
        send(node, OUT, invite())
        send(node, IN, response(200, "OK", body=sdp(PH2, 62002)))
        (row,) = node.control("call-list", {})
        lad = Ladder.from_dict(node.control("ladder", {"call": row["call"]}))
        labels = [s.label for s in lad.steps if s.kind == "message"]
        assert labels == ["INVITE (CSeq 1)", "200 OK (INVITE)"]
        assert node.control("ladder", {"call": "none"}) is None
        # only the newest records: the INVITE's call started before them
        assert node.control("call-list", {"window": 1}) == []
        assert node.control("call-list", {"window": node.journal.head}) == [row]
    finally:
        node.stop()


def test_ladder_of_a_recent_call_reads_only_the_newest_records(tmp_path, monkeypatch):
    """An open journal longer than RECENT records: a call among the newest
    records is found there; an older one by reading the whole journal."""
    import journal.call_ladder as cl
    from journal.store import Journal
    from test_replay_command import journal_of, sip_events
    journal_of(tmp_path, [sip_events([f"old{i}@x" for i in range(40)]),
                          sip_events([f"new{i}@x" for i in range(40)])])
    j = Journal.open(tmp_path, fsync=False)
    try:
        monkeypatch.setattr(cl, "RECENT", j.head // 2)
        monkeypatch.setattr(cl, "MARGIN", 3)
        reads = []
        real = cl._records
        monkeypatch.setattr(cl, "_records", lambda s, w=None: reads.append(w) or real(s, w))
        assert cl.ladder(j, "new39@x").call.startswith("new39@x")
        assert reads == [j.head // 2]
        reads.clear()
        assert cl.ladder(j, "old0@x").call.startswith("old0@x")
        assert reads == [j.head // 2, None]
    finally:
        j.close()


def test_a_call_whose_first_records_retention_deleted_never_breaks_the_builder(journals):
    """Retention may delete a call's first records: every suffix of a call's
    records gives a ladder or None, never an exception."""
    from gateway.ladder import build
    from journal.segment import iter_records
    import gateway.domain  # noqa: F401 - registers the events
    for name, call_id in (("sip", SIP_CALL), ("mgcp", "A1B2"), ("h323", "c0fef93ecd9ed6119ab2000476222017")):
        if name not in journals:
            continue
        f = CallFilter(call_id)
        recs = [(r.seq, r.timestamp, ev) for r in iter_records(journals[name])
                for (t, p), ev in zip(r.entries(), r.events()) if f.wants(r.stream, t, p)]
        assert recs
        for k in range(len(recs) + 1):
            lad = build(recs[k:])
            assert lad is None or isinstance(lad, Ladder)
            if lad is not None:
                render_text(lad)
