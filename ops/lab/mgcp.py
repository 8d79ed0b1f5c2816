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

The pieces are modules of their own: ``netns_socket`` (sockets inside
namespaces), ``mgcp_agent`` (the call agent and its messages), ``rtp_peer``,
``osmo_mgw``, ``extra_hosts``, ``segment_capture`` (tshark on a segment),
``mgcp_call`` (one call's steps) and ``mgcp_parties`` (who is who in a
configuration); this module runs a whole call and reports it.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from ops.lab import netns as labns
from ops.lab.extra_hosts import add_host
from ops.lab.mgcp_agent import CallAgent, MgcpTimeout, format_command, parse_message, sdp_media, sdp_offer
from ops.lab.mgcp_call import LabCall
from ops.lab.mgcp_parties import choose_parties, translated_toward
from ops.lab.netns import LabError
from ops.lab.netns_socket import in_netns, ns_socket
from ops.lab.osmo_mgw import OSMO_MGW, osmo_mgw_config
from ops.lab.rtp_peer import rtp_packet
from ops.lab.segment_capture import Capture

# What other modules, the tests and the benchmarks import from here.
__all__ = ["CallAgent", "MgcpTimeout", "OSMO_MGW", "add_host", "format_command", "in_netns",
           "ns_socket", "osmo_mgw_config", "parse_message", "rtp_packet", "run_call", "sdp_media",
           "sdp_offer", "translated_toward"]


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
    media_through_gateway: int = 0        # media packets the datapaths passed (fast paths, kernel)
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
        out += sum(int(paths.get(p, 0)) for p in ("fast-pinhole", "fast-session", "kernel"))
    return out


def _media_passed(state, before: int) -> int:
    """Media packets the datapaths passed since ``before`` (:func:`_paths`).
    With the media offload the kernel forwards them and its counters are
    read back about once a second (actors/kernel_media.py): a read after
    the media is waited for."""
    from ops.lab import gateway_starter
    if any((st.get("media_offload") or {}).get("media_path") == "kernel"
           for st in gateway_starter.node_status(state).values()):
        time.sleep(1.5)
    return max(0, _paths(state) - before)


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
            rep.media_through_gateway = _media_passed(state, media0)
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
