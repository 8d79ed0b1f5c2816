"""Pieces of the SIPp runner that need no root: the scenario and the
statistics file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ops.lab.netns import LabError
from ops.lab.sipp import G711A_PCAP, parse_stats, uac_scenario

# Header and a final row as SIPp 3.6.1 writes them with -trace_stat (cut after
# the columns read; the parser finds columns by name).
HEAD = ("StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;"
        "CallRate(P);CallRate(C);IncomingCall(P);IncomingCall(C);OutgoingCall(P);"
        "OutgoingCall(C);TotalCallCreated;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);"
        "FailedCall(P);FailedCall(C);")


def _row(outgoing: int, ok: int, failed: int) -> str:
    return (f"2026-11-25\t14:25:02.5;2026-11-25\t14:25:04.1;2026-11-25\t14:25:04.1;00:00:00;"
            f"00:00:01;5;0;1.8;0;0;0;{outgoing};{outgoing};0;0;{ok};0;{failed};")


def test_stats_are_read_from_the_last_row_by_column_name(tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text("\n".join([HEAD, _row(1, 0, 0), _row(7, 5, 2)]) + "\n")
    assert parse_stats(f) == (7, 5, 2)


def test_empty_or_foreign_stats_are_an_error(tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text(HEAD + "\n")
    with pytest.raises(LabError):
        parse_stats(f)
    f.write_text("a;b\n1;2\n")
    with pytest.raises(LabError):
        parse_stats(f)


def test_uac_scenario_is_xml_that_plays_the_g711_capture() -> None:
    root = ET.fromstring(uac_scenario().encode("iso-8859-1"))
    execs = root.findall("./nop/action/exec")
    assert [e.get("play_pcap_audio") for e in execs] == [str(G711A_PCAP)]
    sends = [s.text or "" for s in root.findall("send")]
    assert [s.split()[0] for s in sends] == ["INVITE", "ACK", "BYE"]
    # The offer names the codec the capture carries (G.711 A-law, PT 8).
    assert "m=audio [media_port] RTP/AVP 8" in sends[0]
    # The hold time comes from -d: a bare pause between ACK and BYE.
    tags = [child.tag for child in root]
    assert tags.index("pause") == tags.index("nop") + 1 < len(tags) - 2


def test_uac_scenario_without_media_keeps_the_signalling_and_plays_nothing() -> None:
    with_media = ET.fromstring(uac_scenario().encode("iso-8859-1"))
    root = ET.fromstring(uac_scenario(media=False).encode("iso-8859-1"))
    assert root.findall("./nop/action/exec") == []
    # Same messages, same SDP offer: the gateway still opens pinholes.
    assert [s.text for s in root.findall("send")] == [s.text for s in with_media.findall("send")]
    assert [c.tag for c in root] == [c.tag for c in with_media if c.tag != "nop"]
