"""The parsed SIP message and its parts, by position in the original bytes
(RFC 3261 section 7; manual chapter 2, "SIP Headers", Table 2): header lines,
IPv4 address references, Contact values, :class:`SipMessage`, and their
hot-path constructors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.errors import RemoteProtocolError
from gateway.construct import frozen_constructor
from gateway.sdp.parse import SessionDescription
from gateway.sip.headers import NOT_LISTS, canonical_name, split_list, unfold
from gateway.sip.message_lines import _header_lines
from gateway.span import Span


class Header(NamedTuple):
    """One header field line (folds included), by position.

    ``name`` is the canonical long name in lower case; ``raw_name`` and
    ``value`` are spans of the original bytes (``value`` trimmed of the LWS
    around it, its internal folds kept)."""

    name: str
    name_text: str
    name_start: int
    value_start: int
    value_end: int
    value_text: str

    @property
    def raw_name(self) -> Span:
        return Span(self.name_start, self.name_start + len(self.name_text), self.name_text)

    @property
    def value(self) -> Span:
        return Span(self.value_start, self.value_end, self.value_text)

    @property
    def text(self) -> str:
        """The value with folds read as single spaces."""
        return unfold(self.value_text)


@dataclass(frozen=True, slots=True)
class AddressRef:
    """An IPv4 address in the start line or a header, with the port after it.

    ``field`` is one of "request-uri", "via", "via-received", "via-maddr",
    "via-rport", "from", "to", "call-id", "contact", "route", "record-route".
    For "via-rport" ``port`` is the rport value and ``host`` the address it
    belongs to (the received parameter if present, else the sent-by host)."""

    field: str
    host: Span
    port: Span | None
    header_index: int | None


@dataclass(frozen=True, slots=True)
class Contact:
    """One Contact value. ``host``/``port`` are None for ``*`` and for URIs
    of other schemes than sip/sips."""

    uri: Span
    host: Span | None
    port: Span | None
    expires: int | None
    star: bool = False


@dataclass(frozen=True, slots=True)
class SipMessage:
    raw: bytes
    is_request: bool
    method: str
    request_uri: Span | None
    status_code: int | None
    reason: str | None
    call_id: str
    from_tag: str | None
    to_tag: str | None
    cseq: tuple[int, str]
    via_branch: str | None
    expires: int | None
    contacts: tuple[Contact, ...]
    session_expires: int | None
    content_type: str | None
    content_length: int | None
    body_offset: int
    body: bytes
    sdp: SessionDescription | None
    body_kind: str
    addresses: tuple[AddressRef, ...]
    # Where the header lines are (start, end) in ``raw``, the header lines
    # once read (a one-element list: filled on first use of ``lines``), and
    # the Content-Length value's (start, end) or None.
    _section: tuple[int, int] = field(repr=False, compare=False)
    _lines: list = field(repr=False, compare=False)
    _cl_value: tuple[int, int] | None = field(repr=False, compare=False)

    @property
    def lines(self) -> tuple[tuple[str, int, int, int, int], ...]:
        """(canonical name, name start, name end, value start, value end) per
        header line; ``headers`` gives them as Header objects. Read on first
        use: parse_message has checked every line already."""
        cached = self._lines[0]
        if cached is None:
            cached = _header_lines(self.raw.decode("latin-1"), *self._section)
            if cached is None:  # pragma: no cover - parse_message checked the same section
                raise RemoteProtocolError("malformed header line")
            self._lines[0] = cached
        return cached


    @property
    def headers(self) -> tuple[Header, ...]:
        raw = self.raw
        return tuple(Header(name, raw[ns:ne].decode("latin-1"), ns, vs, ve, raw[vs:ve].decode("latin-1"))
                     for name, ns, ne, vs, ve in self.lines)

    def _texts(self, want: str):
        raw = self.raw
        for name, _ns, _ne, vs, ve in self.lines:
            if name == want:
                yield unfold(raw[vs:ve].decode("latin-1"))

    def get(self, name: str) -> str | None:
        """First value of header ``name`` (any case, compact forms mapped),
        folds read as spaces; None when absent."""
        for text in self._texts(canonical_name(name)):
            return text
        return None

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of ``name``: all its header lines, and each
        comma-separated element of list-valued ones (commas in quoted strings
        and <...> do not split)."""
        want = canonical_name(name)
        out: list[str] = []
        for text in self._texts(want):
            if want in NOT_LISTS:
                out.append(text)
            else:
                out.extend(text[s:e] for s, e in split_list(text) if e > s)
        return tuple(out)

    def header_spans(self, name: str) -> tuple[Span, ...]:
        """Value spans of every header line named ``name``."""
        want = canonical_name(name)
        raw = self.raw
        return tuple(Span(vs, ve, raw[vs:ve].decode("latin-1"))
                     for n, _ns, _ne, vs, ve in self.lines if n == want)


# Hot-path constructors (same classes, slots set directly; see
# gateway.construct).
_mk_span = frozen_constructor(Span)
_mk_ref = frozen_constructor(AddressRef)
_mk_contact = frozen_constructor(Contact)
_mk_msg = frozen_constructor(SipMessage)
