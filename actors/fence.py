"""The fence supervisor: a small process that outlives gatewayd and takes away
what a dead or stalled node must not keep.

gatewayd starts it first thing in node mode (:meth:`Fence.spawn`) and keeps
the write end of a pipe to it; the supervisor reads the pipe (its stdin). The
node tells it, one JSON object a line:

  {"addrs": [[dev, "a.b.c.d/len"], ...]}  the addresses it holds now (before
                                         adding them; [] once removed)
  {"rules": [[iptables args], ...]}      the raw-table rules it installed
  {"nft": ["inet TABLE", ...]}           the nftables tables it installed (the
                                         per-source screen, actors/kernel_screen.py)
  {"tc": [[tc filter args], ...],        the tc filters it attached and the BPF
   "pins": [path, ...]}                  objects it pinned (the media offload's
                                         program, actors/kernel_media_bpf.py)
  {"lease": until}                       the monotonic time (CLOCK_MONOTONIC,
                                         the same clock in every process of
                                         the host) its lease ends; null: no lease

and the supervisor:
- at end of file on the pipe (gatewayd exited, by any signal, SIGKILL
  included: the kernel closes the pipe) removes those addresses and rules,
  then exits. A node killed while active then stops answering ARP for the
  pair's addresses at once instead of for ever;
- when the lease ends while addresses are held, removes the addresses itself:
  gatewayd may be stalled (a GC pause, a hung thread) and unable to; this is
  what keeps the guarantee of gateway/ha.py (no two nodes holding the
  addresses) whatever stalls the node.

It runs as ``python -S actors/fence.py`` and imports only the standard
library (no scapy, pykka or zmq: it starts in milliseconds and stays small),
in a session of its own (a signal to gatewayd's process group does not reach
it), and raises its own scheduling priority (SCHED_FIFO, else nice -20, where
permitted) so that load on the box cannot starve it."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time

RULE_DELETE_COPIES = 16


# ------------------------------------------------------------ supervisor side


def _say(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} gateway.fence[{os.getpid()}] {msg}", file=sys.stderr, flush=True)


def raise_priority() -> str:
    """SCHED_FIFO if permitted, else the lowest nice value permitted."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return "SCHED_FIFO 10"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -20)
        return "nice -20"
    except OSError:
        return "default priority"


def remove_addresses(addrs: list[list[str]]) -> int:
    """``ip addr del`` for each (dev, cidr), in one ``ip -batch`` process.
    Returns how many were removed (others were already gone)."""
    if not addrs:
        return 0
    script = "".join(f"addr del {cidr} dev {dev}\n" for dev, cidr in addrs)
    r = subprocess.run(["ip", "-force", "-batch", "-"], input=script, capture_output=True,
                       text=True, timeout=10)
    failed = sum(1 for ln in r.stderr.splitlines() if ln.startswith("Command failed"))
    return max(0, len(addrs) - failed)


