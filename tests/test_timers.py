"""The timer service: wall-clock deadlines fired in order, generations that
make stale timeouts recognisable, cancel, and rebuild after failover."""

from __future__ import annotations

import threading
import time

import pytest

from actors.runtime import DispatcherPool, PooledActor
from actors.timers import TimerFired, TimerService, TimerSpec


class FakeClock:
    """Wall and monotonic clocks that move together, and only when told;
    `step_wall` moves the wall clock alone (an NTP step)."""

    def __init__(self, wall=1_700_000_000.0, mono=100.0):
        self.wall_now, self.mono_now = wall, mono

    def wall(self):
        return self.wall_now

    def monotonic(self):
        return self.mono_now

    def advance(self, seconds):
        self.wall_now += seconds
        self.mono_now += seconds

    def step_wall(self, seconds):
        self.wall_now += seconds


class Sink:
    """Stands in for an ActorRef: records what it is told."""

    def __init__(self):
        self.got = []

    def tell(self, message):
        self.got.append(message)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def timers(clock):
    return TimerService(wall=clock.wall, monotonic=clock.monotonic)


def test_fires_in_deadline_order_and_only_when_due(clock, timers):
    sink = Sink()
    now = clock.wall()
    timers.schedule("c", now + 3, sink, "third")
    timers.schedule("a", now + 1, sink, "first")
    timers.schedule("b", now + 2, sink, "second")
    assert timers.fire_due() == 0
    clock.advance(1.5)
    assert timers.fire_due() == 1
    clock.advance(10)
    assert timers.fire_due() == 2
    assert [m.payload for m in sink.got] == ["first", "second", "third"]
    assert all(isinstance(m, TimerFired) for m in sink.got)
    assert sink.got[0].deadline == now + 1 and sink.got[0].key == "a"


def test_reschedule_bumps_generation_and_only_the_newest_fires(clock, timers):
    sink = Sink()
    g1 = timers.schedule("k", clock.wall() + 1, sink)
    g2 = timers.schedule("k", clock.wall() + 5, sink)
    assert g2 > g1
    assert not timers.is_current("k", g1) and timers.is_current("k", g2)
    clock.advance(2)
    assert timers.fire_due() == 0  # the old deadline is gone
    clock.advance(4)
    assert timers.fire_due() == 1
    assert sink.got[0].generation == g2


def test_fired_before_reschedule_arrives_stale(clock, timers):
    sink = Sink()
    g1 = timers.schedule("k", clock.wall() + 1, sink)
    clock.advance(1)
    timers.fire_due()
    fired = sink.got[0]
    assert timers.is_current(fired.key, fired.generation)
    # The owner re-armed the timer before it handled the fired message.
    timers.schedule("k", clock.wall() + 30, sink)
    assert not timers.is_current(fired.key, fired.generation)
    assert not timers.take(fired.key, g1)


def test_take_consumes_a_fired_timer_once(clock, timers):
    sink = Sink()
    g = timers.schedule("k", clock.wall() + 1, sink)
    assert not timers.take("k", g)  # not fired yet
    clock.advance(1)
    timers.fire_due()
    assert timers.take("k", g)
    assert not timers.take("k", g)
    assert not timers.is_current("k", g)


def test_cancel_prevents_firing_and_makes_in_flight_stale(clock, timers):
    sink = Sink()
    g = timers.schedule("k", clock.wall() + 1, sink)
    assert timers.cancel("k") and not timers.cancel("k")
    clock.advance(5)
    assert timers.fire_due() == 0 and sink.got == []
    assert not timers.is_current("k", g)


def test_deadline_is_wall_clock_and_a_wall_step_does_not_move_it(clock, timers):
    sink = Sink()
    timers.schedule("k", clock.wall() + 10, sink)
    clock.step_wall(+3600)  # wall clock jumps; the pending timer keeps its interval
    clock.advance(9)
    assert timers.fire_due() == 0
    clock.advance(1)
    assert timers.fire_due() == 1


def test_past_deadline_fires_at_once(clock, timers):
    sink = Sink()
    timers.schedule("k", clock.wall() - 5, sink)
    assert timers.fire_due() == 1


