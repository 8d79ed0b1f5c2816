"""The H.323 peer's H.245: a channel over its own TCP connection or tunnelled
in Q.931 messages, and the symmetric procedures of one side of a call."""

from __future__ import annotations

import random
import socket
import time

from ops.lab import h323msg as m
from ops.lab.h323peer_call import CallLeg, Q931
from ops.lab.h323peer_media import Media
from ops.lab.h323peer_sockets import STEP_TIMEOUT, PeerError, TpktReader


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
