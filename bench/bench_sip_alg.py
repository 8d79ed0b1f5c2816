"""SIP ALG throughput: parse + decide + rewrite (``gateway.sip.alg.step``)
per message kind, on one core, with 0, 1,000 and 10,000 established calls
already in the state.

Each case runs ``step`` on the state the message meets in a real call
(Figure 8/9 addresses): an INVITE with SDP creating a call (bindings, an
even/odd pair, pinholes), the 200 OK with SDP answering it, the ACK, the
BYE. The background calls are built through ``step`` as well (INVITE, 200
OK, ACK each, all from phones using the same private RTP port, so the ALG's
pair allocation meets every pair already held). Beside it, measured in the
same run on the same bytes: the parser alone (``parse_message``) and a
trivial baseline (``bytes.split``); and the step's microseconds, with the
parse and with the message parsed beforehand (the ALG's own work). The
ratios are what to compare across machines; absolute numbers move with the load of a shared machine. A step
cost that grows with the number of calls shows as a falling ``alg/parse``
ratio down a column.

Run: .venv/bin/python bench/bench_sip_alg.py [seconds-per-case] [calls,calls,...]"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from gateway.sip import parse_message
from gateway.sip import alg as sip_alg
from gateway.sip.alg import EMPTY, SipContext, step

PH1, ALG, PH2 = "5.5.5.1", "6.6.6.1", "6.6.6.2"
OUT = SipContext("outbound", (PH1, 5060), (PH2, 5060), nat_src=(ALG, 1234))
IN = SipContext("inbound", (PH2, 5060), (ALG, 1234), nat_dst=(PH1, 5060))
CALL_ID = "a84b4c76e66710"


def _sdp(addr: str, port: int) -> bytes:
    return (f"v=0\r\no=u 2890844526 2890844526 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n").encode()


def _msg(start: str, headers: str, body: bytes = b"") -> bytes:
    head = start + "\r\n" + headers + "Max-Forwards: 70\r\nUser-Agent: bench/1.0\r\n"
    if body:
        head += "Content-Type: application/sdp\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _hdrs(via: str, frm: str, to: str, cid: str, cseq: str, contact: str) -> str:
    return (f"Via: SIP/2.0/UDP {via};branch=z9hG4bK{cseq.split()[0]}\r\nFrom: <sip:ph1@{frm}>;tag=a\r\n"
            f"To: <sip:ph2@{PH2}>{to}\r\nCall-ID: {CALL_ID}@{cid}\r\nCSeq: {cseq}\r\n"
            f"Contact: <sip:{contact}>\r\n")


INVITE = _msg(f"INVITE sip:ph2@{PH2} SIP/2.0",
              _hdrs(f"{PH1}:5060", PH1, "", PH1, "1 INVITE", f"ph1@{PH1}:5060"), _sdp(PH1, 16384))
OK = _msg("SIP/2.0 200 OK",
          _hdrs(f"{ALG}:1234", ALG, ";tag=b", ALG, "1 INVITE", f"ph2@{PH2}:5060"), _sdp(PH2, 62002))
ACK = _msg(f"ACK sip:ph2@{PH2}:5060 SIP/2.0",
           _hdrs(f"{PH1}:5060", PH1, ";tag=b", PH1, "1 ACK", f"ph1@{PH1}:5060"))
BYE = _msg(f"BYE sip:ph2@{PH2}:5060 SIP/2.0",
           _hdrs(f"{PH1}:5060", PH1, ";tag=b", PH1, "2 BYE", f"ph1@{PH1}:5060"))


def _with_call_id(data: bytes, cid: str) -> bytes:
    # Content-Length counts the body only: the header may change length.
    return data.replace(CALL_ID.encode(), cid.encode())


def background(n: int, now: float = 1.0):
    """A state holding ``n`` established calls (INVITE, 200 OK, ACK each)."""
    s = EMPTY
    for i in range(n):
        cid = f"bg{i:07d}"
        for ctx, data in ((OUT, INVITE), (IN, OK), (OUT, ACK)):
            r = step(s, ctx, _with_call_id(data, cid), now)
            assert r.verdict == "forward", r.reason
            s = r.state
    return s


def _states(base):
    s0 = base
    s1 = step(s0, OUT, INVITE, 1.0).state
    s2 = step(s1, IN, OK, 2.0).state
    s3 = step(s2, OUT, ACK, 3.0).state
    return {"INVITE+SDP": (s0, OUT, INVITE), "200 OK+SDP": (s1, IN, OK),
            "ACK": (s2, OUT, ACK), "BYE": (s3, OUT, BYE)}


@contextmanager
def _parsed_once(data: bytes):
    """``step`` with the message's parse done once beforehand (the
    ``parsed us`` column): the ALG's own work. Step minus parse measured
    alone understates it: inside a step the parse costs more than alone (the
    ALG's work runs between parses)."""
    msg = parse_message(data)
    real = sip_alg.parse_message
    sip_alg.parse_message = lambda d: msg if d is data else real(d)
    try:
        yield
    finally:
        sip_alg.parse_message = real


def _rate(fn, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def main(seconds: float = 1.0, sizes: tuple[int, ...] = (0, 1000, 10000)) -> None:
    cases = _states(EMPTY)
    parse, split = {}, {}
    for name, (_, _, data) in cases.items():
        parse[name] = _rate(lambda: parse_message(data), seconds)
        split[name] = _rate(lambda: data.split(b"\r\n"), seconds)
    print(f"{'message':<12} {'parse msg/s':>12} {'split msg/s':>12}")
    for name in cases:
        print(f"{name:<12} {parse[name]:>12.0f} {split[name]:>12.0f}")
    print()
    print(f"{'message':<12} {'calls':>6} {'alg msg/s':>10} {'alg/parse':>10} {'alg/split':>10} "
          f"{'vs 0 calls':>10} {'step us':>8} {'parsed us':>10}")
    flat: dict[str, float] = {}
    for n in sizes:
        t0 = time.perf_counter()
        base = background(n)
        built = time.perf_counter() - t0
        for name, (state, ctx, data) in _states(base).items():
            r = step(state, ctx, data, 10.0)
            assert r.verdict == "forward", (name, r.reason)
            alg = _rate(lambda: step(state, ctx, data, 10.0), seconds)
            with _parsed_once(data):
                given = _rate(lambda: step(state, ctx, data, 10.0), seconds)
            flat.setdefault(name, alg)
            print(f"{name:<12} {n:>6} {alg:>10.0f} {alg / parse[name]:>10.3f} "
                  f"{alg / split[name]:>10.4f} {alg / flat[name]:>10.3f} {1e6 / alg:>8.1f} "
                  f"{1e6 / given:>10.1f}")
        print(f"  ({n} background calls built through step in {built:.1f} s, "
              f"{3 * n / built if built else 0:.0f} msg/s)")


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    sizes = tuple(int(x) for x in sys.argv[2].split(",")) if len(sys.argv) > 2 else (0, 1000, 10000)
    main(secs, sizes)
