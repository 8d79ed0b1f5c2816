"""The MGCP ALG's state is the fold of its events: after every step, timer
and media report of random valid message sequences (two gateways, one behind
a MIP'd call agent, one without NAT), ``durable(state)`` equals the fold of
every event emitted from the empty state, and the state's indexes agree."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import HealthCheck, event, given, settings, strategies as st

from gateway.config.model import MgcpSettings
from gateway.events import decode
from gateway.mgcp.alg import EMPTY, MgcpContext, media_activity, on_timer, step
from gateway.mgcp.state import durable, fold

CA = ("10.1.1.101", 2727)
MIP = ("3.3.3.101", 2727)
GWS = {
    "asia": (MgcpContext("outbound", CA, ("3.3.3.110", 2427), nat_src=MIP, role="call-agent",
                         media_nat=lambda h: "3.3.3.10" if h.startswith("2.2.2.") else None),
             MgcpContext("inbound", ("3.3.3.110", 2427), MIP, nat_dst=CA, role="gateway"),
             "3.3.3.110"),
    "sf": (MgcpContext("none", CA, ("2.2.2.201", 2427), role="call-agent"),
           MgcpContext("none", ("2.2.2.201", 2427), CA, role="gateway"), "2.2.2.201"),
}
CALLS = ["A1", "A2", "B7"]
CONNS = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"]
SETTINGS = MgcpSettings(transaction_timeout=5, inactive_media_timeout=8, max_call_duration=40,
                        message_flood_threshold=50, connection_flood_threshold=10)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def sdp(ip: str, port: int) -> str:
    return f"\nv=0\no=- 1 1 IN IP4 {ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\nm=audio {port} RTP/AVP 0\n"


media_ip = st.sampled_from(["2.2.2.201", "3.3.3.110", "10.1.1.101", "0.0.0.0", "3.3.3.10"])
tid = st.integers(min_value=1, max_value=12)
crcx = st.tuples(st.just("crcx"), st.sampled_from(list(GWS)), tid, st.sampled_from(CALLS),
              st.one_of(st.none(), st.tuples(media_ip, st.integers(1000, 1010))))
ops = st.one_of(
    crcx, crcx,
    st.tuples(st.just("mdcx"), st.sampled_from(list(GWS)), tid, st.sampled_from(CALLS), st.sampled_from(CONNS),
              st.one_of(st.none(), st.tuples(media_ip, st.integers(1000, 1010)))),
    st.tuples(st.just("dlcx"), st.sampled_from(list(GWS)), tid, st.sampled_from(CALLS + [None]),
              st.sampled_from(CONNS + [None]), st.booleans()),
    st.tuples(st.just("resp"), st.sampled_from(list(GWS)), tid, st.sampled_from([0, 100, 200, 250, 510]),
              st.sampled_from(CONNS + [None]), st.booleans(),
              st.one_of(st.none(), st.tuples(media_ip, st.integers(1000, 1010)))),
    st.tuples(st.just("rqnt"), st.sampled_from(list(GWS)), tid, st.booleans()),
    st.tuples(st.just("ntfy"), st.sampled_from(list(GWS)), tid),
    st.tuples(st.just("rsip"), st.sampled_from(list(GWS)), tid,
              st.sampled_from(["forced", "graceful", "restart", "disconnected", "cancel-graceful"]),
              st.booleans()),
    st.tuples(st.just("auep"), st.sampled_from(list(GWS)), tid, st.booleans()),
    st.tuples(st.just("answer"), st.integers(0, 3), st.just(200), st.sampled_from(CONNS),
              st.one_of(st.none(), st.tuples(media_ip, st.integers(1000, 1010)))),
    st.tuples(st.just("answer"), st.integers(0, 50), st.sampled_from([0, 100, 200, 200, 200, 250, 510]),
              st.sampled_from(CONNS), st.one_of(st.none(), st.tuples(media_ip, st.integers(1000, 1010)))),
    st.tuples(st.just("live"), st.integers(0, 50), st.sampled_from(["MDCX", "DLCX", "DLCX-gw", "AUCX"]),
              st.one_of(st.none(), st.tuples(media_ip, st.integers(1000, 1010)))),
    st.tuples(st.just("live"), st.integers(0, 50), st.just("MDCX"),
              st.tuples(media_ip, st.integers(1000, 1010))),
    st.tuples(st.just("time"), st.floats(min_value=0.0, max_value=12.0)),
    st.tuples(st.just("media"), st.integers(0, 20)),
)


def answer(state, op) -> tuple[MgcpContext, bytes] | None:
    """A response to one of the transactions in the state (or its 000)."""
    _, idx, code, conn, media = op
    # Mostly answer what waits for an answer (acknowledge what was answered).
    txns = sorted(k for k, t in state.txns.items() if t.final == (code == 0)) or sorted(state.txns)
    if not txns:
        return None
    gwip, origin, t = txns[idx % len(txns)]
    name = next(k for k, v in GWS.items() if v[2] == gwip)
    to_gw, from_gw, _ = GWS[name]
    by_gw = origin == "call-agent"
    if code == 0:
        by_gw = not by_gw
    lines = f"I: {conn}\n" if conn else ""
    body = sdp(*media) if media else ""
    return (from_gw if by_gw else to_gw), crlf(f"{code:03d} {t} OK\n{lines}{body}")


def live(state, op, n: int) -> tuple[MgcpContext, bytes] | None:
    """A command for one of the connections in the state."""
    conns = sorted(state.conn_index.items())
    if not conns:
        return None
    _, idx, verb, media = op
    (gwip, conn), call = conns[idx % len(conns)]
    name = next(k for k, v in GWS.items() if v[2] == gwip)
    to_gw, from_gw, _ = GWS[name]
    body = sdp(*media) if media and verb == "MDCX" else ""
    ctx = from_gw if verb == "DLCX-gw" else to_gw
    verb = verb.split("-")[0]
    return ctx, crlf(f"{verb} {n} aaln/1@[{gwip}] MGCP 1.0\nC: {call}\nI: {conn}\n{body}")


def datagram(op) -> tuple[MgcpContext, bytes]:
    kind, g = op[0], op[1]
    to_gw, from_gw, gwip = GWS[g]
    ep = f"aaln/1@[{gwip}]"
    if kind == "crcx":
        _, _, t, call, media = op
        body = sdp(*media) if media else ""
        return to_gw, crlf(f"CRCX {t} {ep} MGCP 1.0\nC: {call}\nM: sendrecv\n{body}")
    if kind == "mdcx":
        _, _, t, call, conn, media = op
        body = sdp(*media) if media else ""
        return to_gw, crlf(f"MDCX {t} {ep} MGCP 1.0\nC: {call}\nI: {conn}\n{body}")
    if kind == "dlcx":
        _, _, t, call, conn, by_gw = op
        lines = (f"C: {call}\n" if call else "") + (f"I: {conn}\n" if conn else "")
        return (from_gw if by_gw else to_gw), crlf(f"DLCX {t} {ep} MGCP 1.0\n{lines}")
    if kind == "resp":
        _, _, t, code, conn, by_gw, media = op
        lines = f"I: {conn}\n" if conn else ""
        body = sdp(*media) if media else ""
        return (from_gw if by_gw else to_gw), crlf(f"{code:03d} {t} OK\n{lines}{body}")
    if kind == "rqnt":
        _, _, t, wild = op
        return to_gw, crlf(f"RQNT {t} {'*@[' + gwip + ']' if wild else ep} MGCP 1.0\nX: 1\n")
    if kind == "ntfy":
        return from_gw, crlf(f"NTFY {op[2]} {ep} MGCP 1.0\nX: 1\nO: L/hd\n")
    if kind == "rsip":
        _, _, t, method, wild = op
        return from_gw, crlf(f"RSIP {t} {'*@[' + gwip + ']' if wild else ep} MGCP 1.0\nRM: {method}\n")
    if kind == "auep":
        _, _, t, wild = op
        return to_gw, crlf(f"AUEP {t} {'*@[' + gwip + ']' if wild else ep} MGCP 1.0\n")
    raise AssertionError(op)


def events_of(seq) -> list:
    """The MGCP ALG's events for an operation sequence of :data:`ops`: commands,
    answers and calls stepped, media reported, timers fired when due (the
    node's order), for the tests that need a real MGCP event history."""
    state, events, now, n, timers = EMPTY, [], 100.0, 100, {}
    for op in seq:
        results = []
        if op[0] == "time":
            now += op[1]
            for key, due in sorted(timers.items(), key=lambda kv: kv[1]):
                if due <= now and timers.get(key) == due:
                    del timers[key]
                    results.append(on_timer(state, key, now, SETTINGS))
                    state = results[-1].state
        elif op[0] == "media":
            groups = sorted(state.group_index)
            if groups:
                results.append(media_activity(state, groups[op[1] % len(groups)], now, SETTINGS))
        else:
            now += 0.01
            if op[0] == "answer":
                got = answer(state, op)
            elif op[0] == "live":
                n += 1
                got = live(state, op, n)
            else:
                got = datagram(op)
            if got is not None:
                results.append(step(state, *got, now, SETTINGS))
        for r in results:
            state = r.state
            events += r.events
            for t in r.timers:
                if t.deadline is None:
                    timers.pop(t.key, None)
                else:
                    timers[t.key] = t.deadline
    return events


def check_indexes(state) -> None:
    groups = {}
    for (gw, cid), call in state.calls.items():
        for g in call.groups.values():
            groups[g.group] = (gw, cid)
            if g.public_port is not None:
                a = IPv4Address(g.public_ip)
                assert state.ports_in_use[(a, g.public_port)] == g.group
                assert state.ports_in_use[(a, g.public_port + 1)] == g.group
        for p in call.pinholes.values():
            assert p.group in call.groups
        for conn in call.connections:
            assert state.conn_index[(gw, conn)] == cid
    assert dict(state.group_index.items()) == groups
    assert set(state.ports_in_use.values()) <= set(groups)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=15, max_size=50))
