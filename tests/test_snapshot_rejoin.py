"""A standby rejoins after its active's retention deleted the records it
missed (actors/replication_snapshots.py, "rejoin after retention"; journal/replication.py
SNAP/SNAPACK): two real nodes over loopback TCP; the standby receives the
active's snapshot in bounded chunks, starts its journal at the snapshot's
record, is streamed the rest, and ends with the active's state and bytes."""

from __future__ import annotations

import threading

from actors.node import Node
from actors.replication import Replicator
from gateway import domain
from gateway.config.model import Config
from gateway.nodefile import RetentionSettings
from journal import replication as proto
from journal.checkpoint import decode_state
from journal.replay import replay, snapshot_dir
from journal.snapshot import list_snapshots
from test_replication_harness import call_events, free_port, wait_for

CFG = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())
RETENTION = RetentionSettings(snapshot_every=10**9, snapshots_kept=2, keep_for=0.001, max_disk=1 << 40)


def node(name: str, tmp, ports, peer: str) -> Node:
    def factory(n: Node) -> Replicator:
        return Replicator(node_id=name, bind=f"tcp://127.0.0.1:{ports[name]}",
                          peer=f"tcp://127.0.0.1:{ports[peer]}", journal=n.journal,
                          on_records=n.on_records, on_trigger=n.on_trigger, keys=None,
                          hb_interval=0.05, hb_threshold=6, mode="async")
    return Node(name, CFG, str(tmp / name), replicator_factory=factory, fsync=False,
                timer_thread=False, retention=RETENTION, segment_bytes=4096)


def submit(n: Node, events) -> None:
    done = threading.Event()
    n.writer.submit(list(events), lambda _recs: done.set())
    assert done.wait(5)


def standby_left_behind(tmp_path, ports, calls: int) -> tuple[Node, Node, int]:
    """Node a active with b as its standby through ``calls`` calls, then b
    stopped: ``(a, b, the record b left off at)``; a is still running."""
    a = node("a", tmp_path, ports, "b")
    b = node("b", tmp_path, ports, "a")
    a.start()
    try:
        assert wait_for(lambda: a.role.role == "active", timeout=5)
        b.start()
        for i in range(calls):
            submit(a, call_events(i, activity=2))
        assert wait_for(lambda: b.applied == a.journal.head, timeout=10)
        return a, b, b.journal.head
    except BaseException:
        a.stop()
        raise
    finally:
        b.stop()


def test_standby_behind_the_active_retention_takes_its_snapshot_then_the_tail(tmp_path, monkeypatch):
    # Small chunks and window, so the transfer takes many round trips.
    monkeypatch.setattr(proto, "SNAP_CHUNK", 2048)
    monkeypatch.setattr(proto, "SNAP_WINDOW", 8192)
    ports = {"a": free_port(), "b": free_port()}
    a, b, left_at = standby_left_behind(tmp_path, ports, 20)
    try:
        # What b misses: many calls, snapshots, and retention deleting the segments.
        for i in range(20, 400):
            submit(a, call_events(i, activity=2))
        a.snapshots.take()
        for i in range(400, 450):
            submit(a, call_events(i, activity=2))
        a.snapshots.take()
        for i in range(450, 470):                       # a tail after the newest snapshot
            submit(a, call_events(i, activity=2))
        assert a.journal.first_seq > left_at + 1, "retention removed what the standby missed"
        snap_seq = list_snapshots(snapshot_dir(a.journal))[-1][0]

        b = node("b", tmp_path, ports, "a")
        assert b.journal.head == left_at
        b.start()
        assert wait_for(lambda: b.applied == a.journal.head, timeout=30)
        assert b.replicator.snapshots_received == 1 and a.replicator.snapshots_sent == 1
        assert b.journal.first_seq == snap_seq
        assert b.journal.read_frames(snap_seq, 10**6) == a.journal.read_frames(snap_seq, 10**6)
        full, last = replay(a.journal, domain.apply, domain.EMPTY, decode_snapshot=decode_state)
        assert last == a.journal.head and b.state == full
        # Live records go on flowing to it.
        for i in range(470, 480):
            submit(a, call_events(i, activity=2))
        assert wait_for(lambda: b.applied == a.journal.head, timeout=10)
        # It restarts from its own snapshots: the one it received, and the
        # one of its head it took when it stopped.
        head = b.journal.head
        b.stop()
        assert [seq for seq, _ in list_snapshots(snapshot_dir(tmp_path / "b"))] == [snap_seq, head]
        b = node("b", tmp_path, ports, "a")
        assert b.recovery["snapshot"] == f"{head:020d}.snap" and b.journal.first_seq == snap_seq
        assert b.state == replay(a.journal, domain.apply, domain.EMPTY, decode_snapshot=decode_state)[0]
    finally:
        b.stop()
        a.stop()


