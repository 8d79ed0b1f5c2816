"""New work limited per source in the kernel, ahead of the queue.

Why: overload control (gateway/overload.py) sheds new dialogs before the
ALG's parse, but each shed request still crosses the NFQUEUE into Python
(a read, a verdict, a byte scan). A single host flooding INVITEs at several
times the node's capacity then costs the node most of a core in shedding
alone, and on a box whose cores are shared with other work that was the
core the node needed: its threads stood still for seconds, legitimate calls
failed and the pair changed roles. The manual's screens act before the
expensive path (source-IP based session limit, UDP flood protection); this
is the same for the packets that start new work: nftables keeps a dynamic
set keyed by source address with a token bucket per element, and drops a
source's new-work packets beyond ``set flow overload source-rate`` per
second (burst: half a second's worth) before they are queued. What passes is
then shared fairly by the userspace budget as before.

What is matched, one set and bucket per kind (``SCREENS``), on the ports the
datapath hands to each ALG (gateway/datapath/pipeline.py):

* SIP over UDP to 5060 whose payload starts with one of the request lines
  of gateway.overload (``INVITE ``, ``REGISTER ``, ``SUBSCRIBE ``,
  ``OPTIONS ``). An in-dialog re-INVITE also counts (the kernel cannot see
  the To tag).
* SIP over TCP and H.323 call signalling (TCP 1720): new connections, a
  SYN without ACK. The requests inside a connection are a byte stream the
  kernel cannot frame; they are shed in userspace (SIP) or not at all
  (an H.225.0 Setup: dropping a segment would break the stream). A flood
  of connections is what the kernel can cut: each one costs the node a
  stream and its reassembly state.
* MGCP CRCX over UDP to 2427/2727 (RFC 3435 2.3.5: a new connection; the
  verb is matched without regard to case, 3.2.1, by masking the ASCII case
  bit of its four letters).
* H.225.0 RAS AdmissionRequest over UDP to 1718/1719: the first six bits
  of the aligned-PER RasMessage, the extension bit clear and the CHOICE
  index 9 (gateway.overload's test, in the kernel).

The drops are counted by the rules' counters; a thread reads them every ten
seconds (each read is an nft process: few forks) and logs the new ones under
one drop code ("overload-source-rate") with the table to look at, never per
packet."""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from typing import NamedTuple

from actors.thread_names import name_native_thread
from gateway.datapath.pipeline import H323_RAS_PORTS, H323_TCP_PORT, MGCP_PORTS, SIP_PORT
from gateway.overload import RAS_ARQ_INDEX

log = logging.getLogger("voip_alg.ingest")

TABLE_PREFIX = "voipgw_screen_q"
# The request lines gateway.overload counts as new work over UDP.
METHODS = ("INVITE", "REGISTER", "SUBSCRIBE", "OPTIONS")
# How long a quiet source keeps its bucket (seconds).
SOURCE_TIMEOUT = 10
MAX_SOURCES = 65536
DROP_CODE = "overload-source-rate"
# A new TCP connection: SYN set, ACK (and RST, FIN) clear.
_TCP_SYN = "tcp flags & (fin|syn|rst|ack) == syn"
# ASCII letters' case bit (0x20) masked off: "crcx", "CrCx" match as "CRCX".
_MGCP_CRCX = f"@ih,0,32 & 0xdfdfdfdf == 0x{b'CRCX'.hex()}"
# RasMessage's first octet: extension bit 0, then the 5-bit CHOICE index.
_RAS_ARQ = f"@ih,0,6 {RAS_ARQ_INDEX}"


def _ports(ports) -> str:
    ports = sorted(set(ports))
    return str(ports[0]) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }"


def _prefix_match(method: str) -> str:
    """``@ih,0,BITS 0xHEX``: the payload's first octets are METHOD and a space."""
    raw = (method + " ").encode()
    return f"@ih,0,{len(raw) * 8} 0x{raw.hex()}"


class Screen(NamedTuple):
    """One kind of new work: its set's name, where its packets go (protocol
    and destination ports) and what their first octets look like."""
    name: str
    proto: str
    ports: tuple[int, ...]
    payload: str

    @property
    def match(self) -> str:
        return f"{self.proto} dport {_ports(self.ports)} {self.payload}"


# In the order of the rules.
SCREENS: tuple[Screen, ...] = (
    *(Screen(m.lower(), "udp", (SIP_PORT,), _prefix_match(m)) for m in METHODS),
    Screen("sip_tcp", "tcp", (SIP_PORT,), _TCP_SYN),
    Screen("mgcp_crcx", "udp", tuple(MGCP_PORTS), _MGCP_CRCX),
    Screen("h323_tcp", "tcp", (H323_TCP_PORT,), _TCP_SYN),
    Screen("ras_arq", "udp", tuple(H323_RAS_PORTS), _RAS_ARQ),
)


# (protocol, port) of every screen's packets: what the entry rule sends on.
_SCREENED_PORTS = ", ".join(
    f"{proto} . {port}"
    for proto, port in sorted({(sc.proto, p) for sc in SCREENS for p in sc.ports}))


def table_name(queue_num: int) -> str:
    return f"{TABLE_PREFIX}{queue_num}"


def nft_script(table: str, ifaces: list[str], rate: int) -> str:
    """The table, created afresh (deleted first if an earlier run left it)."""
    if rate <= 0 or not ifaces:
        raise ValueError("a source-rate screen needs a rate and at least one interface")
    burst = max(1, rate // 2)
    names = ", ".join(f'"{i}"' for i in ifaces)
    lines = [f"table inet {table} {{}}", f"delete table inet {table}", f"table inet {table} {{"]
    for sc in SCREENS:
        lines.append(f"  set {sc.name} {{ type ipv4_addr; size {MAX_SOURCES}; "
                     f"flags dynamic,timeout; timeout {SOURCE_TIMEOUT}s; }}")
    lines.append("  chain screen {")
    for sc in SCREENS:
        lines.append(f"    {sc.match} update @{sc.name} {{ ip saddr limit rate over {rate}/second "
                     f"burst {burst} packets }} counter drop")
    lines.append("  }")
    # Before the raw table's NFQUEUE rules (priority raw = -300). Every
    # packet through the node meets this chain, media above all: one set
    # lookup on (protocol, port) sends only the ALGs' ports on to the
    # screens. Eight rules each testing the interface name cost an RTP
    # packet eight string-set lookups, a fifth of the kernel's forwarding
    # rate with the media offload (BENCHMARKS.md, "Media offload").
    lines.append("  chain pre {")
    lines.append("    type filter hook prerouting priority raw - 10; policy accept;")
    lines.append(f"    meta l4proto . th dport {{ {_SCREENED_PORTS} }} iifname {{ {names} }} jump screen")
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
            name_native_thread()
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
