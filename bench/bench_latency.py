"""Signalling latency through the gatewayd pair: INVITE -> 200 OK round trip,
beside plain routing and the Linux kernel's SIP helper, same topology, same run.

    sudo .venv/bin/python bench/bench_latency.py [--example NAME] [--invites 500]

The four gateways of ``bench/bench_calls.py`` (plain routing, the kernel's
nf_conntrack_sip + nf_nat_sip, the gatewayd pair with sync and with async
replication), each in a fresh namespace lab built by its ``gateway_lab`` on
the same example (by default the chapter 2 MIP example: the untrust phone
calls phone1 at its MIP).

One process runs both ends, so one monotonic clock times every round trip:

* a responder on a UDP socket made inside the callee's namespace answers each
  INVITE with a 200 OK carrying SDP, each BYE with a 200 OK, and swallows ACKs;
* a sender on a socket made inside the caller's namespace sends ``--invites``
  INVITEs with SDP (distinct Call-IDs, branches, tags and media ports), one at
  a time and no faster than ``--rate``, to the address the configuration makes
  reachable (the MIP; the callee's own address under plain routing). The time
  from the INVITE's send to its 200 OK's arrival is the sample.

Each answered INVITE is completed with an ACK and a BYE (whose 200 OK is
awaited), so every call ends: the gateway holds only the calls of the last
few seconds (the ALG keeps a call ~5 s after its BYE) and what is measured is
the latency of a gateway with a steady, small call table, not of one whose
table grows for the whole phase. An INVITE whose 200 OK has not arrived
within ``--timeout-ms`` is counted lost (no retransmission: the loss rate is
the gateway's, not hidden by SIP's timers); a late answer is ignored.

The first ``--warmup`` calls of each phase are not counted: the first INVITE
makes the flow's session (policy lookup, NAT) and resolves ARP on every hop,
which is the cost of a new flow, not of signalling on an established one.

Every phase is bounded (``--invites``, ``--seconds``), and the lab is torn
down however a phase ends.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_calls import (ASYNC, DEFAULT_EXAMPLE, STARTERS, gateway_lab,  # noqa: E402
                         pair_report)
from ops.lab import netns  # noqa: E402
from ops.lab.mgcp import ns_socket  # noqa: E402

SIP_PORT = 5060
LAB = "bl0"                  # not bench_calls' lab: both may run on one host
MEDIA_BASE = 20000
CALLEE_MEDIA = 30000
BUF = 65535


# --- SIP messages (RFC 3261 8.1.1, 8.2.6, 12.1.1; SDP RFC 4566) -------------------------

def sdp_body(origin: str, address: str, port: int, session: int) -> bytes:
    return (f"v=0\r\no=- {session} 1 IN IP4 {origin}\r\ns=-\r\nc=IN IP4 {address}\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n").encode()


def _message(start: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [start] + [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True, slots=True)
class Dialog:
    """What the caller keeps of one call: enough for its ACK and BYE."""

    n: int
    caller: str
    dial: str
    call_id: str
    from_tag: str
    to_tag: str = ""

    @property
    def uri(self) -> str:
        return f"sip:callee@{self.dial}:{SIP_PORT}"

    def _headers(self, method: str, cseq: int, branch: str) -> list[tuple[str, str]]:
        to = f"<{self.uri}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        return [("Via", f"SIP/2.0/UDP {self.caller}:{SIP_PORT};branch=z9hG4bK{branch}"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:caller@{self.caller}>;tag={self.from_tag}"),
                ("To", to), ("Call-ID", self.call_id), ("CSeq", f"{cseq} {method}"),
                ("Contact", f"<sip:caller@{self.caller}:{SIP_PORT}>")]

    def invite(self) -> bytes:
        body = sdp_body(self.caller, self.caller, MEDIA_BASE + 2 * (self.n % 10000), self.n)
        return _message(f"INVITE {self.uri} SIP/2.0",
                        self._headers("INVITE", 1, f"i{self.n}") + [("Content-Type", "application/sdp")],
                        body)

    def ack(self) -> bytes:
        # A 2xx's ACK is a new transaction (RFC 3261 13.2.2.4): a new branch.
        return _message(f"ACK {self.uri} SIP/2.0", self._headers("ACK", 1, f"a{self.n}"))

    def bye(self) -> bytes:
        return _message(f"BYE {self.uri} SIP/2.0", self._headers("BYE", 2, f"b{self.n}"))


def parse(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """(start line, headers) of a datagram; the body is not needed here."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers


def header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k == name), "")


def tag_of(value: str) -> str:
    for param in value.split(";")[1:]:
        k, _, v = param.strip().partition("=")
        if k.lower() == "tag":
            return v
    return ""


