"""A call's ladder: the messages between its parties, in order, with times,
the addresses before and after NAT, and the pinholes the ALG opened and
closed, told from the ALG's journaled events (like sngrep's call flow).

Pure: it takes records already read (``(seq, timestamp, event)``) and says
which records belong to a call (:class:`CallFilter`, one pass over raw
``(stream, type, payload)`` so a long journal is not decoded whole), lists
the calls a journal holds (:class:`CallLister`), and builds a
:class:`Ladder` from one call's events (:func:`build`).

A ladder shows what the events carry, no more. The SIP ALG journals each
request it passes (``sip.transaction_seen``: method, CSeq, sender, source and
destination as they arrived), the answers that change the call (2xx:
``call_answered``; a final error: ``call_rejected``) and the teardown
(``call_terminating``); provisional responses and retransmissions are not
events, so they are not on the ladder. MGCP: every command and its response
(RFC 3435 3.5) of the call's transactions (``mgcp.transaction_*`` naming the
call id, and the answers to them). H.323: the Q.931 phases of the call
(Setup, Call Proceeding, Alerting, Connect: ``h323.call_progressed``), the
RAS transactions naming it (ARQ/DRQ and their answers) and the H.245 and
media channels as pinholes.

Translated addresses are derived from the call's NAT bindings (the SIP
call's private and ALG address, its ``binding_added``s; H.323
``port_mapped``): an address the call binds to a public one is shown as it
leaves the gateway on the other side (manual ch. 2 "SIP with Network Address
Translation", ch. 1 "Incoming Calls with NAT")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class Step:
    """One row of the ladder. ``kind``: "message" (``src`` to ``dst``, two of
    the ladder's columns), or "pinhole", "nat", "media", "state" (a note at
    the gateway's column). ``before``/``after``: the message's addresses as
    it reached the gateway and as it left it (None: not known)."""

    seq: int
    at: float
    kind: str
    src: str
    dst: str
    label: str
    before: str | None = None
    after: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "src": self.src, "dst": self.dst,
                "label": self.label, "before": self.before, "after": self.after, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Ladder:
    protocol: str                 # "sip", "mgcp", "h323"
    call: str                     # the call's key in the ALG's state
    ids: tuple[str, ...]          # the identifiers an operator may know it by
    columns: tuple[str, ...]      # left to right; the gateway is one of them
    steps: tuple[Step, ...]
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    nat: tuple[tuple[str, str], ...] = ()    # (private, public) bindings of the call

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "call": self.call, "ids": list(self.ids),
                "columns": list(self.columns), "started_at": self.started_at,
                "ended_at": self.ended_at, "end_reason": self.end_reason,
                "nat": [{"private": p, "public": q} for p, q in self.nat],
                "steps": [s.to_dict() for s in self.steps]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Ladder":
        return Ladder(d["protocol"], d["call"], tuple(d["ids"]), tuple(d["columns"]),
                      tuple(Step(**s) for s in d["steps"]), d.get("started_at"), d.get("ended_at"),
                      d.get("end_reason"), tuple((n["private"], n["public"]) for n in d.get("nat", [])))


# --- which records belong to a call -----------------------------------------

class CallFilter:
    """Feed it every record of a journal in order (:meth:`wants`): it says
    which belong to the call known as ``call_id`` (a SIP Call-ID as either
    side sees it or the ALG's call key; an MGCP CallId; an H.323
    callIdentifier in hex). Works on the raw record so that records of other
    calls are never decoded."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.streams: set[str] = set()
        self.mgcp_txns: set[tuple] = set()
        self.ras: set[tuple] = set()

    def wants(self, stream: str, type_: str, payload: Any) -> bool:
        cid = self.call_id
        if stream in self.streams:
            return True
        p = payload if isinstance(payload, dict) else {}
        if type_ == "sip.call_started":
            if cid in (p.get("call_id"), p.get("public_call_id"), p.get("key")) \
                    or stream == f"call/{cid}":
                self.streams.add(stream)
                return True
            return False
        if stream.startswith("mgcp-call/") and stream.endswith("/" + cid):
            self.streams.add(stream)
            return True
        if stream == f"h323-call/{cid}":
            self.streams.add(stream)
            return True
        if type_.startswith("mgcp.transaction_"):
            t = (p.get("gateway"), p.get("endpoint"), p.get("origin"), p.get("tid"))
            if type_ == "mgcp.transaction_started":
                if p.get("call_id") == cid:
                    self.mgcp_txns.add(t)
                    return True
                self.mgcp_txns.discard(t)     # a reused transaction id of another call
                return False
            if t in self.mgcp_txns:
                if type_ == "mgcp.transaction_ended":
                    self.mgcp_txns.discard(t)
                return True
            return False
        if type_ == "h323.ras_requested":
            t = (p.get("requester"), p.get("seq"))
            if p.get("call") == cid:
                self.ras.add(t)
                return True
            self.ras.discard(t)
            return False
        if type_ == "h323.ras_ended":
            t = (p.get("requester"), p.get("seq"))
            if t in self.ras:
                self.ras.discard(t)
                return True
        return False


@dataclass(slots=True)
class CallSummary:
    protocol: str
    call: str                    # the id `call ladder` takes
    parties: str
    started_at: float
    ended_at: float | None = None
    end_reason: str | None = None
    ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "call": self.call, "parties": self.parties,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "end_reason": self.end_reason, "ids": list(self.ids)}


