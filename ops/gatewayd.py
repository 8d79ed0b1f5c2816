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

The command line is in ``gatewayd_args``, a node's start and run in
``node_run``, its niceness in ``node_priority`` and its garbage collector's
settings in ``node_gc``.
"""

from __future__ import annotations

import json
import sys

from ops.gatewayd_args import build_parser
from ops.node_gc import GcPauses, tune_gc, watch_gc_pauses  # noqa: F401
from ops.node_priority import _renice
from ops.node_run import StartupClock, _debug_stall, _load_config, _run_node  # noqa: F401


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
