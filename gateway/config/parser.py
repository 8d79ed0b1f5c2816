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

import heapq
import re
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import MappingProxyType
from typing import Callable

from gateway.config.diagnostics import ConfigError, Diagnostic, did_you_mean, one_of
from gateway.config.lexer import (
    Token, control_character, first_word, is_comment_or_blank, split_lines, tokenize,
)
from gateway.config.model import (
    DEFAULT_BLOCKING, DEFAULT_VROUTER, PREDEFINED_ZONES, SERVICES, Address, AddressRef,
    LOWEST_PRIORITY, Config, DipPool, FlowSettings, Interface, MgcpSettings, Mip, NsrpSettings, Policy,
    PolicyTraffic, Route, SipSettings, Source, TrafficShaping, UdpFloodScreen, Unenforced, Zone,
)

COMMANDS = ("set", "unset", "save", "exec")
SET_OBJECTS = ("interface", "zone", "address", "policy", "vrouter", "route", "dip", "sip",
               "admin", "ike", "vpn", "nsrp", "mgcp", "flow", "traffic-shaping")
UNSET_OBJECTS = ("interface", "zone", "address", "policy", "vrouter", "route", "dip", "sip",
                 "nsrp", "mgcp", "flow", "traffic-shaping")
VROUTERS = ("trust-vr", "untrust-vr")
MANAGE_SERVICES = ("ping", "ssh", "telnet", "web", "ssl", "snmp", "ident-reset", "mtrace")
SEC_LEVELS = ("standard", "compatible", "basic")
MAX_INT = 2 ** 31 - 1
# Bandwidths are in Kbps, as ScreenOS writes them; 10 Gbps is the fastest
# interface a ScreenOS device has.
MAX_KBPS = 10_000_000
TRAFFIC_OPTIONS = ("gbw", "priority", "mbw", "dscp")

# System interface names (ScreenOS): ethernetN, ethernetN/M, subinterfaces,
# loopback.N, tunnel.N, and the bridge/aggregate/redundant/vlan families.
_IFACE_RE = re.compile(
    r"(ethernet\d+(/\d+)?(\.\d+)?|loopback\.\d+|tunnel\.\d+|bgroup\d+|redundant\d+(\.\d+)?"
    r"|aggregate\d+(\.\d+)?|vlan\d+)", re.IGNORECASE)
_IFACE_EXAMPLES = ("ethernet1", "ethernet2/1", "loopback.1", "tunnel.1", "bgroup0", "vlan1")

IPSEC_REASON = ("IKE/IPsec tunnels belong to the host's IPsec stack; the gateway "
                "parses and checks the line but does not enforce it")
ADMIN_REASON = "administrator accounts belong to the host; the gateway does not enforce them"


class _Abort(Exception):
    """Stop parsing the current line; its diagnostic is already recorded."""


@dataclass(slots=True)
class _Ref:
    """A reference from one line to an object defined by another line."""

    line: int
    token: Token
    kind: str          # zone, interface, address, mip, dip, dip-iface, vpn, ike, loopback
    value: str
    zone: str = ""     # for addresses: the zone it must be in
    role: str = ""     # words for the message, e.g. "source address"


@dataclass(slots=True)
class _IfaceState:
    name: str
    zone: str | None = None
    zone_at: tuple[int, Token] | None = None
    ip: IPv4Interface | None = None
    ip_at: tuple[int, Token] | None = None
    unnumbered: str | None = None
    mode: str | None = None
    mode_at: tuple[int, Token] | None = None
    mips: dict[IPv4Address, tuple[Mip, int, Token]] = field(default_factory=dict)
    dips: dict[int, tuple[DipPool, int, Token]] = field(default_factory=dict)
    dip_interface_incoming: bool = False
    loopback_group: str | None = None
    manage: list[str] = field(default_factory=list)
    bandwidth_egress: int | None = None
    bandwidth_ingress: int | None = None
    bandwidth_at: tuple[int, Token] | None = None
    bandwidth_in_at: tuple[int, Token] | None = None


class _PolicyIds:
    """The policy ids declared so far. A policy without an id is numbered
    after the highest one, so that is asked once per such line: it comes
    from a heap pruned lazily of unset ids (O(log n) amortised), not from a
    walk of every id (quadratic in the policies of a file)."""

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self._low: list[int] = []
        self._high: list[int] = []          # negated ids

    def __contains__(self, pid: int) -> bool:
        return pid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, pid: int) -> None:
        if pid not in self._ids:
            self._ids.add(pid)
            heapq.heappush(self._low, pid)
            heapq.heappush(self._high, -pid)

    def discard(self, pid: int) -> None:
        self._ids.discard(pid)

    def lowest(self) -> int:
        while self._low and self._low[0] not in self._ids:
            heapq.heappop(self._low)
        return self._low[0] if self._low else 0

    def highest(self) -> int:
        while self._high and -self._high[0] not in self._ids:
            heapq.heappop(self._high)
        return -self._high[0] if self._high else 0

    def describe(self, whole_up_to: int = 10) -> str:
        """The ids for a hint: all of a short set, the count and the range
        of a long one (a hint per line must not cost the whole set)."""
        if not self._ids:
            return "none"
        if len(self._ids) <= whole_up_to:
            return ", ".join(str(i) for i in sorted(self._ids))
        return f"{len(self._ids)}, with ids from {self.lowest()} to {self.highest()}"


@dataclass(slots=True)
class _PolicyState:
    policy: Policy
    line: int
    dip_tok: Token | None = None
    gbw_tok: Token | None = None


@dataclass(slots=True)
class _Vpn:
    gateway: str | None = None
    gateway_at: tuple[int, Token] | None = None


class _State:
    """What the file has said so far (mutable while parsing)."""

    def __init__(self) -> None:
        self.custom_zones: dict[str, Source] = {}
        self.declared_zones: set[str] = set()
        self.zone_block: dict[str, bool] = {}
        self.udp_flood: dict[str, dict[IPv4Address, int]] = {}
        self.limit_session: dict[str, int | None] = {}
        self.interfaces: dict[str, _IfaceState] = {}
        self.declared_interfaces: set[str] = set()
        self.addresses: dict[tuple[str, str], tuple[Address, int, Token]] = {}
        self.declared_addresses: set[tuple[str, str]] = set()
        self.declared_mips: set[str] = set()
        self.declared_dips: set[int] = set()
        # By id, in the order they were set (a dict: an unset is one deletion).
        self.policies: dict[int, _PolicyState] = {}
        self.declared_policy_ids = _PolicyIds()
        self.routes: list[tuple[Route, int, Token]] = []
        self.sip = SipSettings()
        self.mgcp = MgcpSettings()
        self.nsrp = NsrpSettings()
        self.flow = FlowSettings()
        self.traffic_shaping = TrafficShaping()
        self.dip_sticky = False
        self.unenforced: list[Unenforced] = []
        self.declared_ike: set[str] = set()
        # IKE peers as far as their lines were read (also of lines with errors).
        self.ike_peers: dict[str, tuple[IPv4Address, int, Token]] = {}
        # Interfaces that have a zone line, even one with an error.
        self.zone_lines: set[str] = set()
        self.vpns: dict[str, _Vpn] = {}
        self.declared_vpns: set[str] = set()
        self.refs: list[_Ref] = []

    def iface(self, name: str) -> _IfaceState:
        if name not in self.interfaces:
            self.interfaces[name] = _IfaceState(name)
        return self.interfaces[name]


