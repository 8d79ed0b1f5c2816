"""Journal replication and heartbeats between the two nodes of a pair, over ZeroMQ.

One thread owns both sockets (ZeroMQ sockets are not thread-safe):
- a ROUTER bound on this node's HA endpoint: answers heartbeats, and while this
  node is active streams the journal to a standby that said HELLO;
- a DEALER connected to the peer's ROUTER: sends heartbeats always, and while
  this node is standby says HELLO, applies BATCHes and acknowledges them.
Other threads talk to it through a queue plus an inproc wake-up socket.

CURVE (authentication and encryption) is on unless keys are None: each node
has a key pair (``gwctl keys``); the ROUTER accepts only the public keys in
``authorized`` and logs any other key it refuses.

Role decisions are not made here: triggers go to ``on_trigger`` (the node's HA
controller, which runs ``gateway.ha``), and the controller tells this thread
the role with :meth:`set_role`. The protocol itself is ``journal/replication.py``.

Liveness, both ways (ARCHITECTURE.md, "High availability"):
- a standby that hears nothing from an *active* peer for ``hb_interval *
  hb_threshold`` triggers ``heartbeat_lost`` (a standby peer's heartbeats do
  not count: two standbys must not wait for each other forever);
- an active forgets a standby it has not heard from for as long, so sync-mode
  completions stop waiting for a dead peer's acknowledgements.

The fencing lease (gateway/ha.py): every heartbeat this thread sends as
active renews it (``lease_renewed`` with the time just before the send), and
each turn of the loop first checks it (``lease_check``): an active whose lease
ran out while this thread stood still (a GC pause, a stall) demotes before it
sends anything else, never renews.
"""

from __future__ import annotations

import collections
import faulthandler
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from actors.thread_names import name_native_thread
from actors.thread_priority import ordinary_thread_priority, raise_thread_priority
from journal.replay import snapshot_dir
from journal.replication import (Ack, Batch, Handover, Heartbeat, Hello, ProtocolViolation, Receiver,
                                 Refused, Sender, SnapAck, SnapChunk, SnapshotReceive, SnapshotSend,
                                 Taken, decode, encode, frame_mark, hello_verdict)
from journal.segment import JournalCorrupt, fsync_dir
from journal.snapshot import list_snapshots

log = logging.getLogger("gateway.replication")

# The largest replication message a node accepts (ZeroMQ drops the connection
# of a peer sending more).
MAX_MESSAGE_BYTES = 64 << 20
# Active: a snapshot transfer with no acknowledgement for this long is dropped
# (the standby says HELLO again and gets a new one).
SNAPSHOT_STALL = 30.0

# Standby: at most this many frames stored in one append (one fsync) and
# acknowledged at once; at most this many records waiting for the applier
# before the transport stops reading batches (the active's window then
# holds the rest); a drain of waiting batches yields to the heartbeats after
# half a heartbeat interval.
APPEND_CHUNK = 2000
# Standby: how long after the active's HA connection closed (its process
# exited) it takes over. The dead process's supervisor, at SCHED_FIFO and
# blocked on the pipe that closed at the same moment, removes its addresses
# in a few milliseconds (actors/fence.py, measured 2 ms in the lab); this is
# the margin for that, as the lease's margin is for a stalled one.
EXIT_GRACE = 0.15
FOLD_BACKLOG = 20000


class Applier:
    """Standby side: folds stored records and runs the cut-and-rebuild of a
    divergence on a thread of its own, in order, so the transport thread
    keeps sending heartbeats and acknowledgements while the node's state
    catches up (a rebuild of a long journal took seconds on a loaded box:
    the active forgot the silent standby, it rejoined, and again)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._records = 0             # records waiting to be folded
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def submit(self, fn, *args, records: int = 0) -> None:
        with self._cv:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._jobs.append((fn, args, records))
            self._records += records
            self._cv.notify_all()

    def backlog(self) -> int:
        return self._records

    def idle(self) -> bool:
        with self._cv:
            return not self._jobs and not self._busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._stopped or (not self._jobs and not self._busy), timeout)

    def wait_below(self, records: int, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._stopped or self._records < records, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _run(self) -> None:
        name_native_thread()
        ordinary_thread_priority()       # started by the real-time transport thread
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopped or self._jobs)
                if not self._jobs:
                    return                       # stopped with nothing left
                fn, args, records = self._jobs.popleft()
                self._busy = True
            try:
                fn(*args)
            except Exception:
                log.exception("replication: applying on the standby failed (%s)",
                              getattr(fn, "__name__", fn))
            finally:
                with self._cv:
                    self._busy = False
                    self._records -= records
                    self._cv.notify_all()


@dataclass(frozen=True, slots=True)
class CurveKeys:
    public: bytes           # z85, this node
    secret: bytes           # z85, this node
    peer_public: bytes      # z85, the server key of the peer's ROUTER
    authorized: frozenset[bytes]  # z85 client keys allowed to connect to our ROUTER

    @classmethod
    def load(cls, own_key_file: str, peer_public_file: str) -> "CurveKeys":
        """Load ``NAME.key_secret`` (own pair) and the peer's ``NAME.key``."""
        import zmq.auth
        pub, sec = zmq.auth.load_certificate(own_key_file)
        peer_pub, _ = zmq.auth.load_certificate(peer_public_file)
        if sec is None:
            raise ValueError(f"{own_key_file} holds no secret key (want the .key_secret file)")
        return cls(pub, sec, peer_pub, frozenset({peer_pub}))


