"""HA replication between two nodes over loopback TCP with CURVE
(actors/replication.py, journal/replication.py, gateway/ha.py; ARCHITECTURE.md,
"High availability"): catch-up, resume, key refusal, split brain, heartbeat
loss, graceful handover, divergence, with the SIP ALG's real events."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import pytest
import zmq

from journal.replication import Batch, Hello, Refused, decode, encode, frame_mark
from journal.store import Journal
from test_replication_harness import Pair, call_events, pair, wait_for  # noqa: F401  (fixture)

TIMINGS: dict[str, float] = {}


@pytest.fixture(autouse=True, scope="module")
def _print_timings():
    yield
    for k, v in TIMINGS.items():       # shown with -s
        print(f"\n{k}: {v:.1f}")


def seqs_gapless(journal) -> bool:
    return [r.seq for r in journal.read(1)] == list(range(1, journal.head + 1))


def assert_same(active, standby) -> None:
    # A standby acknowledges frames as soon as they are stored and folds them
    # after sending the ack (actors/replication_standby.py): a sync submit returns
    # before the standby's state has the records. Wait for its fold to reach
    # the head (the condition, not a time), then compare.
    assert wait_for(lambda: standby.applied == active.journal.head, timeout=10)
    assert standby.journal.head == active.journal.head
    assert standby.frames() == active.frames()                 # byte for byte
    replayed, last = active.replayed()
    assert last == active.journal.head
    assert standby.state == active.state == replayed


def test_late_standby_catches_up_backlog_then_live_tail(pair):
    a = pair.node("a", role="active", epoch=1, hb_threshold=10).start()
    for i in range(60):                                         # backlog: 60 calls, 180 events
        a.writer.submit(call_events(i, activity=2))             # a call's step: one record
    assert a.writer.flush()
    backlog = a.journal.head
    assert backlog == 60 and a.writer.unreplicated_batches >= 1
    b = pair.node("b", hb_threshold=10).start()
    assert wait_for(lambda: b.journal.head == backlog)
    unreplicated = a.writer.unreplicated_batches
    for i in range(60, 80):                                     # live tail, sync mode
        recs = a.submit_sync(call_events(i))
        assert b.journal.head >= recs[-1].seq                   # acknowledged before completion
    assert a.writer.unreplicated_batches == unreplicated and a.writer.ack_lapses == 0
    assert_same(a, b)
    assert b.received == list(range(1, a.journal.head + 1))
    assert len(b.state.calls) == 80
    assert (b.role.role, a.role.role) == ("standby", "active")


def test_standby_restarted_mid_stream_resumes_without_gaps_or_duplicates(pair, caplog):
    caplog.set_level(logging.INFO, logger="gateway.replication")
    a = pair.node("a", role="active", epoch=1, hb_threshold=4).start()
    b = pair.node("b", hb_threshold=10).start()
    for i in range(30):
        a.submit_sync(call_events(i))
    assert wait_for(lambda: b.journal.head == a.journal.head)
    stopped_at = b.journal.head
    b.close()
    # The active forgets the silent standby (sync completions stop waiting for it)...
    assert wait_for(lambda: not a.repl.has_standby(), timeout=2)
    for i in range(30, 70):
        a.submit_sync(call_events(i))
    assert a.journal.head > stopped_at
    # ...and the standby comes back on the same journal directory.
    b2 = pair.node("b", hb_threshold=10)
    assert b2.journal.head == stopped_at and b2.applied == stopped_at
    b2.start()
    # Stored, then folded (the applier acknowledges before it folds).
    assert wait_for(lambda: b2.journal.head == a.journal.head and b2.applied == a.journal.head)
    assert b2.received == list(range(stopped_at + 1, a.journal.head + 1))   # from where it stopped
    assert seqs_gapless(b2.journal)
    assert_same(a, b2)
    assert f"standby b joined at seq {stopped_at} " in caplog.text


def test_unauthorised_key_is_refused_logged_and_gets_nothing(pair, caplog):
    caplog.set_level(logging.WARNING)
    a = pair.node("a", role="active", epoch=1).start()
    a.submit_sync(call_events(1))
    intruder_pub, intruder_sec = pair.pairs["intruder"]
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IDENTITY, b"b")                      # even claiming to be the peer
        s.curve_publickey, s.curve_secretkey = intruder_pub, intruder_sec
        s.curve_serverkey = pair.pairs["a"][0]
        s.connect(pair.endpoint("a"))
        s.send_multipart(encode(Hello("b", 0, 0, 0, 1)))
        assert wait_for(lambda: intruder_pub.decode() in caplog.text, timeout=2)
        assert s.poll(500) == 0                               # nothing comes back
        s.close(0)
    finally:
        ctx.destroy(linger=0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unknown CURVE key" in r.getMessage()]
    assert warnings and intruder_pub.decode() in warnings[0].getMessage()
    assert not a.repl.has_standby()


def test_two_actives_resolve_to_the_higher_epoch(pair):
    a = pair.node("a", role="active", epoch=3, hb_threshold=10)
    b = pair.node("b", role="active", epoch=5, hb_threshold=10)
    # Partitioned: each writes its own history (a more records than b).
    a.start(repl=False)
    b.start(repl=False)
    for i in range(12):
        a.submit_sync(call_events(100 + i))
    for i in range(5):
        b.submit_sync(call_events(i))
    assert a.journal.head == 24 and b.journal.head == 10
    t0 = time.monotonic()
    a.start()
    b.start()
    assert wait_for(lambda: a.role.role == "standby", timeout=2)
    TIMINGS["split brain resolved (ms)"] = (time.monotonic() - t0) * 1000
    assert (a.role.epoch, a.role.forwarding) == (5, False)
    assert (b.role.role, b.role.epoch, b.role.forwarding) == ("active", 5, True)
    assert [x.kind for x in a.actions] == ["stop_forwarding", "demote"]
    assert TIMINGS["split brain resolved (ms)"] < 4 * 50 + 300
    # a's own epoch-3 records are none of b's history: cut, then b's stream.
    assert wait_for(lambda: a.frames() == b.frames(), timeout=3)
    assert a.diverged[0] == (10, 14)                     # first beyond b's head...
    assert a.diverged[-1][0] == 0                        # ...then b's whole term differs
    b.submit_sync(call_events(50))
    assert_same(b, a)
    assert b.role.role == "active" and a.role.role == "standby"


def test_heartbeat_loss_promotes_the_standby_within_the_detection_time(pair):
    a = pair.node("a", role="active", epoch=1, hb_interval=0.2, hb_threshold=3).start()
    b = pair.node("b", hb_interval=0.2, hb_threshold=3).start()
    a.submit_sync(call_events(1))
    assert wait_for(lambda: b.journal.head == a.journal.head and a.repl.has_standby())
    t0 = time.monotonic()
    a.stop_replicator()
    assert wait_for(lambda: b.role.role == "active", timeout=2)
    took = time.monotonic() - t0
    TIMINGS["heartbeat loss to promotion (ms)"] = took * 1000
    assert took < 1.0
    assert (b.role.epoch, b.role.forwarding) == (2, True)
    recs = b.submit_sync(call_events(2))                 # the new active journals in its epoch
    assert recs[-1].epoch == 2 and b.writer.unreplicated_batches == 1


def test_the_active_process_exiting_promotes_the_standby_long_before_the_detection_time(pair, caplog):
    """A process that exits (any signal: the kernel closes its sockets)
    closes its HA connection; the standby takes over after a short grace
    instead of the detection time (3 s here, NSRP's 1,000 ms x 3)."""
    caplog.set_level(logging.INFO, logger="gateway.replication")
    a = pair.node("a", role="active", epoch=1, hb_interval=1.0, hb_threshold=3).start()
    b = pair.node("b", hb_interval=1.0, hb_threshold=3).start()
    a.submit_sync(call_events(1))
    assert wait_for(lambda: b.journal.head == a.journal.head and a.repl.has_standby()
                    and b.repl.status().peer_role == "active")
    t0 = time.monotonic()
    a.stop_replicator()                      # the sockets close, as at a process's exit
    assert wait_for(lambda: b.role.role == "active", timeout=2.5)
    took = time.monotonic() - t0
    TIMINGS["active process exit to promotion (ms)"] = took * 1000
    assert took < 1.5, took
    assert "closed its HA connection" in caplog.text
    promote = next(x for x in b.actions if x.kind == "promote")
    assert "process exited" in promote.reason and b.role.epoch == 2


def test_an_active_that_stands_still_is_not_taken_for_an_exited_one(pair, monkeypatch):
    """Its transport thread stands still for half the detection time (a
    stall, not an exit: its TCP connections stay up): the standby keeps
    its role, and the active keeps its standby."""
    a = pair.node("a", role="active", epoch=1, hb_interval=0.4, hb_threshold=5).start()
    b = pair.node("b", hb_interval=0.4, hb_threshold=5).start()
    a.submit_sync(call_events(1))
    assert wait_for(lambda: b.journal.head == a.journal.head and a.repl.has_standby()
                    and b.repl.status().peer_role == "active")
    stalled = threading.Event()
    real = a.on_trigger

    def stand_still(trigger, *args):
        if trigger == "lease_check" and not stalled.is_set():
            stalled.set()
            time.sleep(1.0)              # D is 2 s, the lease 1.85 s
        return real(trigger, *args)

    monkeypatch.setattr(a, "on_trigger", stand_still)
    a.repl.on_trigger = stand_still
    assert wait_for(stalled.is_set, timeout=2)
    time.sleep(1.6)
    assert (a.role.role, b.role.role) == ("active", "standby")
    assert not [x for x in b.actions if x.kind == "promote"]
    assert a.repl.has_standby()


def test_the_active_stops_waiting_for_a_standby_whose_process_exited(pair):
    """Sync completions stop waiting for a standby as soon as its HA
    connection closed, not after the detection time (3 s here)."""
    a = pair.node("a", role="active", epoch=1, hb_interval=1.0, hb_threshold=3).start()
    b = pair.node("b", hb_interval=1.0, hb_threshold=3).start()
    a.submit_sync(call_events(1))
    assert wait_for(lambda: b.journal.head == a.journal.head and a.repl.has_standby())
    t0 = time.monotonic()
    b.close()
    assert wait_for(lambda: not a.repl.has_standby(), timeout=2.5)
    assert time.monotonic() - t0 < 1.5
    recs = a.submit_sync(call_events(2))
    assert recs and a.role.role == "active"


def test_graceful_handover_then_replication_the_other_way(pair):
    a = pair.node("a", role="active", epoch=1, hb_threshold=10).start()
    b = pair.node("b", hb_threshold=10).start()
    for i in range(20):
        a.writer.submit(call_events(i))
    assert wait_for(lambda: a.repl.has_standby())
    t0 = time.monotonic()
    a.on_trigger("failover_requested")
    assert not a.role.forwarding                         # stops taking packets at once
    assert wait_for(lambda: a.role.role == "standby" and b.role.role == "active", timeout=3)
    TIMINGS["graceful handover (ms)"] = (time.monotonic() - t0) * 1000
    assert b.journal.head == a.journal.head == 20        # nothing submitted was lost (a record per call)
    assert (a.role.epoch, b.role.epoch) == (2, 2)
    assert (a.role.forwarding, b.role.forwarding) == (False, True)
    assert "handover" in [x.kind for x in a.actions]
    # The new active takes the old one as its standby and streams to it.
    assert wait_for(lambda: b.repl.has_standby(), timeout=2)
    for i in range(20, 30):
        recs = b.submit_sync(call_events(i))
        assert a.journal.head >= recs[-1].seq
    assert b.writer.ack_lapses == 0
    assert_same(b, a)
    assert {r.epoch for r in b.journal.read(21)} == {2}


def test_rejoining_old_active_with_unacknowledged_records_is_refused_diverged(pair, tmp_path):
    """Protocol level: b (the new active) against a raw DEALER speaking for a."""
    b = pair.node("b", role="active", epoch=1, hb_threshold=10).start(repl=False)
    for i in range(5):                                   # 1..10, epoch 1, a had these too
        b.submit_sync(call_events(i))
    shared = b.frames()
    old = Journal.open(tmp_path / "old-a")
    old.append_frames(shared)
    old.append_batch([(e, 2000.0) for i in range(7) for e in call_events(500 + i)[:1]], 1)  # 11..17
    # a crashed; b took over in epoch 2 (as on heartbeat loss) and wrote on.
    b.role = dataclasses.replace(b.role, epoch=2)
    b.repl.set_role("active", 2)
    for i in range(5, 7):                                # 11..14 in epoch 2
        b.submit_sync(call_events(i))
    b.start()
    assert b.journal.head == 14 and old.head == 17
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IDENTITY, b"a")
        s.curve_publickey, s.curve_secretkey = pair.pairs["a"]
        s.curve_serverkey = pair.pairs["b"][0]
        s.connect(pair.endpoint("b"))

        def hello() -> Refused | None:
            last = old.head
            ep, crc = frame_mark(old.read_frames(last, 1)[0]) if last else (0, 0)
            s.send_multipart(encode(Hello("a", last, ep, crc, 2)))
            while s.poll(2000):
                msg = decode(s.recv_multipart())
                if isinstance(msg, Refused):
                    return msg
                if isinstance(msg, Batch):
                    old.append_frames(msg.frames)
                    if old.head == b.journal.head:
                        return None
            raise AssertionError("no answer to HELLO")

        first = hello()
        assert (first.reason, first.head) == ("diverged", 14)     # beyond b's head
        assert old.truncate_after(first.head) == 3
        second = hello()
        assert (second.reason, second.head) == ("diverged", 10)   # b's epoch-2 term differs from a's 11..14
        assert old.truncate_after(second.head) == 4
        assert hello() is None                                     # now a prefix: b streams 11..14
        assert old.read_frames(1, old.head) == b.frames()
        assert b.repl.refused_hellos == 2
        s.close(0)
    finally:
        ctx.destroy(linger=0)
        old.close()