def test_state_is_the_fold_of_the_events(seq):
    state, events, now, n = EMPTY, [], 100.0, 100
    timers: dict[str, float] = {}
    for op in seq:
        if op[0] == "time":
            now += op[1]
            for key, _ in sorted(timers.items(), key=lambda kv: kv[1]):
                due = timers.get(key)
                if due is not None and due <= now:
                    del timers[key]
                    r = on_timer(state, key, now, SETTINGS)
                    state = r.state
                    events += r.events
                    for t in r.timers:
                        if t.deadline is None:
                            timers.pop(t.key, None)
                        else:
                            timers[t.key] = t.deadline
            results = []
        elif op[0] == "media":
            groups = sorted(state.group_index)
            if not groups:
                continue
            r = media_activity(state, groups[op[1] % len(groups)], now, SETTINGS)
            results = [r]
        else:
            now += 0.01
            if op[0] == "answer":
                got = answer(state, op)
            elif op[0] == "live":
                n += 1
                got = live(state, op, n)
            else:
                got = datagram(op)
            if got is None:
                continue
            ctx, data = got
            r = step(state, ctx, data, now, SETTINGS)
            results = [r]
            if r.verdict == "drop":
                assert r.reason and not r.events and durable(r.state) == durable(state)
        for r in results:
            state = r.state
            events += r.events
            for t in r.timers:
                if t.deadline is None:
                    timers.pop(t.key, None)
                else:
                    timers[t.key] = t.deadline
        assert durable(state) == fold(events)
        check_indexes(state)
    for e in events:
        event(type(e).__name__)
    # The journal form round-trips: decode(payload) folds to the same state.
    again = [decode(e.TYPE, e.SCHEMA, e.to_payload()) for e in events]
    assert fold(again) == durable(state)
