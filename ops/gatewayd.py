"""gatewayd: run one node of the VoIP ALG gateway, or run the core over a capture.

Node mode (on a Linux host, as root):

    gatewayd --node-file /etc/voip-alg-gateway/gw-a.toml

binds the NFQUEUE, takes part in the active/standby pair named in the node
file, and serves ``gwctl`` on its control socket until SIGTERM/SIGINT.

pcap mode (offline, no root needed):

    gatewayd --pcap-in IN.pcap --pcap-out OUT.pcap --config gateway.cfg [--journal DIR] [--json]

runs the same core over a capture, with the capture's timestamps as the clock,
writes what the gateway would emit and prints a summary of verdicts and drop
reasons. With --journal the events are journaled, and ``gwctl replay DIR``
reconstructs what happened in the capture.
"""

from __future__ import annotations

import argparse
import gc
import grp
import json
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("gatewayd")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gatewayd",
        description="Run a VoIP ALG gateway node (--node-file), or run the gateway's core over a "
                    "packet capture (--pcap-in/--pcap-out/--config).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The configuration is the ScreenOS CLI language (see `gwctl config check`); the node "
               "file (TOML) maps its interfaces to Linux ones and names the journal, HA peer and "
               "keys. See README.md.\n\n"
               "Snapshots and journal retention (node file, optional; the defaults shown):\n"
               "  [journal_retention]\n"
               "  snapshot_every = 30000    # journal records between two snapshots: a restart\n"
               "                            # folds at most this many after the newest one\n"
               "                            # (a record: one step's events on one entity;\n"
               "                            # a SIP call is ~9 records)\n"
               "  snapshots_kept = 2        # older snapshots are deleted\n"
               "  keep_for = \"30m\"          # journal kept at least this long (s, m, h, d) for a\n"
               "                            # standby catching up, gwctl replay and history...\n"
               "  max_disk = \"8GiB\"         # ...unless journal + snapshots exceed this (KiB..TiB)\n"
               "Only segments that every kept snapshot covers are deleted. A standby that missed\n"
               "deleted records receives the active's snapshot, then the journal after it.")
    p.add_argument("--node-file", metavar="FILE", help="node file: run as a node of the pair")
    p.add_argument("--config", metavar="CFG",
                   help="gateway configuration (node mode: overrides the node file's 'config')")
    p.add_argument("--standby", action="store_true",
                   help="node mode: start as standby even without a peer (default: join as standby "
                        "and take the active role if no active node answers within the "
                        "heartbeat detection time)")
    p.add_argument("--debug-commands", action="store_true",
                   default=os.environ.get("GATEWAYD_DEBUG_COMMANDS") == "1",
                   help="node mode, TESTS ONLY: serve fault injection on the control socket "
                        "(`gwctl debug stall --seconds N` holds every thread of the node for N s, "
                        "as a long GC pause does). Also on with GATEWAYD_DEBUG_COMMANDS=1. Never "
                        "on a production node.")
    p.add_argument("--nice", type=int, default=DEFAULT_NICE, metavar="N",
                   help=f"node mode: scheduling niceness of the node's threads (default "
                        f"{DEFAULT_NICE}: ahead of ordinary work on the box, so a thread holding "
                        f"the interpreter lock is not left waiting for a CPU while the heartbeat "
                        f"thread waits for that lock; 0 keeps the inherited value)")
    p.add_argument("--pcap-in", metavar="IN", help="pcap mode: capture to run through the core")
    p.add_argument("--pcap-out", metavar="OUT", help="pcap mode: write what the gateway would emit here")
    p.add_argument("--journal", metavar="DIR", help="pcap mode: journal the events in DIR")
    p.add_argument("--ingress", action="append", default=[], metavar="SUBNET=IFACE",
                   help="pcap mode: packets from SUBNET arrive on configuration interface IFACE "
                        "(default: inferred from interface subnets and routes); repeatable")
    p.add_argument("--json", action="store_true", help="pcap mode: print the summary as JSON")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_service_arguments(p)
    return p


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", metavar="ADDRESS:PORT", default=os.environ.get("GATEWAYD_METRICS") or None,
                   help="node mode: serve Prometheus metrics at http://ADDRESS:PORT/metrics "
                        "(overrides the node file's [metrics] listen; also GATEWAYD_METRICS=ADDRESS:PORT; "
                        "default: off)")
    p.add_argument("--cleanup", action="store_true",
                   help="with --node-file: remove the addresses, NFQUEUE rules and shaping that "
                        "the node file's node may have left (after any exit; idempotent), then exit. "
                        "The systemd unit runs it as ExecStopPost")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ops.log_setup import configure_logging
    # Node mode: log calls never wait for the disk (ops/log_setup.py).
    node_mode = bool(args.node_file) and not args.cleanup and not (args.pcap_in or args.pcap_out)
    listener = configure_logging(args.log_level, queued=node_mode)
    if listener is not None:
        import atexit
        atexit.register(listener.stop)
    if args.cleanup:
        if not args.node_file:
            print("gatewayd: --cleanup needs --node-file", file=sys.stderr)
            return 2
        from ops.node_cleanup import run_cleanup
        return run_cleanup(args.node_file, args.config)
    if args.pcap_in or args.pcap_out:
        if not (args.pcap_in and args.pcap_out and args.config):
            print("gatewayd: pcap mode needs --pcap-in, --pcap-out and --config", file=sys.stderr)
            return 2
        return run_pcap(args)
    if args.metrics and not _metrics_flag_ok(args.metrics):
        return 2
    if not args.node_file:
        print("gatewayd: give --node-file (node mode) or --pcap-in/--pcap-out/--config (pcap mode); "
              "see gatewayd --help", file=sys.stderr)
        return 2
    return run_node(args)