def test_a_demoted_node_has_no_standby_to_wait_for(tmp_path):
    """Completions on a node that just lost the active role must not wait for
    acknowledgements from its former standby."""
    from actors.replication import Replicator
    from journal.store import Journal
    from journal.replication import PeerProgress

    j = Journal.open(tmp_path / "j", fsync=False)
    r = Replicator(node_id="a", bind="tcp://127.0.0.1:1", peer="tcp://127.0.0.1:2", journal=j,
                   on_records=lambda recs: None, on_trigger=lambda *a: None, keys=None)
    try:
        r.role = "active"
        r.sender.peers[b"b"] = PeerProgress(b"b", "b", acked=0, sent=0)
        assert r.has_standby()
        r.set_role("standby", 2)
        assert not r.has_standby()
    finally:
        r._ctx.destroy(linger=0)
        j.close()


def test_old_active_does_not_promote_again_right_after_handing_over(pair):
    """The old active has heard no active peer during its whole term: its
    detection time must start at the demotion, not at its last standby days
    (judged on that old time, it found "no heartbeat from the active node" on
    its first turn as standby, promoted in a new epoch, and both nodes were
    active until the epochs met)."""
    a = pair.node("a", role="active", epoch=1, hb_threshold=4).start()
    b = pair.node("b", hb_threshold=4).start()
    for i in range(5):
        a.writer.submit(call_events(i))
    assert wait_for(lambda: a.repl.has_standby())
    time.sleep(4 * 0.05 * 3)              # a's term outlasts the detection time
    # The new active's first heartbeats come late (a loaded node), within
    # the detection time of 200 ms.
    send_hb, quiet = b.repl._heartbeat, {}

    def late_heartbeat(dealer, now):
        if b.repl.role == "active":
            quiet.setdefault("until", now + 0.12)
            if now < quiet["until"]:
                return
        send_hb(dealer, now)
    b.repl._heartbeat = late_heartbeat
    a.on_trigger("failover_requested")
    assert wait_for(lambda: a.role.role == "standby" and b.role.role == "active", timeout=3)
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        assert (a.role.role, b.role.role) == ("standby", "active")
        assert (a.role.epoch, b.role.epoch) == (2, 2)
        time.sleep(0.01)


