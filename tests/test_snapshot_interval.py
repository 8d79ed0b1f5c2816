"""snapshot_interval: a snapshot also once that long has passed since the
last one with any new event (actors/snapshots.py), so the tail a restart
folds is bounded by time as well as by the count ``snapshot_every``."""

from __future__ import annotations

import pytest

from actors.snapshots import SnapshotService
from gateway.nodefile import NodeFileError, RetentionSettings, parse_node_file
from journal.store import Journal
from tests.test_snapshot_retention import events, fill, taker_for


class Ticks:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def service(j: Journal, interval: float | None, ticks: Ticks) -> SnapshotService:
    return SnapshotService(taker_for(j), RetentionSettings(snapshot_every=100_000, snapshots_kept=2,
                                                           keep_for=60.0, max_disk=1 << 40,
                                                           snapshot_interval=interval),
                           clock=lambda: 1e9, monotonic=ticks)


def test_due_by_time_with_new_events_only_and_counted_from_the_last_snapshot(tmp_path):
    ticks = Ticks()
    with Journal.open(tmp_path / "j", fsync=False) as j:
        svc = service(j, 8.0, ticks)
        ticks.t += 9
        assert not svc.due()                 # nothing journaled: nothing to snapshot
        fill(j, events(5), t0=1000.0)
        assert svc.due()                     # 20 events, far below snapshot_every, 9 s on
        assert svc.take() is not None
        fill(j, events(5), t0=2000.0)
        ticks.t += 7.9
        assert not svc.due()                 # 7.9 s since that snapshot
        ticks.t += 0.2
        assert svc.due()


def test_without_an_interval_only_the_count_makes_a_snapshot_due(tmp_path):
    ticks = Ticks()
    with Journal.open(tmp_path / "j", fsync=False) as j:
        svc = service(j, None, ticks)
        fill(j, events(5), t0=1000.0)
        ticks.t += 1e6
        assert not svc.due()


def test_node_file_snapshot_interval():
    base = 'node = "a"\nconfig = "c"\njournal = "j"\n'
    assert parse_node_file(base).retention.snapshot_interval is None
    s = parse_node_file(base + '[journal_retention]\nsnapshot_interval = "8s"\n')
    assert s.retention.snapshot_interval == 8.0
    with pytest.raises(NodeFileError, match="snapshot_interval.*a duration such as"):
        parse_node_file(base + '[journal_retention]\nsnapshot_interval = 8\n', "n.toml")