def _metrics_flag_ok(value: str) -> bool:
    from gateway.nodefile import parse_listen
    try:
        parse_listen(value)
    except ValueError as exc:
        print(f"gatewayd: --metrics {value!r}: {exc}; e.g. 127.0.0.1:9478", file=sys.stderr)
        return False
    return True


def node_service(args, settings, node, worker, status):
    """The metrics endpoint and systemd's notifications (ops/node_service.py)."""
    from gateway.nodefile import parse_listen
    from ops.node_service import NodeService
    metrics = parse_listen(args.metrics) if getattr(args, "metrics", None) else settings.metrics
    return NodeService(node, status, metrics=metrics, worker=worker)


def _load_config(path: str):
    from gateway.config import ConfigError, load_file
    try:
        return load_file(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print(f"gatewayd: {path} has errors; nothing was applied", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"gatewayd: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


def run_node(args) -> int:
    # First: the supervisor that removes this node's addresses and NFQUEUE
    # rules when this process dies, whatever kills it, and the addresses when
    # the lease ends while this process is stalled (actors/fence.py). It is
    # spawned before the node's heavy imports: a small process, started fast.
    from actors.fence import Fence
    fence = Fence.spawn()
    # Before any thread is started: Linux keeps a niceness per thread and
    # new threads inherit their creator's.
    _renice(args.nice)
    try:
        return _run_node(args, fence, StartupClock())
    finally:
        fence.close()


# Every thread of the node shares one interpreter lock. A thread that holds it
# in a long C-level step (a collection, a large decode) and is then preempted
# by other processes keeps it until it gets a CPU again; meanwhile the HA
# transport thread, real-time as it is (actors/thread_priority.py), cannot
# run Python, and a heartbeat that comes later than the lease ends the
# node's role. With every other runnable process at nice 0, nice -10 gives the
# node's threads about nine times their CPU weight, so the holder is back on
# a CPU within a scheduler slice.
DEFAULT_NICE = -10
AUTOGROUP = "/proc/self/autogroup"


def _renice(nice: int, autogroup: str = AUTOGROUP) -> None:
    if nice == 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        from actors import thread_priority
        thread_priority.process_nice = nice
    except OSError as exc:
        log.warning("gatewayd: cannot set niceness %d (%s); running at %d", nice, exc.strerror,
                    os.getpriority(os.PRIO_PROCESS, 0))
    # With autogroup scheduling (kernel.sched_autogroup_enabled, on by
    # default in Debian's kernels) the CPU is shared between sessions first
    # and a niceness counts only inside its own session: gatewayd, in a
    # session of its own (a service, the lab), got one session's share
    # beside another session's CPU-bound jobs whatever its niceness
    # (sched(7), "The autogroup feature").
    # The session's own niceness is what weighs against other sessions.
    try:
        with open(autogroup, "w") as f:
            f.write(str(nice))
    except FileNotFoundError:
        pass                          # a kernel without autogroups: the niceness above is enough
    except OSError as exc:
        log.warning("gatewayd: cannot set the niceness of its session's autogroup to %d (%s)",
                    nice, exc.strerror)


class StartupClock:
    """Where a node's start went: logged with the "running" line, so a
    restart that is slow on a loaded box (imports, journal recovery, the
    iptables lock) says which part was."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.t0 = self._last = clock()
        self.parts: list[tuple[str, float]] = []

    def mark(self, part: str) -> None:
        now = self.clock()
        self.parts.append((part, now - self._last))
        self._last = now

    def summary(self) -> str:
        return (f"started in {self._last - self.t0:.1f} s ("
                + ", ".join(f"{name} {took:.1f}" for name, took in self.parts) + ")")


def _debug_stall(args: dict, *, args_enabled: bool) -> dict:
    from actors.control import ControlError
    from actors.stall import stall_soon
    if not args_enabled:
        raise ControlError("debug commands are off: they are for tests, start gatewayd with "
                           "--debug-commands (or GATEWAYD_DEBUG_COMMANDS=1)")
    try:
        seconds = float(args.get("seconds", 0))
        stall_soon(seconds)
    except (TypeError, ValueError) as exc:
        raise ControlError(str(exc)) from None
    log.warning("gatewayd: debug stall: every thread of this node stands still for %.1f s", seconds)
    return {"seconds": seconds}


def _run_node(args, fence, started: StartupClock | None = None) -> int:
    args_ns = args
    started = started or StartupClock()
    from actors.addresses import AddressManager
    from actors.control import ControlServer
    from actors.ingest import NfqueueWorker
    from actors.node import Node
    from actors.shaping import TrafficShaper
    from actors.replication import CurveKeys, Replicator
    from gateway.datapath import Datapath
    from gateway.ha import lease_length
    from gateway.nodefile import NodeFileError, parse_node_file
    from gateway.policy import Engine
    from journal.replay import JournalGap
    from journal.segment import JournalCorrupt
    from journal.store import JournalLocked
    started.mark("imports")

    try:
        with open(args.node_file) as f:
            settings = parse_node_file(f.read(), args.node_file)
    except (OSError, NodeFileError) as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 1
    if settings.control_group is not None:
        try:
            grp.getgrnam(settings.control_group)
        except KeyError:
            print(f"gatewayd: {args.node_file}: control_group {settings.control_group!r} is not a "
                  "group on this host (create it, or remove the line: then only root may use gwctl)",
                  file=sys.stderr)
            return 1
    cfg = _load_config(args.config or settings.config)
    if cfg is None:
        return 1
    engine = Engine(cfg)
    datapath = Datapath(cfg, engine)
    keys = None
    if settings.ha is not None and settings.ha.curve:
        try:
            keys = CurveKeys.load(settings.ha.key, settings.ha.peer_key)
        except (OSError, ValueError) as exc:
            print(f"gatewayd: cannot load the HA keys: {exc}", file=sys.stderr)
            return 1
    nsrp = cfg.nsrp
    started.mark("configuration")

    def make_replicator(node):
        if settings.ha is None:
            return None
        return Replicator(node_id=settings.node, bind=settings.ha.bind, peer=settings.ha.peer,
                          journal=node.journal, on_records=node.on_records, on_trigger=node.on_transport_trigger,
                          keys=keys, hb_interval=nsrp.hb_interval_ms / 1000.0, hb_threshold=nsrp.hb_threshold,
                          priority=nsrp.priority, mode=nsrp.rto_mirror,
                          # A transport turn later than two heartbeat
                          # intervals writes every thread's stack to the
                          # log: what held the node still.
                          stall_dump=2 * nsrp.hb_interval_ms / 1000.0)

    addresses = AddressManager(cfg, engine, settings.interfaces, fence=fence)
    # Gratuitous ARP is sent with scapy, whose first import takes a second or
    # more: load it now, so a takeover announces the addresses at once and
    # hosts stop sending to the old active (measured in the namespace lab).
    threading.Thread(target=_preload_scapy, name="scapy-preload", daemon=True).start()
    # The journal's lock is taken first (Node opens the journal): a second
    # gatewayd started with the node file of a running node must stop before
    # it touches anything that node owns (its addresses, its control socket).
    try:
        node = Node(settings.node, cfg, settings.journal, datapath=datapath,
                    replicator_factory=make_replicator if settings.ha else None,
                    addresses=addresses, media_refresh=Node.media_refresh_for(cfg),
                    threads=ACTOR_THREADS,
                    # A node of a pair is fenced by a lease shorter than the
                    # peer's detection time (gateway/ha.py); a lone node is not.
                    lease=lease_length(nsrp.hb_interval_ms / 1000.0, nsrp.hb_threshold)
                    if settings.ha else None,
                    retention=settings.retention)
    except JournalLocked as exc:
        print(f"gatewayd: {exc}: is node {settings.node} already running?", file=sys.stderr)
        return 1
    except JournalCorrupt as exc:
        print(f"gatewayd: the journal is damaged, refusing to start: {exc}", file=sys.stderr)
        return 1
    except JournalGap as exc:
        print(f"gatewayd: {settings.journal}: {exc}, and no snapshot in "
              f"{settings.journal}/snapshots covers them (all damaged or removed): refusing to start "
              "with a state that never existed. Hint: move the journal directory aside and start "
              "as standby: the active sends its snapshot and journal.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gatewayd: cannot open the journal {settings.journal}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    started.mark("journal")
    # The pair's running configuration (gwctl config apply) is in the
    # journal: a node whose node file says otherwise runs the pair's, and
    # says so (actors/live_config.py).
    from actors.live_config import LiveConfig
    LiveConfig(node, cfg, args.config or settings.config, state_dir=settings.journal).adopt()
    # A node restarted after a crash (SIGKILL, power loss of the process) may
    # still have the pair's addresses on its interfaces; it starts as standby
    # and must not answer for them until it is promoted.
    addresses.release()

    linux_to_cfg = {linux: name for name, linux in settings.interfaces.items()}
    # The worker does the datapath's housekeeping (expiry, media activity to
    # the pinholes' actors); the node and the worker share one datapath lock.
    worker = NfqueueWorker(settings.queue, linux_to_cfg, datapath, on_alg=node.handle_alg,
                           forwarding=lambda: node.forwarding, bypass=cfg.flow.queue_bypass,
                           on_activity=node.report_media, turns=node)
    worker.lock = node.dp_lock
    if node.snapshots is not None and worker.overload is not None:
        overload = worker.overload
        node.snapshots.busy = lambda: overload.overloaded
    # Traffic shaping and DSCP marking (manual ch. 2 "Bandwidth Management
    # for VoIP Services"): installed with the worker's rules, again by a
    # node taking over, removed with them.
    shaper = TrafficShaper(cfg, settings.interfaces) if worker.install else None
    if shaper is not None and shaper.wanted:
        node.on_takeover.append(shaper.install)

    # Established media forwarded by the kernel (`set flow media-offload`,
    # actors/kernel_media.py); installed after the queue's rules, ahead of them.
    media = None
    if cfg.flow.media_offload and worker.install:
        from actors.kernel_media import KernelMedia
        media = KernelMedia(settings.queue, linux_to_cfg, worker, lambda: node.forwarding)
        node.before_announce.append(media.prime)

    def control_handler(cmd: str, args: dict):
        if cmd == "debug-stall":
            return _debug_stall(args, args_enabled=getattr(args_ns, "debug_commands", False))
        result = node.control(cmd, args)
        if cmd == "status" and isinstance(result, dict):
            result["ingest"] = worker.status()
            result["media_offload"] = media.status() if media is not None else {
                "media_path": "userspace",
                "reason": "off (set flow media-offload)" if worker.install else "no kernel rules"}
            if shaper is not None and shaper.trees:
                result["shaping"] = shaper.status()
        return result

    control = ControlServer(settings.socket_path(), control_handler, group=settings.control_group)
    service = node_service(args, settings, node, worker, lambda: control_handler("status", {}))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    started.mark("addresses")
    try:
        service.bind()
        control.start()
        worker.start()
        if worker.install:
            from actors.fence import rule_devices, set_forwarding
            specs = worker.rule_specs()
            # The supervisor turned forwarding off on these devices if an
            # earlier run died (fail closed); on again, and tell it the rules.
            for dev in set_forwarding(rule_devices(specs), True):
                log.warning("gatewayd: could not turn IPv4 forwarding on for %s", dev)
            tables = [f"inet {worker.screen.table}"] if worker.screen is not None else []
            if media is not None:
                if media.install():
                    specs = specs + media.rule_specs()
                    tables.append(f"inet {media.table}")
                    media.start()
                else:
                    log.warning("media offload: media on the userspace path: %s", media.reason)
            fence.rules(specs)
            if tables:
                fence.nft_tables(tables)
        if shaper is not None:
            shaper.install()
        started.mark("queue and rules")
        node.start(role="standby" if args.standby else None)
        started.mark("node")
    except Exception as exc:
        log.error("gatewayd: start failed: %s", exc)
        for stop_part in (media.remove if media else None, worker.stop, control.stop, shaper.remove if shaper else None, service.stop):
            try:
                if stop_part is not None:
                    stop_part()
            except Exception:
                pass
        node.stop()
        return 1
    tune_gc()
    service.ready()
    log.info("gatewayd: node %s running (config %s, journal %s, control %s); %s", settings.node,
             args.config or settings.config, settings.journal, settings.socket_path(),
             started.summary())
    while not stop.wait(0.2):
        pass
    log.info("gatewayd: stopping")
    service.stop()
    if media is not None:
        media.remove()
    worker.stop()
    if shaper is not None:
        shaper.remove()
    control.stop()
    node.stop()
    return 0


# One dispatcher thread for the node's actors. Every ALG step, timer and media
# report runs under the node's state lock, and all Python runs under the GIL:
# a second dispatcher thread ran nothing in parallel, it only added lock and
# GIL hand-offs (measured in the lab, ch2 MIP example, 300 ms holds, 960
# calls at 320 calls/s: two threads completed 554 to 827 in five runs, one
# thread all 960 with all their RTP in three). Per-dialog order does not
# depend on it: a dialog's actor is on one dispatcher at a time either way.
ACTOR_THREADS = 1

# The cyclic garbage collector under call load: every SIP message allocates
# hundreds of short-lived objects (parsed message, events, new immutable state
# values), so at CPython's default threshold (700) a young collection ran every
# few messages, and each full collection walked the whole call state. Sampled
# under 120 calls/s it held the GIL 14% of the time (py-spy --native), in
# pauses that delay every thread of the node. The state and the configuration
# hold no reference cycles to reclaim; what is loaded at start is frozen (never
# scanned again) and young collections run every 50,000 allocations.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    watch_gc_pauses()


# A collection holds the GIL: every thread of the node (the NFQUEUE worker,
# the actors, the heartbeats of replication) stands still for its length. A
# pause near the heartbeat loss time (3 x 200 ms) looks like a dead node to
# the peer, so long ones are logged with what they were.
GC_PAUSE_WARN = 0.05


class GcPauses:
    """gc.callbacks hook: collections longer than ``warn_after`` seconds are
    logged at WARNING (generation, pause, objects collected) and counted."""

    def __init__(self, logger: logging.Logger, warn_after: float = GC_PAUSE_WARN,
                 clock=time.perf_counter) -> None:
        self.log = logger
        self.warn_after = warn_after
        self.clock = clock
        self.long_pauses = 0
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        took = self.clock() - self._started
        self.longest = max(self.longest, took)
        if took >= self.warn_after:
            self.long_pauses += 1
            self.log.warning("gc: generation %d collection held every thread for %.0f ms "
                             "(%d objects collected, %d uncollectable)", info.get("generation", -1),
                             took * 1000, info.get("collected", 0), info.get("uncollectable", 0))


def watch_gc_pauses(warn_after: float = GC_PAUSE_WARN) -> GcPauses:
    for cb in list(gc.callbacks):
        if isinstance(cb, GcPauses):
            gc.callbacks.remove(cb)
    watcher = GcPauses(log, warn_after)
    gc.callbacks.append(watcher)
    return watcher


def _preload_scapy() -> None:
    try:
        import scapy.all  # noqa: F401
    except Exception as exc:
        log.warning("gatewayd: scapy did not load (gratuitous ARP will fail): %s", exc)


def run_pcap(args) -> int:
    from actors.pcap_ingest import run_capture
    cfg = _load_config(args.config)
    if cfg is None:
        return 1
    try:
        summary = run_capture(cfg, args.pcap_in, args.pcap_out, journal=args.journal,
                              ingress_overrides=args.ingress)
    except (OSError, ValueError) as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        from actors.pcap_ingest import format_summary
        print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
