"""Building a lab (``up``) and telling whether one is up (``running``): the
order of the steps; the commands and steps themselves are ``ops.lab.netns``'s,
read from it when called (the tests replace its ``run`` and ``STATE_DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ops.lab.lab_records import LabState
from ops.lab.plan import HA_DEVICE, Plan, to_data


def running(lab: str, state_dir: Path | None = None) -> LabState | None:
    """The lab's state when it is up: a state file that says the lab was
    built completely, and at least one of its namespaces still there. A
    half-made lab (a crash in the middle of ``up``) or a state file whose
    namespaces are all gone (a reboot) is not running: ``up`` clears it."""
    from ops.lab.netns import load_state, ns_exists  # read when called (module docstring)
    state = load_state(lab, state_dir)
    if state is None or not state.complete:
        return None
    try:
        plan = state.get_plan()
    except (KeyError, TypeError, ValueError):
        plan = None
    spaces = list(state.namespaces) + (list(plan.namespaces()) if plan is not None else [])
    return state if any(ns_exists(ns) for ns in spaces) else None


def up(plan: Plan, *, starter: str = "plain-routing", config: str | None = None,
       state_dir: Path | None = None, log: Callable[[str], None] | None = None,
       replace: bool = False) -> LabState:
    """Build the lab. A lab of the same name that is up (:func:`running`) is
    an error (:class:`LabRunning`) unless ``replace``: taking it down stops
    its gateways and ends the calls going through them. What a half-made or
    crashed lab of that name left is removed first either way; if building
    fails, what was made is removed again."""
    # Read from netns when called (module docstring).
    from ops.lab.netns import (SELF_ADDRESSED, STARTERS, LabError, LabRunning, _add_dummy, _hold,
                               _install_counters, _install_routes, _new_netns, _sysctl, _veth_to_switch,
                               down, run, save_state)
    if starter not in STARTERS:
        raise LabError(f"no gateway starter {starter!r} (known: {', '.join(sorted(STARTERS))})")
    say = log or (lambda _m: None)
    if not replace:
        other = running(plan.lab, state_dir)
        if other is not None:
            raise LabRunning(f"lab {plan.lab} is up (configuration {other.config or '-'}, gateway "
                             f"{other.starter}): replacing it stops its gateways and ends its calls; "
                             f"take it down first (gwctl lab down --name {plan.lab}) or ask for "
                             f"--replace")
    down(plan.lab, state_dir=state_dir, extra_namespaces=plan.namespaces())
    state = LabState(plan.lab, plan=to_data(plan), config=config, starter=starter,  # type: ignore[arg-type]
                     state_dir=str(state_dir) if state_dir is not None else None)
    save_state(state, state_dir)
    try:
        for netns in plan.namespaces():
            state.namespaces.append(netns)
            save_state(state, state_dir)
            _new_netns(netns)
        for s in plan.segments:
            run(["ip", "-n", plan.switch, "link", "add", s.bridge, "type", "bridge"])
            run(["ip", "-n", plan.switch, "link", "set", s.bridge, "up"])
            say(f"segment {s.bridge} ({s.label} {s.network})")
        a, b = plan.gateways
        for g in plan.gateways:
            _sysctl(g.netns, "net.ipv4.ip_forward=1")
            for leg in g.legs:
                _veth_to_switch(plan, g.netns, leg.switch_end, leg.ifname, leg.segment)
            for dummy in g.dummies:
                _add_dummy(g.netns, dummy)
                run(["ip", "-n", g.netns, "link", "set", dummy, "up"])
        run(["ip", "-n", a.netns, "link", "add", HA_DEVICE, "type", "veth",
             "peer", "name", HA_DEVICE, "netns", b.netns])
        for g in plan.gateways:
            run(["ip", "-n", g.netns, "addr", "add", str(g.ha_address), "dev", HA_DEVICE])
            run(["ip", "-n", g.netns, "link", "set", HA_DEVICE, "up"])
            say(f"gateway {g.role} in {g.netns}")
        if starter not in SELF_ADDRESSED:
            active = plan.gateway(state.active)
            _hold(active.netns, plan.owned)
            _install_routes(plan, active.netns)
        for r in plan.routers:
            _sysctl(r.netns, "net.ipv4.ip_forward=1")
            _veth_to_switch(plan, r.netns, r.near.switch_end, r.near.ifname, r.near.segment)
            run(["ip", "-n", r.netns, "addr", "add", str(r.address), "dev", r.near.ifname])
            run(["ip", "-n", r.netns, "route", "add", "default", "via", str(r.upstream)])
            if r.far is not None and r.far_address is not None:
                _veth_to_switch(plan, r.netns, r.far.switch_end, r.far.ifname, r.far.segment)
                run(["ip", "-n", r.netns, "addr", "add", str(r.far_address), "dev", r.far.ifname])
                for host in r.far_hosts:
                    run(["ip", "-n", r.netns, "route", "add", f"{host}/32", "dev", r.far.ifname])
            say(f"router {r.netns} at {r.address.ip}")
        for h in plan.hosts:
            _veth_to_switch(plan, h.netns, h.port.switch_end, h.port.ifname, h.port.segment)
            run(["ip", "-n", h.netns, "addr", "add", str(h.address), "dev", h.port.ifname])
            route = ["ip", "-n", h.netns, "route", "add", "default", "via", str(h.gateway),
                     "dev", h.port.ifname]
            run(route + (["onlink"] if h.onlink else []))
            _install_counters(h.netns)
            say(f"host {h.netns} {h.address}")
        STARTERS[starter](plan, state)
        state.complete = True
        save_state(state, state_dir)
        return state
    except BaseException:
        down(plan.lab, state_dir=state_dir)
        raise
