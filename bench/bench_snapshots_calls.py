"""The calls bench/bench_snapshots.py writes: one real call through the SIP
ALG as a template, copied with each call's own Call-ID as journal records,
and the overlapping calls other benchmarks and tests reuse. Imported through
bench_snapshots.py, which puts the project and tests/ on ``sys.path``."""

from __future__ import annotations

from gateway.config.model import SipSettings
from gateway.events import in_steps
from gateway.sip.alg import EMPTY as SIP_EMPTY, media_activity, on_timer, step
from journal.record import Record
from journal.store import Journal


def template_steps() -> list[tuple[int, list]]:
    """``(part, events)`` of each step of one call through the real SIP ALG:
    the five messages of the setup (part 0), two media refreshes (part 1),
    BYE, its 200 OK and the teardown timer (part 2)."""
    from test_sip_alg import IN, OUT, PH2, invite, request_out, response, sdp
    s = SipSettings()
    st, t = SIP_EMPTY, 100.0
    steps = []
    for ctx, msg in [(OUT, invite()), (IN, response(100, "Trying")), (IN, response(180, "Ringing")),
                     (IN, response(200, "OK", body=sdp(PH2, 62002))),
                     (OUT, request_out("ACK", 1, "z9hG4bKack"))]:
        r = step(st, ctx, msg, t, s)
        st, t = r.state, t + 0.2
        steps.append((0, list(r.events)))
    for g in sorted(st.group_index)[:2]:
        r = media_activity(st, g, t + 30, s)
        st = r.state
        steps.append((1, list(r.events)))
    for ctx, msg in [(OUT, request_out("BYE", 2, "z9hG4bKbye")),
                     (IN, response(200, "OK", method="BYE", cseq=2, branch="z9hG4bKbye"))]:
        r = step(st, ctx, msg, t + 60, s)
        st = r.state
        steps.append((2, list(r.events)))
    (key,) = st.calls
    r = on_timer(st, f"call/{key}", t + 600, s)
    steps.append((2, list(r.events)))
    assert not r.state.calls, "the template call did not end"
    return steps


def template_call() -> tuple[list, list, list]:
    """(setup, media, teardown) events of one call through the real SIP ALG."""
    parts: tuple[list, list, list] = ([], [], [])
    for part, events in template_steps():
        parts[part].extend(events)
    return parts


class CallFactory:
    """The template's records with a call's own Call-ID (hence its own streams,
    pinhole and group ids). Built as records, not events: the generator
    must run many times faster than the day it writes. A record per step, as
    the journal writer writes them (``in_steps``), or with ``per_event`` a
    record per event (journals written before step records)."""

    def __init__(self, per_event: bool = False) -> None:
        steps = template_steps()
        self.parts = template_call()
        self.setup, self.media, self.teardown = self.parts
        self.call_id = self.setup[0].call_id.split("@")[0]
        # (type, schema, stream, payload, version) per record, per part
        versions: dict[str, int] = {}
        self.templates = [[], [], []]
        for part, events in steps:
            for e in (events if per_event else in_steps(events)):
                versions[e.stream] = versions.get(e.stream, 0) + 1
                self.templates[part].append((e.TYPE, e.SCHEMA, e.stream, e.to_payload(), versions[e.stream]))
        self.records_per_call = sum(len(t) for t in self.templates)
        self.events_per_call = sum(len(p) for p in self.parts)

    def _rewrite(self, value, new: str):
        if type(value) is str:
            return value.replace(self.call_id, new) if self.call_id in value else value
        if type(value) in (list, tuple):
            return type(value)(self._rewrite(v, new) for v in value)
        return value

    def rows(self, part: int, i: int) -> list[tuple]:
        new = f"{i:x}-{self.call_id}"
        return [(t, sc, st.replace(self.call_id, new), {k: self._rewrite(v, new) for k, v in pl.items()}, ver)
                for t, sc, st, pl, ver in self.templates[part]]


def append_rows(j: Journal, rows: list[tuple], ts: float) -> None:
    """Append generated rows as one batch, through the journal's own checks."""
    seq = j.head
    records = []
    for t, sc, st, pl, ver in rows:
        seq += 1
        records.append(Record(seq, 1, ts, st, ver, t, sc, pl))
    j.append_records(records)


def append_overlapping_calls(j: Journal, calls: int, per_event: bool = False) -> None:
    """``calls`` overlapping calls, one a second: each second a call starts,
    the one started 2 s earlier gets its middle part (answer, media) and the
    one from 4 s earlier ends; the calls of the last 4 s are still live at
    the end. A record per step (``per_event``: per event)."""
    f = CallFactory(per_event)
    pending: dict[int, list] = {}
    for sec in range(calls):
        rows = pending.pop(sec, []) + f.rows(0, sec + 1)
        pending.setdefault(sec + 2, []).extend(f.rows(1, sec + 1))
        pending.setdefault(sec + 4, []).extend(f.rows(2, sec + 1))
        append_rows(j, rows, 1000.0 + sec)
