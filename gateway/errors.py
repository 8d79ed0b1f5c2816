"""Error types shared by every parser of the gateway.

The rule (ARCHITECTURE.md, "Errors, events and spans"): input from the wire
that breaks a protocol's rules raises :class:`RemoteProtocolError`; the caller
drops the message and logs the reason. Any other exception escaping a parser is a bug of ours."""

from __future__ import annotations


class RemoteProtocolError(Exception):
    """Bad input from the wire: the message is dropped and ``reason`` is logged."""

    def __init__(self, reason: str, *, offset: int | None = None) -> None:
        super().__init__(reason if offset is None else f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset
