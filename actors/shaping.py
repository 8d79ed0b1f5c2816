"""Traffic shaping and DSCP marking on the host: the plan of
:mod:`gateway.shaping` made real with ``tc`` (HTB trees on the egress
devices) and ``nft`` (DSCP per mark, the conntrack copy of the mark).

Installed with the node's NFQUEUE rules at start (both nodes: a standby
forwards nothing, and its trees are ready when it takes over), again on
takeover (idempotent: ``replace``, the nft table replaced whole, so a tree
someone removed meanwhile is back), and removed at stop. Nothing is
half-applied: a command that fails at install removes what was installed and
raises.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Callable, Mapping

from gateway.config.model import Config
from gateway.shaping import (
    HTB_HANDLE, NFT_TABLE, ShapingPlan, class_report, nft_ruleset, parse_class_stats, plan,
    tc_install, tc_remove,
)

log = logging.getLogger("voip_alg.shaping")

Runner = Callable[..., subprocess.CompletedProcess]


def _run(args: list[str], input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=input, capture_output=True, text=True, timeout=10)


class TrafficShaper:
    """``devices``: configuration interface name -> Linux device (the node
    file's ``[interfaces]``). ``runner(args, input=None)``: how commands
    run (tests record them)."""

    def __init__(self, config: Config, devices: Mapping[str, str], *,
                 runner: Runner = _run) -> None:
        self.plan: ShapingPlan = plan(config)
        self.devices = dict(devices)
        self.run = runner
        self.installed = False
        self.trees = [t for t in self.plan.interfaces if t.interface in self.devices]
        for t in self.plan.interfaces:
            if t.interface not in self.devices:
                log.warning("shaping: %s has a bandwidth but is not mapped to a Linux interface "
                            "in the node file; it is not shaped", t.interface)

    @property
    def wanted(self) -> bool:
        return bool(self.trees) or bool(self.plan.marks)

    def _has_root(self, dev: str) -> bool:
        r = self.run(["tc", "qdisc", "show", "dev", dev, "root"])
        return r.returncode == 0 and (r.stdout or "").startswith(f"qdisc htb {HTB_HANDLE} root")

    def commands(self, keep_roots: frozenset[str] = frozenset()
                 ) -> list[tuple[list[str], str | None]]:
        """Every command :meth:`install` runs, with its standard input;
        on the devices of ``keep_roots`` the HTB root already there stays
        (HTB refuses a change of its root) and the classes are replaced."""
        out: list[tuple[list[str], str | None]] = []
        for tree in self.trees:
            dev = self.devices[tree.interface]
            cmds = tc_install(tree, dev)
            if dev in keep_roots:
                cmds = cmds[1:]
            out += [(["tc", *args], None) for args in cmds]
        if self.plan.marks:
            out.append((["nft", "-f", "-"], nft_ruleset(self.plan)))
        return out

    def install(self) -> None:
        """Install, or bring up to date without a gap: a node taking over
        under traffic keeps the HTB root its start made (the standby's) and
        replaces its classes, and the nft table is replaced atomically, so
        no packet leaves unshaped or unmarked meanwhile. A root that is not
        ours (a device's default qdisc) is replaced."""
        if not self.wanted:
            return
        keep = set()
        for tree in self.trees:
            dev = self.devices[tree.interface]
            if self._has_root(dev):
                keep.add(dev)
            else:
                self.run(["tc", *tc_remove(dev)])
        for args, stdin in self.commands(frozenset(keep)):
            r = self.run(args, input=stdin)
            if r.returncode != 0:
                self.remove()
                raise OSError(f"traffic shaping: {' '.join(args)}: "
                              f"{(r.stderr or r.stdout or '').strip()}")
        self.installed = True
        log.info("shaping: %d interface(s) shaped, %d policy mark(s), %d DSCP marking(s)",
                 len(self.trees), len(self.plan.marks), len(self.plan.dscp))

    def remove(self) -> None:
        """Remove the trees and the table (also what a crashed run left)."""
        if not self.wanted:
            return
        for tree in self.trees:
            self.run(["tc", *tc_remove(self.devices[tree.interface])])
        if self.plan.marks:
            self.run(["nft", "delete", "table", "ip", NFT_TABLE])
        self.installed = False

    def status(self) -> list[dict]:
        """Per shaped interface, its classes with their rates and drops
        (``tc -s class show``), for ``gwctl status``."""
        out = []
        for tree in self.trees:
            dev = self.devices[tree.interface]
            r = self.run(["tc", "-s", "class", "show", "dev", dev])
            stats = parse_class_stats(r.stdout if r.returncode == 0 else "")
            out.append({"interface": tree.interface, "device": dev,
                        "bandwidth_kbit": tree.bandwidth_kbit,
                        "installed": r.returncode == 0 and bool(stats),
                        "classes": class_report(tree, stats)})
        return out