def test_rebuild_replaces_everything_and_old_generations_are_stale(clock, timers):
    sink = Sink()
    old = timers.schedule("gone", clock.wall() + 1, sink)
    g_keep = timers.schedule("keep", clock.wall() + 2, sink)
    specs = [TimerSpec("keep", clock.wall() + 2, sink, "p"), ("new", clock.wall() + 4, sink)]
    gens = timers.rebuild(specs)
    assert set(gens) == {"keep", "new"}
    assert not timers.is_current("gone", old) and not timers.is_current("keep", g_keep)
    assert timers.deadline_of("keep") == clock.wall() + 2
    assert sorted(s.key for s in timers.specs()) == ["keep", "new"]
    clock.advance(5)
    assert timers.fire_due() == 2
    assert [(m.key, m.payload) for m in sink.got] == [("keep", "p"), ("new", None)]


def test_standby_rebuild_from_another_nodes_state(clock):
    """Deadlines are wall-clock: a node with a different monotonic origin
    rebuilds the same due times."""
    active = TimerService(wall=clock.wall, monotonic=clock.monotonic)
    sink = Sink()
    active.schedule("call/1", clock.wall() + 7, sink, "expire")
    state = [(s.key, s.deadline, s.target, s.payload) for s in active.specs()]
    other = FakeClock(wall=clock.wall(), mono=5.0)
    standby = TimerService(wall=other.wall, monotonic=other.monotonic)
    standby.rebuild(state)
    other.advance(6.9)
    assert standby.fire_due() == 0
    other.advance(0.2)
    assert standby.fire_due() == 1 and sink.got[0].payload == "expire"


def test_churn_does_not_grow_the_heap_without_bound(clock, timers):
    sink = Sink()
    for i in range(5000):
        timers.schedule("k", clock.wall() + 100 + i, sink)
    assert len(timers._heap) < 200
    assert len(timers) == 1


def test_dead_target_is_skipped(clock, timers):
    class Dead:
        def tell(self, message):
            import pykka
            raise pykka.ActorDeadError("gone")

    sink = Sink()
    timers.schedule("a", clock.wall() + 1, Dead())
    timers.schedule("b", clock.wall() + 1, sink)
    clock.advance(1)
    assert timers.fire_due() == 2
    assert [m.key for m in sink.got] == ["b"]


def test_thread_delivers_to_a_pooled_actor_which_ignores_stale():
    pool = DispatcherPool(threads=1, name="timer-test")
    timers = TimerService().start()
    handled = []
    done = threading.Event()

    class Call(PooledActor):
        def on_receive(self, message):
            if isinstance(message, TimerFired):
                if timers.take(message.key, message.generation):
                    handled.append(message.payload)
                    done.set()
                else:
                    handled.append(("stale", message.payload))

    Call.pool = pool
    try:
        ref = Call.start()
        now = time.time()
        timers.schedule(("call", 1), now + 0.2, ref, "old")
        timers.schedule(("call", 1), now + 0.03, ref, "new")
        timers.schedule(("call", 2), now + 0.01, ref, "other")
        assert done.wait(5)
        deadline = time.monotonic() + 2
        while len(handled) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert handled == ["other", "new"]
    finally:
        timers.stop()
        pool.shutdown()


class _CountingTimers(TimerService):
    """Counts the thread's turns (each looks at the heap once)."""

    turns = 0

    def _next_due_locked(self):
        self.turns += 1
        return super()._next_due_locked()


def test_thread_is_woken_only_for_an_earlier_deadline():
    """Re-arming timers later than the one the thread sleeps until does not
    wake it (each wake-up is a thread switch); an earlier one does, and fires
    on time."""
    timers = _CountingTimers().start()
    fired = threading.Event()

    class Target:
        def tell(self, message):
            if message.payload == "early":
                fired.set()

    try:
        now = time.time()
        timers.schedule("first", now + 60, Target())
        deadline = time.monotonic() + 5
        while timers.turns == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)                    # asleep until "first"
        before = timers.turns
        for i in range(50):
            timers.schedule(("later", i), now + 120 + i, Target())
            time.sleep(0.002)               # room for the thread to run, were it woken
        assert timers.turns == before
        timers.schedule("early", time.time() + 0.05, Target(), "early")
        assert fired.wait(5)
        assert timers.turns - before <= 4   # woken for it, fired it, asleep again
    finally:
        timers.stop()
