"""A cursor over the tokens of one configuration line, with the keyword-matching
rules of the manual ("CLI Conventions": a keyword may be abbreviated to any
unique prefix, case-insensitive; an ambiguous prefix lists the candidates),
and the way a line stops at its first error (:class:`_Abort`)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Callable, Protocol

from gateway.config.diagnostics import did_you_mean, one_of
from gateway.config.lexer import Token
from gateway.config.parse_state import _State
from gateway.config.parse_words import VROUTERS, _IFACE_EXAMPLES, _IFACE_RE, _bounded_int, _is_ipv4


class _Abort(Exception):
    """Stop parsing the current line; its diagnostic is already recorded."""


Apply = Callable[[], None]


class _Parser(Protocol):
    """The parser as a line's cursor sees it (:class:`gateway.config.parser._Parser`):
    where the diagnostics go, and the state its hints read. Described here,
    not imported: the parser imports this module."""

    state: _State

    def diag(self, line: int, column: int, token: str, message: str, hint: str = "",
             severity: str = "error") -> None: ...


class _Line:
    """A cursor over the tokens of one line, with the keyword-matching rules."""

    def __init__(self, parser: "_Parser", lineno: int, tokens: list[Token], text: str) -> None:
        self.p = parser
        self.lineno = lineno
        self.tokens = tokens
        self.text = text
        self.pos = 0
        self.failed = False
        self.cut_short = False

    # -- diagnostics -----------------------------------------------------
    def error(self, tok: Token, message: str, hint: str = "", *, abort: bool = True) -> None:
        self.failed = True
        self.p.diag(self.lineno, tok.column, tok.raw, message, hint)
        if abort:
            raise _Abort

    def warn(self, tok: Token, message: str, hint: str = "") -> None:
        self.p.diag(self.lineno, tok.column, tok.raw, message, hint, "warning")

    # -- cursor ------------------------------------------------------------
    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def missing(self, expected: str, hint: str = "") -> None:
        last = self.tokens[self.pos - 1] if self.pos else Token("", 1, "")
        column = last.column + len(last.raw) + 1 if self.pos else 1
        self.failed = True
        self.cut_short = True
        self.p.diag(self.lineno, column, last.raw,
                    f"incomplete command: expected {expected} after", hint or
                    "complete the command; if the manual wrapped it onto the next line, "
                    "join the two lines")
        raise _Abort

    def next(self, expected: str) -> Token:
        tok = self.peek()
        if tok is None:
            self.missing(expected)
        self.pos += 1
        return tok  # type: ignore[return-value]

    def keyword(self, choices: tuple[str, ...] | list[str], expected: str | None = None,
                *, recover: bool = True) -> str:
        expected = expected or one_of(choices)
        tok = self.next(expected)
        word = self.match(tok, choices)
        if word is not None:
            return word
        candidates = [c for c in choices if c.startswith(tok.text.lower())] if not tok.quoted else []
        if len(candidates) > 1:
            self.error(tok, "ambiguous keyword",
                       f"'{tok.text}' could be {one_of(candidates)}; type more letters")
        guess = did_you_mean(tok.text, choices)
        hint = (f"did you mean '{guess}'? " if guess else "") + f"expected {expected}"
        self.error(tok, "unknown keyword", hint, abort=not (recover and guess))
        return guess  # type: ignore[return-value]

    @staticmethod
    def match(tok: Token, choices: tuple[str, ...] | list[str]) -> str | None:
        if tok.quoted or not tok.text:
            return None
        word = tok.text.lower()
        if word in choices:
            return word
        candidates = [c for c in choices if c.startswith(word)]
        return candidates[0] if len(candidates) == 1 else None

    def optional(self, choices: tuple[str, ...]) -> str | None:
        """Consume the next token if it is (an abbreviation of) one of ``choices``."""
        tok = self.peek()
        if tok is None:
            return None
        word = self.match(tok, choices)
        if word is not None:
            self.pos += 1
        return word

    def name(self, expected: str) -> Token:
        tok = self.next(expected)
        if not tok.text:
            self.error(tok, f"empty {expected}", "a name needs at least one character")
        return tok

    def integer(self, expected: str, lo: int, hi: int) -> tuple[int, Token]:
        tok = self.next(expected)
        if tok.quoted or not tok.text.isascii() or not tok.text.isdigit():
            self.error(tok, f"expected {expected} (a number)", f"a whole number from {lo} to {hi}")
        value = _bounded_int(tok.text, hi)
        if value is None:
            self.error(tok, f"{expected} out of range (a number of {len(tok.text)} digits)",
                       f"a whole number from {lo} to {hi}")
        if not lo <= value <= hi:
            self.error(tok, f"{expected} out of range", f"a whole number from {lo} to {hi}")
        return value, tok

    def address(self, expected: str) -> tuple[IPv4Address, Token]:
        tok = self.next(expected)
        try:
            if tok.quoted or "/" in tok.text:
                raise ValueError
            return IPv4Address(tok.text), tok
        except ValueError:
            self.error(tok, f"expected {expected} (an IPv4 address)",
                       "write four decimal numbers 0-255 separated by dots, e.g. 10.1.1.5")
        raise AssertionError  # unreachable: error() aborts

    def with_prefix(self, expected: str, example: str) -> tuple[IPv4Interface, Token]:
        tok = self.next(expected)
        if "/" not in tok.text or tok.quoted:
            if _is_ipv4(tok.text):
                self.error(tok, f"{expected} needs a prefix length",
                           f"write it as {tok.text}/24 or {tok.text}/32, e.g. {example}")
            self.error(tok, f"expected {expected} (A.B.C.D/M)", f"e.g. {example}")
        try:
            return IPv4Interface(tok.text), tok
        except ValueError:
            self.error(tok, f"expected {expected} (A.B.C.D/M)", f"e.g. {example}")
        raise AssertionError

    def network(self, expected: str) -> tuple[IPv4Network, Token]:
        iface, tok = self.with_prefix(expected, "10.1.2.0/24")
        if iface.ip != iface.network.network_address:
            self.error(tok, f"{expected} has host bits set",
                       f"did you mean {iface.network}?")
        return iface.network, tok

    def interface_name(self, expected: str = "an interface name") -> tuple[str, Token]:
        tok = self.name(expected)
        if not _IFACE_RE.fullmatch(tok.text):
            guess = did_you_mean(tok.text, sorted(self.p.state.declared_interfaces) + list(_IFACE_EXAMPLES))
            self.error(tok, "not an interface name",
                       (f"did you mean '{guess}'? " if guess else "")
                       + "interfaces are named like " + ", ".join(_IFACE_EXAMPLES))
        return tok.text.lower(), tok

    def vrouter(self) -> str:
        tok = self.name("a virtual router name")
        word = tok.text.lower()
        if word not in VROUTERS:
            guess = did_you_mean(tok.text, VROUTERS)
            self.error(tok, "unknown virtual router",
                       (f"did you mean '{guess}'? " if guess else "") + f"expected {one_of(VROUTERS)}")
        return word

    def end(self, what: str = "") -> None:
        tok = self.peek()
        if tok is not None:
            extra = " ".join(t.raw for t in self.tokens[self.pos:])
            hint = f"remove it; the command is complete without '{extra}'"
            if tok.quoted:
                hint = (f"{what} takes no quoted comment; remove it" if what
                        else "this command takes no quoted comment; remove it")
            self.error(tok, "unexpected text at the end of the command", hint)
