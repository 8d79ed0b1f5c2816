"""Role changes off the HA transport thread (actors/role_work.py and the
node's use of it): a takeover that takes long does not hold the transport's
heartbeats, whose renewals keep the new active's lease; role works run in
the order the role machine decided them; the node's own callers still
return with the work done."""

from __future__ import annotations

import threading
import time

import pytest

from actors.node import Node
from actors.role_work import RoleWork
from actors.thread_priority import raise_thread_priority, thread_policy
from gateway.config.model import Config

CFG = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())


def test_works_run_in_submission_order_on_one_thread():
    w = RoleWork()
    seen: list = []
    threads: set = set()
    try:
        for i in range(50):
            w.run(lambda i=i: (seen.append(i), threads.add(threading.get_ident())), "n", wait=False)
        w.drain(5)
        assert seen == list(range(50)) and len(threads) == 1
    finally:
        w.stop()


def test_a_waiting_caller_gets_the_works_exception():
    w = RoleWork()
    try:
        with pytest.raises(ZeroDivisionError):
            w.run(lambda: 1 / 0, "boom", wait=True)
        # The thread survives a failed work.
        out: list = []
        w.run(lambda: out.append(1), "after", wait=True)
        assert out == [1]
    finally:
        w.stop()


def test_run_from_the_work_thread_itself_runs_inline():
    w = RoleWork()
    out: list = []
    try:
        w.run(lambda: w.run(lambda: out.append("inner"), "inner", wait=True), "outer", wait=True)
        assert out == ["inner"]
    finally:
        w.stop()


class SlowAddresses:
    """acquire blocks until released by the test: a takeover under load."""

    def __init__(self) -> None:
        self.log: list = []
        self.gate = threading.Event()

    def lease(self, until):
        self.log.append(("lease", until))

    def acquire(self):
        self.log.append(("acquire-start",))
        assert self.gate.wait(10)
        self.log.append(("acquire-end",))

    def release(self):
        self.log.append(("release",))


def test_the_transport_renews_the_lease_while_a_takeover_is_under_way(tmp_path):
    """The HA transport promotes the node and goes straight back to its
    heartbeats: each renews the lease though the takeover has not ended. (On
    the transport thread itself, the takeover held the first renewal until it
    ended, and a takeover longer than the lease demoted the new active.)"""
    addrs = SlowAddresses()
    n = Node("a", CFG, str(tmp_path / "j"), addresses=addrs, lease=0.3)
    try:
        n.start(role="standby")
        t0 = time.monotonic()
        n.on_transport_trigger("heartbeat_lost", t0)
        assert time.monotonic() - t0 < 0.2, "the transport waited for the takeover"
        assert n.role.role == "active"
        deadline = time.monotonic() + 5
        while ("acquire-start",) not in addrs.log and time.monotonic() < deadline:
            time.sleep(0.01)
        # Heartbeats over 0.9 s, three lease lengths, with the takeover stuck.
        for _ in range(9):
            time.sleep(0.1)
            n.on_transport_trigger("lease_renewed", time.monotonic())
            assert n.role.role == "active" and n.forwarding
        assert ("acquire-end",) not in addrs.log
        addrs.gate.set()
        n.role_work.drain(5)
        assert addrs.log.count(("acquire-end",)) == 1
        assert n.last_failover is not None and n.last_failover["takeover_ms"] >= 800
    finally:
        addrs.gate.set()
        n.stop()


def test_a_demotion_during_a_takeover_stands_down_after_it(tmp_path):
    """The lease ends during the takeover: the stand-down runs after the
    takeover's address changes, never before them (the addresses end up
    released)."""
    addrs = SlowAddresses()
    n = Node("a", CFG, str(tmp_path / "j"), addresses=addrs, lease=0.2)
    try:
        n.start(role="standby")
        n.on_transport_trigger("heartbeat_lost", time.monotonic())
        time.sleep(0.25)
        n.on_transport_trigger("lease_check", time.monotonic())
        assert n.role.role == "standby"
        addrs.gate.set()
        n.role_work.drain(5)
        kinds = [e[0] for e in addrs.log if e[0] != "lease"]
        assert kinds == ["acquire-start", "acquire-end", "release"]
    finally:
        addrs.gate.set()
        n.stop()


