"""Where a configuration line ends, control characters, and number lengths.

Lines end at LF (or CR LF) only; other control characters are an error in a
command and ignored in a comment. A number longer than any value in range is
out of range without converting it (int() of over 4,300 digits raises)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings, strategies as st

from gateway.config import ConfigError, Diagnostic, parse_text

ZONE = "set zone name voice\n"


def errors(text: str) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        parse_text(text, "t.cfg")
    return [d for d in info.value.diagnostics if d.severity == "error"]


@pytest.mark.parametrize("breaker", ["\x0c", "\x0b", "\x85", "\u2028", "\u2029", "\r", "\x1c"])
def test_control_character_inside_a_comment_is_ignored(breaker):
    # str.splitlines() made "set zone" after the character a command of its own.
    cfg = parse_text(f"# page one{breaker}set zone\n{ZONE}", "t.cfg")
    assert "voice" in cfg.zones


@pytest.mark.parametrize("breaker", ["\x0c", "\x85", "\u2028", "\r"])
def test_line_numbers_count_lf_only(breaker):
    (diag,) = errors(f"# a{breaker}b\n{ZONE}set zone voice blok\n")
    assert (diag.file, diag.line) == ("t.cfg", 3)


def test_crlf_line_ends_are_accepted():
    cfg = parse_text("# dos file\r\nset zone name voice\r\nset zone voice block\r\n")
    assert cfg.zones["voice"].block


@pytest.mark.parametrize("ch, name", [
    ("\x0c", "form feed"), ("\x0b", "vertical tab"), ("\r", "carriage return"),
    ("\x85", "next line"), ("\u2028", "line separator"), ("\x00", "NUL"),
    ("\x07", "control character"),
])
def test_control_character_in_a_command_is_an_error_with_its_position(ch, name):
    (diag,) = errors(f"{ZONE}set zone{ch}voice block\n")
    assert (diag.line, diag.column) == (2, 9)
    assert diag.token == f"U+{ord(ch):04X}"
    assert name in diag.message and "control character" in diag.message
    assert "only LF" in diag.hint


def test_a_line_holding_only_a_form_feed_is_reported():
    (diag,) = errors(f"{ZONE}\x0c\n")
    assert (diag.line, diag.column, diag.token) == (2, 1, "U+000C")


def test_tab_is_still_a_blank():
    assert "voice" in parse_text("set\tzone name\tvoice\n").zones


def test_a_very_long_number_is_out_of_range_not_a_crash():
    (diag,) = errors("set policy id " + "9" * 5000 + " from trust to untrust any any any permit\n")
    assert diag.line == 1 and diag.column == 15
    assert "out of range" in diag.message and "5000 digits" in diag.message
    assert "1 to 65535" in diag.hint


def test_leading_zeros_do_not_count_as_digits():
    cfg = parse_text("set policy id " + "0" * 5000 + "7 from trust to untrust any any any permit\n")
    assert [p.id for p in cfg.policies] == [7]


def test_a_very_long_dip_pool_id_is_out_of_range():
    (diag,) = errors("set policy from trust to untrust any dip(" + "1" * 5000 + ") any permit\n")
    assert "DIP pool id out of range" in diag.message and "1 to 255" in diag.hint


_CONTROL_TEXT = st.text(alphabet=st.sampled_from(
    list("set zone name voice policy id from trust to untrust any permit dip(5) 0123456789 #\"")
    + ["\x0c", "\x0b", "\r", "\n", "\x85", "\u2028", "\u2029", "\x00", "\t", "\u201c", "\u201d"]),
    max_size=400)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=400), _CONTROL_TEXT))
def test_any_text_gives_a_config_or_diagnostics_quickly(text):
    started = time.perf_counter()
    try:
        parse_text(text, "t.cfg")
    except ConfigError as exc:
        assert exc.errors
        lines = text.split("\n")
        for d in exc.diagnostics:
            assert 1 <= d.line <= max(1, len(lines)) and d.column >= 1
    assert time.perf_counter() - started < 2.0


@settings(max_examples=50, deadline=None)
@given(st.integers(4301, 20000), st.sampled_from([
    "set policy id {} from trust to untrust any any any permit",
    "set policy from trust to untrust any dip({}) any permit",
    "set zone untrust screen udp-flood threshold {}",
    "set sip protect deny timeout {}",
]))
def test_numbers_of_any_length_give_diagnostics(digits, template):
    with pytest.raises(ConfigError):
        parse_text(template.format("8" * digits))


def test_a_file_keeps_its_line_ends_as_written(tmp_path):
    # Text mode's universal newlines turned a lone CR into a line break before
    # the parser saw it.
    from gateway.config import load_file
    path = tmp_path / "cr.cfg"
    path.write_bytes(b"# old Mac line end\rset zone\r\nset zone name voice\n")
    assert "voice" in load_file(path).zones
    path.write_bytes(b"set zone name voice\rset zone voice block\n")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    (diag,) = info.value.errors
    assert (diag.line, diag.column, diag.token) == (1, 20, "U+000D")


def test_gwctl_config_check_reports_control_characters(tmp_path, capsys):
    from ops.gwctl import main as gwctl
    path = tmp_path / "ff.cfg"
    path.write_bytes(b"# page\x0cset zone\nset zone name voice\nset zone\x0bvoice block\n")
    assert gwctl(["config", "check", str(path)]) != 0
    err = capsys.readouterr()
    text = err.out + err.err
    assert f"{path}:3:9: error: a control character (vertical tab, U+000B)" in text
