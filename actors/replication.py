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

import faulthandler
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from actors.replication_applier import Applier
from actors.replication_keys import CurveKeys, _KeyCheck
from actors.replication_limits import (
    APPEND_CHUNK, EXIT_GRACE, FOLD_BACKLOG, FOLD_DELAY, MAX_MESSAGE_BYTES, SNAPSHOT_STALL,
)
from actors.replication_loop import TransportLoop
from actors.replication_peer import PeerMessages
from actors.replication_reports import ReplicationStatus, SlowTurns
from actors.replication_snapshots import SnapshotRejoin
from actors.replication_standby import StandbyReceive
from actors.thread_names import name_native_thread
from actors.thread_priority import raise_thread_priority
from journal.replication import Receiver, Sender, SnapshotReceive, SnapshotSend

log = logging.getLogger("gateway.replication")

# The transport's parts and limits stay importable from here.
__all__ = ["APPEND_CHUNK", "Applier", "CurveKeys", "EXIT_GRACE", "FOLD_BACKLOG", "MAX_MESSAGE_BYTES",
           "ReplicationStatus", "Replicator", "SNAPSHOT_STALL", "SlowTurns"]


class Replicator(TransportLoop, PeerMessages, StandbyReceive, SnapshotRejoin):
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
        # The stream reads frames from the moment they are written: the
        # standby stores them while the active's fsync runs (JournalWriter).
        self.sender = Sender(journal.read_written, window=window, batch=batch)
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
        # Stored and acknowledged records the applier has not folded yet, and
        # how long they may wait (FOLD_DELAY; 0: each batch at once).
        self._unfolded: list = []
        self.fold_delay = FOLD_DELAY
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
        # Rejoin after retention (actors/replication_snapshots.py).
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
