"""Signalling over TCP in the datapath (H.323 and SIP; DESIGN.md, "A packet's
way through", step 8): a connection's segments framed per direction
(:mod:`gateway.datapath.tcp_stream`), the segments that complete messages
handed to the ALG, retained segments released, and the sequence adjustment
of a rewrite that changes a segment's length (:mod:`gateway.datapath.seqadj`)."""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.datapath import resegment, seqadj
from gateway.datapath.alg_handoff import (
    _FLIP, _alg_entry, _conn_name, _direction, _rw_direction, session_ends,
)
from gateway.datapath.dispatch_constants import H323_SIGNALLING_TIMEOUT, _SYN
from gateway.datapath.outcomes import Alg, Drop, Forward, Outcome
from gateway.datapath.sessions import Rewrite, Session
from gateway.datapath.tcp_stream import FramedStream, SegmentWork, SipStream, TpktStream
from gateway.packet import Packet
from gateway.policy import Decision


class TcpSignalling:
    """TCP signalling connections; a part of :class:`gateway.datapath.pipeline.Datapath` (a base class):
    it reads and writes the datapath's tables and counters."""

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
            src, dst = session_ends(sess)
            sides = self._tcp_restore.get(_conn_name(src, dst))
            if sides:
                stream.restore(True, sides.get(f"{src[0]}:{src[1]}", seqadj.NONE))
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
                                       work.emit_seq), "fast-session", "",
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
                                            None if same else payload, emit), "fast-session", "",
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
                                                      pkt.tcp_seq), "fast-session", "", mark)
        r.verdicts = verdicts
        return own if own is not None else self._drop("SIP segment emptied by the rewrite of its "
                                                      "message", "alg", "sip")


    @staticmethod
    def _route_to(pkt: Packet, rw: Rewrite | None, route_to) -> Rewrite:
        base = rw if rw is not None else (pkt.src_int, pkt.sport, pkt.dst_int, pkt.dport)
        return (base[0], base[1], int(IPv4Address(str(route_to[0]))), int(route_to[1]))
