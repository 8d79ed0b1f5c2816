"""A live H.323 test peer: a gatekeeper and endpoints over real sockets
(messages from :mod:`ops.lab.h323msg`).

* :class:`Gatekeeper`: RAS on UDP 1719 (H.225.0 7.1): GRQ/GCF, RRQ/RCF,
  ARQ/ACF (direct call model; destCallSignalAddress is the callee's
  registered callSignalAddress as the RRQ carried it, or the requester's for
  ``answerCall``), DRQ/DCF, URQ/UCF. It answers to the rasAddress the
  message names (GRQ, RRQ) or the one the endpoint registered: an address
  the gateway failed to translate is not reachable, the test sees it.
* :class:`Endpoint`: a RAS client, Q.931 over TCP 1720 with TPKT (Setup,
  CallProceeding, Alerting, Connect, ReleaseComplete, each with its UUIE),
  H.245 in one of three modes (:data:`MODES`): ``faststart`` (the channels
  in the Setup's and the Connect's fastStart), ``h245`` (the Connect's
  h245Address, a separate TCP connection), ``tunnel`` (h245Control in
  Q.931 messages, h245Tunnelling true). Every address in a message is the
  endpoint's own: a gateway between the parties must translate them.
* RTP: G.711 A-law, 20 ms packets (RFC 3550 header, RFC 3551 PT 8), sent
  to the address the other side signalled, for a few seconds, both ways at
  once; each side counts what it receives.

Sockets are made inside a lab namespace by a thread that entered it
(:func:`ops.lab.mgcp.in_netns`); without a namespace they are plain sockets
(the unit tests over loopback). Every wait is bounded.
"""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ops.lab import h323msg as m

RAS_PORT = 1719             # H.225.0 7.1: gatekeeper RAS
SIGNAL_PORT = 1720          # H.225.0 7.2: call signalling
STEP_TIMEOUT = 10.0         # any one answer the peer waits for
RAS_RTO = (0.5, 1.0, 2.0, 4.0)   # RAS retransmissions (H.225.0 Appendix: a few seconds)
PCMA = 8
FRAME = 0.020               # 20 ms packets
PAYLOAD = b"\xd5" * 160     # 20 ms of A-law silence at 8 kHz
MODES = ("faststart", "h245", "tunnel")


class PeerError(RuntimeError):
    """The other side did not answer, or answered something unexpected."""


# --- sockets -------------------------------------------------------------------------------

def make_socket(netns: str | None, kind: int, bind: tuple[str, int] | None = None,
                listen: bool = False) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if bind is not None:
                s.bind(bind)
            if listen:
                s.listen(64)
        except BaseException:
            s.close()
            raise
        return s
    if netns is None:
        return make()
    from ops.lab.mgcp import in_netns
    sock = in_netns(netns, make)
    assert isinstance(sock, socket.socket)
    return sock


class TpktReader:
    """TPKT messages from one TCP connection (RFC 1006 6), bounded waits."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.closed = False

    def read(self, timeout: float = STEP_TIMEOUT) -> bytes | None:
        """One framed message, or None at end of stream. Raises PeerError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[2:4], "big")
                if self.buf[0] != m.TPKT_VERSION or n < 4:
                    raise PeerError(f"not TPKT: {self.buf[:8].hex()}")
                if len(self.buf) >= n:
                    msg, self.buf = self.buf[:n], self.buf[n:]
                    return msg
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError("timed out waiting for a TPKT message")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, OSError):
                data = b""
            if not data:
                self.closed = True
            self.buf += data


# --- RTP -----------------------------------------------------------------------------------

@dataclass
class Media:
    """One side's RTP and RTCP sockets (RTCP bound so nothing answers it
    with ICMP; RTP port even, RTCP the next, RFC 3550 11)."""

    sock: socket.socket
    rtcp: socket.socket
    address: tuple[str, int]
    sent: int = 0
    received: int = 0
    sources: set = field(default_factory=set)

    @property
    def rtcp_address(self) -> tuple[str, int]:
        return self.address[0], self.address[1] + 1

    def close(self) -> None:
        self.sock.close()
        self.rtcp.close()


