"""A throw-away network namespace for the tests of node-level plumbing
(the fence, `gatewayd --cleanup`, the systemd unit's life): one namespace
named after the test and the process, loopback up, the named links up,
deleted whatever the test did."""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Iterator


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; its stderr in the error when it fails and ``check``."""
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


@contextlib.contextmanager
def scratch_namespace(prefix: str, links: tuple[str, ...], kind: str = "dummy") -> Iterator[str]:
    """Yield the name of a new namespace holding ``links`` (dummy links; a
    bridge where the kernel has no dummy driver, or ``kind="bridge"``)."""
    ns = f"{prefix}{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for dev in links:
            if kind != "dummy" or sh("ip", "-n", ns, "link", "add", dev, "type", "dummy",
                                     check=False).returncode:
                sh("ip", "-n", ns, "link", "add", dev, "type", "bridge")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)
