"""osmo-mgw, a real MGCP media gateway, started inside a host namespace with a
generated configuration and stopped by its own pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ops.lab.mgcp_agent import GW_PORT
from ops.lab.netns import LabError, ns_cmd, run

OSMO_MGW = "/usr/bin/osmo-mgw"


def osmo_mgw_config(bind_ip: str, rtp_low: int = 16002, rtp_high: int = 16201,
                    endpoints: int = 16) -> str:
    """osmo-mgw's VTY-style configuration (its doc/examples/osmo-mgw.cfg):
    MGCP and RTP on the host's address; VTY and CTRL on the namespace's own
    loopback."""
    return "\n".join([
        "log stderr", " logging filter all 1", " logging color 0", " logging print category 1",
        " logging level set-all notice",
        "line vty", " bind 127.0.0.1",
        "ctrl", " bind 127.0.0.1",
        "mgcp", f" bind ip {bind_ip}", f" bind port {GW_PORT}",
        f" rtp port-range {rtp_low} {rtp_high}", f" rtp bind-ip {bind_ip}",
        f" number endpoints {endpoints}", ""])


class OsmoMgw:
    """osmo-mgw running in ``netns`` on ``bind_ip`` (see :func:`osmo_mgw_config`)."""

    def __init__(self, netns: str, bind_ip: str, workdir: Path, *, exe: str = OSMO_MGW) -> None:
        self.netns = netns
        self.bind_ip = bind_ip
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / f"osmo-mgw-{netns}.cfg"
        self.log = workdir / f"osmo-mgw-{netns}.log"
        self.config.write_text(osmo_mgw_config(bind_ip))
        self.exe = exe
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(ns_cmd(self.netns, self.exe, "-c", str(self.config)),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LabError(f"osmo-mgw in {self.netns} exited ({self.proc.returncode}): "
                               f"{self.log_tail()}")
            out = run(ns_cmd(self.netns, "ss", "-H", "-uln", f"sport = :{GW_PORT}"), check=False).stdout
            if out.strip():
                return
            time.sleep(0.05)
        self.stop()
        raise LabError(f"osmo-mgw in {self.netns} did not listen on UDP {GW_PORT}: {self.log_tail()}")

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(3)

    def log_tail(self, n: int = 10) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> "OsmoMgw":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
