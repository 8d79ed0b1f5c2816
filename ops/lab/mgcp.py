"""MGCP calls through the lab's gateway pair, against a real media gateway.

Pieces (manual ch. 3 "Examples"; RFC 3435):

* :func:`ns_socket`: a UDP socket bound inside a lab namespace. The socket is
  made by a short-lived thread that enters the namespace (``setns`` changes
  the network namespace of the calling thread only); a socket stays in the
  namespace it was made in, so the test process can then use it from any
  thread without moving itself.
* :class:`CallAgent`: a minimal call agent speaking RFC 3435 from UDP 2727
  (3.5.3): CRCX, MDCX, DLCX, AUEP; responses matched by transaction id;
  retransmission with exponential back-off (3.5.5: 200 ms doubling up to a
  bound, a fixed number of tries); a provisional response stops the
  retransmissions and a final response after a provisional one is
  acknowledged with ``000`` (3.5.6); commands from the gateway are answered.
* :class:`OsmoMgw`: osmo-mgw (a real MGCP media gateway) started inside a host
  namespace with a generated configuration, stopped by its own pid.
* :class:`RtpPeer`: RTP (RFC 3550 fixed header, PCMA payload) sent and counted
  on a plain UDP socket inside a namespace; every loop is bounded.
* :func:`add_host`: one more host namespace on a lab segment (``<lab>-NAME``,
  so ``gwctl lab down`` removes it): the manual's "Media Gateway in
  Subscribers' Homes" names only a subnet of subscribers' IADs, not hosts.
* :func:`run_call`: a whole call through the gateway pair (see its docstring).
"""

from __future__ import annotations

import ctypes
import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Callable

from ops.lab import netns as labns
from ops.lab.netns import LabError, ns_cmd, run

CA_PORT = 2727          # RFC 3435 3.5.3: call agents listen on 2727
GW_PORT = 2427          # and media gateways on 2427
OSMO_MGW = "/usr/bin/osmo-mgw"
CLONE_NEWNET = 0x40000000
# RFC 3435 3.5.5: "the initial retransmission timer value [...] 200 ms",
# doubled on each retransmission, bounded (RTO max 4 s); we give up after
# MAX_TRIES sends (the RFC's Max1/Max2 are 5 and 7 retransmissions; a lab
# gateway that answers nothing within ~6 s is down).
RTO_INITIAL = 0.2
RTO_MAX = 4.0
MAX_TRIES = 6
# After a provisional response the final one may take long (3.5.6); bounded.
PROVISIONAL_WAIT = 10.0
PCMA = 8
RTP_PAYLOAD = b"\xd5" * 160     # 20 ms of A-law silence


