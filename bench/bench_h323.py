"""H.323 ALG throughput: parse + decide + rewrite, per message kind, on one core.

The corpus capture's messages, readdressed to the manual's "Outgoing Calls
with NAT" (IP_Phone1 10.1.1.5 behind MIP 1.1.1.5 calling 2.2.2.5): Setup
outbound (sourceCallSignalAddress rewritten), Connect inbound with an
h245Address (H.245 pinhole), OpenLogicalChannelAck outbound (two addresses
rewritten, RTP/RTCP pinholes), RAS ARQ outbound (a transaction). Each is run
through ``gateway.h323.alg.step`` from the same state, so every round does the
same work.

Baseline in the same run, printed beside it as a ratio (a noisy shared box):
pycrate's plain aligned-PER decode of the same PDU, the floor of any
approach that decodes the ASN.1.

Run: .venv/bin/python bench/bench_h323.py [seconds-per-case]"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gateway.h323 import per
from gateway.h323.alg import H323Context, step
from gateway.h323.h245 import parse_h245
from gateway.h323.nat import address_edit
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from gateway.h323.state import EMPTY
from gateway.span import apply_edits

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap" / "h323.pcap"


def frames() -> dict[int, bytes]:
    from scapy.all import IP, TCP, UDP, rdpcap
    out = {}
    for n, p in enumerate(rdpcap(str(CORPUS)), 1):
        if IP in p and (TCP in p or UDP in p):
            ip = p[IP]
            raw = bytes(ip)[:ip.len]
            out[n] = raw[ip.ihl * 4 + (p[TCP].dataofs * 4 if TCP in p else 8):]
    return out


def readdress(data, parse, mapping):
    msg = parse(data)
    return apply_edits(data, [address_edit(a, *mapping[(str(a.ip), a.port)])
                              for a in msg.addresses if (str(a.ip), a.port) in mapping])


def rate(fn, seconds: float) -> float:
    n = 0
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while True:
        for _ in range(50):
            fn()
        n += 50
        if time.perf_counter() >= end:
            return n / (time.perf_counter() - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    f = frames()
    setup = readdress(f[6], parse_call_signal, {("10.1.3.143", 32803): ("10.1.1.5", 32803),
                                                ("10.1.6.18", 1720): ("2.2.2.5", 1720)})
    connect = readdress(f[18], parse_call_signal, {("10.1.6.18", 1232): ("2.2.2.5", 1232)})
    ack = readdress(f[41], parse_h245, {("10.1.3.143", 5000): ("10.1.1.5", 5000),
                                        ("10.1.3.143", 5001): ("10.1.1.5", 5001)})
    arq = readdress(f[63], parse_ras, {("17.2.0.122", 1720): ("2.2.2.5", 1720)})
    out = H323Context("q931", "outbound", ("10.1.1.5", 32803), ("2.2.2.5", 1720), nat_src=("1.1.1.5", 32803))
    inb = H323Context("q931", "inbound", ("2.2.2.5", 1720), ("1.1.1.5", 32803), nat_dst=("10.1.1.5", 32803),
                      conn=out.connection())
    h245 = H323Context("h245", "outbound", ("10.1.1.5", 40000), ("2.2.2.5", 1232), nat_src=("1.1.1.5", 40000))
    ras = H323Context("ras", "outbound", ("10.1.1.5", 1719), ("2.2.2.25", 1719), nat_src=("1.1.1.5", 1719))
    s1 = step(EMPTY, out, setup, 0.0).state
    s2 = step(s1, inb, connect, 1.0).state
    uu = lambda m: m[m.index(b"\x7e", 4) + 4:]    # noqa: E731 -- the UUIE's PER octets
    cases = [
        ("Setup (MIP, 1 rewrite)", lambda: step(EMPTY, out, setup, 0.0), per.USER_INFORMATION, uu(setup)),
        ("Connect + h245Address", lambda: step(s1, inb, connect, 1.0), per.USER_INFORMATION, uu(connect)),
        ("OLCAck (2 rewrites)", lambda: step(s2, h245, ack, 2.0), per.H245_MESSAGE, ack[4:]),
        ("RAS ARQ", lambda: step(EMPTY, ras, arq, 0.0), per.RAS_MESSAGE, arq),
    ]
    for _, fn, _, _ in cases:
        assert fn().verdict == "forward"
    print(f"{'message':26} {'step msg/s':>12} {'pycrate decode/s':>17} {'ratio':>6}")
    for name, fn, obj, pdu in cases:
        alg = rate(fn, seconds)
        base = rate(lambda: (obj.from_aper(pdu), obj.get_val()), seconds)
        print(f"{name:26} {alg:12,.0f} {base:17,.0f} {alg / base:6.2f}x")


if __name__ == "__main__":
    main()
