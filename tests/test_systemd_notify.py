"""sd_notify over a NOTIFY_SOCKET the test binds (no systemd here), and the
watchdog that pings only while the node makes progress."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest

from actors.node import Node
from ops.node_service import NodeService
from ops.systemd_notify import Beat, Notifier, ProgressWatchdog, watchdog_interval
from tests.test_node import CFG, Clock


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(10)
        self.env = {"NOTIFY_SOCKET": str(path)}

    def messages(self, n: int) -> list[dict[str, str]]:
        out = []
        for _ in range(n):
            data = self.sock.recv(4096).decode()
            out.append(dict(line.split("=", 1) for line in data.split("\n")))
        return out

    def pending(self) -> int:
        self.sock.setblocking(False)
        n = 0
        try:
            while True:
                self.sock.recv(4096)
                n += 1
        except BlockingIOError:
            return n
        finally:
            self.sock.settimeout(10)


@pytest.fixture
def systemd(tmp_path):
    fake = FakeSystemd(tmp_path / "notify")
    yield fake
    fake.sock.close()


def test_ready_and_status_arrive_as_one_datagram(systemd):
    n = Notifier(systemd.env)
    assert n.notify("READY=1", "STATUS=active (epoch 1)\nsecond line")
    (msg,) = systemd.messages(1)
    assert msg == {"READY": "1", "STATUS": "active (epoch 1) second line"}


def test_abstract_namespace_socket():
    name = f"voipgw-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(b"\0" + name.encode())
        s.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("WATCHDOG=1")
        assert s.recv(100) == b"WATCHDOG=1"


def test_without_systemd_nothing_is_sent_and_nothing_fails(tmp_path):
    assert not Notifier({}).notify("READY=1")
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    # a socket that went away: logged, not raised
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify("READY=1")


@pytest.mark.parametrize("env,pid,want", [
    ({"WATCHDOG_USEC": "10000000"}, 7, 10.0),
    ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "7"}, 7, 10.0),
    ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "8"}, 7, None),
    ({"WATCHDOG_USEC": "0"}, 7, None),
    ({"WATCHDOG_USEC": "ten"}, 7, None),
    ({}, 7, None),
])
def test_watchdog_interval_from_the_environment(env, pid, want):
    assert watchdog_interval(env, pid) == want


def test_watchdog_pings_only_while_every_check_passes(systemd):
    ok = {"worker": True}
    wd = ProgressWatchdog(Notifier(systemd.env), 10.0,
                          {"worker": lambda: None if ok["worker"] else "stuck",
                           "other": lambda: None}, status_line=lambda: "active")
    assert wd.tick()
    assert systemd.messages(1) == [{"WATCHDOG": "1", "STATUS": "active"}]
    ok["worker"] = False
    assert not wd.tick() and not wd.tick()
    assert systemd.pending() == 0 and wd.failing == "worker: stuck"
    ok["worker"] = True
    assert wd.tick() and wd.failing is None and wd.pings == 2


def test_a_check_that_raises_is_a_failed_round(systemd):
    def boom():
        raise RuntimeError("lock gone")
    wd = ProgressWatchdog(Notifier(systemd.env), 10.0, {"status": boom})
    assert not wd.tick() and "lock gone" in wd.failing
    assert systemd.pending() == 0


def test_beat_goes_stale_when_the_thread_stops_calling():
    clock = Clock(100.0)
    beat = Beat(clock)
    seen = []
    fn = beat.wrap(seen.append)
    check = beat.check(within=5.0)
    assert check() == "has not run yet"
    fn([])
    assert check() is None and seen == [[]]
    clock.t += 6.0
    assert check() == "last ran 6.0 s ago"


@pytest.fixture
def node(tmp_path):
    n = Node("gw-a", CFG, str(tmp_path / "j"), clock=Clock(), fsync=False, timer_thread=False, threads=1)
    n.start()
    yield n
    n.stop()


def test_a_running_node_is_ready_and_its_dispatcher_proves_progress(node, systemd):
    env = {**systemd.env, "WATCHDOG_USEC": "4000000"}
    svc = NodeService(node, node.status, env=env)
    svc.ready()
    ready = systemd.messages(1)[0]
    assert ready["READY"] == "1" and ready["STATUS"].startswith("active (epoch 1), 0 calls")
    wd = svc.watchdog
    assert wd.period == 2.0 and set(wd.checks) == {"actor dispatcher", "status"}
    wd.stop()                        # rounds by hand from here: no timing in the test
    assert wd.tick()
    assert systemd.messages(1)[0]["WATCHDOG"] == "1"

    # The one dispatcher thread is held (an ALG step that never returns):
    # no ping until it is free again.
    held, release = threading.Event(), threading.Event()

    from actors.runtime import PooledActor

    class Hog(PooledActor):
        pool = node.pool

        def on_receive(self, message):
            held.set()
            release.wait(30)

    hog = Hog.start()
    hog.tell("hold")
    assert held.wait(10)
    # A short wait for the probe: the round fails without waiting out the real bound.
    wd.checks["actor dispatcher"] = svc._dispatcher_check(within=0.3)
    assert not wd.tick()
    assert "actor dispatcher: no answer" in wd.failing
    assert systemd.pending() == 0
    release.set()
    assert wd.tick()
    hog.stop()
    svc.stop()
    assert systemd.messages(2)[-1] == {"STOPPING": "1"}


def test_the_packet_worker_beat_is_wrapped_around_its_callback(node, systemd):
    class Worker:
        def __init__(self):
            self.on_activity = None

    w = Worker()
    svc = NodeService(node, node.status, worker=w, env={**systemd.env, "WATCHDOG_USEC": "4000000"})
    checks = svc.checks()
    assert checks["packet worker"]() == "has not run yet"
    w.on_activity([])                # what the worker's housekeeping does every turn
    assert checks["packet worker"]() is None
