"""The packet loop drives the node's actors: a held message's dialog turn runs
on the ingest worker's thread after the drain that held it, and the steps of
one drain reach the journal writer together (actors/runtime_pool.py
``DispatcherPool.drive``, actors/journal_writer.py ``gather``, actors/ingest.py
``turns``, actors/node.py)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from actors.ingest import NfqueueWorker
from actors.journal_writer import JournalWriter
from actors.node import Node
from actors.runtime import DispatcherBlockingError, DispatcherPool, PooledActor
from gateway.config import parse_text
from gateway.datapath import Datapath
from journal.store import Journal
from tests.test_ingest_worker import CFG, LO, FakePacket, _invite


class Recorder(PooledActor):
    def __init__(self, seen: list) -> None:
        super().__init__()
        self.seen = seen

    def on_receive(self, message):
        if isinstance(message, tuple) and message[0] == "other":
            self.other = message[1]
            return None
        if message == "ask-other":
            return self.other.ask("hi")          # blocking on a future inside a turn
        self.seen.append((message, threading.current_thread().name))
        return message


@pytest.fixture
def pool():
    p = DispatcherPool(threads=1, name="driven-test")
    yield p
    p.release()                  # a failed test may leave this thread driving
    p.shutdown(timeout=5)


def _start(pool, seen):
    Recorder.pool = pool
    try:
        return Recorder.start(seen)
    finally:
        Recorder.pool = None


def test_a_driven_pool_runs_turns_only_on_the_drivers_thread_in_order(pool):
    seen: list = []
    wakes: list = []
    pool.drive(lambda: wakes.append(1))
    ref = _start(pool, seen)                         # adopted from this (the driver's) thread
    assert not wakes, "the driver's own tell needs no wake-up"
    for i in range(5):
        ref.tell(i)
    time.sleep(0.05)
    assert seen == [] and pool.has_ready()           # the pool's own thread took none of it
    pool.run_ready()
    assert [m for m, _t in seen] == [0, 1, 2, 3, 4]
    assert {t for _m, t in seen} == {threading.current_thread().name}
    assert not pool.has_ready()
    # A tell from another thread wakes the driver and waits for it.
    t = threading.Thread(target=ref.tell, args=("from-elsewhere",))
    t.start()
    t.join()
    assert wakes == [1] and seen[-1][0] == 4
    pool.run_ready()
    assert seen[-1] == ("from-elsewhere", threading.current_thread().name)
    pool.release()


def test_a_driven_turn_may_not_block_on_a_future(pool):
    seen: list = []
    pool.drive(lambda: None)
    ref = _start(pool, seen)
    ref.tell(("other", ref))
    fut = ref.ask("ask-other", block=False)
    pool.run_ready()
    with pytest.raises(DispatcherBlockingError):
        fut.get(timeout=1)
    pool.release()


def test_released_work_goes_back_to_the_pools_threads(pool):
    seen: list = []
    pool.drive(lambda: None)
    ref = _start(pool, seen)
    ref.tell("left")
    pool.release()                                   # nothing run by the driver
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen and seen[0][0] == "left" and seen[0][1].startswith("driven-test")
    assert not pool.has_ready()
    pool.release()                                   # twice: harmless


def test_run_ready_stops_after_max_turns(pool):
    seen: list = []
    pool.drive(lambda: None)
    refs = [_start(pool, seen) for _ in range(4)]
    pool.run_ready()                                 # their starts
    for r in refs:
        r.tell("m")
    assert pool.run_ready(max_turns=2) == 2 and len(seen) == 2 and pool.has_ready()
    assert pool.run_ready() == 2 and len(seen) == 4
    pool.release()


# -- the writer: a drain's steps in one hand-over ------------------------------

def test_gathered_steps_reach_the_writer_as_one_batch_in_order(tmp_path):
    from gateway.sip.events import CallEnded
    j = Journal.open(tmp_path / "j", fsync=False)
    w = JournalWriter(j, epoch=lambda: 1, mode="async")
    w.start()
    done: list = []
    w.gather()
    for i in range(20):
        w.submit([CallEnded(key=f"c{i}", reason="bye")], lambda recs, i=i: done.append((i, recs)))
    # Submitted from another thread meanwhile: straight to the writer.
    other = threading.Event()
    threading.Thread(target=lambda: w.submit([CallEnded(key="x", reason="bye")],
                                             lambda _r: other.set())).start()
    assert other.wait(5)
    assert done == [] and w.batches == 1
    w.hand_over()
    deadline = time.monotonic() + 5
    while len(done) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert [i for i, _r in done] == list(range(20))
    assert w.batches == 2                            # the other thread's step, then the drain's
    seqs = [r[0].seq for _i, r in done]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    j.close()


# -- the worker's loop drives the node ------------------------------------------

class FakeQueue:
    """netfilterqueue's part the loop uses: a readable fd while packets wait,
    ``run(block=False)`` giving each to the worker's callback."""

    def __init__(self, worker: NfqueueWorker) -> None:
        self.worker = worker
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self.waiting: list = []
        self.lock = threading.Lock()

    def put(self, pkt) -> None:
        with self.lock:
            self.waiting.append(pkt)
        os.write(self.w, b"p")

    def get_fd(self) -> int:
        return self.r

    def run(self, block: bool = True) -> None:
        try:
            os.read(self.r, 4096)
        except BlockingIOError:
            pass
        with self.lock:
            pkts, self.waiting = self.waiting, []
        for p in pkts:
            self.worker._callback(p)

    def unbind(self) -> None:
        os.close(self.r)
        os.close(self.w)


