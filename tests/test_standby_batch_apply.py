"""The standby folds a received batch in runs and mirrors its net effect
(actors/node.py ``on_records``): after every batch its state, entities,
timers, ``show`` and counters equal those of folding and mirroring the same
records one event at a time (the standby's apply before batching, kept here
as the reference), for random interleavings of the real SIP ALG's calls,
generated SIP histories and the MGCP ALG's events, split into random batches.
A batch with an event that cannot be folded leaves the state the per-event
fold leaves: every event before it folded, nothing after, the batch not
applied, the entities not mirrored."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from actors.node import Node
from gateway import domain
from gateway.config.model import Config
from journal.record import Record
from test_journal_sip_replay import sip_histories
from test_node import Clock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

CFG = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())
_dirs = itertools.count()


def per_event_on_records(node: Node, records: list) -> None:
    """The standby's apply as it was before batches were folded in runs: each
    event folded under the state lock, each mirrored in turn."""
    events = [e for r in records for e in r.events()]
    with node.state_lock:
        for e in events:
            node._fold(e)
        node.applied = records[-1].seq if records else node.applied
    node._mirror(events)
    node._datapath_follow(events)


def as_records(events, first_seq: int) -> list[Record]:
    versions: dict[str, int] = {}
    out = []
    for i, e in enumerate(events):
        versions[e.stream] = versions.get(e.stream, 0) + 1
        out.append(Record.of(e, seq=first_seq + i, epoch=1, timestamp=1000.0 + i, version=versions[e.stream]))
    return out


def observed(node: Node) -> dict:
    """What a standby shows of itself: state, entities, timers, show, counters."""
    return {"state": node.state, "applied": node.applied,
            "entities": sorted(str(k) for k, ref in node.directory.items() if ref.is_alive()),
            "timers": sorted((str(s.key), s.deadline) for s in node.timers.specs()),
            "calls": node.show("calls"), "events": node.counters["events"]}


# ------------------------------------------------------------ event sources

from bench_snapshots import CallFactory  # noqa: E402
from gateway import events as gev  # noqa: E402
from test_mgcp_alg_replay import events_of as mgcp_events, ops as mgcp_ops  # noqa: E402

_factory = CallFactory()


def real_calls(draw) -> list:
    """Whole calls of the real SIP ALG (bench/bench_snapshots.py's template:
    INVITE/SDP .. BYE/200 and the teardown timer), interleaved, some unfinished."""
    n = draw(st.integers(0, 4))
    parts = {i: [0, 1, 2][:draw(st.integers(1, 3))] for i in range(n)}
    out = []
    while any(parts.values()):
        i = draw(st.sampled_from(sorted(i for i, p in parts.items() if p)))
        part = parts[i].pop(0)
        out += [e for t, sc, st_, pl, _v in _factory.rows(part, i + 1) for e in gev.expand(gev.decode(t, sc, pl, st_))]
    return out


@st.composite
def histories(draw) -> list:
    """Real calls, a generated SIP history and MGCP events, merged in a
    random order that keeps each source's own order."""
    sources = [real_calls(draw), draw(sip_histories()),
               mgcp_events(draw(st.lists(mgcp_ops, max_size=25)))]
    out = []
    while any(sources):
        src = draw(st.sampled_from([s for s in sources if s]))
        out.append(src.pop(0))
    return out


# -------------------------------------------------------------------- tests

def _pair(tmp_path):
    base = tmp_path / f"run{next(_dirs)}"
    clock = Clock()
    nodes = [Node(name, CFG, str(base / name), clock=clock, fsync=False, timer_thread=False)
             for name in ("batched", "per-event")]
    for n in nodes:
        n.start(role="standby")
    return nodes


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_batches_applied_equal_the_per_event_apply_after_every_batch(tmp_path, history, data):
    records = as_records(history, 1)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(records) - 1)), max_size=6)))
    batched, reference = _pair(tmp_path)
    try:
        done = 0
        for cut in [c for c in cuts if c < len(records)] + [len(records)]:
            batch = records[done:cut]
            done = cut
            batched.on_records(batch)
            per_event_on_records(reference, batch)
            assert observed(batched) == observed(reference)
        expected = domain.EMPTY
        for e in history:
            expected = domain.apply(expected, e)
        assert batched.state == expected and batched.applied == len(records)
    finally:
        for n in (batched, reference):
            n.stop()


def test_a_batch_with_an_event_that_cannot_be_folded_stops_where_the_per_event_fold_stops(tmp_path):
    from gateway.sip import events as sip_ev
    from test_replication_harness import call_events
    good = call_events(1, activity=2)
    bad = sip_ev.CallActivity(key="no-such-call", at=1.0, signalling_deadline=2.0, session_expires=None)
    after = call_events(2, activity=1)
    first, second = as_records(good[:2], 1), as_records(good[2:] + [bad] + after, 3)
    batched, reference = _pair(tmp_path)
    try:
        batched.on_records(first)
        per_event_on_records(reference, first)
        errors = []
        for node, apply in ((batched, Node.on_records), (reference, per_event_on_records)):
            with pytest.raises(Exception) as err:
                apply(node, second)
            errors.append((type(err.value), str(err.value)))
        assert errors[0] == errors[1]
        assert observed(batched) == observed(reference)
        # Every event before the bad one folded, none after; the batch not applied.
        expected = domain.EMPTY
        for e in good:
            expected = domain.apply(expected, e)
        assert batched.state == expected and batched.applied == 2
        # The next batch from the active is folded as usual.
        nxt = as_records(call_events(3, activity=1), 100)
        batched.on_records(nxt)
        per_event_on_records(reference, nxt)
        assert observed(batched) == observed(reference)
    finally:
        for n in (batched, reference):
            n.stop()


def test_a_call_ended_and_its_entities_reentered_in_one_batch_leave_the_per_event_entities(tmp_path):
    """An entity ended and entered again in the same batch (a stream reused
    after its end) is a fresh entry, as event by event."""
    f = _factory
    call = [gev.decode(t, sc, pl, s) for part in (0, 1, 2) for t, sc, s, pl, _v in f.rows(part, 7)]
    again = [gev.decode(t, sc, pl, s) for t, sc, s, pl, _v in f.rows(0, 7)]
    records = as_records(call + again, 1)
    batched, reference = _pair(tmp_path)
    try:
        # Timers of the call's entities (as a node arms them when it is
        # active) are cancelled with the entities; another's stays.
        for node in (batched, reference):
            for i, stream in enumerate(sorted({e.stream for e in call}) + ["call/another"]):
                node.timers.schedule(stream, 5000.0 + i, None)
        batched.on_records(records)
        per_event_on_records(reference, records)
        assert observed(batched) == observed(reference)
        assert batched.sip.calls and batched.directory.count("entity") > 0
        assert [s.key for s in batched.timers.specs()] == ["call/another"]
    finally:
        for n in (batched, reference):
            n.stop()
