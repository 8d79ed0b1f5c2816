"""One node of the pair started, run until SIGTERM/SIGINT and stopped: node
file, configuration, journal, addresses, NFQUEUE worker, control socket and
service, in that order, each part of the start timed."""

from __future__ import annotations

import grp
import logging
import signal
import sys
import threading
import time

from ops.node_gc import tune_gc

log = logging.getLogger("gatewayd")


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
        # The tc program where it loads, else the nftables table
        # (actors/kernel_media.py); the program writes the policy's DSCP
        # and traffic class, which postrouting gives other packets.
        # (The shaper exists whenever the worker installs rules.)
        from gateway.shaping import priorities
        media = KernelMedia(settings.queue, linux_to_cfg, worker, lambda: node.forwarding, mode="auto",
                            dscp=shaper.plan.dscp, priority=priorities(shaper.plan))
        node.before_announce.append(media.prime)

    def control_handler(cmd: str, args: dict):
        if cmd == "debug-stall":
            return _debug_stall(args, args_enabled=getattr(args_ns, "debug_commands", False))
        result = node.control(cmd, args)
        if cmd == "status" and isinstance(result, dict):
            result["ingest"] = worker.status()
            result["media_offload"] = media.status() if media is not None else {
                "media_path": "userspace",
                "reason": "off (unset flow media-offload)" if worker.install else "no kernel rules"}
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
                    if media.bpf is not None:
                        fence.tc_filters(media.bpf.attached, [media.bpf.pin])
                    else:
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


def _preload_scapy() -> None:
    try:
        import scapy.all  # noqa: F401
    except Exception as exc:
        log.warning("gatewayd: scapy did not load (gratuitous ARP will fail): %s", exc)
