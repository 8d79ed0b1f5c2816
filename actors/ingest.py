"""The NFQUEUE ingest worker: packets from the kernel through the datapath.

``NfqueueWorker`` binds one netfilter queue, installs the iptables rules that
feed it and the sysctls the gateway needs, and runs the per-packet path
(:class:`gateway.datapath.Datapath`) on its own thread (DESIGN.md, "A packet's
way through").

Verdicts:
* ``Forward`` -> ``set_payload`` (when rewritten) and accept;
* ``Drop`` -> drop, counted under its code (gateway/drops.py), and a log line
  with the code and the reason (at most one per second per code, with the
  count of the ones not logged);
* ``Alg`` -> the packet is held (``retain()`` copies its bytes; the kernel
  keeps it queued) and ``on_alg(outcome, done)`` is called. The node runs the
  ALG in the call's actor and calls ``done(Forward | Drop)`` later, from any
  thread (usually after ``worker.finish_alg(...)``). ``done`` only queues the
  verdict: it is given on the worker thread, so libnetfilter_queue's handle is
  only ever used by one thread. A held packet with no verdict after
  ``hold_timeout`` seconds is dropped with that reason.

Order: the worker takes packets in the kernel's order and gives fast-path
verdicts at once; it never reorders. Signalling packets of one call go to one
actor, which handles its messages in order and so calls ``done`` in order;
``done`` verdicts are applied in the order they are called. Packets of one
dialog therefore leave in the order they came.

The datapath is not thread-safe: the worker holds ``lock`` around every call
into it, and other threads use ``finish_alg`` / ``locked()`` for theirs.

Why these kernel settings: the rules sit in ``raw PREROUTING``, before
conntrack and the routing decision, so the rewritten destination is what the
kernel routes; the gateway may rewrite the *source* to one of its own
addresses (interface NAT, MIP), which the kernel would drop as a martian
without ``accept_local=1``, and ``rp_filter`` would drop replies whose
rewritten source does not route back through the ingress interface.
``--queue-bypass`` makes the kernel accept packets when no worker listens
(fail-open); without it, the default, they are dropped (fail-closed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterable

from actors import kernel_screen
from actors.nfq_verdicts import BatchedVerdicts, PacketVerdicts
from actors.thread_names import name_native_thread
from gateway.datapath import Alg, Datapath, Drop, Forward
from gateway.datapath.fastpath import FastPath
from gateway.drops import LogThrottle, code_of, count
from gateway.overload import NewDialogBudget, new_dialog_kind, overload_settings

log = logging.getLogger("voip_alg.ingest")

DEFAULT_MAX_LEN = 8192          # the default 1024 drops bursts (DESIGN.md, measured facts)
# Receive buffer of the queue's netlink socket, per packet of queue length.
# The kernel drops a queued packet it cannot put on the socket (the queue's
# "user_dropped" count in /proc/net/netfilter/nfnetlink_queue) whatever the
# queue length, and netfilterqueue's default buffer is sized for its default
# length of 1024 full-size copies: a worker that lost its core for a few
# milliseconds under 200k packets/s dropped packets with the queue far from
# its length of 8192 (measured: bench/bench_datapath.py, user_dropped).
# netfilterqueue's own figure per packet (a copy of at most 4,016 bytes plus
# the skb's overhead, halved because the kernel doubles what is asked for).
SOCK_BYTES_PER_PACKET = (4016 + 780) // 2


def sock_rcvbuf(max_len: int) -> int:
    """The receive buffer to ask for a queue of ``max_len`` packets."""
    return max_len * SOCK_BYTES_PER_PACKET
HOLD_TIMEOUT = 5.0
STANDBY_DROP = "standby: not forwarding"
RULE_COMMENT = "voip-alg-q{queue}"


PROC_SYS = "/proc/sys"


def sysctl_path(*parts: str, root: str = PROC_SYS) -> str:
    """The /proc/sys file of a setting given by its components, e.g.
    ``("net", "ipv4", "conf", "eth0.100", "rp_filter")``. Not the dotted
    ``sysctl`` name: an interface name may itself hold dots (VLAN devices
    such as ``eth0.100``, ``loopback.1``), and replacing every dot by a slash
    would split it into two path components."""
    for part in parts:
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"bad sysctl path component {part!r}")
    return "/".join((root, *parts))


def conf_path(ifname: str, setting: str, root: str = PROC_SYS) -> str:
    """``net/ipv4/conf/<ifname>/<setting>`` (``ifname`` may be ``all``)."""
    return sysctl_path("net", "ipv4", "conf", ifname, setting, root=root)


def read_sysctl(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


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


class NfqueueWorker:
    """One NFQUEUE, one thread, one datapath.

    ``linux_ifaces``: Linux interface name -> configuration interface name
    (``{"veth-gw-a": "ethernet1"}``); only these interfaces are queued.
    ``on_alg(outcome, done)``: runs the ALG for a held packet (None: such
    packets are dropped). ``forwarding()``: False on a standby or during a
    handover: every packet is dropped. ``on_activity(batch)``,
    ``on_expired(items)``, ``on_alarm(text)``: housekeeping results, called on
    the worker thread every ``housekeeping_interval`` seconds (``on_activity``
    at every one, with an empty batch when no media was seen). ``lock``: the
    lock guarding the datapath, when others share it (default: the worker's own).
    ``turns``: the node's actors, run on the worker's thread (an object with
    ``drive(wake)``, ``run_turns()``, ``has_turns()`` and ``undrive()``, see
    ``Node``): after each drain of the queue the dialogs' turns for the
    messages it held run here, with their journal steps handed over together
    (one unit of work per drain, no thread hand-off to reach the ALG)."""

    def __init__(self, queue_num: int, linux_ifaces: dict[str, str], datapath: Datapath, *,
                 on_alg: Callable[[Alg, Callable[[Forward | Drop], None]], None] | None = None,
                 forwarding: Callable[[], bool] = lambda: True, bypass: bool = False,
                 max_len: int = DEFAULT_MAX_LEN, hold_timeout: float = HOLD_TIMEOUT,
                 on_activity: Callable[[list], None] | None = None,
                 on_expired: Callable[[list], None] | None = None,
                 on_alarm: Callable[[str], None] | None = None,
                 housekeeping_interval: float = 0.2, install: bool = True,
                 clock: Callable[[], float] = time.time, lock=None,
                 proc_sys: str = PROC_SYS, batch_verdicts: bool = True,
                 overload: NewDialogBudget | None | str = "config", turns=None) -> None:
        self.queue_num = queue_num
        self.turns = turns
        self.linux_ifaces = dict(linux_ifaces)
        self.datapath = datapath          # also sets the fast path (property below)
        self.on_alg = on_alg
        self.forwarding = forwarding
        self.bypass = bypass
        self.max_len = max_len
        self.hold_timeout = hold_timeout
        self.on_activity = on_activity
        self.on_expired = on_expired
        self.on_alarm = on_alarm
        self.housekeeping_interval = housekeeping_interval
        self.install = install
        self.proc_sys = proc_sys          # tests point this at a scratch tree
        self.batch_verdicts = batch_verdicts
        self.clock = clock
        # Shared with whoever else calls into the datapath (the node's lock).
        self.lock = lock if lock is not None else threading.RLock()
        self.drop_log = DropLog(log)
        self.counters = {"packets": 0, "accepted": 0, "dropped": 0, "held": 0, "held_timeout": 0,
                         "errors": 0, "standby_dropped": 0, "shed": 0}
        # Every packet this worker drops, once, by code (gateway.drops).
        self.drop_codes: dict[str, int] = {}
        # Overload control (gateway/overload.py): new dialogs are admitted
        # here, before the ALG's parse, per source; "config" takes the
        # datapath configuration's `set flow overload` settings.
        if overload == "config":
            overload = overload_control_of(datapath)
        self.overload = overload
        # Hold -> verdict latencies since the last housekeeping (their sum
        # and count: the mean is the load signal; one slow fsync is not).
        self._latency_sum = 0.0
        self._latency_n = 0
        self._max_batch = 0.0              # longest queue drain since the last housekeeping
        self._ifnames: dict[int, str | None] = {}
        # token -> (nfq packet, since, ALG name: the code of an ALG's drop)
        self._held: dict[int, tuple[object, float, str]] = {}
        self._next_token = 1
        self._verdicts: deque = deque()
        # How verdicts reach the kernel: batched on the queue's socket once
        # bound (start), else through the packets' own methods.
        self.verdicts = PacketVerdicts()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nfq = None
        self._rules: list[list[str]] = []
        # New dialogs limited per source in the kernel, ahead of the queue
        # (actors/kernel_screen.py; `set flow overload source-rate`).
        self.screen = source_screen_of(datapath, queue_num, list(self.linux_ifaces)) \
            if install else None
        self._saved_sysctls: dict[str, str] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop_ident: int | None = None     # the loop's thread (no wake-up needed from it)

    # -- the datapath, shared with the node ---------------------------------------

    @property
    def datapath(self) -> Datapath:
        return self._datapath

    @datapath.setter
    def datapath(self, datapath: Datapath) -> None:
        # Packets of established UDP sessions are forwarded without the full
        # datapath (gateway/datapath/fastpath.py), over the same datapath's
        # tables; None: every packet goes through Datapath.process.
        self._datapath = datapath
        self._fast = FastPath.of(datapath) if isinstance(datapath, Datapath) else None

    @contextmanager
    def locked(self):
        """``with worker.locked() as dp:`` — use the datapath from another thread."""
        with self.lock:
            yield self.datapath

    def finish_alg(self, outcome: Alg, verdict: str, data: bytes, route_to=None,
                   pinholes_open=(), pinholes_close=(), now: float | None = None, *,
                   reason: str = "") -> Forward | Drop:
        with self.lock:
            return self.datapath.finish_alg(outcome, verdict, data, route_to, pinholes_open,
                                            pinholes_close, self.clock() if now is None else now,
                                            reason=reason)

    def replace_datapath(self, datapath: Datapath) -> None:
        with self.lock:
            self.datapath = datapath

    # -- kernel setup -------------------------------------------------------------

    def rule_specs(self) -> list[list[str]]:
        out = []
        for ifname in self.linux_ifaces:
            spec = ["PREROUTING", "-i", ifname, "-m", "comment", "--comment",
                    RULE_COMMENT.format(queue=self.queue_num), "-j", "NFQUEUE",
                    "--queue-num", str(self.queue_num)]
            if self.bypass:
                spec.append("--queue-bypass")
            out.append(spec)
        return out

    def _iptables(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["iptables", "-w", "5", "-t", "raw", *args],
                              capture_output=True, text=True)

    def _set_sysctl(self, path: str, value: str) -> None:
        old = read_sysctl(path)
        if old is None:
            raise OSError(f"sysctl {path} not found")
        if old != value:
            self._saved_sysctls.setdefault(path, old)
            write_sysctl(path, value)

    def sysctl_settings(self) -> list[tuple[str, str]]:
        """(/proc/sys path, value) of every setting the worker needs."""
        root = self.proc_sys
        out = [(sysctl_path("net", "ipv4", "ip_forward", root=root), "1"),
               # rp_filter is the maximum of "all" and the interface's value.
               (conf_path("all", "rp_filter", root), "0")]
        for ifname in self.linux_ifaces:
            out.append((conf_path(ifname, "accept_local", root), "1"))
            out.append((conf_path(ifname, "rp_filter", root), "0"))
        return out

    def install_sysctls(self) -> None:
        for path, value in self.sysctl_settings():
            self._set_sysctl(path, value)

    def restore_sysctls(self) -> None:
        for path, old in reversed(list(self._saved_sysctls.items())):
            try:
                write_sysctl(path, old)
            except OSError as e:
                log.warning("could not restore %s=%s: %s", path, old, e)
        self._saved_sysctls.clear()

    def install_kernel_state(self) -> None:
        self.install_sysctls()
        if self.screen is not None:
            self.screen.install()
            self.screen.watch(self._screen_drops)
        for spec in self.rule_specs():
            r = self._iptables("-I", *spec)
            if r.returncode != 0:
                raise OSError(f"iptables -t raw -I {' '.join(spec)}: {r.stderr.strip()}")
            self._rules.append(spec)

    def _screen_drops(self, n: int) -> None:
        """New drops of the kernel's per-source screen (its watch thread)."""
        with self.lock:
            self.drop_codes[kernel_screen.DROP_CODE] = self.drop_codes.get(kernel_screen.DROP_CODE, 0) + n
        log.info("drop [%s]: %d packet(s) of new work (SIP/MGCP/RAS requests, TCP connections to "
                 "5060/1720) over %d/s from one source dropped in the kernel before the queue "
                 "(sources: nft list table inet %s)", kernel_screen.DROP_CODE,
                 n, self.screen.rate, self.screen.table)

    def remove_kernel_state(self) -> None:
        for spec in self._rules:
            # Delete every copy (a crashed earlier run may have left one).
            for _ in range(16):
                if self._iptables("-D", *spec).returncode != 0:
                    break
        self._rules.clear()
        if self.screen is not None:
            self.screen.remove()
        self.restore_sysctls()

    # -- life cycle ---------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> None:
        from netfilterqueue import NetfilterQueue

        if self.install:
            try:
                self.install_kernel_state()
            except BaseException:
                self.remove_kernel_state()
                raise
        try:
            nfq = NetfilterQueue()
            nfq.bind(self.queue_num, self._callback, max_len=self.max_len,
                     sock_len=sock_rcvbuf(self.max_len))
        except BaseException:
            if self.install:
                self.remove_kernel_state()
            raise
        self._nfq = nfq
        if self.batch_verdicts:
            self.verdicts = BatchedVerdicts(nfq.get_fd(), self.queue_num)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"nfqueue-{self.queue_num}",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.verdicts.close()
        self.verdicts = PacketVerdicts()
        if self._nfq is not None:
            try:
                self._nfq.unbind()
            finally:
                self._nfq = None
        if self.install:
            self.remove_kernel_state()

    def __enter__(self) -> "NfqueueWorker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the loop -----------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass                      # a wake-up is already pending

    def _run(self) -> None:
        name_native_thread()
        nfq = self._nfq
        fd = nfq.get_fd()
        next_house = self.clock() + self.housekeeping_interval
        turns = self.turns
        self._loop_ident = threading.get_ident()
        if turns is not None:
            turns.drive(self._wake)
        self._ready.set()
        try:
            while not self._stop.is_set():
                now = self.clock()
                wait = 0.0 if turns is not None and turns.has_turns() else \
                    max(0.0, min(next_house - now, 0.5))
                r, _w, _x = select.select([fd, self._wake_r], [], [], wait)
                if fd in r:
                    t0 = time.perf_counter()
                    nfq.run(block=False)
                    self.verdicts.flush()
                    if turns is not None:
                        # The turns of what this drain held (the ALG steps)
                        # belong to the drain's cost: the overload signal.
                        turns.run_turns()
                    dt = time.perf_counter() - t0
                    if dt > self._max_batch:
                        self._max_batch = dt
                if self._wake_r in r:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                now = self.clock()
                if now >= next_house:
                    next_house = now + self.housekeeping_interval
                    self._housekeeping(now)
                if turns is not None:
                    turns.run_turns()              # timers, media reports, operators' asks
                if self._verdicts:
                    self._apply_verdicts()
                self.verdicts.flush()              # answers, held packets timed out
        except BaseException as e:           # the loop must say why it ended
            self._error = e
            log.exception("NFQUEUE %d worker stopped", self.queue_num)
        finally:
            if turns is not None:
                turns.undrive()            # the pool's own threads take the actors back
            # Held packets must not stay queued for ever.
            self._apply_verdicts()
            for token in list(self._held):
                self._give(token, Drop("worker stopping", "worker"))
            self.verdicts.flush()

    def _housekeeping(self, now: float) -> None:
        for token, (_pkt, since, _alg) in list(self._held.items()):
            if now - since > self.hold_timeout:
                self.counters["held_timeout"] += 1
                self._give(token, Drop(f"alg: no verdict within {self.hold_timeout:g} s",
                                       "held-timeout"))
        if self.overload is not None:
            # The node's load since the last turn: what waits for its ALG
            # step and journal write, how long completions took, how long
            # the queue's drains took (gateway/overload.py).
            ov = self.overload
            was = ov.overloaded
            latency = self._latency_sum / self._latency_n if self._latency_n else 0.0
            if ov.observe(now, len(self._held), latency, self._max_batch) and not was:
                log.warning("overload: %d messages held, mean completion %.0f ms, queue drain "
                            "%.0f ms; new dialogs limited to %.0f/s", len(self._held),
                            latency * 1000, self._max_batch * 1000, ov.budget)
            elif was and not ov.overloaded:
                log.warning("overload: ended (%d new dialogs shed so far)", ov.shed)
            self._latency_sum = self._max_batch = 0.0
            self._latency_n = 0
        with self.lock:
            expired = self.datapath.expire(now)
            activity = self.datapath.drain_activity() if self.on_activity else []
            alarms = self.datapath.drain_alarms()
        for a in alarms:
            log.warning("%s", a)
            if self.on_alarm:
                self._safe(self.on_alarm, a)
        if expired and self.on_expired:
            self._safe(self.on_expired, expired)
        if self.on_activity is not None:
            # Also when empty: a receiver that holds back reports of steady
            # media (Node.coalesce_media) passes them on once a channel is quiet.
            self._safe(self.on_activity, activity)

    @staticmethod
    def _safe(fn, arg) -> None:
        try:
            fn(arg)
        except Exception:
            log.exception("ingest callback %r failed", fn)

    # -- per packet ---------------------------------------------------------------

    def _ifname(self, ifindex: int) -> str | None:
        try:
            return self._ifnames[ifindex]
        except KeyError:
            try:
                linux = socket.if_indextoname(ifindex)
            except OSError:
                linux = None
            name = self.linux_ifaces.get(linux) if linux else None
            self._ifnames[ifindex] = name
            return name

    def _drop(self, pkt, reason: str, now: float, code: str = "other", key=None) -> None:
        self.verdicts.drop(pkt)
        self.counters["dropped"] += 1
        count(self.drop_codes, code)
        self.drop_log(reason, now, code, key)

    def _callback(self, pkt) -> None:
        c = self.counters
        c["packets"] += 1
        now = self.clock()
        try:
            if not self.forwarding():
                c["standby_dropped"] += 1
                self._drop(pkt, STANDBY_DROP, now, "standby")
                return
            ingress = self._ifnames.get(pkt.indev) or self._ifname(pkt.indev)
            if ingress is None:
                self._drop(pkt, f"ingress ifindex {pkt.indev} is not a gateway interface", now,
                           "ingress-unknown")
                return
            buf = pkt.get_payload()
            fast = self._fast
            lock = self.lock
            lock.acquire()          # not `with`: half the cost, per packet
            try:
                # Established UDP first (gateway/datapath/fastpath.py): the
                # same bytes and accounting as Datapath.process would give,
                # a Forward on "fast-session" without a note.
                data = fast.process(buf, now) if fast is not None else None
                if data is None:
                    out = self._datapath.process(buf, ingress, now)
            finally:
                lock.release()
            if self._verdicts:
                # ALG answers already decided (done() runs under the same lock
                # as finish_alg) go out before this packet's verdict: a later
                # segment or a retransmission of the same flow must never
                # overtake the packet the ALG held.
                self._apply_verdicts()
            if data is not None:
                self.verdicts.accept(pkt, None if data is buf else data, fast.mark)
                c["accepted"] += 1
                return
            kind = type(out)
            if kind is Forward:
                self.verdicts.accept(pkt, None if out.data is buf else out.data, out.mark)
                c["accepted"] += 1
                if out.note:
                    log.info("%s: %s", out.note, _describe(buf))
            elif kind is Drop:
                self._drop(pkt, out.reason, now, code_of(out.category, out.reason))
            elif self.overload is None or not self._shed(pkt, out, now):
                self._hold(pkt, out, now)
        except Exception:
            c["errors"] += 1
            log.exception("datapath failed on a packet; dropped")
            try:
                self.verdicts.drop(pkt)
                count(self.drop_codes, "internal-error")
            except RuntimeError:
                pass                      # the verdict was already given

    def _shed(self, pkt, out: Alg, now: float) -> bool:
        """Overload control before the ALG (gateway/overload.py): a message
        that starts a new dialog, from a source past its share of the
        budget, is dropped here, before any parse or ALG work; everything
        in a dialog, and TCP segments (dropping one would break its
        stream's framing), goes on. True when shed."""
        if out.segment is not None:
            return False
        kind = new_dialog_kind(out.alg, out.payload)
        if kind is None or self.overload.admit(out.packet.src_int, now):
            return False
        self.counters["shed"] += 1
        src = out.src[0]
        self._drop(pkt, f"{kind} from {src}: over its share of {self.overload.budget:.0f} new "
                        f"dialogs/s ({self.overload.active_sources()} sources asking)",
                   now, "overload-shed", ("overload-shed", src))
        return True

    def _hold(self, pkt, out: Alg, now: float) -> None:
        if self.on_alg is None:
            self._drop(pkt, f"{out.alg} ALG not running", now, "alg-" + out.alg
                       if out.alg in ("sip", "mgcp", "h323") else "alg")
            return
        pkt.retain()
        token = self._next_token
        self._next_token += 1
        self._held[token] = (pkt, now, out.alg)
        self.counters["held"] += 1

        def done(result: Forward | Drop, _token=token) -> None:
            self._verdicts.append((_token, result))
            if threading.get_ident() != self._loop_ident:
                self._wake()          # the loop gives queued verdicts before it sleeps

        try:
            self.on_alg(out, done)
        except Exception:
            log.exception("on_alg failed; packet dropped")
            done(Drop(f"{out.alg} ALG hand-off failed", "error"))

    def _apply_verdicts(self) -> None:
        q = self._verdicts
        while q:
            token, result = q.popleft()
            self._give(token, result)

    def _give(self, token: int, result) -> None:
        held = self._held.pop(token, None)
        if held is None:
            return                        # timed out already, or given twice
        pkt = held[0]
        now = self.clock()
        self._latency_sum += now - held[1]
        self._latency_n += 1
        try:
            if type(result) is Forward:
                self.verdicts.accept(pkt, result.data, result.mark)
                self.counters["accepted"] += 1
            elif type(result) is Drop:
                self._drop(pkt, result.reason, now, code_of(result.category, result.reason, held[2]))
            else:
                self._drop(pkt, f"bad ALG verdict {result!r}", now, "internal-error")
        except RuntimeError as e:         # queue unbound meanwhile
            log.warning("verdict for a held packet lost: %s", e)

    def stats(self) -> dict:
        with self.lock:
            dp = self.datapath.stats()
        return {"worker": dict(self.counters), "held_now": len(self._held), "datapath": dp,
                "drop_codes": dict(self.drop_codes),
                "overload": self.overload.stats() if self.overload is not None else None}

    def status(self) -> dict:
        """What ``gwctl status`` shows of this worker: its counters, drops by
        code (every packet it dropped, once) and overload control."""
        return {**self.counters, "held_now": len(self._held), "drop_codes": dict(self.drop_codes),
                "overload": self.overload.stats() if self.overload is not None else None}


def source_screen_of(datapath, queue_num: int, ifaces: list[str]):
    """The kernel's per-source screen from ``set flow overload source-rate``,
    by default the new-dialog rate (gateway/config/model.py says why); None:
    off, shedding off, or no configuration."""
    flow = getattr(getattr(datapath, "config", None), "flow", None)
    if flow is None:
        return None
    rate = flow.overload_source_rate
    if rate is None:
        rate = flow.overload_new_dialog_rate
    if rate <= 0 or flow.overload_new_dialog_rate <= 0 or not ifaces:
        return None
    return kernel_screen.SourceRateScreen(queue_num, ifaces, rate)


def overload_control_of(datapath) -> NewDialogBudget | None:
    """Overload control from the datapath's configuration (``set flow
    overload``); None when shedding is off (``new-dialog-rate 0``) or there
    is no configuration (tests' stand-in datapaths)."""
    config = getattr(datapath, "config", None)
    flow = getattr(config, "flow", None)
    if flow is None:
        return None
    settings = overload_settings(flow)
    return NewDialogBudget(settings, 0.0) if settings.rate > 0 else None


def _describe(buf: bytes) -> str:
    if len(buf) < 24:
        return "?"
    src = socket.inet_ntoa(buf[12:16])
    dst = socket.inet_ntoa(buf[16:20])
    hl = (buf[0] & 15) * 4
    sp = int.from_bytes(buf[hl:hl + 2], "big") if len(buf) >= hl + 4 else 0
    dp = int.from_bytes(buf[hl + 2:hl + 4], "big") if len(buf) >= hl + 4 else 0
    return f"{src}:{sp} -> {dst}:{dp} proto {buf[9]}"


# ------------------------------------------------------------------ stand-alone run

def _inline_sip(worker: NfqueueWorker, config):
    """An ``on_alg`` that runs the SIP ALG on one thread, in arrival order,
    and answers with ``done`` from that thread, as the node's actors do."""
    import queue

    from gateway.sip import alg as sip_alg

    jobs: queue.Queue = queue.Queue()
    state = [sip_alg.EMPTY]

    def run() -> None:
        while True:
            out, done = jobs.get()
            if out.alg != "sip":
                done(Drop(f"{out.alg} ALG not running", "alg"))
                continue
            now = worker.clock()
            r = sip_alg.step(state[0], out.sip_context(), out.payload, now, config.sip)
            state[0] = r.state
            for line in r.logs:
                log.info("sip: %s", line)
            done(worker.finish_alg(out, r.verdict, r.data, r.route_to, r.pinholes_open,
                                   r.pinholes_close, now, reason=r.reason))

    threading.Thread(target=run, name="sip-inline", daemon=True).start()
    return lambda out, done: jobs.put((out, done))


def main(argv: Iterable[str] | None = None) -> int:
    """Run one worker stand-alone (no ALG actors: signalling packets for an ALG
    are dropped) until SIGTERM/SIGINT; print ``ready`` when the queue is bound
    and the stats as JSON at exit. Used by the namespace tests and benchmarks."""
    from gateway.config import load_file

    ap = argparse.ArgumentParser(prog="python -m actors.ingest")
    ap.add_argument("--config", required=True)
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--iface", action="append", default=[], metavar="LINUX=CONFIG",
                    help="a queued Linux interface and its configuration name")
    ap.add_argument("--bypass", action="store_true", help="--queue-bypass: fail open")
    ap.add_argument("--accept-only", action="store_true",
                    help="accept every packet without the datapath (benchmark baseline)")
    ap.add_argument("--accept-only-batched", action="store_true",
                    help="as --accept-only, with the verdicts batched as the datapath's are "
                         "(benchmark: the worker's floor)")
    ap.add_argument("--sip-inline", action="store_true",
                    help="run the SIP ALG on one thread of this process (no actors, journal or "
                         "HA): to try the held-packet path without the node")
    ap.add_argument("--media-offload", nargs="?", const="maps", choices=("maps", "chains"),
                    help="established media forwarded by the kernel (actors/kernel_media.py); "
                         "the table's layout (default maps)")
    ap.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds")
    args = ap.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ifaces = dict(s.split("=", 1) for s in args.iface)
    config = load_file(args.config)
    worker = NfqueueWorker(args.queue, ifaces, Datapath(config), bypass=args.bypass)
    if args.sip_inline:
        worker.on_alg = _inline_sip(worker, config)
    if args.accept_only:
        def accept_all(pkt, c=worker.counters):
            c["packets"] += 1
            pkt.accept()
        worker._callback = accept_all
    elif args.accept_only_batched:
        def accept_all_batched(pkt, c=worker.counters):
            c["packets"] += 1
            worker.verdicts.accept(pkt)
        worker._callback = accept_all_batched
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker.start()
    media = None
    if args.media_offload:
        from actors.kernel_media import KernelMedia
        media = KernelMedia(args.queue, ifaces, worker, mode=args.media_offload)
        if media.install():
            media.start()
        else:
            log.warning("media offload: media on the userspace path: %s", media.reason)
    print("ready", flush=True)
    stop.wait(args.duration or None)
    stats = {}
    if media is not None:
        stats["media_offload"] = media.status()
        media.remove()
    worker.stop()
    print(json.dumps({**worker.stats(), **stats}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