class CallLister:
    """Feed it every record (:meth:`see`); :meth:`calls` lists the calls
    started in them, oldest first, with how they ended."""

    _STARTS = ("sip.call_started", "mgcp.call_started", "h323.call_started")
    _ENDS = ("sip.call_ended", "mgcp.call_ended", "h323.call_ended")

    def __init__(self) -> None:
        self._by_stream: dict[str, CallSummary] = {}

    def see(self, stream: str, type_: str, payload: Any, at: float) -> None:
        p = payload if isinstance(payload, dict) else {}
        if type_ == "sip.call_started":
            self._by_stream[stream] = CallSummary(
                "sip", str(p.get("call_id")),
                f"{p.get('mode')} {p.get('private_ip') or ''}{' as ' + p['alg_ip'] if p.get('alg_ip') else ''}"
                .strip(), at, ids=[str(p.get("call_id")), str(p.get("public_call_id")), str(p.get("key"))])
        elif type_ == "mgcp.call_started":
            self._by_stream[stream] = CallSummary("mgcp", str(p.get("call_id")),
                                                  f"gateway {p.get('gateway')}", at,
                                                  ids=[str(p.get("call_id"))])
        elif type_ == "h323.call_started":
            self._by_stream[stream] = CallSummary("h323", str(p.get("key")),
                                                  str(p.get("conn") or p.get("origin") or ""), at,
                                                  ids=[str(p.get("key"))])
        elif type_ in self._ENDS:
            s = self._by_stream.get(stream)
            if s is not None and s.ended_at is None:
                s.ended_at, s.end_reason = at, str(p.get("reason"))

    def calls(self) -> list[CallSummary]:
        return sorted(self._by_stream.values(), key=lambda s: s.started_at)


# --- building the ladder ----------------------------------------------------

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


def build(records: Iterable[tuple[int, float, Any]]) -> Ladder | None:
    """The ladder of one call from its events (``(seq, timestamp, event)``,
    as :class:`CallFilter` selected them, in journal order). None when they
    hold no call start (the call began before the oldest record kept)."""
    recs = list(records)
    types = {type(ev).TYPE for _s, _t, ev in recs}
    if "sip.call_started" in types:
        return _sip(recs)
    if "mgcp.call_started" in types or any(t.startswith("mgcp.") for t in types):
        return _mgcp(recs)
    if "h323.call_started" in types:
        return _h323(recs)
    return None


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


# --- text drawing -----------------------------------------------------------

WIDTH = 34          # characters between two columns


def render_text(ladder: Ladder, *, clock=None) -> str:
    """The ladder drawn in text: one lifeline per column, one row per step
    (a message as an arrow, a note at its column), the time on the left.
    ``clock(at) -> str`` formats a time (default: seconds since the call's
    first record)."""
    t0 = ladder.steps[0].at if ladder.steps else 0.0
    fmt = clock or (lambda at: f"+{at - t0:9.3f}s")
    ncol = len(ladder.columns)
    xs = [i * WIDTH + WIDTH // 2 for i in range(ncol)]
    width = ncol * WIDTH
    pad = max([len(fmt(st.at)) for st in ladder.steps] + [len(fmt(t0))]) + 2

    def blank() -> list[str]:
        row = [" "] * width
        for x in xs:
            row[x] = "|"
        return row

    lines = [f"{ladder.protocol.upper()} call {ladder.call}"
             + (f" (also {', '.join(i for i in ladder.ids if i != ladder.call)})"
                if len(ladder.ids) > 1 else "")]
    for p, q in ladder.nat:
        lines.append(f"  NAT {p} = {q}")
    head = [" "] * width
    for x, name in zip(xs, ladder.columns):
        name = name[:WIDTH - 2]
        s = max(0, x - len(name) // 2)
        head[s:s + len(name)] = name
    lines.append(" " * pad + "".join(head).rstrip())
    lines.append(" " * pad + "".join(blank()).rstrip())
    col = {c: i for i, c in enumerate(ladder.columns)}
    for st in ladder.steps:
        row = blank()
        if st.kind in ("message", "media") and st.src != st.dst:
            a, b = xs[col[st.src]], xs[col[st.dst]]
            lo, hi = min(a, b), max(a, b)
            for x in range(lo + 1, hi):
                row[x] = "-" if st.kind == "message" else "="
            if st.kind == "media":             # media flows both ways
                row[lo + 1], row[hi - 1] = "<", ">"
            elif b > a:
                row[hi - 1] = ">"
            else:
                row[lo + 1] = "<"
            label = f" {st.label} "[:hi - lo - 3]
            s = lo + 1 + max(1, (hi - lo - len(label)) // 2)
            row[s:s + len(label)] = label
            text = "".join(row).rstrip()
            extra = []
            if st.before:
                extra.append(st.before)
            if st.after and st.after != st.before:
                extra.append(f"as {st.after}")
            if st.kind == "media" and st.detail:
                extra.append(st.detail)
            lines.append(f"{fmt(st.at):<{pad}}{text}" + (f"   {' / '.join(extra)}" if extra else ""))
        else:
            x = xs[col.get(st.src, col.get(GATEWAY, 0))]
            note = f"[{st.label}]"
            s = max(0, min(x - 1, width - len(note)))
            row[s:s + len(note)] = note
            text = "".join(row).rstrip()
            lines.append(f"{fmt(st.at):<{pad}}{text}" + (f"   {st.detail}" if st.detail else ""))
    if ladder.ended_at is not None:
        lines.append(f"ended: {ladder.end_reason}")
    return "\n".join(lines) + "\n"
