"""Per-gateway MGCP message and connection flood control (manual ch. 3
"MGCP Security"): a flooding gateway's excess is dropped with a reason while
other gateways' calls proceed; the counters are soft state (not events)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from gateway.config.model import MgcpSettings
from gateway.mgcp.alg import EMPTY, MgcpContext, step
from gateway.mgcp.flood import FloodCounters, Window, admit
from gateway.mgcp.state import durable, fold

CA = ("10.1.1.101", 2727)
GW_A = ("2.2.2.10", 2427)
GW_B = ("2.2.2.20", 2427)


def ctx(src, dst, role):
    return MgcpContext("none", src, dst, role=role)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def test_gateway_a_floods_messages_gateway_b_call_proceeds():
    s = MgcpSettings(message_flood_threshold=100)
    state, events = EMPTY, []
    forwarded = dropped = 0
    reasons = set()
    b_verdicts = []
    t0 = 50.0
    for i in range(600):                       # gateway A: 300 NTFY/s for 2 s
        now = t0 + i / 300
        r = step(state, ctx(GW_A, CA, "gateway"), crlf(f"NTFY {i + 1} aaln/1@a.net MGCP 1.0\nX: 1\nO: L/hu\n"),
                 now, s)
        state = r.state
        events += r.events
        if r.verdict == "forward":
            forwarded += 1
        else:
            dropped += 1
            reasons.add(r.reason)
        if i % 60 == 30:
            # Gateway B's call, interleaved with the flood.
            n = i + 10_000
            for c, data in ((ctx(CA, GW_B, "call-agent"),
                             crlf(f"CRCX {n} aaln/1@b.net MGCP 1.0\nC: {n:X}\nM: recvonly\n")),
                            (ctx(GW_B, CA, "gateway"), crlf(f"200 {n} OK\nI: {n:X}\n")),
                            (ctx(GW_B, CA, "gateway"), crlf(f"NTFY {n + 1} aaln/1@b.net MGCP 1.0\nX: 2\nO: L/hd\n")),
                            (ctx(CA, GW_B, "call-agent"), crlf(f"200 {n + 1} OK\n")),
                            (ctx(CA, GW_B, "call-agent"),
                             crlf(f"DLCX {n + 2} aaln/1@b.net MGCP 1.0\nC: {n:X}\nI: {n:X}\n"))):
                r = step(state, c, data, now, s)
                state = r.state
                events += r.events
                b_verdicts.append((r.verdict, r.reason))
    assert all(v == "forward" for v, _ in b_verdicts), b_verdicts
    # About the threshold per second of A's messages pass (sliding window
    # estimate: within 10 %), the rest is dropped with the reason.
    assert 2 * 100 * 0.9 <= forwarded <= 2 * 100 * 1.1 + 1
    assert dropped == 600 - forwarded
    assert reasons == {"MGCP message flood: more than 100 messages/s from this gateway (gateway 2.2.2.10)"}
    # Soft state: in the state, not in the events.
    assert state.flood and durable(state) == fold(events)


def test_connection_flood_is_per_gateway():
    s = MgcpSettings(connection_flood_threshold=20, message_flood_threshold=10_000)
    state = EMPTY
    passed = {"A": 0, "B": 0}
    for i in range(100):                        # 100 CRCX/s to A, 10/s to B
        now = 10.0 + i / 100
        for name, gw, every in (("A", GW_A, 1), ("B", GW_B, 10)):
            if i % every:
                continue
            n = i + 1
            r = step(state, ctx(CA, gw, "call-agent"),
                     crlf(f"CRCX {n} aaln/1@x.net MGCP 1.0\nC: {n:X}\nM: recvonly\n"), now, s)
            state = r.state
            if r.verdict == "forward":
                passed[name] += 1
            else:
                assert "MGCP connection flood: more than 20 CRCX/s" in r.reason
    assert passed["B"] == 10
    assert 18 <= passed["A"] <= 22


def test_window_slides():
    w = Window()
    for i in range(10):
        w = w.counted(5.0 + i / 10)
    assert w.rate(5.95) == pytest.approx(10)
    # Half a second into the next bucket, half of the previous one still counts.
    assert w.rate(6.5) == pytest.approx(5)
    assert w.rate(7.5) == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=200),
       st.integers(min_value=1, max_value=30))
def test_admitted_rate_never_exceeds_threshold_per_window(offsets, threshold):
    times = sorted(offsets)
    c: FloodCounters | None = None
    admitted = []
    for t in times:
        c2, reason = admit(c, t, is_crcx=False, count_message=True, message_threshold=threshold,
                           connection_threshold=1)
        if reason is None:
            admitted.append(t)
            c = c2
    # Within any aligned one-second bucket no more than the threshold pass.
    from collections import Counter
    import math
    assert max(Counter(math.floor(t) for t in admitted).values()) <= threshold
