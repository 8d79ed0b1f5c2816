"""One more host namespace on a lab segment, recorded in the lab's state so
that ``gwctl lab down`` removes it."""

from __future__ import annotations

from ipaddress import IPv4Interface
from pathlib import Path

from ops.lab import netns as labns
from ops.lab.netns import LabError, run


def add_host(lab: str, name: str, address: str, segment: str, gateway: str,
             state_dir: Path | None = None) -> str:
    """A host namespace ``<lab>-<name>`` with ``address`` (``IP/len``) on the
    lab segment whose bridge or configured interface is ``segment``, default
    route via ``gateway``. Idempotent; recorded in the lab's state so that
    ``gwctl lab down`` removes it."""
    state = labns.load_state(lab, state_dir)
    if state is None or state.plan is None:
        raise LabError(f"no lab {lab!r}")
    plan = state.get_plan()
    assert plan is not None
    seg = next((s for s in plan.segments if segment in (s.bridge, s.label)), None)
    if seg is None:
        raise LabError(f"lab {lab}: no segment {segment!r}")
    ns = f"{lab}-{name}"
    if labns.ns_exists(ns):
        return ns
    state.namespaces.append(ns)
    labns.save_state(state, state_dir)
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    end = f"x{name}"[:15]
    run(["ip", "-n", plan.switch, "link", "add", end, "type", "veth", "peer", "name", "eth0",
         "netns", ns])
    run(["ip", "-n", plan.switch, "link", "set", end, "master", seg.bridge, "up"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "addr", "add", str(IPv4Interface(address)), "dev", "eth0"])
    run(["ip", "-n", ns, "route", "add", "default", "via", gateway, "dev", "eth0"])
    return ns
