"""SIP header-field grammar pieces (RFC 3261 section 7.3 and 25.1).

Everything here works on ``str`` decoded as latin-1, so that one character is
one byte of the wire message and offsets found in the text are offsets into the
original bytes. Nothing is normalised: callers get positions, not rewritten
text."""

from __future__ import annotations

import re

from gateway.errors import RemoteProtocolError

# RFC 3261 7.3.3 (compact forms) plus the registered compact forms of later
# RFCs (IANA "Header Fields" registry): a=Accept-Contact (3841), b=Referred-By
# (3892), d=Request-Disposition (3841), j=Reject-Contact (3841), o=Event (6665),
# r=Refer-To (3515), u=Allow-Events (6665), x=Session-Expires (4028),
# y=Identity (8224), n=Identity-Info (4474).
COMPACT_FORMS = {
    "i": "call-id",
    "m": "contact",
    "f": "from",
    "t": "to",
    "v": "via",
    "l": "content-length",
    "c": "content-type",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "a": "accept-contact",
    "b": "referred-by",
    "d": "request-disposition",
    "j": "reject-contact",
    "o": "event",
    "r": "refer-to",
    "u": "allow-events",
    "x": "session-expires",
    "y": "identity",
    "n": "identity-info",
}


def canonical_name(name: str) -> str:
    """The lower-case long name of a header field name (names are
    case-insensitive, RFC 3261 7.3.1)."""
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


# Header fields whose value is not a comma-separated list even though it may
# contain commas (RFC 3261 7.3.1 lists the authentication fields as the
# exceptions; the others carry free text or dates).
NOT_LISTS = frozenset({
    "www-authenticate", "authorization", "proxy-authenticate", "proxy-authorization",
    "authentication-info", "date", "subject", "user-agent", "server", "organization",
    "call-id", "cseq", "retry-after", "timestamp", "warning", "identity",
    "identity-info", "content-length", "max-forwards", "expires",
})

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN + r"\Z")

# One header line, folded continuation lines included (RFC 3261 7.3.1: a line
# starting with SP or HT continues the previous one). CRLF or bare LF.
# Group 2 is the value without the LWS before it (a fold may come first, RFC
# 4475 3.1.1.1 "TO :<CRLF> sip:..."); the LWS after it is trimmed by the
# caller. The value starts with a non-LWS octet so that no two parts of the
# pattern can match the same spaces: matching stays linear in the line length.
# The LWS after the colon is written "[ \t]*(?:\r?\n[ \t]+)*", the same
# strings as "(?:[ \t]|\r?\n[ \t])*" but without a group repeated per
# space, which made the matcher keep state per space (13 MB for 64 KB of
# spaces).
HEADER_LINE_RE = re.compile(
    rb"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*:[ \t]*(?:\r?\n[ \t]+)*"
    rb"((?:[^ \t\r\n][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)?)\r?\n")

# The same, for findall over a whole header section: (name, separator, value,
# line end), each match starting right after a LF.
HEADER_LINES_RE = re.compile(
    rb"(?<=\n)([A-Za-z0-9\-.!%*_+`'~]+)([ \t]*:[ \t]*(?:\r?\n[ \t]+)*)"
    rb"((?:[^ \t\r\n][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)?)(\r?\n)")

# A fold: the line break and the whitespace after it (the whitespace before
# it is trimmed from the piece it ends). A pattern with the whitespace before
# the break, "[ \t]*\r?\n[ \t]+", tried the rest of every run of spaces from
# each of its spaces: quadratic (16,000 spaces took over a second).
_FOLD_SPLIT = re.compile(r"\r?\n[ \t]+").split

# quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE; quoted-pair may escape
# any octet but CR and LF (RFC 3261 25.1).
QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
QUOTED_RE = re.compile(QUOTED)

# Top-level structure of a list value: a comma outside quotes and <...> splits.
# A lone '"' or '<' is one left unterminated.
_LIST_TOKEN_RE = re.compile(QUOTED + r'|<[^<>]*>|,|["<]')

# generic-param = token [ EQUAL gen-value ]; SEMI and EQUAL allow LWS around
# them (SWS includes folds, already validated by HEADER_LINE_RE).
PARAM_RE = re.compile(
    r"\s*;\s*(" + TOKEN + r")(?:\s*=\s*(" + QUOTED + r'|[^\s;,"<>]+))?\s*')

_WS = " \t\r\n"


def unfold(text: str) -> str:
    """Header value text with each fold (CRLF + whitespace) read as one SP."""
    if "\n" in text:
        pieces = _FOLD_SPLIT(text)
        last = pieces.pop()
        return " ".join([p.rstrip(" \t") for p in pieces] + [last])
    return text


def split_list(text: str) -> list[tuple[int, int]]:
    """Offsets ``(start, end)`` of the elements of a comma-separated header
    value, each trimmed of LWS; commas inside quoted strings and <...> do not
    split. Empty elements are kept (as ``start == end``) so that a validating
    caller can reject them. Never raises."""
    if "," not in text:
        cuts = []
    elif '"' not in text and "<" not in text:
        cuts = [i for i, ch in enumerate(text) if ch == ","]
    else:
        cuts = [m.start() for m in _LIST_TOKEN_RE.finditer(text) if m.group() == ","]
    out = []
    pos = 0
    for cut in cuts + [len(text)]:
        s, e = pos, cut
        while s < e and text[s] in _WS:
            s += 1
        while e > s and text[e - 1] in _WS:
            e -= 1
        out.append((s, e))
        pos = cut + 1
    return out


def check_balanced(text: str, what: str) -> None:
    """Reject an unterminated quoted string or <...> in a header value."""
    if '"' not in text and "<" not in text:
        return
    for m in _LIST_TOKEN_RE.finditer(text):
        tok = m.group()
        if tok == '"':
            raise RemoteProtocolError(f"unterminated quoted string in {what}")
        if tok == "<":
            raise RemoteProtocolError(f"unterminated <...> in {what}")


def parse_params(text: str, pos: int, what: str) -> list[tuple[str, int, int, int, int]]:
    """Parse ``*(SEMI generic-param)`` from ``text[pos:]`` to its end.

    Returns ``(lower name, name start, name end, value start, value end)``
    per parameter (value start == end == -1 when there is no value). An empty
    or malformed parameter (``;;``, RFC 3261 25.1) is a protocol error."""
    out = []
    n = len(text)
    while pos < n:
        m = PARAM_RE.match(text, pos)
        if m is None:
            if not text[pos:].strip(_WS):
                break
            raise RemoteProtocolError(f"malformed parameter in {what}")
        if m.end() == pos:  # pragma: no cover - the pattern consumes ';'
            break
        vs, ve = m.span(2)
        out.append((m.group(1).lower(), m.start(1), m.end(1), vs, ve))
        pos = m.end()
    return out


def parse_delta_seconds(text: str, what: str) -> int:
    """delta-seconds (RFC 3261 25.1); values above 2**32-1 are read as
    2**32-1 (RFC 3261 20.19 bounds Expires to that range)."""
    t = text.strip(_WS)
    if not t or not t.isdigit() or not t.isascii():
        raise RemoteProtocolError(f"{what} is not a number of seconds")
    if len(t) > 10:
        return 2**32 - 1
    return min(int(t), 2**32 - 1)
