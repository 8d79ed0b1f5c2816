"""gwctl replay: reconstruct a node's calls from its journal, offline.

SIP, MGCP and H.323 calls, registrations, MGCP endpoints and pinholes, each
list sorted by its key so that the same journal prints the same output on
every run (the states' maps iterate in hash order, which varies between
processes). A journal whose first records are missing, or a record the fold
cannot take, is reported (journal.replay); ``--partial`` folds what is
consistent and lists what it skipped.

The text form (ops/replay_text.py) prints the state as tables and, with
``--call``, the call's history: one line per journal record with its time,
event and fields; ``--json`` prints the same data with the events' payloads
as they are."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone


def register(sub) -> None:
    p = sub.add_parser(
        "replay", help="reconstruct calls, registrations and pinholes from a journal, offline",
        description="Fold the journal in JOURNAL_DIR with the same functions the node uses and print "
                    "the state it gives: at the end, or --until a sequence number or a time; "
                    "--call prints one call's state and its history (one line per journal record: time, "
                    "event, its fields). Tables by default, --json for the data. No node needs to run.")
    p.add_argument("journal", metavar="JOURNAL_DIR")
    p.add_argument("--until", metavar="SEQ|TIME",
                   help="stop at this sequence number (an integer) or time (ISO 8601, e.g. "
                        "2026-11-25T14:30:00, UTC unless it says otherwise, or seconds since the epoch "
                        "with a decimal point)")
    p.add_argument("--call", metavar="ID", help="only this call (Call-ID as either side sees it)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--partial", action="store_true",
                   help="fold what is consistent when records are missing or unusable: from the "
                        "first record present, skipping (and listing) each record the state cannot "
                        "take; without it such a journal is an error")
    p.set_defaults(func=run)


def _until(text: str | None) -> tuple[int | None, float | None]:
    if text is None:
        return None, None
    if text.isdigit():
        return int(text), None
    try:
        return None, float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"gwctl replay: --until {text!r} is neither a sequence number nor a time "
                         "(e.g. 1200, or 2026-11-25T14:30:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return None, dt.timestamp()


def run(args) -> int:
    import os

    from gateway import domain
    from gateway.algs import ADAPTERS
    from journal.checkpoint import decode_state
    from journal.replay import JournalGap, Problem, UnusableRecord, replay
    from journal.segment import JournalCorrupt, iter_records

    if not os.path.isdir(args.journal):
        print(f"gwctl replay: {args.journal} is not a directory", file=sys.stderr)
        return 1
    from pathlib import Path

    from journal.segment import list_segments
    if not list_segments(Path(args.journal)):
        print(f"gwctl replay: {args.journal} holds no journal segments (*.seg): is it a node's "
              "journal directory?", file=sys.stderr)
        return 1
    until_seq, until_time = _until(args.until)
    problems: list[Problem] | None = [] if args.partial else None
    stopped: Problem | None = None
    try:
        # From the newest snapshot at or before the target, then the records after it.
        state, last = replay(args.journal, domain.apply, domain.EMPTY, until_seq=until_seq,
                             until_time=until_time, problems=problems, decode_snapshot=decode_state)
    except JournalCorrupt as exc:
        print(f"gwctl replay: the journal is damaged: {exc}", file=sys.stderr)
        return 1
    except JournalGap as exc:
        from journal.replay import snapshot_dir
        from journal.snapshot import list_snapshots
        kept = list_snapshots(snapshot_dir(args.journal))
        if kept and until_seq is not None and until_seq < exc.first:
            print(f"gwctl replay: {args.journal}: record {until_seq} is older than what retention "
                  f"kept (records from {exc.first}, snapshots of records "
                  f"{', '.join(str(s) for s, _ in kept)}): pick --until {kept[0][0]} or later",
                  file=sys.stderr)
            return 1
        print(f"gwctl replay: {args.journal}: {exc}; the calls and registrations those records "
              f"began are unknown, so no state is printed (hint: --partial folds from record "
              f"{exc.first} on and lists the records that need what is missing)", file=sys.stderr)
        return 1
    except UnusableRecord as exc:
        # The state just before the record: a state that existed.
        state, last, stopped = exc.state, exc.last_seq, exc.problem
    out: dict = {"last_seq": last}
    histories = []
    for adapter in ADAPTERS.values():
        tables, history = adapter.replay(getattr(state, adapter.name), args.call)
        out.update(tables)
        histories.append(history)
    if args.call is not None:
        # The call may have ended before the target: its events still tell
        # its story, so they are found by stream rather than from the state.
        evs = []
        for rec in iter_records(args.journal):
            if until_seq is not None and rec.seq > until_seq:
                break
            if until_time is not None and rec.timestamp > until_time:
                break
            if any(h(rec.stream) for h in histories):
                evs += [{"seq": rec.seq, "at": rec.timestamp, "stream": rec.stream, "type": t,
                         "event": p} for t, p in rec.entries()]
        out["events"] = evs
    if problems is not None:
        out["skipped"] = [p._asdict() for p in problems]
    if stopped is not None:
        out["stopped_at"] = stopped._asdict()
    _report(args.journal, problems, stopped, last)
    rc = 1 if stopped is not None else 0
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return rc
    from ops.replay_text import history_lines, state_lines
    from ops.text_table import utc
    last_time = _record_time(args.journal, last)
    at = f" ({utc(last_time)} UTC)" if last_time is not None else ""
    print(f"journal {args.journal}: state after record {last}{at}"
          + (f", call {args.call}" if args.call is not None else ""))
    for line in state_lines(out, one_call=args.call is not None):
        print(line)
    if args.call is not None:
        for line in history_lines(out["events"]):
            print(line)
    return rc


def _record_time(journal: str, seq: int) -> float | None:
    """The time of record ``seq`` (None: no such record, e.g. 0)."""
    from pathlib import Path

    from journal.segment import JournalCorrupt, iter_records
    if seq < 1:
        return None
    try:
        rec = next(iter(iter_records(Path(journal), seq)), None)
    except (JournalCorrupt, OSError, ValueError):
        return None
    return rec.timestamp if rec is not None and rec.seq == seq else None


def _report(journal: str, problems, stopped, last: int) -> None:
    """What the fold skipped or where it stopped, on stderr (stdout holds the state)."""
    for p in problems or ():
        what = f"record {p.seq} ({p.type})" if p.type else "gap"
        print(f"gwctl replay: {journal}: skipped {what}: {p.why}", file=sys.stderr)
    if stopped is not None:
        print(f"gwctl replay: {journal}: stopped at record {stopped.seq} ({stopped.type}): "
              f"{stopped.why}; the state printed is the one after record {last} "
              f"(hint: --partial skips such records and folds the rest)", file=sys.stderr)
