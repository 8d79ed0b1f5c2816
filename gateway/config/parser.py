"""The configuration language: the ScreenOS CLI of the manual, parsed into
:class:`gateway.config.model.Config`.

How a file is read (manual "CLI Conventions", "Naming Conventions"):

* one command per line (``set``, ``unset``, ``save``); ``#`` starts a comment line;
* a keyword may be abbreviated to any unique prefix and is case-insensitive;
  an ambiguous prefix is an error that lists the candidates;
* names are case-sensitive, except the predefined zones (trust, untrust, dmz,
  global), the predefined services and the system's interface names;
* every problem of the file is reported at once, each with file, line, column,
  token and a hint. Syntax is checked line by line; references between lines
  (zones, interfaces, addresses, MIPs, DIP pools, VPNs) are checked after the
  whole file has been read, so the order of the lines does not matter;
* a file with an error yields no configuration at all (it is never
  half-applied).

IKE/VPN and administrator lines are parsed and validated but recorded in
``Config.unenforced``: IPsec and administration belong to the host.
"""

from __future__ import annotations

import re

from gateway.config.diagnostics import ConfigError, Diagnostic, one_of
from gateway.config.lexer import (
    Token, control_character, first_word, is_comment_or_blank, split_lines, tokenize,
)
from gateway.config.model import Config
from gateway.config.parse_checks import _FileChecks
from gateway.config.parse_cursor import Apply, _Abort, _Line
from gateway.config.parse_host_lines import _HostLines
from gateway.config.parse_interface import _InterfaceLines
from gateway.config.parse_policy import _PolicyLines
from gateway.config.parse_settings import _SettingLines
from gateway.config.parse_state import _Ref, _State
from gateway.config.parse_words import (
    ADMIN_REASON, COMMANDS, IPSEC_REASON, MANAGE_SERVICES, MAX_INT, MAX_KBPS, SEC_LEVELS,
    SET_OBJECTS, TRAFFIC_OPTIONS, UNSET_OBJECTS, VROUTERS, _canonical_zone,
)

# The language's words and limits stay readable from here.
__all__ = ["ADMIN_REASON", "COMMANDS", "IPSEC_REASON", "MANAGE_SERVICES", "MAX_ERRORS", "MAX_INT",
           "MAX_KBPS", "SEC_LEVELS", "SET_OBJECTS", "TRAFFIC_OPTIONS", "UNSET_OBJECTS", "VROUTERS",
           "Apply", "check_text", "parse_text"]

# Past this many errors the rest of a file is not read: what follows
# is not configuration (a wrong file, a binary), and each error line costs
# its "did you mean" search (16 KiB of such lines: 98 ms).
MAX_ERRORS = 100


