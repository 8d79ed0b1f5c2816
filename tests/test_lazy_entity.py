"""Entity actors start at their first message (actors/lazy_entity.py): a
restarted node enters every entity of its state in the directory without
starting an actor, and the timer that ends a recovered call still starts
its actor and ends it, as an eagerly started actor did."""

from __future__ import annotations

import pytest
from pykka import ActorDeadError

from actors.directory import Directory
from actors.lazy_entity import LazyEntityRef
from actors.node import Node
from tests.test_node import CFG, IN, OUT, PH2, Clock, invite, request_out, response, sdp, send, wait_for


class FakeRef:
    actor_inbox = None

    def __init__(self) -> None:
        self.told: list = []
        self.alive = True

    def tell(self, message) -> None:
        self.told.append(message)

    def is_alive(self) -> bool:
        return self.alive

    def stop(self, block=True, timeout=None) -> bool:
        self.alive = False
        return True


def test_the_actor_starts_at_the_first_message_only():
    started: list = []

    def start(arg):
        started.append(arg)
        return FakeRef()

    ref = LazyEntityRef(start, "call/x")
    assert ref.is_alive() and not ref.started and started == []
    ref.tell("a")
    ref.tell("b")
    assert started == ["call/x"] and ref._ref.told == ["a", "b"]
    ref.stop(block=False)
    assert not ref.is_alive() and not ref._ref.alive


def test_an_entity_ended_before_any_message_never_starts_and_refuses_messages():
    ref = LazyEntityRef(lambda arg: pytest.fail("started"), "pinhole/p1")
    assert ref.stop(block=False) is True
    assert not ref.is_alive()
    with pytest.raises(ActorDeadError):
        ref.tell("late")


def test_directory_forgets_an_entry_whose_started_actor_died():
    d = Directory()
    backing = FakeRef()
    assert d.start_absent([("entity", "a"), ("entity", "b")],
                          lambda key: LazyEntityRef(lambda _k: backing, key[1])) == 2
    assert d.count("entity") == 2
    # Present keys are left as they are.
    assert d.start_absent([("entity", "a")], lambda key: pytest.fail("replaced")) == 0
    d.get(("entity", "a")).tell("m")
    backing.alive = False
    assert d.get(("entity", "a")) is None and d.count("entity") == 1


def test_deferred_entries_make_their_ref_only_when_first_asked_for():
    d = Directory()
    made: list = []

    def factory(key):
        made.append(key)
        return LazyEntityRef(lambda _k: FakeRef(), key[1])

    assert d.enter_deferred("entity", ["a", "b", "c"], factory) == 3
    assert made == [] and d.count("entity") == 3 and len(d) == 3
    assert sorted(d.keys("entity")) == [("entity", "a"), ("entity", "b"), ("entity", "c")]
    assert ("entity", "a") in d and made == [("entity", "a")]
    first = d.get(("entity", "a"))
    assert d.get(("entity", "a")) is first and made == [("entity", "a")]     # made once
    # Entered again: present entries (deferred or made) are left as they are.
    assert d.enter_deferred("entity", ["a", "b", "d"], factory) == 1
    assert d.count("entity") == 4 and d.get(("entity", "a")) is first
    assert ("entity", "b") not in made
    # Removing a deferred entry gives its ref (the caller stops it), made now.
    gone = d.remove(("entity", "b"))
    assert isinstance(gone, LazyEntityRef) and ("entity", "b") in made
    assert gone.stop(block=False) is True and d.get(("entity", "b")) is None
    assert [r for r in d.remove_many([("entity", "c"), ("entity", "x")])] != []
    assert d.count("entity") == 2
    # get_or_start and start_absent see a deferred entry as a live one.
    assert d.get_or_start(("entity", "d"), lambda: pytest.fail("restarted")).is_alive()
    assert d.start_absent([("entity", "a"), ("entity", "e")],
                          lambda key: LazyEntityRef(lambda _k: FakeRef(), key[1])) == 1
    assert all(isinstance(ref, LazyEntityRef) and ref.is_alive() for _k, ref in d.items())
    assert d.count("entity") == 3


def test_deferred_entries_replace_only_dead_ones():
    d = Directory()
    backing = FakeRef()
    d.start_absent([("entity", "a")], lambda key: LazyEntityRef(lambda _k: backing, key[1]))
    d.get(("entity", "a")).tell("m")                       # its actor started
    backing.alive = False                                  # and died
    assert d.enter_deferred("entity", ["a"], lambda key: LazyEntityRef(lambda _k: FakeRef(), key[1])) == 1
    assert d.count("entity") == 1
    ref = d.get(("entity", "a"))
    assert ref is not None and ref.is_alive()


def test_restarted_node_starts_no_entity_actor_until_a_timer_needs_one(tmp_path):
    clock = Clock()
    a = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False)
    a.start()
    send(a, OUT, invite())
    send(a, IN, response(200, "OK", body=sdp(PH2, 62002)))
    send(a, OUT, request_out("BYE", 2, "z9hG4bK3"))
    send(a, IN, response(200, "OK", method="BYE", cseq=2, branch="z9hG4bK3"))
    a.stop()
    b = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False)
    try:
        entities = b.directory.count("entity")
        assert entities >= 1 and b.pool.live_count() == 0
        b.start()                                  # lone: active, the call's timer armed
        assert b.pool.live_count() == 0
        clock.t += 10.0                            # past the 5 s after the BYE
        b.timers.fire_due()
        wait_for(lambda: not b.show("calls"))
        wait_for(lambda: b.directory.count("entity") == 0)
        assert not b.show("pinholes")
    finally:
        b.stop()
