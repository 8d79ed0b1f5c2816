"""RTP-like streams for the namespace tests of the media offload (run inside
a namespace with ``ip netns exec``).

``uas ADDR SECONDS``: answers an INVITE with 200 OK (SDP at ADDR:7000),
sends one packet to the offer's address, then echoes every datagram that
reaches port 7000 back to where it came from; prints ``listening`` and, at
the end, ``{"received": N, "from": [...]}``.

``uac LOCAL HOST PHASES``: sends an INVITE (SDP LOCAL:4000), waits for the
answer, then for each phase ``COUNT:GAP:PAUSE`` (comma separated) sends COUNT
datagrams of 200 bytes (IP) to the answer's media address, GAP seconds
apart, then waits PAUSE seconds; after each phase prints
``{"phase": i, "sent": N, "echoed": M}`` and waits for a line on stdin
(the test reads counters between phases). Ends with ``done``."""

from __future__ import annotations

import json
import select
import socket
import sys
import time

from netns_udp import _sdp, _sdp_target, _sip

PAYLOAD = b"\x80\x00" + bytes(172)       # 200 bytes with the IP and UDP headers


def uas(addr: str, seconds: float) -> None:
    sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sig.bind(("0.0.0.0", 5060))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("0.0.0.0", 7000))
    print("listening", flush=True)
    received = 0
    sources = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r, _, _ = select.select([sig, rtp], [], [], max(0.0, end - time.monotonic()))
        for s in r:
            data, peer = s.recvfrom(65535)
            if s is sig and data.startswith(b"INVITE"):
                lines = data.decode("latin-1").split("\r\n")
                keep = [ln for ln in lines if ln.split(":", 1)[0] in ("Via", "From", "Call-ID", "CSeq")]
                to = next(ln for ln in lines if ln.startswith("To:")) + ";tag=uas"
                sig.sendto(_sip("SIP/2.0 200 OK", keep + [to, f"Contact: <sip:b@{addr}:5060>"],
                                _sdp(addr, 7000)), peer)
                rtp.sendto(PAYLOAD, _sdp_target(data))
            elif s is rtp:
                received += 1
                sources.add(f"{peer[0]}:{peer[1]}")
                rtp.sendto(data, peer)
    print(json.dumps({"received": received, "from": sorted(sources)}), flush=True)


def uac(local: str, host: str, phases: str) -> None:
    sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sig.bind(("0.0.0.0", 5060))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("0.0.0.0", 4000))
    sig.sendto(_sip(f"INVITE sip:b@{host} SIP/2.0",
                    [f"Via: SIP/2.0/UDP {local}:5060;branch=z9hG4bK78", f"From: <sip:a@{local}>;tag=a",
                     f"To: <sip:b@{host}>", f"Call-ID: offload-1@{local}", "CSeq: 1 INVITE",
                     f"Contact: <sip:a@{local}:5060>"], _sdp(local, 4000)), (host, 5060))
    r, _, _ = select.select([sig], [], [], 5)
    if not r:
        print(json.dumps({"error": "no answer"}), flush=True)
        return
    target = _sdp_target(sig.recvfrom(65535)[0])
    print(json.dumps({"answer": list(target)}), flush=True)
    for i, phase in enumerate(phases.split(",")):
        count, gap, pause = phase.split(":")
        sent = echoed = 0
        for _ in range(int(count)):
            rtp.sendto(PAYLOAD, target)
            sent += 1
            end = time.monotonic() + float(gap)
            while True:
                r, _, _ = select.select([rtp], [], [], max(0.0, end - time.monotonic()))
                if not r:
                    break
                rtp.recvfrom(65535)
                echoed += 1
        end = time.monotonic() + float(pause)
        while True:
            r, _, _ = select.select([rtp], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            rtp.recvfrom(65535)
            echoed += 1
        print(json.dumps({"phase": i, "sent": sent, "echoed": echoed}), flush=True)
        sys.stdin.readline()
    print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "uas":
        uas(sys.argv[2], float(sys.argv[3]))
    else:
        uac(sys.argv[2], sys.argv[3], sys.argv[4])