def _run_loop(w: NfqueueWorker) -> FakeQueue:
    q = FakeQueue(w)
    w._nfq = q
    w._thread = threading.Thread(target=w._run, name="nfqueue-test", daemon=True)
    w._thread.start()
    assert w._ready.wait(5)
    return q


def _wait(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_the_workers_thread_runs_the_dialog_turns_and_releases_the_packets(tmp_path):
    config = parse_text(CFG)
    dp = Datapath(config)
    node = Node("gw-a", config, str(tmp_path / "j"), datapath=dp, fsync=False, timer_thread=False,
                threads=1)
    node.start()
    stepped_on: list = []
    step = node._alg_message

    def recording(work):
        stepped_on.append(threading.current_thread().name)
        step(work)

    node._alg_message = recording
    w = NfqueueWorker(3, {"lo": "ethernet1"}, dp, install=False, on_alg=node.handle_alg,
                      turns=node, clock=time.time)
    w.lock = node.dp_lock
    q = _run_loop(w)
    try:
        pkts = [FakePacket(_invite(i), indev=LO) for i in range(6)]
        for p in pkts:
            q.put(p)
        _wait(lambda: all(p.verdict for p in pkts))
        assert [p.verdict for p in pkts] == ["accept"] * 6
        # Each INVITE's source rewritten by the interface NAT of the policy.
        assert all(b"1.1.1.1" in p.payload for p in pkts)
        assert stepped_on == ["nfqueue-test"] * 6
        assert node.journal.head >= 6 and len(node.show("calls")) == 6
        # A message told from another thread (an operator's ask) wakes the loop.
        ref = node.directory.get(("sip", "w3@10.1.1.3"))
        assert ref is not None
        assert ref.ask("anything", timeout=5) is None
    finally:
        w._stop.set()
        w._wake()
        w._thread.join(5)
        node.stop()
    assert not w._thread.is_alive()
    # The worker gave the pool back when its loop ended.
    assert node.pool._driven is None


# -- sync replication: the driving thread completes acknowledged batches ------------

class FakeReplicator:
    def __init__(self) -> None:
        self.acked = 0
        self.on_acked = None
        self.standby = True

    def notify_appended(self) -> None:
        pass

    def has_standby(self) -> bool:
        return self.standby

    def acked_seq(self) -> int:
        return self.acked

    def wait_acked(self, seq: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.acked < seq and time.monotonic() < end:
            time.sleep(0.005)
        return self.acked >= seq

    def ack(self, seq: int) -> None:
        self.acked = seq
        if self.on_acked is not None:
            self.on_acked()


def _sync_writer(tmp_path, ack_timeout: float, wake) -> tuple[Journal, FakeReplicator, JournalWriter]:
    """A sync-mode writer whose completions this thread drives."""
    j = Journal.open(tmp_path / "j", fsync=False)
    rep = FakeReplicator()
    w = JournalWriter(j, epoch=lambda: 1, mode="sync", replicator=rep, ack_timeout=ack_timeout)
    w.start()
    w.drive_completions(wake)
    return j, rep, w


def test_the_driver_completes_what_the_standby_acknowledged_in_order(tmp_path):
    from gateway.sip.events import CallEnded
    wakes = threading.Semaphore(0)
    j, rep, w = _sync_writer(tmp_path, 30, wakes.release)
    done: list = []
    for i in range(3):
        w.submit([CallEnded(key=f"c{i}", reason="bye")],
                 lambda recs, i=i: done.append((i, threading.current_thread().name)))
    _wait(lambda: j.head == 3 and sum(len(out) for _s, out, _t in list(w._pending)) == 3)
    assert wakes.acquire(timeout=5)                  # woken after the append
    assert w.complete_ready() == 0 and done == []    # not acknowledged yet
    first = w._pending[0][0]
    rep.ack(first)                                   # the replication thread's turn
    assert wakes.acquire(timeout=5)
    w.complete_ready()
    assert done and done[0] == (0, threading.current_thread().name)
    rep.ack(3)
    w.complete_ready()
    assert [i for i, _t in done] == [0, 1, 2]
    assert {t for _i, t in done} == {threading.current_thread().name}
    assert w.ack_lapses == 0
    w.undrive_completions()
    w.stop()
    j.close()


def test_an_unacknowledged_batch_lapses_and_undriven_batches_go_to_the_completion_thread(tmp_path):
    from gateway.sip.events import CallEnded
    j, rep, w = _sync_writer(tmp_path, 0.2, lambda: None)
    done: list = []
    w.submit([CallEnded(key="a", reason="bye")], lambda recs: done.append(("a", threading.current_thread().name)))
    _wait(lambda: w._pending)
    since = w._pending[0][2]
    assert w.complete_ready(now=since + 0.1) == 0
    assert w.complete_ready(now=since + 0.3) == 1 and w.ack_lapses == 1
    assert done == [("a", threading.current_thread().name)]
    # No standby: completed as unreplicated, without waiting.
    rep.standby = False
    w.submit([CallEnded(key="b", reason="bye")], lambda recs: done.append(("b", None)))
    _wait(lambda: w._pending)
    assert w.complete_ready() == 1 and w.unreplicated_batches == 1
    # Given back: the completion thread waits for the acknowledgement itself.
    rep.standby = True
    w.undrive_completions()
    assert rep.on_acked is None
    w.submit([CallEnded(key="c", reason="bye")], lambda recs: done.append(("c", threading.current_thread().name)))
    time.sleep(0.05)
    rep.ack(j.head)
    _wait(lambda: len(done) == 3)
    assert done[-1] == ("c", "journal-acks")
    w.stop()
    j.close()
