"""Call ladders and the list of calls, read from a journal (a node's open
:class:`~journal.store.Journal`, or a journal directory read without its
lock, as ``gwctl replay`` does). The drawing itself is pure
(:mod:`gateway.ladder`); this module only reads records and hands them over.

Retention bounds what is found: a call whose first records were deleted
(older than ``keep_for`` and covered by a snapshot) has no ladder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import gateway.domain  # noqa: F401 - registers every ALG's events for decoding
from gateway.events import UnknownEvent
from gateway.ladder import CallFilter, CallLister, CallSummary, Ladder, build

from .record import Record
from .segment import iter_records
from .store import Journal


def _records(source: str | os.PathLike | Journal, window: int | None = None) -> Iterator[Record]:
    if isinstance(source, Journal):
        first = source.first_seq
        if window is not None:
            first = max(first, source.head - window + 1)
        return source.read(first)
    return iter_records(Path(source))


# A ladder first looks among an open journal's newest records (a call in
# progress or just ended is there): reading a whole journal runs at ~250,000
# records/s here, so half an hour at 400 calls/s (~19M records) takes over a
# minute. The newest records are taken as holding the whole call when its
# first record is at least MARGIN records into them: what precedes a call's
# start (an H.323 ARQ, an MGCP CRCX) comes within a few records of it.
RECENT = 200_000
MARGIN = 1_000


def ladder(source: str | os.PathLike | Journal, call_id: str) -> Ladder | None:
    """The ladder of the call known as ``call_id`` (see
    :class:`gateway.ladder.CallFilter`), or None when the journal holds no
    start of it. Only the call's own records are decoded."""
    if isinstance(source, Journal) and source.head - source.first_seq + 1 > RECENT:
        first = source.head - RECENT + 1
        found = _ladder(source, call_id, RECENT)
        if found is not None and found.steps and found.steps[0].seq >= first + MARGIN:
            return found
    return _ladder(source, call_id, None)


def _ladder(source: str | os.PathLike | Journal, call_id: str, window: int | None) -> Ladder | None:
    f = CallFilter(call_id)
    picked = []
    for rec in _records(source, window):
        entries = rec.entries()         # a step record holds several events
        wanted = [i for i, (t, p) in enumerate(entries) if f.wants(rec.stream, t, p)]
        if not wanted:
            continue
        try:
            events = rec.events()
        except UnknownEvent:
            # A record this build cannot read (a newer schema): the
            # ladder shows what it can; `gwctl replay` reports such records.
            continue
        picked += [(rec.seq, rec.timestamp, events[i]) for i in wanted if i < len(events)]
    return build(picked)


def calls(source: str | os.PathLike | Journal, *, limit: int | None = None,
          window: int | None = None) -> list[CallSummary]:
    """The calls started in the journal, oldest first (the newest ``limit``
    when given), with when and why each ended. ``window``: of an open
    journal, read only its newest ``window`` records (a page that lists the
    recent calls need not read hours of journal)."""
    lister = CallLister()
    for rec in _records(source, window):
        for t, p in rec.entries():
            if t.endswith(("call_started", "call_ended")):
                lister.see(rec.stream, t, p, rec.timestamp)
    out = lister.calls()
    return out[-limit:] if limit else out
