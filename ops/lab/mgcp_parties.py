"""Who is who in an MGCP configuration: the call agent, the media gateway and
the far end the configuration's policies are written for, and the source NAT
it gives a host toward a peer."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from ops.lab.extra_hosts import add_host
from ops.lab.mgcp_agent import GW_PORT
from ops.lab.mgcp_call import Leg
from ops.lab.netns import LabError


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
    return str(d.nat.src) if d.permitted and d.nat.src is not None else None
