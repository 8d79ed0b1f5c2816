"""Shared by the H.323 bound and fuzz tests: run one parse or ALG step and
measure its CPU time and its peak of Python allocations; mutations of valid
messages (byte flips, length octets set high, truncations)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

from gateway.errors import RemoteProtocolError

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap"

# Every input: a result or RemoteProtocolError within this CPU time...
MAX_SECONDS = 0.050
# ...and this peak of Python allocations (a corpus message peaks near 1 MB
# in the structure walk; the recursive-type defect grew to gigabytes).
MAX_PEAK_BYTES = 8 * 1024 * 1024


def frames():
    """Frame number -> transport payload of every TCP/UDP frame of the
    corpus H.323 capture."""
    from scapy.all import IP, TCP, UDP, rdpcap
    out = {}
    for n, p in enumerate(rdpcap(str(CORPUS / "h323.pcap")), 1):
        if IP in p and (TCP in p or UDP in p):
            ip = p[IP]
            raw = bytes(ip)[:ip.len]
            off = ip.ihl * 4 + (p[TCP].dataofs * 4 if TCP in p else 8)
            if raw[off:]:
                out[n] = raw[off:]
    return out


def cpu_time(fn, *args) -> tuple[float, object]:
    """(CPU seconds, result or the RemoteProtocolError raised); anything
    else raised propagates."""
    t0 = time.thread_time()
    try:
        out = fn(*args)
    except RemoteProtocolError as e:
        out = e
    return time.thread_time() - t0, out


def peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    try:
        try:
            fn(*args)
        except RemoteProtocolError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def check_bounded(fn, *args) -> object:
    """``fn(*args)`` returns or raises RemoteProtocolError within
    MAX_SECONDS of CPU (best of three, so another process's burst on a busy
    core does not decide) and MAX_PEAK_BYTES."""
    best = None
    for _ in range(3):
        t, out = cpu_time(fn, *args)
        best = t if best is None else min(best, t)
        if best <= MAX_SECONDS:
            break
    assert best <= MAX_SECONDS, f"{best * 1000:.1f} ms CPU for {bytes(args[-1]).hex()}"
    peak = peak_bytes(fn, *args)
    assert peak <= MAX_PEAK_BYTES, f"{peak} bytes peak for {bytes(args[-1]).hex()}"
    return out


def mutate(data: bytes, draw_int) -> bytes:
    """One mutation of ``data``: ``draw_int(lo, hi)`` picks. Byte flips,
    a length determinant set high (X.691 11.9: 0x80-0xbf two-octet count,
    0xc1-0xc4 fragment of 16K-64K), a truncation, or inserted octets."""
    m = bytearray(data)
    for _ in range(draw_int(1, 4)):
        op = draw_int(0, 4)
        i = draw_int(0, max(len(m) - 1, 0))
        if not m:
            break
        if op == 0:
            m[i] ^= 1 << draw_int(0, 7)
        elif op == 1:
            m[i] = draw_int(0, 255)
        elif op == 2:
            high = (0xBF, 0xC1, 0xC2, 0xC3, 0xC4, 0xFF, 0x7F, 0x80)
            m[i] = high[draw_int(0, len(high) - 1)]
            if i + 1 < len(m) and draw_int(0, 1):
                m[i + 1] = 0xFF
        elif op == 3:
            del m[draw_int(0, len(m)):]
        else:
            m[i:i] = bytes(draw_int(0, 255) for _ in range(draw_int(1, 8)))
    return bytes(m)


def with_tpkt_length(m: bytes) -> bytes:
    """The TPKT length made right again, so the mutation reaches the body."""
    return m[:2] + len(m).to_bytes(2, "big") + m[4:] if len(m) >= 4 else m
