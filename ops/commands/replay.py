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
    sip = state.sip
    calls = sorted((c for c in sip.calls.values()
                    if args.call is None or args.call in (c.call_id, c.public_call_id, c.key)),
                   key=lambda c: c.key)
    out: dict = {
        "last_seq": last,
        "calls": [{"call": c.key, "call_id": c.call_id, "public_call_id": c.public_call_id,
                   "phase": c.phase, "mode": c.mode, "private": c.private_ip, "alg": c.alg_ip,
                   "started_at": c.started_at,
                   "media": [{"group": g.group, "dst": f"{g.dst_ip}:{g.dst_port}",
                              "public": f"{g.public_ip}:{g.public_port}" if g.public_ip else None}
                             for g in c.groups],
                   "pinholes": [{"id": p.id, "kind": p.kind, "dst": f"{p.dst[0]}:{p.dst[1]}",
                                 "to": f"{p.to[0]}:{p.to[1]}" if p.to else None} for p in c.pinholes]}
                  for c in calls],
    }
    # H.323 calls (manual ch. 1), keyed by their H.225.0 callIdentifier.
    from actors.algs import H323Adapter
    h323 = state.h323
    out["h323_calls"] = [H323Adapter.summary(h323, k) | {
        "pinhole_list": [{"id": p.id, "kind": p.kind, "group": p.group, "dst": f"{p.dst[0]}:{p.dst[1]}",
                          "to": f"{p.to[0]}:{p.to[1]}" if p.to else None}
                         for p in sorted(h323.calls[k].pinholes.values(), key=lambda p: p.id)]}
        for k in sorted(h323.calls) if args.call is None or args.call == k]
    mgcp = state.mgcp
    mgcp_calls = sorted((c for c in mgcp.calls.values() if args.call in (None, c.call_id)),
                        key=lambda c: (c.gateway, c.call_id))
    out["mgcp_calls"] = [_mgcp_call(c) for c in mgcp_calls]
    if args.call is None:
        out["h323_registrations"] = sorted(
            ({"public": f"{r.public[0]}:{r.public[1]}", "private": f"{r.private[0]}:{r.private[1]}",
              "expires_at": r.expires_at} for r in h323.registrations.values()),
            key=lambda r: (r["public"], r["private"]))
        out["registrations"] = sorted(
            ({"public": f"{r.public_ip}:{r.public_port}", "private": f"{r.private_ip}:{r.private_port}",
              "expires_at": r.expires_at} for r in sip.registrations.values()),
            key=lambda r: (r["public"], r["private"]))
        out["mgcp_endpoints"] = [
            {"gateway": e.gateway, "endpoint": e.name,
             "in_service": e.out_of_service_at is None,
             "out_of_service_at": e.out_of_service_at, "restart_method": e.restart_method,
             "notified_entity": e.notified_entity}
            for e in sorted(mgcp.endpoints.values(), key=lambda e: (e.gateway, e.name))]
        out["mgcp_transactions"] = len(mgcp.txns)
    else:
        # The call may have ended before the target: its events still tell its story,
        # so they are found by stream (call/<Call-ID>;<tag>) rather than from the state.
        streams = {f"call/{c.key}" for c in calls} | {c.stream for c in mgcp_calls}
        prefix = f"call/{args.call};"
        evs = []
        for rec in iter_records(args.journal):
            if until_seq is not None and rec.seq > until_seq:
                break
            if until_time is not None and rec.timestamp > until_time:
                break
            if rec.stream in streams or rec.stream.startswith(prefix) or rec.stream == f"h323-call/{args.call}" \
                    or (rec.stream.startswith("mgcp-call/") and rec.stream.endswith(f"/{args.call}")):
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


def _mgcp_call(c) -> dict:
    return {"gateway": c.gateway, "call_id": c.call_id, "started_at": c.started_at,
            "connections": sorted(c.connections),
            "media": [{"group": g.group, "connection": g.conn_id, "dst": f"{g.dst_ip}:{g.dst_port}",
                       "public": f"{g.public_ip}:{g.public_port}" if g.public_ip else None}
                      for g in sorted(c.groups.values(), key=lambda g: g.group)],
            "pinholes": [{"id": p.id, "direction": p.direction, "dst": f"{p.dst[0]}:{p.dst[1]}",
                          "to": f"{p.to[0]}:{p.to[1]}" if p.to else None}
                         for p in sorted(c.pinholes.values(), key=lambda p: p.id)]}


def _report(journal: str, problems, stopped, last: int) -> None:
    """What the fold skipped or where it stopped, on stderr (stdout holds the state)."""
    for p in problems or ():
        what = f"record {p.seq} ({p.type})" if p.type else "gap"
        print(f"gwctl replay: {journal}: skipped {what}: {p.why}", file=sys.stderr)
    if stopped is not None:
        print(f"gwctl replay: {journal}: stopped at record {stopped.seq} ({stopped.type}): "
              f"{stopped.why}; the state printed is the one after record {last} "
              f"(hint: --partial skips such records and folds the rest)", file=sys.stderr)
