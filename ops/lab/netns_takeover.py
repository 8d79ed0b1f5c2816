"""Moving the owned addresses between the gateway namespaces, what the HA node
does on takeover: which gateway holds them, the move and its gratuitous ARP.
The commands are ``ops.lab.netns``'s, read from it when called (the tests
replace its ``run``)."""

from __future__ import annotations

import sys
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Iterable, Sequence

from ops.lab.plan import OwnedAddress, Plan


def held_by(plan: Plan) -> str | None:
    """The gateway role whose namespace holds the first owned address."""
    from ops.lab.netns import ns_exists, run  # read when called (module docstring)
    if not plan.owned:
        return None
    probe = plan.owned[0]
    for g in plan.gateways:
        if not ns_exists(g.netns):
            continue
        out = run(["ip", "-n", g.netns, "-o", "addr", "show", "dev", probe.device],
                  check=False).stdout
        if f" {probe.address} " in out or f" {probe.address.ip}/" in out:
            return g.role
    return None


_GARP_SCRIPT = """
import sys
from scapy.layers.l2 import ARP, Ether
from scapy.arch import get_if_hwaddr
from scapy.sendrecv import sendp
for item in sys.argv[1:]:
    dev, ip = item.split("=")
    mac = get_if_hwaddr(dev)
    bcast = "ff:ff:ff:ff:ff:ff"
    # RFC 5227 s. 3 announcement (request, sender = target = own address) and
    # the reply form older stacks expect; Linux updates its neighbour entries
    # from either.
    frames = [Ether(src=mac, dst=bcast) / ARP(op=1, hwsrc=mac, psrc=ip, hwdst="00:00:00:00:00:00", pdst=ip),
              Ether(src=mac, dst=bcast) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=bcast, pdst=ip)]
    sendp(frames, iface=dev, verbose=False)
"""


def gratuitous_arp(netns: str, announcements: Sequence[tuple[str, str]]) -> None:
    """Announce (device, address) pairs from inside ``netns`` (scapy)."""
    from ops.lab.netns import ns_cmd, run  # read when called (module docstring)
    if not announcements:
        return
    args = [f"{dev}={ip}" for dev, ip in announcements]
    run(ns_cmd(netns, sys.executable, "-c", _GARP_SCRIPT, *args), timeout=30)


def move_addresses(lab: str, to_role: str, *, extra: Iterable[OwnedAddress] = (),
                   state_dir: Path | None = None) -> list[OwnedAddress]:
    """Move the owned addresses (and ``extra`` ones, e.g. MIPs or DIP pool
    addresses learned at run time; they are remembered) to gateway ``to_role``,
    install the configured routes there and announce the addresses."""
    # Read from netns when called (module docstring).
    from ops.lab.netns import LabError, _hold, _install_routes, load_state, run, save_state
    state = load_state(lab, state_dir)
    if state is None or state.plan is None:
        raise LabError(f"no lab {lab!r}")
    plan = state.get_plan()
    assert plan is not None
    target = plan.gateway(to_role)
    others = [g for g in plan.gateways if g.role != to_role]
    known = {(str(a.address), a.device) for a in plan.owned}
    for a in extra:
        if (str(a.address), a.device) not in known:
            state.extra.append([str(a.address), a.device, "1" if a.announce else ""])
            known.add((str(a.address), a.device))
    moving = list(plan.owned) + [OwnedAddress(IPv4Interface(addr), dev, "mip", bool(ann))
                                 for addr, dev, ann in state.extra]
    for g in others:
        for a in moving:
            run(["ip", "-n", g.netns, "addr", "del", str(a.address), "dev", a.device], check=False)
    _hold(target.netns, moving)
    _install_routes(plan, target.netns)
    gratuitous_arp(target.netns, [(a.device, str(a.address.ip)) for a in moving if a.announce])
    state.active = to_role
    save_state(state, state_dir)
    return moving
