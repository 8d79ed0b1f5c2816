"""The gatewayd lab starter's files and commands, without root: node files the
node parses back, the interface map and on-link routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_file
from gateway.nodefile import parse_node_file
from ops.lab import gateway_starter as gs
from ops.lab.netns import LabState
from ops.lab.plan import build_plan, to_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _lab(example: str, tmp_path: Path):
    path = EXAMPLES / f"{example}.cfg"
    cfg = load_file(path)
    plan = build_plan(cfg, lab="tq")
    state = LabState("tq", plan=to_data(plan), config=str(path), starter=gs.NAME,
                     state_dir=str(tmp_path))
    return path, cfg, plan, state


def test_node_files_parse_back_with_the_lab_devices_and_ha_link(tmp_path):
    path, cfg, plan, state = _lab("ch2-incoming-call-with-mip", tmp_path)
    paths = gs.write_node_files(plan, state, str(path))
    assert set(paths) == {"gw-a", "gw-b"}
    a = parse_node_file(paths["gw-a"].node_file.read_text(), str(paths["gw-a"].node_file))
    b = parse_node_file(paths["gw-b"].node_file.read_text(), str(paths["gw-b"].node_file))
    assert a.node == "gw-a" and b.node == "gw-b"
    assert a.config == str(path) and a.queue == 0
    assert a.interfaces == {"ethernet1": "ethernet1", "ethernet3": "ethernet3"}
    assert a.journal != b.journal and Path(a.journal).is_dir()
    # Each binds its own HA address and connects to the other's.
    assert a.ha.bind == "tcp://169.254.100.1:7800" == b.ha.peer
    assert b.ha.bind == "tcp://169.254.100.2:7800" == a.ha.peer
    # CURVE: own secret, the peer's public key; both exist, secrets are 0600.
    assert a.ha.curve and a.ha.key.endswith("gw-a.key_secret") and a.ha.peer_key.endswith("gw-b.key")
    for f in (a.ha.key, a.ha.peer_key, b.ha.key, b.ha.peer_key):
        assert Path(f).is_file()
    assert Path(a.ha.key).stat().st_mode & 0o777 == 0o600
    # Control sockets live in the lab's run dir, one per node.
    assert a.socket_path() == str(gs.run_dir(state) / "gw-a.sock")
    assert Path(a.socket_path()).parent == Path(b.socket_path()).parent
    assert gs.lab_dir(state) == tmp_path / "tq.d"


def test_routes_are_installed_on_link_in_both_gateways(tmp_path):
    # Example with a next hop: the route needs no interface address to be
    # accepted, so the standby has it before it holds any address.
    from test_lab_plan_configs import with_default_route_and_far_hosts
    plan = build_plan(with_default_route_and_far_hosts(), lab="tq")
    for g in plan.gateways:
        cmds = gs.route_commands(plan, g.netns)
        assert cmds, "the configuration has routes"
        for c in cmds:
            assert c[:4] == ["ip", "-n", g.netns, "route"]
            if "via" in c:
                assert c[-1] == "onlink" and c[c.index("dev") + 1] in {p.ifname for p in g.legs}


@pytest.mark.parametrize("example", ["ch2-incoming-call-with-mip", "ch2-three-zone-proxy-in-dmz",
                                     "ch2-untrust-intrazone", "ch2-incoming-call-dip-pool"])
def test_interface_map_names_a_device_for_every_address_holding_interface(example, tmp_path):
    _path, cfg, plan, _state = _lab(example, tmp_path)
    imap = gs.interface_map(plan, cfg)
    devices = {p.ifname for p in plan.gateways[0].legs} | set(plan.gateways[0].dummies)
    assert set(imap.values()) <= devices
    # Every owned address on a segment sits on a device the node file maps;
    # loopbacks stay unmapped (their addresses go on the group's members).
    dummies = set(plan.gateways[0].dummies)
    assert {a.device for a in plan.owned if a.device not in dummies} <= set(imap.values())
    assert not any(cfg.interfaces[name].kind == "loopback" for name in imap)
