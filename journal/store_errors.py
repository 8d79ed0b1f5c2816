"""The journal's errors: a locked directory, a failed write, appends that do not
continue it, and a snapshot position that is not this journal's."""

from __future__ import annotations


class StartMismatch(Exception):
    """A snapshot's journal position that is not this journal's: its segment
    is gone, or the record there is not the one the snapshot was taken at."""


class JournalLocked(Exception):
    """Another process has the journal open."""


class JournalFailed(Exception):
    """A write or fsync failed: what reached the disk is unknown, so the journal
    takes no more appends. Reopen it (the scan repairs the tail)."""


class AppendRejected(ValueError):
    """Records or frames that do not continue this journal (gap, duplicate,
    stream version, older epoch) or that are not valid frames."""
