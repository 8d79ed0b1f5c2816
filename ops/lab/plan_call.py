"""The call a lab's configuration is written for: which host calls which, and
the address it dials."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from gateway.config.model import Config
from ops.lab.plan_model import HostNs, Plan, PlanError


@dataclass(frozen=True, slots=True)
class CallPlan:
    caller: HostNs
    callee: HostNs
    dial: IPv4Address


def suggest_call(plan: Plan, config: Config | None = None) -> CallPlan:
    """The call the configuration is written for.

    A MIP to a lab host that a policy lets some zone reach (``... mip(IP) sip
    permit``, manual ch. 2 "Example: Incoming Call with MIP") is dialled from a
    host of that zone; otherwise a host in a non-untrust zone calls an untrust
    host at its own address (outgoing calls: the policy's NAT handles them)."""
    if len(plan.hosts) < 2:
        raise PlanError("the lab needs at least two hosts to place a call")
    by_ip = {h.address.ip: h for h in plan.hosts}
    mips = {m.ip: m for i in config.interfaces.values() for m in i.mips} if config else {}
    for pol in config.policies if config else ():
        if pol.action != "permit" or pol.dst.kind != "mip":
            continue
        try:
            mip = mips.get(IPv4Address(pol.dst.value))
        except ValueError:
            continue
        if mip is None or mip.host not in by_ip:
            continue
        callee = by_ip[mip.host]
        callers = [h for h in plan.hosts if h.zone == pol.from_zone and h is not callee]
        if callers:
            return CallPlan(callers[0], callee, mip.ip)
    callers = [h for h in plan.hosts if h.zone != "untrust"]
    callees = [h for h in plan.hosts if h.zone == "untrust"]
    if callers and callees:
        return CallPlan(callers[0], callees[0], callees[0].address.ip)
    return CallPlan(plan.hosts[0], plan.hosts[1], plan.hosts[1].address.ip)
