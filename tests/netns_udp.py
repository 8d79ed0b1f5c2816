"""UDP peers for the namespace tests of the ingest worker (run inside a
namespace with ``ip netns exec``): ``echo PORT... SECONDS`` answers every
datagram and prints what it saw; ``send HOST PORT TEXT WAIT`` sends one
datagram and prints the answer (or null)."""

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


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo([int(p) for p in sys.argv[2:-1]], float(sys.argv[-1]))
    else:
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
