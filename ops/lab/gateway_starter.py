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

The nodes' files are written by ``lab_node_files``, their control sockets
watched by ``lab_node_control``, what a failover measured is in
``failover_results``; this module launches the nodes (``gatewayd_command``,
which benchmarks replace, is read here), fails the pair over and runs calls
across a failover.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ops.lab import netns
from ops.lab.failover_results import FailoverResult, FailoverRun, RtpSplit
from ops.lab.lab_node_control import (
    POLL, _alive, active_role, node_call, node_status, try_status, wait_role, wait_standby_joined,
)
from ops.lab.lab_node_files import (
    NodePaths, interface_map, lab_dir, node_file_text, node_paths, route_commands, run_dir, write_node_files,
)
from ops.lab.netns import LabError, LabState, ns_cmd, register_gateway_starter, run
from ops.lab.plan import Plan

NAME = "gatewayd"


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
