"""What the node needs to know of each ALG: one adapter per protocol, each
implementing :class:`gateway.alg_contract.Alg`.

The node's machinery (dialog actors, journal-then-release, entity actors with
timers, pinholes into the datapath, mirroring on the standby) is the same for
SIP, MGCP and H.323; these adapters name the pure functions, the state slot in
``gateway.domain.DomainState``, the context built from the datapath's
decision, and which events end an entity or free media."""

from __future__ import annotations

from gateway import alg_replay, rematch
from gateway.alg_contract import Alg, owner_of
from gateway.alg_nat import dedicated_of, far_side_of, media_nat_of
from gateway.alg_replay import media_view
from gateway.datapath import sip_segment
from gateway.h323 import alg as h323_alg
from gateway.h323 import events as h323_ev
from gateway.h323 import segment as h323_segment
from gateway.mgcp import alg as mgcp_alg
from gateway.mgcp import events as mgcp_ev
from gateway.mgcp import roles as mgcp_roles
from gateway.pinhole import Pinhole
from gateway.sip import alg as sip_alg
from gateway.sip import events as sip_ev


def sip_step(state, ctx, data, now, settings=sip_alg.DEFAULT_SETTINGS):
    """A SIP datagram, or a TCP segment's complete messages
    (:func:`gateway.datapath.sip_segment.step_segment`)."""
    if isinstance(ctx, sip_segment.SegmentContext):
        return sip_segment.step_segment(state, ctx, data, now, settings)
    return sip_alg.step(state, ctx, data, now, settings)


class SipAdapter:
    name = "sip"
    stream_prefixes = ("call/", "reg/", "sip-protect/")
    call_prefix = "call"
    step = staticmethod(sip_step)
    on_timer = staticmethod(sip_alg.on_timer)
    media_activity = staticmethod(sip_alg.media_activity)
    ending = (sip_ev.CallEnded, sip_ev.RegistrationRemoved, sip_ev.ProtectDenyExpired)
    pinhole_opened, pinhole_closed = sip_ev.PinholeOpened, sip_ev.PinholeClosed
    calls_denied, end_calls = staticmethod(rematch.sip_calls_denied), staticmethod(sip_alg.end_calls)
    replay = staticmethod(alg_replay.sip_replay)

    @staticmethod
    def settings(config):
        return config.sip

    @staticmethod
    def context(o, engine=None):
        ctx = sip_alg.SipContext(o.direction, o.src, o.dst, o.nat_src, o.nat_dst, o.ingress, o.egress,
                                 getattr(o, "transport", "udp"), far_side_of(engine, o),
                                 dedicated_of(engine))
        seg = getattr(o, "segment", None)
        if seg is None:
            return ctx
        return sip_segment.SegmentContext(ctx, seg.messages, o.conn, seg.start, seg.layout)

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

    @staticmethod
    def summary(st, key: str) -> dict | None:
        """``show calls`` / ``gwctl replay``: one SIP call."""
        c = st.calls.get(key)
        if c is None:
            return None
        return {"alg": "sip", "call": c.key, "call_id": c.call_id, "phase": c.phase, "mode": c.mode,
                "private": c.private_ip, "alg_address": c.alg_ip, "since": c.started_at,
                "media": [media_view(g) for g in c.groups],
                "pinholes": len(c.pinholes), "deadline": c.next_deadline()}

    @staticmethod
    def calls(st) -> list[dict]:
        return [SipAdapter.summary(st, k) for k in st.calls]

    @staticmethod
    def registrations(st) -> list[dict]:
        """``show registrations``: the Incoming DIP table (manual ch. 2)."""
        return [{"public": f"{r.public_ip}:{r.public_port}", "private": f"{r.private_ip}:{r.private_port}",
                 "call_id": r.call_id, "expires_at": r.expires_at} for r in st.registrations.values()]


