"""Positional rewrite of a parsed SIP message, Content-Length kept true.

As the Linux kernel's nf_nat_sip does, NAT replaces the bytes of addresses
and ports where the parser found them and, when the body changed length,
rewrites the Content-Length value (long or compact form, RFC 3261 20.14)."""

from __future__ import annotations

from gateway.sip.message import SipMessage
from gateway.span import Edit, _mk_edit, apply_edits


def rewrite_message(data: bytes, msg: SipMessage, edits: list[Edit]) -> bytes:
    """Apply ``edits`` (positions in ``data``, which ``msg`` was parsed from)
    and fix Content-Length if the body's length changed. With no edits,
    ``data`` is returned unchanged."""
    if not edits:
        return data
    body_start = msg.body_offset
    body_end = body_start + len(msg.body)
    delta = 0
    for e in edits:
        start = e.start
        if start >= body_start:
            end = e.end
            if end <= body_end:
                delta += len(e.new) - (end - start)
    if delta and msg.content_length is not None:
        # parse_message noted where the (single) Content-Length value is.
        vs, ve = msg._cl_value
        edits = list(edits)
        edits.append(_mk_edit(vs, ve, str(msg.content_length + delta).encode("ascii")))
    return apply_edits(data, edits)
