"""TPKT framing of H.225.0 call signalling and H.245 over TCP (RFC 1006 §6).

Each message is ``03 00 LL LL`` then ``LLLL - 4`` octets (the length counts
the header). TCP gives a byte stream: one segment may end inside a message or
hold several, so the caller keeps what is left and feeds it back with the next
segment."""

from __future__ import annotations

from gateway.errors import RemoteProtocolError

TPKT_VERSION = 3
HEADER = 4


def frame_tpkt(buffer: bytes) -> tuple[tuple[bytes, ...], bytes]:
    """Split ``buffer`` into complete TPKT messages (header included) and the
    incomplete rest. A wrong version or reserved octet, or a length below the
    header's own four octets, is not TPKT: the stream cannot be resynchronised
    and the connection's signalling is dropped."""
    messages: list[bytes] = []
    pos = 0
    size = len(buffer)
    while size - pos >= HEADER:
        if buffer[pos] != TPKT_VERSION or buffer[pos + 1] != 0:
            raise RemoteProtocolError("not a TPKT header (RFC 1006: version 3, reserved 0)", offset=pos)
        length = (buffer[pos + 2] << 8) | buffer[pos + 3]
        if length < HEADER:
            raise RemoteProtocolError(f"TPKT length {length} shorter than its header", offset=pos)
        if size - pos < length:
            break
        messages.append(bytes(buffer[pos:pos + length]))
        pos += length
    if pos < size and size - pos < HEADER and buffer[pos] != TPKT_VERSION:
        raise RemoteProtocolError("not a TPKT header (RFC 1006: version 3)", offset=pos)
    return tuple(messages), bytes(buffer[pos:])


def payload(message: bytes) -> bytes:
    """The octets of one framed message after its header."""
    return message[HEADER:]
