"""Diagnostics of the configuration language: what is wrong, where, and how to fix it.

Every problem names the file, line, column and offending token, and carries a
hint (a did-you-mean, or the choices the parser expected), so that a
configuration copied from the manual can be repaired without reading the parser.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Literal

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    file: str
    line: int
    column: int
    token: str
    message: str
    hint: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}: '{self.token}'"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigError(Exception):
    """A configuration file with at least one error; nothing of it is applied.

    ``diagnostics`` holds every problem found (errors first by position, with
    the warnings and notes among them); ``str()`` is one diagnostic per line."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def did_you_mean(word: str, candidates: Iterable[str], *, fold_case: bool = True) -> str | None:
    """The closest candidate to ``word`` (difflib), or None when none is close."""
    pool = list(dict.fromkeys(candidates))
    if not pool:
        return None
    if fold_case:
        lowered = {c.lower(): c for c in pool}
        match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        return lowered[match[0]] if match else None
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return match[0] if match else None


def one_of(choices: Iterable[str]) -> str:
    items = [f"'{c}'" for c in choices]
    if len(items) == 1:
        return items[0]
    return "one of " + ", ".join(items)
