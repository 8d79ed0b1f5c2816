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

The peer's parts are modules of their own: ``h323peer_sockets`` (sockets and
TPKT), ``h323peer_media`` (RTP), ``h323peer_ras`` (the gatekeeper and the RAS
client), ``h323peer_call`` (a call's record and its Q.931) and ``h323peer_h245``;
this module is the endpoint.
"""

from __future__ import annotations

import os
import random
import select
import socket
import threading
from typing import Callable

from ops.lab import h323msg as m
from ops.lab.h323peer_call import CallLeg, Q931
from ops.lab.h323peer_h245 import H245Channel, H245Session, TcpH245, TunnelH245
from ops.lab.h323peer_media import Media, play
from ops.lab.h323peer_ras import RAS_PORT, Gatekeeper, RasClient
from ops.lab.h323peer_sockets import STEP_TIMEOUT, PeerError, make_socket

# What other modules and the tests import from here.
__all__ = ["CallLeg", "Endpoint", "Gatekeeper", "MODES", "PeerError", "RAS_PORT", "RasClient",
           "SIGNAL_PORT", "make_socket"]

SIGNAL_PORT = 1720          # H.225.0 7.2: call signalling
MODES = ("faststart", "h245", "tunnel")


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
