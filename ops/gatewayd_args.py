"""gatewayd's command line: node mode, pcap mode and the service options."""

from __future__ import annotations

import argparse
import os

from ops.node_priority import DEFAULT_NICE


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