Apply = Callable[[], None]


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


_MAX_DIP_ID = 255


def _bounded_int(digits: str, hi: int) -> int | None:
    """The value of a string of ASCII digits, or None when it has more
    significant digits than ``hi``: int() of a very long string is slow and
    over 4,300 digits raises ValueError (CPython's conversion limit)."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(hi)):
        return None
    return int(significant)


def _is_ipv4(text: str) -> bool:
    try:
        IPv4Address(text)
        return True
    except ValueError:
        return False


def _canonical_zone(name: str) -> str:
    return name.lower() if name.lower() in PREDEFINED_ZONES else name


def _quote(name: str) -> str:
    if name == "" or any(c.isspace() for c in name) or name.startswith("#"):
        return f'"{name}"'
    return name


# Past this many errors the rest of a file is not read: what follows
# is not configuration (a wrong file, a binary), and each error line costs
# its "did you mean" search (16 KiB of such lines: 98 ms).
MAX_ERRORS = 100


class _Parser:
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

    # == interface ===========================================================
    IFACE_SUB = ("zone", "ip", "nat", "route", "mip", "dip", "loopback-group", "manage",
                 "bandwidth")

    def set_interface(self, ln: _Line) -> Apply | None:
        st = self.state
        name, name_tok = ln.interface_name()
        st.declared_interfaces.add(name)
        sub = ln.keyword(self.IFACE_SUB)
        line = ln.lineno
        if sub == "zone":
            st.zone_lines.add(name)
            zone, ztok = self.zone_ref(ln)
            ln.end("an interface's zone binding")

            def apply() -> None:
                s = st.iface(name)
                s.zone, s.zone_at = zone, (line, ztok)
            return apply
        if sub == "ip":
            tok = ln.peek()
            if tok is not None and ln.match(tok, ("unnumbered",)):
                ln.pos += 1
                ln.keyword(("interface",))
                target, ttok = ln.interface_name()
                ln.end()
                self.ref(ln, ttok, "interface", target, role="unnumbered source interface")

                def apply() -> None:
                    s = st.iface(name)
                    s.unnumbered, s.ip = target, None
                return apply
            ip, iptok = ln.with_prefix("an interface address", "10.1.1.1/24")
            ln.end()
            if ip.network.prefixlen < 31 and ip.ip in (ip.network.network_address,
                                                        ip.network.broadcast_address):
                which = "network" if ip.ip == ip.network.network_address else "broadcast"
                first_host = next(ip.network.hosts())
                ln.error(iptok, f"the {which} address of {ip.network} is not a host address",
                         f"an interface needs a host address of its subnet, e.g. "
                         f"{first_host}/{ip.network.prefixlen}")

            def apply() -> None:
                s = st.iface(name)
                s.ip, s.ip_at, s.unnumbered = ip, (line, iptok), None
            return apply
        if sub in ("nat", "route"):
            ln.end()
            mode_tok = ln.tokens[ln.pos - 1]

            def apply() -> None:
                s = st.iface(name)
                s.mode, s.mode_at = sub, (line, mode_tok)
            return apply
        if sub == "mip":
            ip, iptok = ln.address("the mapped IP address")
            st.declared_mips.add(str(ip))
            ln.keyword(("host",))
            host, _ = ln.address("the host IP address")
            netmask = IPv4Address("255.255.255.255")
            vrouter = DEFAULT_VROUTER
            while not ln.at_end():
                opt = ln.keyword(("netmask", "vrouter"))
                if opt == "netmask":
                    netmask, mtok = ln.address("the MIP netmask")
                    try:
                        IPv4Network(f"0.0.0.0/{netmask}")
                    except ValueError:
                        ln.error(mtok, "not a netmask", "a netmask is contiguous ones, "
                                 "e.g. 255.255.255.255 (one host) or 255.255.255.0")
                else:
                    vrouter = ln.vrouter()
            mip = Mip(ip, host, netmask, vrouter)

            def apply() -> None:
                st.iface(name).mips[ip] = (mip, line, iptok)
            return apply
        if sub == "dip":
            tok = ln.peek()
            if tok is not None and ln.match(tok, ("interface-ip",)):
                ln.pos += 1
                ln.keyword(("incoming",))
                ln.end()

                def apply() -> None:
                    st.iface(name).dip_interface_incoming = True
                return apply
            dip_id, idtok = ln.integer("a DIP pool id", 1, 255)
            st.declared_dips.add(dip_id)
            first, ftok = ln.address("the first address of the DIP pool")
            last, _ = ln.address("the last address of the DIP pool")
            incoming = ln.optional(("incoming",)) is not None
            ln.end()
            if last < first:
                ln.error(ftok, "the DIP pool's first address is above its last",
                         f"write the range low to high: {last} {first}")
            pool = DipPool(dip_id, first, last, incoming)

            def apply() -> None:
                st.iface(name).dips[dip_id] = (pool, line, idtok)
            return apply
        if sub == "bandwidth":
            return self._bandwidth(ln, name, name_tok)
        if sub == "loopback-group":
            target, ttok = ln.interface_name("a loopback interface")
            ln.end()
            if not target.startswith("loopback."):
                ln.error(ttok, "a loopback group is named by a loopback interface",
                         "e.g. loopback.1")
            if name.startswith("loopback."):
                ln.error(name_tok, "a loopback interface cannot join a loopback group",
                         "add the physical interfaces to the group")
            self.ref(ln, ttok, "interface", target, role="loopback interface")

            def apply() -> None:
                st.iface(name).loopback_group = target
            return apply
        # manage [service]
        service = ln.keyword(MANAGE_SERVICES) if not ln.at_end() else "all"
        ln.end()

        def apply() -> None:
            s = st.iface(name)
            if service not in s.manage:
                s.manage.append(service)
        return apply

    def _bandwidth(self, ln: _Line, name: str, name_tok: Token) -> Apply:
        """``bandwidth N`` (egress, ScreenOS 5) or ``bandwidth egress mbw N
        [ingress mbw M]`` / ``bandwidth ingress mbw M [egress mbw N]``
        (ScreenOS 6), Kbps; 0 leaves the direction unconfigured."""
        st = self.state
        line = ln.lineno
        if name.startswith(("loopback.", "tunnel.")):
            ln.error(name_tok, f"{name} has no bandwidth of its own",
                     "set the bandwidth of the physical interface the traffic leaves by")
        tok = ln.peek()
        if tok is not None and tok.text.isascii() and tok.text.isdigit() and not tok.quoted:
            egress, etok = ln.integer("the egress bandwidth (Kbps)", 0, MAX_KBPS)
            ln.end()

            def apply_old() -> None:
                s = st.iface(name)
                s.bandwidth_egress = egress or None
                s.bandwidth_at = (line, etok)
            return apply_old
        given: dict[str, tuple[int, Token]] = {}
        while True:
            direction = ln.keyword(("egress", "ingress"), "egress or ingress, or the egress "
                                   "bandwidth in Kbps")
            dtok = ln.tokens[ln.pos - 1]
            if direction in given:
                ln.error(dtok, f"{direction} given twice", "give each direction once")
            ln.keyword(("mbw",))
            given[direction] = ln.integer(f"the {direction} bandwidth (Kbps)", 0, MAX_KBPS)
            if ln.at_end():
                break
        egress = given.get("egress")
        ingress = given.get("ingress")

        def apply() -> None:
            s = st.iface(name)
            if egress is not None:
                s.bandwidth_egress = egress[0] or None
                s.bandwidth_at = (line, egress[1])
            if ingress is not None:
                s.bandwidth_ingress = ingress[0] or None
                s.bandwidth_in_at = (line, ingress[1])
        return apply

    def unset_interface(self, ln: _Line) -> Apply | None:
        st = self.state
        name, name_tok = ln.interface_name()
        sub = ln.keyword(("nat", "route", "mip", "dip", "loopback-group", "manage", "zone", "ip",
                          "bandwidth"))
        self.ref(ln, name_tok, "interface", name)
        if sub == "bandwidth":
            which = ln.optional(("egress", "ingress"))
            ln.end()

            def apply_bw() -> None:
                s = st.iface(name)
                if which in (None, "egress"):
                    s.bandwidth_egress = None
                    s.bandwidth_at = None
                if which in (None, "ingress"):
                    s.bandwidth_ingress = None
            return apply_bw
        if sub == "mip":
            ip, iptok = ln.address("the mapped IP address")
            ln.end()

            def apply() -> None:
                if st.iface(name).mips.pop(ip, None) is None:
                    self.diag(ln.lineno, iptok.column, iptok.raw, f"{name} has no MIP {ip}",
                              "nothing to unset", "warning")
            return apply
        if sub == "dip":
            if ln.optional(("interface-ip",)):
                ln.keyword(("incoming",))
                ln.end()
                return lambda: setattr(st.iface(name), "dip_interface_incoming", False)
            dip_id, _ = ln.integer("a DIP pool id", 1, 255)
            ln.end()
            return lambda: st.iface(name).dips.pop(dip_id, None) and None
        if sub == "manage":
            service = ln.keyword(MANAGE_SERVICES) if not ln.at_end() else None
            ln.end()

            def apply() -> None:
                s = st.iface(name)
                s.manage = [m for m in s.manage if service is not None and m != service]
            return apply
        ln.end()

        def apply() -> None:
            s = st.iface(name)
            if sub in ("nat", "route"):
                if s.mode == sub:
                    s.mode = None
            elif sub == "loopback-group":
                s.loopback_group = None
            elif sub == "zone":
                s.zone = None
            else:
                s.ip = None
                s.unnumbered = None
        return apply

    # == zone ================================================================
    def set_zone(self, ln: _Line) -> Apply | None:
        st = self.state
        tok = ln.peek()
        if tok is not None and ln.match(tok, ("name",)) and len(ln.tokens) - ln.pos >= 2:
            ln.pos += 1
            ztok = ln.name("the new zone's name")
            ln.end()
            st.declared_zones.add(ztok.text)
            if ztok.text.lower() in PREDEFINED_ZONES:
                ln.error(ztok, "a predefined zone", f"'{ztok.text.lower()}' always exists; "
                         "choose another name")
            if ztok.text.lower() == "name":
                ln.error(ztok, "a zone may not be called 'name'", "choose another name")
            source = Source(self.filename, ln.lineno)
            return lambda: st.custom_zones.setdefault(ztok.text, source) and None
        zone, ztok = self.zone_ref(ln)
        sub = ln.keyword(("block", "screen"))
        if sub == "block":
            ln.end()
            return lambda: st.zone_block.__setitem__(zone, True)
        screen = ln.keyword(("udp-flood", "limit-session"))
        if screen == "udp-flood":
            ln.keyword(("dst-ip",))
            ip, _ = ln.address("the protected destination address")
            ln.keyword(("threshold",))
            n, _ = ln.integer("the threshold (packets/s)", 1, 1_000_000)
            ln.end()
            return lambda: st.udp_flood.setdefault(zone, {}).__setitem__(ip, n)
        ln.keyword(("source-ip-based",))
        n, _ = ln.integer("the session limit per source address", 1, 1_000_000)
        ln.end()
        return lambda: st.limit_session.__setitem__(zone, n)

    def unset_zone(self, ln: _Line) -> Apply | None:
        st = self.state
        zone, _ = self.zone_ref(ln)
        sub = ln.keyword(("block", "screen"))
        if sub == "block":
            ln.end()
            return lambda: st.zone_block.__setitem__(zone, False)
        screen = ln.keyword(("udp-flood", "limit-session"))
        if screen == "udp-flood":
            ln.keyword(("dst-ip",))
            ip, _ = ln.address("the protected destination address")
            ln.end()
            return lambda: st.udp_flood.setdefault(zone, {}).pop(ip, None) and None
        ln.optional(("source-ip-based",))
        ln.end()
        return lambda: st.limit_session.__setitem__(zone, None)

    # == address =============================================================
    def set_address(self, ln: _Line) -> Apply | None:
        st = self.state
        zone, _ = self.zone_ref(ln)
        ntok = ln.name("the address name")
        key = (zone, ntok.text)
        duplicate = key in st.declared_addresses
        st.declared_addresses.add(key)
        if ntok.text.lower() == "any":
            ln.error(ntok, "'any' is reserved", "'any' already means every address; choose "
                     "another name")
        atok = ln.peek()
        if atok is None:
            ln.missing("the address (A.B.C.D/M or A.B.C.D MASK)")
        if "/" in atok.text:  # type: ignore[union-attr]
            ip, _ = ln.with_prefix("the address", "10.1.1.5/32")
        else:
            addr, atok = ln.address("the address")
            mtok = ln.peek()
            if mtok is None or mtok.quoted:
                ln.error(atok, "the address needs a netmask",
                         f"write {addr}/32 (one host) or {addr} 255.255.255.255, or with "
                         f"its subnet mask, e.g. {addr}/24", abort=False)
                ln.cut_short = mtok is None
                raise _Abort
            mask, mtok = ln.address("the netmask")
            try:
                IPv4Network(f"0.0.0.0/{mask}")
                ip = IPv4Interface(f"{addr}/{mask}")
            except ValueError:
                ln.error(mtok, "not a netmask", "a netmask is contiguous ones, e.g. 255.255.255.0")
        comment = None
        ctok = ln.peek()
        if ctok is not None:
            if not ctok.quoted:
                ln.error(ctok, "unexpected text after the address",
                         "a comment must be in double quotes")
            comment = ctok.text
            ln.pos += 1
        ln.end()
        if duplicate:
            ln.error(ntok, "duplicate address name",
                     f"zone {zone} already has an address '{ntok.text}'; choose another name "
                     f"or 'unset address {zone} {_quote(ntok.text)}' first")
        line = ln.lineno
        address = Address(zone, ntok.text, ip, comment)
        return lambda: st.addresses.__setitem__(key, (address, line, ntok))

    def unset_address(self, ln: _Line) -> Apply | None:
        st = self.state
        zone, _ = self.zone_ref(ln)
        ntok = ln.name("the address name")
        ln.end()
        key = (zone, ntok.text)
        st.declared_addresses.discard(key)
        return lambda: st.addresses.pop(key, None) and None

    # == policy ==============================================================
    def set_policy(self, ln: _Line) -> Apply | None:
        st = self.state
        policy_id: int | None = None
        name: str | None = None
        while True:
            kw = ln.keyword(("id", "name", "from"))
            if kw == "id":
                policy_id, idtok = ln.integer("the policy id", 1, 65535)
                if policy_id in st.declared_policy_ids:
                    ln.error(idtok, "duplicate policy id",
                             f"policy {policy_id} already exists; 'unset policy id "
                             f"{policy_id}' first or choose another id")
            elif kw == "name":
                name = ln.name("the policy name").text
            else:
                break
        from_zone, _ = self.zone_ref(ln, "the from-zone")
        ln.keyword(("to",))
        to_zone, _ = self.zone_ref(ln, "the to-zone")
        src, stok = self._policy_address(ln, "source address")
        dst, dtok = self._policy_address(ln, "destination address")
        for ref, tok, zone, role in ((src, stok, from_zone, "source"),
                                     (dst, dtok, to_zone, "destination")):
            if ref.kind == "name":
                self.ref(ln, tok, "address", ref.value, zone, role)
            elif ref.kind in ("mip", "dip"):
                if role == "source":
                    ln.error(tok, f"a {ref.kind.upper()} cannot be a policy's source",
                             f"{ref.kind.upper()}(...) is a destination: the policy's "
                             f"second address", abort=False)
                kind = "mip" if ref.kind == "mip" else (
                    "dip" if ref.value.isdigit() else "dip-iface")
                self.ref(ln, tok, kind, ref.value, role=role)
        svc_tok = ln.name("the service")
        service = svc_tok.text.lower()
        if service not in SERVICES:
            guess = did_you_mean(svc_tok.text, SERVICES)
            ln.error(svc_tok, "unknown service",
                     (f"did you mean '{guess}'? " if guess else "")
                     + f"predefined services: {', '.join(SERVICES)}", abort=False)
        nat_src = False
        nat_dip: int | None = None
        action = ln.keyword(("nat", "permit", "deny"))
        if action == "nat":
            ln.keyword(("src",))
            nat_src = True
            action = ln.keyword(("dip", "permit", "deny"))
            if action == "dip":
                nat_dip, diptok = ln.integer("the DIP pool id", 1, 255)
                self.ref(ln, diptok, "dip", str(nat_dip), to_zone, "nat")
                action = ln.keyword(("permit", "deny"))
        traffic: PolicyTraffic | None = None
        gbw_tok: Token | None = None
        if not ln.at_end():
            ln.keyword(("traffic",))
            ttok = ln.tokens[ln.pos - 1]
            if action == "deny":
                ln.error(ttok, "a deny policy shapes no traffic",
                         "traffic shaping and DSCP marking apply to permitted traffic; "
                         "remove 'traffic ...' or make the policy permit")
            traffic, gbw_tok = self._traffic(ln)
        ln.end()
        if ln.failed:
            raise _Abort
        if policy_id is None:
            policy_id = st.declared_policy_ids.highest() + 1
        st.declared_policy_ids.add(policy_id)
        policy = Policy(policy_id, from_zone, to_zone, src, dst, service, action,  # type: ignore[arg-type]
                        name, nat_src, nat_dip, Source(self.filename, ln.lineno), traffic)
        return lambda: st.policies.__setitem__(policy_id, _PolicyState(policy, ln.lineno,
                                                                        gbw_tok=gbw_tok))

    def _traffic(self, ln: _Line) -> tuple[PolicyTraffic, Token | None]:
        """``traffic [gbw N] [priority P] [mbw M] [dscp enable [value V] |
        dscp disable]`` in any order, each once (manual ch. 2 "Bandwidth
        Management for VoIP Services"; ScreenOS policy traffic options)."""
        values: dict[str, object] = {}
        toks: dict[str, Token] = {}
        while True:
            opt = ln.keyword(TRAFFIC_OPTIONS)
            otok = ln.tokens[ln.pos - 1]
            if opt in values:
                ln.error(otok, f"{opt} given twice", f"give '{opt}' once per policy")
            if opt == "gbw":
                values[opt], toks[opt] = ln.integer("the guaranteed bandwidth (Kbps)", 0, MAX_KBPS)
            elif opt == "mbw":
                values[opt], toks[opt] = ln.integer("the maximum bandwidth (Kbps; 0: the "
                                                    "interface's)", 0, MAX_KBPS)
            elif opt == "priority":
                values[opt], toks[opt] = ln.integer("the priority (0 highest, 7 lowest)", 0, 7)
            else:
                state = ln.keyword(("enable", "disable"))
                values[opt] = state == "enable"
                if state == "enable" and ln.optional(("value",)):
                    values["dscp_value"], toks["dscp_value"] = ln.integer(
                        "the DSCP value", 0, 63)
            if ln.at_end():
                break
        gbw, mbw = int(values.get("gbw", 0)), int(values.get("mbw", 0))  # type: ignore[call-overload]
        if mbw and gbw > mbw:
            tok = toks["mbw"]
            ln.error(tok, f"the maximum bandwidth (mbw {mbw}) is below the guaranteed "
                     f"bandwidth (gbw {gbw})",
                     f"mbw must be at least gbw: e.g. mbw {gbw}, or mbw 0 for no maximum")
        shaping = any(k in values for k in ("gbw", "priority", "mbw"))
        traffic = PolicyTraffic(gbw, int(values.get("priority", LOWEST_PRIORITY)),  # type: ignore[call-overload]
                                mbw, bool(values.get("dscp", False)),
                                values.get("dscp_value"), shaping)  # type: ignore[arg-type]
        return traffic, toks.get("gbw")

    def _policy_address(self, ln: _Line, role: str) -> tuple[AddressRef, Token]:
        tok = ln.name(f"the {role}")
        text = tok.text
        if not tok.quoted:
            if text.lower() == "any":
                return AddressRef("any"), tok
            m = re.fullmatch(r"(mip|dip)\((.*)\)", text, re.IGNORECASE)
            nxt = ln.peek()
            if m is None and text.lower() in ("mip", "dip") and nxt is not None \
                    and nxt.text.startswith("("):
                # "mip (1.1.1.25)": the manual writes it with a space too.
                ln.pos += 1
                m = re.fullmatch(r"(mip|dip)\s*\((.*)\)", f"{text}{nxt.text}", re.IGNORECASE)
            if m is not None or re.match(r"(mip|dip)\(", text, re.IGNORECASE):
                if m is None:
                    ln.error(tok, f"unbalanced parenthesis in the {role}",
                             "write MIP(A.B.C.D) or DIP(id)")
                kind, inner = m.group(1).lower(), m.group(2).strip()  # type: ignore[union-attr]
                if kind == "mip":
                    if not _is_ipv4(inner):
                        ln.error(tok, "MIP(...) needs an IPv4 address", "e.g. mip(1.1.1.5)")
                    return AddressRef("mip", inner), tok
                if inner.isascii() and inner.isdigit():
                    pool_id = _bounded_int(inner, _MAX_DIP_ID)
                    if pool_id is None:
                        ln.error(tok, "DIP pool id out of range",
                                 f"a pool id from 1 to {_MAX_DIP_ID}, e.g. dip(5)")
                    return AddressRef("dip", str(pool_id)), tok
                if not _IFACE_RE.fullmatch(inner):
                    ln.error(tok, "DIP(...) needs a pool id or an interface name",
                             "e.g. dip(5) or dip(ethernet3)")
                return AddressRef("dip", inner.lower()), tok
        return AddressRef("name", text), tok

    def unset_policy(self, ln: _Line) -> Apply | None:
        st = self.state
        ln.keyword(("id",))
        pid, ptok = ln.integer("the policy id", 1, 65535)
        ln.end()
        if pid not in st.declared_policy_ids:
            ln.error(ptok, "no such policy", "policies so far: " + st.declared_policy_ids.describe())
        st.declared_policy_ids.discard(pid)
        return lambda: st.policies.pop(pid, None)

    # == routes ==============================================================
    def set_vrouter(self, ln: _Line) -> Apply | None:
        vr = ln.vrouter()
        ln.keyword(("route",))
        return self._route(ln, vr, unset=False)

    def set_route(self, ln: _Line) -> Apply | None:
        return self._route(ln, DEFAULT_VROUTER, unset=False)

    def unset_vrouter(self, ln: _Line) -> Apply | None:
        vr = ln.vrouter()
        ln.keyword(("route",))
        return self._route(ln, vr, unset=True)

    def unset_route(self, ln: _Line) -> Apply | None:
        return self._route(ln, DEFAULT_VROUTER, unset=True)

    def _route(self, ln: _Line, vr: str, *, unset: bool) -> Apply | None:
        st = self.state
        prefix, ptok = ln.network("the destination prefix")
        if unset and ln.at_end():
            return lambda: setattr(st, "routes", [r for r in st.routes
                                                  if (r[0].prefix, r[0].vrouter) != (prefix, vr)])
        ln.keyword(("interface",))
        iface, itok = ln.interface_name()
        gateway = None
        if ln.optional(("gateway",)):
            gateway, _ = ln.address("the gateway address")
        ln.end()
        route = Route(prefix, iface, gateway, vr)
        if unset:
            return lambda: setattr(st, "routes", [r for r in st.routes if r[0] != route])
        self.ref(ln, itok, "interface", iface, role="route's interface")
        line = ln.lineno
        return lambda: st.routes.append((route, line, ptok))

    # == global settings =====================================================
    def set_dip(self, ln: _Line) -> Apply | None:
        ln.keyword(("sticky",))
        ln.end()
        return lambda: setattr(self.state, "dip_sticky", True)

    def unset_dip(self, ln: _Line) -> Apply | None:
        ln.keyword(("sticky",))
        ln.end()
        return lambda: setattr(self.state, "dip_sticky", False)

    SIP_TIMERS = {
        "signaling-inactivity-timeout": ("signaling_inactivity_timeout", "seconds", 1, MAX_INT),
        "media-inactivity-timeout": ("media_inactivity_timeout", "seconds", 1, MAX_INT),
        "max-call-duration": ("max_call_duration", "seconds", 1, MAX_INT),
        "timer-c": ("timer_c", "seconds", 1, MAX_INT),
        "max-setup-calls-per-source": ("max_setup_calls_per_source", "number of calls", 1,
                                       MAX_INT),
        "tcp-max-message": ("tcp_max_message", "longest SIP message over TCP (octets)", 1500,
                            16 << 20),
    }

    def _sip_timer(self, ln: _Line, key: str, unset: bool) -> Apply:
        attr, what, lo, hi = self.SIP_TIMERS[key]
        if unset:
            ln.end()
            value = getattr(SipSettings(), attr)
        else:
            value, _ = ln.integer(f"the {what}", lo, hi)
            ln.end()
        st = self.state
        return lambda: setattr(st, "sip", replace(st.sip, **{attr: value}))

    def set_sip(self, ln: _Line) -> Apply | None:
        return self._sip(ln, unset=False)

    def unset_sip(self, ln: _Line) -> Apply | None:
        return self._sip(ln, unset=True)

    def _sip(self, ln: _Line, *, unset: bool) -> Apply | None:
        st = self.state
        key = ln.keyword(tuple(self.SIP_TIMERS) + ("protect",))
        if key != "protect":
            return self._sip_timer(ln, key, unset)
        ln.keyword(("deny",))
        opt = ln.optional(("dst-ip", "timeout"))
        if opt == "timeout":
            if unset:
                ln.end()
                return lambda: setattr(st, "sip", replace(st.sip, protect_deny_timeout=3))
            n, _ = ln.integer("the deny timeout (seconds)", 1, 3600)
            ln.end()
            return lambda: setattr(st, "sip", replace(st.sip, protect_deny_timeout=n))
        if opt == "dst-ip":
            if unset:
                ln.end()
                return lambda: setattr(st, "sip", replace(st.sip, protect_deny_dst=None))
            ptok = ln.peek()
            if ptok is not None and "/" not in ptok.text and _is_ipv4(ptok.text):
                ln.pos += 1
                dst = IPv4Interface(ptok.text)
            else:
                dst, _ = ln.with_prefix("the proxy address", "1.1.1.3/24")
            ln.end()
            return lambda: setattr(st, "sip", replace(st.sip, protect_deny=True,
                                                      protect_deny_dst=dst))
        if not ln.at_end():
            ln.keyword(("dst-ip", "timeout"))
        ln.end()
        if unset:
            return lambda: setattr(st, "sip", replace(st.sip, protect_deny=False,
                                                      protect_deny_dst=None))
        return lambda: setattr(st, "sip", replace(st.sip, protect_deny=True))

    MGCP = {
        "message-flood": ("message_flood_threshold", "message flood threshold (messages/s)",
                          1, 1_000_000),
        "connection-flood": ("connection_flood_threshold",
                             "connection flood threshold (CRCX/s)", 1, 1_000_000),
        "inactive-media-timeout": ("inactive_media_timeout", "timeout (seconds)", 1, MAX_INT),
        "transaction-timeout": ("transaction_timeout", "timeout (seconds)", 1, MAX_INT),
        "max-call-duration": ("max_call_duration", "duration (seconds)", 1, MAX_INT),
        "max-transactions": ("max_transactions", "transactions per source address", 1, 1_000_000),
    }

    def _mgcp(self, ln: _Line, unset: bool) -> Apply:
        key = ln.keyword(tuple(self.MGCP))
        attr, what, lo, hi = self.MGCP[key]
        if key.endswith("-flood"):
            ln.keyword(("threshold",))
        if unset:
            ln.end()
            value = getattr(MgcpSettings(), attr)
        else:
            value, _ = ln.integer(f"the {what}", lo, hi)
            ln.end()
        st = self.state
        return lambda: setattr(st, "mgcp", replace(st.mgcp, **{attr: value}))

    def set_mgcp(self, ln: _Line) -> Apply | None:
        return self._mgcp(ln, False)

    def unset_mgcp(self, ln: _Line) -> Apply | None:
        return self._mgcp(ln, True)

    def _nsrp(self, ln: _Line, unset: bool) -> Apply:
        st = self.state
        defaults = NsrpSettings()
        changes: dict[str, object] = {}
        sub = ln.keyword(("cluster", "vsd-group", "rto-mirror"))
        if sub == "cluster":
            ln.keyword(("id",))
            changes["cluster_id"] = defaults.cluster_id if unset else \
                ln.integer("the cluster id", 0, 7)[0]
        elif sub == "rto-mirror":
            if unset:
                ln.optional(("sync", "async"))
                changes["rto_mirror"] = defaults.rto_mirror
            else:
                changes["rto_mirror"] = ln.keyword(("sync", "async"))
        else:
            opt = ln.keyword(("id", "hb-interval", "hb-threshold"))
            if opt == "id":
                changes["vsd_group"], _ = ln.integer("the VSD group id", 0, 7)
                ln.keyword(("priority",))
                changes["priority"] = defaults.priority if unset else \
                    ln.integer("the priority (lower is the preferred active)", 1, 254)[0]
            elif opt == "hb-interval":
                changes["hb_interval_ms"] = defaults.hb_interval_ms if unset else \
                    ln.integer("the heartbeat interval (ms)", 50, 10_000)[0]
            else:
                changes["hb_threshold"] = defaults.hb_threshold if unset else \
                    ln.integer("the number of missed heartbeats", 1, 255)[0]
        ln.end()
        return lambda: setattr(st, "nsrp", replace(st.nsrp, **changes))

    def set_nsrp(self, ln: _Line) -> Apply | None:
        return self._nsrp(ln, False)

    def unset_nsrp(self, ln: _Line) -> Apply | None:
        return self._nsrp(ln, True)

    def set_flow(self, ln: _Line) -> Apply | None:
        return self._flow(ln, False)

    def unset_flow(self, ln: _Line) -> Apply | None:
        return self._flow(ln, True)

    # `set flow overload <setting> <n>` (gateway/overload.py); `unset` puts
    # the default back. new-dialog-rate 0 turns shedding off.
    _OVERLOAD = {
        "new-dialog-rate": ("overload_new_dialog_rate", "new dialogs admitted per second (0: off)",
                            0, 1_000_000),
        "max-held": ("overload_max_held", "messages held for their ALG before overload", 1, 1_000_000),
        "latency-target": ("overload_latency_target_ms",
                           "the completion latency (ms) past which the node is overloaded", 1, 60_000),
        "source-rate": ("overload_source_rate",
                        "new-work packets per second one source may send (0: off)", 0, 1_000_000),
    }

    def _flow(self, ln: _Line, unset: bool) -> Apply | None:
        st = self.state
        sub = ln.keyword(("queue-bypass", "overload", "media-offload"))
        if sub == "queue-bypass":
            ln.end()
            return lambda: setattr(st, "flow", replace(st.flow, queue_bypass=not unset))
        if sub == "media-offload":
            ln.end()
            return lambda: setattr(st, "flow", replace(st.flow, media_offload=not unset))
        opt = ln.keyword(tuple(self._OVERLOAD))
        field_name, what, lo, hi = self._OVERLOAD[opt]
        value = getattr(FlowSettings(), field_name) if unset else ln.integer(what, lo, hi)[0]
        ln.end()
        return lambda: setattr(st, "flow", replace(st.flow, **{field_name: value}))

    # == traffic shaping =====================================================
    def set_traffic_shaping(self, ln: _Line) -> Apply | None:
        return self._traffic_shaping(ln, False)

    def unset_traffic_shaping(self, ln: _Line) -> Apply | None:
        return self._traffic_shaping(ln, True)

    def _traffic_shaping(self, ln: _Line, unset: bool) -> Apply:
        """``set traffic-shaping mode auto|on|off``; ``set traffic-shaping
        ip_precedence P0 P1 ... P7`` (the IP precedence of each priority
        level, 0 to 7); ``unset`` puts the default back."""
        st = self.state
        sub = ln.keyword(("mode", "ip_precedence"))
        defaults = TrafficShaping()
        if sub == "mode":
            mode = defaults.mode if unset else ln.keyword(("auto", "on", "off"))
            if unset:
                ln.optional(("auto", "on", "off"))
            ln.end()
            return lambda: setattr(st, "traffic_shaping", replace(st.traffic_shaping, mode=mode))
        if unset:
            ln.end()
            values = defaults.ip_precedence
        else:
            got = []
            for level in range(8):
                tok = ln.peek()
                if tok is None:
                    ln.missing(f"the IP precedence of priority {level} (eight numbers 0-7, "
                               "one per priority level)",
                               "give eight numbers, e.g. 'set traffic-shaping ip_precedence "
                               "7 6 5 4 3 2 1 0' (the default)")
                got.append(ln.integer(f"the IP precedence of priority {level}", 0, 7)[0])
            ln.end()
            values = tuple(got)
        return lambda: setattr(st, "traffic_shaping",
                               replace(st.traffic_shaping, ip_precedence=values))

    # == host-side lines (parsed, checked, not enforced) =====================
    def _unenforced(self, ln: _Line, text: str, reason: str) -> Apply:
        item = Unenforced(Source(self.filename, ln.lineno), text, reason)
        return lambda: self.state.unenforced.append(item)

    def set_admin(self, ln: _Line) -> Apply | None:
        ln.keyword(("user",))
        user = ln.name("the user name")
        remaining = len(ln.tokens) - ln.pos
        if remaining >= 2 or (remaining == 1 and ln.match(ln.peek(), ("password",))):  # type: ignore[arg-type]
            ln.keyword(("password",))
        password = ln.name("the password")
        ln.end()
        text = f"set admin user {_quote(user.text)} password {_quote(password.text)}"
        return self._unenforced(ln, text, ADMIN_REASON)

    def set_ike(self, ln: _Line) -> Apply | None:
        st = self.state
        ln.keyword(("gateway",))
        gtok = ln.name("the IKE gateway name")
        st.declared_ike.add(gtok.text)
        ln.keyword(("address",))
        peer, ptok = ln.address("the peer address")
        st.ike_peers[gtok.text] = (peer, ln.lineno, ptok)
        mode = ln.keyword(("main", "aggressive"))
        ln.keyword(("outgoing-interface",))
        iface, itok = ln.interface_name()
        self.ref(ln, itok, "interface", iface, role="IKE outgoing interface")
        ln.keyword(("preshare",))
        key = ln.name("the preshared key")
        ln.keyword(("sec-level",))
        level = ln.keyword(SEC_LEVELS)
        ln.end()
        text = (f"set ike gateway {_quote(gtok.text)} address {peer} {mode} outgoing-interface "
                f"{iface} preshare \"{key.text}\" sec-level {level}")
        return self._unenforced(ln, text, IPSEC_REASON)

    def set_vpn(self, ln: _Line) -> Apply | None:
        st = self.state
        vtok = ln.name("the VPN name")
        sub = ln.keyword(("gateway", "id", "bind"))
        if sub == "gateway":
            st.declared_vpns.add(vtok.text)
            gtok = ln.name("the IKE gateway name")
            self.ref(ln, gtok, "ike", gtok.text)
            replay = ln.keyword(("no-replay", "replay", "tunnel"))
            if replay != "tunnel":
                ln.keyword(("tunnel",))
            ln.keyword(("idletime",))
            idle, _ = ln.integer("the idle time (minutes)", 0, MAX_INT)
            ln.keyword(("sec-level",))
            level = ln.keyword(SEC_LEVELS)
            ln.end()
            replay_text = "" if replay == "tunnel" else f" {replay}"
            text = (f"set vpn {_quote(vtok.text)} gateway {_quote(gtok.text)}{replay_text} "
                    f"tunnel idletime {idle} sec-level {level}")
            record = self._unenforced(ln, text, IPSEC_REASON)

            def apply() -> None:
                st.vpns.setdefault(vtok.text, _Vpn()).gateway = gtok.text
                record()
            return apply
        vpn_id = None
        if sub == "id":
            vpn_id, _ = ln.integer("the VPN id", 1, 65535)
            ln.keyword(("bind",))
        ln.keyword(("interface",))
        tunnel, ttok = ln.interface_name("a tunnel interface")
        ln.end()
        if not tunnel.startswith("tunnel."):
            ln.error(ttok, "a VPN binds to a tunnel interface", "e.g. tunnel.1")
        self.ref(ln, vtok, "vpn", vtok.text)
        self.ref(ln, ttok, "interface", tunnel, role="VPN's tunnel interface")
        id_text = f" id {vpn_id}" if vpn_id is not None else ""
        text = f"set vpn {_quote(vtok.text)}{id_text} bind interface {tunnel}"
        return self._unenforced(ln, text, IPSEC_REASON)

    # == checks across lines =================================================
    def check_references(self) -> None:
        st = self.state
        zones = set(PREDEFINED_ZONES) | st.declared_zones
        mips: dict[str, tuple[str, Mip]] = {}
        for iface in st.interfaces.values():
            for ip, (mip, _, _) in iface.mips.items():
                mips[str(ip)] = (iface.name, mip)
        pools: dict[int, tuple[_IfaceState, DipPool]] = {}
        for iface in st.interfaces.values():
            for pid, (pool, _, _) in iface.dips.items():
                pools[pid] = (iface, pool)
        for ref in st.refs:
            tok = ref.token
            if ref.kind == "zone":
                if ref.value not in zones:
                    self._undefined(ref, "zone", sorted(zones),
                                    f"define it with 'set zone name {_quote(ref.value)}'")
            elif ref.kind == "interface":
                if ref.value not in st.declared_interfaces:
                    self._undefined(ref, "interface", sorted(st.declared_interfaces),
                                    f"configure it with 'set interface {ref.value} zone ZONE'")
            elif ref.kind == "ike":
                if ref.value not in st.declared_ike:
                    self._undefined(ref, "IKE gateway", sorted(st.declared_ike),
                                    "define it with 'set ike gateway NAME address ...'")
            elif ref.kind == "vpn":
                if ref.value not in st.declared_vpns:
                    self._undefined(ref, "VPN", sorted(st.declared_vpns),
                                    "define it with 'set vpn NAME gateway ...'")
            elif ref.kind == "address":
                self._check_address_ref(ref, zones)
            elif ref.kind == "mip":
                if ref.value not in st.declared_mips:
                    self._undefined(ref, "MIP", sorted(st.declared_mips),
                                    f"define it with 'set interface IF mip {ref.value} host A.B.C.D'")
            elif ref.kind == "dip":
                pid = int(ref.value)
                if pid not in st.declared_dips:
                    self._undefined(ref, "DIP pool", [str(p) for p in sorted(st.declared_dips)],
                                    f"define it with 'set interface IF dip {pid} FIRST LAST'")
                elif pid in pools:
                    iface, pool = pools[pid]
                    if ref.role == "nat":
                        if iface.zone is not None and ref.zone in zones and iface.zone != ref.zone:
                            self.diag(ref.line, tok.column, tok.raw,
                                      f"DIP pool {pid} is on {iface.name} in zone {iface.zone}, "
                                      f"not in the policy's to-zone {ref.zone}",
                                      "source NAT takes its addresses from a pool on the "
                                      "egress interface")
                    elif not pool.incoming:
                        self.diag(ref.line, tok.column, tok.raw,
                                  f"DIP pool {pid} does not accept incoming calls",
                                  f"add 'incoming': set interface {iface.name} dip {pid} "
                                  f"{pool.first} {pool.last} incoming")
            elif ref.kind == "dip-iface":
                if ref.value not in st.declared_interfaces:
                    self._undefined(ref, "interface", sorted(st.declared_interfaces), "")
                elif ref.value in st.interfaces and \
                        not st.interfaces[ref.value].dip_interface_incoming:
                    self.diag(ref.line, tok.column, tok.raw,
                              f"{ref.value} has no incoming interface DIP",
                              f"add 'set interface {ref.value} dip interface-ip incoming'")

    def _undefined(self, ref: _Ref, what: str, known: list[str], how: str) -> None:
        guess = did_you_mean(ref.value, known, fold_case=False) or \
            did_you_mean(ref.value, known)
        hint = f"did you mean '{guess}'?" if guess else how
        self.diag(ref.line, ref.token.column, ref.token.raw, f"undefined {what}", hint)

    def _check_address_ref(self, ref: _Ref, zones: set[str]) -> None:
        st = self.state
        if ref.zone not in zones:
            return
        if (ref.zone, ref.value) in st.declared_addresses:
            return
        elsewhere = sorted(z for z, n in st.declared_addresses if n == ref.value)
        tok = ref.token
        side = "from-zone" if ref.role == "source" else "to-zone"
        if elsewhere:
            self.diag(ref.line, tok.column, tok.raw,
                      f"the {ref.role} address is in zone {elsewhere[0]}, not in the policy's "
                      f"{side} {ref.zone}",
                      f"a policy's {ref.role} must be an address of its {side}; write the "
                      f"policy for zone {elsewhere[0]} or define the address in {ref.zone}")
            return
        in_zone = [n for z, n in st.declared_addresses if z == ref.zone]
        everywhere = [n for _, n in st.declared_addresses]
        guess = did_you_mean(ref.value, in_zone, fold_case=False) or \
            did_you_mean(ref.value, in_zone) or did_you_mean(ref.value, everywhere)
        hint = (f"did you mean '{guess}'?" if guess else
                f"define it with 'set address {ref.zone} {_quote(ref.value)} A.B.C.D/M', "
                "or use 'any'")
        self.diag(ref.line, tok.column, tok.raw, f"undefined {ref.role} address", hint)

    def check_values(self) -> None:
        """Checks of the values the file gives, across lines."""
        st = self.state
        iface_ips: dict[IPv4Address, str] = {}
        for iface in st.interfaces.values():
            if iface.ip is not None and iface.ip_at is not None:
                line, tok = iface.ip_at
                other = iface_ips.get(iface.ip.ip)
                if other is not None:
                    self.diag(line, tok.column, tok.raw,
                              f"{iface.ip.ip} is already the address of {other}",
                              "give each interface its own address")
                iface_ips.setdefault(iface.ip.ip, iface.name)
                if iface.zone is None and iface.name not in st.zone_lines:
                    self.diag(line, tok.column, tok.raw,
                              f"{iface.name} has an address but is bound to no zone",
                              f"bind it first: set interface {iface.name} zone ZONE")
            if iface.unnumbered is not None:
                src = st.interfaces.get(iface.unnumbered)
                if src is not None and src.ip is None and iface.unnumbered in st.declared_interfaces:
                    line, tok = iface.zone_at or (0, Token(iface.name, 1, iface.name))
                    if line:
                        self.diag(line, tok.column, tok.raw,
                                  f"{iface.name} borrows the address of {iface.unnumbered}, "
                                  "which has none", f"set interface {iface.unnumbered} ip A.B.C.D/M")
            if iface.mode == "nat" and iface.zone == "untrust" and iface.mode_at:
                line, tok = iface.mode_at
                self.diag(line, tok.column, tok.raw,
                          f"NAT mode on {iface.name} in the untrust zone has no effect",
                          "NAT mode translates traffic that enters a trust-side interface; "
                          "use 'route' on untrust interfaces", "warning")
        hosts: dict[IPv4Address, Address] = {}
        for address, _, _ in st.addresses.values():
            if address.is_host:
                hosts.setdefault(address.ip.ip, address)
        seen_mips: dict[IPv4Address, str] = {}
        pools = [(iface.name, pool) for iface in st.interfaces.values()
                 for pool, _, _ in iface.dips.values()]
        for iface in st.interfaces.values():
            for ip, (mip, line, tok) in iface.mips.items():
                conflict = None
                if ip in iface_ips:
                    conflict = f"the MIP {ip} is the address of interface {iface_ips[ip]}"
                elif ip in hosts:
                    h = hosts[ip]
                    conflict = (f"the MIP {ip} is the address of '{h.name}' in zone {h.zone} "
                                "(address book)")
                elif ip in seen_mips:
                    conflict = f"the MIP {ip} is already mapped on {seen_mips[ip]}"
                else:
                    for pname, pool in pools:
                        if pool.first <= ip <= pool.last:
                            conflict = f"the MIP {ip} lies in DIP pool {pool.id} of {pname}"
                if conflict:
                    free = self._free_address(ip, iface, iface_ips, hosts, seen_mips, pools)
                    self.diag(line, tok.column, tok.raw, conflict,
                              "a MIP needs an address of its own" +
                              (f", such as {free}" if free else ""))
                seen_mips.setdefault(ip, iface.name)
        for route, line, tok in st.routes:
            out = st.interfaces.get(route.interface)
            if route.gateway is not None and out is not None and out.ip is not None \
                    and route.gateway not in out.ip.network:
                self.diag(line, tok.column, tok.raw,
                          f"the gateway {route.gateway} is not on {route.interface}'s subnet "
                          f"{out.ip.network}", "a next hop must be directly reachable")
            for other in st.interfaces.values():
                if other.name != route.interface and other.ip is not None \
                        and other.ip.network == route.prefix and other.zone is not None:
                    self.diag(line, tok.column, tok.raw,
                              f"the route to {route.prefix} via {route.interface} is shadowed "
                              f"by the connected subnet of {other.name} ({other.ip})",
                              "a connected subnet always wins over a static route to the "
                              "same prefix; one of the two addresses is wrong")
        self._check_bandwidth()
        for name, (peer, line, tok) in st.ike_peers.items():
            if peer in iface_ips:
                self.diag(line, tok.column, tok.raw,
                          f"the IKE peer of '{name}' is this device's own address "
                          f"({iface_ips[peer]})",
                          "the peer address is the remote device's outgoing interface")

    def _check_bandwidth(self) -> None:
        """The guaranteed bandwidths of the policies an interface's traffic
        may take (its zone as the policy's from- or to-zone: replies leave
        by the from-zone's interfaces) must fit in its egress bandwidth: a
        guarantee beyond the link cannot be kept (ScreenOS then fails to
        give some policies theirs, Juniper KB23597; this language refuses
        it). A gbw with no bandwidth configured on any interface of its
        zones guarantees nothing here: warned."""
        st = self.state
        shaped = [p for p in st.policies.values() if p.policy.traffic is not None
                  and p.policy.traffic.shaping]
        for iface in st.interfaces.values():
            if iface.zone is None or iface.bandwidth_egress is None:
                continue
            total = 0
            terms = []
            for ps in shaped:
                pol = ps.policy
                if iface.zone not in (pol.from_zone, pol.to_zone) or not pol.traffic.gbw:  # type: ignore[union-attr]
                    continue
                total += pol.traffic.gbw  # type: ignore[union-attr]
                terms.append(f"policy {pol.id} gbw {pol.traffic.gbw}")  # type: ignore[union-attr]
                if total > iface.bandwidth_egress and ps.gbw_tok is not None:
                    tok = ps.gbw_tok
                    self.diag(ps.line, tok.column, tok.raw,
                              f"the guaranteed bandwidth of the policies through {iface.name} "
                              f"({' + '.join(terms)} = {total} Kbps) exceeds its egress "
                              f"bandwidth of {iface.bandwidth_egress} Kbps",
                              f"lower a gbw, or raise 'set interface {iface.name} bandwidth "
                              f"egress mbw {iface.bandwidth_egress}'")
                    break
        zones_with_bw = {i.zone for i in st.interfaces.values()
                         if i.zone is not None and i.bandwidth_egress is not None}
        for ps in shaped:
            pol = ps.policy
            if pol.traffic.gbw and ps.gbw_tok is not None and \
                    not {pol.from_zone, pol.to_zone} & zones_with_bw:  # type: ignore[union-attr]
                tok = ps.gbw_tok
                self.diag(ps.line, tok.column, tok.raw,
                          f"no interface of zone {pol.to_zone} or {pol.from_zone} has an egress "
                          "bandwidth: the guarantee is not enforced",
                          "set the link's bandwidth, e.g. 'set interface ethernet1 bandwidth "
                          "egress mbw 2000'", "warning")
        for iface in st.interfaces.values():
            if iface.bandwidth_ingress is not None and iface.bandwidth_in_at is not None:
                line, tok = iface.bandwidth_in_at
                self.diag(line, tok.column, tok.raw,
                          f"ingress policing on {iface.name} is not enforced",
                          "the gateway shapes what it sends (egress); police what arrives "
                          "upstream", "warning")

    @staticmethod
    def _free_address(ip: IPv4Address, iface: _IfaceState, iface_ips, hosts, mips,
                      pools) -> IPv4Address | None:
        subnet = iface.ip.network if iface.ip is not None and ip in iface.ip.network else \
            IPv4Network(f"{ip}/24", strict=False)
        candidate = ip
        for _ in range(256):
            candidate = candidate + 1
            if candidate not in subnet or candidate == subnet.broadcast_address:
                return None
            if candidate in iface_ips or candidate in hosts or candidate in mips:
                continue
            if any(p.first <= candidate <= p.last for _, p in pools):
                continue
            return candidate
        return None

    # == the frozen result ===================================================
    def build(self) -> Config:
        st = self.state
        names = list(PREDEFINED_ZONES) + list(st.custom_zones)
        zones = {}
        for name in names:
            floods = tuple(UdpFloodScreen(ip, n) for ip, n in st.udp_flood.get(name, {}).items())
            zones[name] = Zone(name, st.zone_block.get(name, DEFAULT_BLOCKING.get(name, False)),
                               floods, st.limit_session.get(name))
        interfaces = {}
        for s in st.interfaces.values():
            interfaces[s.name] = Interface(
                s.name, s.zone, s.ip, s.unnumbered, s.mode,  # type: ignore[arg-type]
                tuple(m for m, _, _ in s.mips.values()),
                tuple(d for d, _, _ in s.dips.values()),
                s.dip_interface_incoming, s.loopback_group, tuple(s.manage),
                s.bandwidth_egress, s.bandwidth_ingress)
        addresses = {key: a for key, (a, _, _) in st.addresses.items()}
        return Config(
            zones=MappingProxyType(zones), interfaces=MappingProxyType(interfaces),
            addresses=MappingProxyType(addresses),
            policies=tuple(p.policy for p in st.policies.values()),
            routes=tuple(r for r, _, _ in st.routes), sip=st.sip, dip_sticky=st.dip_sticky,
            unenforced=tuple(st.unenforced), mgcp=st.mgcp, nsrp=st.nsrp, flow=st.flow,
            traffic_shaping=st.traffic_shaping)


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
