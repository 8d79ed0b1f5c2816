"""A SIP message's header section as lines (RFC 3261 7.3): the table of
header lines by position, the scans :func:`gateway.sip.message.parse_message`
uses to check the section and find the lines it reads, and the reason given
for the first line that breaks the grammar."""

from __future__ import annotations

import re

from gateway.errors import RemoteProtocolError
from gateway.sip.headers import COMPACT_FORMS, HEADER_LINE_RE, HEADER_LINES_RE, canonical_name
from gateway.sip.message_grammar import _WS

_TRAILING = (" ", "\t")


def _header_lines(text: str, start: int, end: int):
    """The header lines of ``text[start:end]`` as (canonical name, name
    start, name end, value start, value end), the value trimmed of LWS; None
    when the section is not made of header lines only."""
    lines = []
    append = lines.append
    canon = _CANON
    pos = start
    for name_t, sep, value, eol in HEADER_LINES_STR_RE.findall(text, start, end):
        ne = pos + len(name_t)
        vs = ne + len(sep)
        ve = vs + len(value)
        if value[-1:] in _TRAILING:
            ve = vs + len(value.rstrip(_WS))
        append((canon.get(name_t) or canonical_name(name_t), pos, ne, vs, ve))
        pos = ne + len(sep) + len(value) + len(eol)
    # findall skips what does not match: the lines tile the section only if
    # nothing was skipped.
    return tuple(lines) if pos == end else None


_INTERESTING = frozenset({
    "via", "from", "to", "contact", "route", "record-route", "call-id", "cseq",
    "content-length", "content-type", "content-encoding", "expires", "session-expires",
})
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_BAD_LINE_START = re.compile(r"\n(?![ \t]|[" + _TOKEN_CHARS + r"]+[ \t]*:)").search


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# The header lines parse_message reads, by any of their names in any case
# (character classes rather than IGNORECASE: the scan stays a plain search for
# LF), up to the start of the value. Each canonical name has its own
# alternative ending in an empty group, so that ``lastindex`` says which header
# matched: _LINE_NAMES[lastindex]. (Capturing the value in the pattern costs a
# step per character; a find for the line's LF is cheaper.)
_LINE_NAMES = [""]
_alternatives = []
for _canonical in sorted(_INTERESTING):
    _spellings = [n for n in list(COMPACT_FORMS) + [_canonical] if canonical_name(n) == _canonical]
    _alternatives.append(
        "(?:" + "|".join(_any_case(n) for n in sorted(_spellings, key=len, reverse=True)) + ")"
        + r"[ \t]*:(?:[ \t]|\r?\n[ \t])*()")
    _LINE_NAMES.append(_canonical)
_INTERESTING_LINE_RE = re.compile(r"\n(?:" + "|".join(_alternatives) + ")")
# Header names as usually written, to their canonical names (a shortcut; any
# spelling goes through canonical_name).
_CANON: dict[str, str] = {}
for _name in ("Via", "From", "To", "Contact", "Route", "Record-Route", "Call-ID", "Call-Id",
              "CSeq", "Content-Length", "Content-Type", "Max-Forwards", "Allow", "Supported",
              "User-Agent", "Expires", "Server", "Session-Expires", "Accept", "Subject"):
    for _spelling in (_name, _name.lower(), _name.upper()):
        _CANON[_spelling] = _name.lower()
for _short, _long in COMPACT_FORMS.items():
    _CANON[_short] = _long
    _CANON[_short.upper()] = _long

# HEADER_LINES_RE for the latin-1 text of the header section.
HEADER_LINES_STR_RE = re.compile(HEADER_LINES_RE.pattern.decode("latin-1"))


def _bad_line(data: bytes, pos: int, end: int) -> None:
    """Raise for the first header line that does not match the grammar."""
    match = HEADER_LINE_RE.match
    while pos < end:
        m = match(data, pos, end)
        if m is None:
            break
        pos = m.end()
    raise RemoteProtocolError("malformed header line", offset=pos)
