"""What gatewayd adds to a node when it runs as a service: the metrics
endpoint (ops/metrics.py) and systemd's notifications (ops/systemd_notify.py).

    service = NodeService(node, status, metrics=settings.metrics, worker=worker)
    service.bind()        # before the node starts: a taken port stops gatewayd early
    ...                   # the node starts
    service.ready()       # READY=1, the watchdog thread
    ...
    service.stop()        # STOPPING=1, the endpoint closed

The watchdog pings only while (ARCHITECTURE.md, "gatewayd and the service"): the packet
worker's housekeeping ran lately (its thread loops), an actor of the node's
dispatcher pool answers (the ALG steps run there), and the status answer
comes back (it takes the node's state and datapath locks)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from gateway.nodefile import MetricsSettings
from ops.systemd_notify import Beat, Notifier, ProgressWatchdog, watchdog_interval

log = logging.getLogger("gatewayd.service")


class NodeService:
    def __init__(self, node, status: Callable[[], dict], *, metrics: MetricsSettings | None = None,
                 worker=None, env: Mapping[str, str] | None = None) -> None:
        self.node = node
        self.status = status
        self.metrics_settings = metrics
        self.worker = worker
        self.notifier = Notifier(env)
        self.interval = watchdog_interval(env)
        self.metrics = None
        self.watchdog: ProgressWatchdog | None = None
        self._probe = None
        self._beat = Beat()

    def bind(self) -> None:
        """Open the metrics endpoint (if configured); OSError when it cannot
        listen (the port is taken, the address is not this host's)."""
        if self.metrics_settings is None:
            return
        from ops.metrics import GcPauseHistogram, MetricsServer, NodeCollector, TakeoverCounter
        takeovers = TakeoverCounter()
        self.node.on_takeover.append(takeovers)
        collector = NodeCollector(self.node, status=self.status, takeovers=takeovers,
                                  gc_pauses=GcPauseHistogram().install(), clock=self.node.clock)
        host, port = self.metrics_settings.host, self.metrics_settings.port
        server = MetricsServer(collector, host, port)
        try:
            server.start()
        except OSError as exc:
            raise OSError(exc.errno, f"metrics endpoint {host}:{port} (node file [metrics] listen, "
                          f"or --metrics): {exc.strerror or exc}") from None
        self.metrics = server

    def ready(self) -> None:
        """The node runs: tell systemd, and start proving progress."""
        if self.interval is not None:
            self.watchdog = ProgressWatchdog(self.notifier, self.interval, self.checks(),
                                             status_line=self.status_line)
            self.watchdog.start()
        self.notifier.notify("READY=1", f"STATUS={self.status_line()}")

    def checks(self) -> dict[str, Callable[[], str | None]]:
        within = max(2.0, self.interval / 2.0 if self.interval else 2.0)
        out: dict[str, Callable[[], str | None]] = {}
        if self.worker is not None:
            # The worker calls on_activity at every housekeeping turn (0.2 s).
            self.worker.on_activity = self._beat.wrap(self.worker.on_activity)
            out["packet worker"] = self._beat.check(within)
        out["actor dispatcher"] = self._dispatcher_check(within)
        out["status"] = self._status_check
        return out

    def _dispatcher_check(self, within: float) -> Callable[[], str | None]:
        from actors.runtime import PooledActor

        class WatchdogProbe(PooledActor):
            pool = self.node.pool

            def on_receive(self, message: Any) -> Any:
                return message

        def check() -> str | None:
            if self._probe is None:
                self._probe = WatchdogProbe.start()
            t0 = time.monotonic()
            try:
                self._probe.ask("ping", timeout=within)
            except Exception as exc:  # noqa: BLE001 - pykka's Timeout, a stopped pool
                return f"no answer within {within:.0f} s ({type(exc).__name__})"
            took = time.monotonic() - t0
            return None if took <= within else f"answered after {took:.1f} s"
        return check

    def _status_check(self) -> str | None:
        s = self.node.status()
        return None if isinstance(s, dict) and "role" in s else "no status answer"

    def status_line(self) -> str:
        s = self.node.status()
        peer = s.get("peer")
        return (f"{s['role']} (epoch {s['epoch']}), {s['calls']} calls, {s['registrations']} "
                f"registrations, peer " + (f"{peer.get('role') or 'unheard'}" if peer else "none"))

    def stop(self) -> None:
        self.notifier.notify("STOPPING=1")
        if self.watchdog is not None:
            self.watchdog.stop()
        if self._probe is not None:
            try:
                self._probe.stop(timeout=2)
            except Exception:  # noqa: BLE001 - the pool may be gone already
                pass
        if self.metrics is not None:
            self.metrics.stop()
        self.notifier.close()
