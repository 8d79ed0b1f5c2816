"""Each ALG's events told as ladder steps: the SIP, MGCP and H.323 call's
messages, NAT bindings, media and pinholes (see :mod:`gateway.ladder`)."""

from __future__ import annotations

from typing import Any

from gateway.ladder_types import GATEWAY, Ladder, Step


def _hp(ip: Any, port: Any = None) -> str:
    return f"{ip}:{port}" if port is not None else str(ip)


def _pair(t: Any) -> str:
    return f"{t[0]}:{t[1]}" if t else "-"


class _Nat:
    """The call's translations: private address -> public, and back."""

    def __init__(self) -> None:
        self.pub: dict[str, str] = {}
        self.priv: dict[str, str] = {}

    def bind(self, private: str, public: str) -> bool:
        if self.pub.get(private) == public:
            return False
        self.pub[private] = public
        self.priv[public] = private
        return True

    def after(self, src: str, dst: str) -> tuple[str, str]:
        """Addresses of a packet ``src -> dst`` as it leaves the gateway: a
        private source leaves as its public address, a packet to a public
        address of the call goes on to the private one."""
        return self.pub.get(src, src), self.priv.get(dst, dst)

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.pub.items()))


class _GatewaySteps:
    """The steps every ALG's ladder draws alike at the gateway's column:
    pinholes opened and closed (a closing names what the opening showed)
    and the call's end."""

    def __init__(self, steps: list[Step]):
        self.steps = steps
        self.pinholes: dict[str, str] = {}
        self.ended: float | None = None
        self.reason: str | None = None

    def opened(self, seq: int, at: float, ev, what: str, where: str, detail: str) -> None:
        self.pinholes[ev.pinhole] = where
        self.steps.append(Step(seq, at, "pinhole", GATEWAY, GATEWAY, f"pinhole open {what} {where}",
                               detail=detail))

    def closed(self, seq: int, at: float, ev) -> None:
        self.steps.append(Step(seq, at, "pinhole", GATEWAY, GATEWAY,
                               f"pinhole closed {self.pinholes.get(ev.pinhole, ev.pinhole)}",
                               detail=ev.reason))

    def call_ended(self, seq: int, at: float, ev) -> None:
        self.ended, self.reason = at, ev.reason
        self.steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, "call ended", detail=ev.reason))


