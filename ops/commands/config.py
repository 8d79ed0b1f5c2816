"""gwctl config: check configuration files and show them normalised."""

from __future__ import annotations

import argparse
import sys

from gateway.config import Diagnostic, check_text, render

LANGUAGE = (
    "The configuration language is the ScreenOS CLI of the VoIP manual: one command per "
    "line (set, unset, save), '#' starts a comment line, keywords may be abbreviated to "
    "any unique prefix and are case-insensitive, names are case-sensitive and are "
    "double-quoted (straight or typographic quotes) when they contain spaces.")


def register(sub) -> None:
    p = sub.add_parser(
        "config", help="check configuration files or show one normalised",
        description="Work with gateway configuration files. " + LANGUAGE)
    commands = p.add_subparsers(dest="config_command", metavar="ACTION")
    commands.required = True

    check = commands.add_parser(
        "check", help="check configuration files; exit 0 if all are valid, 1 if not",
        description="Parse and check each FILE without applying it. Every error is printed "
                    "to stderr as FILE:LINE:COLUMN: error: MESSAGE: 'TOKEN' (hint: HINT), all "
                    "errors of a file at once. Warnings, and the lines that are valid but not "
                    "enforced by the gateway (IKE/VPN and administrator lines, which belong "
                    "to the host), are printed too. Exit status: 0 when every file is valid "
                    "(warnings allowed), 1 when any file has an error or cannot be read.",
        epilog="example: gwctl config check examples/*.cfg")
    check.add_argument("files", nargs="+", metavar="FILE", help="configuration file(s)")
    check.add_argument("-q", "--quiet", action="store_true",
                       help="print only errors, not warnings, notes or unenforced lines")
    check.set_defaults(func=run_check)

    show = commands.add_parser(
        "show", help="print a configuration file normalised",
        description="Parse FILE and print it normalised: full keywords, one command per "
                    "line, objects grouped (zones, interfaces, addresses, routes, settings, "
                    "policies), only what differs from the defaults. The output parses back "
                    "to the same configuration. Exit status 1 (with the errors on stderr) when "
                    "FILE is invalid.",
        epilog="example: gwctl config show examples/ch2-untrust-intrazone.cfg")
    show.add_argument("file", metavar="FILE", nargs="?", help="configuration file")
    show.add_argument("--running", action="store_true",
                      help="print the running configuration of the node (--node) instead: the "
                           "one the pair last applied, or the node file's, with its hash, who "
                           "applied it and when")
    show.add_argument("--node", help="with --running: node name or control socket path")
    show.set_defaults(func=run_show)

    diff = commands.add_parser(
        "diff", help="show how FILE differs from the running configuration of the pair",
        description="Check FILE as `gwctl config check` does, then print how its normal form "
                    "differs from the node's running configuration (a unified diff of the "
                    "normal forms: abbreviations, line order and comments make no difference). "
                    "Exit status: 0 no difference, 1 a difference, 2 FILE invalid or the node "
                    "unreachable.",
        epilog="example: gwctl config diff /etc/voip-alg-gateway/gateway.cfg")
    diff.add_argument("file", metavar="FILE", help="configuration file")
    diff.add_argument("--node", help="node name or control socket path (default: the only node here)")
    diff.set_defaults(func=run_diff)

    apply = commands.add_parser(
        "apply", help="check FILE, show the difference, and apply it to the running pair",
        description="Check FILE as `gwctl config check` does (all or nothing: any error and "
                    "nothing is applied), print how it differs from the running configuration, "
                    "and apply it on the active node as one journaled event that the standby "
                    "receives through replication: both nodes switch at the same point of the "
                    "journal, and a standby that takes over runs it. Sessions and SIP calls the "
                    "new policy no longer permits are removed and ended (ScreenOS session "
                    "rematch); everything else carries on. A standby refuses (run it on the "
                    "active); a second apply is refused while one is under way. Interfaces, "
                    "NSRP, flow and shaping settings cannot change on a running pair.",
        epilog="example: gwctl config apply --node gw-a /etc/voip-alg-gateway/gateway.cfg")
    apply.add_argument("file", metavar="FILE", help="configuration file")
    apply.add_argument("--node", help="node name or control socket path (default: the only node here)")
    apply.add_argument("--json", action="store_true", help="print the node's answer as JSON")
    apply.set_defaults(func=run_apply)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:  # line ends as written
            return handle.read()
    except OSError as exc:
        print(f"{path}: error: cannot read the file: {exc.strerror or exc}", file=sys.stderr)
        return None


