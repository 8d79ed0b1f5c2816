"""The gateway pair in the lab: one ``gatewayd`` node in each gateway namespace.

``gwctl lab up EXAMPLE`` (without ``--plain-routing``) runs this starter after
the namespaces, bridges and hosts exist. For each of ``gw-a`` and ``gw-b`` it
writes, under the lab's directory ``<state dir>/<lab>.d/``:

* a CURVE key pair (``keys/<node>.key`` and ``.key_secret``, made with
  ``zmq.auth.create_certificates`` as ``gwctl keys`` does);
* a node file ``<node>.toml`` (gateway/nodefile.py): the example's
  configuration, a journal directory per node, NFQUEUE 0, ``[interfaces]``
  mapping every configured interface to the namespace's device on that segment,
  ``[ha]`` bind/peer on the HA link (169.254.100.1/.2, port 7800) and the keys;
* the control socket ``run/<node>.sock`` (``GWCTL_RUN_DIR=<lab>.d/run`` lets
  ``gwctl status --node gw-a`` reach it) and the log ``<node>.log``.

Who holds what (decided here, see ARCHITECTURE.md "Gateway pair in the lab"):

* The lab gives the gateway namespaces **no** owned address (interface IPs,
  MIPs, DIP pool addresses): the active node adds them itself on promotion and
  the standby removes them (actors/addresses.py), as on real hosts.
* The nodes do not install routes; the configuration's static routes are the
  host's routing table. The starter installs them in **both** gateway
  namespaces, next hops ``onlink``: a route via 1.1.1.250 needs no address on
  the leg to be accepted, so the standby has its routes ready before it holds
  any address, and a takeover only moves addresses. Connected subnets appear
  with the interface addresses the active node adds.
* Packets reach the node through NFQUEUE 0: the node's ingest worker
  (actors/ingest.py) installs the ``raw`` PREROUTING rules for the legs its
  node file maps (not the HA link) and removes them when it stops. After a
  SIGKILL they stay: without ``set flow queue-bypass`` a namespace whose node
  is dead drops what still reaches it (fail closed), as a real host would.

``gw-a`` starts first and must report ``active`` on its control socket before
``gw-b`` starts and reports ``standby``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ops.lab import netns
from ops.lab.netns import LabError, LabState, ns_cmd, register_gateway_starter, run
from ops.lab.plan import HA_DEVICE, Plan

NAME = "gatewayd"
HA_PORT = 7800
QUEUE = 0
START_TIMEOUT = 20.0
POLL = 0.02


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


def gatewayd_command() -> list[str]:
    exe = Path(sys.executable).with_name("gatewayd")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ops.gatewayd"]


def _launch(p: NodePaths, log_level: str = "INFO") -> int:
    with open(p.log, "ab") as log:
        proc = subprocess.Popen(ns_cmd(p.netns, *gatewayd_command(), "--node-file", str(p.node_file),
                                       "--log-level", log_level),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    return proc.pid


def node_call(sock: Path | str, cmd: str, args: dict | None = None, timeout: float = 5.0):
    from ops.control_client import call
    return call(cmd, args or {}, node=str(sock), timeout=timeout)


def try_status(sock: Path | str, timeout: float = 2.0) -> dict | None:
    try:
        return node_call(sock, "status", timeout=timeout)
    except (ConnectionError, RuntimeError, OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie of ours counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def _log_tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait_role(p: NodePaths, role: str, *, timeout: float = START_TIMEOUT, pid: int | None = None,
              forwarding: bool | None = None) -> dict:
    """Poll the node's control socket until it reports ``role`` (and, if asked,
    forwarding); raise :class:`LabError` with the log's tail otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        st = try_status(p.socket)
        if st is not None:
            last = st
            if st.get("role") == role and (forwarding is None or st.get("forwarding") == forwarding):
                return st
        if pid is not None and not _alive(pid):
            raise LabError(f"gatewayd in {p.netns} exited; its log ends:\n{_log_tail(p.log)}")
        time.sleep(POLL)
    seen = f"last status: role {last.get('role')}" if last else "control socket never answered"
    raise LabError(f"gatewayd {p.role} in {p.netns} did not become {role} within {timeout:.0f}s "
                   f"({seen}); its log ends:\n{_log_tail(p.log)}")


def wait_standby_joined(active: NodePaths, *, timeout: float = START_TIMEOUT) -> dict:
    """Poll the active node until its replicator has a standby connected (a
    node reports ``standby`` as soon as it starts; only the active knows when
    the standby's HELLO arrived and it can take over)."""
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = try_status(active.socket)
        peer = (st or {}).get("peer") or {}
        if st and st.get("role") == "active" and peer.get("standby_connected"):
            return st
        time.sleep(POLL)
    raise LabError(f"no standby joined {active.role} within {timeout:.0f}s (last status: "
                   f"{json.dumps((st or {}).get('peer'))}); its log ends:\n{_log_tail(active.log)}")


