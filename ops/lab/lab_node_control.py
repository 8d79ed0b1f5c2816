"""The lab's gatewayd nodes through their control sockets: a command, a
status, a wait for a role or for the standby to join, and each node's status
with whether its process still runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ops.lab.lab_node_files import NodePaths, node_paths
from ops.lab.netns import LabError, LabState

START_TIMEOUT = 20.0
POLL = 0.02


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
