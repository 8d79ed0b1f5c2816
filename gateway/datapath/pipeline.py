"""One packet's way through the gateway, sans-I/O (DESIGN.md, "A packet's way
through"): ``Datapath.process(buf, ingress, now) -> Forward | Drop | Alg``.

Order:

1. Parse the IPv4 header (:func:`gateway.packet.parse`); broken input is a
   Drop with the parser's reason.
2. UDP flood screen (per zone of arrival and destination). It runs before the
   session lookup: a flood along an established flow is still a flood (the
   manual counts "UDP packets that can be received on IP address 1.1.1.5"). It
   costs nothing when no zone has the screen.
3. Session fast path: one dict probe on the 5-tuple as it arrived; the header
   rewrite comes from the table. Signalling sessions of an ALG go to the ALG.
4. IP fragments: a first fragment follows its session; later fragments carry
   no ports and follow the first one (same addresses rewritten). A fragment of
   no session is dropped: the gateway does not reassemble.
5. Pinhole fast path: media to an open pinhole (any source) becomes a media
   session.
6. Source-IP-based session limit (new flows only).
7. Policy and NAT (:meth:`gateway.policy.Engine.decide`); a deny is a Drop
   with the engine's reason.
8. ALG dispatch: permitted UDP to the SIP port 5060 goes to the SIP ALG, to
   2427/2727 to the MGCP ALG, as an :class:`Alg` outcome; the caller runs the
   ALG and calls :meth:`Datapath.finish_alg`. SIP to an incoming-DIP address
   (whose internal host only the ALG's registration table knows, ch. 2
   "Incoming SIP Call Support Using the SIP Registrar") goes to the ALG
   before policy, and policy is decided in ``finish_alg`` with the ALG's
   ``route_to``. UDP to 1718/1719 goes to the H.323 ALG (RAS, channel
   "ras"). TCP to 1720 (and TCP through an H.323 signalling pinhole: the
   H.245 connection, or Q.931 to an ACF's destCallSignalAddress) becomes an
   H.323 session whose segments are framed per direction
   (:mod:`gateway.datapath.tcp_stream`): a segment completing TPKT messages
   goes to the ALG as an :class:`Alg` with ``segment`` set. TCP to (or, for
   a connection first seen mid-stream, from) the SIP port 5060, and TCP
   through a SIP signalling pinhole, becomes a SIP session whose segments are
   framed by Content-Length (:class:`gateway.datapath.tcp_stream.SipStream`);
   a rewrite that changes a segment's length is compensated on every later
   segment of the connection, both directions, SACK included
   (:mod:`gateway.datapath.seqadj`).
9. Everything else permitted: a new session, forwarded.

Every Drop has a one-line reason and a category; counters by path, drop
category, drop code (:mod:`gateway.drops`, a closed set) and reason, screens,
sessions and pinholes are in :meth:`stats`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps
from ipaddress import IPv4Address
from typing import Iterable, NamedTuple

from gateway.config.model import Config
from gateway.datapath.pinholes import Hole, MediaActivity, PinholeLike, PinholeTable
from gateway.datapath.integrity import signalling_damage
from gateway.datapath.screens import Screens
from gateway.datapath.sessions import (
    PROTO_ICMP, PROTO_TCP, PROTO_UDP, Rewrite, Session, SessionTable,
)
from gateway.datapath import media_takeover, seqadj
from gateway.datapath import resegment
from gateway.drops import code_of, count, count_reason
from gateway.datapath.tcp_stream import FramedStream, SegmentWork, SipStream, StreamStats, TpktStream
from gateway.errors import RemoteProtocolError
from gateway.packet import ACK, Packet, parse, rewrite
from gateway.policy import Decision, Engine, Flow
from gateway.shaping import policy_mark
from gateway.sip.alg import SipContext

SIP_PORT = 5060
MGCP_PORTS = (2427, 2727)          # manual ch. 3: MGCP-UA UDP 2427, MGCP-CA UDP 2727
H323_TCP_PORT = 1720               # H.225.0 call signalling (Q.931)
H323_RAS_PORTS = (1718, 1719)      # H.225.0 RAS: gatekeeper discovery, RAS
H323_SERVICE = "h.323"             # the predefined service's name (gateway/config/model.py)
# Idle lifetimes of H.323 flows: RAS as a registration without timeToLive
# (gateway.h323.alg.H323Settings.registration_ttl), call signalling as the
# ALG's signalling inactivity timeout (a call may be silent for hours).
H323_RAS_TIMEOUT = 3600.0
H323_SIGNALLING_TIMEOUT = 43200.0
_SYN = 0x02
TCP_SIGNALLING_NOTE = "TCP signalling not inspected"
FRAGMENT_DROP = "fragment: reassembly not supported"
# Fragments of a session wait at most this long for their siblings.
FRAGMENT_LIFETIME = 30.0
MAX_FRAGMENT_FLOWS = 4096
MGCP_SESSION_TIMEOUT = 3600.0      # a call agent's commands to a gateway behind NAT come rarely

_PROTO_NAMES = {PROTO_UDP: "udp", PROTO_TCP: "tcp", PROTO_ICMP: "icmp"}
_ICMP_ECHO = (0, 8)
_FIN_RST = 0x01 | 0x04
# After FIN or RST a TCP session lives this long idle (instead of 30 minutes).
TCP_CLOSING_TIMEOUT = 10.0


# ------------------------------------------------------------------ outcomes
# Forward and Drop are made for every packet: NamedTuples (about 0.1 us to
# make; a frozen slotted dataclass costs over 1 us, see gateway/packet.py).

class Forward(NamedTuple):
    """Let the packet go as ``data`` (rewritten when NAT applies)."""

    data: bytes
    path: str                       # "fast-session" | "fast-pinhole" | "policy"
    note: str = ""
    # Firewall mark for the verdict: the traffic-shaping class and DSCP of
    # the policy the flow belongs to (gateway.shaping; 0: none).
    mark: int = 0


class Drop(NamedTuple):
    """Drop the packet; ``reason`` is the one line to log."""

    reason: str
    category: str = "other"         # malformed, fragment, policy, screen-*, alg, session


@dataclass(frozen=True, slots=True)
class Alg:
    """A signalling packet for an ALG: the caller runs the ALG (in the owning
    actor, found by ``key``) and calls :meth:`Datapath.finish_alg`.

    ``key``: the Call-ID for SIP (cheap scan; "" when none found: the ALG's
    parser will say why); for MGCP ``ep:<endpoint>`` for a command,
    ``tid:<transaction id>`` for a response. ``direction``/``src``/``dst``/
    ``nat_src``/``nat_dst``/``ingress``/``egress``/``transport`` are the
    :class:`gateway.sip.alg.SipContext` fields (:meth:`sip_context`).
    ``decision`` is None for SIP to an incoming-DIP address: policy is decided
    in ``finish_alg`` once the ALG has named the internal host (``route_to``).
    ``rewrite``: the header translation (new src, sport, dst, dport) as far as
    known. ``session``: id of the signalling session it matched, if any;
    ``pinhole``: id of the signalling pinhole it came through, if any."""

    alg: str
    key: str
    packet: Packet
    decision: Decision | None
    direction: str
    src: tuple[str, int]
    dst: tuple[str, int]
    nat_src: tuple[str, int] | None
    nat_dst: tuple[str, int] | None
    ingress: str
    egress: str
    transport: str
    payload: bytes
    rewrite: Rewrite | None
    session: int | None = None
    pinhole: str | None = None
    # H.323: "ras", "q931" or "h245"; the connection's name, the same for
    # both directions (the two real endpoints: private and public side);
    # for TCP the segment's complete messages (payload is then
    # ``segment.data``, the part the ALG may rewrite).
    channel: str = ""
    conn: str = ""
    segment: SegmentWork | None = None

    def sip_context(self) -> SipContext:
        return SipContext(self.direction, self.src, self.dst, self.nat_src, self.nat_dst,
                          self.ingress, self.egress, self.transport)


Outcome = Forward | Drop | Alg


# ------------------------------------------------------------------ cheap scans

def sip_call_id(payload: bytes) -> str:
    """The Call-ID header's value (RFC 3261 §20.8, compact form ``i``), found
    in the header part without a full parse; "" when there is none. Header
    names are case-insensitive (§7.3.1), the value is not."""
    low = payload.lower()
    end = low.find(b"\r\n\r\n")
    if end < 0:
        end = len(low)
    for name in (b"\ncall-id", b"\ni"):
        start = 0
        while True:
            i = low.find(name, start, end)
            if i < 0:
                break
            j = i + len(name)
            while j < end and low[j] in b" \t":
                j += 1
            if j < end and low[j] == 58:                    # ':'
                k = j + 1
                while k < end and low[k] not in b"\r\n":
                    k += 1
                return payload[j + 1:k].strip().decode("utf-8", "replace")
            start = i + 1
    return ""


def looks_like_sip(payload: bytes) -> bool:
    """A SIP request or response line (RFC 3261 §7.1, §7.2)."""
    line_end = payload.find(b"\n", 0, 512)
    line = payload[:line_end if line_end >= 0 else 512].rstrip(b"\r")
    return line.startswith(b"SIP/2.0 ") or line.endswith(b" SIP/2.0")


def mgcp_key(payload: bytes) -> str:
    """Actor key of an MGCP message from its first line (RFC 3435 §3.2.1, §3.3):
    ``ep:<endpoint>`` (lower case: endpoint names are case-insensitive) for a
    command, ``tid:<id>`` for a response; "" when the line is not MGCP."""
    line_end = payload.find(b"\n", 0, 512)
    words = payload[:line_end if line_end >= 0 else 512].split()
    if len(words) >= 2 and words[0].isdigit():
        return "tid:" + words[1].decode("ascii", "replace")
    if len(words) >= 3:
        return "ep:" + words[2].decode("utf-8", "replace").lower()
    return ""


def _direction(d: Decision) -> str:
    """outbound (private to public: source translated), inbound (destination
    translated), or none: what the ALGs call the NAT direction."""
    nat = d.nat
    if nat.dst is not None:
        return "inbound"
    if nat.src is not None:
        return "outbound"
    return "none"


_FLIP = {"outbound": "inbound", "inbound": "outbound"}


def _ip(n: int) -> str:
    return str(IPv4Address(n))


def _conn_name(a: tuple[str, int], b: tuple[str, int]) -> str:
    """An H.323 connection's name, the same in both directions: its two real
    endpoints (the sender, and the receiver after NAT), in sorted order. A
    node that takes over mid-call names it the same, whichever direction it
    sees first (Q.931 call references are per connection)."""
    x, y = f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}"
    return f"{x}-{y}" if x <= y else f"{y}-{x}"


def _nat_of(rw: Rewrite | None, s: int, sp: int, d: int, dp: int,
            port_translates: bool = True) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """What an ALG is told of the packet's NAT: ``nat_src``, the public
    source (outbound), and ``nat_dst``, the private destination (inbound to a
    MIP), each None where NAT leaves it as it is. ``port_translates``: a
    changed source port alone counts as a source translation (not for a
    flow decided by policy, whose source NAT is an address change)."""
    if rw is None:
        return None, None
    changed = (rw[0], rw[1]) != (s, sp) if port_translates else rw[0] != s
    nat_src = (_ip(rw[0]), rw[1]) if changed else None
    nat_dst = (_ip(rw[2]), rw[3]) if (rw[2], rw[3]) != (d, dp) else None
    return nat_src, nat_dst


def _rw_direction(key, rw: Rewrite | None) -> str:
    if rw is None:
        return "none"
    if rw[2] != key[3]:
        return "inbound"
    if rw[0] != key[1]:
        return "outbound"
    return "none"


def _alg_entry(handoff):
    """Marks a way into an ALG: before it, the one integrity guard. A
    signalling packet reaches an ALG only whole and undamaged (checksums
    right, not a fragment; :mod:`gateway.datapath.integrity` says why);
    otherwise it is dropped with the reason. Every path that hands a packet
    to an ALG goes through a method so marked, after the policy (whose
    refusal is the drop reason when both apply) and before any session."""
    @wraps(handoff)
    def guarded(self, pkt: Packet, *args, **kwargs):
        damage = signalling_damage(pkt, self.offloaded_checksums_ok)
        if damage is not None:
            return self._drop(*damage)
        return handoff(self, pkt, *args, **kwargs)
    return guarded


# ------------------------------------------------------------------ the datapath

class Datapath:
    """The per-packet path for one configuration (pure: time is an argument,
    nothing here does I/O or locking; one caller at a time)."""

    # Accept the unfinished L4 checksum of transmit offload on signalling
    # (gateway.datapath.integrity): captures only, set by pcap mode.
    offloaded_checksums_ok = False

    def __init__(self, config: Config, engine: Engine | None = None, *,
                 timeouts: dict[int, float] | None = None) -> None:
        self.config = config
        self.engine = engine if engine is not None else Engine(config)
        self.sessions = SessionTable(timeouts)
        # Policy id -> firewall mark, for the policies with traffic settings
        # (manual ch. 2 "Bandwidth Management for VoIP Services").
        self.marks: dict[int, int] = {p.id: policy_mark(p.id) for p in config.policies
                                      if p.action == "permit" and p.traffic is not None}
        self._smap = self.sessions._map       # the fast path's one probe
        self.pinholes = PinholeTable()
        self.activity = MediaActivity()
        self.screens = Screens(config)
        self._zones: dict[str, str | None] = {
            name: self.engine.zone_of(name) for name in config.interfaces}
        self._flood = bool(self.screens.flood_thresholds)
        self._limits = bool(self.screens.session_limits)
        self.media_timeout = float(config.sip.media_inactivity_timeout)
        self.alg_timeouts = {"sip": float(config.sip.signaling_inactivity_timeout),
                             "mgcp": MGCP_SESSION_TIMEOUT, "h323": H323_RAS_TIMEOUT}
        # H.323 and SIP TCP sessions (by session id): their framed streams.
        self._tpkt: dict[int, FramedStream] = {}
        self._sip_holding: set[SipStream] = set()     # with segments retained (expire sweeps)
        self.tpkt_stats = StreamStats()
        self.sip_tcp_stats = StreamStats()
        # Sequence adjustments of SIP connections from the journaled state
        # (after a takeover): connection name -> {sender: Adjust}.
        self._tcp_restore: dict = {}
        # (proto, src, dst, ident) of a fragmented datagram of a session ->
        # (new src, new dst, deadline)
        self._frags: dict[tuple[int, int, int, int], tuple[int, int, float]] = {}
        self.paths = {"fast-session": 0, "fast-pinhole": 0, "policy": 0, "alg": 0}
        self.drops: dict[str, int] = {}
        # Per code (gateway.drops: a closed set, so no cap is needed); the
        # reason texts below are capped and kept for the pcap summary.
        self.drop_codes: dict[str, int] = {}
        self.drop_reasons: dict[str, int] = {}

    def reconfigure(self, config: Config, engine: Engine | None = None) -> None:
        """Decide new flows by ``config`` from now on (``gwctl config apply``,
        actors/live_config.py); the sessions, pinholes and streams stay, the
        screens keep their counters and count the sessions that exist. Which
        sessions the new policy no longer permits is gateway/rematch.py's
        question, answered by the caller."""
        self.config = config
        self.engine = engine if engine is not None else Engine(config)
        self.marks = {p.id: policy_mark(p.id) for p in config.policies
                      if p.action == "permit" and p.traffic is not None}
        screens = Screens(config)
        screens.counters = self.screens.counters
        for sess in self.sessions:
            screens.opened(sess.from_zone, sess.fwd_key[1])
        self.screens = screens
        self._zones = {name: self.engine.zone_of(name) for name in config.interfaces}
        self._flood = bool(screens.flood_thresholds)
        self._limits = bool(screens.session_limits)
        self.media_timeout = float(config.sip.media_inactivity_timeout)
        self.alg_timeouts["sip"] = float(config.sip.signaling_inactivity_timeout)

    # -- outcomes -----------------------------------------------------------------

    def _drop(self, reason: str, category: str, alg: str | None = None) -> Drop:
        self.drops[category] = self.drops.get(category, 0) + 1
        count(self.drop_codes, code_of(category, reason, alg))
        count_reason(self.drop_reasons, reason)
        return Drop(reason, category)

    def drop(self, reason: str, category: str = "alg", alg: str | None = None) -> Drop:
        """A Drop decided outside ``process`` (e.g. by the node), counted here;
        ``alg``: the ALG that refused the message, for its code."""
        return self._drop(reason, category, alg)

    # -- the per-packet path ------------------------------------------------------

    def process(self, buf: bytes, ingress: str, now: float) -> Outcome:
        """Decide one packet that arrived on interface ``ingress`` (the
        configuration's name, e.g. ``ethernet1``)."""
        try:
            pkt = parse(buf)
        except RemoteProtocolError as e:
            return self._drop(f"malformed packet: {e}", "malformed")
        proto = pkt.proto
        sport = pkt.sport
        if sport is None:
            if pkt.frag_offset:
                return self._later_fragment(pkt, now)
            sport = dport = self._icmp_id(pkt) if proto == PROTO_ICMP else 0
        else:
            dport = pkt.dport
        if self._flood and proto == PROTO_UDP:
            why = self.screens.udp_flood(self._zones.get(ingress), pkt.dst_int, now)
            if why is not None:
                return self._drop(why, "screen-udp-flood")

        key = (proto, pkt.src_int, sport, pkt.dst_int, dport)
        hit = self._smap.get(key)
        if hit is not None:
            sess, rw, fwd = hit
            sess.deadline = now + sess.timeout
            if fwd:
                sess.fwd_packets += 1
                sess.fwd_bytes += pkt.total_length
            else:
                sess.rev_packets += 1
                sess.rev_bytes += pkt.total_length
            if proto == PROTO_TCP and pkt.tcp_flags & _FIN_RST and sess.timeout > TCP_CLOSING_TIMEOUT:
                # A closing connection: keep it only long enough for the last
                # segments and their acknowledgements.
                sess.timeout = TCP_CLOSING_TIMEOUT
                self.sessions.reschedule(sess, now + TCP_CLOSING_TIMEOUT)
            if sess.alg is not None:
                return self._alg_session(pkt, sess, rw, fwd, ingress, now)
            if sess.group is not None:
                self._media_seen(sess, fwd, now)
            if pkt.more_fragments:
                self._remember_fragment(pkt, rw, now)
            self.paths["fast-session"] += 1
            if rw is None:
                return Forward(buf, "fast-session", "", sess.mark)
            if pkt.sport is None:
                return Forward(rewrite(pkt, src=rw[0], dst=rw[2]), "fast-session", "", sess.mark)
            s, sp, d, dp = rw
            return Forward(rewrite(pkt, src=s, sport=sp, dst=d, dport=dp), "fast-session", "",
                           sess.mark)

        if pkt.more_fragments:
            return self._drop(FRAGMENT_DROP, "fragment")

        registered = None
        if proto == PROTO_UDP or proto == PROTO_TCP:
            hole = self.pinholes.match(proto, pkt.dst_int, dport, now)
            if hole is not None:
                if hole.pinhole.kind != "registration":
                    return self._through_pinhole(pkt, key, hole, ingress, now)
                registered = hole

        zone = self._zones.get(ingress)
        if self._limits:
            why = self.screens.session_limit(zone, pkt.src_int)
            if why is not None:
                return self._drop(why, "screen-limit-session")

        src_ip, dst_ip = IPv4Address(pkt.src_int), IPv4Address(pkt.dst_int)
        if proto == PROTO_UDP and self.engine.is_incoming_dip(dst_ip):
            payload = pkt.payload_bytes
            if looks_like_sip(payload):
                return self._sip_to_incoming_dip(pkt, payload, ingress)

        flow = Flow(ingress, src_ip, dst_ip, _PROTO_NAMES.get(proto, f"ip-{proto}"), sport, dport)
        if registered is not None and self.engine.is_incoming_dip(dst_ip):
            # H.323 call signalling to an incoming DIP address: the RAS
            # registration behind it (RRQ/RCF through this gateway) names the
            # internal host, and the connection is decided at its SYN, before
            # any Setup (manual ch. 1 "Incoming Calls with NAT"; as SIP's
            # registrar table does for its INVITE, ch. 2).
            host = (IPv4Address(registered.pinhole.to[0]), int(registered.pinhole.to[1]))
            d = self.engine.decide(flow, incoming_dip=host, service=H323_SERVICE)
            if d.action != "permit":
                return self._drop(d.reason, "policy")
            return self._h323_connection(pkt, key, self._rewrite_of(key, d), now, ingress, d, "q931")
        d = self.engine.decide(flow)
        if d.action != "permit":
            return self._drop(d.reason, "policy")
        rw = self._rewrite_of(key, d)

        if proto == PROTO_UDP and (dport == SIP_PORT or dport in MGCP_PORTS or dport in H323_RAS_PORTS):
            return self._alg_of_decision(pkt, key, d, rw, ingress)
        if proto == PROTO_TCP and dport == H323_TCP_PORT:
            return self._h323_connection(pkt, key, rw, now, ingress, d, "q931")
        if proto == PROTO_TCP and (dport == SIP_PORT or sport == SIP_PORT):
            return self._sip_connection(pkt, key, rw, now, ingress, d)

        note = ""
        sess = self._new_session(key, rw, now, ingress, d, note=note)
        if isinstance(sess, Drop):
            return sess
        self.paths["policy"] += 1
        return Forward(self._apply(pkt, sess.fwd_rewrite), "policy", note, sess.mark)

    # -- helpers of process ----------------------------------------------------------

    @staticmethod
    def _icmp_id(pkt: Packet) -> int:
        # ICMP echo (RFC 792): the identifier tells one host's pings from
        # another's behind one public address; it serves as both "ports".
        buf, o = pkt.buf, pkt.l4_offset
        if o + 8 <= pkt.total_length and buf[o] in _ICMP_ECHO:
            return (buf[o + 4] << 8) | buf[o + 5]
        return 0

    @staticmethod
    def _apply(pkt: Packet, rw: Rewrite | None, payload: bytes | None = None) -> bytes:
        if rw is None:
            if payload is None:
                return pkt.buf
            return rewrite(pkt, payload=payload)
        if pkt.sport is None:
            return rewrite(pkt, src=rw[0], dst=rw[2])
        return rewrite(pkt, src=rw[0], sport=rw[1], dst=rw[2], dport=rw[3], payload=payload)

    def _rewrite_of(self, key, d: Decision) -> Rewrite | None:
        nat = d.nat
        if nat.src is None and nat.dst is None and nat.sport is None and nat.dport is None:
            return None
        _p, s, sp, dd, dp = key
        return (int(nat.src) if nat.src is not None else s,
                nat.sport if nat.sport is not None else sp,
                int(nat.dst) if nat.dst is not None else dd,
                nat.dport if nat.dport is not None else dp)

    def _new_session(self, key, rw, now: float, ingress: str, d: Decision | None, *,
                     kind: str = "policy", note: str = "", egress: str = "",
                     to_zone: str | None = None, policy_id: int | None = None,
                     **kw) -> Session | Drop:
        """A session for the flow of ``key``: decided by ``d``, or (no
        decision: a pinhole's flow) belonging to ``policy_id``, the policy
        that permitted the signalling that opened it, whose traffic class
        and DSCP it takes."""
        have = self.sessions._map.get(key)
        if have is not None and have[2]:
            return have[0]
        if d is not None:
            egress, to_zone = d.egress or "", d.to_zone
            policy_id = d.policy.id if d.policy is not None else None
        sess = self.sessions.create(
            key, rw, now, ingress=ingress, egress=egress,
            from_zone=d.from_zone if d is not None else self._zones.get(ingress),
            to_zone=to_zone, policy_id=policy_id,
            kind=kind, note=note, mark=self.marks.get(policy_id, 0) if policy_id else 0, **kw)
        if sess is None:
            if rw is not None and rw[0] != key[1]:
                return self._drop(f"no free port on {_ip(rw[0])} for {_PROTO_NAMES.get(key[0])} "
                                  f"or the reply tuple is taken by another session", "session")
            return self._drop("the reply tuple of this flow belongs to another session", "session")
        self.screens.opened(sess.from_zone, key[1])
        return sess

    def _media_seen(self, sess: Session, fwd: bool, now: float) -> None:
        if fwd:
            self.activity.seen(sess.group, now)
            return
        if sess.rev_pinhole is not None:
            self.activity.used(sess.rev_group, sess.rev_pinhole, now)
            sess.rev_pinhole = None
        else:
            self.activity.seen(sess.rev_group or sess.group, now)

    def _remember_fragment(self, pkt: Packet, rw: Rewrite | None, now: float) -> None:
        frags = self._frags
        if len(frags) >= MAX_FRAGMENT_FLOWS:
            self._expire_fragments(now)
            if len(frags) >= MAX_FRAGMENT_FLOWS:
                return
        s, d = (rw[0], rw[2]) if rw is not None else (pkt.src_int, pkt.dst_int)
        frags[(pkt.proto, pkt.src_int, pkt.dst_int, pkt.ident)] = (s, d, now + FRAGMENT_LIFETIME)

    def _later_fragment(self, pkt: Packet, now: float) -> Outcome:
        f = self._frags.get((pkt.proto, pkt.src_int, pkt.dst_int, pkt.ident))
        if f is None or f[2] <= now:
            return self._drop(FRAGMENT_DROP, "fragment")
        self.paths["fast-session"] += 1
        if f[0] == pkt.src_int and f[1] == pkt.dst_int:
            return Forward(pkt.buf, "fast-session")
        return Forward(rewrite(pkt, src=f[0], dst=f[1]), "fast-session")

    def _expire_fragments(self, now: float) -> None:
        for k in [k for k, v in self._frags.items() if v[2] <= now]:
            del self._frags[k]

    # -- pinholes -------------------------------------------------------------------

    def _through_pinhole(self, pkt: Packet, key, hole: Hole, ingress: str, now: float) -> Outcome:
        p, s, sp, d, dp = key
        signalling = hole.pinhole.kind != "media"
        ndst, ndport = hole.to if hole.to is not None else (d, dp)
        mapped = hole.src_to is not None
        if hole.src_to is not None:
            nsrc, nsport = hole.src_to
        else:
            nsrc, nsport = s, sp
            pair = self.pinholes.translating_to(p, s, sp, now) if hole.to is None else None
            if pair is not None:
                # The source is a private media address the ALG gave a public
                # pair (an inbound pinhole translating to it): its media leaves
                # from that pair, the address its peer was told. Symmetric RTP
                # (RFC 4961); a media gateway drops RTP from any other source
                # (osmo-mgw: "data from wrong source"). MGCP opens no outbound
                # pinhole with a source for this (manual ch. 3 "ISP-Hosted
                # Service": sf_gw's media to asia_gw behind "nat src").
                nsrc, nsport = pair.key[1], pair.key[2]
                mapped = True
            elif hole.to is None:
                # A pinhole toward a public party whose private peer has not
                # announced its public pair yet: the source gets the NAT the
                # policy engine would give this packet, if any.
                # An H.323 pinhole's flow belongs to the call: the policy
                # for the h.323 service gives its NAT, whatever the port
                # (the H.245 listener or RTP port is not 1720).
                d0 = self.engine.decide(Flow(ingress, IPv4Address(s), IPv4Address(d),
                                             _PROTO_NAMES[p], sp, dp),
                                        service=H323_SERVICE if getattr(hole.pinhole, "alg", "") == "h323"
                                        else None)
                if d0.action == "permit" and d0.nat.src is not None:
                    nsrc = int(d0.nat.src)
                elif d0.action != "permit" and getattr(hole.pinhole, "alg", "") == "h323" \
                        and hole.pinhole.kind == "media":
                    # No NAT can be known for it (e.g. "no route" to a party the
                    # configuration does not route, as IP_Phone2 of "Incoming
                    # Calls with NAT"): forwarded, it would leave with its
                    # private source. The ALG is about to name its public pair
                    # (the Connect or OpenLogicalChannelAck that carried it
                    # waits in the ALG); until then the media is dropped.
                    return self._drop(f"h323 media from {_ip(s)}:{sp} before its public address "
                                      f"is known: {d0.reason}", "alg", "h323")
        rw = (nsrc, nsport, ndst, ndport)
        if signalling:
            return self._signalling_pinhole(pkt, key, hole, rw, ingress, now)
        if hole.to is not None:
            self._retire_early_media(key, hole, rw)
        # The reply arrives addressed to this packet's source: a pinhole there
        # (the other party's, opened from its own SDP) is satisfied by it.
        back = self.pinholes.match(p, s, sp, now)
        route = self.engine.route(IPv4Address(ndst), ingress=ingress)
        old = media_takeover.displaced(self.sessions, key, rw, hole,
                                       translated=not mapped and nsrc != s)
        if old is not None:
            self.sessions.remove(old)
        sess = self._new_session(
            key, rw, now, ingress, None, kind="media", timeout=self.media_timeout,
            egress=route[0] if route else "", to_zone=route[1] if route else None,
            policy_id=self._policy_of_hole(hole, key, ingress),
            call=hole.call, group=hole.group, pinhole=hole.id,
            rev_group=back.group if back is not None else None,
            rev_pinhole=back.id if back is not None else None,
            translate_port=not mapped)
        if isinstance(sess, Drop):
            return sess
        hole.uses += 1
        self.pinholes.matched += 1
        self.activity.used(hole.group, hole.id, now)
        self.paths["fast-pinhole"] += 1
        sess.fwd_packets += 1
        sess.fwd_bytes += pkt.total_length
        return Forward(self._apply(pkt, sess.fwd_rewrite), "fast-pinhole",
                       "" if old is None else media_takeover.note(old, hole), sess.mark)

    def _retire_early_media(self, key, hole: Hole, rw: Rewrite) -> None:
        """The private party's media reached the public one before its ALG
        message naming its public pair did (the endpoint sends RTP right
        after its Connect or OpenLogicalChannelAck, which waits in the ALG):
        that flow took the NAT the policy gives it, e.g. another address of
        a non-sticky DIP pool (manual ch. 1 "Incoming Calls with NAT"), so
        the public party's media to the signalled pair, through this
        pinhole, would find its reply tuple taken. The early flow of the same
        call goes; the private party's next packets are the reply of the
        session this pinhole opens and leave from the signalled pair, as
        symmetric RTP wants (RFC 4961)."""
        proto, _s, _sp, d, dp = key
        nsrc, nsport, ndst, ndport = rw
        have = self.sessions._map.get((proto, ndst, ndport, nsrc, nsport))
        if have is None or not have[2]:
            return
        old = have[0]
        public = old.translated[:2]
        if old.kind != "media" or old.call != hole.call or public == (d, dp):
            return
        self.remove_session(old)

    @_alg_entry
    def _signalling_pinhole(self, pkt: Packet, key, hole: Hole, rw: Rewrite, ingress: str,
                            now: float) -> Outcome:
        """A Via/Contact pinhole (manual ch. 2, Figure 9): signalling from a
        source not seen before. UDP goes to the ALG like any SIP message; a
        TCP connection is framed and inspected like one to 5060."""
        p, s, sp, d, dp = key
        if p == PROTO_UDP:
            payload = pkt.payload_bytes
            route = self.engine.route(IPv4Address(rw[2]), ingress=ingress)
            return self._to_alg("sip", sip_call_id(payload), pkt, (s, sp, d, dp), rw,
                                 direction=hole.pinhole.direction, ingress=ingress,
                                 egress=route[0] if route else "", payload=payload, pinhole=hole.id)
        route = self.engine.route(IPv4Address(rw[2]), ingress=ingress)
        channel = getattr(hole.pinhole, "channel", "")
        if getattr(hole.pinhole, "alg", "") == "h323" and channel in ("q931", "h245"):
            # The H.245 connection (or Q.931 to an ACF's destCallSignalAddress):
            # inspected like TCP 1720.
            return self._h323_connection(pkt, key, rw, now, ingress, None, channel,
                                         egress=route[0] if route else "",
                                         to_zone=route[1] if route else None, call=hole.call,
                                         pinhole=hole.id, translate_port=hole.src_to is None,
                                         policy_id=self._policy_of_hole(hole, key, ingress))
        return self._sip_connection(pkt, key, rw, now, ingress, None,
                                    egress=route[0] if route else "",
                                    to_zone=route[1] if route else None, call=hole.call,
                                    pinhole=hole.id, translate_port=hole.src_to is None,
                                    policy_id=self._policy_of_hole(hole, key, ingress))

    # -- ALG dispatch ----------------------------------------------------------------

    def _to_alg(self, alg: str, key: str, pkt: Packet, flow: tuple[int, int, int, int],
                rw: Rewrite | None, *, direction: str, ingress: str, egress: str, payload: bytes,
                decision: Decision | None = None, transport: str = "udp", session: int | None = None,
                pinhole: str | None = None, channel: str = "", conn_key: str = "",
                segment: SegmentWork | None = None, port_translates: bool = True) -> Alg:
        """The :class:`Alg` for a signalling packet whose addresses as it
        arrived are ``flow`` (src, sport, dst, dport) and whose NAT is
        ``rw``. With ``conn_key``, the connection is named (the same in both
        directions, :func:`_conn_name`) and the ALG's key is
        ``<conn_key>:<connection>``; otherwise ``key``."""
        s, sp, d, dp = flow
        nat_src, nat_dst = _nat_of(rw, s, sp, d, dp, port_translates)
        src, dst = (_ip(s), sp), (_ip(d), dp)
        conn = ""
        if conn_key:
            conn = _conn_name(src, nat_dst or dst)
            key = f"{conn_key}:{conn}"
        self.paths["alg"] += 1
        return Alg(alg, key, pkt, decision, direction, src, dst, nat_src, nat_dst, ingress, egress,
                   transport, payload, rw, session, pinhole, channel, conn, segment)

    @_alg_entry
    def _alg_session(self, pkt: Packet, sess: Session, rw: Rewrite | None, fwd: bool, ingress: str,
                     now: float) -> Outcome:
        """A packet of a session an ALG inspects (its signalling)."""
        if pkt.proto == PROTO_TCP:
            return self._tcp_signalling(pkt, sess, rw, fwd, ingress, now=now)
        return self._alg_of_session(pkt, sess, rw, fwd, ingress)

    @_alg_entry
    def _sip_to_incoming_dip(self, pkt: Packet, payload: bytes, ingress: str) -> Alg:
        """SIP over UDP to an incoming DIP address (manual ch. 2, "Incoming
        DIP"): only the SIP ALG knows which registered host it is for."""
        return self._to_alg("sip", sip_call_id(payload), pkt, (pkt.src_int, pkt.sport, pkt.dst_int, pkt.dport),
                            None, direction="inbound", ingress=ingress, egress="", payload=payload)

    @_alg_entry
    def _alg_of_decision(self, pkt: Packet, key, d: Decision, rw: Rewrite | None,
                         ingress: str) -> Alg | Drop:
        p, s, sp, dd, dp = key
        if rw is not None and rw[0] != s:
            # The public port this flow will get, so the ALG writes the same
            # one into Via/Contact as the header carries.
            port = self.sessions.public_port(p, rw[0], rw[1])
            if port is not None and port != rw[1]:
                rw = (rw[0], port, rw[2], rw[3])
        payload = pkt.payload_bytes
        common = dict(direction=_direction(d), ingress=ingress, egress=d.egress or "", payload=payload,
                      decision=d, port_translates=False)
        if dp in H323_RAS_PORTS:
            return self._to_alg("h323", "", pkt, (s, sp, dd, dp), rw, channel="ras", conn_key="ras", **common)
        alg = "sip" if dp == SIP_PORT else "mgcp"
        akey = sip_call_id(payload) if alg == "sip" else mgcp_key(payload)
        return self._to_alg(alg, akey, pkt, (s, sp, dd, dp), rw, **common)

    def _alg_of_session(self, pkt: Packet, sess: Session, rw: Rewrite | None, fwd: bool,
                        ingress: str) -> Alg:
        _p, s, sp, dd, dp = (sess.fwd_key if fwd else sess.rev_key)
        payload = pkt.payload_bytes
        common = dict(direction=sess.direction if fwd else _FLIP.get(sess.direction, sess.direction),
                      ingress=ingress, egress=sess.egress if fwd else sess.ingress, payload=payload,
                      session=sess.id)
        if sess.alg == "h323":
            return self._to_alg("h323", "", pkt, (s, sp, dd, dp), rw, channel="ras", conn_key="ras", **common)
        akey = sip_call_id(payload) if sess.alg == "sip" else mgcp_key(payload)
        return self._to_alg(sess.alg, akey, pkt, (s, sp, dd, dp), rw, **common)

    def finish_alg(self, outcome: Alg, verdict: str, data: bytes, route_to=None,
                   pinholes_open: Iterable[PinholeLike] = (), pinholes_close: Iterable[str] = (),
                   now: float = 0.0, *, reason: str = "") -> Forward | Drop:
        """Apply an ALG's answer to the packet of ``outcome``: close and open
        pinholes, then drop, or rewrite (payload ``data``, header NAT, the
        destination overridden by ``route_to`` from the SIP Incoming DIP table)
        and create the signalling session so that later messages of the flow
        and their answers match.

        The pinholes this message opens belong to the policy that permitted
        it (its decision, its signalling session's or signalling pinhole's
        policy): the media sessions they become take that policy's traffic
        class and DSCP (manual ch. 2 "Bandwidth Management for VoIP
        Services": the VoIP policy's guarantee covers the calls' media)."""
        origin = self._origin_policy(outcome)
        self.remove_pinholes(pinholes_close)
        opened = [self.pinholes.install(p) for p in pinholes_open]
        for hole in opened:
            hole.policy_id = origin
        if outcome.segment is not None:
            return self._segment_done(outcome, verdict, data, reason)
        if verdict != "forward":
            return self._drop(reason or f"{outcome.alg} ALG dropped the message", "alg", outcome.alg)
        pkt = outcome.packet
        payload = None if data == outcome.payload else bytes(data)
        if payload is not None and pkt.payload_offset + len(payload) > 0xFFFF:
            return self._drop(f"{outcome.alg} ALG rewrite makes the packet "
                              f"{pkt.payload_offset + len(payload)} bytes, over the IPv4 maximum",
                              "alg", outcome.alg)
        rw = outcome.rewrite
        if outcome.session is not None:
            if route_to is not None:
                rw = self._route_to(pkt, rw, route_to)
            return Forward(self._apply(pkt, rw, payload), "fast-session", outcome.alg,
                           self._mark_of_session(outcome.session))
        p, s, sp = pkt.proto, pkt.src_int, pkt.sport
        key = (p, s, sp, pkt.dst_int, pkt.dport)
        d = outcome.decision
        if outcome.pinhole is not None:
            # Through a signalling pinhole the ALG opened: no policy lookup.
            if route_to is not None:
                rw = self._route_to(pkt, rw, route_to)
            sess = self._new_session(key, rw, now, outcome.ingress, None, kind="signalling",
                                     egress=outcome.egress, timeout=self.alg_timeouts.get(outcome.alg),
                                     alg=outcome.alg, direction=outcome.direction,
                                     call=outcome.key or None, pinhole=outcome.pinhole,
                                     policy_id=origin)
            if isinstance(sess, Drop):
                return sess
            sess.fwd_packets += 1
            sess.fwd_bytes += pkt.total_length
            return Forward(self._apply(pkt, sess.fwd_rewrite, payload), "fast-pinhole", outcome.alg,
                           sess.mark)
        if d is None:
            if route_to is None:
                return self._drop(f"{outcome.dst[0]}:{outcome.dst[1]} is an incoming DIP address "
                                  f"and the {outcome.alg} ALG knows no registration for it",
                                  "policy")
            host = (IPv4Address(str(route_to[0])), int(route_to[1]))
            d = self.engine.decide(Flow(outcome.ingress, IPv4Address(s), IPv4Address(pkt.dst_int),
                                        "udp", sp, pkt.dport), incoming_dip=host,
                                   service=outcome.alg)
            if d.action != "permit":
                return self._drop(d.reason, "policy")
            rw = self._rewrite_of(key, d)
            for hole in opened:
                hole.policy_id = d.policy.id if d.policy is not None else None
        elif route_to is not None:
            rw = self._route_to(pkt, rw, route_to)
        sess = self._new_session(key, rw, now, outcome.ingress, d, kind="signalling",
                                 timeout=self.alg_timeouts.get(outcome.alg), alg=outcome.alg,
                                 direction=outcome.direction if outcome.decision is not None
                                 else "inbound", call=outcome.key or None)
        if isinstance(sess, Drop):
            return sess
        sess.fwd_packets += 1
        sess.fwd_bytes += pkt.total_length
        return Forward(self._apply(pkt, sess.fwd_rewrite, payload), "policy", outcome.alg,
                       sess.mark)

    def _origin_policy(self, outcome: Alg) -> int | None:
        """The policy that let this signalling message through: its
        decision's, else its signalling session's, else that of the
        signalling pinhole it came through."""
        d = outcome.decision
        if d is not None:
            return d.policy.id if d.policy is not None else None
        if outcome.session is not None:
            sess = self.sessions.get(outcome.session)
            return sess.policy_id if sess is not None else None
        if outcome.pinhole is not None:
            hole = self.pinholes.get(outcome.pinhole)
            return hole.policy_id if hole is not None else None
        return None

    def _mark_of_session(self, sid: int | None) -> int:
        sess = self.sessions.get(sid) if sid is not None else None
        return sess.mark if sess is not None else 0

    def _policy_of_hole(self, hole: Hole, key, ingress: str) -> int | None:
        """The policy a pinhole's flow belongs to: the one recorded when
        its ALG opened it; for a pinhole rebuilt from the replicated ALG
        state (takeover, replay: no message opened it here), the policy
        the flow would match as the ALG's service, which is the policy
        that permits that call's signalling between the same parties, in
        either direction (the session made covers both, and after a
        takeover either party's packet may come first)."""
        if hole.policy_id is not None or not self.marks:
            return hole.policy_id
        p, s, sp, d, dp = key
        alg = getattr(hole.pinhole, "alg", "") or "sip"
        service = {"h323": H323_SERVICE, "mgcp": None}.get(alg, alg)
        proto = _PROTO_NAMES.get(p, "udp")
        dst, dport = hole.to if hole.to is not None else (d, dp)
        src, dst = IPv4Address(s), IPv4Address(dst)
        dec = self.engine.decide(Flow(ingress, src, dst, proto, sp, dport), service=service)
        if dec.action != "permit" or dec.policy is None:
            # The other party's packets arrive by the interface facing it.
            back = self.engine.route(dst)
            if back is not None:
                dec = self.engine.decide(Flow(back[0], dst, src, proto, dport, sp),
                                         service=service)
        if dec.action == "permit" and dec.policy is not None:
            hole.policy_id = dec.policy.id
        return hole.policy_id

    # -- signalling over TCP (H.323, SIP) --------------------------------------------

    def _h323_connection(self, pkt: Packet, key, rw: Rewrite | None, now: float, ingress: str,
                         d: Decision | None, channel: str, **kw) -> Outcome:
        """A TCP connection carrying H.323 signalling (to 1720 by policy, or
        through the ALG's pinhole): an H.323 session and its TPKT streams."""
        return self._tcp_connection(pkt, key, rw, now, ingress, d, "h323", H323_SIGNALLING_TIMEOUT,
                                    lambda _sess: TpktStream(channel, self.tpkt_stats), **kw)

    def _sip_connection(self, pkt: Packet, key, rw: Rewrite | None, now: float, ingress: str,
                        d: Decision | None, **kw) -> Outcome:
        """A TCP connection carrying SIP (to or from 5060 by policy, or through
        a SIP signalling pinhole): a SIP session and its framed streams."""
        return self._tcp_connection(pkt, key, rw, now, ingress, d, "sip", self.alg_timeouts["sip"],
                                    self._sip_stream, **kw)

    def _sip_stream(self, sess: Session) -> SipStream:
        """The framed streams of a new SIP connection, with the sequence
        adjustments the journaled state has for it (takeover)."""
        stream = self._new_sip_stream()
        if self._tcp_restore:
            _p, s, sp, dd, dp = sess.fwd_key
            frw = sess.fwd_rewrite
            dst = (_ip(frw[2]), frw[3]) if frw is not None else (_ip(dd), dp)
            conn = _conn_name((_ip(s), sp), dst)
            sides = self._tcp_restore.get(conn)
            if sides:
                stream.restore(True, sides.get(f"{_ip(s)}:{sp}", seqadj.NONE))
                stream.restore(False, sides.get(f"{dst[0]}:{dst[1]}", seqadj.NONE))
        return stream

    def _new_sip_stream(self) -> SipStream:
        return SipStream(self.sip_tcp_stats, self.config.sip.tcp_max_message,
                         holding=self._sip_holding)

    @_alg_entry
    def _tcp_connection(self, pkt: Packet, key, rw: Rewrite | None, now: float, ingress: str,
                        d: Decision | None, alg: str, timeout: float, new_stream, **kw) -> Outcome:
        """The first segment of a TCP connection carrying ``alg``'s
        signalling: its session and (``new_stream(session)``) its streams."""
        if d is not None:
            direction = _direction(d)
            path = "policy"
        else:
            direction = _rw_direction(key, rw)
            path = "fast-pinhole"
        sess = self._new_session(key, rw, now, ingress, d, kind="signalling",
                                 timeout=timeout, alg=alg, direction=direction, **kw)
        if isinstance(sess, Drop):
            return sess
        if sess.id not in self._tpkt:
            self._tpkt[sess.id] = new_stream(sess)
        sess.fwd_packets += 1
        sess.fwd_bytes += pkt.total_length
        return self._tcp_signalling(pkt, sess, sess.fwd_rewrite, True, ingress, path, now)

    def _tcp_signalling(self, pkt: Packet, sess: Session, rw: Rewrite | None, fwd: bool, ingress: str,
                        path: str = "fast-session", now: float = 0.0) -> Outcome:
        """One segment of an H.323 or SIP TCP session (tcp_stream module
        docstring): forwarded with the session's NAT and the connection's
        sequence adjustment, dropped, or an Alg outcome."""
        stream = self._tpkt.get(sess.id)
        if stream is None:
            stream = self._tpkt[sess.id] = (self._new_sip_stream() if sess.alg == "sip"
                                            else TpktStream("q931", self.tpkt_stats))
        payload = pkt.payload_bytes
        if not payload and pkt.tcp_flags & _SYN:
            stream.syn(fwd, pkt.tcp_seq)
            self.paths[path] += 1
            return Forward(self._apply_tcp(pkt, rw, stream, fwd, None, pkt.tcp_seq), path, "",
                           sess.mark)
        if not payload:
            # ACK/FIN/RST: in order behind this direction's data at the ALG.
            kind, val = stream.empty(fwd, pkt.tcp_seq)
        elif isinstance(stream, SipStream):
            kind, val = stream.segment(fwd, pkt.tcp_seq, payload, now)
        else:
            kind, val = stream.segment(fwd, pkt.tcp_seq, payload)
        if kind == "forward":
            self.paths[path] += 1
            return Forward(self._apply_tcp(pkt, rw, stream, fwd, None if val == payload else val,
                                           pkt.tcp_seq), path, "", sess.mark)
        if kind == "drop":
            return self._drop(val, "alg", sess.alg)
        if kind == "hold":
            return self._drop(val, "held")
        flow = (pkt.src_int, pkt.sport, pkt.dst_int, pkt.dport)
        common = dict(direction=sess.direction if fwd else _FLIP.get(sess.direction, sess.direction),
                      ingress=ingress, egress=sess.egress if fwd else sess.ingress, payload=val.data,
                      transport="tcp", session=sess.id, segment=val)
        if isinstance(stream, SipStream):
            # One actor per connection: its segments are answered in order,
            # each after the ones whose length changes it must follow.
            out = self._to_alg("sip", "", pkt, flow, rw, channel="sip", conn_key="tcp", **common)
            if val.part:
                # Retained until its message is whole (tcp_stream.Retained).
                val.retained.outcomes[id(val)] = out
            return out
        return self._to_alg("h323", "", pkt, flow, rw, channel=stream.channel, conn_key=stream.channel,
                            **common)

    def _segment_done(self, outcome: Alg, verdict: str, data: bytes, reason: str) -> Forward | Drop:
        work = outcome.segment
        stream = work.stream
        if work.part:
            # Its verdict comes with the segment that completes its message
            # (the node keeps it: tcp_stream.Retained); answered on its own,
            # it cannot leave rewritten.
            return self._drop("SIP segment retained for its message answered on its own", "alg", "sip")
        if verdict != "forward":
            FramedStream.finished(work, None)
            return self._drop(reason or f"{outcome.alg} ALG dropped the message", "alg", outcome.alg)
        data = bytes(data)
        if len(data) != len(work.data) and not stream.rewrites_length:
            # H.323 rewrites are six octets for six: a change of length would
            # need sequence adjustment this path does not do.
            FramedStream.finished(work, None)
            return self._drop("h323 ALG rewrite changed the segment's length", "alg", "h323")
        if work.retained is not None:
            return self._release_retained(outcome, work, data)
        pkt = outcome.packet
        payload = work.prefix + data
        if pkt.payload_offset + len(payload) > 0xFFFF:
            FramedStream.finished(work, None)
            return self._drop(f"{outcome.alg} ALG rewrite makes the packet over the IPv4 maximum",
                              "alg", outcome.alg)
        # The segment's own sequence number takes the adjustment before its
        # change (seqadj: a position is "strictly after"), so it may be
        # computed before or after ``finished`` enters the change.
        FramedStream.finished(work, data)
        if payload == pkt.payload_bytes and work.emit_seq == pkt.tcp_seq:
            payload = None
        return Forward(self._apply_tcp(pkt, outcome.rewrite, stream, work.forward, payload,
                                       work.emit_seq), "fast-session", outcome.alg,
                       self._mark_of_session(outcome.session))

    def _release_retained(self, outcome: Alg, work: SegmentWork, data: bytes) -> Forward:
        """The messages of retained SIP segments answered (``data``: their
        rewritten octets): each segment's verdict, its share of ``data`` at
        its own place in the sequence space (``resegment``), entered in the
        set for the node to give (``Retained.release``); the completing
        segment's is returned. Segments queued behind the set leave with
        the adjustment it made; one past a further gap is dropped (its octets
        were forgotten: its sender retransmits it)."""
        r = work.retained
        stream = work.stream
        mark = self._mark_of_session(outcome.session)
        FramedStream.finished(work, data)
        lengths = resegment.spread([n for _s, n, _w in r.layout], len(data))
        verdicts: dict[int, Forward | Drop] = {}
        own: Forward | Drop | None = None
        pos = 0
        for (start, _n, w), m in zip(r.layout, lengths):
            share = data[pos:pos + m]
            pos += m
            seg = work if w is None else w
            o = outcome if w is None else r.outcomes.get(id(w))
            if o is None:
                continue
            payload = seg.prefix + share
            if not payload:
                v = self._drop("SIP segment emptied by the rewrite of its message", "alg", "sip")
            else:
                pkt = o.packet
                emit = (start - len(seg.prefix)) % (1 << 32)
                same = payload == pkt.payload_bytes and emit == pkt.tcp_seq
                v = Forward(self._apply_tcp(pkt, o.rewrite, stream, work.forward,
                                            None if same else payload, emit), "fast-session", "sip",
                            mark)
            if w is None:
                own = v
            else:
                verdicts[id(w)] = v
        unreached = {id(w) for w in r.gap.values()}
        for w in r.parts:
            o = r.outcomes.get(id(w))
            if id(w) in verdicts or o is None:
                continue
            if id(w) in unreached:
                verdicts[id(w)] = self._drop("SIP segment past a second gap: dropped, its sender "
                                             "retransmits it", "alg", "sip")
                continue
            pkt = o.packet
            verdicts[id(w)] = Forward(self._apply_tcp(pkt, o.rewrite, stream, w.forward,
                                                      None if w.data == pkt.payload_bytes else w.data,
                                                      pkt.tcp_seq), "fast-session", "sip", mark)
        r.verdicts = verdicts
        return own if own is not None else self._drop("SIP segment emptied by the rewrite of its "
                                                      "message", "alg", "sip")

    @staticmethod
    def _apply_tcp(pkt: Packet, rw: Rewrite | None, stream: FramedStream, fwd: bool,
                   payload: bytes | None, seq: int) -> bytes:
        """NAT, payload and the connection's sequence adjustment: the
        sequence number by this direction's, the acknowledgement number and
        SACK edges by the other's (``nf_nat_seqadj``)."""
        mine = stream.sides[0 if fwd else 1].adj
        theirs = stream.sides[1 if fwd else 0].adj
        new_seq = seqadj.map_seq(mine, seq) if (mine[1] or mine[0] or seq != pkt.tcp_seq) else None
        if new_seq == pkt.tcp_seq:
            new_seq = None
        new_ack = sack = None
        if (theirs[1] or theirs[0]) and pkt.tcp_flags & ACK:
            new_ack = seqadj.map_ack(theirs, pkt.tcp_ack)
            if new_ack == pkt.tcp_ack:
                new_ack = None
            try:
                blocks = pkt.sack_blocks
            except RemoteProtocolError:
                blocks = ()
            if blocks:
                sack = tuple((seqadj.map_ack(theirs, a), seqadj.map_ack(theirs, b)) for a, b in blocks)
        if new_seq is None and new_ack is None and sack is None:
            return Datapath._apply(pkt, rw, payload)
        if rw is None:
            return rewrite(pkt, payload=payload, tcp_seq=new_seq, tcp_ack=new_ack, sack_blocks=sack)
        return rewrite(pkt, src=rw[0], sport=rw[1], dst=rw[2], dport=rw[3], payload=payload,
                       tcp_seq=new_seq, tcp_ack=new_ack, sack_blocks=sack)

    @staticmethod
    def _route_to(pkt: Packet, rw: Rewrite | None, route_to) -> Rewrite:
        base = rw if rw is not None else (pkt.src_int, pkt.sport, pkt.dst_int, pkt.dport)
        return (base[0], base[1], int(IPv4Address(str(route_to[0]))), int(route_to[1]))

    # -- tables ----------------------------------------------------------------------

    def install_pinholes(self, pinholes: Iterable[PinholeLike]) -> None:
        for p in pinholes:
            self.pinholes.install(p)

    def remove_pinholes(self, ids: Iterable[str]) -> None:
        for pid in ids:
            self.pinholes.remove(pid)

    def rebuild(self, pinholes: Iterable[PinholeLike]) -> None:
        """After failover or replay: the pinhole table from the ALGs' state."""
        self.pinholes.rebuild(pinholes)

    def restore_tcp(self, state: seqadj.TcpState) -> None:
        """After failover: the sequence adjustments of SIP connections from
        the journaled state (``DomainState.tcp``); a connection's session,
        made again when its next segment arrives, takes them."""
        self._tcp_restore = {conn: dict(sides) for conn, sides in state.conns.items()}

    def release_groups(self, groups: Iterable[str]) -> list[Session]:
        """A voice channel ended (e.g. SIP ``MediaReleased``): its media sessions go."""
        gs = set(groups)
        self.activity.forget(gs)
        return self._remove(self.sessions.of_groups(gs))

    def release_call(self, call: str) -> list[Session]:
        """A call ended (SIP ``CallEnded``): its media sessions and pinholes go."""
        self.pinholes.remove_call(call)
        gone = self._remove(self.sessions.media_of_call(call))
        self.activity.forget({s.group for s in gone} | {s.rev_group for s in gone if s.rev_group})
        return gone

    def remove_session(self, sess: Session) -> bool:
        self._close_stream(sess.id)
        if self.sessions.remove(sess):
            self.screens.closed(sess.from_zone, sess.fwd_key[1])
            return True
        return False

    def _remove(self, sessions: list[Session]) -> list[Session]:
        gone = self.sessions.remove_all(sessions)
        for s in gone:
            self.screens.closed(s.from_zone, s.fwd_key[1])
            self._close_stream(s.id)
        return gone

    def _close_stream(self, sid: int) -> None:
        stream = self._tpkt.pop(sid, None)
        if stream is not None:
            stream.close()

    def drain_activity(self) -> list[tuple[str, str | None, float]]:
        """Media activity since the last call: ``(group, pinhole id or None, last seen)``."""
        return self.activity.drain()

    def drain_alarms(self) -> list[str]:
        return self.screens.drain_alarms()

    def expire(self, now: float) -> list[Session | Hole]:
        """Remove what has passed its deadline: idle sessions and pinholes
        whose lifetime ended; returns them."""
        out: list[Session | Hole] = []
        for s in self.sessions.expire(now):
            self.screens.closed(s.from_zone, s.fwd_key[1])
            self._close_stream(s.id)
            out.append(s)
        for stream in list(self._sip_holding):
            stream.expire(now)
        out.extend(self.pinholes.expire(now))
        self._expire_fragments(now)
        return out

    def stats(self) -> dict:
        return {"paths": dict(self.paths), "drops": dict(self.drops),
                "drop_codes": dict(self.drop_codes),
                "drop_reasons": dict(self.drop_reasons), "screens": self.screens.stats(),
                "sessions": self.sessions.stats(), "pinholes": self.pinholes.stats(),
                "h323_tcp": self.tpkt_stats.as_dict(), "sip_tcp": self.sip_tcp_stats.as_dict()}