@pytest.mark.parametrize("slow", ["store", "fold"])
def test_a_standby_slow_to_store_or_fold_keeps_its_heartbeats(pair, slow):
    """A store that waits on a slow disk (fsync) or a fold that waits for the
    node's state lock takes far longer than the detection time on a loaded
    box. Done on the transport thread, it held the standby's heartbeats and
    its reading of the active's: the active forgot it and the standby, on
    waking, could promote. Now the transport goes on while the applier
    stores and folds, and every batch is still acknowledged and folded."""
    a = pair.node("a", role="active", epoch=1, hb_threshold=3).start()
    b = pair.node("b", hb_threshold=3).start()
    assert wait_for(lambda: a.repl.has_standby())
    setattr(b, f"{slow}_delay", 0.6)            # four times the detection time (150 ms)
    for i in range(3):
        a.writer.submit(call_events(i))
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        assert a.repl.has_standby(), "the active forgot its standby"
        assert (a.role.role, b.role.role) == ("active", "standby")
        time.sleep(0.01)
    setattr(b, f"{slow}_delay", 0.0)
    assert wait_for(lambda: b.applied == a.journal.head == 3, timeout=5)   # a record per call
    assert_same(a, b)


def test_a_transport_turn_that_comes_late_writes_every_threads_stack(pair, monkeypatch, capfd):
    """The stall watchdog (libfaulthandler's C thread, which needs no
    interpreter lock) shows what held the node still: here the transport
    thread itself, asleep in a role trigger."""
    a = pair.node("a", role="active", epoch=1, hb_interval=0.1, hb_threshold=30)
    a.repl.stall_dump = 0.4
    stalled = threading.Event()
    real = a.on_trigger

    def held_still_in_lease_check(trigger, *args):
        if trigger == "lease_check" and not stalled.is_set():
            stalled.set()
            time.sleep(1.0)
        return real(trigger, *args)

    a.repl.on_trigger = held_still_in_lease_check
    a.start()
    assert wait_for(stalled.is_set, timeout=2)
    time.sleep(1.2)
    err = capfd.readouterr().err
    assert "Timeout (0:00:00.4" in err and "held_still_in_lease_check" in err, err[-2000:]
    a.close()
    time.sleep(0.6)                  # cancelled with the transport: nothing more is written
    assert "Timeout (0:00:00" not in capfd.readouterr().err


def test_a_late_lease_renewal_is_reported_with_the_last_turns(pair, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.replication")
    a = pair.node("a", role="active", epoch=1, hb_interval=0.2, hb_threshold=30).start()
    assert wait_for(lambda: len(a.repl._turns.recent) >= 3)
    a.repl._renewed_at = a.repl.clock() - 1.0        # as if no heartbeat went out for 1 s
    assert wait_for(lambda: "lease's renewal is late" in caplog.text, timeout=2)
    msg = next(r.getMessage() for r in caplog.records if "renewal is late" in r.getMessage())
    assert "last turns" in msg and "/" in msg.split("last turns")[1]
