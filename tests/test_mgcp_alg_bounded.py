"""What hostile MGCP traffic can make the ALG hold, and for how long.

RFC 3435 3.5: a transaction id is remembered for a bounded time (the
manual's transaction timeout, 30 s by default). Before, nothing bounded how
many a source could have open at once, and an endpoint record made by an RSIP
or an N: was never removed: a flood of RSIPs naming ever new endpoints (from
ever new sources) grew the state for good. Now: a per-source cap on
transactions (``set mgcp max-transactions``), endpoint records that last only
if a command naming the endpoint succeeds, and flood counters of idle
gateways forgotten. After a flood and the timeouts, every count of the state
is what it was before."""

from __future__ import annotations

import random

from gateway.config import parse_text
from gateway.config.model import MgcpSettings
from gateway.config.render import render
from gateway.mgcp.alg import EMPTY, MgcpContext, on_timer, step
from gateway.mgcp.state import durable, fold

CA = ("10.1.1.101", 2727)
GW = ("2.2.2.25", 2427)
SETTINGS = MgcpSettings(max_transactions=300, message_flood_threshold=1_000_000,
                        connection_flood_threshold=1_000_000)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def ctx(src, dst, role):
    return MgcpContext("none", src, dst, role=role)


class Flow:
    def __init__(self, settings=SETTINGS):
        self.state, self.events, self.timers, self.settings = EMPTY, [], {}, settings

    def send(self, c, data, now):
        return self.take(step(self.state, c, data, now, self.settings))

    def take(self, r):
        if r.verdict == "forward" or r.events:
            self.events += r.events
        self.state = r.state
        for t in r.timers:
            if t.deadline is None:
                self.timers.pop(t.key, None)
            else:
                self.timers[t.key] = t.deadline
        return r

    def advance(self, now):
        """Every timer due by ``now`` fires, as the node's timers would."""
        while True:
            due = sorted((d, k) for k, d in self.timers.items() if d <= now)
            if not due:
                return
            for d, key in due:
                if self.timers.get(key) == d:
                    del self.timers[key]
                    self.take(on_timer(self.state, key, max(d, 0.0), self.settings))


def counts(state) -> dict[str, int]:
    out = {name: len(getattr(state, name)) for name in (
        "txns", "endpoints", "calls", "group_index", "conn_index", "ports_in_use", "endpoint_counts",
        "txn_counts", "call_counts", "flood")}
    out["connections"] = sum(len(c.connections) for c in state.calls.values())
    out["pinholes"] = sum(len(c.pinholes) for c in state.calls.values())
    return out


SDP = "v=0\no=- 1 1 IN IP4 {ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\nm=audio {port} RTP/AVP 0\n"


def _established() -> tuple[Flow, float]:
    """A confirmed endpoint and an established call of the gateway, its
    transactions over."""
    f = Flow()
    now = 100.0
    assert f.send(ctx(GW, CA, "gateway"), crlf("RSIP 1 aaln/1@gw MGCP 1.0\nRM: restart\n"), now).verdict == "forward"
    assert f.send(ctx(CA, GW, "call-agent"), b"200 1 OK\r\n", now + 0.1).verdict == "forward"
    crcx = "CRCX 2 aaln/1@gw MGCP 1.0\nC: CA11\nN: ca@[10.1.1.101]:2727\nM: sendrecv\n\n" + \
        SDP.format(ip="2.2.2.80", port=4000)
    assert f.send(ctx(CA, GW, "call-agent"), crlf(crcx), now + 0.2).verdict == "forward"
    ok = "200 2 OK\nI: 11\n\n" + SDP.format(ip="2.2.2.25", port=16000)
    assert f.send(ctx(GW, CA, "gateway"), crlf(ok), now + 0.3).verdict == "forward"
    now += 40.0
    f.advance(now)
    assert not f.state.txns and len(f.state.calls) == 1 and len(f.state.endpoints) == 1
    return f, now


