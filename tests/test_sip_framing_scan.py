"""Stream framing (RFC 3261 18.3) where its scans could go wrong.

frame_stream finds the empty line ending a header section by searching for
its LF (the CR before it, if any, belongs to it) and Content-Length lines by
searching for the LF before them, the buffer's first line being read on its
own. These cases pin the places where such a search differs from a scan of
every position: a Content-Length on the very first line, CRLF keep-alives
before a message, bare-LF and mixed line ends, several messages in one
buffer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.sip.framing import frame_stream, pending_size


@pytest.mark.parametrize("buffer, messages, rest, pending", [
    # Content-Length on the first line of the buffer (compact form).
    (b"l: 3\r\n\r\nabcREST", [b"l: 3\r\n\r\nabc"], b"REST", 11),
    # CRLF keep-alives before the message are dropped (RFC 5626 4.4.1).
    (b"\r\nl: 3\r\n\r\nabc", [b"l: 3\r\n\r\nabc"], b"", 13),
    # Bare LF line ends, any case of the name.
    (b"INVITE x SIP/2.0\nL:2\n\nab", [b"INVITE x SIP/2.0\nL:2\n\nab"], b"", 24),
    # A LF then CRLF ends the header section; the body is counted after it.
    (b"INVITE x SIP/2.0\r\nContent-Length: 1\n\r\nab", [b"INVITE x SIP/2.0\r\nContent-Length: 1\n\r\na"],
     b"b", 39),
    # Incomplete body: nothing framed yet, the whole size known.
    (b"A\r\nl: 2\r\n\r\na", [], b"A\r\nl: 2\r\n\r\na", 13),
    # Two messages, the second incomplete.
    (b"A\r\nl: 0\r\n\r\nB\r\nl: 1\r\n\r\nxy", [b"A\r\nl: 0\r\n\r\n", b"B\r\nl: 1\r\n\r\nx"], b"y", 11),
])
def test_frames(buffer, messages, rest, pending):
    assert frame_stream(buffer) == (messages, rest)
    assert pending_size(buffer) == pending


@pytest.mark.parametrize("buffer, reason", [
    (b"A\r\nl: 1\r\nl: 1\r\n\r\nx", "more than one Content-Length"),
    (b"A\r\nX: 1\r\n\r\nx", "missing Content-Length"),
    (b"A\r\nContent-Length: 1a\r\n\r\nx", "invalid Content-Length"),
])
def test_unframeable(buffer, reason):
    with pytest.raises(RemoteProtocolError, match=reason):
        frame_stream(buffer)
    assert pending_size(buffer) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"\r\n", b"\n"]), st.binary(max_size=20)), min_size=1, max_size=4),
       st.binary(max_size=8))
def test_messages_come_back_whole_and_in_order(parts, junk):
    """Messages with either line end, bodies of any octets, concatenated:
    framed back exactly; any tail is the rest."""
    stream = b"".join(b"M\r\nX: y" + eol + b"Content-Length: %d" % len(body) + eol + eol + body
                      for eol, body in parts)
    messages, rest = frame_stream(stream)
    assert b"".join(messages) == stream and rest == b""
    assert len(messages) == len(parts)
    try:
        messages2, rest2 = frame_stream(stream + junk)
    except RemoteProtocolError:
        return
    assert messages2[:len(messages)] == messages
