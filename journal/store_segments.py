"""The journal's table of segment files as held in memory (``_Segment``; a
reader's immutable ``_View`` of one) and the report of what opening found."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .segment import TailDamage


@dataclasses.dataclass(frozen=True, slots=True)
class OpenReport:
    """What opening the journal found: ``truncated`` lists the damaged tails cut off."""

    segments: int
    records: int
    head: int
    truncated: tuple[TailDamage, ...]
    resumed_from: int | None = None     # opened at this snapshot record, not read before it


@dataclasses.dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    count: int
    size: int
    index: list[int] | None   # offset of record first_seq + k * INDEX_STRIDE (None: not read yet)

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


@dataclasses.dataclass(frozen=True, slots=True)
class _View:
    """An immutable picture of one segment for a reader, taken under the lock."""

    first_seq: int
    path: Path
    count: int
    size: int
    index: tuple[int, ...]