def test_a_standby_receiving_the_snapshot_does_not_ask_for_it_again(tmp_path, monkeypatch, caplog):
    # While the chunks arrive the standby says no HELLO, even where its
    # state would say one is due (a role change or a refusal clears
    # `_helloed`), and the active does not answer its heartbeats with "hello
    # again" (it is out of the sender's peers until it HELLOs from the
    # snapshot's record): a HELLO would start the transfer over, the standby
    # install the first one and then be sent the snapshot again.
    monkeypatch.setattr(proto, "SNAP_CHUNK", 1024)
    monkeypatch.setattr(proto, "SNAP_WINDOW", 2048)
    ports = {"a": free_port(), "b": free_port()}
    a, b, _left_at = standby_left_behind(tmp_path, ports, 1)
    try:
        for i in range(1, 300):
            submit(a, call_events(i, activity=2))
        a.snapshots.take()
        for i in range(300, 310):
            submit(a, call_events(i, activity=2))
        b = node("b", tmp_path, ports, "a")
        b.start()
        r = b.replicator
        assert wait_for(lambda: r._snap_recv is not None, timeout=10)
        for _ in range(40):                     # HELLO due at each heartbeat, while chunks arrive
            if r._snap_recv is None:
                break
            r._helloed = False
            r._wake()
            threading.Event().wait(0.03)
        assert wait_for(lambda: b.applied == a.journal.head, timeout=30)
        assert wait_for(lambda: a.replicator.snapshots_sent == 1, timeout=5)
        assert r.snapshots_received == 1
        sends = [m for m in caplog.messages if "sending it our snapshot" in m]
        assert len(sends) == 1, sends
    finally:
        b.stop()
        a.stop()


def test_with_no_snapshot_to_send_the_standby_is_told_so_once_per_heartbeat(tmp_path, caplog):
    """Its missed records deleted and the active's snapshots gone (an operator
    removed them): the standby is refused with the reason, keeps its journal,
    and asks again at its heartbeat pace, not in a busy loop."""
    import logging
    import time
    ports = {"a": free_port(), "b": free_port()}
    a, b, left_at = standby_left_behind(tmp_path, ports, 1)
    try:
        for i in range(1, 300):
            submit(a, call_events(i, activity=2))
        a.snapshots.take()
        assert a.journal.first_seq > left_at + 1
        for _seq, p in list_snapshots(snapshot_dir(a.journal)):
            p.unlink()
        b = node("b", tmp_path, ports, "a")
        with caplog.at_level(logging.ERROR, logger="gateway.replication"):
            t0 = time.monotonic()
            b.start()
            time.sleep(1.0)
            took = time.monotonic() - t0
        refusals = [m for m in caplog.messages if "no snapshot can be sent" in m]
        # Heartbeat 50 ms: ~20 a second, not thousands. Counted against the
        # time that really passed (a loaded box stretches the sleep and the
        # start), with room for a HELLO besides each heartbeat.
        assert 1 <= len(refusals) <= 2 * took / 0.05 + 5, (len(refusals), took)
        assert b.journal.head == left_at and b.role.role == "standby"
    finally:
        b.stop()
        a.stop()
