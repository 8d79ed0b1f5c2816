"""The node's control socket against clients that misbehave, and against a
second server started on the same path."""

import json
import socket

import pytest

from actors.control import ControlError, ControlServer
from ops.control_client import call


def _handler(cmd, args):
    if cmd == "echo":
        return args
    raise ControlError(f"unknown command {cmd}")


@pytest.fixture
def server(tmp_path):
    s = ControlServer(str(tmp_path / "n.sock"), _handler)
    s.start()
    yield s
    s.stop()


def _raw(path, data: bytes, timeout=3.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(path)
        try:
            c.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while not out.endswith(b"\n"):
                chunk = c.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            pass
        return out


def test_a_second_server_does_not_take_a_live_nodes_socket(server, tmp_path):
    other = ControlServer(server.path, _handler)
    with pytest.raises(OSError, match="already serves"):
        other.start()
    assert call("echo", {"x": 1}, node=server.path) == {"x": 1}


def test_a_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()                         # the file stays, nobody listens (a crashed node)
    s = ControlServer(path, _handler)
    s.start()
    try:
        assert call("echo", {"y": 2}, node=path) == {"y": 2}
    finally:
        s.stop()


def test_an_endless_line_is_refused_not_buffered(server):
    resp = _raw(server.path, b"x" * (4 << 20))
    assert json.loads(resp) == {"ok": False, "error": "request too long"}


@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n", b'{"cmd": "echo", "args": "ab"}\n',
                                  b"\xff\xfe\n"])
def test_malformed_requests_get_an_error_and_the_channel_stays_usable(server, line):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(3)
        c.connect(server.path)
        f = c.makefile("rwb")
        f.write(line)
        f.flush()
        resp = json.loads(f.readline())
        assert resp["ok"] is False and "malformed request" in resp["error"]
        f.write(b'{"cmd": "echo", "args": {"z": 3}}\n')
        f.flush()
        assert json.loads(f.readline()) == {"ok": True, "result": {"z": 3}}
