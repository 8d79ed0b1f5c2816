"""A standby's snapshot is its own state: the standby's state is the fold of
what it stored, so the snapshot thread writes it instead of folding the
journal a second time (journal/checkpoint.py ``SnapshotTaker.catch_up``,
actors/node.py ``_folded_state``). An active node, whose state runs ahead of
its journal, and a node that stepped since its state was made from the
journal, still fold."""

from __future__ import annotations

from gateway import domain
from gateway.nodefile import RetentionSettings
from journal.checkpoint import SnapshotTaker, decode_state, open_at_snapshot
from journal.replay import snapshot_dir
from journal.snapshot import list_snapshots, read_snapshot
from journal.store import Journal
from tests.test_node import CFG, Clock, send
from tests.test_sip_alg import IN, OUT, PH2, invite, request_out, response, sdp
from tests.test_snapshot_retention import events, fill

RET = RetentionSettings(snapshot_every=1_000_000, snapshots_kept=2, keep_for=3600.0, max_disk=1 << 40)


def _calls(node, n: int = 3) -> None:
    for i in range(n):
        key = f"c{i}"
        data = invite().replace(b"a1234", key.encode())
        send(node, OUT, data, key=key)
        send(node, IN, response(200, "OK", body=sdp(PH2, 62002)).replace(b"a1234", key.encode()), key=key)
        send(node, OUT, request_out("ACK", 1, "z9hG4bK2").replace(b"a1234", key.encode()), key=key)


def _fold_of(journal: Journal, seq: int):
    state = domain.EMPTY
    for rec in journal.read(1, seq):
        for ev in rec.events():
            state = domain.apply(state, ev)
    return state


def test_a_standbys_snapshot_is_its_state_and_equals_the_fold_of_its_journal(tmp_path):
    from actors.node import Node
    clock = Clock()
    active = Node("gw-a", CFG, str(tmp_path / "a"), clock=clock, fsync=False, timer_thread=False,
                  retention=RET)
    standby = Node("gw-b", CFG, str(tmp_path / "b"), clock=clock, fsync=False, timer_thread=False,
                   retention=RET)
    active.start()
    standby.start(role="standby")
    try:
        _calls(active)
        standby.on_records(standby.journal.append_frames(active.journal.read_frames(1, 10_000)))
        assert standby._folded_state() == (standby.state, standby.journal.head)
        assert active._folded_state() is None            # ahead of its journal by design
        taken = standby.snapshots.take()
        assert taken is not None and taken["seq"] == standby.journal.head
        taker = standby.snapshots.taker
        assert taker.state is standby.state               # taken as it is, not folded again
        # Still exactly the fold of the records (what a restart would build).
        (seq, path), = list_snapshots(snapshot_dir(standby.journal))[-1:]
        snap = read_snapshot(path)
        assert decode_state(snap.state) == _fold_of(standby.journal, seq)
        # The taker's epoch, time and versions are the records' own.
        last = next(iter(standby.journal.read(seq, seq)))
        assert (taker.epoch, taker.timestamp) == (last.epoch, last.timestamp)
        assert taker.versions_table() == standby.journal.versions_table()
        # The active's snapshot is a fold of its own journal (the same records).
        a_taken = active.snapshots.take()
        assert a_taken is not None
        assert active.snapshots.taker.state is not active.state
        assert active.snapshots.taker.state == decode_state(snap.state)
    finally:
        standby.stop()
        active.stop()


def test_a_node_that_stepped_folds_its_journal_again(tmp_path):
    from actors.node import Node
    clock = Clock()
    node = Node("gw-a", CFG, str(tmp_path / "a"), clock=clock, fsync=False, timer_thread=False,
                retention=RET)
    node.start(role="standby")
    try:
        assert node._folded_state() == (node.state, 0)     # recovered: the fold of nothing
        node._put(type("A", (), {"name": "sip"}), node.state.sip)
        assert node._folded_state() is None                 # a step of its own: no longer a fold
    finally:
        node.stop()


def test_a_folded_state_out_of_reach_is_ignored_and_the_journal_folded(tmp_path):
    with Journal.open(tmp_path / "j", fsync=False) as j:
        fill(j, events(4), t0=1000.0)
        head = j.head
        taker = SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None)
        # Beyond the head (records not stored yet): the fold as usual.
        n = taker.catch_up(folded=lambda: ("not a state", head + 5))
        assert n == head and taker.state == _fold_of(j, head)
        # Behind the taker: ignored too.
        before = taker.state
        assert taker.catch_up(folded=lambda: ("not a state", 1)) == 0 and taker.state is before
        # None: the owner has no fold of its own.
        assert taker.catch_up(folded=lambda: None) == 0


def test_a_restart_from_a_standbys_snapshot_gives_the_same_state(tmp_path):
    from actors.node import Node
    clock = Clock()
    active = Node("gw-a", CFG, str(tmp_path / "a"), clock=clock, fsync=False, timer_thread=False)
    standby = Node("gw-b", CFG, str(tmp_path / "b"), clock=clock, fsync=False, timer_thread=False,
                   retention=RET)
    active.start()
    standby.start(role="standby")
    try:
        _calls(active, 2)
        standby.on_records(standby.journal.append_frames(active.journal.read_frames(1, 10_000)))
        assert standby.snapshots.take() is not None
        _calls(active, 4)                                  # and a tail after the snapshot
        standby.on_records(standby.journal.append_frames(
            active.journal.read_frames(standby.journal.head + 1, 10_000)))
        expected = standby.state
    finally:
        standby.snapshots.stop(final=False)
        standby.snapshots = None
        standby.stop()
        active.stop()
    recovered = open_at_snapshot(str(tmp_path / "b"), domain.apply, domain.EMPTY, fsync=False, freeze=True)
    try:
        assert recovered.snapshot is not None and recovered.state == expected
    finally:
        recovered.journal.close()
