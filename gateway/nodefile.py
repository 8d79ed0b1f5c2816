"""The node file: what binds one gateway node to its host.

The manual's configuration names interfaces the ScreenOS way (``ethernet1``,
``ethernet3``); the node file maps them to Linux interfaces and holds what is
particular to one node of the pair: its name, journal directory, control
socket, NFQUEUE number, and the HA endpoints and CURVE keys. It is TOML::

    node = "gw-a"
    config = "/etc/voip-alg-gateway/gateway.cfg"
    journal = "/var/lib/voip-alg-gateway/gw-a"
    queue = 0
    control_group = "voipops"          # optional: who besides root may use gwctl

    [interfaces]
    ethernet1 = "eth1"
    ethernet3 = "eth3"

    [ha]
    bind = "tcp://169.254.100.1:7800"
    peer = "tcp://169.254.100.2:7800"
    key = "/etc/voip-alg-gateway/keys/gw-a.key_secret"   # from `gwctl keys`
    peer_key = "/etc/voip-alg-gateway/keys/gw-b.key"
    # curve = false                    # only for a lab on one host; default true

Relative paths are relative to the node file's directory."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Mapping


class NodeFileError(ValueError):
    """The node file is wrong; the message names the file, the key and a hint."""


@dataclass(frozen=True, slots=True)
class HaSettings:
    bind: str
    peer: str
    key: str | None = None
    peer_key: str | None = None
    curve: bool = True


@dataclass(frozen=True, slots=True)
class NodeSettings:
    node: str
    config: str
    journal: str
    interfaces: Mapping[str, str]
    queue: int = 0
    control_socket: str | None = None
    control_group: str | None = None
    ha: HaSettings | None = None
    source: str = field(default="<node file>", compare=False)

    def socket_path(self, run_dir: str = "/run/voip-alg-gateway") -> str:
        return self.control_socket or os.path.join(run_dir, f"{self.node}.sock")


_TOP = {"node", "config", "journal", "interfaces", "queue", "control_socket", "control_group", "ha"}
_HA = {"bind", "peer", "key", "peer_key", "curve"}


def parse_node_file(text: str, path: str = "<node file>") -> NodeSettings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NodeFileError(f"{path}: not valid TOML: {exc}") from None
    base = os.path.dirname(os.path.abspath(path)) if not path.startswith("<") else os.getcwd()

    def rel(p: str) -> str:
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    unknown = set(data) - _TOP
    if unknown:
        raise NodeFileError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                            f"expected one of {', '.join(sorted(_TOP))}")
    for key in ("node", "config", "journal"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise NodeFileError(f"{path}: '{key}' is required and must be a string")
    ifaces = data.get("interfaces", {})
    if not isinstance(ifaces, dict) or not all(isinstance(v, str) for v in ifaces.values()):
        raise NodeFileError(f"{path}: [interfaces] maps configuration names to Linux names, "
                            "e.g. ethernet1 = \"eth1\"")
    for linux in ifaces.values():
        if len(linux) > 15:
            raise NodeFileError(f"{path}: Linux interface name '{linux}' is longer than 15 characters")
    queue = data.get("queue", 0)
    if not isinstance(queue, int) or not 0 <= queue <= 65535:
        raise NodeFileError(f"{path}: 'queue' must be an NFQUEUE number 0..65535")
    group = data.get("control_group")
    if group is not None and (not isinstance(group, str) or not group):
        raise NodeFileError(f"{path}: 'control_group' is the name of a Unix group, e.g. \"voipops\"")
    ha = None
    if "ha" in data:
        h = data["ha"]
        if not isinstance(h, dict):
            raise NodeFileError(f"{path}: [ha] must be a table")
        bad = set(h) - _HA
        if bad:
            raise NodeFileError(f"{path}: unknown key(s) in [ha]: {', '.join(sorted(bad))}")
        for key in ("bind", "peer"):
            if not isinstance(h.get(key), str) or "://" not in h[key]:
                raise NodeFileError(f"{path}: [ha] '{key}' must be a ZeroMQ endpoint such as "
                                    "tcp://169.254.100.1:7800")
        curve = h.get("curve", True)
        if not isinstance(curve, bool):
            raise NodeFileError(f"{path}: [ha] 'curve' is true or false")
        if curve and not (h.get("key") and h.get("peer_key")):
            raise NodeFileError(f"{path}: [ha] needs 'key' and 'peer_key' (create them with "
                                "`gwctl keys DIR --name NODE`), or curve = false")
        ha = HaSettings(h["bind"], h["peer"], rel(h["key"]) if h.get("key") else None,
                        rel(h["peer_key"]) if h.get("peer_key") else None, curve)
    return NodeSettings(node=data["node"], config=rel(data["config"]), journal=rel(data["journal"]),
                        interfaces=dict(ifaces), queue=queue,
                        control_socket=rel(data["control_socket"]) if data.get("control_socket") else None,
                        control_group=data.get("control_group"), ha=ha, source=path)
