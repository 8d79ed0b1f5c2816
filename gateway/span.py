"""Positions in a message, and byte-exact edits by position.

Parsers of text protocols (SIP, SDP, MGCP) record *where* each address and
port is, as a :class:`Span`; NAT then rewrites by position with
:func:`apply_edits`, as the Linux kernel's nf_nat_sip does. Bytes outside the
edits are never touched, so a message with no edits passes byte-identical."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Iterable

from gateway.construct import frozen_constructor


@dataclass(frozen=True, slots=True)
class Span:
    """``data[start:end]`` of the message it was parsed from, and its text."""

    start: int
    end: int
    text: str

    def __len__(self) -> int:
        return self.end - self.start

    def shifted(self, delta: int) -> "Span":
        return Span(self.start + delta, self.end + delta, self.text)


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace ``data[start:end]`` with ``new``."""

    start: int
    end: int
    new: bytes

    @classmethod
    def replace(cls, span: Span, new: str | bytes) -> "Edit":
        if isinstance(new, str):
            new = new.encode("latin-1")
        if cls is Edit:
            # The ALGs build one per rewritten field: the cheap constructor
            # (gateway.construct), same class and fields.
            return _mk_edit(span.start, span.end, new)
        return cls(span.start, span.end, new)

    @property
    def delta(self) -> int:
        return len(self.new) - (self.end - self.start)


_mk_edit = frozen_constructor(Edit)
_BY_POSITION = attrgetter("start", "end")


class OverlappingEdits(ValueError):
    """Two edits touch the same bytes: a bug in the caller, never wire input."""


def apply_edits(data: bytes, edits: Iterable[Edit]) -> bytes:
    """Apply non-overlapping edits (in any order) and return the new bytes.

    Edits that would replace bytes with the same bytes are kept (cheap); with no
    edits the input object itself is returned."""
    ordered = sorted(edits, key=_BY_POSITION)
    if not ordered:
        return data
    out = []
    pos = 0
    for e in ordered:
        if e.start < pos or e.end < e.start or e.end > len(data):
            raise OverlappingEdits(f"edit {e.start}:{e.end} overlaps or is out of range (at {pos}, size {len(data)})")
        out.append(data[pos:e.start])
        out.append(e.new)
        pos = e.end
    out.append(data[pos:])
    return b"".join(out)


def shift_for(edits: Iterable[Edit], offset: int) -> int:
    """How far a byte at ``offset`` (not inside an edit) moves once ``edits`` apply."""
    return sum(e.delta for e in edits if e.end <= offset)
