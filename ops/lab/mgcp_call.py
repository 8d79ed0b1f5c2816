"""One MGCP call in a running lab: the call agent drives osmo-mgw through the
gateway pair (CRCX, MDCX, DLCX, AUEP) and RTP is exchanged across it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ops.lab.mgcp_agent import CA_PORT, GW_PORT, CallAgent, Response, sdp_offer
from ops.lab.netns import LabError
from ops.lab.netns_socket import ns_socket
from ops.lab.osmo_mgw import OsmoMgw
from ops.lab.rtp_peer import RtpPeer, exchange

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
