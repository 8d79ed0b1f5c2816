"""A restart folds in runs (journal/fold.py) and in the open's own pass over
the records (journal/checkpoint.py): the state is the one the per-event
``domain.apply`` gives, for the suites' histories and for a journal of the
SIP ALG's real calls, overlapping, with a snapshot in the middle."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import domain
from journal.checkpoint import SnapshotTaker, encode_state, open_at_snapshot
from journal.fold import BatchFold
from journal.segment import iter_records
from journal.store import Journal
from test_journal_sip_replay import sip_histories

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def per_event(events, state=domain.EMPTY):
    for e in events:
        state = domain.apply(state, e)
    return state


@settings(max_examples=80, deadline=None)
@given(history=sip_histories(), data=st.data())
def test_runs_frozen_anywhere_equal_the_event_by_event_fold(history, data):
    cuts = sorted(data.draw(st.sets(st.integers(0, len(history)), max_size=4)))
    fold = BatchFold(domain.EMPTY)
    done = 0
    for cut in cuts + [len(history)]:
        for e in history[done:cut]:
            fold.add(e)
        done = cut
        assert fold.freeze() == per_event(history[:cut])
    assert encode_state(fold.state, canonical=True) == encode_state(per_event(history), canonical=True)


def real_calls_journal(path: Path, calls: int) -> None:
    """Overlapping calls of the real SIP ALG's events (bench/bench_snapshots.py's generator)."""
    from bench_snapshots import append_overlapping_calls
    with Journal.open(path, fsync=False, segment_bytes=64 << 10) as j:
        append_overlapping_calls(j, calls)


def test_snapshot_and_tail_of_real_calls_equal_the_whole_journal_folded_event_by_event(tmp_path):
    path = tmp_path / "j"
    real_calls_journal(path, 300)
    records = list(iter_records(path))
    full = per_event(e for r in records for e in r.events())
    assert full.sip.calls                       # calls still live at the end
    with Journal.open(path, fsync=False) as j:
        taker = SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None, [])
        assert taker.catch_up(len(records) * 2 // 3, pause_every=7) == len(records) * 2 // 3
        mid = per_event(e for r in records[:len(records) * 2 // 3] for e in r.events())
        assert taker.state == mid
        taker.write()
    rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.snapshot is not None and rec.folded == len(records) - len(records) * 2 // 3
        assert rec.state == full and rec.seq == len(records)
        assert encode_state(rec.state, canonical=True) == encode_state(full, canonical=True)
    finally:
        rec.journal.close()
    # Without a snapshot: the whole journal folded in the open's pass.
    rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False,
                           snapshots=tmp_path / "no-snapshots")
    try:
        assert rec.snapshot is None and rec.folded == len(records) and rec.state == full
    finally:
        rec.journal.close()


def test_another_apply_is_folded_event_by_event(tmp_path):
    path = tmp_path / "j"
    real_calls_journal(path, 20)
    seen = []

    def apply(state, e):
        seen.append(e.TYPE)
        return domain.apply(state, e)
    rec = open_at_snapshot(path, apply, domain.EMPTY, fsync=False)
    try:
        records = list(iter_records(path))
        assert rec.folded == len(records)                  # records folded
        assert len(seen) == sum(len(r.events()) for r in records) > len(records)   # a step's events each
    finally:
        rec.journal.close()


def test_replay_in_runs_equals_replay_event_by_event(tmp_path):
    from journal.replay import replay
    path = tmp_path / "j"
    real_calls_journal(path, 120)
    records = list(iter_records(path))
    one_by_one = lambda s, e: domain.apply(s, e)  # noqa: E731 - another apply: event by event
    for until in (None, len(records) // 2, 1):
        assert replay(path, domain.apply, domain.EMPTY, until_seq=until) == \
            replay(path, one_by_one, domain.EMPTY, until_seq=until)
    stream = records[0].stream
    assert replay(path, domain.apply, domain.EMPTY, stream=stream) == \
        replay(path, one_by_one, domain.EMPTY, stream=stream)


def test_replay_in_runs_reports_an_unusable_record_as_event_by_event_does(tmp_path):
    import pytest
    from gateway.sip import events as sip_ev
    from journal.replay import UnusableRecord, replay
    from test_replication_harness import call_events
    evs = call_events(1, activity=2) + [
        sip_ev.CallActivity(key="no-such-call", at=1.0, signalling_deadline=2.0, session_expires=None)] \
        + call_events(2, activity=1)
    with Journal.open(tmp_path / "j", fsync=False) as j:
        j.append_batch([(e, 1000.0) for e in evs], epoch=1)
    got = []
    for apply in (domain.apply, lambda s, e: domain.apply(s, e)):
        with pytest.raises(UnusableRecord) as err:
            replay(tmp_path / "j", apply, domain.EMPTY)
        got.append((err.value.problem, err.value.state, err.value.last_seq))
    assert got[0] == got[1] and got[0][2] == 3