def test_hostile_flood_leaves_nothing_once_its_transactions_time_out():
    f, now = _established()
    before = counts(f.state)
    call_before = f.state.calls
    rng = random.Random(3435)
    hostile = [(f"2.2.2.{n}", 2427) for n in range(100, 108)]   # "gateways" sending RSIP
    agents = [(f"10.1.1.{n}", 2727) for n in range(150, 154)]   # "call agents" sending CRCX
    verdicts = {"forward": 0, "drop": 0}
    reasons = set()
    for i in range(6000):
        now += 0.001
        tid = rng.randrange(1, 1_000_000_000)
        kind = rng.random()
        if kind < 0.45:
            src = rng.choice(hostile)
            method = rng.choice(["restart", "forced", "graceful", "disconnected"])
            ep = rng.choice([f"aaln/{rng.randrange(10**6)}@x", "*@x", f"t/{i}/*@x"])
            r = f.send(ctx(src, CA, "gateway"), crlf(f"RSIP {tid} {ep} MGCP 1.0\nRM: {method}\nRD: 5\n"), now)
            if rng.random() < 0.3:
                # The call agent rejects some (500: endpoint unknown).
                f.send(ctx(CA, src, "call-agent"), crlf(f"500 {tid} unknown endpoint\n"), now)
        elif kind < 0.9:
            src = rng.choice(agents)
            body = "\n" + SDP.format(ip=f"7.7.{rng.randrange(256)}.{rng.randrange(256)}",
                                     port=2 * rng.randrange(5000, 30000)) if rng.random() < 0.5 else ""
            n_line = f"N: ca@[{src[0]}]:2727\n" if rng.random() < 0.5 else ""
            r = f.send(ctx(src, GW, "call-agent"),
                       crlf(f"CRCX {tid} aaln/{rng.randrange(10**6)}@gw MGCP 1.0\nC: {tid:X}\n{n_line}"
                            f"M: sendrecv\n{body}"), now)
            if rng.random() < 0.2:
                f.send(ctx(GW, src, "gateway"), crlf(f"510 {tid} no such endpoint\n"), now)
        else:
            r = f.send(ctx(rng.choice(hostile), CA, "gateway"), crlf(f"200 {tid} OK\n"), now)
        verdicts[r.verdict] += 1
        if r.verdict == "drop":
            reasons.add(r.reason.split(";")[0])
        # The cap holds at every moment.
        assert all(n <= SETTINGS.max_transactions for n in f.state.txn_counts.values())
    assert verdicts["forward"] > 2000 and verdicts["drop"] > 1000
    assert any("transactions in progress or remembered" in why for why in reasons), reasons
    assert counts(f.state)["txns"] > 2000 and counts(f.state)["endpoints"] > 100
    # Past the transaction timeout every hostile transaction, endpoint record,
    # pending call, pinhole and flood counter is gone; the call stays.
    f.advance(now + SETTINGS.transaction_timeout + 5)
    assert counts(f.state) == before
    assert f.state.calls == call_before
    assert durable(f.state) == fold(f.events)


def test_confirmed_endpoints_stay_and_rejected_ones_go():
    f = Flow()
    f.send(ctx(GW, CA, "gateway"), crlf("RSIP 10 aaln/1@gw MGCP 1.0\nRM: forced\n"), 1.0)
    f.send(ctx(GW, CA, "gateway"), crlf("RSIP 11 aaln/2@gw MGCP 1.0\nRM: forced\n"), 1.0)
    f.send(ctx(GW, CA, "gateway"), crlf("RSIP 12 aaln/3@gw MGCP 1.0\nRM: forced\n"), 1.0)
    f.send(ctx(CA, GW, "call-agent"), b"200 10 OK\r\n", 1.1)
    f.send(ctx(CA, GW, "call-agent"), b"500 11 unknown endpoint\r\n", 1.1)
    # While its transaction lasts, an endpoint's record counts (the ALG
    # treats aaln/3 as out of service).
    r = f.send(ctx(CA, GW, "call-agent"), crlf("RQNT 20 aaln/3@gw MGCP 1.0\nX: 1\n"), 2.0)
    assert r.verdict == "drop" and "out of service" in r.reason
    f.advance(60.0)
    assert sorted(n for _, n in f.state.endpoints) == ["aaln/1@gw"]
    assert dict(f.state.endpoint_counts) == {"2.2.2.25": 1}
    assert not f.state.txns and not f.state.txn_counts


def test_transaction_cap_is_per_source_and_frees_with_the_timeout():
    s = MgcpSettings(max_transactions=3)
    f = Flow(s)
    ntfy = "NTFY {} aaln/1@gw MGCP 1.0\nX: 1\nO: L/hd\n"
    for tid in (1, 2, 3):
        assert f.send(ctx(GW, CA, "gateway"), crlf(ntfy.format(tid)), 1.0).verdict == "forward"
    r = f.send(ctx(GW, CA, "gateway"), crlf(ntfy.format(4)), 1.0)
    assert r.verdict == "drop" and "2.2.2.25 already has 3 transactions" in r.reason
    # A retransmission of a remembered command still passes; another source
    # has its own allowance.
    assert f.send(ctx(GW, CA, "gateway"), crlf(ntfy.format(2)), 1.5).verdict == "forward"
    other = ("2.2.2.26", 2427)
    assert f.send(ctx(other, CA, "gateway"), crlf(ntfy.format(4)), 1.5).verdict == "forward"
    f.advance(1.0 + s.transaction_timeout)
    assert f.send(ctx(GW, CA, "gateway"), crlf(ntfy.format(5)), 40.0).verdict == "forward"


def test_max_transactions_setting():
    cfg = parse_text("set mgcp max-transactions 500\n")
    assert cfg.mgcp.max_transactions == 500
    assert "set mgcp max-transactions 500" in render(cfg)
    assert parse_text(render(cfg)).mgcp == cfg.mgcp
    assert MgcpSettings().max_transactions == 10000
    assert parse_text("set mgcp max-transactions 500\nunset mgcp max-transactions\n").mgcp.max_transactions == 10000
