"""Packet codec speed beside scapy, measured in the same run.

    .venv/bin/python bench/bench_codec.py [--seconds 0.3]

Prints operations per second and the speed-up over scapy for: header parse of a
UDP and a TCP packet, a NAT rewrite (address + port, incremental checksums), a
payload rewrite (lengths and checksums recomputed) and a UDP build."""

from __future__ import annotations

import argparse
import timeit

from scapy.all import IP, TCP, UDP, Raw  # type: ignore[attr-defined]

from gateway.packet import ACK, PSH, build_tcp, build_udp, parse, rewrite

SIP_LIKE = b"INVITE sip:bob@example.com SIP/2.0\r\n" + b"X-Filler: " + b"a" * 500 + b"\r\n\r\n"


def rate(fn, seconds: float) -> float:
    """Calls per second of ``fn``, best of 3 runs of about ``seconds`` each."""
    n = 1
    while True:
        t = timeit.timeit(fn, number=n)
        if t >= seconds / 10:
            break
        n *= 4
    n = max(1, int(n * seconds / max(t, 1e-9)))
    best = min(timeit.repeat(fn, number=n, repeat=3))
    return n / best


def scapy_rewrite(raw: bytes) -> bytes:
    p = IP(raw)
    p.src = "203.0.113.7"
    p[UDP].sport = 40000
    del p.chksum
    del p[UDP].chksum
    return bytes(p)


def scapy_payload(raw: bytes, payload: bytes) -> bytes:
    p = IP(raw)
    p[UDP].remove_payload()
    p[UDP].add_payload(Raw(payload))
    del p.chksum, p.len, p[UDP].chksum, p[UDP].len
    return bytes(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.3)
    s = ap.parse_args().seconds
    udp = build_udp("192.168.1.2", "10.0.0.5", 5060, 5060, SIP_LIKE)
    tcp = build_tcp("192.168.1.2", "10.0.0.5", 40000, 1720, 1000, 2000, ACK | PSH, SIP_LIKE[:200],
                    options=b"\x01\x01\x08\x0a" + bytes(8))
    pu = parse(udp)
    longer = SIP_LIKE.replace(b"bob@example.com", b"bob@[203.0.113.200]")
    rows = [
        ("parse UDP", lambda: parse(udp), lambda: IP(udp)),
        ("parse TCP", lambda: parse(tcp), lambda: IP(tcp)),
        ("parse + NAT rewrite (src, sport)", lambda: rewrite(parse(udp), src="203.0.113.7", sport=40000),
         lambda: scapy_rewrite(udp)),
        ("NAT rewrite of a parsed packet", lambda: rewrite(pu, src=0xCB007107, sport=40000), None),
        ("payload rewrite (recompute)", lambda: rewrite(parse(udp), payload=longer),
         lambda: scapy_payload(udp, longer)),
        ("build UDP", lambda: build_udp(0xC0A80102, 0x0A000005, 5060, 5060, SIP_LIKE),
         lambda: bytes(IP(src="192.168.1.2", dst="10.0.0.5") / UDP(sport=5060, dport=5060) / Raw(SIP_LIKE))),
    ]
    print(f"{'operation':36} {'ours/s':>12} {'us/op':>8} {'scapy/s':>10} {'ratio':>8}")
    for name, ours, theirs in rows:
        r = rate(ours, s)
        if theirs is None:
            print(f"{name:36} {r:12,.0f} {1e6 / r:8.2f} {'-':>10} {'-':>8}")
            continue
        t = rate(theirs, s)
        print(f"{name:36} {r:12,.0f} {1e6 / r:8.2f} {t:10,.0f} {r / t:7.0f}x")


if __name__ == "__main__":
    main()