def start_gatewayd(plan: Plan, state: LabState) -> None:
    """The ``gatewayd`` starter: node files, routes, queue rules, both nodes."""
    if not state.config:
        raise LabError("the gatewayd starter needs the lab's configuration file")
    paths = write_node_files(plan, state, state.config)
    for g in plan.gateways:
        for cmd in route_commands(plan, g.netns):
            run(cmd)
    state.daemons = {}
    for role, want in (("gw-a", "active"), ("gw-b", "standby")):
        p = paths[role]
        pid = _launch(p)
        state.daemons[role] = pid
        netns.save_state(state, Path(state.state_dir) if state.state_dir else None)
        wait_role(p, want, pid=pid)
    wait_standby_joined(paths["gw-a"])
    state.active = "gw-a"


# --- operations on a running pair --------------------------------------------------------

def node_status(state: LabState) -> dict[str, dict]:
    """Each node's status from its control socket, or why it has none."""
    plan = state.get_plan()
    assert plan is not None
    out: dict[str, dict] = {}
    for role, p in node_paths(state, plan).items():
        pid = (state.daemons or {}).get(role)
        st = try_status(p.socket)
        if st is None:
            out[role] = {"reachable": False, "pid": pid,
                         "running": bool(pid and _alive(pid)), "log": str(p.log)}
        else:
            out[role] = {"reachable": True, "pid": pid, **st}
    return out


def active_role(state: LabState) -> str | None:
    for role, st in node_status(state).items():
        if st.get("reachable") and st.get("role") == "active":
            return role
    return None


@dataclass(frozen=True, slots=True)
class FailoverResult:
    from_role: str
    to_role: str
    crash: bool
    seconds: float                # until the other node reported active and forwarding
    epoch: int
    node_reply: dict | None       # the active's answer to ``failover`` (graceful only)
    restarted: bool               # a crashed node was started again (as standby)


def failover(state: LabState, *, crash: bool = False, timeout: float = 15.0,
             restart: bool = True, on_start=None, on_taken=None) -> FailoverResult:
    """Forced failover of the pair: the active's ``failover`` command, or with
    ``crash`` a SIGKILL of the active gatewayd. Returns the time until the
    other node reports active and forwarding on its control socket. After a
    crash the killed node is started again and must rejoin as standby."""
    plan = state.get_plan()
    assert plan is not None
    paths = node_paths(state, plan)
    src = active_role(state)
    if src is None:
        raise LabError("no node reports active: nothing to fail over")
    dst = next(r for r in paths if r != src)
    wait_standby_joined(paths[src], timeout=timeout)
    reply = None
    if on_start is not None:
        on_start()
    t0 = time.monotonic()
    if crash:
        pid = (state.daemons or {}).get(src)
        if not pid or not _alive(pid):
            raise LabError(f"no running gatewayd recorded for {src}")
        os.kill(pid, signal.SIGKILL)
    else:
        reply = node_call(paths[src].socket, "failover", {"timeout": timeout}, timeout=timeout + 5)
    st = wait_role(paths[dst], "active", timeout=timeout, forwarding=True)
    seconds = time.monotonic() - t0
    if on_taken is not None:
        on_taken()
    restarted = False
    state_dir = Path(state.state_dir) if state.state_dir else None
    state.active = dst
    if crash and restart:
        _wait_gone(pid)
        paths[src].socket.unlink(missing_ok=True)
        state.daemons[src] = _launch(paths[src])
        netns.save_state(state, state_dir)
        # A restart imports, recovers the journal and installs its rules
        # ("started in ..." in its log): on a box loaded by other work that
        # took 18 s once, three times the usual; its rejoin is not what a
        # failover is timed by.
        wait_role(paths[src], "standby", pid=state.daemons[src], timeout=3 * timeout)
        wait_standby_joined(paths[dst], timeout=3 * timeout)
        restarted = True
    elif not crash:
        wait_role(paths[src], "standby", timeout=timeout)
        wait_standby_joined(paths[dst], timeout=timeout)
    netns.save_state(state, state_dir)
    return FailoverResult(src, dst, crash, round(seconds, 3), int(st.get("epoch", 0)), reply,
                          restarted)


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL)


register_gateway_starter(NAME, start_gatewayd, owns_addresses=True)

__all__ = ["NAME", "NodePaths", "FailoverResult", "lab_dir", "run_dir", "node_paths",
           "interface_map", "node_file_text", "write_node_files", "route_commands",
           "start_gatewayd", "node_status", "active_role", "failover", "wait_role", "node_call",
           "try_status"]


# --- calls with a failover in the middle ----------------------------------------------------

