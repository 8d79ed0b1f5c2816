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

_CL_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*\r?$", re.I | re.M)
_END_RE = re.compile(rb"\r?\n\r?\n")


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
        m = _END_RE.search(buffer, pos)
        if m is None:
            if n - pos > MAX_HEADER_BYTES:
                raise RemoteProtocolError("SIP header section too long on stream")
            break
        head_end = m.end()
        found = _CL_RE.findall(buffer, pos, m.start() + 1)
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
    m = _END_RE.search(rest, pos)
    if m is None:
        return None
    found = _CL_RE.findall(rest, pos, m.start() + 1)
    if len(found) != 1 or not found[0].isdigit() or len(found[0]) > 10:
        return None
    return m.end() + int(found[0])