class MgcpAdapter:
    name = "mgcp"
    stream_prefixes = ("mgcp-",)
    call_prefix = "mgcp-call"
    step = staticmethod(mgcp_alg.step)
    on_timer = staticmethod(mgcp_alg.on_timer)
    ending = (mgcp_ev.CallEnded,)
    pinhole_opened, pinhole_closed = mgcp_ev.PinholeOpened, mgcp_ev.PinholeClosed
    calls_denied, end_calls = staticmethod(rematch.mgcp_calls_denied), staticmethod(mgcp_alg.end_calls)
    replay = staticmethod(alg_replay.mgcp_replay)

    @staticmethod
    def media_activity(state, group, now, settings, pinhole=None):
        # MGCP media pinholes stay for the connection's life (closed by DLCX).
        return mgcp_alg.media_activity(state, group, now, settings)

    @staticmethod
    def settings(config):
        return config.mgcp

    @staticmethod
    def context(o, engine=None):
        role = MgcpAdapter.role(o)
        media_nat = media_nat_of(engine, o) if engine is not None and o.direction == "outbound" else None
        return mgcp_alg.MgcpContext(o.direction, o.src, o.dst, o.nat_src, o.nat_dst, o.ingress, o.egress,
                                    role, media_nat, far_side_of(engine, o), dedicated_of(engine))

    @staticmethod
    def role(o) -> str:
        """Who sent the datagram, as far as ports and policy tell: a gateway
        when it goes to the call agent's port 2727 or under an MGCP-CA policy
        (manual ch. 3: MGCP-CA is the service of traffic to call agents, and
        no gateway listens on 2727, RFC 3435 3.5.3); a call agent when it
        comes from 2727. Between two 2427 ports (a call agent on 2427, as in
        PacketCable/NCS) or from an ephemeral port, MGCP-UA says nothing
        certain: the ALG reads the role from the messages and its state
        (gateway.mgcp.roles)."""
        decision = getattr(o, "decision", None)
        policy = decision.policy if decision is not None else None
        if o.dst[1] == mgcp_alg.CA_PORT or (policy is not None and policy.service == "mgcp-ca"):
            return mgcp_alg.GW
        if o.src[1] == mgcp_alg.CA_PORT:
            return mgcp_alg.CA
        return mgcp_roles.EITHER

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
        return pinholes                    # already the datapath's type (media_pinhole)

    @staticmethod
    def released(events) -> tuple[list[str], list[str]]:
        return ([mgcp_ev.call_stream(e.gateway, e.call_id) for e in events if isinstance(e, mgcp_ev.CallEnded)],
                [e.group for e in events if isinstance(e, mgcp_ev.MediaReleased)])

    @staticmethod
    def call_of_group(st, group: str) -> str | None:
        k = st.group_index.get(group)
        return mgcp_ev.call_stream(*k) if k else None

    @staticmethod
    def summary(st, key: str) -> dict | None:
        """``show calls``: one MGCP call (``key``: ``<gateway>/<call id>``)."""
        gw, _, cid = key.partition("/")
        c = st.calls.get((gw, cid))
        if c is None:
            return None
        return {"alg": "mgcp", "call": c.stream, "call_id": c.call_id, "gateway": c.gateway,
                "since": c.started_at, "connections": sorted(c.connections),
                "media": [media_view(g) for g in c.groups.values()],
                "pinholes": len(c.pinholes), "deadline": c.next_deadline()}

    @staticmethod
    def calls(st) -> list[dict]:
        return [MgcpAdapter.summary(st, f"{c.gateway}/{c.call_id}") for c in st.calls.values()]

    @staticmethod
    def registrations(st) -> list[dict]:
        return []


