"""Established media forwarded by the kernel (``set flow media-offload``).

gateway/datapath/offload.py says why and what; this is the I/O: the node's
nftables table (``inet voipgw_media_qN``), the raw-table rule per queued
interface that lets the packets the table handled (untracked) pass the
NFQUEUE rule, and a thread that, every ``interval``, makes the kernel's
flows match the datapath's established media sessions (one ``nft`` batch
of the differences, under no lock) and, every ``count_interval``, reads the
flows' counters back into the sessions and the voice channels' activity.

Only while the node forwards (``active()``): a standby, or an active whose
lease ended, holds no flows, so the kernel never forwards for a node that
must not. The supervisor (actors/fence.py) and ``gatewayd --cleanup``
remove the table and the rules with the rest of the node's kernel state.

Where the kernel cannot (no nft, a table that does not load, a UDP flood
screen configured: that screen counts every packet in userspace), the
userspace fast path carries the media as before, and ``status()`` says
which path is in use and why.

The "bpf" layout (actors/kernel_media_bpf.py) puts the flows in a tc
ingress program's map instead of the table: same plans, same counters
into the sessions, no raw-table rule (a redirected packet never reaches
netfilter). Mode "auto" takes it where the program loads and the "maps"
table where it does not (``status()`` says which)."""

from __future__ import annotations

import logging
import subprocess
import threading
import time

from actors.kernel_media_bpf import BpfFlows
from actors.nft_lib import runner as nft_runner
from actors.thread_names import name_native_thread
from gateway.datapath.fastpath import FastPath
from gateway.datapath.media_prime import prime
from gateway.datapath.offload import (UNTRACKED, OffloadTable, flush_script,
                                      parse_chain_counters, parse_counters, table_name,
                                      table_script)

log = logging.getLogger("voip_alg.ingest")

RULE_COMMENT = "voip-alg media offload q{queue}"


def rule_specs(queue_num: int, ifaces) -> list[list[str]]:
    """The raw-table rules (iptables arguments after ``-t raw -I``) that let
    the packets the table forwarded pass the queue: ``notrack`` is the
    table's last statement, so an untracked packet here is one of them."""
    return [["PREROUTING", "-i", ifname, "-m", "conntrack", "--ctstate", UNTRACKED, "-m",
             "comment", "--comment", RULE_COMMENT.format(queue=queue_num), "-j", "ACCEPT"]
            for ifname in ifaces]


