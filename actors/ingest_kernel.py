"""The kernel state of an ingest worker: the iptables rules that queue the
configured interfaces' packets in ``raw PREROUTING``, the sysctls the gateway
needs (``accept_local``, ``rp_filter``, forwarding; :mod:`actors.ingest` says
why), saved and restored, and the kernel's per-source screen."""

from __future__ import annotations

import logging
import subprocess

from actors import kernel_screen
from actors.ingest_sysctl import conf_path, read_sysctl, sysctl_path, write_sysctl

log = logging.getLogger("voip_alg.ingest")

RULE_COMMENT = "voip-alg-q{queue}"


class KernelState:
    """Rules, sysctls and the kernel screen; a part of :class:`actors.ingest.NfqueueWorker` (a base class)."""

    # -- kernel setup -------------------------------------------------------------

    def rule_specs(self) -> list[list[str]]:
        out = []
        for ifname in self.linux_ifaces:
            spec = ["PREROUTING", "-i", ifname, "-m", "comment", "--comment",
                    RULE_COMMENT.format(queue=self.queue_num), "-j", "NFQUEUE",
                    "--queue-num", str(self.queue_num)]
            if self.bypass:
                spec.append("--queue-bypass")
            out.append(spec)
        return out

    def _iptables(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["iptables", "-w", "5", "-t", "raw", *args],
                              capture_output=True, text=True)

    def _set_sysctl(self, path: str, value: str) -> None:
        old = read_sysctl(path)
        if old is None:
            raise OSError(f"sysctl {path} not found")
        if old != value:
            self._saved_sysctls.setdefault(path, old)
            write_sysctl(path, value)

    def sysctl_settings(self) -> list[tuple[str, str]]:
        """(/proc/sys path, value) of every setting the worker needs."""
        root = self.proc_sys
        out = [(sysctl_path("net", "ipv4", "ip_forward", root=root), "1"),
               # rp_filter is the maximum of "all" and the interface's value.
               (conf_path("all", "rp_filter", root), "0")]
        for ifname in self.linux_ifaces:
            out.append((conf_path(ifname, "accept_local", root), "1"))
            out.append((conf_path(ifname, "rp_filter", root), "0"))
        return out

    def install_sysctls(self) -> None:
        for path, value in self.sysctl_settings():
            self._set_sysctl(path, value)

    def restore_sysctls(self) -> None:
        for path, old in reversed(list(self._saved_sysctls.items())):
            try:
                write_sysctl(path, old)
            except OSError as e:
                log.warning("could not restore %s=%s: %s", path, old, e)
        self._saved_sysctls.clear()

    def install_kernel_state(self) -> None:
        self.install_sysctls()
        if self.screen is not None:
            self.screen.install()
            self.screen.watch(self._screen_drops)
        for spec in self.rule_specs():
            r = self._iptables("-I", *spec)
            if r.returncode != 0:
                raise OSError(f"iptables -t raw -I {' '.join(spec)}: {r.stderr.strip()}")
            self._rules.append(spec)

    def _screen_drops(self, n: int) -> None:
        """New drops of the kernel's per-source screen (its watch thread)."""
        with self.lock:
            self.drop_codes[kernel_screen.DROP_CODE] = self.drop_codes.get(kernel_screen.DROP_CODE, 0) + n
        log.info("drop [%s]: %d packet(s) of new work (SIP/MGCP/RAS requests, TCP connections to "
                 "5060/1720) over %d/s from one source dropped in the kernel before the queue "
                 "(sources: nft list table inet %s)", kernel_screen.DROP_CODE,
                 n, self.screen.rate, self.screen.table)

    def remove_kernel_state(self) -> None:
        for spec in self._rules:
            # Delete every copy (a crashed earlier run may have left one).
            for _ in range(16):
                if self._iptables("-D", *spec).returncode != 0:
                    break
        self._rules.clear()
        if self.screen is not None:
            self.screen.remove()
        self.restore_sysctls()