def answer(request: bytes, callee: str, to_tag: str) -> bytes | None:
    """The responder's reply to one request: 200 OK with SDP to an INVITE,
    200 OK to a BYE, nothing to an ACK (RFC 3261 8.2.6: Via, From, Call-ID
    and CSeq copied, a To tag added)."""
    start, headers = parse(request)
    method = start.split(" ", 1)[0]
    if method not in ("INVITE", "BYE"):
        return None
    copied = [("Via", v) for k, v in headers if k == "via"]
    to = header(headers, "to")
    if not tag_of(to):
        to += f";tag={to_tag}"
    copied += [("From", header(headers, "from")), ("To", to),
               ("Call-ID", header(headers, "call-id")), ("CSeq", header(headers, "cseq"))]
    if method == "BYE":
        return _message("SIP/2.0 200 OK", copied)
    cseq = header(headers, "cseq")
    session = int(cseq.split()[0]) if cseq.split() and cseq.split()[0].isdigit() else 1
    body = sdp_body(callee, callee, CALLEE_MEDIA, session)
    return _message("SIP/2.0 200 OK",
                    copied + [("Contact", f"<sip:callee@{callee}:{SIP_PORT}>"),
                              ("Content-Type", "application/sdp")], body)


# --- the two ends ------------------------------------------------------------------------

class Responder:
    """The callee: answers on its socket from a thread until stopped."""

    def __init__(self, sock: socket.socket, callee: str) -> None:
        self.sock = sock
        self.callee = callee
        self.stop = threading.Event()
        self.answered = 0
        self.thread = threading.Thread(target=self._run, name="sip-responder", daemon=True)
        sock.settimeout(0.1)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(BUF)
            except TimeoutError:
                continue
            except OSError:
                return
            n += 1
            reply = answer(data, self.callee, f"r{n}")
            if reply is not None:
                self.sock.sendto(reply, peer)
                self.answered += 1

    def __enter__(self) -> "Responder":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(2.0)


