"""RTP-like streams for the namespace tests of the media offload (run inside
a namespace with ``ip netns exec``).

``uas ADDR SECONDS``: answers an INVITE with 200 OK (SDP at ADDR:7000),
sends one packet to the offer's address, then echoes every datagram that
reaches port 7000 back to where it came from (with the TTL it arrived with); prints ``listening`` and, at
the end, ``{"received": N, "from": [...]}``.

``uac LOCAL HOST PHASES``: sends an INVITE (SDP LOCAL:4000), waits for the
answer, then for each phase ``COUNT:GAP:PAUSE`` (comma separated) sends COUNT
datagrams of 200 bytes (IP) to the answer's media address, GAP seconds
apart, then waits PAUSE seconds; after each phase prints
``{"phase": i, "sent": N, "echoed": M}`` and waits for a line on stdin
(the test reads counters between phases). Ends with ``done``. Also in each
phase's line: ``ttls``, the TTLs the echoes arrived with (each crossed the
gateway both ways, echoed with the TTL it arrived with: sent with 64, back
with 62 when the gateway decrements it each way)."""

from __future__ import annotations

import json
import select
import socket
import sys
import time

from netns_udp import _sdp_target, answer_invite, send_invite

PAYLOAD = b"\x80\x00" + bytes(172)       # 200 bytes with the IP and UDP headers
# <linux/in.h>: ask for each datagram's TTL (ancillary IP_TTL); the socket
# module does not name it.
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)


def uas(addr: str, seconds: float) -> None:
    sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sig.bind(("0.0.0.0", 5060))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("0.0.0.0", 7000))
    rtp.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    print("listening", flush=True)
    received = 0
    sources = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r, _, _ = select.select([sig, rtp], [], [], max(0.0, end - time.monotonic()))
        for s in r:
            data, anc, _flags, peer = s.recvmsg(65535, socket.CMSG_SPACE(4))
            if s is sig and data.startswith(b"INVITE"):
                answer_invite(sig, data, peer, addr)
                rtp.sendto(PAYLOAD, _sdp_target(data))
            elif s is rtp:
                received += 1
                sources.add(f"{peer[0]}:{peer[1]}")
                ttl = _ttl_of(anc)
                if ttl:
                    rtp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                rtp.sendto(data, peer)
    print(json.dumps({"received": received, "from": sorted(sources)}), flush=True)


def _ttl_of(anc) -> int | None:
    for level, kind, value in anc:
        if level == socket.IPPROTO_IP and kind == socket.IP_TTL:
            return int.from_bytes(value[:4], sys.byteorder)
    return None


def _echoes_within(rtp: socket.socket, seconds: float, ttls: set) -> int:
    """How many datagrams ``rtp`` receives (and reads) in the next
    ``seconds``; the TTL of each goes into ``ttls``."""
    n = 0
    end = time.monotonic() + seconds
    while True:
        r, _, _ = select.select([rtp], [], [], max(0.0, end - time.monotonic()))
        if not r:
            return n
        _data, anc, _flags, _peer = rtp.recvmsg(65535, socket.CMSG_SPACE(4))
        ttl = _ttl_of(anc)
        if ttl is not None:
            ttls.add(ttl)
        n += 1


def uac(local: str, host: str, phases: str) -> None:
    sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sig.bind(("0.0.0.0", 5060))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("0.0.0.0", 4000))
    rtp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
    rtp.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    send_invite(sig, local, host, "offload-1", "z9hG4bK78")
    r, _, _ = select.select([sig], [], [], 5)
    if not r:
        print(json.dumps({"error": "no answer"}), flush=True)
        return
    target = _sdp_target(sig.recvfrom(65535)[0])
    print(json.dumps({"answer": list(target)}), flush=True)
    for i, phase in enumerate(phases.split(",")):
        count, gap, pause = phase.split(":")
        sent = echoed = 0
        ttls: set = set()
        for _ in range(int(count)):
            rtp.sendto(PAYLOAD, target)
            sent += 1
            echoed += _echoes_within(rtp, float(gap), ttls)
        echoed += _echoes_within(rtp, float(pause), ttls)
        print(json.dumps({"phase": i, "sent": sent, "echoed": echoed, "ttls": sorted(ttls)}),
              flush=True)
        sys.stdin.readline()
    print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "uas":
        uas(sys.argv[2], float(sys.argv[3]))
    else:
        uac(sys.argv[2], sys.argv[3], sys.argv[4])
