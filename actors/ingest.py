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
import signal
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterable

from actors.drop_log import DropLog
from actors.ingest_kernel import RULE_COMMENT, KernelState
from actors.ingest_loop import WorkerLoop
from actors.ingest_overload import overload_control_of, source_screen_of
from actors.ingest_packets import STANDBY_DROP, PacketPath
from actors.ingest_sysctl import PROC_SYS, conf_path, read_sysctl, sysctl_path, write_sysctl
from actors.nfq_verdicts import BatchedVerdicts, PacketVerdicts
from gateway.datapath import Alg, Datapath, Drop, Forward
from gateway.datapath.fastpath import FastPath
from gateway.overload import NewDialogBudget

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


# The worker's settings, helpers and limits stay importable from here.
__all__ = ["DEFAULT_MAX_LEN", "DropLog", "HOLD_TIMEOUT", "NfqueueWorker", "PROC_SYS", "RULE_COMMENT",
           "SOCK_BYTES_PER_PACKET", "STANDBY_DROP", "conf_path", "main", "overload_control_of",
           "read_sysctl", "sock_rcvbuf", "source_screen_of", "sysctl_path", "write_sysctl"]


class NfqueueWorker(KernelState, WorkerLoop, PacketPath):
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
    ap.add_argument("--media-offload", nargs="?", const="maps", choices=("maps", "chains", "bpf", "auto"),
                    help="established media forwarded by the kernel (actors/kernel_media.py): "
                         "the layout, an nftables table (maps, chains), a tc ingress program (bpf), "
                         "or the program where it loads and else maps (auto); default maps")
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
