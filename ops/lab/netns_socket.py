"""Sockets inside lab namespaces: a short-lived thread enters the namespace
(``setns`` changes the network namespace of the calling thread only) and makes
the socket, which stays in that namespace whatever thread uses it later."""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from typing import Callable

from ops.lab import netns as labns

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns: str, fn: Callable[[], object]) -> object:
    """Run ``fn`` on a fresh thread that entered ``netns``; return its result."""
    out: dict = {}

    def work() -> None:
        try:
            fd = os.open(str(labns.NETNS_DIR / netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            out["v"] = fn()
        except BaseException as exc:       # handed to the calling thread
            out["e"] = exc

    t = threading.Thread(target=work, name=f"netns-{netns}", daemon=True)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out.get("v")


def ns_socket(netns: str, address: tuple[str, int]) -> socket.socket:
    """A UDP socket bound to ``address`` inside ``netns``."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
        except BaseException:
            s.close()
            raise
        return s
    sock = in_netns(netns, make)
    assert isinstance(sock, socket.socket)
    return sock
