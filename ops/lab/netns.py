"""Make a lab plan real with ``ip``, and take it down again.

Everything made is recorded in a state file (``/run/voip-alg-lab/<lab>.json``)
*before* it is made, so :func:`down` removes it all after a crash or a half-made
:func:`up`, and may be run any number of times. Because the plan keeps every
link inside the lab's namespaces (see :mod:`ops.lab.plan`), deleting those
namespaces - after stopping the processes running in them - removes
everything.

Only the active gateway namespace holds the owned addresses (interface IPs,
MIPs, DIP pool addresses). :func:`move_addresses` moves them to the other
gateway namespace and announces them with gratuitous ARP: what the HA node does
on takeover.

What the gateway namespaces run is a pluggable *starter*. ``plain-routing`` is
Linux forwarding with nothing else: the real baseline the benchmarks compare
against, not a stand-in for the gateway.

The lab's records are in ``lab_records``, what its hosts count as media in
``media_counters``, how its processes are stopped in ``process_stop``, the
order of ``up``'s steps in ``netns_up`` and the takeover's address move in
``netns_takeover``; this module runs the commands (tests replace its ``run``,
``NETNS_DIR``, ``STATE_DIR`` and ``_pids_in``, so whatever reads them is here
or reads them from here when called).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ops.lab.lab_records import DownReport, LabState
from ops.lab.media_counters import COUNTER_TABLE, NOT_MEDIA_PORTS, counter_rules, is_counted_media  # noqa: F401
from ops.lab.netns_takeover import _GARP_SCRIPT, gratuitous_arp, held_by, move_addresses  # noqa: F401
from ops.lab.netns_up import running, up  # noqa: F401
from ops.lab.plan import OwnedAddress, Plan, to_data  # noqa: F401
from ops.lab.process_stop import TERM_GRACE, _cmdline, process_alive, stop_all

STATE_DIR = Path(os.environ.get("VOIP_ALG_LAB_STATE", "/run/voip-alg-lab"))
NETNS_DIR = Path("/run/netns")
COMMAND_TIMEOUT = 15.0


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


def run(cmd: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one command, bounded in time; raise :class:`LabError` on failure."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    except FileNotFoundError as exc:
        raise LabError(f"not installed: {cmd[0]}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def ns_cmd(netns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *cmd]


def ns_exists(netns: str) -> bool:
    return (NETNS_DIR / netns).exists()


def available() -> str | None:
    """Why the lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        run(["ip", "netns", "list"], timeout=5)
    except LabError as exc:
        return f"ip netns unavailable: {exc}"
    return None


# --- state -------------------------------------------------------------------


def state_path(lab: str, state_dir: Path | None = None) -> Path:
    return (state_dir or STATE_DIR) / f"{lab}.json"


def load_state(lab: str, state_dir: Path | None = None) -> LabState | None:
    path = state_path(lab, state_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # A torn state file: keep what the name tells (the lab prefix).
        return LabState(lab)
    known = {k: v for k, v in data.items() if k in LabState.__dataclass_fields__}
    return LabState(**known)


def save_state(state: LabState, state_dir: Path | None = None) -> None:
    path = state_path(state.lab, state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.__dict__, indent=1))
    os.replace(tmp, path)


def list_labs(state_dir: Path | None = None) -> list[str]:
    d = state_dir or STATE_DIR
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


# --- gateway starters ----------------------------------------------------------

GatewayStarter = Callable[[Plan, LabState], None]


def start_plain_routing(plan: Plan, state: LabState) -> None:
    """Linux forwarding and nothing else: forwarding is already on in both
    gateway namespaces, no filter, no NAT, no helper."""
    for g in plan.gateways:
        value = run(ns_cmd(g.netns, "sysctl", "-n", "net.ipv4.ip_forward")).stdout.strip()
        if value != "1":
            raise LabError(f"{g.netns}: ip_forward is {value}")


STARTERS: dict[str, GatewayStarter] = {"plain-routing": start_plain_routing}
# Starters whose gateways take the owned addresses themselves (the HA node adds
# them on promotion): :func:`up` gives the gateway namespaces none of them and
# installs no routes; the starter does what its gateways need.
SELF_ADDRESSED: set[str] = set()


def register_gateway_starter(name: str, starter: GatewayStarter, *,
                             owns_addresses: bool = False) -> None:
    """Plug in what runs in the gateway namespaces (e.g. the gateway daemon).
    A starter runs its processes inside the lab's namespaces: :func:`down`
    stops every process found there. Files it keeps belong under
    ``<state dir>/<lab>.d/``, which :func:`down` moves under the kept folder
    (:func:`keep_files`)."""
    STARTERS[name] = starter
    if owns_addresses:
        SELF_ADDRESSED.add(name)
    else:
        SELF_ADDRESSED.discard(name)


