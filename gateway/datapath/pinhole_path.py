"""The datapath's pinhole path (DESIGN.md, "A packet's way through", step 5):
media to an open pinhole becomes a media session, early media hands over to
the call's final route (manual ch. 1 "Incoming Calls with NAT"; RFC 4961),
and signalling through a Via/Contact or H.323 pinhole (manual ch. 2, Figure
9) goes to its ALG."""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.datapath import media_takeover
from gateway.datapath.alg_handoff import _alg_entry, _ip
from gateway.datapath.dispatch_constants import H323_SERVICE, _PROTO_NAMES
from gateway.datapath.outcomes import Drop, Forward, Outcome
from gateway.datapath.pinholes import Hole
from gateway.datapath.sessions import PROTO_UDP, Rewrite
from gateway.datapath.signalling_scan import sip_call_id
from gateway.packet import Packet
from gateway.policy import Flow


class PinholePath:
    """Packets through pinholes; a part of :class:`gateway.datapath.pipeline.Datapath` (a base class):
    it reads and writes the datapath's tables and counters."""

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
                if d0.permitted and d0.nat.src is not None:
                    nsrc = int(d0.nat.src)
                elif not d0.permitted and getattr(hole.pinhole, "alg", "") == "h323" \
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
