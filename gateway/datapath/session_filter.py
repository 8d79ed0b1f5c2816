"""Which sessions an operator means: ``get session`` / ``clear session``
filters in ScreenOS words (``src-ip A``, ``dst-ip A``, ``src-port N``,
``dst-port N``, ``protocol udp|tcp|icmp|N``, ``id N``), and the row shown for
a session.

A filter names the flow as its initiator sent it or as it left the gateway:
``src-ip``/``src-port`` match the forward packet's source before or after
NAT, ``dst-ip``/``dst-port`` its destination before or after NAT (a session
to a MIP is found by the MIP and by the host behind it). All words given
must match; none matches every session.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from gateway.datapath.sessions import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Session

_PROTOS = {"udp": PROTO_UDP, "tcp": PROTO_TCP, "icmp": PROTO_ICMP}
_NAMES = {v: k for k, v in _PROTOS.items()}
WORDS = ("src-ip", "dst-ip", "src-port", "dst-port", "protocol", "id")


class FilterError(ValueError):
    """A filter the operator typed wrong: the message names the word and what was expected."""


@dataclass(frozen=True, slots=True)
class SessionFilter:
    src_ip: int | None = None
    dst_ip: int | None = None
    src_port: int | None = None
    dst_port: int | None = None
    proto: int | None = None
    id: int | None = None

    def matches(self, s: Session) -> bool:
        if self.id is not None and s.id != self.id:
            return False
        if self.proto is not None and s.proto != self.proto:
            return False
        _p, src, sport, dst, dport = s.fwd_key
        tsrc, tsport, tdst, tdport = s.translated
        if self.src_ip is not None and self.src_ip not in (src, tsrc):
            return False
        if self.src_port is not None and self.src_port not in (sport, tsport):
            return False
        if self.dst_ip is not None and self.dst_ip not in (dst, tdst):
            return False
        if self.dst_port is not None and self.dst_port not in (dport, tdport):
            return False
        return True

    def is_empty(self) -> bool:
        return self == SessionFilter()


def parse_filter(words: list[str] | tuple[str, ...]) -> SessionFilter:
    """``["src-ip", "1.1.1.9", "protocol", "udp"]`` -> a filter; a
    :class:`FilterError` naming the word for anything else."""
    words = [str(w) for w in words]
    out: dict[str, int] = {}
    i = 0
    while i < len(words):
        word = words[i].lower()
        if word not in WORDS:
            raise FilterError(f"unknown session filter {words[i]!r}; expected one of "
                              f"{', '.join(WORDS)}")
        if i + 1 >= len(words):
            raise FilterError(f"{word} needs a value")
        value = words[i + 1]
        field = word.replace("-", "_")
        if field in out or (field == "protocol" and "proto" in out):
            raise FilterError(f"{word} given twice")
        if word in ("src-ip", "dst-ip"):
            try:
                out[field] = int(IPv4Address(value))
            except ValueError:
                raise FilterError(f"{word} {value!r}: not an IPv4 address (e.g. 1.1.1.9)") from None
        elif word == "protocol":
            p = _PROTOS.get(value.lower())
            if p is None:
                if not value.isdigit() or not 0 <= int(value) <= 255:
                    raise FilterError(f"protocol {value!r}: expected udp, tcp, icmp or a number 0-255")
                p = int(value)
            out["proto"] = p
        else:
            hi = 65535 if word.endswith("port") else 2**63
            if not value.isdigit() or not (0 <= int(value) <= hi):
                raise FilterError(f"{word} {value!r}: expected a number from 0 to {hi}")
            out[field] = int(value)
        i += 2
    return SessionFilter(**out)


def session_row(s: Session, now: float) -> dict:
    """What ``get session`` shows of one session."""
    p, src, sport, dst, dport = s.fwd_key
    tsrc, tsport, tdst, tdport = s.translated
    row = {"id": s.id, "protocol": _NAMES.get(p, str(p)),
           "src": f"{IPv4Address(src)}:{sport}", "dst": f"{IPv4Address(dst)}:{dport}",
           "nat_src": f"{IPv4Address(tsrc)}:{tsport}", "nat_dst": f"{IPv4Address(tdst)}:{tdport}",
           "kind": s.kind, "alg": s.alg, "from_zone": s.from_zone, "to_zone": s.to_zone,
           "policy": s.policy_id, "ingress": s.ingress, "egress": s.egress,
           "age": round(now - s.created, 1), "idle_left": round(s.deadline - now, 1),
           "packets": [s.fwd_packets, s.rev_packets], "bytes": [s.fwd_bytes, s.rev_bytes]}
    if s.offloaded:
        # Its packets are forwarded by the kernel; the counts include the
        # kernel's counters as last read (gateway/datapath/offload.py).
        row["path"] = "kernel"
    if s.call is not None:
        row["call"] = s.call
    if s.group is not None:
        row["group"] = s.group
    return row


def media_by_pinhole(sessions) -> dict[str, dict]:
    """Per pinhole id, the media sessions it opened (``show pinholes``):
    packets and bytes each way as counted (the kernel's counters included
    when the session is offloaded), and whether the kernel forwards them."""
    out: dict[str, dict] = {}
    for s in sessions:
        if s.kind != "media" or s.pinhole is None:
            continue
        row = out.setdefault(s.pinhole, {"sessions": 0, "packets": [0, 0], "bytes": [0, 0],
                                         "path": "userspace"})
        row["sessions"] += 1
        row["packets"][0] += s.fwd_packets
        row["packets"][1] += s.rev_packets
        row["bytes"][0] += s.fwd_bytes
        row["bytes"][1] += s.rev_bytes
        if s.offloaded:
            row["path"] = "kernel"
    return out
