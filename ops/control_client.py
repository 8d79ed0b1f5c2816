"""Client side of the node's control channel (see actors/control.py)."""

from __future__ import annotations

import json
import os
import socket

from actors.control import socket_answers

DEFAULT_RUN_DIR = "/run/voip-alg-gateway"


def socket_path(node: str | None = None, run_dir: str | None = None) -> str:
    run_dir = run_dir or os.environ.get("GWCTL_RUN_DIR", DEFAULT_RUN_DIR)
    if node:
        return node if node.endswith(".sock") or "/" in node else os.path.join(run_dir, f"{node}.sock")
    socks = sorted(p for p in os.listdir(run_dir) if p.endswith(".sock")) if os.path.isdir(run_dir) else []
    if len(socks) == 1:
        return os.path.join(run_dir, socks[0])
    if len(socks) > 1:
        # The run directory outlives a node that crashed (the unit keeps it,
        # RuntimeDirectoryPreserve): its socket stays behind. The one node
        # that answers is the local node.
        live = [s for s in socks if socket_answers(os.path.join(run_dir, s))]
        if len(live) == 1:
            return os.path.join(run_dir, live[0])
        if not live:
            raise ConnectionError(f"no gateway node answers in {run_dir} (sockets left by stopped "
                                  f"nodes: {', '.join(s[:-5] for s in socks)}); start one, or pass --node")
        socks = live
    if not socks:
        raise ConnectionError(f"no gateway node is running (no control socket in {run_dir}); "
                              "start one with gatewayd, or pass --node")
    raise ConnectionError(f"several nodes run here ({', '.join(s[:-5] for s in socks)}): pass --node NAME")


def call(cmd: str, args: dict | None = None, *, node: str | None = None, timeout: float = 10.0):
    path = socket_path(node)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConnectionError(f"cannot reach the node at {path}: {exc.strerror or exc}") from None
        except PermissionError:
            raise ConnectionError(f"permission denied on {path}: run as root or as a member of "
                                  "the node's control group") from None
        s.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    resp = json.loads(buf or b'{"ok": false, "error": "the node closed the connection"}')
    if not resp.get("ok"):
        raise RuntimeError(resp.get("error", "unknown error"))
    return resp.get("result")
