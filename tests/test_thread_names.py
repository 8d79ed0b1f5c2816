"""The node's threads carry their names to the kernel (top -H, ps -L, perf)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from actors.runtime import DispatcherPool
from actors.thread_names import TASK_COMM_LEN, name_native_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


def _comm(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().rstrip("\n")


def _named_in(thread_name: str, explicit: str | None = None) -> str:
    seen: dict[str, str] = {}

    def body() -> None:
        assert name_native_thread(explicit)
        seen["comm"] = _comm(threading.get_native_id())

    t = threading.Thread(target=body, name=thread_name)
    t.start()
    t.join(5)
    return seen["comm"]


def test_a_thread_gets_its_python_name():
    assert _named_in("journal-writer") == "journal-writer"


def test_long_names_are_cut_to_what_the_kernel_keeps():
    assert _named_in("replication-node-with-a-long-id") == "replication-node-with-a-long-id"[:TASK_COMM_LEN - 1]


def test_an_explicit_name_wins_and_the_caller_is_left_alone():
    before = _comm(threading.get_native_id())
    assert _named_in("whatever", explicit="nfqueue-7") == "nfqueue-7"
    assert _comm(threading.get_native_id()) == before


def test_the_dispatcher_threads_of_a_pool_are_named():
    pool = DispatcherPool(threads=2, name="tn-pool")
    try:
        names = {t.native_id: t.name for t in pool._threads}
        for native_id, name in names.items():
            # The thread names itself first thing; give it the moment to run.
            for _ in range(200):
                if _comm(native_id) == name:
                    break
                threading.Event().wait(0.005)
            assert _comm(native_id) == name
    finally:
        pool.shutdown()


def _wait_named(thread: threading.Thread) -> None:
    # The thread names itself first thing; give it the moment to run.
    for _ in range(200):
        if _comm(thread.native_id) == thread.name[:TASK_COMM_LEN - 1]:
            break
        threading.Event().wait(0.005)
    assert _comm(thread.native_id) == thread.name[:TASK_COMM_LEN - 1]


def test_the_snapshot_and_watchdog_threads_are_named(tmp_path):
    """Their CPU shows under their own names, not the process's (a snapshot
    thread folding the journal was counted as "gatewayd")."""
    from actors.snapshots import SnapshotService
    from gateway.nodefile import RetentionSettings
    from journal.store import Journal
    from ops.systemd_notify import Notifier, ProgressWatchdog
    from tests.test_snapshot_retention import taker_for
    with Journal.open(tmp_path / "j", fsync=False) as j:
        svc = SnapshotService(taker_for(j), RetentionSettings(), name="snapshots-tn", check_every=0.01)
        svc.start()
        try:
            _wait_named(svc._thread)
        finally:
            svc.stop(final=False)
    dog = ProgressWatchdog(Notifier({}), 10.0, {})
    dog.start()
    try:
        _wait_named(dog._thread)
    finally:
        dog.stop()
