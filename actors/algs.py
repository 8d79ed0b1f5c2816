"""What the node needs to know of each ALG: one adapter per protocol.

The node's machinery (dialog actors, journal-then-release, entity actors with
timers, pinholes into the datapath, mirroring on the standby) is the same for
SIP and MGCP; these adapters name the pure functions, the state slot in
``gateway.domain.DomainState``, the context built from the datapath's
decision, and which events end an entity or free media."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mgcp import alg as mgcp_alg
from gateway.mgcp import events as mgcp_ev
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
    def context(o):
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
    def context(o):
        # Who sent it: a datagram to the call agent's port comes from a gateway
        # (service MGCP-CA), one to the gateway's port from a call agent (MGCP-UA).
        role = mgcp_alg.GW if o.dst[1] == mgcp_alg.CA_PORT else "call-agent"
        return mgcp_alg.MgcpContext(o.direction, o.src, o.dst, o.nat_src, o.nat_dst, o.ingress, o.egress,
                                    role)

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