class _KeyCheck:
    """ZAP credentials provider: only the peer's key may replicate; log refusals."""

    def __init__(self, authorized: frozenset[bytes]) -> None:
        self.authorized = authorized

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.authorized
        if not ok:
            log.warning("replication: refused a connection with unknown CURVE key %s",
                        key.decode("ascii", "replace"))
        return ok


@dataclass(slots=True)
class ReplicationStatus:
    role: str
    epoch: int
    peer_seen_ago: float | None
    peer_role: str | None
    peer_epoch: int | None
    peer_head: int | None
    peer_applied: int | None
    acked: int | None
    mode: str


class SlowTurns:
    """Where a late heartbeat's time went. A transport turn (checks and
    heartbeat, poll, commands, reading each socket, streaming) should take
    milliseconds and the poll should return when asked; a turn longer than
    a heartbeat interval delays the heartbeat that renews the lease, so it is
    logged with its parts (at most once per ``every`` seconds, with the count
    meanwhile) for the operator and for tuning."""

    def __init__(self, hb_interval: float, every: float = 5.0) -> None:
        self.limit = hb_interval
        self.every = every
        self.count = 0            # slow turns since start
        self._unlogged = 0
        self._logged_at = float("-inf")
        # The last turns, for a late lease renewal's report (history()).
        self.recent: collections.deque = collections.deque(maxlen=12)

    def history(self, now: float) -> str:
        """The last turns as "start+checks/poll/rest" in ms, oldest first, each
        start relative to ``now``: a late renewal with short, regular turns
        is not a stall of this thread."""
        return ", ".join(f"{(top - now) * 1000:.0f}+{(asleep - top) * 1000:.0f}/"
                         f"{(woke - asleep) * 1000:.0f}/{(end - woke) * 1000:.0f}{'' if active else 's'}"
                         for top, asleep, woke, end, active in self.recent)

    def note(self, top: float, asleep: float, asked: float, woke: float, t_cmds: float,
             t_router: float, t_dealer: float, end: float, active: bool = False) -> None:
        self.recent.append((top, asleep, woke, end, active))
        overslept = woke - asleep - asked
        busy = (asleep - top) + (end - woke)
        if overslept <= self.limit and busy <= self.limit:
            return
        self.count += 1
        self._unlogged += 1
        if end - self._logged_at < self.every:
            return
        log.warning("replication: slow transport turn (%d since the last report): checks %.0f ms, "
                    "poll returned %.0f ms late, commands %.0f ms, peer requests %.0f ms, "
                    "peer stream %.0f ms, streaming %.0f ms", self._unlogged,
                    (asleep - top) * 1000, max(0.0, overslept) * 1000, (t_cmds - woke) * 1000,
                    (t_router - t_cmds) * 1000, (t_dealer - t_router) * 1000, (end - t_dealer) * 1000)
        self._unlogged = 0
        self._logged_at = end


