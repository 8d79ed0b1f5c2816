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
    show.add_argument("file", metavar="FILE", help="configuration file")
    show.set_defaults(func=run_show)


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
    text = _read(args.file)
    if text is None:
        return 1
    config, diagnostics = check_text(text, args.file)
    _print(diagnostics, quiet=config is None)
    if config is None:
        return 1
    sys.stdout.write(render(config))
    return 0