def await_reply(sock: socket.socket, call_id: str, method: str, deadline: float
                ) -> tuple[float, list[tuple[str, str]]] | None:
    """The first 200 to ``method`` of ``call_id`` before ``deadline``, with the
    monotonic time it arrived; other datagrams (late answers) are dropped."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(BUF)
        except TimeoutError:
            return None
        now = time.monotonic()
        start, headers = parse(data)
        if (start.startswith("SIP/2.0 200") and header(headers, "call-id") == call_id
                and header(headers, "cseq").split()[-1:] == [method]):
            return now, headers


@dataclass
class Phase:
    gateway: str
    invites: int = 0             # counted INVITEs sent (warm-up excluded)
    answered: int = 0
    lost: int = 0                # no 200 OK within the timeout
    bye_lost: int = 0
    seconds: float = 0.0
    rtt_us: list[float] = field(default_factory=list)
    bye_rtt_us: list[float] = field(default_factory=list)
    warmup_lost: int = 0
    stopped_early: bool = False
    pair: dict = field(default_factory=dict)

    def loss(self) -> float:
        return self.lost / self.invites if self.invites else 0.0


def place_calls(sock: socket.socket, phase: Phase, *, caller: str, dial: str, invites: int,
                warmup: int, rate: float, timeout: float, seconds: float, run_id: str) -> None:
    interval = 1.0 / rate
    t_start = time.monotonic()
    bound = t_start + seconds
    due = t_start
    for n in range(warmup + invites):
        now = time.monotonic()
        if now > bound:
            phase.stopped_early = True
            break
        if due > now:
            time.sleep(due - now)
        due = max(due + interval, time.monotonic())
        counted = n >= warmup
        d = Dialog(n, caller, dial, f"{run_id}-{n}@{caller}", f"f{n}")
        sent = time.monotonic()
        sock.sendto(d.invite(), (dial, SIP_PORT))
        got = await_reply(sock, d.call_id, "INVITE", sent + timeout)
        if counted:
            phase.invites += 1
        if got is None:
            if counted:
                phase.lost += 1
            else:
                phase.warmup_lost += 1
            continue
        arrived, headers = got
        d = Dialog(n, caller, dial, d.call_id, d.from_tag, tag_of(header(headers, "to")))
        sock.sendto(d.ack(), (dial, SIP_PORT))
        bye_sent = time.monotonic()
        sock.sendto(d.bye(), (dial, SIP_PORT))
        bye = await_reply(sock, d.call_id, "BYE", bye_sent + timeout)
        if not counted:
            continue
        phase.answered += 1
        phase.rtt_us.append((arrived - sent) * 1e6)
        if bye is None:
            phase.bye_lost += 1
        else:
            phase.bye_rtt_us.append((bye[0] - bye_sent) * 1e6)
    phase.seconds = round(time.monotonic() - t_start, 3)


def measure(example: Path, starter: str, args: argparse.Namespace, run_id: str) -> Phase:
    phase = Phase(starter)
    with gateway_lab(example, starter, lab=LAB) as (state, call, dial):
        caller, callee = str(call.caller.address.ip), str(call.callee.address.ip)
        rsock = ns_socket(call.callee.netns, (callee, SIP_PORT))
        ssock = ns_socket(call.caller.netns, (caller, SIP_PORT))
        try:
            with Responder(rsock, callee):
                place_calls(ssock, phase, caller=caller, dial=str(dial), invites=args.invites,
                            warmup=args.warmup, rate=args.rate, timeout=args.timeout_ms / 1000,
                            seconds=args.seconds, run_id=f"{run_id}-{starter}")
        finally:
            ssock.close()
            rsock.close()
        phase.pair = pair_report(state)
    return phase


# --- report --------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (the value at rank ceil(p/100 * n))."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(1, -(-int(p * len(s)) // 100))
    return s[min(k, len(s)) - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values) if values else float("nan")}


def report(phases: dict[str, Phase], args: argparse.Namespace) -> None:
    print()
    print(f"INVITE -> 200 OK round trip ({args.example}, {args.invites} INVITEs after "
          f"{args.warmup} warm-up, one at a time, <= {args.rate:g}/s; microseconds)")
    print(f"  {'gateway':>18} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  {'lost':>9}"
          f"  {'BYE p50':>8} {'BYE p99':>8}")
    for name, ph in phases.items():
        s, b = summary(ph.rtt_us), summary(ph.bye_rtt_us)
        print(f"  {name:>18} {s['p50']:8.0f} {s['p90']:8.0f} {s['p99']:8.0f} {s['max']:8.0f}  "
              f"{ph.lost:>4}/{ph.invites:<4}  {b['p50']:8.0f} {b['p99']:8.0f}"
              + ("  (stopped at the time bound)" if ph.stopped_early else ""))
    base = phases.get("plain-routing")
    if base is None or not base.rtt_us:
        return
    b = summary(base.rtt_us)
    print("added to plain routing (gateway minus plain routing; ratio gateway / plain):")
    for name, ph in phases.items():
        if name == "plain-routing" or not ph.rtt_us:
            continue
        s = summary(ph.rtt_us)
        print(f"  {name:>18}  p50 {s['p50'] - b['p50']:+6.0f} us ({s['p50'] / b['p50']:.2f}x)"
              f"   p99 {s['p99'] - b['p99']:+6.0f} us ({s['p99'] / b['p99']:.2f}x)"
              + (f"   loss {100 * ph.loss():.2f}%" if name in ("gatewayd", ASYNC) else ""))
    for name, ph in phases.items():
        if (ph.pair.get("failovers") or 1) > 1:
            print(f"  {name}: the pair changed roles during the run (epoch {ph.pair['failovers']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default=DEFAULT_EXAMPLE)
    ap.add_argument("--invites", type=int, default=500, help="counted INVITEs per gateway")
    ap.add_argument("--warmup", type=int, default=20, help="INVITEs sent first, not counted")
    ap.add_argument("--rate", type=float, default=100.0, help="at most this many INVITEs/s")
    ap.add_argument("--timeout-ms", type=float, default=1000.0,
                    help="an INVITE unanswered this long is lost")
    ap.add_argument("--seconds", type=float, default=30.0, help="bound on each phase")
    ap.add_argument("--only", choices=list(STARTERS), action="append")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.invites < 1 or args.rate <= 0 or args.warmup < 0:
        ap.error("--invites >= 1, --rate > 0, --warmup >= 0")
    why = netns.available()
    if why:
        print(f"bench_latency: {why}", file=sys.stderr)
        return 1
    example = ROOT / "examples" / f"{args.example}.cfg"
    run_id = f"lat{int(time.time())}"
    phases: dict[str, Phase] = {}
    for s in args.only or list(STARTERS):
        ph = measure(example, s, args, run_id)
        phases[s] = ph
        print(f"{s}: {ph.answered}/{ph.invites} answered in {ph.seconds:.2f}s, "
              f"{ph.bye_lost} BYE unanswered, {ph.warmup_lost} warm-up lost", flush=True)
    report(phases, args)
    if args.json:
        print(json.dumps({k: {**asdict(v), "rtt": summary(v.rtt_us), "bye_rtt": summary(v.bye_rtt_us),
                              "rtt_us": None, "bye_rtt_us": None} for k, v in phases.items()},
                         indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
