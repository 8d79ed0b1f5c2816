"""What changes between two configurations, and whether a running pair can
take the change without a restart.

The comparison is made on the normal form (:func:`gateway.config.render`):
full keywords, one command per line, objects grouped and only non-defaults,
so two files that say the same thing in other words (abbreviations, order of
lines, comments) have no difference, and the hash of the normal form names a
configuration whatever its spelling. ``gwctl config diff`` and ``gwctl config
apply`` print :func:`diff_lines`; the journal records the normal form and its
:func:`config_hash` (``gateway/running_config.py``)."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass

from gateway.config.model import Config
from gateway.config.render import render


def normal_text(cfg: Config) -> str:
    return render(cfg)


def text_hash(text: str) -> str:
    """SHA-256 of a normal form, hex: what the log, ``show --running`` and the
    journal call a configuration."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_hash(cfg: Config) -> str:
    return text_hash(normal_text(cfg))


def short(h: str) -> str:
    return h[:12]


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """Lines of the normal form that go (``removed``) and come (``added``),
    and the unified diff an operator reads."""

    removed: tuple[str, ...]
    added: tuple[str, ...]
    unified: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.removed and not self.added


def diff_texts(old: str, new: str, old_name: str = "running", new_name: str = "new") -> ConfigDiff:
    a, b = old.splitlines(), new.splitlines()
    unified = tuple(difflib.unified_diff(a, b, old_name, new_name, lineterm="", n=1))
    removed = tuple(line[1:] for line in unified if line.startswith("-") and not line.startswith("---"))
    added = tuple(line[1:] for line in unified if line.startswith("+") and not line.startswith("+++"))
    return ConfigDiff(removed, added, unified)


def diff_configs(old: Config, new: Config, old_name: str = "running", new_name: str = "new") -> ConfigDiff:
    return diff_texts(normal_text(old), normal_text(new), old_name, new_name)


def diff_lines(d: ConfigDiff) -> list[str]:
    """The unified diff, or one line saying there is none."""
    if d.empty:
        return ["no difference: the configuration is the running one"]
    return list(d.unified)


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """What differs in the settings a running node cannot change in place,
    each with why. Empty: the change can be applied live.

    - Interfaces (addresses, zones, MIPs, DIP pools, bandwidth): the node
      owns the pair's addresses (announced at takeover, fenced by the
      supervisor, actors/addresses.py) and its NFQUEUE rules and shaping
      trees are per interface; they are set up at start.
    - NSRP (`set nsrp ...`): heartbeats, detection time, lease and mirror
      mode of the running transport.
    - Flow settings (`set flow ...`): the queue's bypass flag and the
      overload budget of the packet worker, and the kernel screen's rules.
    - A zone's UDP flood screen: the packet worker's UDP fast path exists
      only without one (gateway/datapath/fastpath.py), chosen at start.
    - Traffic shaping, and a policy's `traffic` settings: the shaping
      classes and firewall marks are installed with the queue's rules.
    """
    out: list[str] = []
    if dict(old.interfaces) != dict(new.interfaces):
        names = sorted(n for n in set(old.interfaces) | set(new.interfaces)
                       if old.interfaces.get(n) != new.interfaces.get(n))
        out.append("interfaces (" + ", ".join(names) + "): the node's addresses, MIPs, DIP pools, "
                   "NFQUEUE rules and shaping are set up at start")
    old_flood = {z.name: z.udp_flood for z in old.zones.values() if z.udp_flood}
    new_flood = {z.name: z.udp_flood for z in new.zones.values() if z.udp_flood}
    if old_flood != new_flood:
        out.append("zone UDP flood screens: the packet worker's fast path is chosen at start "
                   "(none with a flood screen)")
    if old.nsrp != new.nsrp:
        out.append("set nsrp: the HA transport's heartbeats, lease and mirror mode are set at start")
    if old.flow != new.flow:
        out.append("set flow: the packet worker's queue and overload settings are set at start")
    if old.traffic_shaping != new.traffic_shaping:
        out.append("set traffic-shaping: shaping is installed at start")
    old_traffic = {p.id: p.traffic for p in old.policies if p.traffic is not None}
    new_traffic = {p.id: p.traffic for p in new.policies if p.traffic is not None}
    if old_traffic != new_traffic:
        ids = sorted(i for i in set(old_traffic) | set(new_traffic)
                     if old_traffic.get(i) != new_traffic.get(i))
        out.append("policy traffic settings (policy id " + ", ".join(map(str, ids)) + "): shaping "
                   "classes and marks are installed at start")
    return out
