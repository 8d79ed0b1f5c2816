"""The Directory finds live entity actors by key in O(1) and forgets them
when they stop."""

from __future__ import annotations

import threading
import time

import pykka
import pytest

from actors.directory import Directory, kind_of
from actors.runtime import DispatcherPool, PooledActor


@pytest.fixture
def pool():
    p = DispatcherPool(threads=2, name="dir-dispatcher")
    yield p
    p.shutdown(timeout=10)


@pytest.fixture
def entity(pool):
    class Entity(PooledActor):
        def __init__(self, key):
            super().__init__()
            self.key = key

        def on_receive(self, message):
            return self.key

    Entity.pool = pool
    return Entity


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_kind_of():
    assert kind_of(("call", "abc")) == "call"
    assert kind_of("plain") == "plain"


def test_get_or_start_starts_once_and_finds_again(entity):
    d = Directory()
    started = []

    def factory():
        started.append(1)
        return entity.start(("call", "c1"))

    a = d.get_or_start(("call", "c1"), factory)
    b = d.get_or_start(("call", "c1"), factory)
    assert a is b and len(started) == 1
    assert d.get(("call", "c1")) is a
    assert a.ask("k", timeout=5) == ("call", "c1")
    assert ("call", "c1") in d and ("call", "c2") not in d


def test_concurrent_get_or_start_yields_one_actor(entity):
    d = Directory()
    got = []
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        got.append(d.get_or_start(("reg", "alice"), lambda: entity.start("alice")))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in got}) == 1
    assert d.count("reg") == 1


def test_entry_leaves_when_the_actor_stops_and_key_can_restart(entity):
    d = Directory()
    key = ("call", "x")
    first = d.get_or_start(key, lambda: entity.start(key))
    first.stop(timeout=5)
    wait_until(lambda: d.count("call") == 0)
    assert d.get(key) is None and len(d) == 0
    second = d.get_or_start(key, lambda: entity.start(key))
    assert second is not first and second.is_alive()
    assert d.count("call") == 1


def test_old_actor_stopping_does_not_remove_its_successor(entity):
    d = Directory()
    key = ("pinhole", 1)
    first = entity.start(key)
    d.register(key, first)
    d.remove(key)
    second = entity.start(key)
    d.register(key, second)
    first.stop(timeout=5)
    time.sleep(0.01)
    assert d.get(key) is second


def test_register_refuses_a_second_live_actor(entity):
    d = Directory()
    d.register(("endpoint", "aaln/1"), entity.start(1))
    with pytest.raises(KeyError):
        d.register(("endpoint", "aaln/1"), entity.start(2))


def test_counts_by_kind(entity):
    d = Directory()
    for i in range(5):
        d.get_or_start(("call", i), lambda i=i: entity.start(i))
    for i in range(3):
        d.get_or_start(("registration", i), lambda i=i: entity.start(i))
    assert d.count("call") == 5 and d.count("registration") == 3 and d.count() == 8
    assert d.counts() == {"call": 5, "registration": 3}
    assert sorted(d.keys("registration")) == [("registration", i) for i in range(3)]


def test_dead_actor_of_another_runtime_is_pruned_on_lookup():
    class Plain(pykka.ThreadingActor):
        pass

    d = Directory()
    ref = Plain.start()
    d.register(("call", "t"), ref)
    ref.stop()
    assert d.get(("call", "t")) is None
    assert d.count("call") == 0


def test_lookup_time_does_not_grow_with_size(entity):
    """O(1): a lookup among 20,000 entries costs about what it costs among 10."""
    def lookup_cost(d, keys):
        t = time.perf_counter()
        for _ in range(20):
            for k in keys:
                d.get(k)
        return time.perf_counter() - t

    small, large = Directory(), Directory()
    for i in range(10):
        small.register(("call", i), entity.start(i))
    refs = []
    for i in range(20_000):
        ref = entity.start(i)
        refs.append(ref)
        large.register(("call", i), ref)
    probe = [("call", i) for i in range(10)]
    cost_small = min(lookup_cost(small, probe) for _ in range(5))
    cost_large = min(lookup_cost(large, probe) for _ in range(5))
    # A list scan would be ~2,000x slower; allow generous noise.
    assert cost_large < cost_small * 20 + 0.002
