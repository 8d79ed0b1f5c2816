"""The node's local control channel: a Unix socket that ``gwctl`` talks to.

One JSON object per line each way: ``{"cmd": NAME, "args": {...}}`` ->
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
Only root, or members of the configured group, may use it: the socket file is
mode 0660 owned by root:GROUP, and every connection's peer credentials
(SO_PEERCRED) are checked again, so a mis-set file mode does not open it up."""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import socket
import struct
import threading
from typing import Any, Callable

from actors.thread_names import name_native_thread

log = logging.getLogger("gateway.control")

Handler = Callable[[str, dict], Any]


class ControlError(Exception):
    """A request the node refuses, with a message for the operator."""


class ControlServer:
    def __init__(self, path: str, handler: Handler, *, group: str | None = None) -> None:
        self.path = path
        self.handler = handler
        self.gid = grp.getgrnam(group).gr_gid if group else None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        if socket_answers(self.path):
            # Another node (or a second copy of this one) is serving here:
            # unlinking its socket would cut gwctl off from a running node.
            raise OSError(errno.EADDRINUSE, f"a running node already serves {self.path}")
        try:
            os.unlink(self.path)          # a stale socket left by a node that died
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            s.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        if self.gid is not None:
            os.chown(self.path, 0, self.gid)
        s.listen(16)
        s.settimeout(0.2)
        self._sock = s
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        if self._sock:
            self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    @staticmethod
    def _peer(conn: socket.socket) -> tuple[int, int, int]:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)

    def _allowed(self, conn: socket.socket) -> bool:
        _pid, uid, gid = self._peer(conn)
        if uid == 0:
            return True
        if self.gid is not None:
            if gid == self.gid:
                return True
            try:
                import pwd
                name = pwd.getpwuid(uid).pw_name
                return name in grp.getgrgid(self.gid).gr_mem
            except KeyError:
                return False
        return False

    def _serve(self) -> None:
        name_native_thread()
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            if not self._allowed(conn):
                log.warning("control: refused a client that is neither root nor in the control group")
                conn.sendall(b'{"ok": false, "error": "permission denied"}\n')
                return
            pid, uid, _gid = self._peer(conn)
            # Who asked, for the commands that log it (gwctl config apply).
            peer = {"uid": uid, "pid": pid}
            f = conn.makefile("rwb")
            try:
                while True:
                    # A bounded read: a client that never sends a newline must
                    # not make the node buffer without end.
                    line = f.readline(MAX_REQUEST + 1)
                    if not line:
                        return
                    if len(line) > MAX_REQUEST:
                        f.write(b'{"ok": false, "error": "request too long"}\n')
                        f.flush()
                        return
                    f.write(json.dumps(self._answer(line, peer), default=str).encode() + b"\n")
                    f.flush()
            except OSError:
                return                     # the client went away

    def _answer(self, line: bytes, peer: dict | None = None) -> dict:
        try:
            req = json.loads(line)
        except ValueError as exc:          # JSONDecodeError, UnicodeDecodeError
            return {"ok": False, "error": f"malformed request: {exc}"}
        if not isinstance(req, dict) or not isinstance(req.get("args", {}), (dict, type(None))):
            return {"ok": False, "error": 'malformed request: want {"cmd": NAME, "args": {...}}'}
        try:
            cmd = str(req.get("cmd", ""))
            args = dict(req.get("args") or {})
            args.pop("_peer", None)                # only the kernel's word for it
            if peer is not None and cmd in LOGS_WHO_ASKED:
                args["_peer"] = peer
            return {"ok": True, "result": self.handler(cmd, args)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:   # a bug in a handler must not kill the channel
            log.exception("control: command failed")
            return {"ok": False, "error": f"internal error: {exc}"}


# Commands told the asking process's credentials (SO_PEERCRED) as
# args["_peer"], to log who asked (actors/live_config.py).
LOGS_WHO_ASKED = frozenset({"config-apply"})

# The longest request line accepted; gwctl's requests are a few hundred bytes.
MAX_REQUEST = 1 << 20


def socket_answers(path: str) -> bool:
    """Whether a server accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True
