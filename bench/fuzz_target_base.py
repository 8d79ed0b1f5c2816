"""What every fuzz target of bench/fuzz_targets.py is built on: the
:class:`Target` record, the repository's paths (tests/ on ``sys.path`` for
the shared mutation engine) and a scratch directory for the readers that
read files."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fuzz_mutations import Mutator  # noqa: E402


@dataclass
class Target:
    name: str
    what: str
    # () -> (seeds, mutator, read, expected error classes)
    build: Callable[[], tuple[list[bytes], Mutator, Callable[[bytes], object], tuple[type, ...]]]
    seeds: list[bytes] = field(default_factory=list)
    mutator: Mutator | None = None
    read: Callable[[bytes], object] | None = None
    expected: tuple[type, ...] = ()

    def load(self) -> "Target":
        if self.read is None:
            self.seeds, self.mutator, self.read, self.expected = self.build()
        return self


_SCRATCH: list[str] = []


def _scratch() -> str:
    """A directory for the files a reader needs (in memory where there is
    a tmpfs), removed at exit."""
    if not _SCRATCH:
        import atexit
        import shutil
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        d = tempfile.mkdtemp(prefix="fuzz-", dir=base)
        atexit.register(shutil.rmtree, d, True)
        _SCRATCH.append(d)
    return _SCRATCH[0]
