"""Plain-text tables for gwctl's human output: a header row and aligned
columns, the last one left ragged so long values do not pad every line."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Sequence


def cell(value: object) -> str:
    """A value as a table shows it: nothing is "-", a list is comma-joined,
    an (address, port) pair is ``address:port``."""
    if value is None or value == "" or value == [] or value == ():
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
            return f"{value[0]}:{value[1]}"
        return ",".join(cell(v) for v in value)
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "  ") -> list[str]:
    """Lines of an aligned table; the cells through :func:`cell`."""
    body = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(widths[i]) for i, v in enumerate(values[:-1])] + [values[-1]]
        return (indent + "  ".join(parts)).rstrip()
    return [line(list(headers))] + [line(r) for r in body]


def utc(t: float | None, *, ms: bool = True) -> str:
    """A time since the epoch as UTC, ``2026-11-25 14:30:00.123``."""
    if t is None:
        return "-"
    text = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return text[:-3] if ms else text[:-7]


def section(title: str, headers: Sequence[str], rows: list[Sequence[object]]) -> list[str]:
    """``title (n)`` and its table, or ``title: none``."""
    if not rows:
        return [f"{title}: none"]
    return [f"{title} ({len(rows)})"] + table(headers, rows)


__all__ = ["cell", "table", "utc", "section"]
