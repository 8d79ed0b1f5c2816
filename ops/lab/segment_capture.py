"""tshark capturing one lab segment's UDP traffic on its bridge, and counting
what the capture holds."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ops.lab.netns import LabError, ns_cmd, run


class Capture:
    """tshark writing one lab segment's traffic (UDP) to a file, run on the
    segment's bridge in the switch namespace: every frame on that wire, from
    either gateway node or any host."""

    def __init__(self, switch_ns: str, bridge: str, path: Path) -> None:
        self.path = path
        self.switch_ns, self.bridge = switch_ns, bridge
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(ns_cmd(self.switch_ns, "tshark", "-q", "-n", "-i", self.bridge,
                                            "-f", "udp", "-w", str(self.path)),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        # tshark writes the file's header once it captures; then it is live.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.path.exists() and self.path.stat().st_size > 0:
                time.sleep(0.2)
                return
            if self.proc.poll() is not None:
                raise LabError(f"tshark on {self.bridge}: {self.proc.stderr.read().decode()[-300:]}")
            time.sleep(0.05)
        self.stop()
        raise LabError(f"tshark on {self.bridge} did not start capturing")

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        time.sleep(0.3)          # the last frames reach the file
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(3)

    def count(self, display_filter: str) -> int:
        out = run(["tshark", "-n", "-r", str(self.path), "-Y", display_filter, "-T", "fields",
                   "-e", "frame.number"], timeout=60).stdout
        return len(out.split())

    def private_leaks(self, addresses: list[str]) -> dict[str, int]:
        """Frames naming each address in a header or anywhere in the bytes
        (MGCP and SDP are text)."""
        return {a: self.count(f'ip.addr == {a} || frame contains "{a}"') for a in addresses}