def _sip(recs) -> Ladder:
    start = next(ev for _s, _t, ev in recs if type(ev).TYPE == "sip.call_started")
    nat = _Nat()
    if start.private_ip and start.alg_ip:
        nat.bind(start.private_ip, start.alg_ip)
    a = b = None
    steps: list[Step] = []
    gw = _GatewaySteps(steps)
    # The first request tells which address is each side's: "a" sent the
    # initial INVITE (gateway/sip/events.py TransactionSeen).
    for _s, _t, ev in recs:
        if type(ev).TYPE == "sip.transaction_seen":
            a, b = (ev.src_ip, ev.dst_ip) if ev.sender == "a" else (ev.dst_ip, ev.src_ip)
            b = nat.priv.get(b, b) if start.mode == "inbound" else b
            break
    a = a or (start.private_ip if start.mode == "outbound" else "caller")
    b = b or (start.private_ip if start.mode == "inbound" else "callee")
    col_a, col_b = f"A {a}", f"B {b}"
    seen_media: set[str] = set()
    for seq, at, ev in recs:
        t = type(ev).TYPE
        if t == "sip.call_started":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, f"call started ({ev.mode})",
                              detail=f"Call-ID {ev.call_id}" + (f", seen outside as {ev.public_call_id}"
                                                                if ev.public_call_id != ev.call_id else "")
                              + f"; {ev.ingress} -> {ev.egress}"))
        elif t == "sip.transaction_seen":
            src, dst = (col_a, col_b) if ev.sender == "a" else (col_b, col_a)
            after = nat.after(ev.src_ip, ev.dst_ip)
            steps.append(Step(seq, at, "message", src, dst, f"{ev.method} (CSeq {ev.cseq})",
                              before=f"{ev.src_ip} -> {ev.dst_ip}", after=f"{after[0]} -> {after[1]}",
                              detail=f"branch {ev.branch}"))
        elif t == "sip.call_answered":
            steps.append(Step(seq, at, "message", col_b, col_a, "200 OK (INVITE)",
                              detail=f"to-tag {ev.to_tag}"))
        elif t == "sip.call_rejected":
            steps.append(Step(seq, at, "message", col_b, col_a, f"{ev.code} (INVITE)",
                              detail="final answer: the call ends unless the caller retries"))
        elif t == "sip.call_retried":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, "INVITE retried"))
        elif t == "sip.call_forwarded":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, "forwarded call: no pinholes"))
        elif t == "sip.call_terminating":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, f"{ev.method}: teardown",
                              detail="torn down 5 s later, so the final answer can pass"))
        elif t == "sip.binding_added":
            if nat.bind(_hp(ev.private_ip, ev.private_port), _hp(ev.public_ip, ev.public_port)):
                nat.bind(ev.private_ip, ev.public_ip)
                steps.append(Step(seq, at, "nat", GATEWAY, GATEWAY,
                                  f"NAT {ev.private_ip}:{ev.private_port} = {ev.public_ip}:{ev.public_port}",
                                  detail="signalling address bound"))
        elif t == "sip.media_bound":
            side = col_a if ev.side == "a" else col_b
            pub = f" as {ev.public_ip}:{ev.public_port}" if ev.public_ip else ""
            if ev.public_ip:
                nat.bind(_hp(ev.dst_ip, ev.dst_port), _hp(ev.public_ip, ev.public_port))
            steps.append(Step(seq, at, "media", side, side,
                              f"SDP media {ev.dst_ip}:{ev.dst_port}{pub}",
                              detail=f"side {ev.side}, m-line {ev.index}, RTCP {ev.rtcp_port}"))
        elif t == "sip.media_seen":
            if ev.group not in seen_media:
                seen_media.add(ev.group)
                steps.append(Step(seq, at, "media", col_a, col_b, "RTP flows", detail=ev.group))
        elif t == "sip.media_released":
            steps.append(Step(seq, at, "media", GATEWAY, GATEWAY, "media released", detail=ev.reason))
        elif t == "sip.pinhole_opened":
            to = f" -> {ev.to_ip}:{ev.to_port}" if ev.to_ip else ""
            gw.opened(seq, at, ev, f"{ev.kind} {ev.proto}", f"{ev.dst_ip}:{ev.dst_port}{to}",
                      f"{ev.direction}; id {ev.pinhole}")
        elif t == "sip.pinhole_closed":
            gw.closed(seq, at, ev)
        elif t == "sip.call_ended":
            gw.call_ended(seq, at, ev)
    ids = tuple(dict.fromkeys((start.call_id, start.public_call_id, start.key)))
    return Ladder("sip", start.key, ids, (col_a, GATEWAY, col_b), tuple(steps), start.at, gw.ended,
                  gw.reason, nat.pairs())


def _mgcp(recs) -> Ladder:
    starts = [ev for _s, _t, ev in recs if type(ev).TYPE == "mgcp.call_started"]
    call_id = starts[0].call_id if starts else next(
        (ev.call_id for _s, _t, ev in recs if getattr(ev, "call_id", None)), "?")
    gw = starts[0].gateway if starts else next(ev.gateway for _s, _t, ev in recs)
    agent = next((_hp(ev.src_ip) for _s, _t, ev in recs
                  if type(ev).TYPE == "mgcp.transaction_started" and ev.origin == "call-agent"), None)
    col_gw, col_ca = f"MG {gw}", f"CA {agent}" if agent else "call agent"
    verbs: dict[tuple, str] = {}
    steps: list[Step] = []
    nat = _Nat()
    gw = _GatewaySteps(steps)
    for seq, at, ev in recs:
        t = type(ev).TYPE
        if t == "mgcp.transaction_started":
            src, dst = (col_ca, col_gw) if ev.origin == "call-agent" else (col_gw, col_ca)
            verbs[(ev.endpoint, ev.origin, ev.tid)] = ev.verb
            steps.append(Step(seq, at, "message", src, dst, f"{ev.verb} {ev.tid}",
                              before=f"{ev.src_ip}:{ev.src_port} -> {ev.endpoint}",
                              detail=f"endpoint {ev.endpoint}" + (f", connection {ev.conn_id}"
                                                                  if ev.conn_id else "")))
        elif t == "mgcp.transaction_answered":
            src, dst = (col_gw, col_ca) if ev.origin == "call-agent" else (col_ca, col_gw)
            verb = verbs.get((ev.endpoint, ev.origin, ev.tid), "")
            steps.append(Step(seq, at, "message", src, dst, f"{ev.code} {ev.tid}" + (f" ({verb})" if verb else ""),
                              detail=f"endpoint {ev.endpoint}"))
        elif t == "mgcp.call_started":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, "call started",
                              detail=f"CallId {ev.call_id} on {ev.gateway}"))
        elif t == "mgcp.connection_created":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, f"connection {ev.conn_id}",
                              detail=f"endpoint {ev.endpoint}"))
        elif t == "mgcp.connection_deleted":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, f"connection {ev.conn_id} deleted",
                              detail=ev.reason))
        elif t == "mgcp.media_bound":
            side = col_gw if ev.side == "local" else col_ca
            pub = f" as {ev.public_ip}:{ev.public_port}" if ev.public_ip else ""
            if ev.public_ip:
                nat.bind(_hp(ev.dst_ip, ev.dst_port), _hp(ev.public_ip, ev.public_port))
            steps.append(Step(seq, at, "media", side, side, f"SDP media {ev.dst_ip}:{ev.dst_port}{pub}",
                              detail=f"{ev.side} SDP of transaction {ev.tid}"))
        elif t == "mgcp.media_released":
            steps.append(Step(seq, at, "media", GATEWAY, GATEWAY, "media released", detail=ev.reason))
        elif t == "mgcp.pinhole_opened":
            to = f" -> {ev.to_ip}:{ev.to_port}" if ev.to_ip else ""
            gw.opened(seq, at, ev, "udp", f"{ev.dst_ip}:{ev.dst_port}{to}",
                      f"{ev.direction}; id {ev.pinhole}")
        elif t == "mgcp.pinhole_closed":
            gw.closed(seq, at, ev)
        elif t == "mgcp.call_ended":
            gw.call_ended(seq, at, ev)
    return Ladder("mgcp", call_id, (call_id,), (col_gw, GATEWAY, col_ca), tuple(steps),
                  starts[0].at if starts else None, gw.ended, gw.reason, nat.pairs())