def test_a_takeover_queued_behind_its_own_demotion_is_skipped(tmp_path):
    """Promoted, demoted and promoted again while the role thread was busy:
    the first takeover finds the node in another epoch and does nothing."""
    addrs = SlowAddresses()
    n = Node("a", CFG, str(tmp_path / "j"), addresses=addrs, lease=0.2)
    try:
        n.start(role="standby")
        blocker = threading.Event()
        n.role_work.run(lambda: blocker.wait(10), "hold", wait=False)
        n.on_transport_trigger("heartbeat_lost", time.monotonic())
        first = n.role.epoch
        time.sleep(0.25)
        n.on_transport_trigger("lease_check", time.monotonic())
        n.on_transport_trigger("heartbeat_lost", time.monotonic())
        assert n.role.role == "active" and n.role.epoch == first + 1
        addrs.gate.set()
        blocker.set()
        n.role_work.drain(5)
        kinds = [e[0] for e in addrs.log if e[0] != "lease"]
        # First takeover skipped, its stand-down released, the second took over.
        assert kinds == ["release", "acquire-start", "acquire-end"]
        assert n.last_failover["epoch"] == first + 1
    finally:
        addrs.gate.set()
        n.stop()


def test_transport_thread_priority_is_raised_and_not_inherited_by_children():
    """Run on a thread of its own (the policy is per thread)."""
    out: dict = {}

    def body():
        out["set"] = raise_thread_priority()
        out["policy"] = thread_policy()

    t = threading.Thread(target=body)
    t.start()
    t.join(5)
    import os
    if out["set"].startswith("SCHED_FIFO"):
        assert out["policy"][0] == os.SCHED_FIFO and out["policy"][1] > 0
    elif out["set"] == "default priority":
        pytest.skip("no permission to raise a thread's priority here")
    # The calling (main) thread is unchanged.
    assert thread_policy()[0] == os.SCHED_OTHER


def test_threads_started_by_the_real_time_transport_thread_run_ordinary():
    """Linux threads inherit their creator's policy: the role thread and the
    applier, started from the transport thread, go back to the ordinary one."""
    import os
    from actors.replication import Applier
    out: dict = {}

    def transport():
        out["set"] = raise_thread_priority()
        w = RoleWork()
        w.run(lambda: out.__setitem__("role", thread_policy()[0]), "probe", wait=True)
        w.stop()
        a = Applier("probe-applier")
        a.submit(lambda: out.__setitem__("applier", thread_policy()[0]))
        a.wait_idle(5)
        a.stop()

    t = threading.Thread(target=transport)
    t.start()
    t.join(10)
    if not out["set"].startswith("SCHED_FIFO"):
        pytest.skip("no permission to raise a thread's priority here")
    assert out["role"] == os.SCHED_OTHER and out["applier"] == os.SCHED_OTHER


def test_threads_started_by_the_transport_thread_keep_the_nodes_niceness(monkeypatch):
    """SCHED_RESET_ON_FORK also resets a negative niceness to 0 in the
    threads the transport thread starts: they get the node's back (a role
    thread at 0 forking ip or tc on a loaded box held the node still)."""
    import os

    from actors import thread_priority
    from actors.replication import Applier
    monkeypatch.setattr(thread_priority, "process_nice", -3)
    out: dict = {}

    def nice_now():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def transport():
        out["set"] = raise_thread_priority()
        w = RoleWork()
        w.run(lambda: out.__setitem__("role", nice_now()), "probe", wait=True)
        w.stop()
        a = Applier("probe-applier")
        a.submit(lambda: out.__setitem__("applier", nice_now()))
        a.wait_idle(5)
        a.stop()

    t = threading.Thread(target=transport)
    t.start()
    t.join(10)
    if not out["set"].startswith("SCHED_FIFO") or os.geteuid() != 0:
        pytest.skip("no permission to raise a thread's priority here")
    assert out["role"] == -3 and out["applier"] == -3, out
