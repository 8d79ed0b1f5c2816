"""A minimal MGCP call agent (RFC 3435) and its messages: commands formatted,
messages parsed, responses matched by transaction id, retransmission with
exponential back-off, provisional responses acknowledged."""

from __future__ import annotations

import random
import select
import socket
import time
from dataclasses import dataclass

from ops.lab.netns import LabError
from ops.lab.rtp_peer import PCMA

CA_PORT = 2727          # RFC 3435 3.5.3: call agents listen on 2727
GW_PORT = 2427          # and media gateways on 2427
# RFC 3435 3.5.5: "the initial retransmission timer value [...] 200 ms",
# doubled on each retransmission, bounded (RTO max 4 s); we give up after
# MAX_TRIES sends (the RFC's Max1/Max2 are 5 and 7 retransmissions; a lab
# gateway that answers nothing within ~6 s is down).
RTO_INITIAL = 0.2
RTO_MAX = 4.0
MAX_TRIES = 6
# After a provisional response the final one may take long (3.5.6); bounded.
PROVISIONAL_WAIT = 10.0


@dataclass(frozen=True, slots=True)
class Response:
    """An MGCP response (RFC 3435 3.3)."""

    code: int
    tid: int
    comment: str
    params: dict[str, str]           # parameter name (upper case) -> value
    sdp: str                         # session description after the empty line, LF line ends
    raw: bytes
    tries: int = 1                   # how many times the command was sent
    provisional: bool = False        # a 1xx came first

    def get(self, name: str) -> str | None:
        return self.params.get(name.upper())

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def media(self) -> tuple[str, int] | None:
        """(c= address, first m= port) of the session description."""
        return sdp_media(self.sdp)


def sdp_media(sdp: str) -> tuple[str, int] | None:
    addr = port = None
    for line in sdp.splitlines():
        if line.startswith("c=IN IP4 ") and addr is None:
            addr = line.split()[2]
        elif line.startswith("m=audio ") and port is None:
            port = int(line.split()[1])
    return (addr, port) if addr is not None and port is not None else None


def parse_message(data: bytes) -> tuple[str, list[str], dict[str, str], str]:
    """(first line, its words, parameters, SDP) of one MGCP message. Line ends
    may be CRLF or LF (RFC 3435 3.1); the SDP starts after the first empty line."""
    text = data.decode("latin-1").replace("\r\n", "\n")
    head, _, sdp = text.partition("\n\n")
    lines = head.split("\n")
    params: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            params[name.strip().upper()] = value.strip()
    return lines[0], lines[0].split(), params, sdp


def format_command(verb: str, tid: int, endpoint: str, params: list[tuple[str, str]],
                   sdp: str | None = None) -> bytes:
    """A command (RFC 3435 3.2): command line, parameter lines, and the SDP
    after an empty line; CRLF line ends."""
    lines = [f"{verb} {tid} {endpoint} MGCP 1.0"] + [f"{k}: {v}" for k, v in params]
    text = "\r\n".join(lines) + "\r\n"
    if sdp:
        text += "\r\n" + sdp.replace("\r\n", "\n").replace("\n", "\r\n")
    return text.encode("ascii")


def sdp_offer(address: str, port: int, session: int = 1) -> str:
    """A session description for PCMA audio at ``address:port`` (RFC 4566)."""
    return (f"v=0\no=- {session} 1 IN IP4 {address}\ns=-\nc=IN IP4 {address}\nt=0 0\n"
            f"m=audio {port} RTP/AVP {PCMA}\na=rtpmap:{PCMA} PCMA/8000\na=ptime:20\n")


class MgcpTimeout(LabError):
    """No final response to a command after every retransmission."""


