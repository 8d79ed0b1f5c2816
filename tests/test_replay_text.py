"""gwctl replay's text form: SIP, H.323 and MGCP state as tables and a call's
history as one readable line per record, never a dump of Python dicts
(ops/replay_text.py, ops/text_table.py, ops/commands/replay.py)."""

from __future__ import annotations

import re

from ops.gwctl import main as gwctl
from ops.replay_text import describe, history_lines, state_lines
from ops.text_table import section, table, utc
from test_replay_command import journal_of, mgcp_events, sip_events

DICT_DUMP = re.compile(r"\{'|': |\['")


def _rows(text: str, first: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.split()[:1] == [first]]


def test_mgcp_state_is_printed_as_tables(tmp_path, capsys):
    journal_of(tmp_path, [sip_events(["one@x"]), mgcp_events()])
    assert gwctl(["replay", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert not DICT_DUMP.search(text), text
    assert "MGCP calls (1)" in text and "MGCP endpoints (1)" in text and "Pinholes (2)" in text
    assert _rows(text, "2.2.2.201")[1][:4] == ["2.2.2.201", "aaln/1@[2.2.2.201]", "in", "service"]
    # The call's media and pinholes, named without the call's prefix.
    assert ["MGCP", "2.2.2.201/A1", "g0", "C1", "2.2.2.201:4000", "-"] in _rows(text, "MGCP")
    assert ["MGCP", "2.2.2.201/A1", "p2", "any", "2.2.2.201:4001", "-"] in _rows(text, "MGCP")
    assert _rows(text, "one@x;a0")[0][:3] == ["one@x;a0", "calling", "none"]


def test_a_calls_history_is_readable(tmp_path, capsys):
    journal_of(tmp_path, [mgcp_events()])
    assert gwctl(["replay", str(tmp_path), "--call", "A1"]) == 0
    text = capsys.readouterr().out
    assert not DICT_DUMP.search(text), text
    assert "History of mgcp-call/2.2.2.201/A1 (5 records)" in text
    bound = next(line for line in text.splitlines() if "mgcp.media_bound" in line)
    assert "1970-01-01 00:00:02.100" in bound and "+0.100" in bound
    assert "dst=2.2.2.201:4000" in bound and "rtcp=2.2.2.201:4001" in bound
    assert "media_deadline=+120.0s" in bound and "group=g0" in bound
    assert "gateway=" not in bound and "call_id=" not in bound       # the heading says it
    # Only the call asked for: no registrations or endpoints tables.
    assert "MGCP endpoints" not in text and "SIP registrations" not in text


def test_history_json_names_each_records_stream(tmp_path, capsys):
    import json
    journal_of(tmp_path, [mgcp_events()])
    assert gwctl(["replay", str(tmp_path), "--call", "A1", "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert {e["stream"] for e in events} == {"mgcp-call/2.2.2.201/A1"}
    assert all(isinstance(e["event"], dict) for e in events)        # JSON keeps the payloads


H323_CALL = {
    "call": "c0fe", "phase": "connected", "connection": "10.1.3.143:32803-10.1.6.18:1720",
    "call_reference": 30708, "since": 1027664341.644, "h245": ["10.1.6.18:1232"],
    "media": ["c0fe/lc61@10.1.6.18:1232"], "pinholes": 2,
    "pinhole_list": [
        {"id": "c0fe/h245/10.1.6.18:1232", "kind": "h245", "group": "h245",
         "dst": "10.1.6.18:1232", "to": None},
        {"id": "c0fe/rtp/10.1.6.1:5000", "kind": "rtp", "group": "c0fe/lc61@10.1.6.18:1232",
         "dst": "10.1.6.1:5000", "to": "10.1.3.143:5000"}]}


def test_h323_state_is_printed_as_tables():
    out = {"calls": [], "mgcp_calls": [], "h323_calls": [H323_CALL], "registrations": [],
           "h323_registrations": [{"public": "10.1.6.1:1720", "private": "17.2.0.124:1720",
                                   "expires_at": 1198750680.3}], "mgcp_endpoints": []}
    text = "\n".join(state_lines(out, one_call=False))
    assert not DICT_DUMP.search(text), text
    assert _rows(text, "c0fe")[0] == ["c0fe", "connected", "10.1.3.143:32803-10.1.6.18:1720",
                                      "30708", "2002-07-26", "06:19:01.644", "10.1.6.18:1232",
                                      "1", "2"]
    assert ["10.1.6.1:1720", "17.2.0.124:1720", "2007-12-27", "10:18:00.300"] in _rows(
        text, "10.1.6.1:1720")
    h323 = _rows(text, "H.323")
    assert ["H.323", "c0fe", "lc61@10.1.6.18:1232", "-", "10.1.6.1:5000", "-"] in h323
    assert ["H.323", "c0fe", "rtp/10.1.6.1:5000", "rtp", "10.1.6.1:5000", "10.1.3.143:5000"] in h323


def test_describe_writes_fields_out():
    at = 1000.0
    words = describe({"key": "k1", "pinhole": "k1#p2", "group": "k1#g1", "dst_ip": "1.1.1.1",
                      "dst_port": 4000, "to_ip": None, "to_port": None, "public": ["2.2.2.2", 9],
                      "at": at, "media_deadline": at + 120.0, "reason": "pinhole lifetime expired",
                      "owned": False, "binding": [["10.1.6.1", 1720], ["17.2.0.124", 1720]]},
                     at, "call/k1")
    assert words == ('pinhole=p2 group=g1 dst=1.1.1.1:4000 public=2.2.2.2:9 '
                     'media_deadline=+120.0s reason="pinhole lifetime expired" owned=no '
                     'binding=10.1.6.1:1720,17.2.0.124:1720')


def test_history_groups_records_by_stream():
    evs = [{"seq": 3, "at": 10.0, "stream": "call/a;1", "type": "sip.call_started", "event": {}},
           {"seq": 4, "at": 10.5, "stream": "mgcp-call/g/a", "type": "mgcp.call_started",
            "event": {}},
           {"seq": 9, "at": 12.25, "stream": "call/a;1", "type": "sip.call_ended",
            "event": {"reason": "BYE"}}]
    lines = history_lines(evs)
    assert lines[0] == "History of call/a;1 (2 records)"
    assert lines[3].split()[:5] == ["#9", "1970-01-01", "00:00:12.250", "+2.250", "sip.call_ended"]
    assert "History of mgcp-call/g/a (1 records)" in lines
    assert history_lines([]) == ["History: no records of this call"]


def test_tables_align_and_show_absent_values():
    lines = table(["A", "BB"], [["x", None], ["longer", ["1.1.1.1", 5060]]])
    assert lines == ["  A       BB", "  x       -", "  longer  1.1.1.1:5060"]
    assert section("Things", ["A"], []) == ["Things: none"]
    assert utc(0.5) == "1970-01-01 00:00:00.500" and utc(None) == "-"
