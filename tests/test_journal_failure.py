"""A journal that can no longer be written (a failed write or fsync marks it
failed for good): the messages whose events it refused are dropped, never
forwarded, and an active node with a standby hands its calls over."""

from __future__ import annotations

import threading

from actors.journal_writer import JournalWriter
from actors.node import JOURNAL_FAILED_DROP, Node
from journal.store import JournalFailed
from tests.test_node import CFG, Clock, send, wait_for
from tests.test_sip_alg import OUT, invite


class RefusingJournal:
    head = 0

    def append_batch(self, items, epoch, *, written=None):
        raise JournalFailed("fsync failed: EIO")


def test_the_writer_answers_none_and_reports_the_failure():
    failures = []
    w = JournalWriter(RefusingJournal(), epoch=lambda: 1, on_failed=failures.append)
    w.start()
    try:
        done = threading.Event()
        got = []
        w.submit(["an event"], lambda recs: (got.append(recs), done.set()))
        assert done.wait(5)
        assert got == [None] and w.failures == 1
        assert len(failures) == 1 and isinstance(failures[0], JournalFailed)
        # Nothing to write completes as before.
        assert w.flush(5)
    finally:
        w.stop()


def _node(tmp_path):
    node = Node("gw-a", CFG, str(tmp_path / "j"), clock=Clock(), fsync=False, timer_thread=False)
    node.start()
    return node


def _fail_appends(node):
    def refuse(items, epoch):
        raise JournalFailed("fsync failed: EIO")
    node.journal.append_batch = refuse


def test_a_message_whose_events_were_not_written_is_dropped(tmp_path):
    node = _node(tmp_path)
    try:
        send(node, OUT, invite(call="ok"), key="ok")
        head = node.journal.head
        _fail_appends(node)
        out = send(node, OUT, invite(call="lost"), key="lost")
        assert out.reason == JOURNAL_FAILED_DROP
        assert node.counters["journal_failures"] == 1
        assert node.drop_reasons[JOURNAL_FAILED_DROP] == 1
        assert node.journal.head == head
        # A lone node has nobody to hand over to: it stays active.
        assert node.role.role == "active"
    finally:
        node.stop()


class FakeReplicator:
    def __init__(self) -> None:
        self.handovers = 0

    def handover(self) -> None:
        self.handovers += 1


def test_an_active_node_with_a_standby_hands_over_once(tmp_path):
    node = _node(tmp_path)
    try:
        node.replicator = FakeReplicator()
        _fail_appends(node)
        out = send(node, OUT, invite(call="c1"), key="c1")
        assert out.reason == JOURNAL_FAILED_DROP
        wait_for(lambda: node.replicator.handovers == 1)
        # It stopped forwarding for the handover; the standby's TAKEN would
        # complete it. A second failure asks nothing more.
        assert not node.forwarding
        node._journal_failed(JournalFailed("again"))
        assert node.replicator.handovers == 1 and node.counters["journal_failures"] == 2
    finally:
        node.replicator = None
        node.stop()


class GatedJournal:
    """Records what it is asked to append, holding the first append until
    released (so steps can queue up behind it)."""

    def __init__(self) -> None:
        self.head = 0
        self.appended: list[tuple[list, int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def append_batch(self, items, epoch, *, written=None):
        self.entered.set()
        assert self.gate.wait(5)
        self.appended.append(([ev for ev, _t in items], epoch))
        out = []
        for ev, _t in items:
            self.head += 1
            out.append((self.head, ev))
        return out


def test_a_step_is_written_only_in_the_epoch_it_was_computed_in():
    """An active node demoted between a step and its write: the step's events
    do not enter the journal under the peer's newer epoch (its packet is not
    forwarded); steps of the new epoch are written."""
    epoch = [1]
    j = GatedJournal()
    w = JournalWriter(j, epoch=lambda: epoch[0])
    w.start()
    try:
        got: dict[str, object] = {}
        done = {k: threading.Event() for k in ("first", "stale", "fresh")}

        def cb(name):
            return lambda recs: (got.__setitem__(name, recs), done[name].set())

        w.submit(["e1"], cb("first"))                # written in epoch 1
        assert j.entered.wait(5)
        w.submit(["e2"], cb("stale"))                # computed in epoch 1 ...
        epoch[0] = 2                                 # ... demoted before its write
        w.submit(["e3"], cb("fresh"))                # computed in epoch 2
        j.gate.set()
        for e in done.values():
            assert e.wait(5)
        assert j.appended == [(["e1"], 1), (["e3"], 2)]
        assert got["stale"] is None and got["first"] and got["fresh"]
        assert w.stale_steps == 1 and w.failures == 0
    finally:
        j.gate.set()
        w.stop()
