"""Message framing on stream transports (RFC 3261 18.3).

Over TCP a segment may carry several messages or a part of one. A message
ends Content-Length octets after the empty line closing its headers; on a
stream the Content-Length header is mandatory. CRLFs between messages are
keep-alives (RFC 5626 4.4.1) and are dropped."""

from __future__ import annotations

import re

from gateway.errors import RemoteProtocolError

# Header sections longer than this without an end are refused rather than
# buffered for ever.
MAX_HEADER_BYTES = 65536

# A Content-Length line (long or compact form, any case): the one at the very
# start of the buffer, and those after a LF. (One pattern with "^" and
# re.M would try every position of the header section; the search for a LF
# is a scan in C.)
# The quantifiers are possessive: spaces, then the value, then spaces are
# disjoint classes, so each run has one way to end. With plain ones, a run of
# spaces after the colon followed by anything but a line end was retried
# from each of its spaces (quadratic: 33 KB took a quarter of a second).
_CL_VALUE = rb"(?:content-length|l)[ \t]*+:[ \t]*+(\S*+)[ \t]*+\r?$"
_CL_FIRST_RE = re.compile(_CL_VALUE, re.I | re.M)
_CL_RE = re.compile(rb"\n" + _CL_VALUE, re.I | re.M)
_END_LF_RE = re.compile(rb"\n\r?\n")


def _header_end(buffer: bytes, pos: int) -> tuple[int, int] | None:
    """Where the first empty line after ``pos`` is, as a search for
    ``\r?\n\r?\n`` would find it: (start, end), or None. ``buffer[pos]`` is
    not a CR or LF. (Searching for the LF first lets the scan run in C; the CR
    before it, if any, is where that search's match would have started.)"""
    m = _END_LF_RE.search(buffer, pos)
    if m is None:
        return None
    start = m.start()
    if buffer[start - 1] == 13:
        start -= 1
    return start, m.end()


def _content_lengths(buffer: bytes, pos: int, end: int) -> list[bytes]:
    """The Content-Length values of the lines starting in ``buffer[pos:end]``
    (a line starts at offset 0 or after a LF)."""
    found = _CL_RE.findall(buffer, pos - 1 if pos else 0, end)
    if pos == 0:
        first = _CL_FIRST_RE.match(buffer, 0, end)
        if first is not None:
            found.insert(0, first.group(1))
    return found


def is_keepalive(payload: bytes) -> bool:
    """A datagram or segment that is only a keep-alive, not a message:
    CRLFs (RFC 5626 3.5.1, 4.4.1) or, as some phones send, only spaces, tabs
    or NULs. The ALG lets it pass without parsing."""
    return bool(payload) and not payload.strip(b"\r\n \t\x00")


def frame_stream(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Split ``buffer`` into complete messages and the incomplete rest.

    Raises :class:`RemoteProtocolError` when a header section has no (or an
    invalid, or more than one) Content-Length: the stream cannot be framed and
    the connection is to be closed (RFC 3261 18.3)."""
    if not isinstance(buffer, bytes):
        buffer = bytes(buffer)
    messages: list[bytes] = []
    n = len(buffer)
    pos = 0
    while True:
        while pos < n and buffer[pos] in (13, 10):
            pos += 1
        if pos >= n:
            break
        where = _header_end(buffer, pos)
        if where is None:
            if n - pos > MAX_HEADER_BYTES:
                raise RemoteProtocolError("SIP header section too long on stream")
            break
        head_start, head_end = where
        found = _content_lengths(buffer, pos, head_start + 1)
        # A folded Content-Length would not match: treat as missing, that
        # never happens in practice and the stream is then unframeable.
        if not found:
            raise RemoteProtocolError("missing Content-Length on a stream (RFC 3261 18.3)")
        if len(found) > 1:
            raise RemoteProtocolError("more than one Content-Length on a stream")
        value = found[0]
        if not value.isdigit() or len(value) > 10:
            raise RemoteProtocolError("invalid Content-Length on a stream")
        end = head_end + int(value)
        if end > n:
            break
        messages.append(buffer[pos:end])
        pos = end
    return messages, buffer[pos:]


def pending_size(rest: bytes) -> int | None:
    """The whole size of the incomplete message at the start of ``rest`` (the
    second value of :func:`frame_stream`) once its header section is there:
    where it ends, by Content-Length; None while the headers are incomplete or
    unframeable (the next :func:`frame_stream` says why)."""
    pos = 0
    n = len(rest)
    while pos < n and rest[pos] in (13, 10):
        pos += 1
    if pos >= n:
        return None
    where = _header_end(rest, pos)
    if where is None:
        return None
    found = _content_lengths(rest, pos, where[0] + 1)
    if len(found) != 1 or not found[0].isdigit() or len(found[0]) > 10:
        return None
    return where[1] + int(found[0])
