"""The futures and stop flags of pooled actors (ARCHITECTURE.md, "Actor
runtime"): a one-shot :class:`PooledFuture` cheaper than pykka's threading
one, the deadlock check that refuses to wait on a dispatcher thread
(:class:`DispatcherBlockingError`), and an ``actor_stopped`` flag without an
Event per actor."""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any, Callable

import pykka
from pykka import Timeout

_allocate_lock = threading.Lock
# Thread idents of every dispatcher thread of every pool, for the deadlock
# check in PooledFuture.get().
_dispatcher_idents: set[int] = set()


class DispatcherBlockingError(RuntimeError):
    """A dispatcher thread tried to wait on a future that is not done yet.

    With a handful of dispatcher threads, an actor that blocks waiting for
    another actor's answer can hold the very thread that answer needs; actors
    talk with `tell` (put the reply address in the message) instead.
    """


class _StopFlag:
    """The `actor_stopped` flag, without a `threading.Event` per actor.

    `ActorRef.is_alive()` only calls `is_set()`; `wait()` is rare (tests,
    shutdown) so its Event is made on first use.
    """

    __slots__ = ("_flag", "_event")
    _event_lock = _allocate_lock()

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        # Flag first, then look for a waiter's Event: wait() publishes the
        # Event first, then re-reads the flag, so one of the two sees the other.
        self._flag = True
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        event = self._event
        if event is None:
            with self._event_lock:
                if self._event is None:
                    self._event = threading.Event()
                event = self._event
        if self._flag:
            event.set()
        return event.wait(timeout)


class PooledFuture(pykka.Future[Any]):
    """A pykka future completed by a dispatcher and awaited from any thread.

    A lock, acquired at creation and released once by `set()`, is the
    one-shot signal: cheaper to make than ThreadingFuture's Condition.
    """

    def __init__(self) -> None:
        super().__init__()
        self._latch = _allocate_lock()
        self._latch.acquire()
        self._value: Any = None
        self._exc_info: Any = None
        self._done = False

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if not self._done:
            if threading.get_ident() in _dispatcher_idents:
                msg = (
                    "waiting on a future inside a dispatcher turn can deadlock "
                    "the pool; reply with tell instead"
                )
                raise DispatcherBlockingError(msg)
            if timeout is None:
                self._latch.acquire()
            elif not self._latch.acquire(True, max(timeout, 0.0)):
                raise Timeout(f"{timeout} seconds")
            # Pass the signal on to the next waiter, if any.
            self._latch.release()
            if self._get_hook is not None:
                return super().get(timeout=timeout)
        if self._exc_info is not None:
            exc_type, exc_value, exc_traceback = self._exc_info
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not exc_traceback:
                raise exc_value.with_traceback(exc_traceback)
            raise exc_value
        return self._value

    def _complete(self) -> None:
        self._done = True
        self._latch.release()

    def set(self, value: Any | None = None) -> None:
        if self._done or self._get_hook is not None:
            raise queue.Full
        self._value = value
        self._complete()

    def set_exception(self, exc_info: Any | None = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        if self._done or self._get_hook is not None:
            raise queue.Full
        self._exc_info = exc_info
        self._complete()

    def set_get_hook(self, func: Callable[[float | None], Any]) -> None:
        if self._done:
            raise queue.Full
        super().set_get_hook(func)
        # Wake anyone already waiting: they will now run the hook.
        self._done = True
        self._latch.release()
