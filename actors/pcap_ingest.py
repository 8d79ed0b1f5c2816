"""pcap mode: the gateway's core run over a capture, with the capture's clock.

Each packet goes through the same datapath and the same node (dialog and
entity actors, journal, timers) as live traffic. Time is the capture's: before
each packet the clock moves to its timestamp, due timers fire (BYE + 5 s,
pinhole lifetimes, inactivity) and the node is let settle, so a capture replays
as it would have happened. What the gateway would emit is written to the
output capture (raw IPv4, the input's timestamps); the summary counts verdicts
and drop reasons.

The ingress interface of a packet is inferred from the configuration: the
interface whose subnets or routes reach its source address (``--ingress
SUBNET=IFACE`` overrides that)."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
from collections import Counter
from ipaddress import IPv4Address, IPv4Network

from actors.capture_file import CaptureError, CaptureReader
from actors.link_layer import SUPPORTED, ipv4, supported_list
from actors.node import Node
from gateway.datapath import Alg, Datapath, Drop, Forward
from gateway.policy import Engine

log = logging.getLogger("gateway.pcap")

DLT_RAW = 101


class Clock:
    """The capture's clock: moved forward by the driver, read by the node."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _overrides(items) -> list[tuple[IPv4Network, str]]:
    out = []
    for item in items or ():
        subnet, sep, iface = str(item).partition("=")
        if not sep or not iface:
            raise ValueError(f"--ingress {item!r}: expected SUBNET=IFACE, e.g. 10.1.1.0/24=ethernet1")
        try:
            out.append((IPv4Network(subnet, strict=False), iface))
        except ValueError:
            raise ValueError(f"--ingress {item!r}: {subnet!r} is not an IPv4 subnet") from None
    return out


EMPTY_RECORD = "empty capture record (no bytes captured)"


def run_capture(config, pcap_in: str, pcap_out: str, *, journal: str | None = None,
                ingress_overrides=(), settle_timeout: float = 10.0) -> dict:
    overrides = _overrides(ingress_overrides)
    if config.interfaces and not any(True for _ in config.interfaces):
        raise ValueError("the configuration has no interfaces")
    # Open the capture before anything starts: a file that is not one is an
    # error naming the file, what it holds and what to do (CaptureError).
    reader = CaptureReader(pcap_in)
    engine = Engine(config)
    datapath = Datapath(config, engine)
    # A capture taken on a sending host holds transmit-offload checksums.
    datapath.offloaded_checksums_ok = True
    clock = Clock()
    tmp = None
    if journal is None:
        tmp = tempfile.mkdtemp(prefix="gatewayd-pcap-")
        journal_dir = tmp
    else:
        journal_dir = journal
        os.makedirs(journal_dir, exist_ok=True)
    node = Node("pcap", config, journal_dir, datapath=datapath, clock=clock, fsync=journal is not None,
                timer_thread=False)
    results = Counter()
    paths = Counter()
    reasons = Counter()
    algs = Counter()
    written = 0
    first = last = None
    released: list = []       # verdicts of retained SIP segments, given with a later packet
    try:
        node.start()
        with reader, RawPcapWriter(pcap_out) as writer:
            for record in reader:
                ts = record.time
                if record.linktype not in SUPPORTED:
                    raise CaptureError(
                        f"{pcap_in}: record {record.number}: link type {record.linktype} is not "
                        f"supported (hint: pcap mode reads {supported_list()}; "
                        f"capture on an Ethernet interface or with tcpdump -i any)")
                results["packets"] += 1
                if not record.data:
                    # Nothing captured: no packet to make up (Scapy's reader
                    # turned one into a 127.0.0.1 packet). Counted, not timed.
                    results["empty_records"] += 1
                    results["dropped"] += 1
                    reasons[EMPTY_RECORD] += 1
                    continue
                if first is None:
                    first = ts
                last = ts
                raw = ipv4(record.linktype, record.data)
                if raw is None:
                    results["not_ipv4"] += 1
                    results["dropped"] += 1
                    reasons["not an IPv4 packet (pcap mode reads IPv4 only)"] += 1
                    continue
                _advance(node, datapath, clock, ts, settle_timeout)
                src = IPv4Address(raw[12:16])
                ingress = _ingress(engine, overrides, src)
                if ingress is None:
                    results["dropped"] += 1
                    reasons[f"cannot tell the ingress interface of {src} (give --ingress SUBNET=IFACE)"] += 1
                    continue
                with node.dp_lock:
                    # clock.t, not ts: a frame older than one already run
                    # (unsorted, merged captures) must not move the datapath's
                    # time back while the node's stays put.
                    out = datapath.process(raw, ingress, clock.t)
                if isinstance(out, Alg):
                    algs[out.alg] += 1
                    outs = _alg(node, out, settle_timeout, released)
                else:
                    outs = [out]
                for out in outs:
                    if isinstance(out, Forward):
                        results["forwarded"] += 1
                        paths[out.path] += 1
                        writer.write(out.data, ts)
                        written += 1
                    else:
                        results["dropped"] += 1
                        reasons[out.reason] += 1
            # Let what the capture started finish as it would have (BYE + 5 s...).
            if last is not None:
                _advance(node, datapath, clock, last + 6.0, settle_timeout)
        status = node.status()
    finally:
        reader.close()
        node.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "input": pcap_in, "output": pcap_out, "journal": journal,
        "packets": results["packets"], "forwarded": results["forwarded"],
        "dropped": results["dropped"], "not_ipv4": results["not_ipv4"],
        "empty_records": results["empty_records"], "written": written,
        "paths": dict(paths), "alg_messages": dict(algs), "drop_reasons": dict(reasons.most_common()),
        "events": status["journal"]["events"], "records": status["journal"]["records"],
        "calls_open_at_end": status["calls"],
        "duration_s": 0.0 if first is None else round(last - first, 6),
    }