def rtp_packet(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, PCMA, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + PAYLOAD


def play(media: Media, to: tuple[str, int], seconds: float, stop: Callable[[], bool] = lambda: False
         ) -> None:
    """Send 20 ms packets to ``to`` for ``seconds`` and count what arrives
    meanwhile, then drain for a short while (the other side's last packets)."""
    ssrc = random.getrandbits(32)
    start = time.monotonic()
    n = int(seconds / FRAME)
    for i in range(n):
        if stop():
            break
        try:
            media.sock.sendto(rtp_packet(i, ssrc), to)
            media.sent += 1
        except OSError:
            pass                    # e.g. ICMP unreachable reported on the socket: counted as not sent
        _receive(media, start + (i + 1) * FRAME)
    _receive(media, time.monotonic() + 0.3)


def _receive(media: Media, until: float) -> None:
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([media.sock], [], [], left)
        if not r:
            return
        try:
            data, peer = media.sock.recvfrom(2048)
        except OSError:
            continue
        if len(data) >= 12 and data[0] >> 6 == 2 and data[1] & 0x7F == PCMA:
            media.received += 1
            media.sources.add(f"{peer[0]}:{peer[1]}")


# --- gatekeeper ----------------------------------------------------------------------------

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


# --- endpoint ------------------------------------------------------------------------------

@dataclass
class CallLeg:
    """What one side of one call saw."""

    role: str                       # "caller" / "callee"
    mode: str
    guid: str = ""
    steps: list[str] = field(default_factory=list)
    connected: bool = False
    media_to: str | None = None     # where this side sent RTP (as signalled by the other)
    rtp_sent: int = 0
    rtp_received: int = 0
    rtp_sources: list[str] = field(default_factory=list)
    released: bool = False          # ReleaseComplete sent/received, H.245 closed, DCF
    error: str | None = None


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


class Endpoint:
    """An H.323 terminal in a namespace (see the module's docstring)."""

    def __init__(self, netns: str | None, ip: str, name: str, *, signal_port: int = SIGNAL_PORT,
                 ras_port: int = 0, media_base: int = 20000) -> None:
        self.netns, self.ip, self.name = netns, ip, name
        self.signal = (ip, signal_port)
        self.listener = make_socket(netns, socket.SOCK_STREAM, self.signal, listen=True)
        self.ras_sock = make_socket(netns, socket.SOCK_DGRAM, (ip, ras_port))
        self.ras_address = self.ras_sock.getsockname()
        self.ras: RasClient | None = None
        self.endpoint_id: str | None = None
        self.media_base = media_base
        self._media_next = 0
        self._lock = threading.Lock()
        self.answered: list[CallLeg] = []
        self.answer_seconds = 3.0
        # forwardLogicalChannelNumber of our H.245 channel (H.245: any
        # 1..65535, chosen by the opener; independent of the sessionID, 1).
        self.h245_channel = 1
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, name=f"ep-{name}", daemon=True)

    # --- RAS ------------------------------------------------------------------------------

    def register(self, gatekeeper: tuple[str, int]) -> str:
        """GRQ/GCF then RRQ/RCF with our own addresses; returns the endpointIdentifier."""
        self.ras = RasClient(self.ras_sock, gatekeeper)
        self.ras.request(lambda s: m.grq(s, self.ras_address, self.name), "gatekeeperConfirm")
        f = self.ras.request(lambda s: m.rrq(s, self.signal, self.ras_address, self.name),
                             "registrationConfirm")
        self.endpoint_id = f["endpointIdentifier"]
        return self.endpoint_id

    def unregister(self) -> None:
        if self.ras is not None and self.endpoint_id:
            self.ras.request(lambda s: m.urq(s, self.signal, self.endpoint_id), "unregistrationConfirm")
            self.endpoint_id = None

    def _admission(self, dest: str, call_ref: int, guid: bytes, answer: bool) -> tuple[str, int]:
        assert self.ras is not None and self.endpoint_id
        f = self.ras.request(lambda s: m.arq(s, self.endpoint_id, self.name, dest, call_ref, guid, answer,
                                             self.signal if answer else None), "admissionConfirm")
        got = m.from_transport(f["destCallSignalAddress"])
        if got is None:
            raise PeerError("ACF without an IPv4 destCallSignalAddress")
        return got

    def _disengage(self, call_ref: int, guid: bytes, answered: bool) -> None:
        if self.ras is not None and self.endpoint_id:
            self.ras.request(lambda s: m.drq(s, self.endpoint_id, call_ref, guid, answered),
                             "disengageConfirm")

    # --- media ----------------------------------------------------------------------------

    def _media(self) -> Media:
        with self._lock:
            for _ in range(200):
                port = self.media_base + 2 * (self._media_next % 2000)
                self._media_next += 1
                try:
                    rtp = make_socket(self.netns, socket.SOCK_DGRAM, (self.ip, port))
                except OSError:
                    continue
                try:
                    rtcp = make_socket(self.netns, socket.SOCK_DGRAM, (self.ip, port + 1))
                except OSError:
                    rtp.close()
                    continue
                return Media(rtp, rtcp, (self.ip, port))
        raise PeerError("no free RTP port pair")

    # --- serving --------------------------------------------------------------------------

    def serve(self, seconds: float = 3.0) -> "Endpoint":
        """Answer incoming calls (each on its own thread), RTP for ``seconds``."""
        self.answer_seconds = seconds
        self.accepting.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self.accepting.is_alive():
            self.accepting.join(3)
        for t in self._threads:
            t.join(STEP_TIMEOUT)
        self.listener.close()
        self.ras_sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.listener], [], [], 0.2)
            if not r:
                continue
            try:
                conn, _peer = self.listener.accept()
            except OSError:
                continue
            leg = CallLeg("callee", "?")
            with self._lock:
                self.answered.append(leg)
            t = threading.Thread(target=self._answer_guarded, args=(conn, leg), daemon=True)
            self._threads.append(t)
            t.start()

    def _answer_guarded(self, conn: socket.socket, leg: CallLeg) -> None:
        try:
            self._answer(conn, leg)
        except Exception as exc:
            leg.error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def _answer(self, conn: socket.socket, leg: CallLeg) -> None:
        q = Q931(conn)
        cr, _from_dest, mtype, info = q.read()
        if mtype != m.SETUP or info is None:
            raise PeerError(f"Setup expected, message type {mtype:#x}")
        pdu = info["h323-uu-pdu"]
        setup = pdu["h323-message-body"][1]
        guid = setup["callIdentifier"]["guid"]
        leg.guid = guid.hex()
        offer = setup.get("fastStart")
        tunnel = bool(pdu.get("h245Tunnelling"))
        leg.mode = "faststart" if offer else "tunnel" if tunnel else "h245"
        leg.steps.append("setup")
        caller = [a[1] for a in setup.get("sourceAddress", []) if a[0] == "h323-ID"]
        q.send(m.CALL_PROCEEDING, cr, True, m.proceeding_body(guid), tunnelling=tunnel)
        leg.steps.append("callProceeding")
        if self.ras is not None and self.endpoint_id:
            self._admission(caller[0] if caller else "", cr, guid, answer=True)
            leg.steps.append("ACF")
        q.send(m.ALERTING, cr, True, m.alerting_body(guid), tunnelling=tunnel)
        leg.steps.append("alerting")
        media = self._media()
        try:
            if leg.mode == "faststart":
                answer, caller_rtp = m.faststart_answer(offer, media.address, media.rtcp_address)
                q.send(m.CONNECT, cr, True, m.connect_body(guid, None, answer))
                leg.steps.append("connect")
                leg.connected = True
                if caller_rtp is None:
                    raise PeerError("fastStart offer without the caller's RTP address")
                leg.media_to = f"{caller_rtp[0]}:{caller_rtp[1]}"
                play(media, caller_rtp, self.answer_seconds, stop=q.has_release)
                self._count(leg, media)
                q.wait_release(leg)
            else:
                if leg.mode == "h245":
                    h245_listener = make_socket(self.netns, socket.SOCK_STREAM, (self.ip, 0), listen=True)
                    try:
                        q.send(m.CONNECT, cr, True,
                               m.connect_body(guid, h245_listener.getsockname(), None))
                        leg.steps.append("connect")
                        leg.connected = True
                        r, _, _ = select.select([h245_listener], [], [], STEP_TIMEOUT)
                        if not r:
                            raise PeerError("the caller did not open the H.245 connection")
                        hconn, _ = h245_listener.accept()
                    finally:
                        h245_listener.close()
                    chan: H245Channel = TcpH245(hconn)
                else:
                    q.send(m.CONNECT, cr, True, m.connect_body(guid, None, None), tunnelling=True)
                    leg.steps.append("connect")
                    leg.connected = True
                    chan = TunnelH245(q, cr, True)
                try:
                    session = H245Session(chan, media, leg, self.h245_channel)
                    peer_rtp = session.open()
                    leg.media_to = f"{peer_rtp[0]}:{peer_rtp[1]}"
                    play(media, peer_rtp, self.answer_seconds)
                    self._count(leg, media)
                    session.close(initiator=False)
                finally:
                    chan.close_transport()
                q.wait_release(leg)
            self._disengage(cr, guid, answered=True)
            leg.steps.append("DCF")
        finally:
            media.close()

    @staticmethod
    def _count(leg: CallLeg, media: Media) -> None:
        leg.rtp_sent, leg.rtp_received = media.sent, media.received
        leg.rtp_sources = sorted(media.sources)

    # --- calling --------------------------------------------------------------------------

    def call(self, dest: str, mode: str, seconds: float = 3.0, *,
             address: tuple[str, int] | None = None, disengage_first: bool = False,
             on_step: Callable[[str, CallLeg], None] | None = None) -> CallLeg:
        """One call to alias ``dest`` (address from the gatekeeper's ACF, or
        ``address`` without a gatekeeper), H.245 in ``mode``, RTP for
        ``seconds``, then released. With ``disengage_first`` the caller
        tells the gatekeeper first (DRQ/DCF: the call is over, H.225.0 7.9)
        and only then sends ReleaseComplete. ``on_step(step, leg)`` is
        called once H.245 is closed (``h245-closed``) and after the DCF
        (``DCF``), the call signalling connection still open then if the
        DRQ came first."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
        leg = CallLeg("caller", mode)
        guid = os.urandom(16)
        leg.guid = guid.hex()
        cr = random.randint(1, 32767)
        try:
            self._call(leg, dest, mode, seconds, guid, cr, address, disengage_first,
                       on_step or (lambda _s, _l: None))
        except Exception as exc:
            leg.error = f"{type(exc).__name__}: {exc}"
        return leg

    def _call(self, leg: CallLeg, dest: str, mode: str, seconds: float, guid: bytes, cr: int,
              address: tuple[str, int] | None, disengage_first: bool,
              on_step: Callable[[str, CallLeg], None]) -> None:
        if self.ras is not None and self.endpoint_id:
            address = self._admission(dest, cr, guid, answer=False)
            leg.steps.append("ACF")
        if address is None:
            raise PeerError("no destination: neither a gatekeeper nor an address")
        conn = make_socket(self.netns, socket.SOCK_STREAM, (self.ip, 0))
        media = self._media()
        try:
            conn.settimeout(STEP_TIMEOUT)
            conn.connect(address)
            conn.settimeout(None)
            q = Q931(conn)
            offer = m.faststart_offer(media.address, media.rtcp_address) if mode == "faststart" else None
            q.send(m.SETUP, cr, False,
                   m.setup_body(self.name, dest, guid, conn.getsockname(), address, offer),
                   tunnelling=mode == "tunnel", extra=m.BEARER_SPEECH)
            leg.steps.append("setup")
            connect = None
            while connect is None:
                _cr, _fd, mtype, info = q.read()
                name = m.MESSAGE_NAMES.get(mtype, hex(mtype))
                if mtype == m.RELEASE_COMPLETE:
                    raise PeerError(f"call released by the callee after {leg.steps}")
                if info is not None and info["h323-uu-pdu"].get("h245Control"):
                    q.tunnelled.extend(info["h323-uu-pdu"]["h245Control"])
                if mtype in (m.CALL_PROCEEDING, m.ALERTING):
                    leg.steps.append(name)
                elif mtype == m.CONNECT:
                    leg.steps.append(name)
                    connect = info["h323-uu-pdu"]["h323-message-body"][1]
            leg.connected = True
            if mode == "faststart":
                answer = connect.get("fastStart")
                to = m.faststart_media(answer) if answer else None
                if to is None:
                    raise PeerError("Connect without accepted fastStart channels")
                leg.media_to = f"{to[0]}:{to[1]}"
                play(media, to, seconds)
                self._count(leg, media)
            else:
                if mode == "h245":
                    h245 = m.from_transport(connect.get("h245Address"))
                    if h245 is None:
                        raise PeerError("Connect without an h245Address")
                    hconn = make_socket(self.netns, socket.SOCK_STREAM, (self.ip, 0))
                    hconn.settimeout(STEP_TIMEOUT)
                    hconn.connect(h245)
                    hconn.settimeout(None)
                    chan: H245Channel = TcpH245(hconn)
                    leg.steps.append("h245-connected")
                else:
                    chan = TunnelH245(q, cr, False)
                try:
                    session = H245Session(chan, media, leg, self.h245_channel)
                    peer_rtp = session.open()
                    leg.media_to = f"{peer_rtp[0]}:{peer_rtp[1]}"
                    play(media, peer_rtp, seconds)
                    self._count(leg, media)
                    session.close(initiator=True)
                    on_step("h245-closed", leg)
                finally:
                    if mode == "h245":
                        chan.close_transport()
            if disengage_first:
                self._disengage(cr, guid, answered=False)
                leg.steps.append("DCF")
                on_step("DCF", leg)
            q.send(m.RELEASE_COMPLETE, cr, False, m.release_body(guid), tunnelling=mode == "tunnel")
            leg.steps.append("releaseComplete")
            # The callee closes once it has the ReleaseComplete (H.225.0 8.5).
            q.wait_closed()
            if not disengage_first:
                self._disengage(cr, guid, answered=False)
                leg.steps.append("DCF")
                on_step("DCF", leg)
            leg.released = True
        finally:
            media.close()
            conn.close()


class Q931:
    """Q.931 messages on one call signalling connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = TpktReader(sock)
        self.tunnelled: list[bytes] = []        # h245Control items not yet consumed
        self.release_seen = False

    def send(self, mtype: int, cr: int, from_dest: bool, body, *, tunnelling: bool = False,
             h245: list[bytes] | None = None, extra: bytes = b"") -> None:
        self.sock.sendall(m.q931(mtype, cr, from_dest, m.uuie(body, tunnelling=tunnelling, h245=h245), extra))

    def read(self, timeout: float = STEP_TIMEOUT):
        msg = self.reader.read(timeout)
        if msg is None:
            raise PeerError("call signalling connection closed")
        out = m.parse_q931(msg)
        if out[2] == m.RELEASE_COMPLETE:
            self.release_seen = True
        return out

    def has_release(self) -> bool:
        """Non-blocking: has a ReleaseComplete arrived (or the connection closed)?"""
        while True:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r and len(self.reader.buf) < 4:
                return self.release_seen
            try:
                msg = self.reader.read(0.01)
            except PeerError:
                return self.release_seen
            if msg is None:
                return True
            if m.parse_q931(msg)[2] == m.RELEASE_COMPLETE:
                self.release_seen = True

    def wait_release(self, leg: CallLeg, timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.release_seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError("no ReleaseComplete from the caller")
            msg = self.reader.read(left)
            if msg is None:
                raise PeerError("connection closed without a ReleaseComplete")
            if m.parse_q931(msg)[2] == m.RELEASE_COMPLETE:
                self.release_seen = True
        leg.steps.append("releaseComplete")
        leg.released = True

    def wait_closed(self, timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.reader.closed and time.monotonic() < deadline:
            try:
                self.reader.read(max(0.0, deadline - time.monotonic()))
            except PeerError:
                break


# --- H.245 -----------------------------------------------------------------------------------

class H245Channel:
    def send(self, pdu: bytes) -> None:
        raise NotImplementedError

    def recv(self, timeout: float = STEP_TIMEOUT) -> bytes:
        raise NotImplementedError

    def close_transport(self) -> None:
        pass


class TcpH245(H245Channel):
    """H.245 on its own TCP connection, TPKT framed (H.225.0 7.4)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = TpktReader(sock)

    def send(self, pdu: bytes) -> None:
        self.sock.sendall(m.tpkt(pdu))

    def recv(self, timeout: float = STEP_TIMEOUT) -> bytes:
        msg = self.reader.read(timeout)
        if msg is None:
            raise PeerError("H.245 connection closed")
        return msg[4:]

    def close_transport(self) -> None:
        self.sock.close()


class TunnelH245(H245Channel):
    """H.245 in h245Control of Q.931 messages with an empty body (H.225.0
    7.4.2.1 / 7.3 ``empty``), h245Tunnelling true."""

    def __init__(self, q: Q931, cr: int, from_dest: bool) -> None:
        self.q, self.cr, self.from_dest = q, cr, from_dest

    def send(self, pdu: bytes) -> None:
        self.q.send(m.FACILITY, self.cr, self.from_dest, m.EMPTY_BODY, tunnelling=True, h245=[pdu])

    def recv(self, timeout: float = STEP_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.q.tunnelled:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError("timed out waiting for tunnelled H.245")
            _cr, _fd, mtype, info = self.q.read(left)
            if mtype == m.RELEASE_COMPLETE:
                raise PeerError("ReleaseComplete while H.245 was running")
            if info is not None:
                self.q.tunnelled.extend(info["h323-uu-pdu"].get("h245Control") or [])
        return self.q.tunnelled.pop(0)


class H245Session:
    """The symmetric H.245 procedures of one side: TerminalCapabilitySet,
    MasterSlaveDetermination, our OpenLogicalChannel (RTCP address) and the
    ack of the other side's (our RTP/RTCP); then CloseLogicalChannel and
    EndSessionCommand."""

    def __init__(self, chan: H245Channel, media: Media, leg: CallLeg, channel: int = 1) -> None:
        self.chan, self.media, self.leg = chan, media, leg
        self.channel = channel
        self.msd_number = random.getrandbits(24)
        self.peer_clc = False
        self.clc_acked = False
        self.end_session = False
        self.peer_channel: int | None = None

    def _handle(self, pdu: bytes) -> tuple[str, dict]:
        kind, name, f = m.decode_h245(pdu)
        if name == "terminalCapabilitySet":
            self.chan.send(m.h245_tcs_ack(f["sequenceNumber"]))
        elif name == "masterSlaveDetermination":
            mine = self.msd_number
            theirs = f["statusDeterminationNumber"]
            # H.245 C.2.3: equal terminal types: the larger number (mod 2^24 / 2) is master.
            peer_master = ((theirs - mine) % (1 << 24)) < (1 << 23) and theirs != mine
            self.chan.send(m.h245_msd_ack(peer_master))
        elif name == "openLogicalChannel":
            self.peer_channel = f["forwardLogicalChannelNumber"]
            self.chan.send(m.h245_olc_ack(self.peer_channel, self.media.address, self.media.rtcp_address))
        elif name == "closeLogicalChannel":
            self.peer_clc = True
            self.chan.send(m.h245_clc_ack(f["forwardLogicalChannelNumber"]))
        elif name == "closeLogicalChannelAck":
            self.clc_acked = True
        elif name == "endSessionCommand":
            self.end_session = True
        return name, f

    def open(self) -> tuple[str, int]:
        """Capabilities, master/slave, channels both ways; the other side's
        RTP address (its OLCAck's mediaChannel)."""
        self.chan.send(m.h245_tcs(1))
        self.chan.send(m.h245_msd(self.msd_number))
        self.chan.send(m.h245_olc(self.channel, self.media.rtcp_address))
        got: set[str] = set()
        peer_rtp = None
        deadline = time.monotonic() + STEP_TIMEOUT
        need = {"terminalCapabilitySet", "terminalCapabilitySetAck", "masterSlaveDetermination",
                "masterSlaveDeterminationAck", "openLogicalChannel", "openLogicalChannelAck"}
        while not need <= got:
            name, f = self._handle(self.chan.recv(max(0.1, deadline - time.monotonic())))
            got.add(name)
            if name == "openLogicalChannelAck":
                peer_rtp, _rtcp = m.olc_ack_media(f)
        self.leg.steps.append("h245-open")
        if peer_rtp is None:
            raise PeerError("OpenLogicalChannelAck without a mediaChannel")
        return peer_rtp

    def close(self, initiator: bool) -> None:
        """CloseLogicalChannel of our channel, the other's answered; then
        EndSessionCommand (the initiator first, the other answers)."""
        self.chan.send(m.h245_clc(self.channel))
        deadline = time.monotonic() + STEP_TIMEOUT
        if initiator:
            while not (self.clc_acked and self.peer_clc):
                self._handle(self.chan.recv(max(0.1, deadline - time.monotonic())))
            self.chan.send(m.h245_end_session())
            while not self.end_session:
                self._handle(self.chan.recv(max(0.1, deadline - time.monotonic())))
        else:
            while not (self.clc_acked and self.peer_clc and self.end_session):
                self._handle(self.chan.recv(max(0.1, deadline - time.monotonic())))
            self.chan.send(m.h245_end_session())
        self.leg.steps.append("h245-closed")