class H323Adapter:
    """H.323 (manual ch. 1): RAS datagrams, and TCP segments that completed
    TPKT messages (Q.931 on 1720, H.245), one dialog actor per connection."""

    name = "h323"
    stream_prefixes = ("h323-",)
    call_prefix = "h323-call"
    step = staticmethod(h323_segment.step_packet)
    ending = (h323_ev.CallEnded, h323_ev.Unregistered, h323_ev.RasEnded)
    pinhole_opened, pinhole_closed = h323_ev.PinholeOpened, h323_ev.PinholeClosed
    calls_denied, end_calls = staticmethod(rematch.h323_calls_denied), staticmethod(h323_alg.end_calls)

    @staticmethod
    def on_timer(state, key, now, settings=h323_alg.DEFAULT_SETTINGS):
        return h323_alg.on_timer(state, key, now, settings)

    @staticmethod
    def media_activity(state, group, now, settings=h323_alg.DEFAULT_SETTINGS, pinhole=None):
        """Media of ``group`` was seen: the ALG keeps its channel by pinhole,
        so a report naming none stands for any pinhole of the group."""
        key = group.split("/", 1)[0]
        call = state.calls.get(key)
        if call is not None and pinhole not in call.pinholes:
            pinhole = next((p.id for p in call.pinholes.values() if p.group == group), None)
        return h323_alg.media_activity(state, pinhole or "", now, settings)

    @staticmethod
    def settings(config):
        # The manual gives H.323 no timers of its own (gateway.h323.alg.H323Settings).
        return h323_alg.DEFAULT_SETTINGS

    @staticmethod
    def context(o, engine=None):
        seg = getattr(o, "segment", None)
        dedicated = dedicated_of(engine)
        ctx = h323_alg.H323Context(o.channel or "ras", o.direction, o.src, o.dst, o.nat_src, o.nat_dst,
                                   o.conn, dedicated is not None and o.nat_src is not None
                                   and dedicated(str(o.nat_src[0])))
        return h323_segment.PacketContext(ctx, seg.messages if seg is not None else ())

    @staticmethod
    def streams(st) -> list[str]:
        out = [h323_ev.call_stream(k) for k in st.calls]
        out += [f"h323-ras/{r}/{q}" for (r, q) in st.ras]
        out += [f"h323-reg/{ip}:{port}" for (ip, port) in st.registrations]
        return out

    @staticmethod
    def pinholes(st) -> list:
        return ([p for c in st.calls.values() for p in c.pinholes.values()]
                + [r.pinhole for r in st.registrations.values()])

    @staticmethod
    def for_datapath(pinholes):
        return [Pinhole.of(p) for p in pinholes]

    @staticmethod
    def released(events) -> tuple[list[str], list[str]]:
        return [e.key for e in events if isinstance(e, h323_ev.CallEnded)], []

    @staticmethod
    def call_of_group(st, group: str) -> str | None:
        key = group.split("/", 1)[0]
        return h323_ev.call_stream(key) if key in st.calls else None

    @staticmethod
    def registrations(st) -> list[dict]:
        """``show registrations``: the RAS registrations behind incoming DIP
        addresses (RRQ/RCF through NAT, manual ch. 1 "Incoming Calls with NAT")."""
        return [{"alg": "h323", "public": f"{r.public[0]}:{r.public[1]}",
                 "private": f"{r.private[0]}:{r.private[1]}", "expires_at": r.expires_at}
                for r in st.registrations.values()]

    @staticmethod
    def summary(st, key: str) -> dict | None:
        """``show calls`` / ``gwctl replay``: one H.323 call."""
        c = st.calls.get(key)
        if c is None:
            return None
        return {"alg": "h323", "call": c.key, "call_id": c.key, "phase": c.phase, "connection": c.conn,
                "call_reference": c.call_reference, "since": c.started_at,
                "h245": [f"{a[0]}:{a[1]}" for a in c.h245],
                "media": sorted(c.media), "pinholes": len(c.pinholes), "deadline": c.next_deadline()}


def _h323_calls(st) -> list[dict]:
    return [H323Adapter.summary(st, k) for k in st.calls]


def _h323_replay(st, call: str | None):
    return alg_replay.h323_replay(st, call, H323Adapter.summary)


H323Adapter.calls = staticmethod(_h323_calls)
H323Adapter.replay = staticmethod(_h323_replay)
ADAPTERS: dict[str, Alg] = {"sip": SipAdapter, "mgcp": MgcpAdapter, "h323": H323Adapter}


# What the node asks of every ALG at once, in ADAPTERS' order.
ENDING: tuple[type, ...] = tuple(e for a in ADAPTERS.values() for e in a.ending)
PINHOLE_OPENED: tuple[type, ...] = tuple(a.pinhole_opened for a in ADAPTERS.values())
PINHOLE_CLOSED: tuple[type, ...] = tuple(a.pinhole_closed for a in ADAPTERS.values())


def all_streams(st) -> list[str]:
    """Timer keys of every live entity of every ALG (``st``: a DomainState)."""
    return [s for a in ADAPTERS.values() for s in a.streams(getattr(st, a.name))]


def all_pinholes(st) -> list:
    """Every ALG's open pinholes, as the datapath's table takes them."""
    return [p for a in ADAPTERS.values() for p in a.for_datapath(a.pinholes(getattr(st, a.name)))]


# The stream prefix of each ALG's calls: ``show calls`` summarises them.
_CALL_STREAMS = {a.call_prefix: a for a in ADAPTERS.values()}


def entity_summary(st, stream: str) -> dict | None:
    """``show calls`` of one call's stream (None: not a call, or gone)."""
    kind, _, rest = stream.partition("/")
    a = _CALL_STREAMS.get(kind)
    return a.summary(getattr(st, a.name), rest) if a is not None else None


def all_calls(st) -> list[dict]:
    return [c for a in ADAPTERS.values() for c in a.calls(getattr(st, a.name))]


def all_registrations(st) -> list[dict]:
    return [r for a in ADAPTERS.values() for r in a.registrations(getattr(st, a.name))]


def next_deadline(st, stream: str) -> float | None:
    """The deadline of ``stream`` in the state of the first ALG that knows it."""
    for a in ADAPTERS.values():
        deadline = getattr(st, a.name).next_deadline(stream)
        if deadline is not None:
            return deadline
    return None


def adapter_for_stream(stream: str) -> Alg:
    """The ALG whose entity ``stream`` is (SIP's when no other claims it)."""
    return owner_of(stream, ADAPTERS.values(), SipAdapter)
