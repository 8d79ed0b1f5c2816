"""The datapath's ALG dispatch (DESIGN.md, "A packet's way through", step 8):
signalling for an ALG becomes an :class:`gateway.datapath.outcomes.Alg`, SIP to
an incoming-DIP address goes to the ALG before policy (manual ch. 2,
"Incoming SIP Call Support Using the SIP Registrar"), and the ALG's verdict
comes back through :meth:`AlgDispatch.finish_alg` with its policy's traffic
class and DSCP (manual ch. 2 "Bandwidth Management for VoIP Services")."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Iterable

from gateway.alg_contract import Direction
from gateway.datapath import media_takeover
from gateway.datapath.alg_handoff import _FLIP, _alg_entry, _conn_name, _direction, _ip, _nat_of
from gateway.datapath.dispatch_constants import H323_SERVICE, UDP_ALG_BY_NAME, UDP_ALG_BY_PORT, _PROTO_NAMES
from gateway.datapath.outcomes import Alg, Drop, Forward, Outcome
from gateway.datapath.pinholes import Hole, PinholeLike
from gateway.datapath.sessions import PROTO_TCP, Rewrite, Session
from gateway.datapath.signalling_scan import sip_call_id
from gateway.datapath.tcp_stream import SegmentWork
from gateway.packet import Packet
from gateway.policy import Decision, Flow


class AlgDispatch:
    """Handing packets to the ALGs and taking their verdicts; a part of :class:`gateway.datapath.pipeline.Datapath` (a base class):
    it reads and writes the datapath's tables and counters."""

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
                            None, direction=Direction.INBOUND, ingress=ingress, egress="", payload=payload)

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
        u = UDP_ALG_BY_PORT[dp]
        akey = u.dialog_key(payload) if u.dialog_key is not None else ""
        return self._to_alg(u.alg, akey, pkt, (s, sp, dd, dp), rw, **u.handoff, **common)

    def _alg_of_session(self, pkt: Packet, sess: Session, rw: Rewrite | None, fwd: bool,
                        ingress: str) -> Alg:
        _p, s, sp, dd, dp = (sess.fwd_key if fwd else sess.rev_key)
        payload = pkt.payload_bytes
        common = dict(direction=sess.direction if fwd else _FLIP.get(sess.direction, sess.direction),
                      ingress=ingress, egress=sess.egress if fwd else sess.ingress, payload=payload,
                      session=sess.id)
        u = UDP_ALG_BY_NAME[sess.alg]
        akey = u.dialog_key(payload) if u.dialog_key is not None else ""
        return self._to_alg(u.alg, akey, pkt, (s, sp, dd, dp), rw, **u.handoff, **common)

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
        # The newest negotiation takes its flows from older calls' media
        # sessions (gateway/datapath/media_takeover.py); the reason goes with
        # this packet's verdict, which the worker logs.
        claimed = media_takeover.claimed(self.sessions, self.pinholes, opened) if opened else ()
        if claimed:
            self._remove([old for old, _call in claimed])
        out = self._finish_packet(outcome, verdict, data, route_to, now, reason, opened, origin)
        if claimed and type(out) is Forward:
            out = out._replace(note="; ".join(media_takeover.claim_note(old, call) for old, call in claimed))
        return out

    def _finish_packet(self, outcome: Alg, verdict: str, data: bytes, route_to, now: float,
                       reason: str, opened: list, origin: int | None) -> Forward | Drop:
        """:meth:`finish_alg` after the pinholes: the packet's verdict and
        its signalling session (``origin``: the policy that permitted the
        signalling, :meth:`_origin_policy`)."""
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
            return Forward(self._apply(pkt, rw, payload), "fast-session", "",
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
            return self._first_packet(sess, pkt, payload, "fast-pinhole")
        if d is None:
            if route_to is None:
                return self._drop(f"{outcome.dst[0]}:{outcome.dst[1]} is an incoming DIP address "
                                  f"and the {outcome.alg} ALG knows no registration for it",
                                  "policy")
            host = (IPv4Address(str(route_to[0])), int(route_to[1]))
            d = self.engine.decide(Flow(outcome.ingress, IPv4Address(s), IPv4Address(pkt.dst_int),
                                        "udp", sp, pkt.dport), incoming_dip=host,
                                   service=outcome.alg)
            if not d.permitted:
                return self._drop(d.reason, "policy")
            rw = self._rewrite_of(key, d)
            for hole in opened:
                hole.policy_id = d.policy.id if d.policy is not None else None
        elif route_to is not None:
            rw = self._route_to(pkt, rw, route_to)
        sess = self._new_session(key, rw, now, outcome.ingress, d, kind="signalling",
                                 timeout=self.alg_timeouts.get(outcome.alg), alg=outcome.alg,
                                 direction=outcome.direction if outcome.decision is not None
                                 else Direction.INBOUND, call=outcome.key or None)
        return self._first_packet(sess, pkt, payload, "policy")

    def _first_packet(self, sess: Session | Drop, pkt: Packet, payload: bytes, path: str) -> Outcome:
        """The signalling packet that made ``sess``, counted and forwarded with
        its rewrite (or the Drop that refused the session)."""
        if isinstance(sess, Drop):
            return sess
        sess.fwd_packets += 1
        sess.fwd_bytes += pkt.total_length
        return Forward(self._apply(pkt, sess.fwd_rewrite, payload), path, "", sess.mark)

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
        if not dec.permitted or dec.policy is None:
            # The other party's packets arrive by the interface facing it.
            back = self.engine.route(dst)
            if back is not None:
                dec = self.engine.decide(Flow(back[0], dst, src, proto, dport, sp),
                                         service=service)
        if dec.permitted and dec.policy is not None:
            hole.policy_id = dec.policy.id
        return hole.policy_id
