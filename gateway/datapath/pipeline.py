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

from ipaddress import IPv4Address
from typing import Callable

from gateway.config.model import Config
from gateway.datapath import seqadj
from gateway.datapath.alg_handoff import _ip
from gateway.datapath.alg_dispatch import AlgDispatch
from gateway.datapath.datapath_tables import DatapathTables
from gateway.datapath.dispatch_constants import (
    FRAGMENT_DROP, FRAGMENT_LIFETIME, H323_RAS_PORTS, H323_RAS_TIMEOUT, H323_SERVICE,
    H323_SIGNALLING_TIMEOUT, H323_TCP_PORT, MAX_FRAGMENT_FLOWS, MGCP_PORTS, MGCP_SESSION_TIMEOUT,
    SIP_PORT, TCP_CLOSING_TIMEOUT, TCP_SIGNALLING_NOTE, UDP_ALG_BY_PORT, UDP_ALGS, _FIN_RST, _ICMP_ECHO,
    _PROTO_NAMES,
)
from gateway.datapath.outcomes import Alg, Drop, Forward, Outcome
from gateway.datapath.pinhole_path import PinholePath
from gateway.datapath.pinholes import MediaActivity, PinholeTable
from gateway.datapath.screens import Screens
from gateway.datapath.sessions import (
    PROTO_ICMP, PROTO_TCP, PROTO_UDP, Rewrite, Session, SessionTable,
)
from gateway.datapath.signalling_scan import looks_like_sip, mgcp_key, sip_call_id
from gateway.datapath.tcp_signalling import TcpSignalling
from gateway.datapath.tcp_stream import FramedStream, SipStream, StreamStats
from gateway.drops import code_of, count, count_reason
from gateway.errors import RemoteProtocolError
from gateway.packet import ACK, Packet, parse, rewrite
from gateway.policy import Decision, Engine, Flow
from gateway.shaping import policy_mark

# The outcomes, the scans and the ports stay importable from here.
__all__ = ["Alg", "Datapath", "Drop", "FRAGMENT_DROP", "FRAGMENT_LIFETIME", "Forward",
           "H323_RAS_PORTS", "H323_RAS_TIMEOUT", "H323_SERVICE", "H323_SIGNALLING_TIMEOUT",
           "H323_TCP_PORT", "MAX_FRAGMENT_FLOWS", "MGCP_PORTS", "MGCP_SESSION_TIMEOUT", "Outcome",
           "SIP_PORT", "TCP_CLOSING_TIMEOUT", "TCP_SIGNALLING_NOTE", "looks_like_sip", "mgcp_key",
           "sip_call_id"]


# ------------------------------------------------------------------ the datapath

class Datapath(PinholePath, AlgDispatch, TcpSignalling, DatapathTables):
    """The per-packet path for one configuration (pure: time is an argument,
    nothing here does I/O or locking; one caller at a time)."""

    # Accept the unfinished L4 checksum of transmit offload on signalling
    # (gateway.datapath.integrity): captures only, set by pcap mode.
    offloaded_checksums_ok = False

    def __init__(self, config: Config, engine: Engine | None = None, *,
                 timeouts: dict[int, float] | None = None) -> None:
        self.sessions = SessionTable(timeouts)
        self._smap = self.sessions._map       # the fast path's one probe
        self.pinholes = PinholeTable()
        self.activity = MediaActivity()
        self._follow(config, engine, Screens(config))
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
        # Media offload (actors/kernel_media.py): sessions the kernel forwards
        # that were ended now (a call or voice channel released, a session
        # cleared), and what wakes the offload to take them out at once.
        self.offload_gone: list[Session] = []
        self.offload_wake: Callable[[], None] | None = None
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
        screens = Screens(config)
        screens.counters = self.screens.counters
        for sess in self.sessions:
            screens.opened(sess.from_zone, sess.fwd_key[1])
        self._follow(config, engine, screens)

    def _follow(self, config: Config, engine: Engine | None, screens: Screens) -> None:
        """What the datapath reads from ``config`` (at start and at each
        ``reconfigure``): its policy engine, marks, zones, screens and the
        timeouts of media and of each UDP ALG's signalling."""
        self.config = config
        self.engine = engine if engine is not None else Engine(config)
        # Policy id -> firewall mark, for the policies with traffic settings
        # (manual ch. 2 "Bandwidth Management for VoIP Services").
        self.marks: dict[int, int] = {p.id: policy_mark(p.id) for p in config.policies
                                      if p.action == "permit" and p.traffic is not None}
        self.screens = screens
        self._zones: dict[str, str | None] = {
            name: self.engine.zone_of(name) for name in config.interfaces}
        self._flood = bool(screens.flood_thresholds)
        self._limits = bool(screens.session_limits)
        self.media_timeout = float(config.sip.media_inactivity_timeout)
        self.alg_timeouts = {u.alg: u.idle_timeout(config) for u in UDP_ALGS}

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
            if not d.permitted:
                return self._drop(d.reason, "policy")
            return self._h323_connection(pkt, key, self._rewrite_of(key, d), now, ingress, d, "q931")
        d = self.engine.decide(flow)
        if not d.permitted:
            return self._drop(d.reason, "policy")
        rw = self._rewrite_of(key, d)

        if proto == PROTO_UDP and dport in UDP_ALG_BY_PORT:
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

    # -- the TCP rewrite: here, as it names this class (Datapath._apply) ---------

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
