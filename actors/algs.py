"""What the node needs to know of each ALG: one adapter per protocol.

The node's machinery (dialog actors, journal-then-release, entity actors with
timers, pinholes into the datapath, mirroring on the standby) is the same for
SIP and MGCP; these adapters name the pure functions, the state slot in
``gateway.domain.DomainState``, the context built from the datapath's
decision, and which events end an entity or free media."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from gateway.mgcp import alg as mgcp_alg
from gateway.mgcp import events as mgcp_ev
from gateway.policy import Flow
from gateway.sip import alg as sip_alg
from gateway.sip import events as sip_ev


@dataclass(frozen=True, slots=True)
class MediaHole:
    """An MGCP media pinhole as the datapath's pinhole table wants it."""

    id: str
    call: str
    group: str
    direction: str
    dst: tuple[str, int]
    to: tuple[str, int] | None
    kind: str = "media"
    proto: str = "udp"
    src_to: tuple[str, int] | None = None
    expires_at: float | None = None

    @classmethod
    def of(cls, p) -> "MediaHole":
        return cls(p.id, p.call, p.group, p.direction, p.dst, p.to)


def media_nat_of(engine, o):
    """The public address NAT gives the media of a private gateway named in
    an outbound message's SDP, toward the message's destination gateway, or
    None (the ALG's ``MgcpContext.media_nat``).

    Manual ch. 3 "ISP-Hosted Service": the call agent (behind a MIP) relays
    sf_gw's descriptor (2.2.2.201) to asia_gw, and sf_gw's traffic to asia_gw
    leaves by "set policy from trust to untrust sf_gw asia_gw mgcp-ua nat
    src" ("a single policy is sufficient to allow bidirectional communication
    between gateways"). The policy between two gateways is written for their
    MGCP, so the flow asked about is sf_gw's MGCP-UA datagram to asia_gw; its
    source NAT is where asia_gw must send the media, and the ALG binds a
    public pair there. Without this the private address left in the SDP."""
    dst = IPv4Address(str((o.nat_dst or o.dst)[0]))

    def nat(addr: str) -> str | None:
        try:
            host = IPv4Address(addr)
        except ValueError:
            return None
        where = engine.route(host)
        if where is None:
            return None
        d = engine.decide(Flow(where[0], host, dst, "udp", mgcp_alg.GW_PORT, mgcp_alg.GW_PORT))
        if d.action != "permit" or d.nat is None or d.nat.src is None:
            return None
        return str(d.nat.src)
    return nat


class SipAdapter:
    name = "sip"
    step = staticmethod(sip_alg.step)
    on_timer = staticmethod(sip_alg.on_timer)
    media_activity = staticmethod(sip_alg.media_activity)
    ending = (sip_ev.CallEnded, sip_ev.RegistrationRemoved, sip_ev.ProtectDenyExpired)
    pinhole_opened, pinhole_closed = sip_ev.PinholeOpened, sip_ev.PinholeClosed

    @staticmethod
    def settings(config):
        return config.sip

    @staticmethod
    def context(o, engine=None):
        return sip_alg.SipContext(o.direction, o.src, o.dst, o.nat_src, o.nat_dst, o.ingress, o.egress,
                                  getattr(o, "transport", "udp"))

    @staticmethod
    def streams(st) -> list[str]:
        out = [sip_ev.call_stream(k) for k in st.calls]
        out += [sip_ev.reg_stream(ip, port) for (ip, port) in st.registrations]
        out += [sip_ev.protect_stream(s, p) for (s, p) in st.protect]
        return out

    @staticmethod
    def pinholes(st) -> list:
        return [p for c in st.calls.values() for p in c.pinholes]

    @staticmethod
    def for_datapath(pinholes):
        return pinholes

    @staticmethod
    def released(events) -> tuple[list[str], list[str]]:
        """(calls ended, voice channels released): their media sessions go."""
        return ([e.key for e in events if isinstance(e, sip_ev.CallEnded)],
                [e.group for e in events if isinstance(e, sip_ev.MediaReleased)])

    @staticmethod
    def call_of_group(st, group: str) -> str | None:
        key = st.group_index.get(group)
        return sip_ev.call_stream(key) if key else None


class MgcpAdapter:
    name = "mgcp"
    step = staticmethod(mgcp_alg.step)
    on_timer = staticmethod(mgcp_alg.on_timer)
    ending = (mgcp_ev.CallEnded,)
    pinhole_opened, pinhole_closed = mgcp_ev.PinholeOpened, mgcp_ev.PinholeClosed

    @staticmethod
    def media_activity(state, group, now, settings, pinhole=None):
        # MGCP media pinholes stay for the connection's life (closed by DLCX).
        return mgcp_alg.media_activity(state, group, now, settings)

    @staticmethod
    def settings(config):
        return config.mgcp

    @staticmethod
    def context(o, engine=None):
        # Who sent it: a datagram to the call agent's port comes from a gateway
        # (service MGCP-CA), one to the gateway's port from a call agent (MGCP-UA).
        role = mgcp_alg.GW if o.dst[1] == mgcp_alg.CA_PORT else "call-agent"
        media_nat = media_nat_of(engine, o) if engine is not None and o.direction == "outbound" else None
        return mgcp_alg.MgcpContext(o.direction, o.src, o.dst, o.nat_src, o.nat_dst, o.ingress, o.egress,
                                    role, media_nat)

    @staticmethod
    def streams(st) -> list[str]:
        out = [c.stream for c in st.calls.values()]
        out += [f"mgcp-txn/{gw}/{origin}/{tid}" for (gw, origin, tid) in st.txns]
        return out

    @staticmethod
    def pinholes(st) -> list:
        return [p for c in st.calls.values() for p in c.pinholes.values()]

    @staticmethod
    def for_datapath(pinholes):
        return [MediaHole.of(p) for p in pinholes]

    @staticmethod
    def released(events) -> tuple[list[str], list[str]]:
        return ([mgcp_ev.call_stream(e.gateway, e.call_id) for e in events if isinstance(e, mgcp_ev.CallEnded)],
                [e.group for e in events if isinstance(e, mgcp_ev.MediaReleased)])

    @staticmethod
    def call_of_group(st, group: str) -> str | None:
        k = st.group_index.get(group)
        return mgcp_ev.call_stream(*k) if k else None


ADAPTERS = {"sip": SipAdapter, "mgcp": MgcpAdapter}


def adapter_for_stream(stream: str):
    return MgcpAdapter if stream.startswith("mgcp-") else SipAdapter
