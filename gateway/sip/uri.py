"""Where the host and port are inside a SIP URI (RFC 3261 19.1), by offset.

The ALG rewrites only the host and port of a URI, so this module does not
decode the rest: user parts with escapes, parameters and headers stay as they
are on the wire."""

from __future__ import annotations

import re
from typing import NamedTuple

from gateway.errors import RemoteProtocolError

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9\-.]+")
_IPV6REF_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_PORT_RE = re.compile(r"[0-9]+")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(_OCTET + r"(?:\." + _OCTET + r"){3}\Z")


def is_ipv4(text: str) -> bool:
    """A dotted-quad IPv4 literal (hostnames are not addresses)."""
    return _IPV4_RE.match(text) is not None


class UriParts(NamedTuple):
    """Offsets relative to the URI text; ``host_start == -1`` when the URI
    has no host we understand (another scheme, e.g. ``tel:``)."""

    scheme: str
    host_start: int
    host_end: int
    port_start: int
    port_end: int
    has_headers: bool


def parse_uri(uri: str, what: str) -> UriParts:
    """Locate host and port of a ``sip:``/``sips:`` URI.

    A URI without a scheme (``alice@10.150.20.3``, as in the manual's header
    examples) is read as a SIP URI. Other schemes are accepted untouched
    (RFC 4475 3.3.2-3.3.4: unknown schemes must not break the parser)."""
    m = _SCHEME_RE.match(uri)
    if m is not None:
        scheme = m.group(1).lower()
        if scheme not in ("sip", "sips"):
            return UriParts(scheme, -1, -1, -1, -1, False)
        start = m.end()
    else:
        scheme = ""
        start = 0
    # The user part cannot hold an unescaped '@' but may hold ';', '?', ':'
    # (RFC 4475 3.1.1.2), so the host starts after the last '@'.
    at = uri.rfind("@", start)
    hs = at + 1 if at >= 0 else start
    if uri.startswith("[", hs):
        hm = _IPV6REF_RE.match(uri, hs)
    else:
        hm = _HOSTNAME_RE.match(uri, hs)
    if hm is None:
        raise RemoteProtocolError(f"SIP URI without a host in {what}")
    he = hm.end()
    ps = pe = -1
    pos = he
    if uri.startswith(":", he):
        pm = _PORT_RE.match(uri, he + 1)
        if pm is None or pm.end() - pm.start() > 5 or int(pm.group()) > 65535:
            raise RemoteProtocolError(f"bad port in SIP URI in {what}")
        ps, pe = pm.span()
        pos = pe
    if pos < len(uri) and uri[pos] not in ";?":
        raise RemoteProtocolError(f"malformed host in SIP URI in {what}")
    return UriParts(scheme, hs, he, ps, pe, "?" in uri[pos:])