# --- sockets inside namespaces ---------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns: str, fn: Callable[[], object]) -> object:
    """Run ``fn`` on a fresh thread that entered ``netns``; return its result."""
    out: dict = {}

    def work() -> None:
        try:
            fd = os.open(str(labns.NETNS_DIR / netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            out["v"] = fn()
        except BaseException as exc:       # handed to the calling thread
            out["e"] = exc

    t = threading.Thread(target=work, name=f"netns-{netns}", daemon=True)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out.get("v")


def ns_socket(netns: str, address: tuple[str, int]) -> socket.socket:
    """A UDP socket bound to ``address`` inside ``netns``."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
        except BaseException:
            s.close()
            raise
        return s
    sock = in_netns(netns, make)
    assert isinstance(sock, socket.socket)
    return sock


# --- MGCP messages ---------------------------------------------------------------------------

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


# --- RTP -------------------------------------------------------------------------------------

def rtp_packet(seq: int, ssrc: int, payload: bytes = RTP_PAYLOAD) -> bytes:
    """RFC 3550 5.1 fixed header: V=2, PT 8 (PCMA), 160 samples per packet."""
    return struct.pack("!BBHII", 0x80, PCMA, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


@dataclass
class RtpPeer:
    """An RTP endpoint on one UDP socket inside a namespace."""

    netns: str
    address: tuple[str, int]
    ssrc: int
    sock: socket.socket = field(init=False)
    seq: int = 0
    received: list[tuple[tuple[str, int], int]] = field(default_factory=list)  # (source, ssrc)

    def __post_init__(self) -> None:
        self.sock = ns_socket(self.netns, self.address)
        self.sock.setblocking(False)

    def send(self, to: tuple[str, int], n: int = 1) -> None:
        for _ in range(n):
            self.sock.sendto(rtp_packet(self.seq, self.ssrc), to)
            self.seq += 1

    def drain(self) -> int:
        got = 0
        while True:
            try:
                data, peer = self.sock.recvfrom(2048)
            except BlockingIOError:
                return got
            if len(data) >= 12 and data[0] >> 6 == 2:
                self.received.append((peer, struct.unpack_from("!I", data, 8)[0]))
                got += 1

    def take(self) -> list[tuple[tuple[str, int], int]]:
        self.drain()
        out, self.received = self.received, []
        return out

    def close(self) -> None:
        self.sock.close()


def exchange(a: RtpPeer, a_to: tuple[str, int], b: RtpPeer, b_to: tuple[str, int], *,
             packets: int = 20, interval: float = 0.01, settle: float = 0.3
             ) -> tuple[list, list]:
    """``a`` sends to ``a_to`` and ``b`` to ``b_to``, ``packets`` each (alternating,
    ``interval`` apart); returns (what b received, what a received) as
    (source, ssrc) lists, counted after a short settle time."""
    a.take()
    b.take()
    for _ in range(packets):
        a.send(a_to)
        b.send(b_to)
        time.sleep(interval)
        a.drain()
        b.drain()
    end = time.monotonic() + settle
    while time.monotonic() < end:
        time.sleep(0.02)
        a.drain()
        b.drain()
    return b.take(), a.take()


# --- osmo-mgw --------------------------------------------------------------------------------

def osmo_mgw_config(bind_ip: str, rtp_low: int = 16002, rtp_high: int = 16201,
                    endpoints: int = 16) -> str:
    """osmo-mgw's VTY-style configuration (its doc/examples/osmo-mgw.cfg):
    MGCP and RTP on the host's address; VTY and CTRL on the namespace's own
    loopback."""
    return "\n".join([
        "log stderr", " logging filter all 1", " logging color 0", " logging print category 1",
        " logging level set-all notice",
        "line vty", " bind 127.0.0.1",
        "ctrl", " bind 127.0.0.1",
        "mgcp", f" bind ip {bind_ip}", f" bind port {GW_PORT}",
        f" rtp port-range {rtp_low} {rtp_high}", f" rtp bind-ip {bind_ip}",
        f" number endpoints {endpoints}", ""])


class OsmoMgw:
    """osmo-mgw running in ``netns`` on ``bind_ip`` (see :func:`osmo_mgw_config`)."""

    def __init__(self, netns: str, bind_ip: str, workdir: Path, *, exe: str = OSMO_MGW) -> None:
        self.netns = netns
        self.bind_ip = bind_ip
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / f"osmo-mgw-{netns}.cfg"
        self.log = workdir / f"osmo-mgw-{netns}.log"
        self.config.write_text(osmo_mgw_config(bind_ip))
        self.exe = exe
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(ns_cmd(self.netns, self.exe, "-c", str(self.config)),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LabError(f"osmo-mgw in {self.netns} exited ({self.proc.returncode}): "
                               f"{self.log_tail()}")
            out = run(ns_cmd(self.netns, "ss", "-H", "-uln", f"sport = :{GW_PORT}"), check=False).stdout
            if out.strip():
                return
            time.sleep(0.05)
        self.stop()
        raise LabError(f"osmo-mgw in {self.netns} did not listen on UDP {GW_PORT}: {self.log_tail()}")

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(3)

    def log_tail(self, n: int = 10) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> "OsmoMgw":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- extra hosts -----------------------------------------------------------------------------

def add_host(lab: str, name: str, address: str, segment: str, gateway: str,
             state_dir: Path | None = None) -> str:
    """A host namespace ``<lab>-<name>`` with ``address`` (``IP/len``) on the
    lab segment whose bridge or configured interface is ``segment``, default
    route via ``gateway``. Idempotent; recorded in the lab's state so that
    ``gwctl lab down`` removes it."""
    state = labns.load_state(lab, state_dir)
    if state is None or state.plan is None:
        raise LabError(f"no lab {lab!r}")
    plan = state.get_plan()
    assert plan is not None
    seg = next((s for s in plan.segments if segment in (s.bridge, s.label)), None)
    if seg is None:
        raise LabError(f"lab {lab}: no segment {segment!r}")
    ns = f"{lab}-{name}"
    if labns.ns_exists(ns):
        return ns
    state.namespaces.append(ns)
    labns.save_state(state, state_dir)
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    end = f"x{name}"[:15]
    run(["ip", "-n", plan.switch, "link", "add", end, "type", "veth", "peer", "name", "eth0",
         "netns", ns])
    run(["ip", "-n", plan.switch, "link", "set", end, "master", seg.bridge, "up"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "addr", "add", str(IPv4Interface(address)), "dev", "eth0"])
    run(["ip", "-n", ns, "route", "add", "default", "via", gateway, "dev", "eth0"])
    return ns


# --- a call through the gateway pair ----------------------------------------------------------

# osmo-mgw's "rtpbridge/*@mgw" in a CRCX means "any free endpoint"; RFC 3435
# 2.1.2 spells "any of" "$" and "*" is "all of", which a CRCX cannot take, so
# the ALG drops it (gateway/mgcp/transitions.py), and osmo-mgw does not know
# "$". The call names one endpoint; AUEP audits them all with "*".
ENDPOINT = "rtpbridge/1@mgw"
WILDCARD_ENDPOINT = "rtpbridge/*@mgw"
LOCAL_RTP_PORT = 40000                  # the bridge's second leg, on the media gateway's host
FAR_RTP_PORT = 4000                     # the RTP endpoint across the gateway


@dataclass(frozen=True, slots=True)
class Leg:
    """Where one party of the call is: namespace and address."""

    netns: str
    ip: str


@dataclass
class Step:
    name: str
    code: int
    tries: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class RtpCount:
    """RTP of one exchange: sent each way, received each way, and the
    sources the receivers saw (as ``ip:port`` strings)."""

    far_sent: int
    local_received: int
    local_sent: int
    far_received: int
    local_saw: tuple[str, ...]
    far_saw: tuple[str, ...]

    def both_ways(self, min_ratio: float = 0.8) -> bool:
        return (self.far_sent > 0 and self.local_sent > 0
                and self.local_received >= min_ratio * self.far_sent
                and self.far_received >= min_ratio * self.local_sent)

    def none_passed(self) -> bool:
        return self.local_received == 0 and self.far_received == 0


class LabCall:
    """One MGCP call in a running lab (manual ch. 3 "Examples").

    The call agent (``ca``) controls osmo-mgw on ``mgw``. The call is an
    ``rtpbridge`` endpoint with two connections: connection A toward the
    ``far`` RTP endpoint (CRCX without SDP, then MDCX with the far end's
    SDP: the remote descriptor), connection B toward an RTP endpoint on the
    media gateway's own host (CRCX with SDP). osmo-mgw forwards RTP between
    the two, so media flows both ways between the media gateway and the far
    end, and the far end is a plain socket whose every packet is counted."""

    def __init__(self, ca: Leg, mgw: Leg, far: Leg, workdir: Path, *, call_id: str = "A1B2C3D4",
                 mgw_address: str | None = None, endpoint: str = ENDPOINT) -> None:
        self.ca, self.mgw, self.far = ca, mgw, far
        self.endpoint_name = endpoint
        self.call_id = call_id
        # The address the call agent sends to (the media gateway's own, or
        # the public one standing for it).
        self.mgw_address = mgw_address or mgw.ip
        self.osmo = OsmoMgw(mgw.netns, mgw.ip, workdir)
        self.agent: CallAgent | None = None
        self.local: RtpPeer | None = None
        self.far_peer: RtpPeer | None = None
        self.endpoint: str | None = None
        self.conn_a: str | None = None
        self.conn_b: str | None = None
        self.media_a: tuple[str, int] | None = None     # osmo-mgw's side of connection A
        self.media_b: tuple[str, int] | None = None
        self.far_port = FAR_RTP_PORT
        self.steps: list[Step] = []

    def start(self) -> None:
        self.osmo.start()
        self.agent = CallAgent(ns_socket(self.ca.netns, ("0.0.0.0", CA_PORT)),
                               (self.mgw_address, GW_PORT))
        self.local = RtpPeer(self.mgw.netns, (self.mgw.ip, LOCAL_RTP_PORT), ssrc=0x1001)
        self.far_peer = RtpPeer(self.far.netns, (self.far.ip, self.far_port), ssrc=0x2002)

    def close(self) -> None:
        for p in (self.agent, self.local, self.far_peer):
            if p is not None:
                p.close()
        self.osmo.stop()

    def __enter__(self) -> "LabCall":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _step(self, name: str, r: Response, note: str = "") -> Response:
        self.steps.append(Step(name, r.code, r.tries, note))
        if not r.ok:
            raise LabError(f"{name}: {r.code} {r.comment} ({r.raw!r})")
        return r

    # --- signalling ----------------------------------------------------------------------

    def audit(self) -> Response:
        assert self.agent is not None
        return self._step("AUEP", self.agent.auep(WILDCARD_ENDPOINT))

    def create(self) -> None:
        """CRCX A (no SDP), CRCX B (with SDP), MDCX A with the far end's SDP."""
        a = self.agent
        assert a is not None
        # No N: (NotifiedEntity): osmo-mgw answers 539 (unsupported parameter).
        r = self._step("CRCX without SDP", a.crcx(self.endpoint_name, self.call_id, "recvonly"))
        self.endpoint = r.get("Z") or self.endpoint_name
        self.conn_a, self.media_a = r.get("I"), r.media()
        if not (self.endpoint and self.conn_a and self.media_a):
            raise LabError(f"CRCX response without Z:, I: or SDP: {r.raw!r}")
        r = self._step("CRCX with SDP", a.crcx(self.endpoint, self.call_id, "sendrecv",
                                               sdp=sdp_offer(self.mgw.ip, LOCAL_RTP_PORT, 2)))
        self.conn_b, self.media_b = r.get("I"), r.media()
        if not (self.conn_b and self.media_b):
            raise LabError(f"CRCX response without I: or SDP: {r.raw!r}")
        self.modify()

    def modify(self, far_port: int | None = None) -> Response:
        """MDCX of connection A with the far end's descriptor (a new RTP port
        moves the far end's socket there)."""
        a = self.agent
        assert a is not None and self.endpoint and self.conn_a
        if far_port is not None and far_port != self.far_port:
            assert self.far_peer is not None
            self.far_peer.close()
            self.far_port = far_port
            self.far_peer = RtpPeer(self.far.netns, (self.far.ip, far_port), ssrc=0x2002)
        return self._step("MDCX", a.mdcx(self.endpoint, self.call_id, self.conn_a, mode="sendrecv",
                                         sdp=sdp_offer(self.far.ip, self.far_port, 3)))

    def delete(self) -> list[Response]:
        """DLCX of both connections (osmo-mgw answers 250 with statistics)."""
        a = self.agent
        assert a is not None and self.endpoint
        out = []
        for conn in (self.conn_a, self.conn_b):
            if conn:
                out.append(self._step("DLCX", a.dlcx(self.endpoint, self.call_id, conn)))
        return out

    # --- media -------------------------------------------------------------------------------

    def rtp(self, packets: int = 20) -> RtpCount:
        """The far end sends to connection A, the local end to connection B;
        osmo-mgw forwards each to the other."""
        assert self.far_peer and self.local and self.media_a and self.media_b
        local_got, far_got = exchange(self.far_peer, self.media_a, self.local, self.media_b,
                                      packets=packets)
        return RtpCount(packets, len(local_got), packets, len(far_got),
                        tuple(sorted({f"{p[0]}:{p[1]}" for p, _ in local_got})),
                        tuple(sorted({f"{p[0]}:{p[1]}" for p, _ in far_got})))


    def probe(self, far_target: tuple[str, int], packets: int = 10) -> RtpCount:
        """After the connections are gone: the far end sends to connection A's
        old address and a socket now bound there (osmo-mgw released it) sends
        to ``far_target`` (where the far end's media was addressed, its public
        pair behind NAT). What still arrives passed the gateway."""
        assert self.far_peer and self.media_a
        sink = RtpPeer(self.mgw.netns, (self.mgw.ip, self.media_a[1]), ssrc=0x3003)
        try:
            got_mgw, got_far = exchange(self.far_peer, self.media_a, sink, far_target, packets=packets)
        finally:
            sink.close()
        return RtpCount(packets, len(got_mgw), packets, len(got_far),
                        tuple(sorted({f"{p[0]}:{p[1]}" for p, _ in got_mgw})),
                        tuple(sorted({f"{p[0]}:{p[1]}" for p, _ in got_far})))


def node_pinholes(state, role: str | None = None) -> list[dict]:
    """``gwctl show pinholes`` of the active node (or ``role``), through its
    control socket."""
    from ops.lab import gateway_starter
    plan = state.get_plan()
    role = role or gateway_starter.active_role(state)
    if role is None:
        raise LabError("no node reports active")
    sock = gateway_starter.node_paths(state, plan)[role].socket
    return gateway_starter.node_call(sock, "show", {"what": "pinholes"})


def mgcp_pinholes(holes: list[dict], call_id: str) -> list[dict]:
    return [h for h in holes if str(h.get("call", "")).startswith("mgcp-call/")
            and str(h["call"]).endswith("/" + call_id)]


# --- capture ---------------------------------------------------------------------------------

class Capture:
    """tshark writing one lab segment's traffic (UDP) to a file, run on the
    segment's bridge in the switch namespace: every frame on that wire, from
    either gateway node or any host."""

    def __init__(self, switch_ns: str, bridge: str, path: Path) -> None:
        self.path = path
        self.switch_ns, self.bridge = switch_ns, bridge
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(ns_cmd(self.switch_ns, "tshark", "-q", "-n", "-i", self.bridge,
                                            "-f", "udp", "-w", str(self.path)),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        # tshark writes the file's header once it captures; then it is live.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.path.exists() and self.path.stat().st_size > 0:
                time.sleep(0.2)
                return
            if self.proc.poll() is not None:
                raise LabError(f"tshark on {self.bridge}: {self.proc.stderr.read().decode()[-300:]}")
            time.sleep(0.05)
        self.stop()
        raise LabError(f"tshark on {self.bridge} did not start capturing")

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        time.sleep(0.3)          # the last frames reach the file
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(3)

    def count(self, display_filter: str) -> int:
        out = run(["tshark", "-n", "-r", str(self.path), "-Y", display_filter, "-T", "fields",
                   "-e", "frame.number"], timeout=60).stdout
        return len(out.split())

    def private_leaks(self, addresses: list[str]) -> dict[str, int]:
        """Frames naming each address in a header or anywhere in the bytes
        (MGCP and SDP are text)."""
        return {a: self.count(f'ip.addr == {a} || frame contains "{a}"') for a in addresses}


# --- who is who in a configuration -------------------------------------------------------------

# Subscribers' IADs made on a gateway subnet that the address book names only
# as a subnet (manual ch. 3 "Media Gateway in Subscribers' Homes": host
# numbers in SubscriberSubNet 2.2.2.0/24).
IAD_HOSTS = (101, 102)


@dataclass(frozen=True, slots=True)
class CallParties:
    ca: Leg
    mgw: Leg
    far: Leg
    crosses: bool           # media between mgw and far crosses the gateway
    notes: tuple[str, ...] = ()


def _policy_hosts(plan, config, service: str):
    """(source, destination) address book entries of permit policies for
    ``service``; a MIP destination stands for its host."""
    mips = {str(m.ip): str(m.host) for i in config.interfaces.values() for m in i.mips}
    for pol in config.policies:
        if pol.action != "permit" or pol.service.lower() != service:
            continue

        def entry(ref, zone):
            if ref.kind == "mip":
                return ("host", mips.get(ref.value))
            if ref.kind != "name":
                return (None, None)
            e = config.addresses.get((zone, ref.value))
            if e is None:
                return (None, None)
            return ("host", str(e.ip.ip)) if e.is_host else ("subnet", e.ip.network)
        yield entry(pol.src, pol.from_zone), entry(pol.dst, pol.to_zone)


def choose_parties(state, config) -> CallParties:
    """The call a configuration is written for (manual ch. 3 "Examples"):
    the call agent is the destination of the MGCP-CA policies (gateways send
    to it), the media gateway the first MGCP-UA destination of a policy from
    the call agent, the far end another gateway host; when the gateways are
    only a subnet, two IADs are made on it (and media between them does not
    cross the gateway)."""
    plan = state.get_plan()
    hosts = {str(h.address.ip): h for h in plan.hosts}
    cas = [d[1] for _s, d in _policy_hosts(plan, config, "mgcp-ca") if d[0] == "host" and d[1] in hosts]
    if not cas:
        raise LabError("no call agent: no permit policy to a host with service MGCP-CA")
    ca = hosts[cas[0]]
    controlled: list[str] = []
    others: list[str] = []
    subnets = []
    for (sk, sv), (dk, dv) in _policy_hosts(plan, config, "mgcp-ua"):
        if dk == "host" and dv in hosts and dv != cas[0]:
            # Gateways the call agent itself controls first, in policy order.
            (controlled if sv == cas[0] else others).append(dv)
        elif dk == "subnet" and dv not in subnets:
            subnets.append(dv)
    gw_hosts = list(dict.fromkeys(controlled + others))
    notes: list[str] = []
    if len(gw_hosts) >= 2:
        mgw, far = hosts[gw_hosts[0]], hosts[gw_hosts[1]]
        return CallParties(Leg(ca.netns, str(ca.address.ip)), Leg(mgw.netns, str(mgw.address.ip)),
                           Leg(far.netns, str(far.address.ip)), True)
    if not subnets:
        raise LabError("no media gateways: no MGCP-UA policy to a host or subnet")
    net = subnets[0]
    seg = next((s for s in plan.segments if s.gateway_ip is not None and net.overlaps(s.network)), None)
    if seg is None:
        raise LabError(f"no lab segment holds the gateways' subnet {net}")
    legs = []
    for n in IAD_HOSTS:
        ip = net.network_address + n
        ns = add_host(state.lab, f"iad{n}", f"{ip}/{seg.network.prefixlen}", seg.bridge,
                      str(seg.gateway_ip.ip), Path(state.state_dir) if state.state_dir else None)
        legs.append(Leg(ns, str(ip)))
    notes.append(f"the media gateways are the subnet {net}: IADs {legs[0].ip} and {legs[1].ip} "
                 f"made on {seg.label}; media between them stays on that segment and does not "
                 f"cross the gateway (only signalling does)")
    return CallParties(Leg(ca.netns, str(ca.address.ip)), legs[0], legs[1], False, tuple(notes))


def translated_toward(config, host: str, peer: str) -> str | None:
    """The source NAT the configuration gives ``host``'s MGCP toward ``peer``
    (a MIP's reverse mapping or a policy's ``nat src``), or None."""
    from gateway.policy import Engine, Flow

    eng = Engine(config)
    where = eng.route(IPv4Address(host))
    if where is None:
        return None
    d = eng.decide(Flow(where[0], IPv4Address(host), IPv4Address(peer), "udp", GW_PORT, GW_PORT))
    return str(d.nat.src) if d.action == "permit" and d.nat.src is not None else None


@dataclass
class CallReport:
    """What :func:`run_call` saw, stage by stage."""

    lab: str
    parties: dict
    notes: list[str]
    steps: list[dict] = field(default_factory=list)
    pinholes: int = 0                     # MGCP pinholes of the call on the active node
    far_public: str | None = None         # the far end's public pair, when NAT gives it one
    rtp: dict | None = None
    failover: dict | None = None
    pinholes_after_failover: int | None = None
    rtp_after_failover: dict | None = None
    rtp_after_mdcx: dict | None = None
    pinholes_after_delete: int | None = None
    rtp_after_delete: dict | None = None
    media_through_gateway: int = 0        # media packets the active datapath passed (fast paths)
    capture_segment: str | None = None
    private: list[str] = field(default_factory=list)
    leaks: dict = field(default_factory=dict)
    mgcp_frames: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        if self.error is not None:
            return False
        rtp_ok = all(r is None or (r["local_received"] >= 0.8 * r["far_sent"]
                                   and r["far_received"] >= 0.8 * r["local_sent"])
                     for r in (self.rtp, self.rtp_after_failover, self.rtp_after_mdcx))
        blocked = self.rtp_after_delete is None or (self.rtp_after_delete["local_received"] == 0
                                                    and self.rtp_after_delete["far_received"] == 0)
        return (rtp_ok and blocked and self.pinholes > 0 and self.pinholes_after_delete == 0
                and not any(self.leaks.values()))


def _paths(state) -> int:
    from ops.lab import gateway_starter
    out = 0
    for st in gateway_starter.node_status(state).values():
        paths = (st.get("datapath") or {}).get("paths") or {}
        out += int(paths.get("fast-pinhole", 0)) + int(paths.get("fast-session", 0))
    return out


def run_call(lab: str, *, failover: str | None = None, call_id: str | None = None,
             packets: int = 20, workdir: Path | None = None, capture: bool = True) -> CallReport:
    """One MGCP call through a running gatewayd lab (``gwctl lab up`` of a
    chapter 3 example): the parties :func:`choose_parties` names; AUEP, CRCX
    without SDP, CRCX with SDP, MDCX with the far end's descriptor; RTP both
    ways; the call's pinholes on the active node's control socket; then,
    with ``failover`` ("graceful" or "crash"), the pair fails over, RTP must
    resume and an MDCX moving the far end's port must succeed on the new
    active; DLCX of both connections; the pinholes must be gone and, where
    media crosses the gateway, RTP must no longer pass. With ``capture`` the
    media gateway's segment is captured (tshark) and searched for the
    addresses NAT hides from it."""
    from gateway.config import load_file
    from ops.lab import gateway_starter

    state = labns.load_state(lab)
    if state is None or state.plan is None or not state.complete:
        raise LabError(f"no lab {lab!r} is up (gwctl lab up EXAMPLE --name {lab})")
    if state.starter != gateway_starter.NAME:
        raise LabError(f"lab {lab} runs {state.starter}, not the gatewayd pair")
    config = load_file(state.config)
    plan = state.get_plan()
    parties = choose_parties(state, config)
    workdir = workdir or labns.lab_files(lab, Path(state.state_dir) if state.state_dir else None) / "mgcp"
    call_id = call_id or f"{random.getrandbits(32):08X}"
    rep = CallReport(lab, {k: asdict(getattr(parties, k)) for k in ("ca", "mgw", "far")},
                     list(parties.notes))
    private = [h for h in (parties.ca.ip, parties.far.ip)
               if translated_toward(config, h, parties.mgw.ip) is not None]
    cap = None
    if capture and private:
        seg = next(s for s in plan.segments if IPv4Address(parties.mgw.ip) in s.network)
        cap = Capture(plan.switch, seg.bridge, workdir / f"{seg.bridge}-{call_id}.pcap")
        rep.capture_segment, rep.private = f"{seg.label} ({seg.bridge})", private
        workdir.mkdir(parents=True, exist_ok=True)
        cap.start()
    media0 = _paths(state)
    call = LabCall(parties.ca, parties.mgw, parties.far, workdir, call_id=call_id)
    try:
        with call:
            call.audit()
            call.create()
            holes = mgcp_pinholes(node_pinholes(state), call_id)
            rep.pinholes = len(holes)
            pub = [h["dst"] for h in holes if h.get("to") == f"{parties.far.ip}:{call.far_port}"]
            rep.far_public = pub[0] if pub else None
            rep.rtp = asdict(call.rtp(packets))
            if failover:
                res = gateway_starter.failover(state, crash=failover == "crash")
                rep.failover = asdict(res)
                state = labns.load_state(lab)
                rep.pinholes_after_failover = len(mgcp_pinholes(node_pinholes(state), call_id))
                rep.rtp_after_failover = asdict(call.rtp(packets))
                call.modify(call.far_port + 2)
                holes = mgcp_pinholes(node_pinholes(state), call_id)
                pub = [h["dst"] for h in holes if h.get("to") == f"{parties.far.ip}:{call.far_port}"]
                rep.far_public = pub[0] if pub else None
                rep.rtp_after_mdcx = asdict(call.rtp(packets))
            # A restarted node's counters start again: only a gain counts.
            rep.media_through_gateway = max(0, _paths(state) - media0)
            call.delete()
            rep.pinholes_after_delete = len(mgcp_pinholes(node_pinholes(state), call_id))
            if parties.crosses:
                target = rep.far_public or f"{parties.far.ip}:{call.far_port}"
                ip, _, port = target.rpartition(":")
                rep.rtp_after_delete = asdict(call.probe((ip, int(port))))
    except (LabError, OSError, RuntimeError, ConnectionError) as exc:
        rep.error = f"{type(exc).__name__}: {exc}"
    finally:
        rep.steps = [asdict(s) for s in call.steps]
        if cap is not None:
            cap.stop()
            rep.leaks = cap.private_leaks(private)
            rep.mgcp_frames = cap.count("mgcp")
    return rep