def _advance(node: Node, datapath: Datapath, clock: Clock, ts: float, settle: float) -> None:
    if ts < clock.t:
        return                                  # out-of-order capture: the clock never goes back
    clock.t = ts
    node.timers.fire_due()
    with node.dp_lock:
        activity = datapath.drain_activity()
        datapath.expire(ts)
    if activity:
        node.report_media(activity)
    node.quiesce(settle)


def _ingress(engine: Engine, overrides, src: IPv4Address) -> str | None:
    for net, iface in overrides:
        if src in net:
            return iface
    r = engine.route(src)
    return r[0] if r else None


def _alg(node: Node, outcome: Alg, settle: float, released: list) -> list:
    """The verdicts given while the ALG ran ``outcome``: its own, after
    those of segments retained for the same SIP message (released with it,
    in sequence order; a retained segment itself gives none yet)."""
    import threading
    done = threading.Event()
    seg = getattr(outcome, "segment", None)
    if seg is not None and seg.part:
        node.handle_alg(outcome, released.append)
        return []

    def release(final):
        released.append(final)
        done.set()

    node.handle_alg(outcome, release)
    if not done.wait(settle):
        return [Drop("ALG did not answer in time", "alg")]
    with node.dp_lock:
        # The verdicts of a set are given under this lock, one after another.
        out = list(released)
        released.clear()
    return out


class RawPcapWriter:
    """A classic pcap file of raw IPv4 packets (link type 101, DLT_RAW)."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "wb")
        # magic, version 2.4, thiszone, sigfigs, snaplen, linktype
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, DLT_RAW))

    def write(self, data: bytes, ts: float) -> None:
        sec = int(ts)
        usec = int(round((ts - sec) * 1_000_000))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self.f.write(struct.pack("<IIII", sec, usec, len(data), len(data)))
        self.f.write(data)

    def __enter__(self) -> "RawPcapWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def format_summary(s: dict) -> str:
    lines = [f"{s['input']}: {s['packets']} packets over {s['duration_s']:.3f} s",
             f"  forwarded {s['forwarded']} (written to {s['output']}), dropped {s['dropped']}"]
    for path, n in sorted(s["paths"].items()):
        lines.append(f"  path {path}: {n}")
    for alg, n in sorted(s["alg_messages"].items()):
        lines.append(f"  {alg} messages through the ALG: {n}")
    lines.append(f"  events journaled: {s['events']}; calls still open at the end: {s['calls_open_at_end']}")
    if s["drop_reasons"]:
        lines.append("  drops by reason:")
        for reason, n in s["drop_reasons"].items():
            lines.append(f"    {n:6d}  {reason}")
    if s.get("journal"):
        lines.append(f"  journal: {s['journal']} (reconstruct with: gwctl replay {s['journal']})")
    return "\n".join(lines)
