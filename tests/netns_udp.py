"""UDP peers for the namespace tests of the ingest worker (run inside a
namespace with ``ip netns exec``): ``echo PORT... SECONDS`` answers every
datagram and prints what it saw; ``send HOST PORT TEXT WAIT`` sends one
datagram and prints the answer (or null); ``uas ADDR SECONDS`` answers an
INVITE with 200 OK (SDP at ADDR:7000) and sends RTP to the offer's address;
``uac LOCAL HOST WAIT`` sends an INVITE (SDP LOCAL:4000), then RTP to the
answer's address, and reports what came back."""

from __future__ import annotations

import json
import select
import socket
import sys
import time


def echo(ports: list[int], seconds: float) -> None:
    socks = []
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", p))
        socks.append(s)
    print("listening", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r, _, _ = select.select(socks, [], [], max(0.0, end - time.monotonic()))
        for s in r:
            data, peer = s.recvfrom(65535)
            print(json.dumps({"port": s.getsockname()[1], "from": list(peer),
                              "data": data.decode("latin-1")}), flush=True)
            s.sendto(b"echo:" + data, peer)


def send(host: str, port: int, text: str, wait: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.sendto(text.encode(), (host, port))
    r, _, _ = select.select([s], [], [], wait)
    if r:
        data, peer = s.recvfrom(65535)
        print(json.dumps({"from": list(peer), "data": data.decode("latin-1"),
                          "local_port": s.getsockname()[1]}))
    else:
        print("null")


def _sdp_target(msg: bytes) -> tuple[str, int]:
    text = msg.decode("latin-1")
    addr = text.split("c=IN IP4 ", 1)[1].split()[0]
    port = int(text.split("m=audio ", 1)[1].split()[0])
    return addr, port


def _sip(start: str, headers: list[str], body: str) -> bytes:
    b = body.replace("\n", "\r\n").encode()
    return ("\r\n".join([start, *headers, "Content-Type: application/sdp",
                          f"Content-Length: {len(b)}", "", ""])).encode() + b


def _sdp(addr: str, port: int) -> str:
    return f"v=0\no=u 1 1 IN IP4 {addr}\ns=-\nc=IN IP4 {addr}\nt=0 0\nm=audio {port} RTP/AVP 0\n"


def answer_invite(sig: socket.socket, invite: bytes, peer, addr: str) -> None:
    """200 OK to ``invite`` with SDP at ``addr``:7000."""
    lines = invite.decode("latin-1").split("\r\n")
    keep = [ln for ln in lines if ln.split(":", 1)[0] in ("Via", "From", "Call-ID", "CSeq")]
    to = next(ln for ln in lines if ln.startswith("To:")) + ";tag=uas"
    sig.sendto(_sip("SIP/2.0 200 OK", keep + [to, f"Contact: <sip:b@{addr}:5060>"],
                    _sdp(addr, 7000)), peer)


def send_invite(sig: socket.socket, local: str, host: str, call_id: str, branch: str) -> None:
    """An INVITE from ``local`` to ``host`` offering SDP at ``local``:4000."""
    sig.sendto(_sip(f"INVITE sip:b@{host} SIP/2.0",
                    [f"Via: SIP/2.0/UDP {local}:5060;branch={branch}", f"From: <sip:a@{local}>;tag=a",
                     f"To: <sip:b@{host}>", f"Call-ID: {call_id}@{local}", "CSeq: 1 INVITE",
                     f"Contact: <sip:a@{local}:5060>"], _sdp(local, 4000)), (host, 5060))


def uas(addr: str, seconds: float) -> None:
    sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sig.bind(("0.0.0.0", 5060))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("0.0.0.0", 7000))
    print("listening", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r, _, _ = select.select([sig, rtp], [], [], max(0.0, end - time.monotonic()))
        for s in r:
            data, peer = s.recvfrom(65535)
            print(json.dumps({"port": s.getsockname()[1], "from": list(peer),
                              "data": data.decode("latin-1")}), flush=True)
            if s is sig and data.startswith(b"INVITE"):
                answer_invite(sig, data, peer, addr)
                rtp.sendto(b"rtp-from-uas", _sdp_target(data))


def uac(local: str, host: str, wait: float) -> None:
    sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sig.bind(("0.0.0.0", 5060))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("0.0.0.0", 4000))
    send_invite(sig, local, host, "nfq-1", "z9hG4bK77")
    out: dict = {"answer": None, "rtp": []}
    end = time.monotonic() + wait
    while time.monotonic() < end:
        r, _, _ = select.select([sig, rtp], [], [], max(0.0, end - time.monotonic()))
        for s in r:
            data, peer = s.recvfrom(65535)
            if s is sig and out["answer"] is None:
                out["answer"] = {"from": list(peer), "data": data.decode("latin-1")}
                rtp.sendto(b"rtp-from-uac", _sdp_target(data))
            elif s is rtp:
                out["rtp"].append({"from": list(peer), "data": data.decode("latin-1")})
        if out["answer"] is not None and out["rtp"]:
            break
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "uas":
        uas(sys.argv[2], float(sys.argv[3]))
        sys.exit(0)
    if sys.argv[1] == "uac":
        uac(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        sys.exit(0)
    if sys.argv[1] == "echo":
        echo([int(p) for p in sys.argv[2:-1]], float(sys.argv[-1]))
    else:
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