# Q.931 messages by the call phase they lead to (gateway/h323/transitions.py)
_Q931 = {"setup": ("Setup", True), "proceeding": ("Call Proceeding", False),
         "alerting": ("Alerting", False), "connected": ("Connect", False)}


def _h323(recs) -> Ladder:
    start = next(ev for _s, _t, ev in recs if type(ev).TYPE == "h323.call_started")
    # conn: "caller ip:port-callee ip:port" of the Q.931 connection
    caller, _, callee = (start.conn or "").partition("-")
    caller_ip = caller.rpartition(":")[0] or start.origin or "caller"
    callee_ip = callee.rpartition(":")[0] or "callee"
    col_a, col_b = f"A {caller_ip}", f"B {callee_ip}"
    nat = _Nat()
    ras: dict[tuple, str] = {}
    steps: list[Step] = []
    gw = _GatewaySteps(steps)
    for seq, at, ev in recs:
        t = type(ev).TYPE
        if t == "h323.call_started":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY, "call started",
                              detail=f"callIdentifier {start.key}; Q.931 {start.conn or 'not yet connected'}"
                                     f", call reference {start.call_reference}"))
        elif t == "h323.call_progressed":
            name, forward = _Q931.get(ev.phase, (ev.phase, False))
            src, dst = (col_a, col_b) if forward else (col_b, col_a)
            steps.append(Step(seq, at, "message", src, dst, name, detail=f"phase {ev.phase}"))
        elif t == "h323.ras_requested":
            ras[(ev.requester, ev.seq)] = ev.kind
            steps.append(Step(seq, at, "message", col_a, GATEWAY, f"RAS {ev.kind} {ev.seq}",
                              before=f"from {ev.requester}"))
        elif t == "h323.ras_ended":
            steps.append(Step(seq, at, "message", GATEWAY, col_a, f"RAS {ev.outcome} {ev.seq}",
                              before=f"to {ev.requester}",
                              detail=f"answers {ras.get((ev.requester, ev.seq), 'request')}"))
        elif t == "h323.port_mapped":
            if nat.bind(_pair(ev.private), _pair(ev.public)):
                steps.append(Step(seq, at, "nat", GATEWAY, GATEWAY,
                                  f"NAT {_pair(ev.private)} = {_pair(ev.public)}",
                                  detail="embedded address translated"))
        elif t == "h323.h245_bound":
            steps.append(Step(seq, at, "state", GATEWAY, GATEWAY,
                              "H.245 at " + ", ".join(_pair(a) for a in ev.addresses)))
        elif t == "h323.pinhole_opened":
            to = f" -> {_pair(ev.to)}" if ev.to else ""
            gw.opened(seq, at, ev, f"{ev.kind} {ev.transport}", f"{_pair(ev.dst)}{to}", f"id {ev.pinhole}")
        elif t == "h323.pinhole_closed":
            gw.closed(seq, at, ev)
        elif t == "h323.call_ended":
            gw.call_ended(seq, at, ev)
    return Ladder("h323", start.key, (start.key,), (col_a, GATEWAY, col_b), tuple(steps), start.at,
                  gw.ended, gw.reason, nat.pairs())
