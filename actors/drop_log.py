"""Drops to the log, throttled: at most one line per drop code (or per key)
per interval, with the count of the ones not logged since
(:class:`gateway.drops.LogThrottle`)."""

from __future__ import annotations

import logging

from gateway.drops import LogThrottle


class DropLog:
    """Drops to the log: at most one line per code (or per ``key``, e.g. a
    code and a source address) per ``interval``, with the count of the ones
    not logged since (gateway.drops.LogThrottle). The line carries the code
    and the one drop's reason text (addresses, the ALG's reason)."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0, max_reasons: int = 4096) -> None:
        self.log = logger
        self._throttle = LogThrottle(interval, max_reasons)
        self._last = self._throttle._last       # key -> [last logged, suppressed]

    def __call__(self, reason: str, now: float, code: str | None = None, key=None) -> bool:
        if key is None:
            key = code if code is not None else reason
        n = self._throttle.check(key, now)
        if n is None:
            return False
        extra = f" (and {n} more since)" if n else ""
        if code is None:
            self.log.info("drop: %s%s", reason, extra)
        else:
            self.log.info("drop [%s]: %s%s", code, reason, extra)
        return True