class Replicator:
    """The HA transport of one node. Start with :meth:`start`, stop with :meth:`stop`.

    journal:      the node's ``journal.store.Journal`` (head, read_frames, append_frames)
    on_records:   standby side: called (on this thread) with the records just appended,
                  to fold them into the mirrored state
    on_trigger:   called with (trigger, *args) for ``gateway.ha.step``, and with
                  ("diverged", seq): cut the journal after seq (``truncate_after``)
                  and rebuild the state from it
    """

    def __init__(self, *, node_id: str, bind: str, peer: str, journal,
                 on_records: Callable[[list], None],
                 on_trigger: Callable[..., None],
                 keys: CurveKeys | None,
                 hb_interval: float = 0.2, hb_threshold: int = 3,
                 priority: int = 100, mode: str = "sync",
                 window: int = 20000, batch: int = 500,
                 handover_timeout: float = 2.0,
                 exit_grace: float = EXIT_GRACE,
                 stall_dump: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node_id = node_id
        self.bind, self.peer = bind, peer
        self.journal = journal
        self.on_records, self.on_trigger = on_records, on_trigger
        self.keys = keys
        self.hb_interval, self.hb_threshold = hb_interval, hb_threshold
        self.priority, self.mode = priority, mode
        self.handover_timeout = handover_timeout
        self.clock = clock
        self.sender = Sender(journal.read_frames, window=window, batch=batch)
        self.receiver = Receiver(resync_after=hb_interval)
        self.role = "standby"
        self.epoch = 0
        self.refused_hellos = 0
        self._cmds: queue.SimpleQueue = queue.SimpleQueue()
        self._ctx = zmq.Context()
        self._wake_addr = f"inproc://repl-wake-{id(self)}"
        self._wake_tx = None
        self._wake_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._auth: ThreadAuthenticator | None = None
        # Sync-mode waiters: producers wait until the standby acknowledged a seq.
        self._acked = 0
        self._acked_cv = threading.Condition()
        # Called on the replication thread when the acknowledged sequence may
        # have advanced (JournalWriter.drive_completions: wakes its driver).
        self.on_acked: Callable[[], None] | None = None
        self._peer_last: float | None = None
        self._active_seen = 0.0
        self._turns = SlowTurns(hb_interval)
        # When this thread's previous turn began: a longer gap than its
        # wake-up period means it stood still (GIL held, collection, SIGSTOP).
        self._last_turn = 0.0
        self._stood_still = False
        # Where a stall's time went: armed twice per heartbeat interval,
        # libfaulthandler's own C thread (which needs no interpreter lock)
        # writes every thread's Python stack to stderr when no turn came for
        # this long (None: off).
        self.stall_dump = stall_dump
        # When this node last renewed its lease (a heartbeat sent as active).
        self._renewed_at = float("inf")
        self._late_logged = False
        # (heard at, priority, node id) of the peer last heard as standby.
        self._standby_peer: tuple[float, int, str] | None = None
        self._peer_info: dict = {}
        self._helloed = False
        # The active's HA connection closed at this time (its process
        # exited), and how many times the connection had come up by then.
        self._exited_at: float | None = None
        self._exited_link = 0
        self._links = 0
        self.exit_grace = exit_grace
        self._handover_deadline: float | None = None
        self._handover_sent = False
        self.applier = Applier(f"replication-apply-{node_id}")
        # Frames handed to the applier and not yet stored, and the journal's
        # head as the applier last stored it: together, where the active's
        # next batch must start (_received_head).
        self._store_lock = threading.Lock()
        self._in_store = 0
        self._stored_head = journal.head
        # Set while a divergence cut (and rebuild) waits on the applier: no
        # HELLO and no batch until it is done; then HELLO at once.
        self._cutting = threading.Event()
        self._hello_asap = False
        self._ready = threading.Event()
        self.start_error: BaseException | None = None
        # Rejoin after retention (the section at the end of this class).
        self._snap_sends: dict[bytes, SnapshotSend] = {}
        self._snap_recv: SnapshotReceive | None = None
        self._snap_chunk_at = 0.0       # when the last chunk of the snapshot being received came
        self._snap_fd: int | None = None
        self._snap_tmp: Path | None = None
        self.snapshots_sent = 0
        self.snapshots_received = 0

    # ---------------------------------------------------------------- API
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"replication-{self.node_id}", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        if self.start_error:
            raise self.start_error

    def stop(self) -> None:
        if self._ctx.closed:
            return
        self._stop.set()
        self._wake()
        if self._thread:
            self._thread.join(5)
        self.applier.stop()
        with self._wake_lock:
            if self._wake_tx is not None:
                self._wake_tx.close(0)
                self._wake_tx = None
        if self._auth:
            self._auth.stop()
            self._auth = None
        self._ctx.destroy(linger=0)
        with self._acked_cv:
            self._acked_cv.notify_all()

    def set_role(self, role: str, epoch: int) -> None:
        """Take effect at once (the HA controller may call this from the
        replication thread itself, inside ``on_trigger``)."""
        old = self.role
        if role == "active" and old != "active":
            self._renewed_at, self._late_logged = self.clock(), False
        if role != old:
            # The detection time starts again at the change, before the
            # transport's next turn can judge silence: a node demoted by its
            # peer's TAKEN has not heard that peer as active yet, and judged
            # on its old time it promoted again at once (two actives until
            # the epochs met).
            self._active_seen = self.clock()
            with self._store_lock:
                if self._in_store == 0:
                    # As active the journal writer appended: batches from a
                    # new active continue from the journal's own head.
                    self._stored_head = self.journal.head
        self.role, self.epoch = role, epoch
        self._cmd(("role", old))

    def notify_appended(self) -> None:
        """The journal grew: stream the new records to the standby."""
        self._wake()

    def handover(self) -> None:
        """Graceful failover: after every record is acknowledged, tell the standby to promote."""
        self._cmd(("handover",))

    def wait_acked(self, seq: int, timeout: float) -> bool:
        """Sync mode: block until the standby acknowledged ``seq`` (False on timeout
        or when no standby is connected: the caller decides, see ARCHITECTURE.md)."""
        deadline = time.monotonic() + timeout
        with self._acked_cv:
            while self._acked < seq:
                left = deadline - time.monotonic()
                if left <= 0 or not self.sender.peers or self._stop.is_set():
                    return False
                self._acked_cv.wait(left)
            return True

    def has_standby(self) -> bool:
        # Only an active node has standbys: right after a demotion the peer table
        # is cleared on the replication thread, but completions must not wait for
        # acknowledgements that will never come in the meantime.
        return self.role == "active" and bool(self.sender.peers)

    def status(self) -> ReplicationStatus:
        now = self.clock()
        p = self._peer_info
        return ReplicationStatus(
            role=self.role, epoch=self.epoch,
            peer_seen_ago=None if self._peer_last is None else now - self._peer_last,
            peer_role=p.get("role"), peer_epoch=p.get("epoch"), peer_head=p.get("head"),
            peer_applied=p.get("applied"), acked=self.sender.min_acked(), mode=self.mode)

    # ----------------------------------------------------------- internals
    def _cmd(self, c) -> None:
        self._cmds.put(c)
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:
            if self._stop.is_set() and self._thread is not None and not self._thread.is_alive():
                return
            if self._wake_tx is None:
                try:
                    self._wake_tx = self._ctx.socket(zmq.PAIR)
                    self._wake_tx.setsockopt(zmq.LINGER, 0)
                    self._wake_tx.connect(self._wake_addr)
                except zmq.ZMQError:
                    self._wake_tx = None
                    return
            try:
                self._wake_tx.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass                   # a wake-up is already queued: that is enough

    def _secure(self, sock, server: bool) -> None:
        if self.keys is None:
            return
        sock.curve_publickey = self.keys.public
        sock.curve_secretkey = self.keys.secret
        if server:
            sock.curve_server = True
        else:
            sock.curve_serverkey = self.keys.peer_public

    def _update_acked(self) -> None:
        with self._acked_cv:
            self._acked = self.sender.min_acked() or 0
            self._acked_cv.notify_all()
        on_acked = self.on_acked
        if on_acked is not None:
            on_acked()

    def acked_seq(self) -> int:
        """The sequence the standby acknowledged (sync mode's wait without waiting)."""
        return self._acked

    def _trigger(self, *args) -> None:
        # The controller's errors must not kill the transport (and with it the heartbeats).
        try:
            self.on_trigger(*args)
        except Exception:
            log.exception("replication: HA trigger %s failed", args[0])

    def _run(self) -> None:
        name_native_thread()
        # Before the first socket: libzmq starts its I/O thread (which sends
        # the heartbeats on the wire) from here, and it inherits the policy.
        log.info("replication: transport thread at %s", raise_thread_priority())
        try:
            wake_rx = self._ctx.socket(zmq.PAIR)
            wake_rx.setsockopt(zmq.LINGER, 0)
            wake_rx.bind(self._wake_addr)
            if self.keys is not None:
                self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("gateway.replication.zap"))
                self._auth.start()
                self._auth.configure_curve_callback(domain="*", credentials_provider=_KeyCheck(self.keys.authorized))
            router = self._ctx.socket(zmq.ROUTER)
            # A peer that passed CURVE still cannot make this node buffer an
            # arbitrarily large message (batches are <= 500 frames of a few KB).
            router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            self._secure(router, server=True)
            router.bind(self.bind)
            dealer = self._new_dealer()
            # The DEALER's connection to the peer's ROUTER, watched: the peer
            # binds that ROUTER for its process's lifetime, so the connection
            # closes only when that process exits (by any signal: the kernel
            # closes its sockets) or stops. A process that merely stands
            # still keeps its TCP connections.
            link = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                                             if self.keys is not None else
                                             zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        except BaseException as exc:  # reported to start()
            self.start_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(wake_rx, router, dealer, link)
        except Exception:
            log.exception("replication: transport thread failed")
        finally:
            if self.stall_dump is not None:
                faulthandler.cancel_dump_traceback_later()
            try:
                dealer.disable_monitor()
            except zmq.ZMQError:
                pass
            for s in (router, dealer, wake_rx, link):
                s.close(0)

    def _loop(self, wake_rx, router, dealer, link=None) -> None:
        poller = zmq.Poller()
        poller.register(wake_rx, zmq.POLLIN)
        poller.register(router, zmq.POLLIN)
        poller.register(dealer, zmq.POLLIN)
        if link is not None:
            poller.register(link, zmq.POLLIN)
        self._active_seen = self._last_turn = self.clock()
        next_hb = 0.0
        loss = self.hb_interval * self.hb_threshold
        # The loop wakes at least once per heartbeat interval; a turn that
        # comes later than this after the previous one found this thread
        # stalled.
        stall_gap = 1.5 * self.hb_interval + 0.05
        armed_at = float("-inf")
        while not self._stop.is_set():
            now = self.clock()
            if self.stall_dump is not None and now - armed_at >= self.hb_interval / 2:
                # Each arming starts a watchdog thread (and ends the last):
                # twice per heartbeat interval, not at every turn.
                faulthandler.dump_traceback_later(self.stall_dump + self.hb_interval / 2,
                                                  file=sys.stderr)
                armed_at = now
            stalled = now - self._last_turn > stall_gap
            self._last_turn = now
            if self.role == "active":
                if now - self._renewed_at > stall_gap and not self._late_logged:
                    self._late_logged = True
                    log.warning("replication: the lease's renewal is late: last heartbeat as active "
                                "%.0f ms ago; last turns (ms: start+checks/poll/rest, s = standby): %s",
                                (now - self._renewed_at) * 1000, self._turns.history(now))
                self._trigger("lease_check", now)
            if self._hello_asap and self.role == "standby" and not self._cutting.is_set() \
                    and not self._receiving_snapshot(now):
                self._hello_asap = False
                self._helloed = self._send_dealer(dealer, self._hello())
            if now >= next_hb:
                if self.role == "standby" and not self._helloed and not self._cutting.is_set() \
                        and not self._receiving_snapshot(now):
                    self._helloed = self._send_dealer(dealer, self._hello())
                self._heartbeat(dealer, now)
                next_hb = now + self.hb_interval
            wake_at = next_hb
            if self.role == "standby" and self._exited_at is not None:
                wake_at = min(wake_at, self._check_exited(now, dealer, router))
            # Silence is judged only with nothing from the peer waiting on our
            # sockets: this thread may itself have been busy (storing and
            # folding a large batch, rejoining) for longer than the detection
            # time while the peer's heartbeats queued up. Counting that as the
            # peer's silence made a loaded standby promote itself (two actives).
            if self.role == "standby":
                # A node that stood still heard nothing meanwhile: silence is
                # observed only while awake, so the detection time starts
                # again from its waking. Without this a standby stalled past
                # the detection time promoted on waking while its peer, which
                # had found it silent, promoted too (tests/test_ha_lease.py).
                if stalled:
                    self._active_seen = max(self._active_seen, now)
                # Only a standby acts on heartbeat loss (gateway.ha ignores it otherwise).
                if now - self._active_seen > loss and not _waiting(dealer, router) \
                        and self.applier.wait_idle(self.hb_interval / 4):
                    # Promote only with every stored record folded; if that
                    # took a while, read the peer again before deciding. The
                    # wait is bounded: a store waiting on a stalled disk must
                    # not stop this thread's heartbeats (the next turn asks
                    # again).
                    later = self.clock()
                    if later - now <= self.hb_interval / 2 and not _waiting(dealer, router):
                        self._active_seen = later    # one trigger per detection period
                        sp = self._standby_peer
                        self._trigger("heartbeat_lost", later,
                                      sp[1:] if sp is not None and later - sp[0] <= loss else None)
                wake_at = min(wake_at, self._active_seen + loss + 0.001)
            elif self.role == "active" and self.sender.peers and not _waiting(router):
                gone = self.sender.expire(now - loss)
                for p in gone:
                    log.warning("replication: standby %s silent for %.0f ms; replicating to nobody",
                                p.node, loss * 1000)
                if gone:
                    self._update_acked()
            if self._handover_deadline is not None and now > self._handover_deadline:
                self._handover_deadline = None
                if self.role == "active":
                    log.warning("replication: the standby did not take over within %.1f s",
                                self.handover_timeout)
                    self._trigger("handover_aborted", now, self._handover_sent)
            timeout_ms = max(1, int((wake_at - self.clock()) * 1000) + 1)
            asleep = self.clock()
            events = dict(poller.poll(timeout_ms))
            woke = self.clock()
            # Back from the poll much later than asked: this thread could not
            # run (another held the GIL, a collection, SIGSTOP). What it reads
            # now may be old (a HANDOVER, above).
            self._stood_still = stalled or (woke - asleep
                                            > timeout_ms / 1000 + 0.5 * self.hb_interval + 0.05)
            if wake_rx in events:
                while _readable(wake_rx):
                    wake_rx.recv()
            if link is not None and link in events:
                self._link_events(link)
            self._commands(dealer)
            t_cmds = self.clock()
            if router in events:
                self._drain_router(router)
            t_router = self.clock()
            if dealer in events:
                self._drain_dealer(dealer)
            t_dealer = self.clock()
            if self.role == "active":
                self._stream(router)
            self._turns.note(now, asleep, timeout_ms / 1000, woke, t_cmds, t_router, t_dealer,
                             self.clock(), self.role == "active")

    def _link_events(self, link) -> None:
        """The DEALER's connection to the peer came up or went down."""
        while _readable(link):
            try:
                event = recv_monitor_message(link)["event"]
            except (zmq.ZMQError, ValueError, KeyError, IndexError):
                continue
            now = self.clock()
            if event != zmq.EVENT_DISCONNECTED:
                self._links += 1
                continue
            p = self._peer_info
            if self.role == "standby" and p.get("role") == "active" \
                    and now - self._active_seen <= self.hb_interval * self.hb_threshold:
                # The active's process exited. Its supervisor removes its
                # addresses within milliseconds of that (actors/fence.py);
                # the grace below covers it, then this node takes over
                # without waiting for the detection time.
                if self._exited_at is None:
                    self._exited_at, self._exited_link = now, self._links
                    log.warning("replication: the active %s closed its HA connection (its process "
                                "exited); taking over in %.0f ms unless it is back as active",
                                p.get("node", "peer"), self.exit_grace * 1000)
            elif self.role == "active" and self.sender.peers:
                # The standby's process exited: sync-mode completions stop
                # waiting for its acknowledgements now, not after the
                # detection time (a standby that is back says HELLO again).
                gone = [peer.node for peer in self.sender.peers.values()]
                self.sender.peers.clear()
                self._update_acked()
                log.warning("replication: standby %s closed its HA connection (its process exited); "
                            "replicating to nobody", ", ".join(gone))

    def _check_exited(self, now: float, dealer, router) -> float:
        """Standby, after the active's connection closed: take over once the
        grace has passed, unless an active was heard over a new connection
        (the connection dropped and came back: the active lives). Returns
        when to look again."""
        if self._active_seen > self._exited_at and self._links > self._exited_link:
            log.info("replication: the active is back; not taking over")
            self._exited_at = None
            return now + self.hb_interval
        due = self._exited_at + self.exit_grace
        if now < due:
            return due
        if _waiting(dealer, router):
            return now                  # read what the peer sent first
        if not self.applier.wait_idle(self.hb_interval / 4):
            # Promote with every stored record folded; the store may wait on
            # a busy disk: keep the heartbeats going and look again soon.
            return self.clock() + 0.01
        self._exited_at = None
        later = self.clock()
        self._active_seen = later
        self._trigger("active_exited", later)
        return later + self.hb_interval

    def _commands(self, dealer) -> None:
        while True:
            try:
                c = self._cmds.get_nowait()
            except queue.Empty:
                return
            if c[0] == "role":
                if c[1] != self.role:
                    self._helloed = False
                    self._handover_deadline = None
                    self._handover_sent = False
                    self._active_seen = self.clock()
                    self._exited_at = None
                    if c[1] == "active":
                        self.sender.peers.clear()
                        self._update_acked()
                self._heartbeat(dealer, self.clock())
            elif c[0] == "ack":
                if self.role == "standby":
                    self._send_dealer(dealer, Ack(c[1], self.epoch))
            elif c[0] == "handover":
                if self.role == "active":
                    self._handover_deadline = self.clock() + self.handover_timeout
                    self._handover_sent = False

    def _stream(self, router) -> None:
        self._stream_snapshots(router)
        try:
            batches = self.sender.batches(self.journal.head, self.epoch)
        except (ValueError, JournalCorrupt, FileNotFoundError) as exc:
            batches = self._lost_backlog(router, exc)
        for ident, msg in batches:
            router.send_multipart([ident, *encode(msg)])
        if self._handover_deadline is None or self._handover_sent:
            return
        if not self.sender.peers:
            log.warning("replication: failover requested but no standby is connected")
            self._handover_deadline = None
            self._trigger("handover_aborted", self.clock(), False)
        elif (self.sender.min_acked() or 0) >= self.journal.head:
            for ident in list(self.sender.peers):
                router.send_multipart([ident, *encode(Handover(self.epoch, self.journal.head))])
            self._handover_sent = True

    def _new_dealer(self):
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IDENTITY, self.node_id.encode())
        # Never queue heartbeats for a dead peer: drop instead of piling up.
        dealer.setsockopt(zmq.SNDHWM, 1000)
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        dealer.setsockopt(zmq.RECONNECT_IVL, max(10, int(self.hb_interval * 250)))
        self._secure(dealer, server=False)
        dealer.connect(self.peer)
        return dealer

    def _send_dealer(self, dealer, msg) -> bool:
        try:
            dealer.send_multipart(encode(msg), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False               # no connection to the peer right now

    def _heartbeat(self, dealer, now: float) -> None:
        """Send a heartbeat; as active, it renews the lease from ``now``
        (taken before the send: the peer cannot have received it earlier)."""
        self._send_dealer(dealer, self._hb(now))
        if self.role == "active":
            self._renewed_at, self._late_logged = now, False
            self._trigger("lease_renewed", now)

    def _hb(self, now: float) -> Heartbeat:
        head = self.journal.head
        return Heartbeat(self.node_id, self.role, self.epoch, head, self.priority, head, time.time())

    def _hello(self) -> Hello:
        head = self.journal.head
        epoch, crc = frame_mark(self.journal.read_frames(head, 1)[0]) if head else (0, 0)
        return Hello(self.node_id, head, epoch, crc, self.epoch)

    def _mark_at(self, seq: int) -> tuple[int, int]:
        return frame_mark(self.journal.read_frames(seq, 1)[0])

    def _seen_peer(self, hb: Heartbeat) -> None:
        now = self.clock()
        self._peer_last = now
        if hb.role == "active":
            self._active_seen = now
        elif hb.role == "standby":
            self._standby_peer = (now, hb.prio, hb.node)
        self._peer_info.update(role=hb.role, epoch=hb.epoch, head=hb.head, applied=hb.applied,
                               node=hb.node)
        self._trigger("peer_epoch", hb.role, hb.epoch, hb.prio, hb.node)

    def _drain_router(self, router) -> None:
        while _readable(router):
            ident, *frames = router.recv_multipart()
            try:
                msg = decode(frames)
            except ProtocolViolation as exc:
                log.warning("replication: dropped a message from %r: %s", ident, exc.reason)
                continue
            now = self.clock()
            self.sender.seen(ident, now)
            if isinstance(msg, Heartbeat):
                self._seen_peer(msg)
                router.send_multipart([ident, *encode(self._hb(now))])
                if self.role == "active" and msg.role == "standby" and ident not in self.sender.peers \
                        and ident not in self._snap_sends:
                    # A standby that lost its session (we restarted): ask it to re-HELLO.
                    # Not one being sent our snapshot: it is out of the sender's
                    # peers until it HELLOs from the snapshot's record, and a
                    # HELLO now would start the transfer over.
                    router.send_multipart([ident, *encode(Refused("hello again"))])
            elif isinstance(msg, Hello):
                self._hello_from(router, ident, msg, now)
            elif isinstance(msg, Ack):
                if self.sender.ack(ident, msg.seq, now) is not None:
                    self._update_acked()
            elif isinstance(msg, Taken):
                self._handover_deadline = None
                self._trigger("handover_done", msg.epoch)
            elif isinstance(msg, SnapAck):
                self._snapshot_acked(ident, msg, now)

    def _hello_from(self, router, ident: bytes, msg: Hello, now: float) -> None:
        if self.role != "active":
            router.send_multipart([ident, *encode(Refused("not active"))])
            return
        if msg.epoch > self.epoch:
            # The peer is in a newer term than ours; its heartbeat will demote us.
            router.send_multipart([ident, *encode(Refused("not active"))])
            return
        head = self.journal.head
        first = self.journal.first_seq
        if first > 1 and msg.last_seq < first:
            self._send_snapshot(router, ident, msg, now)
            return
        try:
            cut = hello_verdict(msg.last_seq, msg.last_epoch, msg.last_crc, head, self._mark_at)
        except (ValueError, IndexError) as exc:
            if self.journal.first_seq > 1:
                # The records that would tell where the two journals part
                # were removed by retention: the snapshot replaces the standby's.
                self._send_snapshot(router, ident, msg, now)
                return
            log.warning("replication: cannot check %s's journal against ours: %s", msg.node, exc)
            return
        if cut is not None:
            self.refused_hellos += 1
            log.warning("replication: standby %s diverged (its seq %d is not ours); it must cut after %d",
                        msg.node, msg.last_seq, cut)
            router.send_multipart([ident, *encode(Refused("diverged", cut))])
            return
        self.sender.hello(ident, msg.node, msg.last_seq, head, now)
        self._update_acked()
        log.info("replication: standby %s joined at seq %d (head %d)", msg.node, msg.last_seq, head)

    def _drain_dealer(self, dealer) -> None:
        pending: list[bytes] = []       # consecutive BATCH frames: one append, one ACK
        # Bounded: the heartbeats must go out while a long backlog streams in,
        # and the applier must not fall arbitrarily far behind.
        until = self.clock() + self.hb_interval / 2
        if self.applier.backlog() >= FOLD_BACKLOG:
            self.applier.wait_below(FOLD_BACKLOG, self.hb_interval / 4)
            if self.applier.backlog() >= FOLD_BACKLOG:
                return
        while _readable(dealer):
            if self.clock() > until or self.applier.backlog() + len(pending) >= FOLD_BACKLOG:
                break
            if len(pending) >= APPEND_CHUNK:
                self._apply(dealer, pending)
                pending = []
            frames = dealer.recv_multipart()
            try:
                msg = decode(frames)
            except ProtocolViolation as exc:
                log.warning("replication: dropped a message from the peer: %s", exc.reason)
                continue
            if isinstance(msg, Batch):
                self._active_seen = self._peer_last = self.clock()
                if self.role != "standby" or msg.epoch < self.epoch or self._cutting.is_set():
                    continue
                head = self._received_head() + len(pending)
                new, resync = self.receiver.admit(msg, head, self._peer_last)
                pending += new
                if resync:
                    self._apply(dealer, pending)
                    pending = []
                    self._send_dealer(dealer, self._hello())
                continue
            self._apply(dealer, pending)
            pending = []
            if isinstance(msg, Heartbeat):
                self._seen_peer(msg)
            elif isinstance(msg, Handover):
                self._active_seen = self.clock()
                if self._stood_still:
                    # Read after this node stood still: it may have waited
                    # past the sender's handover timeout, after which the
                    # sender gave up the role and the pair may have elected
                    # an active already. Taking over now could make two
                    # actives; the sender gives up and the pair elects one.
                    log.warning("replication: a handover read after this node stood still; ignored")
                elif self.role == "standby" and self.applier.wait_idle(self.handover_timeout / 2) \
                        and self.journal.head >= msg.head:
                    # Every frame handed to the applier stored and folded
                    # (the HANDOVER follows their acknowledgement).
                    self._trigger("handover_received", msg.epoch, self.clock())
                    if self.role == "active":
                        self._send_dealer(dealer, Taken(self.epoch))
                else:
                    log.warning("replication: handover at head %d but only %d applied; not taking over",
                                msg.head, self.journal.head)
            elif isinstance(msg, SnapChunk):
                self._snapshot_chunk(dealer, msg)
            elif isinstance(msg, Refused):
                self._helloed = False
                if msg.reason == "diverged":
                    if not self._cutting.is_set():
                        # Cut and rebuild on the applier; HELLO once it is done.
                        self._cutting.set()
                        self.applier.submit(self._cut, msg.head)
                    continue
                # "no snapshot to send": the active cannot serve this node
                # yet (it has no snapshot); like "not active", ask again at
                # the next beat rather than at once.
                if msg.reason not in ("not active", "no snapshot to send") and self.role == "standby" \
                        and not self._receiving_snapshot(self.clock()):
                    # Say HELLO again now (a "not active" peer waits for the
                    # next beat), or as soon as a cut in progress is done.
                    if self._cutting.is_set():
                        self._hello_asap = True
                    else:
                        self._helloed = self._send_dealer(dealer, self._hello())
        self._apply(dealer, pending)

    def _apply(self, dealer, frames: list[bytes]) -> None:
        """Hand received frames to the applier, which stores them, has the
        acknowledgement sent, then folds them. Not here: a store waits for
        an fsync and a fold for the node's state lock, and on a loaded box
        either took from 0.3 to 1.8 s, during which this thread sent no
        heartbeat (an active's heartbeats renew its lease) and read none
        (the pair changed roles back and forth)."""
        if not frames:
            return
        with self._store_lock:
            self._in_store += len(frames)
        self.applier.submit(self._store_and_fold, frames, records=len(frames))

    def _received_head(self) -> int:
        """The head this node will have once the frames handed to the
        applier are stored: where the next batch from the active must start."""
        with self._store_lock:
            return self._stored_head + self._in_store

    def _store_and_fold(self, frames: list[bytes]) -> None:
        """Applier: store, acknowledge (through the transport thread, which
        owns the sockets), fold. A promotion waits until the applier is idle
        (heartbeat loss, HANDOVER), so it sees every acknowledged record folded."""
        try:
            records = self.journal.append_frames(frames)
        except Exception as exc:      # AppendRejected, JournalFailed: start over from our head
            log.warning("replication: could not store %d frames from the active: %s", len(frames), exc)
            with self._store_lock:
                self._in_store -= len(frames)
            self._helloed = False
            self._wake()
            return
        with self._store_lock:
            self._stored_head = self.journal.head
            self._in_store -= len(frames)
        # Acknowledged as soon as the frames are durable here (what sync mode
        # waits for: no acknowledged event is lost in a failover), before the
        # fold: the active's held packets wait for this message.
        self._cmd(("ack", self.journal.head))
        self._fold(records)

    def _fold(self, records: list) -> None:
        try:
            self.on_records(records)
        except Exception:
            log.exception("replication: folding %d records failed", len(records))

    def _cut(self, head: int) -> None:
        """Applier: the node cuts its journal after ``head`` and rebuilds."""
        try:
            self._trigger("diverged", head)
        finally:
            with self._store_lock:
                self._stored_head = self.journal.head
            self._cutting.clear()
            self._hello_asap = True
            self._wake()

    # ------------------------------------------ rejoin after retention
    # A standby that missed records the active's retention has deleted gets
    # the active's newest snapshot (journal/replication.py, "Rejoin after
    # retention"), then says HELLO at the snapshot's record and is streamed
    # the journal after it. Nothing here touches heartbeats or the lease.

    def _send_snapshot(self, router, ident: bytes, msg: Hello, now: float) -> None:
        """Active: start sending our newest snapshot whose record we still hold."""
        self.sender.forget(ident)
        self._update_acked()
        first = self.journal.first_seq
        for seq, path in reversed(list_snapshots(snapshot_dir(self.journal))):
            if seq < first:
                continue
            try:
                data = path.read_bytes()
                frame = self.journal.read_frames(seq, 1)[0]
            except (OSError, ValueError, IndexError, JournalCorrupt) as exc:
                log.warning("replication: cannot send snapshot %s: %s", path, exc)
                continue
            self._snap_sends[ident] = SnapshotSend(seq, data, frame, last_seen=now)
            log.warning("replication: standby %s is at record %d, before our oldest kept record %d: "
                        "sending it our snapshot of record %d (%d bytes)", msg.node, msg.last_seq,
                        first, seq, len(data))
            return
        log.error("replication: standby %s is at record %d, before our oldest kept record %d, and no "
                  "snapshot can be sent: it cannot rejoin", msg.node, msg.last_seq, first)
        router.send_multipart([ident, *encode(Refused("no snapshot to send"))])

    def _stream_snapshots(self, router) -> None:
        now = self.clock()
        for ident, send in list(self._snap_sends.items()):
            if now - send.last_seen > SNAPSHOT_STALL:
                log.warning("replication: snapshot transfer to %r stalled; dropped", ident)
                del self._snap_sends[ident]
                continue
            for chunk in send.chunks():
                router.send_multipart([ident, *encode(chunk)])

    def _snapshot_acked(self, ident: bytes, msg: SnapAck, now: float) -> None:
        send = self._snap_sends.get(ident)
        if send is not None and send.ack(msg, now):
            del self._snap_sends[ident]
            self.snapshots_sent += 1
            log.info("replication: snapshot of record %d delivered to %r", send.seq, ident)

    def _lost_backlog(self, router, exc: BaseException) -> list:
        """Active: a standby's backlog was removed by retention while it
        streamed: it starts over (HELLO, then the snapshot)."""
        first = self.journal.first_seq
        for p in [p for p in self.sender.peers.values() if p.sent + 1 < first]:
            log.warning("replication: standby %s needs record %d, removed by retention (%s); "
                        "asking it to rejoin", p.node, p.sent + 1, exc)
            self.sender.forget(p.identity)
            router.send_multipart([p.identity, *encode(Refused("hello again"))])
        self._update_acked()
        try:
            return self.sender.batches(self.journal.head, self.epoch)
        except (ValueError, JournalCorrupt, FileNotFoundError):
            return []

    def _snapshot_chunk(self, dealer, msg: SnapChunk) -> None:
        """Standby: store a chunk; the last one installs the snapshot."""
        if self.role != "standby" or self._cutting.is_set():
            return
        if msg.offset == 0:
            self._snapshot_abort()
            directory = snapshot_dir(self.journal)
            directory.mkdir(parents=True, exist_ok=True)
            self._snap_tmp = directory / f".{msg.seq:020d}.incoming.{os.getpid()}.tmp"
            self._snap_fd = os.open(self._snap_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._snap_recv = SnapshotReceive(msg.seq, msg.total, msg.frame)
        recv = self._snap_recv
        if recv is None or not recv.admit(msg):
            # A chunk out of order (a connection lost meanwhile): start over.
            self._snapshot_abort()
            self._helloed = self._send_dealer(dealer, self._hello())
            return
        try:
            view = memoryview(msg.data)
            while view:
                view = view[os.write(self._snap_fd, view):]
            if recv.complete:
                os.fsync(self._snap_fd)
        except OSError as exc:
            log.error("replication: cannot store the active's snapshot: %s", exc)
            self._snapshot_abort()
            return
        self._snap_chunk_at = self.clock()
        self._send_dealer(dealer, SnapAck(recv.seq, recv.received))
        if recv.complete:
            os.close(self._snap_fd)
            self._snap_fd = None
            path, frame = self._snap_tmp, recv.frame
            self._snap_recv = self._snap_tmp = None
            self._cutting.set()
            self.applier.submit(self._install_snapshot, path, frame)

    def _receiving_snapshot(self, now: float) -> bool:
        """Standby: a snapshot is arriving (a chunk within SNAPSHOT_STALL).
        No HELLO meanwhile: the active would start the transfer over, and the
        one under way would be installed and then sent again. A transfer
        that stopped is given up here, so the next HELLO asks anew."""
        if self._snap_recv is None:
            return False
        if now - self._snap_chunk_at <= SNAPSHOT_STALL:
            return True
        log.warning("replication: the active's snapshot stopped arriving; asking for it again")
        self._snapshot_abort()
        return False

    def _snapshot_abort(self) -> None:
        if self._snap_fd is not None:
            os.close(self._snap_fd)
            self._snap_fd = None
        if self._snap_tmp is not None:
            self._snap_tmp.unlink(missing_ok=True)
            self._snap_tmp = None
        self._snap_recv = None

    def _install_snapshot(self, path: Path, frame: bytes) -> None:
        """Applier: the node takes the snapshot; then HELLO from its record."""
        try:
            self.on_trigger("snapshot_received", path, frame)
            self.snapshots_received += 1
        except Exception:  # noqa: BLE001 - logged; the standby asks again with its old journal
            log.exception("replication: installing the active's snapshot failed")
        finally:
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
            with self._store_lock:
                # The journal now starts at the snapshot's record.
                self._stored_head = self.journal.head
            self._cutting.clear()
            self._hello_asap = True
            self._wake()


def _readable(sock) -> bool:
    """Whether a message can be received from ``sock`` without waiting: one
    zmq_poll of that socket, what ``sock.poll(0)`` does too without the
    Poller object pyzmq builds and registers for every such call (six of
    them per replicated batch)."""
    return bool(_zmq_poll([(sock, _POLLIN)], 0))


_zmq_poll = zmq.zmq_poll
_POLLIN = int(zmq.POLLIN)


def _waiting(*sockets) -> bool:
    """Whether a message is ready on any of ``sockets`` (no wait)."""
    return any(_readable(sock) for sock in sockets)