@dataclass(frozen=True, slots=True)
class RtpSplit:
    """Media packets counted by the hosts' nft counters (see ops/lab/sipp.py),
    split at the moment the failover was started."""

    caller_sent: int
    callee_received: int
    callee_sent: int
    caller_received: int

    def both_ways(self, min_ratio: float = 0.6) -> bool:
        """Media flowed both ways: something was sent each way and at least
        ``min_ratio`` of it arrived (the callee echoes what it receives, so a
        stream cut at the gateway shows as a low ratio, not as zero sent)."""
        return (self.caller_sent > 0 and self.callee_sent > 0
                and self.callee_received >= min_ratio * self.caller_sent
                and self.caller_received >= min_ratio * self.callee_sent)


@dataclass(frozen=True, slots=True)
class FailoverRun:
    calls: object                  # ops.lab.sipp.CallResult
    failover: FailoverResult | None
    failover_error: str | None
    rtp_before: RtpSplit           # from the start to the failover's start
    # From the moment the other node reports active and forwarding to the
    # end: what the new active carries. The takeover's own gap is in
    # ``failover.seconds`` and ``rtp_during`` (a loaded box may take the
    # failover command late, near the calls' end: a window that began
    # before the takeover was then mostly gap).
    rtp_after: RtpSplit
    failover_at: float             # seconds after the first INVITE was due
    # What the new active showed right after taking over: the calls in
    # progress (with their next deadline: the timers it rebuilt) and pinholes.
    calls_after_failover: list | None = None
    pinholes_after_failover: list | None = None
    rtp_during: RtpSplit | None = None   # from the failover's start to the takeover


def calls_with_failover(state: LabState, caller, callee, dial, *, calls: int, rate: float,
                        duration_ms: int, failover_at: float | None, crash: bool = False,
                        timeout: float = 15.0, transport: str = "udp") -> FailoverRun:
    """Run SIPp calls (ops.lab.sipp.run_calls) and, ``failover_at`` seconds
    after they start, fail the pair over (graceful or SIGKILL). Every number
    comes from SIPp's statistics, the hosts' counters and the nodes.
    ``transport``: the signalling's, as for ``run_calls``."""
    import threading

    from ops.lab import sipp
    from ops.lab.netns import read_counters

    def snap() -> tuple[tuple[int, int], tuple[int, int]]:
        return read_counters(caller.netns), read_counters(callee.netns)

    result: dict = {}

    def place() -> None:
        try:
            result["calls"] = sipp.run_calls(caller, callee, dial=dial, calls=calls, rate=rate,
                                             duration_ms=duration_ms, per_call_media_port=True,
                                             transport=transport)
        except BaseException as exc:     # reported by the caller of this function
            result["error"] = exc

    start = snap()
    t0 = time.monotonic()
    th = threading.Thread(target=place, name="sipp-calls", daemon=True)
    th.start()
    fo = fo_err = None
    marks: dict = {"mid": start}
    at = 0.0
    if failover_at is not None:
        # run_calls lets the UAS settle before the first INVITE.
        while time.monotonic() - t0 < failover_at + 0.3 and th.is_alive():
            time.sleep(0.05)

        def started() -> None:
            nonlocal at
            marks["mid"] = snap()
            at = time.monotonic() - t0 - 0.3
        try:
            fo = failover(state, crash=crash, timeout=timeout, on_start=started,
                          on_taken=lambda: marks.setdefault("taken", snap()))
        except (LabError, ConnectionError, RuntimeError) as exc:
            fo_err = str(exc)
        if fo is not None:
            plan = state.get_plan()
            sock = node_paths(state, plan)[fo.to_role].socket if plan is not None else None
            try:
                taken = (node_call(sock, "show", {"what": "calls"}),
                         node_call(sock, "show", {"what": "pinholes"})) if sock else (None, None)
            except (ConnectionError, RuntimeError, OSError) as exc:
                taken = (None, None)
                fo_err = f"the new active did not answer show: {exc}"
    th.join(calls / rate + duration_ms / 1000.0 + 60)
    end = snap()
    if "error" in result:
        raise result["error"]
    if "calls" not in result:
        raise LabError("SIPp calls did not finish")

    def split(a, b) -> RtpSplit:
        (ca_in0, ca_out0), (ce_in0, ce_out0) = a
        (ca_in1, ca_out1), (ce_in1, ce_out1) = b
        return RtpSplit(ca_out1 - ca_out0, ce_in1 - ce_in0, ce_out1 - ce_out0, ca_in1 - ca_in0)

    taken_calls, taken_pinholes = taken if fo is not None else (None, None)
    mid = marks["mid"]
    taken_at = marks.get("taken", mid)
    return FailoverRun(result["calls"], fo, fo_err, split(start, mid), split(taken_at, end), round(at, 2),
                       taken_calls, taken_pinholes,
                       split(mid, taken_at) if "taken" in marks else None)


__all__ += ["RtpSplit", "FailoverRun", "calls_with_failover", "wait_standby_joined"]
