"""The cyclic collector waits while a state is loaded or folded in bulk
(journal/gc_pause.py), and is back as it was afterwards."""

from __future__ import annotations

import gc
import threading

import pytest

from journal.gc_pause import collections_paused


def test_paused_inside_and_restored_after_even_when_nested_or_raising():
    assert gc.isenabled()
    with collections_paused():
        assert not gc.isenabled()
        with pytest.raises(RuntimeError):
            with collections_paused():
                raise RuntimeError("boom")
        assert not gc.isenabled()           # the outer block still holds the pause
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collections_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_of_two_threads_end_with_the_last():
    inside, release = threading.Event(), threading.Event()

    def other():
        with collections_paused():
            inside.set()
            release.wait(5)
    t = threading.Thread(target=other)
    with collections_paused():
        t.start()
        assert inside.wait(5)
    assert not gc.isenabled()               # the other thread's pause goes on
    release.set()
    t.join(5)
    assert gc.isenabled()
