"""HA replication over loopback, each figure beside a baseline measured in the same run.

    .venv/bin/python bench/bench_replication.py [--events N] [--submits N] [--no-curve]

Throughput: SIP ALG events (CallStarted/CallActivity) submitted through the
active's JournalWriter in async mode, batches of ``--per-submit`` events,
timed until the standby has acknowledged the last one; baseline: the same
submits through a JournalWriter with no replicator (journal append alone).
Target: >= 100,000 replicated events/s.

Sync latency: one submit of one event at a time, waiting for its completion;
with a connected standby (completion after its ACK) against the same without a
standby (completion after the local fsync). Target: added p99 <= 1 ms.

Both journals fsync (the default). The standby's on_records only counts
records here: folding the ALG state is measured by bench_sip_alg.py.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq.auth

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.journal_writer import JournalWriter  # noqa: E402
from actors.replication import CurveKeys, Replicator  # noqa: E402
from gateway import ha  # noqa: E402
from gateway.sip import events as sip_ev  # noqa: E402
from journal.store import Journal  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events(n: int, start: int = 0) -> list:
    out = []
    for i in range(start, start + n):
        key = f"call-{i // 4}@10.0.0.1;tag"
        if i % 4 == 0:
            out.append(sip_ev.CallStarted(key=key, call_id=f"call-{i // 4}@10.0.0.1",
                                          public_call_id=f"call-{i // 4}@198.51.100.1", from_tag="tag",
                                          mode="outbound", private_ip="10.0.0.1", alg_ip="198.51.100.1",
                                          ingress="trust", egress="untrust", at=1000.0 + i,
                                          max_deadline=44200.0 + i))
        else:
            out.append(sip_ev.CallActivity(key=key, at=1000.0 + i, signalling_deadline=1180.0 + i,
                                           session_expires=1800))
    return out


class Node:
    """A node wired like actors/node.py: role state, on_trigger, replicator, writer."""

    def __init__(self, name, path, bind, peer, keys, *, role, epoch, mode):
        self.journal = Journal.open(path)
        self.lock = threading.RLock()
        self.role = ha.RoleState(name, role=role, epoch=epoch, forwarding=role == "active")
        self.records = 0
        self.repl = Replicator(node_id=name, bind=bind, peer=peer, journal=self.journal,
                               on_records=self.on_records, on_trigger=self.on_trigger, keys=keys,
                               hb_interval=0.2, hb_threshold=10, mode=mode)
        self.writer = JournalWriter(self.journal, epoch=lambda: self.role.epoch, replicator=self.repl, mode=mode)

    def on_records(self, records):
        self.records += len(records)

    def on_trigger(self, trigger, *args):
        with self.lock:
            if trigger == "diverged":
                self.journal.truncate_after(args[0])
                return
            self.role, acts = ha.step(self.role, trigger, *args)
            for a in acts:
                if a.kind == "promote":
                    self.repl.set_role("active", self.role.epoch)
                elif a.kind == "demote":
                    self.repl.set_role("standby", self.role.epoch)

    def start(self):
        self.writer.start()
        self.repl.start()
        # The role, and with it the active's lease, from the transport's start:
        # given at construction it ran out while the standby's process started.
        self.repl.set_role(self.role.role, self.role.epoch)

    def close(self):
        self.writer.stop()
        self.repl.stop()
        self.journal.close()


def _keys(keydir: Path, own: str, other: str, curve: bool):
    if not curve:
        return None
    pub, sec = zmq.auth.load_certificate(str(keydir / f"{own}.key_secret"))
    peer, _ = zmq.auth.load_certificate(str(keydir / f"{other}.key_secret"))
    return CurveKeys(pub, sec, peer, frozenset({peer}))


def standby_process(path, bind, peer, keydir, curve, mode, conn) -> None:
    """The standby, in its own process (its own interpreter and GIL, as on its own box)."""
    b = Node("b", Path(path), bind, peer, _keys(Path(keydir), "b", "a", curve),
             role="standby", epoch=0, mode=mode)
    b.start()
    conn.send("up")
    started = time.process_time()                    # imports and start-up are not replication
    conn.recv()                                      # stop
    records, head = b.records, b.journal.head
    cpu = time.process_time() - started
    b.close()
    conn.send((records, head, cpu))


class Pair:
    """The active in this process, the standby in a child process."""

    def __init__(self, tmp: Path, mode: str, curve: bool) -> None:
        keydir = tmp / "keys"
        if not keydir.exists():
            keydir.mkdir()
            for n in ("a", "b"):
                zmq.auth.create_certificates(str(keydir), n)
        ports = {"a": free_port(), "b": free_port()}
        ea, eb = f"tcp://127.0.0.1:{ports['a']}", f"tcp://127.0.0.1:{ports['b']}"
        sub = Path(tempfile.mkdtemp(dir=tmp))
        self.a = Node("a", sub / "a", ea, eb, _keys(keydir, "a", "b", curve), role="active", epoch=1, mode=mode)
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=standby_process, args=(str(sub / "b"), eb, ea, str(keydir), curve, mode, child),
                                daemon=True)
        self.proc.start()
        assert self.conn.recv() == "up"
        self.a.start()
        deadline = time.monotonic() + 10
        while not self.a.repl.has_standby():
            if time.monotonic() > deadline:
                raise SystemExit("the standby did not connect")
            time.sleep(0.005)

    def stop_standby(self) -> tuple[int, int, float]:
        self.conn.send("stop")
        out = self.conn.recv()
        self.proc.join(10)
        return out


def throughput(writer, evs, per_submit, until) -> float:
    done = threading.Event()
    t0 = time.perf_counter()
    for i in range(0, len(evs), per_submit):
        writer.submit(evs[i:i + per_submit])
    writer.submit([], lambda _r: done.set())
    done.wait(120)
    until()
    return len(evs) / (time.perf_counter() - t0)


def latencies(writer, n: int) -> list[float]:
    out = []
    ev = events(n, start=10_000_000)
    done = threading.Event()
    cb = lambda _r: done.set()  # noqa: E731
    for e in ev:
        done.clear()
        t = time.perf_counter()
        writer.submit([e], cb)
        done.wait(5)
        out.append(time.perf_counter() - t)
    out.sort()
    return out


def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-submit", type=int, default=10)
    ap.add_argument("--submits", type=int, default=2000, help="sync-latency samples")
    ap.add_argument("--no-curve", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-repl-"))
    curve = not args.no_curve
    try:
        evs = events(args.events)

        # Baseline: the journal writer alone (group commit, fsync), no replicator.
        j = Journal.open(tmp / "alone")
        w = JournalWriter(j, epoch=lambda: 1, mode="async")
        w.start()
        cpu0 = time.process_time()
        base = throughput(w, evs, args.per_submit, lambda: None)
        cpu_base = time.process_time() - cpu0
        w.stop()
        j.close()

        # Replicated, async completions, timed until the standby acknowledged the last.
        p = Pair(tmp, "async", curve)
        a = p.a
        head = args.events

        def acked():
            # A step's events on one entity are one record: the journal's
            # head counts records, fewer than the events submitted.
            while (a.repl.sender.min_acked() or 0) < a.journal.head:
                time.sleep(0.0005)

        cpu0 = time.process_time()
        repl = throughput(a.writer, evs, args.per_submit, acked)
        cpu_active = time.process_time() - cpu0
        batches_a = a.writer.batches
        records, b_head, cpu_standby = p.stop_standby()
        assert b_head == a.journal.head and records <= b_head, (records, b_head, a.journal.head)
        a.close()

        # Sync latency: with a standby, then the same node with none.
        p = Pair(tmp, "sync", curve)
        a = p.a
        latencies(a.writer, 200)                       # warm up
        with_sb = latencies(a.writer, args.submits)
        assert a.writer.ack_lapses == 0, a.writer.ack_lapses
        p.stop_standby()
        deadline = time.monotonic() + 5
        while a.repl.has_standby() and time.monotonic() < deadline:
            time.sleep(0.01)
        without = latencies(a.writer, args.submits)
        a.close()

        print(f"replication over loopback ({'CURVE' if curve else 'plain TCP'}), fsync on both nodes, "
              f"{args.events} SIP events, {args.per_submit} per submit")
        print(f"  journal writer alone      {base:>10,.0f} events/s   ({batches_a} batches on the active)")
        print(f"  replicated, acked         {repl:>10,.0f} events/s   ratio {repl / base:.2f} of the journal alone"
              f"   target >= 100,000: {'ok' if repl >= 100_000 else 'MISSED'}")
        print(f"  CPU per event: journal alone {cpu_base / head * 1e6:.1f} us; replicated: active "
              f"{cpu_active / head * 1e6:.1f} us, standby process {cpu_standby / head * 1e6:.1f} us "
              f"(each node on its own core: ~{1e6 / max(cpu_active, cpu_standby) * head / 1e6:,.0f} events/s)")
        print(f"sync mode, one event per submit, {args.submits} submits")
        print(f"  no standby (fsync only)   p50 {pct(without, .5):7.0f} us   p99 {pct(without, .99):7.0f} us")
        print(f"  standby acknowledged      p50 {pct(with_sb, .5):7.0f} us   p99 {pct(with_sb, .99):7.0f} us")
        added50 = pct(with_sb, .5) - pct(without, .5)
        added99 = pct(with_sb, .99) - pct(without, .99)
        print(f"  added by replication      p50 {added50:7.0f} us   p99 {added99:7.0f} us   "
              f"ratio p50 {pct(with_sb, .5) / pct(without, .5):.2f}x   "
              f"target added p99 <= 1000 us: "
              f"{'n/a, the baseline tail was noisier' if added99 < 0 else 'ok' if added99 <= 1000 else 'MISSED'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
