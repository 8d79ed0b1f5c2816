"""New SIP dialogs limited per source in the kernel, ahead of the queue.

Why: overload control (gateway/overload.py) sheds new dialogs before the
ALG's parse, but each shed request still crosses the NFQUEUE into Python
(a read, a verdict, a byte scan). A single host flooding INVITEs at several
times the node's capacity then costs the node most of a core in shedding
alone, and on a box whose cores are shared with other work that was the
core the node needed: its threads stood still for seconds, legitimate calls
failed and the pair changed roles. The manual's screens act before the
expensive path (source-IP based session limit, UDP flood protection); this
is the same for the requests that start new work: nftables keeps a dynamic
set keyed by source address with a token bucket per element, and drops a
source's new-dialog requests beyond ``set flow overload source-rate`` per
second (burst: half a second's worth) before they are queued. What passes is
then shared fairly by the userspace budget as before.

What is matched: UDP to port 5060 whose payload starts with one of the
request lines of gateway.overload (``INVITE ``, ``REGISTER ``,
``SUBSCRIBE ``, ``OPTIONS ``), one set and bucket per method. An in-dialog
re-INVITE also counts (the kernel cannot see the To tag); SIP over TCP,
MGCP and H.323 are shed in userspace only.

The drops are counted by the rules' counters; a thread reads them every ten
seconds (each read is an nft process: few forks) and logs the new ones under
one drop code ("overload-source-rate") with the table to look at, never per
packet."""

from __future__ import annotations

import logging
import re
import subprocess
import threading

log = logging.getLogger("voip_alg.ingest")

TABLE_PREFIX = "voipgw_screen_q"
SIP_PORT = 5060
# The request lines gateway.overload counts as new work over UDP.
METHODS = ("INVITE", "REGISTER", "SUBSCRIBE", "OPTIONS")
# How long a quiet source keeps its bucket (seconds).
SOURCE_TIMEOUT = 10
MAX_SOURCES = 65536
DROP_CODE = "overload-source-rate"


def table_name(queue_num: int) -> str:
    return f"{TABLE_PREFIX}{queue_num}"


def _prefix_match(method: str) -> str:
    """``@ih,0,BITS 0xHEX``: the payload's first octets are METHOD and a space."""
    raw = (method + " ").encode()
    return f"@ih,0,{len(raw) * 8} 0x{raw.hex()}"


def nft_script(table: str, ifaces: list[str], rate: int) -> str:
    """The table, created afresh (deleted first if an earlier run left it)."""
    if rate <= 0 or not ifaces:
        raise ValueError("a source-rate screen needs a rate and at least one interface")
    burst = max(1, rate // 2)
    names = ", ".join(f'"{i}"' for i in ifaces)
    lines = [f"table inet {table} {{}}", f"delete table inet {table}", f"table inet {table} {{"]
    for m in METHODS:
        lines.append(f"  set {m.lower()} {{ type ipv4_addr; size {MAX_SOURCES}; "
                     f"flags dynamic,timeout; timeout {SOURCE_TIMEOUT}s; }}")
    # Before the raw table's NFQUEUE rules (priority raw = -300).
    lines.append("  chain pre {")
    lines.append("    type filter hook prerouting priority raw - 10; policy accept;")
    for m in METHODS:
        lines.append(f"    iifname {{ {names} }} udp dport {SIP_PORT} {_prefix_match(m)} "
                     f"update @{m.lower()} {{ ip saddr limit rate over {rate}/second "
                     f"burst {burst} packets }} counter drop")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


_COUNTER = re.compile(r"counter packets (\d+)")


def dropped_in(listing: str) -> int:
    """The drops counted in ``nft list table`` output."""
    return sum(int(n) for n in _COUNTER.findall(listing))


class SourceRateScreen:
    """The table of one node (its NFQUEUE number names it)."""

    def __init__(self, queue_num: int, ifaces: list[str], rate: int, run=subprocess.run,
                 interval: float = 10.0) -> None:
        self.table = table_name(queue_num)
        self.ifaces = list(ifaces)
        self.rate = rate
        self.run = run
        self.interval = interval
        self.installed = False
        self.dropped = 0                  # as last read from the kernel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def install(self) -> None:
        r = self.run(["nft", "-f", "-"], input=nft_script(self.table, self.ifaces, self.rate),
                     capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise OSError(f"nft: cannot install the source-rate screen {self.table}: "
                          f"{r.stderr.strip()}")
        self.installed = True

    def remove(self) -> None:
        self.stop_watching()
        if self.installed:
            self.run(["nft", "delete", "table", "inet", self.table], capture_output=True,
                     text=True, timeout=10)
            self.installed = False

    def read(self) -> int | None:
        """Drops so far (None: the table could not be read)."""
        r = self.run(["nft", "list", "table", "inet", self.table], capture_output=True,
                     text=True, timeout=10)
        if r.returncode != 0:
            return None
        return dropped_in(r.stdout)

    def watch(self, on_drops) -> None:
        """Every ``interval`` seconds, ``on_drops(new drops)`` when there are any."""
        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    n = self.read()
                except (OSError, subprocess.SubprocessError):
                    continue
                if n is not None and n > self.dropped:
                    new, self.dropped = n - self.dropped, n
                    on_drops(new)
        self._thread = threading.Thread(target=loop, name="kernel-screen", daemon=True)
        self._thread.start()

    def stop_watching(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
