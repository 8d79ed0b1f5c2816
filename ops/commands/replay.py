"""gwctl replay: reconstruct a node's calls from its journal, offline."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone


def register(sub) -> None:
    p = sub.add_parser(
        "replay", help="reconstruct calls, registrations and pinholes from a journal, offline",
        description="Fold the journal in JOURNAL_DIR with the same functions the node uses and print "
                    "the state it gives: at the end, or --until a sequence number or a time; "
                    "--call prints one call's state and its events. No node needs to run.")
    p.add_argument("journal", metavar="JOURNAL_DIR")
    p.add_argument("--until", metavar="SEQ|TIME",
                   help="stop at this sequence number (an integer) or time (ISO 8601, e.g. "
                        "2026-11-25T14:30:00, UTC unless it says otherwise, or seconds since the epoch "
                        "with a decimal point)")
    p.add_argument("--call", metavar="ID", help="only this call (Call-ID as either side sees it)")
    p.add_argument("--json", action="store_true", help="print JSON")
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
    from journal.replay import replay
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
    try:
        state, last = replay(args.journal, domain.apply, domain.EMPTY, until_seq=until_seq,
                             until_time=until_time)
    except JournalCorrupt as exc:
        print(f"gwctl replay: the journal is damaged: {exc}", file=sys.stderr)
        return 1
    sip = state.sip
    calls = [c for c in sip.calls.values()
             if args.call is None or args.call in (c.call_id, c.public_call_id, c.key)]
    out = {
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
        "pinhole_list": [{"id": p.id, "kind": p.kind, "dst": f"{p.dst[0]}:{p.dst[1]}",
                          "to": f"{p.to[0]}:{p.to[1]}" if p.to else None}
                         for p in h323.calls[k].pinholes.values()]}
        for k in h323.calls if args.call is None or args.call == k]
    if args.call is None:
        out["h323_registrations"] = [{"public": f"{r.public[0]}:{r.public[1]}",
                                      "private": f"{r.private[0]}:{r.private[1]}",
                                      "expires_at": r.expires_at} for r in h323.registrations.values()]
    if args.call is None:
        out["registrations"] = [{"public": f"{r.public_ip}:{r.public_port}",
                                 "private": f"{r.private_ip}:{r.private_port}",
                                 "expires_at": r.expires_at} for r in sip.registrations.values()]
    else:
        # The call may have ended before the target: its events still tell its story,
        # so they are found by stream (call/<Call-ID>;<tag>) rather than from the state.
        streams = {f"call/{c.key}" for c in calls}
        prefix = f"call/{args.call};"
        evs = []
        for rec in iter_records(args.journal):
            if until_seq is not None and rec.seq > until_seq:
                break
            if until_time is not None and rec.timestamp > until_time:
                break
            if rec.stream in streams or rec.stream.startswith(prefix) or rec.stream == f"h323-call/{args.call}":
                evs.append({"seq": rec.seq, "at": rec.timestamp, "type": rec.type, "event": rec.payload})
        out["events"] = evs
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    print(f"journal {args.journal}: state after seq {last}")
    print(f"{len(out['calls'])} call(s)")
    for c in out["calls"]:
        print(f"  {c['call_id']}  {c['phase']}  {c['mode']}  private={c['private']} alg={c['alg']}  "
              f"media={len(c['media'])} pinholes={len(c['pinholes'])}")
    for r in out.get("registrations", []):
        print(f"  registration {r['public']} -> {r['private']}")
    print(f"{len(out['h323_calls'])} H.323 call(s)")
    for c in out["h323_calls"]:
        print(f"  {c['call']}  {c['phase']}  connection={c['connection'] or '-'}  "
              f"h245={','.join(c['h245']) or '-'}  media={len(c['media'])} pinholes={c['pinholes']}")
    for r in out.get("h323_registrations", []):
        print(f"  H.323 registration {r['public']} -> {r['private']}")
    for e in out.get("events", []):
        print(f"  #{e['seq']} {e['at']:.3f} {e['type']} {e['event']}")
    return 0