class CallAgent:
    """A call agent on one UDP socket (see the module's docstring)."""

    def __init__(self, sock: socket.socket, gateway: tuple[str, int], *, first_tid: int | None = None,
                 rto: float = RTO_INITIAL, max_tries: int = MAX_TRIES) -> None:
        self.sock = sock
        self.gateway = gateway
        # RFC 3435 3.5.1: a transaction id names one transaction for as long
        # as the peer remembers it (T-HIST, 30 s): a new agent (a new run)
        # starts somewhere else than the last one did.
        self.next_tid = first_tid if first_tid is not None else random.randint(1, 900_000_000)
        self.rto = rto
        self.max_tries = max_tries
        self.sent: list[bytes] = []              # every datagram sent (retransmissions too)
        self.stray: list[bytes] = []             # responses to no open transaction
        self.commands_in: list[bytes] = []       # commands from the gateway (answered 200)

    def close(self) -> None:
        self.sock.close()

    def _send(self, data: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(data, to)
        self.sent.append(data)

    def transact(self, verb: str, endpoint: str, params: list[tuple[str, str]] = (),
                 sdp: str | None = None) -> Response:
        """Send one command and return its final response."""
        tid = self.next_tid
        # RFC 3435 3.2.1.2: transaction ids are 1..999999999, unique per sender.
        self.next_tid = self.next_tid + 1 if self.next_tid < 999_999_999 else 1
        data = format_command(verb, tid, endpoint, list(params), sdp)
        tries = 0
        rto = self.rto
        provisional = False
        deadline = None
        while True:
            if not provisional:
                if tries >= self.max_tries:
                    raise MgcpTimeout(f"{verb} {tid} {endpoint}: no response from "
                                      f"{self.gateway[0]}:{self.gateway[1]} after {tries} sends")
                self._send(data, self.gateway)
                tries += 1
                wait_until = time.monotonic() + rto
                rto = min(rto * 2, RTO_MAX)
            else:
                wait_until = deadline
            while True:
                left = wait_until - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([self.sock], [], [], left)
                if not r:
                    break
                msg, peer = self.sock.recvfrom(65535)
                resp = self._incoming(msg, peer, tid)
                if resp is None:
                    continue
                if 100 <= resp.code < 200:
                    # 3.5.6: provisional: stop retransmitting, wait for the final one.
                    provisional = True
                    deadline = time.monotonic() + PROVISIONAL_WAIT
                    break
                if provisional:
                    # 3.5.6: a final response after a provisional one is acknowledged.
                    self._send(f"000 {tid}\r\n".encode(), peer)
                return Response(resp.code, resp.tid, resp.comment, resp.params, resp.sdp, resp.raw,
                                tries, provisional)
            if provisional and time.monotonic() >= deadline:
                raise MgcpTimeout(f"{verb} {tid}: provisional response but no final one")

    def _incoming(self, msg: bytes, peer: tuple[str, int], tid: int) -> Response | None:
        try:
            first, words, params, sdp = parse_message(msg)
        except UnicodeDecodeError:
            return None
        if len(words) >= 2 and words[0].isdigit() and words[1].isdigit():
            code, rtid = int(words[0]), int(words[1])
            if rtid != tid:
                self.stray.append(msg)      # a late duplicate of an answered command
                return None
            return Response(code, rtid, " ".join(words[2:]), params, sdp, msg)
        if len(words) >= 4 and words[1].isdigit():
            # A command from the gateway (NTFY, RSIP, DLCX): acknowledge it.
            self.commands_in.append(msg)
            self._send(f"200 {words[1]} OK\r\n".encode(), peer)
        return None

    # --- the commands ---------------------------------------------------------------------

    def auep(self, endpoint: str) -> Response:
        return self.transact("AUEP", endpoint)

    def crcx(self, endpoint: str, call_id: str, mode: str, *, sdp: str | None = None,
             notified: str | None = None, options: str | None = "p:20, a:PCMA") -> Response:
        params = [("C", call_id)]
        if options:
            params.append(("L", options))
        params.append(("M", mode))
        if notified:
            params.append(("N", notified))
        return self.transact("CRCX", endpoint, params, sdp)

    def mdcx(self, endpoint: str, call_id: str, conn_id: str, *, mode: str | None = None,
             sdp: str | None = None) -> Response:
        params = [("C", call_id), ("I", conn_id)]
        if mode:
            params.append(("M", mode))
        return self.transact("MDCX", endpoint, params, sdp)

    def dlcx(self, endpoint: str, call_id: str | None = None, conn_id: str | None = None) -> Response:
        params = []
        if call_id:
            params.append(("C", call_id))
        if conn_id:
            params.append(("I", conn_id))
        return self.transact("DLCX", endpoint, params)
