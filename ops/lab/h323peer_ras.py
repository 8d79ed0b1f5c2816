"""The H.323 peer's RAS (H.225.0 7.1): a gatekeeper served by a thread, and
an endpoint's RAS client (requests retransmitted, answers matched by
requestSeqNum)."""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ops.lab import h323msg as m
from ops.lab.h323peer_sockets import PeerError, make_socket

RAS_PORT = 1719             # H.225.0 7.1: gatekeeper RAS
RAS_RTO = (0.5, 1.0, 2.0, 4.0)   # RAS retransmissions (H.225.0 Appendix: a few seconds)


@dataclass
class Registration:
    alias: str
    endpoint_id: str
    signal: list                   # callSignalAddress as the RRQ carried it (TransportAddress values)
    ras: tuple[str, int]           # where RAS answers go
    seen_from: tuple[str, int]


class Gatekeeper:
    """RAS on one UDP socket, served by a thread (see the module's docstring)."""

    def __init__(self, netns: str | None, ip: str, port: int = RAS_PORT, gk_id: str = "LABGK") -> None:
        self.ip, self.port, self.gk_id = ip, port, gk_id
        self.sock = make_socket(netns, socket.SOCK_DGRAM, (ip, port))
        self.registrations: dict[str, Registration] = {}
        self.by_id: dict[str, Registration] = {}
        self.received: list[tuple[str, tuple[str, int]]] = []      # (RAS kind, source)
        self.admissions: list[dict] = []
        self.disengaged: list[bytes] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._next_id = 1
        self.thread = threading.Thread(target=self._serve, name=f"gk-{ip}", daemon=True)

    def start(self) -> "Gatekeeper":
        self.thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.thread.join(3)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                continue
            try:
                self._handle(data, peer)
            except Exception as exc:        # a bad request must not stop the gatekeeper
                self.errors.append(f"{peer}: {type(exc).__name__}: {exc}")

    def _reply(self, data: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(data, to)

    def _handle(self, data: bytes, peer: tuple[str, int]) -> None:
        kind, f = m.decode(m.RAS, data)
        self.received.append((kind, peer))
        seq = f.get("requestSeqNum", 0)
        if kind == "gatekeeperRequest":
            to = m.from_transport(f["rasAddress"]) or peer
            self._reply(m.gcf(seq, (self.ip, self.port), self.gk_id), to)
        elif kind == "registrationRequest":
            names = [a[1] for a in f.get("terminalAlias", []) if a[0] == "h323-ID"]
            ras = m.from_transport(f["rasAddress"][0]) if f.get("rasAddress") else peer
            if not names:
                self._reply(m.rrj(seq), ras or peer)
                return
            old = self.registrations.get(names[0])
            eid = old.endpoint_id if old else f"EP{self._next_id:04d}"
            if not old:
                self._next_id += 1
            reg = Registration(names[0], eid, list(f["callSignalAddress"]), ras or peer, peer)
            self.registrations[names[0]] = reg
            self.by_id[eid] = reg
            self._reply(m.rcf(seq, reg.signal, names[0], eid, f.get("timeToLive", 300)), reg.ras)
        elif kind == "admissionRequest":
            reg = self.by_id.get(f.get("endpointIdentifier", ""))
            to = reg.ras if reg else peer
            if f.get("answerCall"):
                dest = m.from_transport(reg.signal[0]) if reg else None
            else:
                names = [a[1] for a in f.get("destinationInfo", []) if a[0] == "h323-ID"]
                target = self.registrations.get(names[0]) if names else None
                dest = m.from_transport(target.signal[0]) if target else None
            self.admissions.append({"from": peer, "answer": bool(f.get("answerCall")), "dest": dest,
                                    "guid": f.get("callIdentifier", {}).get("guid")})
            self._reply(m.acf(seq, dest) if dest else m.arj(seq), to)
        elif kind == "disengageRequest":
            reg = self.by_id.get(f.get("endpointIdentifier", ""))
            self.disengaged.append(f.get("callIdentifier", {}).get("guid", b""))
            self._reply(m.dcf(seq), reg.ras if reg else peer)
        elif kind == "unregistrationRequest":
            reg = self.by_id.pop(f.get("endpointIdentifier", ""), None)
            if reg is not None:
                self.registrations.pop(reg.alias, None)
            self._reply(m.ucf(seq), reg.ras if reg else peer)


class RasClient:
    """An endpoint's RAS: one UDP socket, requests retransmitted, answers
    matched by requestSeqNum. One request at a time (a lock)."""

    def __init__(self, sock: socket.socket, gatekeeper: tuple[str, int],
                 rto: tuple[float, ...] = RAS_RTO) -> None:
        self.sock = sock
        self.rto = rto
        self.gatekeeper = gatekeeper
        self.seq = random.randint(1, 30000)
        self.lock = threading.Lock()

    def next_seq(self) -> int:
        self.seq = self.seq % 65535 + 1
        return self.seq

    def request(self, build: Callable[[int], bytes], want: str) -> dict:
        with self.lock:
            seq = self.next_seq()
            data = build(seq)
            for rto in self.rto:
                self.sock.sendto(data, self.gatekeeper)
                deadline = time.monotonic() + rto
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    r, _, _ = select.select([self.sock], [], [], left)
                    if not r:
                        break
                    answer, _peer = self.sock.recvfrom(65535)
                    kind, f = m.decode(m.RAS, answer)
                    if f.get("requestSeqNum") != seq:
                        continue            # a late answer to an earlier retransmission
                    if kind != want:
                        raise PeerError(f"{want} expected, {kind} received")
                    return f
            raise PeerError(f"no {want} from the gatekeeper {self.gatekeeper[0]}:{self.gatekeeper[1]}")