def remove_rules(rules: list[list[str]]) -> int:
    """Delete every copy of each raw-table rule (iptables -t raw -D)."""
    n = 0
    for spec in rules:
        for _ in range(RULE_DELETE_COPIES):
            r = subprocess.run(["iptables", "-w", "5", "-t", "raw", "-D", *spec],
                               capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                break
            n += 1
    return n


def remove_nft_tables(tables: list[str]) -> int:
    """``nft delete table FAMILY NAME`` for each; returns how many were there."""
    n = 0
    for t in tables:
        parts = t.split()
        if len(parts) != 2:
            continue
        r = subprocess.run(["nft", "delete", "table", *parts], capture_output=True, text=True,
                           timeout=10)
        n += r.returncode == 0
    return n


def remove_tc_filters(specs: list[list[str]], pins: list[str], run=None) -> int:
    """``tc filter del ARGS`` for each, then the pinned objects; returns how
    many filters were there. A filter outlives its process: without this a
    dead node's program would go on forwarding media."""
    run = run or subprocess.run
    n = 0
    for spec in specs:
        r = run(["tc", "filter", "del", *spec], capture_output=True, text=True, timeout=10)
        n += r.returncode == 0
    for path in pins:
        try:
            os.unlink(path)
        except OSError:
            pass
    return n


def rule_devices(rules: list[list[str]]) -> list[str]:
    """The input devices (``-i DEV``) of the queue rules."""
    out = []
    for spec in rules:
        for flag, value in zip(spec, spec[1:]):
            if flag == "-i" and value not in out:
                out.append(value)
    return out


def set_forwarding(devices: list[str], on: bool, proc_sys: str = "/proc/sys") -> list[str]:
    """net.ipv4.conf.DEV.forwarding for each device (IPv4 forwards a packet
    only if its input device's flag is set). Returns the devices it could not
    set (gone, or a name that is not one path component)."""
    failed = []
    for dev in devices:
        if not dev or "/" in dev or dev in (".", ".."):
            failed.append(dev)
            continue
        try:
            with open(f"{proc_sys}/net/ipv4/conf/{dev}/forwarding", "w") as f:
                f.write("1\n" if on else "0\n")
        except OSError:
            failed.append(dev)
    return failed


class Supervisor:
    """The supervisor's state and its loop over the pipe (``fd``)."""

    def __init__(self, fd: int, clock=time.monotonic) -> None:
        self.fd = fd
        self.clock = clock
        self.addrs: list[list[str]] = []
        self.rules: list[list[str]] = []
        self.nft: list[str] = []
        self.tc: list[list[str]] = []
        self.pins: list[str] = []
        self.lease_until: float | None = None
        self._buf = b""

    def handle(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            _say(f"ignored a line that is not JSON: {line[:80]!r}")
            return
        if not isinstance(msg, dict):
            return
        if "addrs" in msg:
            self.addrs = [[str(d), str(c)] for d, c in msg["addrs"]]
        if "rules" in msg:
            self.rules = [[str(a) for a in spec] for spec in msg["rules"]]
        if "nft" in msg:
            self.nft = [str(t) for t in msg["nft"]]
        if "tc" in msg:
            self.tc = [[str(a) for a in spec] for spec in msg["tc"]]
        if "pins" in msg:
            self.pins = [str(p) for p in msg["pins"]]
        if "lease" in msg:
            v = msg["lease"]
            self.lease_until = None if v is None else float(v)

    def lease_ended(self) -> bool:
        return self.lease_until is not None and self.clock() >= self.lease_until

    def fence_addresses(self, why: str) -> None:
        t0 = self.clock()
        n = remove_addresses(self.addrs)
        _say(f"{why}: removed {n} of {len(self.addrs)} address(es) in "
             f"{(self.clock() - t0) * 1000:.0f} ms")
        self.addrs = []

    def run(self) -> int:
        while True:
            timeout = None
            if self.addrs and self.lease_until is not None:
                timeout = max(0.0, self.lease_until - self.clock())
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                if self.addrs and self.lease_ended():
                    self.fence_addresses(f"lease ended {(self.clock() - self.lease_until) * 1000:.0f} ms "
                                         "ago and the node did not give up its addresses")
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.cleanup()
                return 0
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            for line in lines:
                if line.strip():
                    self.handle(line)
            if self.addrs and self.lease_ended():
                self.fence_addresses("lease already ended when the addresses were reported")

    def cleanup(self) -> None:
        if self.addrs:
            self.fence_addresses("gatewayd exited")
        if self.tc or self.pins:
            n = remove_tc_filters(self.tc, self.pins)
            _say(f"gatewayd exited: removed {n} tc filter(s) (media offload program)")
            self.tc, self.pins = [], []
        if self.nft:
            n = remove_nft_tables(self.nft)
            _say(f"gatewayd exited: removed {n} nftables table(s)")
            self.nft = []
        if self.rules:
            n = remove_rules(self.rules)
            # Without its queue rules the namespace would route what still
            # reaches it (hosts with a stale ARP entry) past the gateway's
            # policy: forwarding goes off on those devices (fail closed, as
            # the rules without --queue-bypass were). gatewayd turns it on
            # again at start.
            # An operator who chose `set flow queue-bypass` (fail open: let
            # packets pass when no gatewayd listens) keeps that choice.
            devs = rule_devices(self.rules)
            if any("--queue-bypass" in spec for spec in self.rules):
                _say(f"gatewayd exited: removed {n} NFQUEUE rule(s); forwarding left on "
                     "(set flow queue-bypass: fail open)")
            else:
                failed = set_forwarding(devs, False)
                _say(f"gatewayd exited: removed {n} NFQUEUE rule(s); forwarding off on "
                     f"{', '.join(d for d in devs if d not in failed) or 'no device'}")
            self.rules = []


def main() -> int:
    prio = raise_priority()
    _say(f"supervising gatewayd {os.getppid()} ({prio})")
    try:
        return Supervisor(sys.stdin.fileno()).run()
    except KeyboardInterrupt:
        return 0


# --------------------------------------------------------------- node side


class Fence:
    """gatewayd's end of the pipe. Every method is cheap (one small write);
    a supervisor that is gone is logged once and otherwise ignored: the node
    goes on, unfenced."""

    def __init__(self, proc: subprocess.Popen | None, write=None, logger=None) -> None:
        import logging
        self.proc = proc
        self._write = write or (lambda data: (proc.stdin.write(data), proc.stdin.flush()))
        self._lock = threading.Lock()
        self._broken = False
        self.log = logger or logging.getLogger("gateway.fence")

    @classmethod
    def spawn(cls) -> "Fence":
        proc = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__)],
                                stdin=subprocess.PIPE, start_new_session=True, close_fds=True)
        return cls(proc)

    def _send(self, obj: dict) -> None:
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._broken:
                return
            try:
                self._write(data)
            except (OSError, ValueError) as exc:
                self._broken = True
                self.log.error("fence: the supervisor is gone (%s); addresses are no longer "
                               "removed if this process dies", exc)

    def hold(self, addrs) -> None:
        """The addresses held from now on ((dev, cidr) pairs), sent before
        adding them and after removing them."""
        self._send({"addrs": [[dev, str(cidr)] for dev, cidr in addrs]})

    def rules(self, specs) -> None:
        self._send({"rules": [list(s) for s in specs]})

    def nft_tables(self, tables) -> None:
        """The nftables tables ("inet NAME") to delete when this process dies."""
        self._send({"nft": list(tables)})

    def tc_filters(self, specs, pins) -> None:
        """The tc filters (``tc filter del`` arguments) and pinned BPF
        objects to remove when this process dies."""
        self._send({"tc": [list(s) for s in specs], "pins": list(pins)})

    def lease(self, until: float | None) -> None:
        self._send({"lease": until})

    def close(self, timeout: float = 5.0) -> None:
        """Graceful end: the supervisor removes what is still reported held, then exits."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.log.warning("fence: the supervisor did not exit within %.0f s", timeout)


if __name__ == "__main__":
    sys.exit(main())
