"""Decoding H.225.0 / H.245 (ASN.1 aligned PER, X.691) and finding where each
IPv4 transport address sits in the original octets.

pycrate decodes the structure, but re-encoding what it decoded is not
byte-identical on real traffic (extensions it does not know are lost), so the
gateway never re-encodes: like the Linux kernel's nf_conntrack_h323 it patches
the address octets in place. In aligned PER an H.225.0 ``TransportAddress``
``ipAddress {ip OCTET STRING (SIZE(4)), port INTEGER (0..65535)}`` and an H.245
``UnicastAddress iPAddress {network, tsapIdentifier}`` are six octet-aligned
octets (X.691 16.7: a fixed-size string over two octets is aligned; 12.2.5: a
two-octet range is aligned), so the address is found as bytes:

* fast path: search the message for each decoded address's six octets; when
  every value occurs exactly as often as the decoded tree holds it, the
  positions are those occurrences in encoding order;
* otherwise (the same six octets also sit inside some other field): decode
  again keeping the bit-level structure (``from_aper_ws``, ~5x slower) and
  sum the bit lengths up to each address.

Either way the octets at each position are the decoded value (checked).

pycrate keeps the last decoded value inside its module-level objects: the
functions here are not re-entrant across threads; a caller on several threads
serialises H.323 parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from gateway.errors import RemoteProtocolError
from gateway.h323 import per_guard
from gateway.span import Span

from pycrate_asn1dir import H225 as _H225
from pycrate_asn1dir import H245 as _H245
from pycrate_core.elt import Envelope as _Envelope

RAS_MESSAGE = _H225.H323_MESSAGES.RasMessage
USER_INFORMATION = _H225.H323_MESSAGES.H323_UserInformation
H245_MESSAGE = _H245.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage
OPEN_LOGICAL_CHANNEL = _H245.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel

# The decoder's work and memory per message bounded (per_guard explains the
# two defects it closes) before anything is decoded.
per_guard.install((_H225.H323_MESSAGES, _H245.MULTIMEDIA_SYSTEM_CONTROL))

# The largest PDU decoded (a RasMessage, an H323-UserInformation, an H.245
# MultimediaSystemControlMessage). pycrate's cost goes by the decoded item
# (~7 us an item, ~2 octets for a one-digit alias): a 24 KB RRQ of aliases
# took 81 ms, and a TPKT message may announce 64 KB. Real messages are far
# smaller (the corpus: 369 octets at most; a Setup with fastStart or an
# H.245 TerminalCapabilitySet, one or two KB), so a larger one is refused
# before any decoding: a bound on the work one packet can cause.
MAX_PDU_OCTETS = 4096
# The structure walk (:func:`structure_offsets`) costs some five times a
# decoding (2,000 aliases in 4 KB: 59 ms); it is needed only when an
# address's octets also occur elsewhere in the message, so it is done for
# messages up to this size and a larger such message is refused.
MAX_WALK_OCTETS = 1024

# Components that only wrap an address: the field that names it is further up.
_WRAPPERS = frozenset({"ipAddress", "iPAddress", "unicastAddress", "multicastAddress", "ip", "network"})
# SEQUENCE OF OCTET STRING whose items are whole H.245 encodings inside an
# H.225.0 UUIE (H.225.0 7.3.1: fastStart holds OpenLogicalChannel; h245Control
# tunnels MultimediaSystemControlMessage, H.245 tunnelling).
_NESTED = {"fastStart": OPEN_LOGICAL_CHANNEL, "h245Control": H245_MESSAGE}


@dataclass(frozen=True, slots=True)
class Address:
    """One IPv4 transport address in a message.

    ``field``: the ASN.1 component that names it (``h245Address``,
    ``mediaChannel``, ``rasAddress``...); ``path``: the components from the
    message's root (list items as their index; nested H.245 inside fastStart /
    h245Control continues the path). ``span``: ``data[start:start + 6]``, four
    octets of address then two of port, big-endian."""

    field: str
    path: tuple
    ip: IPv4Address
    port: int
    span: Span

    @property
    def octets(self) -> bytes:
        return self.ip.packed + self.port.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class Nested:
    """An H.245 encoding carried in an OCTET STRING of an H.225.0 UUIE."""

    path: tuple
    value: Any


def decode(obj, data: bytes, what: str) -> Any:
    """Decode ``data`` as the aligned-PER ``obj``; anything pycrate does not
    accept (its errors are of several classes, CharpyErr included) is the
    peer's, so it becomes RemoteProtocolError; so does a PDU over
    MAX_PDU_OCTETS, before any decoding."""
    if len(data) > MAX_PDU_OCTETS:
        raise RemoteProtocolError(f"{what}: {len(data)} octets, over the {MAX_PDU_OCTETS} decoded "
                                  f"(a bound on the decoder's work per message)")
    try:
        obj.from_aper(data)
        value = obj.get_val()
    except Exception as e:      # noqa: BLE001 -- any decoder failure is bad wire input
        per_guard.restore_parents()
        raise RemoteProtocolError(f"{what}: undecodable PER ({type(e).__name__}: {e})") from None
    _check_oids(value, what)
    return value


def _check_oids(value: Any, what: str) -> None:
    """An OBJECT IDENTIFIER has at least two arcs (X.690 8.19.4: its first
    subidentifier encodes two); pycrate accepts zero content octets as an
    empty OID, which tshark rightly calls malformed."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is dict:
            stack.extend(v.values())
        elif t is list:
            stack.extend(v)
        elif t is tuple:
            if not v:
                raise RemoteProtocolError(f"{what}: empty OBJECT IDENTIFIER")
            if type(v[0]) is str:
                stack.append(v[1])