def lab_files(lab: str, state_dir: Path | None = None) -> Path:
    """A lab's own directory beside its state file (node files, logs...)."""
    return (state_dir or STATE_DIR) / f"{lab}.d"


# --- up ------------------------------------------------------------------------

def _sysctl(netns: str, *settings: str) -> None:
    run(ns_cmd(netns, "sysctl", "-q", "-w", *settings))


def _new_netns(netns: str) -> None:
    run(["ip", "netns", "add", netns])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
    # Reverse-path filtering drops the asymmetric paths a failover or a far
    # host makes; the lab's hosts are trusted.
    _sysctl(netns, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")


def _veth_to_switch(plan: Plan, netns: str, switch_end: str, ifname: str, bridge: str) -> None:
    run(["ip", "-n", plan.switch, "link", "add", switch_end, "type", "veth",
         "peer", "name", ifname, "netns", netns])
    run(["ip", "-n", plan.switch, "link", "set", switch_end, "master", bridge, "up"])
    run(["ip", "-n", netns, "link", "set", ifname, "up"])
    _sysctl(netns, f"net.ipv4.conf.{ifname}.rp_filter=0")


def _install_counters(netns: str) -> None:
    rules = "; ".join(counter_rules().values())
    script = (f"table ip {COUNTER_TABLE} {{\n"
              f" chain in {{ type filter hook input priority 0; policy accept; {rules}; }}\n"
              f" chain out {{ type filter hook output priority 0; policy accept; {rules}; }}\n"
              f"}}\n")
    run(ns_cmd(netns, "nft", "-f", "-"), input=script)


def read_counters(netns: str, kind: str = "rtp") -> tuple[int, int]:
    """(packets received, packets sent) by a host namespace: RTP (``kind``
    ``rtp``) or any UDP off the SIP port (``udp``); see :func:`counter_rules`."""
    if kind not in ("rtp", "udp"):
        raise ValueError(f"counter kind is rtp or udp, not {kind!r}")
    out = run(ns_cmd(netns, "nft", "-j", "list", "table", "ip", COUNTER_TABLE)).stdout
    got = {"in": 0, "out": 0}
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if not rule or rule.get("comment") != kind:
            continue
        for expr in rule["expr"]:
            if "counter" in expr:
                got[rule["chain"]] += int(expr["counter"]["packets"])
    return got["in"], got["out"]


def _hold(netns: str, owned: Iterable[OwnedAddress]) -> None:
    for a in owned:
        run(["ip", "-n", netns, "addr", "replace", str(a.address), "dev", a.device])


def _install_routes(plan: Plan, netns: str) -> None:
    for rt in plan.routes:
        cmd = ["ip", "-n", netns, "route", "replace", str(rt.prefix)]
        if rt.via is not None:
            cmd += ["via", str(rt.via)]
        run(cmd + ["dev", rt.device])


def _add_dummy(netns: str, name: str) -> None:
    """A device that only carries addresses (a ``loopback.N``). Kernels built
    without the dummy driver (no modules) get a bridge with no ports, which
    carries local addresses just the same."""
    try:
        run(["ip", "-n", netns, "link", "add", name, "type", "dummy"])
    except LabError as exc:
        if "Unknown device type" not in str(exc):
            raise
        run(["ip", "-n", netns, "link", "add", name, "type", "bridge"])


class LabRunning(LabError):
    """``up`` over a lab that is up: its calls would be cut."""


# --- down ----------------------------------------------------------------------

# The lab's directory (node files, logs, journals, captures) is moved under
# ``<state dir>/kept/<lab>-<UTC time>/`` by ``down``, not deleted: the logs
# ``up`` pointed at stay readable. The newest KEEP_RUNS of each lab are kept.
KEPT_DIR_NAME = "kept"
KEEP_RUNS = int(os.environ.get("VOIP_ALG_LAB_KEEP", "5"))
# Never kept: secret keys and control sockets of nodes that no longer run.
NOT_KEPT = ("keys", "run")


def _pids_in(netns: str) -> list[int]:
    proc = run(["ip", "netns", "pids", netns], check=False, timeout=5)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def stop_processes(netns: str, grace: float = TERM_GRACE) -> list[int]:
    """Stop every process running in a lab namespace (TERM, then KILL);
    returns once they have exited (or the bounded waits ended)."""
    rep = stop_all(lambda: _pids_in(netns), grace=grace)
    return rep.stopped + rep.killed + rep.left


def kept_root(state_dir: Path | None = None) -> Path:
    return (state_dir or STATE_DIR) / KEPT_DIR_NAME


def keep_files(lab: str, state_dir: Path | None = None, *, keep: int = KEEP_RUNS) -> Path | None:
    """Move the lab's directory (logs, node files, journals, captures) to
    ``<state dir>/kept/<lab>-<UTC time>/`` without its secret keys and
    sockets, and drop the oldest kept runs of the lab beyond ``keep``.
    Returns where it went (None: nothing to keep)."""
    src = lab_files(lab, state_dir)
    if not src.is_dir():
        return None
    for name in NOT_KEPT:
        shutil.rmtree(src / name, ignore_errors=True)
    if not any(src.iterdir()):
        src.rmdir()
        return None
    root = kept_root(state_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dst = root / f"{lab}-{stamp}"
    k = 2
    while dst.exists():
        dst, k = root / f"{lab}-{stamp}-{k}", k + 1
    if src.stat().st_dev == root.stat().st_dev:
        os.replace(src, dst)
    else:                       # a kept root on another file system
        shutil.move(str(src), str(dst))
    mine = re.compile(rf"{re.escape(lab)}-\d{{8}}T\d{{6}}Z(-\d+)?")
    runs = sorted((p for p in root.iterdir() if p.is_dir() and mine.fullmatch(p.name)),
                  key=lambda p: p.stat().st_mtime)
    for old in runs[:max(0, len(runs) - max(1, keep))]:
        if old != dst:
            shutil.rmtree(old, ignore_errors=True)
    return dst


def _lab_namespaces(lab: str, state: LabState | None, extra: Iterable[str]) -> list[str]:
    names: list[str] = list(extra)
    if state is not None:
        names += state.namespaces
        plan = None
        try:
            plan = state.get_plan()
        except (KeyError, TypeError, ValueError):
            pass
        if plan is not None:
            names += plan.namespaces()
    # A lab owns every namespace named "<lab>-...": found even when the state
    # file is torn or gone (and those other commands added, e.g. mgcp-call's).
    if NETNS_DIR.is_dir():
        names += sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{lab}-"))
    return [ns for ns in dict.fromkeys(names) if ns.startswith(f"{lab}-")]


def take_down(lab: str, *, state_dir: Path | None = None, extra_namespaces: Iterable[str] = (),
              grace: float = TERM_GRACE) -> DownReport:
    """Remove a lab: stop every process it runs (in its namespaces, and the
    daemons its state records) and wait until they have exited, delete its
    namespaces, keep its files (:func:`keep_files`), remove its state file.
    Safe to repeat."""
    state = load_state(lab, state_dir)
    spaces = [ns for ns in _lab_namespaces(lab, state, extra_namespaces) if ns_exists(ns)]
    daemons = [int(p) for p in ((state.daemons or {}) if state is not None else {}).values()
               if isinstance(p, int) or str(p).isdigit()]
    own = str(lab_files(lab, state_dir))

    def find() -> set[int]:
        # A recorded daemon is found even outside the namespaces (one whose
        # namespace a failed ``up`` already deleted), but only while its
        # command line still names this lab's files: a pid may be reused.
        return {p for ns in spaces for p in _pids_in(ns)} | {
            p for p in daemons if own in _cmdline(p) and process_alive(p)}

    report = DownReport(lab, processes=stop_all(find, grace=grace))
    for netns in spaces:
        run(["ip", "netns", "delete", netns])
        report.namespaces.append(netns)
    report.kept = keep_files(lab, state_dir)
    state_path(lab, state_dir).unlink(missing_ok=True)
    return report


def down(lab: str, *, state_dir: Path | None = None,
         extra_namespaces: Iterable[str] = ()) -> list[str]:
    """:func:`take_down`; the namespaces it deleted."""
    return take_down(lab, state_dir=state_dir, extra_namespaces=extra_namespaces).namespaces


# --- status ----------------------------------------------------------------------

def status(lab: str, *, state_dir: Path | None = None) -> dict:
    state = load_state(lab, state_dir)
    if state is None:
        return {"lab": lab, "exists": False}
    plan = state.get_plan()
    # The plan's namespaces, those other commands added and recorded (e.g.
    # ``gwctl lab mgcp-call``'s media gateway hosts) and any other
    # "<lab>-..." namespace there is: everything ``down`` would remove.
    spaces = _lab_namespaces(lab, state, ())
    info: dict = {
        "lab": lab, "exists": True, "complete": state.complete, "config": state.config,
        "starter": state.starter, "active": state.active,
        "namespaces": {ns: ns_exists(ns) for ns in spaces},
        "processes": {ns: _pids_in(ns) for ns in spaces if ns_exists(ns)},
        # Not the plan's: added after ``up`` (a command's extra host) or left over.
        "added": [ns for ns in spaces if plan is None or ns not in plan.namespaces()],
    }
    if plan is not None:
        info["holder"] = held_by(plan)
        info["hosts"] = {h.label: {"netns": h.netns, "zone": h.zone, "address": str(h.address)}
                         for h in plan.hosts}
        info["owned"] = [str(a.address) for a in plan.owned] + [e[0] for e in state.extra]
    return info
