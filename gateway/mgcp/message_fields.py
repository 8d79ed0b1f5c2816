"""The MGCP grammar pieces (RFC 3435 appendix A): an endpoint name
(``local@domain``, wildcards and ranges, an ``[IP]`` domain), an IP address,
the NotifiedEntity (3.2.2), a parameter's name and the values the ALG relies
on, and the items of a comma-separated list."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from gateway.mgcp.message_grammar import (
    _ACK_RANGE, _DIGITS, _DNS_NAME, _EXT_PARAM, _HEX_ID, _LOCAL_PART, _PKG_RM, _RANGE, MAX_ENDPOINT_TERMS,
    PARAMETER_CODES, RESTART_METHODS, _bad, _span,
)
from gateway.mgcp.message_types import Endpoint, NotifiedEntity, _id_list


def _endpoint(data: bytes, start: int, end: int) -> Endpoint:
    """``LocalEndpointName "@" DomainName`` at ``data[start:end]``."""
    text = data[start:end].decode("latin-1")
    at = text.rfind("@")
    if at <= 0 or at == len(text) - 1:
        raise _bad(f"endpoint name {text!r} is not local@domain", start)
    local, domain = text[:at], text[at + 1:]
    parts = local.split("/")
    if len(parts) > MAX_ENDPOINT_TERMS:
        raise _bad(f"endpoint name of {len(parts)} terms (at most {MAX_ENDPOINT_TERMS})", start)
    any_wc = all_wc = has_range = False
    for part in parts:
        if part == "$":
            any_wc = True
        elif part == "*":
            all_wc = True
        elif not _LOCAL_PART.match(part):
            # RFC 3435 appendix A: a name part is "$", "*", or a string without $ * / @
            raise _bad(f"bad local endpoint name {local!r}", start)
        elif "[" in part or "]" in part:
            rest = _RANGE.sub("", part)
            if "[" in rest or "]" in rest:
                raise _bad(f"unbalanced range in endpoint name {local!r}", start)
            has_range = True
    ds = start + at + 1
    ip_span = None
    if domain.startswith("["):
        if not domain.endswith("]"):
            raise _bad(f"unterminated [IP] domain {domain!r}", ds)
        _ip(domain[1:-1], ds + 1)
        ip_span = _span(data, ds + 1, end - 1)
    elif not (_DNS_NAME.match(domain) or (domain.startswith("#") and domain[1:].isdigit() and domain.isascii())):
        raise _bad(f"bad endpoint domain {domain!r}", ds)
    return Endpoint(local, domain, _span(data, start, end), _span(data, ds, end), ip_span,
                    any_wc, all_wc, has_range)


def _ip(text: str, offset: int) -> None:
    try:
        if ":" in text:
            IPv6Address(text)
        else:
            IPv4Address(text)
    except ValueError:
        raise _bad(f"bad IP address {text!r}", offset) from None


def _notified_entity(data: bytes, start: int, end: int) -> NotifiedEntity:
    """``[LocalName "@"] DomainName [":" port]`` (RFC 3435 3.2.2, NotifiedEntity)."""
    text = data[start:end].decode("latin-1")
    at = text.rfind("@")
    local = None
    hs = start
    if at >= 0:
        local = text[:at]
        if not local or not _LOCAL_PART.match(local.replace("/", "!")):
            raise _bad(f"bad notified entity local name {local!r}", start)
        hs = start + at + 1
    rest = text[hs - start:]
    port = port_span = None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise _bad(f"unterminated [IP] in notified entity {text!r}", hs)
        host = rest[1:close]
        _ip(host, hs + 1)
        host_span = _span(data, hs + 1, hs + 1 + len(host))
        tail = rest[close + 1:]
        is_ip = True
    else:
        colon = rest.find(":")
        host = rest if colon < 0 else rest[:colon]
        if not _DNS_NAME.match(host):
            raise _bad(f"bad notified entity host {host!r}", hs)
        host_span = _span(data, hs, hs + len(host))
        tail = "" if colon < 0 else rest[colon:]
        is_ip = False
    if tail:
        digits = tail[1:]
        if not tail.startswith(":") or not digits.isdigit() or not digits.isascii() or len(digits) > 5 \
                or int(digits) > 65535:
            raise _bad(f"bad notified entity port in {text!r}", hs)
        port = int(digits)
        port_span = _span(data, end - len(digits), end)
    return NotifiedEntity(local, host, host_span, is_ip, port, port_span)


def _check_param(name: str, value: str, vs: int, is_command: bool) -> None:
    """Values whose grammar the ALG relies on (RFC 3435 appendix A, manual
    chapter 3: connection and call ids are hex strings of at most 32 characters)."""
    v = value.rstrip(" \t")
    if name in ("C", "I2", "X"):
        if not _HEX_ID.match(v):
            raise _bad(f"{name}: {value!r} is not 1 to 32 hex digits", vs)
    elif name == "I":
        # RFC 3435 2.3.10: an AuditEndpoint response lists the endpoint's
        # connections, comma-separated, possibly none; a command names one.
        ids = _id_list(v)
        if is_command and len(ids) != 1:
            raise _bad(f"I: {value!r} must name exactly one connection", vs)
        for i in ids:
            if not _HEX_ID.match(i):
                raise _bad(f"I: {i!r} is not 1 to 32 hex digits", vs)
    elif name == "RM":
        if v.lower() not in RESTART_METHODS and not _PKG_RM.match(v):
            raise _bad(f"unknown restart method {value!r}", vs)
    elif name in ("RD", "MD"):
        if not _DIGITS.match(v):
            raise _bad(f"{name}: {value!r} is not a number", vs)
    elif name == "K":
        for item in v.split(","):
            if not _ACK_RANGE.match(item):
                raise _bad(f"K: {item.strip()!r} is not a transaction id or range", vs)


def _param_name(raw: bytes, offset: int) -> str:
    name = raw.decode("latin-1").upper()
    if name in PARAMETER_CODES or _EXT_PARAM.match(name):
        return name
    raise _bad(f"unknown parameter {name!r}", offset)


def _list_items(data: bytes, start: int, end: int):
    """Comma-separated items of ``data[start:end]``, surrounding blanks trimmed."""
    pos = start
    while pos <= end:
        comma = data.find(b",", pos, end)
        stop = end if comma < 0 else comma
        a, b = pos, stop
        while a < b and data[a] in b" \t":
            a += 1
        while b > a and data[b - 1] in b" \t":
            b -= 1
        if a == b:
            raise _bad("empty item in a list", pos)
        yield a, b
        if comma < 0:
            break
        pos = comma + 1