def _print(diagnostics: list[Diagnostic], quiet: bool) -> None:
    for d in diagnostics:
        if d.severity == "error" or not quiet:
            print(str(d), file=sys.stderr)


def run_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        text = _read(path)
        if text is None:
            status = 1
            continue
        config, diagnostics = check_text(text, path)
        _print(diagnostics, args.quiet)
        if config is None:
            errors = sum(d.severity == "error" for d in diagnostics)
            print(f"{path}: invalid ({errors} error{'s' if errors != 1 else ''})",
                  file=sys.stderr)
            status = 1
            continue
        if not args.quiet:
            for item in config.unenforced:
                print(f"{item.source.file}:{item.source.line}: note: not enforced: "
                      f"{item.reason}: '{item.text}'", file=sys.stderr)
        print(f"{path}: valid ({len(config.policies)} policies, "
              f"{len(config.interfaces)} interfaces, {len(config.addresses)} addresses)")
    return status


def run_show(args: argparse.Namespace) -> int:
    if args.running:
        running = _node_call("config-running", {}, args.node)
        if running is None:
            return 2
        print(f"# running configuration {running['hash']} on node {running['node']} "
              f"({running['role']}), from the {running['origin']}: {running['source']}"
              + (f", applied {_when(running['at'])} by {running['by']}" if running.get("at") else ""))
        if running["node_file_hash"] != running["hash"]:
            print(f"# the node file's configuration {running['node_file']} differs "
                  f"({running['node_file_hash'][:12]})")
        sys.stdout.write(running["text"])
        return 0
    if not args.file:
        print("gwctl config show: give a FILE, or --running", file=sys.stderr)
        return 2
    text = _read(args.file)
    if text is None:
        return 1
    config, diagnostics = check_text(text, args.file)
    _print(diagnostics, quiet=config is None)
    if config is None:
        return 1
    sys.stdout.write(render(config))
    return 0


def _when(at: float) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _node_call(cmd: str, payload: dict, node: str | None):
    from ops.control_client import call
    try:
        return call(cmd, payload, node=node, timeout=30.0)
    except (ConnectionError, RuntimeError, OSError) as exc:
        print(f"gwctl: {exc}", file=sys.stderr)
        return None


def _checked(path: str):
    """FILE read and checked as `gwctl config check` does: (text, config),
    or None with every error printed."""
    text = _read(path)
    if text is None:
        return None
    config, diagnostics = check_text(text, path)
    _print(diagnostics, quiet=config is None)
    if config is None:
        errors = sum(d.severity == "error" for d in diagnostics)
        print(f"{path}: invalid ({errors} error{'s' if errors != 1 else ''}); nothing applied",
              file=sys.stderr)
        return None
    return text, config


def _difference(path: str, config, running: dict):
    from gateway.config.diff import diff_lines, diff_texts, normal_text
    d = diff_texts(running["text"], normal_text(config), f"running ({running['hash'][:12]})", path)
    for line in diff_lines(d):
        print(line)
    return d


def run_diff(args: argparse.Namespace) -> int:
    checked = _checked(args.file)
    if checked is None:
        return 2
    running = _node_call("config-running", {}, args.node)
    if running is None:
        return 2
    d = _difference(args.file, checked[1], running)
    return 0 if d.empty else 1


def run_apply(args: argparse.Namespace) -> int:
    import getpass
    import json
    import os
    import socket
    checked = _checked(args.file)
    if checked is None:
        return 1
    text, config = checked
    running = _node_call("config-running", {}, args.node)
    if running is None:
        return 1
    d = _difference(args.file, config, running)
    if d.empty:
        return 0
    try:
        user = getpass.getuser()
    except Exception:                      # noqa: BLE001 - no name for the uid
        user = str(os.getuid())
    by = f"{user}@{socket.gethostname()}: gwctl config apply {os.path.abspath(args.file)}"
    result = _node_call("config-apply", {"text": text, "file": os.path.abspath(args.file), "by": by,
                                         "expect": running["hash"]}, args.node)
    if result is None:
        print("gwctl config apply: nothing applied", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(f"applied {result['hash'][:12]} (was {result['previous'][:12]}) on node "
              f"{result['node']}, {result['replication']} replication"
              + ("" if result["journaled"] else "; NOT CONFIRMED in the journal: check gwctl status"))
        for c in result["calls_ended"]:
            print(f"call ended: {c.get('alg', 'sip')} {c['call']}: {c['reason']}")
        print(f"{len(result['calls_ended'])} call(s) ended, {result['sessions_removed']} "
              "session(s) removed that the new policy does not permit; the rest carry on")
    return 0 if result["journaled"] else 1