def _field(path: tuple) -> str:
    for name in reversed(path):
        if type(name) is str and name not in _WRAPPERS:
            return name
    return ""


def collect(value: Any, path: tuple = ()) -> tuple[list[tuple[tuple, bytes]], list[Nested]]:
    """The (path, six octets) of every IPv4 transport address in a decoded
    value, in encoding order, and the nested H.245 values it carries."""
    found: list[tuple[tuple, bytes]] = []
    nested: list[Nested] = []
    _collect(value, path, found, nested)
    return found, nested


def _collect(v: Any, path: tuple, found: list, nested: list) -> None:
    t = type(v)
    if t is dict:
        ip = v.get("ip")
        if ip is None:
            ip = v.get("network")
            port = v.get("tsapIdentifier")
        else:
            port = v.get("port")
        if type(ip) is bytes and len(ip) == 4 and type(port) is int:
            found.append((path, ip + port.to_bytes(2, "big")))
            return
        for k, sub in v.items():
            obj = _NESTED.get(k)
            if obj is not None and type(sub) is list:
                for i, item in enumerate(sub):
                    p = path + (k, i)
                    inner = decode(obj, item, k)
                    nested.append(Nested(p, inner))
                    _collect(inner, p, found, nested)
            else:
                _collect(sub, path + (k,), found, nested)
    elif t is tuple and len(v) == 2 and type(v[0]) is str:
        _collect(v[1], path + (v[0],), found, nested)
    elif t is list:
        for i, item in enumerate(v):
            _collect(item, path + (i,), found, nested)


def locate(obj, data: bytes, base: int, value: Any, what: str) -> tuple[tuple[Address, ...], tuple[Nested, ...]]:
    """Positions (offset ``base`` added) of every IPv4 transport address of
    ``value``, the decoding of ``data`` as ``obj``."""
    found, nested = collect(value)
    if not found:
        return (), tuple(nested)
    offsets = _search(data, found)
    if offsets is None:
        offsets = structure_offsets(obj, data, what)
        if len(offsets) != len(found):
            raise RemoteProtocolError(f"{what}: transport addresses not where the structure says")
    out = []
    for (path, octets), off in zip(found, offsets):
        if data[off:off + 6] != octets:
            raise RemoteProtocolError(f"{what}: address octets do not match the decoded value", offset=base + off)
        ip = IPv4Address(octets[:4])
        port = int.from_bytes(octets[4:], "big")
        out.append(Address(_field(path), path, ip, port, Span(base + off, base + off + 6, f"{ip}:{port}")))
    return tuple(out), tuple(nested)


def _search(data: bytes, found: list[tuple[tuple, bytes]]) -> list[int] | None:
    wanted: dict[bytes, int] = {}
    for _, octets in found:
        wanted[octets] = wanted.get(octets, 0) + 1
    where: dict[bytes, list[int]] = {}
    for octets, count in wanted.items():
        hits = []
        i = data.find(octets)
        while i >= 0:
            hits.append(i)
            i = data.find(octets, i + 1)
        if len(hits) != count:
            return None
        where[octets] = hits
    # Same octets in several fields: they take the occurrences in order.
    # Different octets must also come out in encoding order, or a hit was
    # not the address it was taken for.
    taken = {k: 0 for k in where}
    offsets = []
    for _, octets in found:
        offsets.append(where[octets][taken[octets]])
        taken[octets] += 1
    if offsets != sorted(offsets):
        return None
    return offsets


def structure_offsets(obj, data: bytes, what: str) -> list[int]:
    """Byte offsets of every address in ``data``, from the bit-level
    structure of a second decoding (nested H.245 decoded the same way);
    RemoteProtocolError for a message over MAX_WALK_OCTETS."""
    if len(data) > MAX_WALK_OCTETS:
        raise RemoteProtocolError(f"{what}: addresses not placed by their octets alone in {len(data)} "
                                  f"octets, over the {MAX_WALK_OCTETS} walked (a bound on the decoder's work)")
    try:
        obj.from_aper_ws(data)
        struct = obj._struct
    except Exception as e:      # noqa: BLE001 -- any decoder failure is bad wire input
        per_guard.restore_parents()
        raise RemoteProtocolError(f"{what}: undecodable PER ({type(e).__name__}: {e})") from None
    out: list[int] = []
    nested: list[tuple[str, int, int]] = []
    _walk(struct, 0, (), out, nested)
    for name, bit, bits in nested:
        if bit % 8 or bits % 8:
            raise RemoteProtocolError(f"{what}: {name} item not octet-aligned")
        start = bit // 8
        inner = data[start:start + bits // 8]
        out.extend(start + o for o in structure_offsets(_NESTED[name], inner, name))
    out.sort()
    for o in out:
        if o < 0:
            raise RemoteProtocolError(f"{what}: address not octet-aligned")
    return out


def _walk(elt, bit: int, names: tuple, out: list[int], nested: list) -> int:
    if isinstance(elt, _Envelope):
        name = elt._name
        inner = names + (name,)
        for c in elt._content:
            bit = _walk(c, bit, inner, out, nested)
        return bit
    bl = elt.get_bl()
    if elt._name == "V" and names:
        last = names[-1]
        if last in ("ip", "network") and bl == 32:
            out.append(bit // 8 if bit % 8 == 0 else -1)
        elif len(names) >= 2 and names[-2] in _NESTED:
            nested.append((names[-2], bit, bl))
    return bit + bl
