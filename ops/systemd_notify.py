"""systemd's service notification protocol (sd_notify(3)), and a watchdog
that pings only while the node makes progress.

The protocol is one datagram per message on the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace), text
``KEY=VALUE`` lines: ``READY=1`` once the service is up (``Type=notify``),
``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds
(``WatchdogSec=``), ``STATUS=...`` for ``systemctl status``, ``STOPPING=1``.
Without ``$NOTIFY_SOCKET`` (not run by systemd) every call does nothing.

The watchdog thread pings only when every check passes, so a node whose
threads still run but no longer do their work (a deadlocked lock, a dead
packet worker, a hung actor dispatcher) is killed and restarted by systemd
(``Restart=on-failure``) instead of being kept alive by a timer."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Mapping

from actors.thread_names import name_native_thread

log = logging.getLogger("gatewayd.systemd")

Check = Callable[[], str | None]     # None when fine, else why not


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` (read once, at creation)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one message.
        True if it was sent; failures are logged, never raised: the service
        runs on without its supervisor's notifications."""
        if self.address is None:
            return False
        msg = "\n".join(f.replace("\n", " ") for f in fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(msg, self.address)
                return True
            except OSError as exc:
                log.warning("systemd: cannot notify %r: %s", self.address, exc.strerror or exc)
                return False

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _address(value: str) -> str | bytes | None:
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()       # the abstract namespace
    return None                                 # unset, or a kind (vsock) not spoken here


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds within which systemd wants a ``WATCHDOG=1`` (``WatchdogSec=``),
    or None: no watchdog, or one meant for another process (``$WATCHDOG_PID``)."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isascii() or not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1e6


class ProgressWatchdog:
    """Every ``interval / 2`` (systemd's advice) runs the checks; all fine:
    ``WATCHDOG=1`` (and ``STATUS=`` from ``status_line``); one failing: no
    ping, and the reason is logged (once while it lasts)."""

    def __init__(self, notifier: Notifier, interval: float, checks: Mapping[str, Check], *,
                 status_line: Callable[[], str] | None = None) -> None:
        self.notifier = notifier
        self.period = interval / 2.0
        self.checks = dict(checks)
        self.status_line = status_line
        self.pings = 0
        self.failing: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> bool:
        """One round: True when the node proved progress and was pinged."""
        for name, check in self.checks.items():
            try:
                why = check()
            except Exception as exc:  # noqa: BLE001 - a failing check is a failed round
                why = f"{type(exc).__name__}: {exc}"
            if why is not None:
                reason = f"{name}: {why}"
                if reason != self.failing:
                    log.error("systemd watchdog: no ping: %s (systemd restarts the node if this "
                              "lasts the WatchdogSec)", reason)
                self.failing = reason
                return False
        if self.failing is not None:
            log.warning("systemd watchdog: progress again after %s", self.failing)
            self.failing = None
        fields = ["WATCHDOG=1"]
        if self.status_line is not None:
            try:
                fields.append(f"STATUS={self.status_line()}")
            except Exception:  # noqa: BLE001 - the status text is a courtesy
                pass
        if self.notifier.notify(*fields):
            self.pings += 1
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        name_native_thread()
        while not self._stop.wait(self.period):
            self.tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.period + 5)


class Beat:
    """When a thread last passed a point: ``wrap(fn)`` returns ``fn`` noting
    the time at every call (the ingest worker's housekeeping calls its
    activity callback every turn, with or without media)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last: float | None = None

    def wrap(self, fn: Callable | None) -> Callable:
        def beat(*args, **kwargs):
            self.last = self.clock()
            if fn is not None:
                return fn(*args, **kwargs)
            return None
        return beat

    def check(self, within: float) -> Check:
        def check() -> str | None:
            if self.last is None:
                return "has not run yet"
            age = self.clock() - self.last
            return None if age <= within else f"last ran {age:.1f} s ago"
        return check
