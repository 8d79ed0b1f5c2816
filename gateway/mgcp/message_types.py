"""A parsed MGCP message and its parts (RFC 3435; manual chapter 3): parameters,
the endpoint name, the NotifiedEntity, the address spans NAT may rewrite, and
what a return code's range means (RFC 3435 section 2.4 and RFC 3661)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sdp import SessionDescription
from gateway.span import Span


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter line: canonical (upper-case) name, raw value, span of the value."""

    name: str
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint name ``local@domain`` (RFC 3435 section 2.1.1, 3.2.1.3).

    ``any_wildcard`` is ``$`` (any one endpoint), ``all_wildcard`` is ``*`` (all
    endpoints) and ``has_range`` a ``[1-8]`` range in the local name.
    ``domain_ip_span`` is the IP inside ``[...]`` when the domain is one: NAT
    rewrites it."""

    local: str
    domain: str
    span: Span
    domain_span: Span
    domain_ip_span: Span | None
    any_wildcard: bool
    all_wildcard: bool
    has_range: bool

    @property
    def is_wildcard(self) -> bool:
        return self.any_wildcard or self.all_wildcard or self.has_range


@dataclass(frozen=True, slots=True)
class NotifiedEntity:
    """``[local@]host[:port]`` of the N: parameter (RFC 3435 section 3.2.2).
    ``host_span`` excludes the brackets of an ``[IP]`` host."""

    local: str | None
    host: str
    host_span: Span
    host_is_ip: bool
    port: int | None
    port_span: Span | None


@dataclass(frozen=True, slots=True)
class AddressSpan:
    """An address or port NAT may rewrite: what it is, and where."""

    kind: str
    span: Span


@dataclass(frozen=True, slots=True)
class MgcpMessage:
    """A command (``kind == "command"``, with verb, endpoint and version) or a
    response (``kind == "response"``, with code and commentary). ``start`` and
    ``end`` are the message's bytes in the datagram (up to a piggy-back
    separator); offsets of every span are absolute in the datagram."""

    kind: str
    transaction_id: int
    params: tuple[Param, ...]
    start: int
    end: int
    verb: str | None = None
    endpoint: Endpoint | None = None
    version: str | None = None
    profile: str | None = None
    code: int | None = None
    commentary: str | None = None
    package: str | None = None
    notified_entity: NotifiedEntity | None = None
    sdp: tuple[SessionDescription, ...] = ()
    sdp_span: Span | None = None
    address_spans: tuple[AddressSpan, ...] = ()

    def get(self, name: str) -> str | None:
        """Value of the first parameter ``name`` (case-insensitive), or None."""
        p = self.param(name)
        return None if p is None else p.value

    def param(self, name: str) -> Param | None:
        name = name.upper()
        for p in self.params:
            if p.name == name:
                return p
        return None

    def get_all(self, name: str) -> tuple[Param, ...]:
        name = name.upper()
        return tuple(p for p in self.params if p.name == name)

    @property
    def is_command(self) -> bool:
        return self.kind == "command"

    @property
    def is_response(self) -> bool:
        return self.kind == "response"

    @property
    def call_id(self) -> str | None:
        v = self.get("C")
        return None if v is None else v.strip()

    @property
    def connection_ids(self) -> tuple[str, ...]:
        v = self.get("I")
        return () if v is None else _id_list(v)

    @property
    def connection_id(self) -> str | None:
        ids = self.connection_ids
        return ids[0] if ids else None

    @property
    def second_connection_id(self) -> str | None:
        v = self.get("I2")
        return None if v is None else v.strip()

    @property
    def request_id(self) -> str | None:
        v = self.get("X")
        return None if v is None else v.strip()

    @property
    def restart_method(self) -> str | None:
        v = self.get("RM")
        return None if v is None else v.strip().lower()

    @property
    def response_class(self) -> str | None:
        return None if self.code is None else response_class(self.code)

    @property
    def is_final(self) -> bool:
        """A final response (RFC 3435 section 3.4: anything but 1xx and 000-099)."""
        return self.code is not None and self.code >= 200


def response_class(code: int) -> str:
    """RFC 3435 section 2.4 and RFC 3661: what a return code's range means."""
    if code < 100:
        return "ack"
    if code < 200:
        return "provisional"
    if code < 300:
        return "success"
    if 400 <= code < 500:
        return "transient"
    if 500 <= code < 600:
        return "permanent"
    if 800 <= code < 900:
        return "package"
    return "unassigned"


def _id_list(value: str) -> tuple[str, ...]:
    v = value.strip()
    return tuple(x.strip() for x in v.split(",")) if v else ()