class KernelMedia:
    """The media offload of one node (its NFQUEUE number names the table).
    ``worker``: the NfqueueWorker whose datapath (and lock) it follows;
    ``active()``: whether the node may forward now."""

    def __init__(self, queue_num: int, ifaces, worker, active=lambda: True, *,
                 run=None, interval: float = 0.25, count_interval: float = 1.0,
                 mode: str = "maps", dscp=None, priority=None) -> None:
        if mode not in ("maps", "chains", "bpf", "auto"):
            raise ValueError(f"media offload mode is maps, chains, bpf or auto, not {mode!r}")
        self.mode = mode
        self.queue_num = queue_num
        self.table = table_name(queue_num)
        self.ifaces = list(ifaces)
        self.worker = worker
        self.active = active
        # nft in this process through libnftables where it loads (a batch
        # costs ~125 us, a process ~3-6 ms: actors/nft_lib.py).
        self.run = run if run is not None else nft_runner()
        self.interval = interval
        self.count_interval = count_interval
        self.flows = OffloadTable()
        self.installed = False
        self.reason = "not started"
        self.errors = 0
        self._rules: list[list[str]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()      # sessions ended now: take their flows out
        self._thread: threading.Thread | None = None
        # One sync at a time (the loop's, a takeover's): a plan and the batch
        # that applies it must not interleave with another's.
        self._sync_lock = threading.Lock()
        # The "bpf" layout's program and map (None: an nftables layout).
        self.bpf: BpfFlows | None = None
        # Traffic shaping's DSCP and HTB class by policy mark, which the
        # program writes (a redirected packet skips postrouting).
        self._dscp = dict(dscp or {})
        self._priority = dict(priority or {})
        self.fallback = ""               # mode "auto": why the program is not in use

    # -- kernel state ------------------------------------------------------------

    def rule_specs(self) -> list[list[str]]:
        if self.bpf is not None:
            return []
        return rule_specs(self.queue_num, self.ifaces)

    def _install_bpf(self) -> bool:
        bpf = BpfFlows(self.queue_num, self.ifaces, self.run, self._dscp, self._priority,
                       self.flows.max_flows)
        why = bpf.install()
        if why:
            if self.mode == "bpf":
                self.reason = why
                return False
            self.fallback = why
            log.warning("media offload: the tc program is not in use (%s); the nftables table is", why)
            self.mode = "maps"
            return False
        self.bpf = bpf
        self.mode = "bpf"
        self.installed = True
        self.reason = ""
        return True

    def _nft(self, script: str) -> subprocess.CompletedProcess:
        return self.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30)

    def install(self) -> bool:
        """The table and the rules; False (and ``reason``) when the kernel
        cannot: the media then stays on the userspace path."""
        if self.mode in ("bpf", "auto") and self.bpf is None:
            if self._install_bpf() or self.mode == "bpf":
                return self.installed
        try:
            r = self._nft(table_script(self.table, self.ifaces, self.mode))
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self.reason = f"nft unavailable: {exc}"
            return False
        if r.returncode != 0:
            self.reason = f"nft refused the table: {r.stderr.strip()[:300]}"
            return False
        self.installed = True
        for spec in self.rule_specs():
            r = self.run(["iptables", "-w", "5", "-t", "raw", "-I", *spec], capture_output=True,
                         text=True, timeout=30)
            if r.returncode != 0:
                self.reason = f"iptables -t raw -I {' '.join(spec)}: {r.stderr.strip()}"
                self.remove()
                return False
            self._rules.append(spec)
        self.reason = ""
        return True

    def remove(self) -> None:
        self.stop()
        for spec in self._rules:
            for _ in range(16):
                r = self.run(["iptables", "-w", "5", "-t", "raw", "-D", *spec], capture_output=True,
                             text=True, timeout=30)
                if r.returncode != 0:
                    break
        self._rules.clear()
        if self.bpf is not None:
            self.bpf.remove()
            self.bpf = None
            self.installed = False
        if self.installed:
            self.run(["nft", "delete", "table", "inet", self.table], capture_output=True, text=True,
                     timeout=30)
            self.installed = False
        self.flows.reset()

    # -- the loop ----------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._wake.clear()
        with self.worker.lock:
            self.worker.datapath.offload_wake = self.wake
        self._thread = threading.Thread(target=self._loop, name="kernel-media", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self.worker.lock:
            dp = self.worker.datapath
            if getattr(dp, "offload_wake", None) == self.wake:
                dp.offload_wake = None

    def wake(self) -> None:
        """The datapath ended sessions the kernel forwards (called under the
        worker's lock: it only sets an event)."""
        self._wake.set()

    def _loop(self) -> None:
        name_native_thread()
        next_count = time.monotonic() + self.count_interval
        next_turn = time.monotonic() + self.interval
        while True:
            self._wake.wait(max(0.0, next_turn - time.monotonic()))
            if self._stop.is_set():
                return
            try:
                if self._wake.is_set():
                    self._wake.clear()
                    self.take_out_ended()
                if time.monotonic() < next_turn:
                    continue
                next_turn = time.monotonic() + self.interval
                self.sync()
                if time.monotonic() >= next_count:
                    t0 = time.monotonic()
                    self.count()
                    # A listing costs ~70 us per flow (5,000 calls: 0.34 s,
                    # bench/bench_media_offload.py --scale): read at most a tenth
                    # of the time, and never so seldom that a session's idle
                    # deadline could pass between reads.
                    took = time.monotonic() - t0
                    next_count = time.monotonic() + min(max(self.count_interval, 10 * took),
                                                        self.max_count_interval())
            except Exception:             # the loop must go on; say why once per turn
                self.errors += 1
                log.exception("media offload: turn failed")

    def sync(self, force: bool = False) -> int:
        """Make the kernel's flows those of the datapath now; the number of
        changes. A batch the kernel refuses flushes the maps and starts over
        (the table is then known to be empty)."""
        with self._sync_lock:
            return self._sync(force)

    def take_out_ended(self) -> int:
        """The flows of the sessions the datapath ended since (a call's or a
        voice channel's release, ``clear session``), out of the kernel now:
        by their keys, one batch. The number of flows taken out."""
        with self._sync_lock:
            worker = self.worker
            with worker.lock:
                dp = worker.datapath
                gone, dp.offload_gone = dp.offload_gone, []
                plan = self.flows.forget(gone)
            if not plan.deletes:
                return 0
            self._apply(plan)
            return len(plan.deletes)

    def _sync(self, force: bool) -> int:
        worker = self.worker
        with worker.lock:
            dp = worker.datapath
            # The periodic plan sees every ended session (its entries are
            # gone from the fast path's table); a datapath made since (a
            # reload) is told where to wake the offload.
            dp.offload_gone = []
            dp.offload_wake = self.wake
            why = self._unable(dp)
            if force and why.startswith("not forwarding"):
                why = ""                 # a takeover, before the role says so
            if why:
                plan = self.flows.clear()
            else:
                plan = self.flows.plan(dp.sessions.fast)
        if why != self.reason:
            if why:
                # A standby's is the expected case; anything else is worth a look.
                (log.info if why.startswith("not forwarding") else log.warning)(
                    "media offload: media on the userspace path: %s", why)
            elif self.reason:
                log.info("media offload: media on the kernel path")
            self.reason = why
        if not plan.adds and not plan.deletes:
            return 0
        self._apply(plan)
        return len(plan.adds) + len(plan.deletes)

    def _apply(self, plan) -> None:
        """One batch; one the kernel refuses flushes the maps (the table is
        then known to be empty) and the next turn installs again."""
        if self.bpf is not None:
            try:
                self.bpf.apply(plan.adds, plan.deletes)
            except OSError as exc:
                self.errors += 1
                log.warning("media offload: the flow map refused %d change(s): %s; flushed, reinstalling",
                            len(plan.adds) + len(plan.deletes), exc)
                self.bpf.flush()
                with self.worker.lock:
                    self.flows.reset()
            return
        r = self._nft("\n".join(plan.script(self.table, self.mode)) + "\n")
        if r.returncode != 0:
            self.errors += 1
            log.warning("media offload: nft refused %d change(s): %s; maps flushed, reinstalling",
                        len(plan.adds) + len(plan.deletes), r.stderr.strip()[:300])
            self._nft("\n".join(flush_script(self.table)) + "\n" if self.mode == "maps"
                      else table_script(self.table, self.ifaces, self.mode))
            with self.worker.lock:
                self.flows.reset()

    def max_count_interval(self) -> float:
        """A third of the shortest media timeout among the flows (10 s when none)."""
        with self.worker.lock:
            timeouts = [i.flow.entry.session.timeout for i in self.flows.installed.values()]
        return max(self.count_interval, min(timeouts, default=30.0) / 3)

    def prime(self) -> int:
        """At a takeover, before the addresses are announced: the media
        sessions the rebuilt pinholes expect (gateway/datapath/media_prime.py),
        put in the kernel now rather than at the next turn."""
        if not self.installed:
            return 0
        worker = self.worker
        with worker.lock:
            dp = worker.datapath
            if getattr(dp, "pinholes", None) is None or FastPath.of(dp) is None:
                return 0
            made = prime(dp, worker.clock())
        self.sync(force=True)
        log.info("media offload: %d media direction(s) made ready from the takeover's pinholes; "
                 "%d flow direction(s) in the kernel", made, len(self.flows))
        return made

    def _unable(self, dp) -> str:
        if not self.installed:
            return self.reason or "not installed"
        if not self.active():
            return "not forwarding (standby)"
        if getattr(dp, "sessions", None) is None or FastPath.of(dp) is None:
            return "a UDP flood screen counts every packet in userspace"
        return ""

    def count(self) -> int | None:
        """Read the counters into the sessions; the new packets (None: the
        map could not be read)."""
        if not self.installed or not self.flows.installed:
            return 0
        with self._sync_lock:             # the listing and what it is applied to agree
            counts = self._read_counts()
            if counts is None:
                return None
            worker = self.worker
            with worker.lock:
                dp = worker.datapath
                return self.flows.counted(counts, worker.clock(), dp.activity, dp.paths)

    def _read_counts(self) -> dict[bytes, tuple[int, int]] | None:
        """Every installed flow's (packets, bytes) by key, from the program's
        map or the table's listing; None when it could not be read."""
        if self.bpf is not None:
            try:
                return self.bpf.counts()
            except OSError:
                return None
        what = ["map", "inet", self.table, "flows"] if self.mode == "maps" else \
            ["table", "inet", self.table]
        r = self.run(["nft", "-j", "list", *what], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            return None
        if self.mode == "maps":
            return parse_counters(r.stdout)
        by_fid = parse_chain_counters(r.stdout)
        with self.worker.lock:
            return self.flows.by_key(by_fid)

    def status(self) -> dict:
        """What ``gwctl status`` shows: the path media takes, and why."""
        path = "kernel" if self.installed and not self.reason else "userspace"
        out = {"media_path": path, "layout": self.mode,
               "table": self.table if self.installed and self.bpf is None else None,
               **self.flows.stats(), "errors": self.errors}
        if self.bpf is not None:
            out["program"] = self.bpf.pin
            out["map_id"] = self.bpf.map_id
            out["attached"] = [spec[1] for spec in self.bpf.attached]
        if self.fallback:
            out["bpf_unavailable"] = self.fallback
        if self.reason:
            out["reason"] = self.reason
        return out


def userspace_status(reason: str) -> dict:
    """``gwctl status``'s media path when no offload runs."""
    return {"media_path": "userspace", "reason": reason}
