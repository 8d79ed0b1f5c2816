"""A pair of HA nodes for the replication tests, wired as actors/node.py wires one:
per node a Journal in a temporary directory, a gateway.ha.RoleState, a
Replicator whose on_trigger runs ha.step under a lock and calls set_role on
promote/demote (and truncates on "diverged"), and an on_records that folds the
SIP ALG's events with gateway.sip.state_fold.apply into a mirrored state.

The tests of this file check the harness itself: teardown leaves no thread and
no ZeroMQ context behind."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from actors.journal_writer import JournalWriter
from actors.replication import CurveKeys, Replicator
from gateway import ha
from gateway.sip import events as sip_ev
from gateway.sip import state as sip_state
from gateway.sip import state_fold as sip_fold
from journal.replay import replay
from journal.store import Journal


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_keys(tmp: Path, *names: str) -> dict[str, tuple[bytes, bytes]]:
    """(public, secret) z85 pairs made with zmq.auth.create_certificates."""
    out = {}
    for name in names:
        _pub_file, sec_file = zmq.auth.create_certificates(str(tmp), name)
        out[name] = zmq.auth.load_certificate(sec_file)
    return out


def call_events(i: int, activity: int = 1) -> list:
    """The events of one SIP call: started, then some signalling activity."""
    key = f"call-{i}@10.0.0.1;tag-{i}"
    evs = [sip_ev.CallStarted(key=key, call_id=f"call-{i}@10.0.0.1", public_call_id=f"call-{i}@198.51.100.1",
                              from_tag=f"tag-{i}", mode="outbound", private_ip="10.0.0.1",
                              alg_ip="198.51.100.1", ingress="trust", egress="untrust",
                              at=1000.0 + i, max_deadline=1000.0 + i + 43200)]
    for k in range(activity):
        evs.append(sip_ev.CallActivity(key=key, at=1000.0 + i + k, signalling_deadline=1000.0 + i + k + 180,
                                       session_expires=None if k % 2 else 1800))
    return evs


def wait_for(cond, timeout: float = 3.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


class HarnessNode:
    """One node: journal, role state, replicator, mirrored SIP state, writer."""

    def __init__(self, name: str, journal_dir: Path, *, bind: str, peer: str, keys: CurveKeys | None,
                 role: str = "standby", epoch: int = 0, priority: int = 100, hb_interval: float = 0.05,
                 hb_threshold: int = 3, mode: str = "sync", fsync: bool = True, ack_timeout: float = 0.5,
                 window: int = 20000, batch: int = 500) -> None:
        self.name = name
        self.journal_dir = journal_dir
        self.journal = Journal.open(journal_dir, fsync=fsync)
        self.lock = threading.RLock()
        self.role = ha.RoleState(name, role=role, epoch=max(epoch, self.journal.epoch), priority=priority,
                                 forwarding=role == "active")
        self.actions: list[ha.Action] = []
        self.diverged: list[tuple[int, int]] = []     # (cut after, records dropped)
        self.state = sip_state.EMPTY
        self.applied = 0
        self._recover()
        self.repl = Replicator(node_id=name, bind=bind, peer=peer, journal=self.journal,
                               on_records=self.on_records, on_trigger=self.on_trigger, keys=keys,
                               hb_interval=hb_interval, hb_threshold=hb_threshold, priority=priority,
                               mode=mode, window=window, batch=batch)
        self.repl.set_role(self.role.role, self.role.epoch)
        self.writer = JournalWriter(self.journal, epoch=lambda: self.role.epoch, replicator=self.repl,
                                    mode=mode, ack_timeout=ack_timeout, on_appended=self._fold_live)
        self.received: list[int] = []     # sequence numbers that came through on_records
        self.fold_delay = 0.0               # a standby slow to fold what it stored
        self.store_delay = 0.0              # a standby slow to store (sync-mode tests)
        store = self.journal.append_frames

        def slow_append_frames(frames):
            if self.store_delay:
                time.sleep(self.store_delay)
            return store(frames)

        self.journal.append_frames = slow_append_frames
        self._writer_on = self._repl_on = self._closed = False

    # -- node.py's recovery, fold, on_trigger/_act and _diverged, in small
    def _recover(self) -> None:
        self.state = sip_state.EMPTY
        for rec in self.journal.read(1):
            for ev in rec.events():
                self.state = sip_fold.apply(self.state, ev)
        self.applied = self.journal.head

    def _fold_live(self, records) -> None:
        # The active's live state: what its ALG step folded (same apply).
        with self.lock:
            for r in records:
                for ev in r.events():
                    self.state = sip_fold.apply(self.state, ev)
            self.applied = records[-1].seq

    def on_records(self, records) -> None:
        if self.fold_delay:
            time.sleep(self.fold_delay)
        self.received += [r.seq for r in records]
        with self.lock:
            for r in records:
                for ev in r.events():
                    self.state = sip_fold.apply(self.state, ev)
            self.applied = records[-1].seq

    def on_trigger(self, trigger: str, *args) -> None:
        if trigger == "diverged":
            # As node.py: not under the role lock (the replication thread takes
            # it for every heartbeat heard while the rebuild runs).
            cut = self.journal.truncate_after(args[0])
            self.diverged.append((args[0], cut))
            self._recover()
            return
        with self.lock:
            before = self.role
            self.role, acts = ha.step(self.role, trigger, *args)
            for a in acts:
                self.actions.append(a)
                if a.kind == "promote":
                    self.repl.set_role("active", self.role.epoch)
                elif a.kind == "demote":
                    self.repl.set_role("standby", self.role.epoch)
                elif a.kind == "handover":
                    threading.Thread(target=self._handover, daemon=True, name="handover").start()
            del before

    def _handover(self) -> None:
        self.writer.flush()
        self.repl.handover()

    # -- lifecycle
    def start(self, *, writer: bool = True, repl: bool = True) -> "HarnessNode":
        if writer and not self._writer_on:
            self.writer.start()
            self._writer_on = True
        if repl and not self._repl_on:
            self.repl.start()
            self._repl_on = True
        return self

    def stop_replicator(self) -> None:
        self.repl.stop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer_on:
            self.writer.stop()
        self.repl.stop()
        self.journal.close()

    # -- helpers
    def submit_sync(self, events, timeout: float = 3.0):
        """Journal ``events``, each as a step of its own: one record per
        event, which is how these tests count positions (a step of several
        events of one call is one record: tests/test_step_records.py)."""
        events = list(events)
        done = threading.Event()
        out = []
        for i, ev in enumerate(events):
            last = i == len(events) - 1
            self.writer.submit([ev], lambda recs, last=last: (out.append(recs), last and done.set()))
        if not events:
            self.writer.submit([], lambda recs: (out.append(recs), done.set()))
        assert done.wait(timeout), "submit did not complete"
        return None if any(r is None for r in out) else [r for recs in out for r in recs]

    def replayed(self):
        return replay(self.journal, sip_fold.apply, sip_state.EMPTY)

    def frames(self) -> list[bytes]:
        return self.journal.read_frames(1, self.journal.head) if self.journal.head else []


class Pair:
    """Two nodes a and b with CURVE keys, on two free loopback ports; ``intruder``
    is a third key pair neither node authorises."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        keydir = tmp / "keys"
        keydir.mkdir()
        self.keyfiles = keydir
        self.pairs = make_keys(keydir, "a", "b", "intruder")
        self.ports = {"a": free_port(), "b": free_port()}
        self.nodes: list[HarnessNode] = []

    def endpoint(self, name: str) -> str:
        return f"tcp://127.0.0.1:{self.ports[name]}"

    def keys(self, name: str) -> CurveKeys:
        other = "b" if name == "a" else "a"
        pub, sec = self.pairs[name]
        return CurveKeys(pub, sec, self.pairs[other][0], frozenset({self.pairs[other][0]}))

    def node(self, name: str, **kw) -> HarnessNode:
        other = "b" if name == "a" else "a"
        n = HarnessNode(name, self.tmp / f"journal-{name}", bind=self.endpoint(name), peer=self.endpoint(other),
                        keys=self.keys(name), **kw)
        self.nodes.append(n)
        return n

    def close(self) -> None:
        for n in self.nodes:
            n.close()
        self.nodes.clear()


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path)
    yield p
    p.close()


def _our_threads() -> set[str]:
    return {t.name for t in threading.enumerate()
            if t.name.startswith(("replication-", "journal-", "handover")) or "Authenticator" in type(t).__name__}


def test_teardown_leaves_no_thread_and_no_context(tmp_path):
    before = _our_threads()
    p = Pair(tmp_path)
    a = p.node("a", role="active", epoch=1).start()
    b = p.node("b").start()
    a.submit_sync(call_events(1))
    assert wait_for(lambda: b.journal.head == a.journal.head)
    contexts = [a.repl._ctx, b.repl._ctx]
    assert _our_threads() - before           # the harness did start threads
    p.close()
    assert wait_for(lambda: not (_our_threads() - before), timeout=2)
    assert all(c.closed for c in contexts)
