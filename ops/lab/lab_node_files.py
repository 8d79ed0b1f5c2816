"""The files of the lab's gatewayd nodes: where each node's node file, keys,
control socket, log and journal live, the node files themselves (interfaces
mapped to the namespace's legs, the HA link, CURVE keys), and the
configuration's static routes for a gateway namespace."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ops.lab import netns
from ops.lab.netns import LabState
from ops.lab.plan import Plan

HA_PORT = 7800
QUEUE = 0


@dataclass(frozen=True, slots=True)
class NodePaths:
    role: str
    netns: str
    node_file: Path
    socket: Path
    log: Path
    journal: Path


def lab_dir(state: LabState) -> Path:
    """Where the node files, keys, journals, sockets and logs of a lab live."""
    return netns.lab_files(state.lab, Path(state.state_dir) if state.state_dir else None)


def run_dir(state: LabState) -> Path:
    """The control sockets' directory (``GWCTL_RUN_DIR`` for gwctl)."""
    return lab_dir(state) / "run"


def node_paths(state: LabState, plan: Plan) -> dict[str, NodePaths]:
    d = lab_dir(state)
    return {g.role: NodePaths(g.role, g.netns, d / f"{g.role}.toml", d / "run" / f"{g.role}.sock",
                              d / f"{g.role}.log", d / "journal" / g.role)
            for g in plan.gateways}


def interface_map(plan: Plan, config) -> dict[str, str]:
    """Configuration interface -> device in a gateway namespace: the leg on
    the interface's segment. Loopback interfaces are not mapped: the node
    puts a loopback's addresses (and its MIPs) on the members of its group
    (gateway/policy.py ``owned_addresses_by_interface``), and no packet
    arrives on a loopback for the queue to take."""
    out: dict[str, str] = {}
    gw = plan.gateways[0]
    leg_of_bridge = {p.segment: p.ifname for p in gw.legs}
    for seg in plan.segments:
        if seg.gateway_ip is not None and seg.bridge in leg_of_bridge:
            out[seg.label] = leg_of_bridge[seg.bridge]
    return out


def _toml_str(s: str) -> str:
    return json.dumps(s)        # a JSON string is a valid TOML basic string


def node_file_text(*, node: str, config: str, journal: str, interfaces: dict[str, str],
                   control_socket: str, bind: str, peer: str, key: str, peer_key: str,
                   queue: int = QUEUE) -> str:
    """A node file for one lab node (pure)."""
    lines = [f"node = {_toml_str(node)}", f"config = {_toml_str(config)}",
             f"journal = {_toml_str(journal)}", f"queue = {queue}",
             f"control_socket = {_toml_str(control_socket)}", "", "[interfaces]"]
    lines += [f"{_toml_str(k)} = {_toml_str(v)}" for k, v in interfaces.items()]
    lines += ["", "[ha]", f"bind = {_toml_str(bind)}", f"peer = {_toml_str(peer)}",
              f"key = {_toml_str(key)}", f"peer_key = {_toml_str(peer_key)}", ""]
    return "\n".join(lines)


def write_node_files(plan: Plan, state: LabState, config_path: str) -> dict[str, NodePaths]:
    from gateway.config import load_file
    import zmq.auth

    config = load_file(config_path)
    d = lab_dir(state)
    keys = d / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    (d / "run").mkdir(exist_ok=True)
    paths = node_paths(state, plan)
    for role in paths:
        _pub, sec = zmq.auth.create_certificates(str(keys), role)
        os.chmod(sec, 0o600)
    ifaces = interface_map(plan, config)
    ha = {g.role: g.ha_address.ip for g in plan.gateways}
    for g in plan.gateways:
        other = next(o for o in plan.gateways if o.role != g.role)
        p = paths[g.role]
        p.journal.mkdir(parents=True, exist_ok=True)
        p.node_file.write_text(node_file_text(
            node=g.role, config=str(config_path), journal=str(p.journal), interfaces=ifaces,
            control_socket=str(p.socket), bind=f"tcp://{ha[g.role]}:{HA_PORT}",
            peer=f"tcp://{ha[other.role]}:{HA_PORT}",
            key=str(keys / f"{g.role}.key_secret"), peer_key=str(keys / f"{other.role}.key")))
    return paths


def route_commands(plan: Plan, gw_netns: str) -> list[list[str]]:
    """The configuration's static routes for one gateway namespace, next hops
    on-link (see the module's docstring)."""
    cmds = []
    for rt in plan.routes:
        cmd = ["ip", "-n", gw_netns, "route", "replace", str(rt.prefix)]
        if rt.via is not None:
            cmd += ["via", str(rt.via), "dev", rt.device, "onlink"]
        else:
            cmd += ["dev", rt.device]
        cmds.append(cmd)
    return cmds
