"""MGCP ALG throughput: parse + decide + rewrite, per message kind, on one core.

Each call is CRCX with SDP from a call agent behind a MIP (N:, o= and c= are
translated, an even/odd public pair is allocated and two pinholes opened),
its 200 response with the gateway's SDP (connection created, two more
pinholes), DLCX (everything closed) and its 250. The messages go through
``gateway.mgcp.alg.step`` with the state carried from one to the next, on top
of a background of calls already established, to show that the cost per
message does not grow with the number of calls (immutables.Map state).

Baselines measured in the same run, printed beside it so that the ratio says
something on a noisy, shared machine: ``parse_datagram`` alone, and
``bytes.split(b"\\r\\n")`` over the same message.

Run: .venv/bin/python bench/bench_mgcp.py [calls-per-round] [background-calls ...]"""

from __future__ import annotations

import sys
import time

from gateway.mgcp.alg import EMPTY, MgcpContext, step
from gateway.mgcp.message import parse_datagram

CA, MIP, GW = ("10.1.1.101", 2727), ("3.3.3.101", 2727), ("3.3.3.110", 2427)
TO_GW = MgcpContext("outbound", CA, GW, nat_src=MIP, role="call-agent")
TO_CA = MgcpContext("inbound", GW, MIP, nat_dst=CA, role="gateway")


def _sdp(ip: str, port: int) -> bytes:
    return (f"v=0\r\no=- 25678 753849 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 96\r\na=rtpmap:96 G726-32/8000\r\n").encode()


def call(n: int) -> list[tuple[str, MgcpContext, bytes]]:
    cid = f"{n:X}"
    ep = f"aaln/{n % 64}@[3.3.3.110]"
    t = 4 * n + 1
    return [
        ("CRCX+SDP", TO_GW, (f"CRCX {t} {ep} MGCP 1.0\r\nC: {cid}\r\nN: ca@[10.1.1.101]:2727\r\n"
                             "L: p:10, a:PCMU\r\nM: sendrecv\r\nX: 0123456789AD\r\nR: L/hd\r\n\r\n").encode()
         + _sdp("10.1.1.101", 16384 + 2 * (n % 1000))),
        ("200+SDP", TO_CA, f"200 {t} OK\r\nI: {cid}\r\n\r\n".encode() + _sdp("3.3.3.110", 5000)),
        ("DLCX", TO_GW, f"DLCX {t + 1} {ep} MGCP 1.0\r\nC: {cid}\r\nI: {cid}\r\n".encode()),
        ("250", TO_CA, f"250 {t + 1} OK\r\n".encode()),
    ]


def background(count: int, now: float):
    """``count`` established calls (CRCX + 200, not deleted)."""
    state = EMPTY
    for n in range(10_000_000, 10_000_000 + count):
        for _, ctx, data in call(n)[:2]:
            r = step(state, ctx, data, now)
            assert r.verdict == "forward", r.reason
            state = r.state
        now += 6e-3                           # stay under the CRCX flood threshold
    return state, now


def run(calls: int, bg: int) -> dict[str, tuple[float, float, float]]:
    state, now = background(bg, 0.0)
    msgs = [m for n in range(calls) for m in call(n)]
    spent: dict[str, float] = {}
    parse: dict[str, float] = {}
    split: dict[str, float] = {}
    count: dict[str, int] = {}
    pc = time.perf_counter
    for kind, ctx, data in msgs:
        now += 2e-3
        t0 = pc()
        r = step(state, ctx, data, now)
        t1 = pc()
        parse_datagram(data)
        t2 = pc()
        data.split(b"\r\n")
        t3 = pc()
        if r.verdict != "forward":
            raise SystemExit(f"{kind} dropped: {r.reason}")
        state = r.state
        spent[kind] = spent.get(kind, 0.0) + (t1 - t0)
        parse[kind] = parse.get(kind, 0.0) + (t2 - t1)
        split[kind] = split.get(kind, 0.0) + (t3 - t2)
        count[kind] = count.get(kind, 0) + 1
    return {k: (count[k] / spent[k], count[k] / parse[k], count[k] / split[k]) for k in spent}


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    backgrounds = [int(x) for x in sys.argv[2:]] or [0, 10_000]
    print(f"MGCP ALG step (parse + flood + state + NAT rewrite + pinholes), {calls} calls per round")
    print(f"{'background':>10} {'message':<9} {'step msg/s':>11} {'parse msg/s':>12} {'split msg/s':>12}"
          f" {'step/parse':>10} {'step/split':>10}")
    for bg in backgrounds:
        for kind, (s, p, b) in run(calls, bg).items():
            print(f"{bg:>10} {kind:<9} {s:>11,.0f} {p:>12,.0f} {b:>12,.0f} {s / p:>10.2f} {s / b:>10.3f}")


if __name__ == "__main__":
    main()