class _Parser(_InterfaceLines, _PolicyLines, _SettingLines, _HostLines, _FileChecks):
    """One file being read: the driver of its lines, their diagnostics, and
    each kind of line from the part (base class) that parses it."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.diagnostics: list[Diagnostic] = []
        self.state = _State()
        self.errors = 0
        self.stopped = False            # MAX_ERRORS reached: the rest not read

    def diag(self, line: int, column: int, token: str, message: str, hint: str = "",
             severity: str = "error") -> None:
        if severity == "error":
            self.errors += 1
        self.diagnostics.append(Diagnostic(self.filename, line, column, token, message, hint,
                                           severity))  # type: ignore[arg-type]

    # == driver ==============================================================
    def run(self, text: str) -> None:
        previous_cut: int | None = None
        for lineno, line in enumerate(split_lines(text), start=1):
            if is_comment_or_blank(line):
                continue
            if self.errors >= MAX_ERRORS:
                self.diag(lineno, 1, line[:20], f"too many errors ({MAX_ERRORS}): the rest of the file is not read",
                          "correct these first; is this a configuration file?")
                self.stopped = True
                return
            control = control_character(line)
            if control is not None:
                self.diag(lineno, control.column, control.token, control.message, control.hint)
                previous_cut = None
                continue
            first = first_word(line)
            if previous_cut is not None and first is not None and \
                    _Line.match(Token(first.text, 0, first.text), COMMANDS) is None:
                self.diag(lineno, first.column, first.text, "a line that starts with no command",
                          f"the manual wrapped the command of line {previous_cut} onto this "
                          f"line: join the two lines")
                previous_cut = None
                continue
            previous_cut = None
            tokens, lex_error = tokenize(line)
            if lex_error is not None:
                self.diag(lineno, lex_error.column, lex_error.token, lex_error.message,
                          lex_error.hint)
                if lex_error.message == "unterminated quoted name":
                    previous_cut = lineno
                continue
            cursor = _Line(self, lineno, tokens, line)
            apply: Apply | None = None
            try:
                apply = self.command(cursor)
            except _Abort:
                pass
            if cursor.cut_short:
                previous_cut = lineno
            if not cursor.failed and apply is not None:
                apply()

    def command(self, ln: _Line) -> Apply | None:
        first = ln.peek()
        verb = ln.keyword(COMMANDS, "a command (set, unset or save)", recover=False)
        if verb == "save":
            ln.end()
            return None
        if verb == "exec":
            rest = " ".join(t.raw for t in ln.tokens)
            ln.error(first, "'exec' is an operational command, not configuration",  # type: ignore[arg-type]
                     f"run it with gwctl, e.g. 'gwctl {rest}'"
                     if len(ln.tokens) > 1 else "run it with gwctl, e.g. "
                     "'gwctl exec nsrp vsd-group 0 mode backup'")
        if verb == "set":
            obj = self._object(ln, SET_OBJECTS)
            return getattr(self, "set_" + obj.replace("-", "_"))(ln)
        obj = self._object(ln, UNSET_OBJECTS)
        return getattr(self, "unset_" + obj.replace("-", "_"))(ln)

    def _object(self, ln: _Line, choices: tuple[str, ...]) -> str:
        tok = ln.peek()
        if tok is not None and not tok.quoted:
            m = re.fullmatch(r"(interface)(\d+(/\d+)?)", tok.text, re.IGNORECASE)
            if m:
                ln.error(tok, "unknown keyword",
                         f"a keyword and an interface name run together: did you mean "
                         f"'interface ethernet{m.group(2)}'?", abort=False)
                # Read on as if the space were there, so that what the line
                # defines (a MIP, say) does not cause errors elsewhere.
                split = [Token("interface", tok.column, tok.raw),
                         Token(f"ethernet{m.group(2)}", tok.column, tok.raw)]
                ln.tokens[ln.pos:ln.pos + 1] = split
        return ln.keyword(choices, f"what to {ln.tokens[0].text.lower()}: {one_of(choices)}",
                          recover=False)

    # == references ==========================================================
    def ref(self, ln: _Line, tok: Token, kind: str, value: str, zone: str = "",
            role: str = "") -> None:
        self.state.refs.append(_Ref(ln.lineno, tok, kind, value, zone, role))

    def zone_ref(self, ln: _Line, expected: str = "a zone name") -> tuple[str, Token]:
        tok = ln.name(expected)
        zone = _canonical_zone(tok.text)
        self.ref(ln, tok, "zone", zone)
        return zone, tok



def check_text(text: str, filename: str = "<config>") -> tuple[Config | None, list[Diagnostic]]:
    """Parse and check ``text``: the configuration (None when there is an error)
    and every diagnostic (errors, warnings, notes) in file order."""
    parser = _Parser(filename)
    parser.run(text)
    if not parser.stopped:
        # Without the rest of the file, references and values cannot be judged.
        parser.check_references()
        parser.check_values()
    diagnostics = sorted(parser.diagnostics, key=lambda d: (d.line, d.column))
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    return parser.build(), diagnostics


def parse_text(text: str, filename: str = "<config>") -> Config:
    """The configuration of ``text``; raises :class:`ConfigError` listing every
    error (and warning) when the file has any error."""
    config, diagnostics = check_text(text, filename)
    if config is None:
        raise ConfigError(diagnostics)
    return config
