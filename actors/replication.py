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
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from journal.replication import ProtocolViolation, Sender, decode, encode

log = logging.getLogger("gateway.replication")


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


class Replicator:
    """The HA transport of one node. Start with :meth:`start`, stop with :meth:`stop`.

    journal:      the node's ``journal.store.Journal`` (head, read_frames, append_frames)
    on_records:   standby side: called (on this thread) with the records just appended,
                  to fold them into the mirrored state
    on_trigger:   called with (trigger, *args) for ``gateway.ha.step``
    """

    def __init__(self, *, node_id: str, bind: str, peer: str, journal,
                 on_records: Callable[[list], None],
                 on_trigger: Callable[..., None],
                 keys: CurveKeys | None,
                 hb_interval: float = 0.2, hb_threshold: int = 3,
                 priority: int = 100, mode: str = "sync",
                 window: int = 20000, batch: int = 500,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node_id = node_id
        self.bind, self.peer = bind, peer
        self.journal = journal
        self.on_records, self.on_trigger = on_records, on_trigger
        self.keys = keys
        self.hb_interval, self.hb_threshold = hb_interval, hb_threshold
        self.priority, self.mode = priority, mode
        self.clock = clock
        self.sender = Sender(journal.read_frames, window=window, batch=batch)
        self.role = "standby"
        self.epoch = 0
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
        self._peer_last = None
        self._peer_info: dict = {}
        self._helloed = False
        self._ready = threading.Event()
        self.start_error: BaseException | None = None

    # ---------------------------------------------------------------- API
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"replication-{self.node_id}", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        if self.start_error:
            raise self.start_error

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread:
            self._thread.join(5)
        if self._auth:
            self._auth.stop()
        self._ctx.destroy(linger=0)

    def set_role(self, role: str, epoch: int) -> None:
        """Take effect at once (the HA controller may call this from the
        replication thread itself, inside ``on_trigger``)."""
        old = self.role
        self.role, self.epoch = role, epoch
        self._cmd(("role", old))

    def notify_appended(self) -> None:
        """The journal grew: stream the new records to the standby."""
        self._cmd(("appended",))

    def handover(self) -> None:
        """Graceful failover: after every record is sent, tell the standby to promote."""
        self._cmd(("handover",))

    def wait_acked(self, seq: int, timeout: float) -> bool:
        """Sync mode: block until the standby acknowledged ``seq`` (False on timeout
        or when no standby is connected: the caller decides, see ARCHITECTURE.md)."""
        deadline = time.monotonic() + timeout
        with self._acked_cv:
            while self._acked < seq:
                left = deadline - time.monotonic()
                if left <= 0 or not self.sender.peers:
                    return self._acked >= seq
                self._acked_cv.wait(left)
            return True

    def has_standby(self) -> bool:
        return bool(self.sender.peers)

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
            if self._wake_tx is None:
                try:
                    self._wake_tx = self._ctx.socket(zmq.PAIR)
                    self._wake_tx.connect(self._wake_addr)
                except zmq.ZMQError:
                    self._wake_tx = None
                    return
            try:
                self._wake_tx.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    def _secure(self, sock, server: bool) -> None:
        if self.keys is None:
            return
        sock.curve_publickey = self.keys.public
        sock.curve_secretkey = self.keys.secret
        if server:
            sock.curve_server = True
        else:
            sock.curve_serverkey = self.keys.peer_public

    def _run(self) -> None:
        try:
            wake_rx = self._ctx.socket(zmq.PAIR)
            wake_rx.bind(self._wake_addr)
            if self.keys is not None:
                self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("gateway.replication.zap"))
                self._auth.start()
                self._auth.configure_curve_callback(domain="*", credentials_provider=_KeyCheck(self.keys.authorized))
            router = self._ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            self._secure(router, server=True)
            router.bind(self.bind)
            dealer = self._new_dealer()
        except BaseException as exc:  # reported to start()
            self.start_error = exc
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(wake_rx, zmq.POLLIN)
        poller.register(router, zmq.POLLIN)
        poller.register(dealer, zmq.POLLIN)
        started = self.clock()
        next_hb = 0.0
        handover_pending = False
        while not self._stop.is_set():
            now = self.clock()
            if now >= next_hb:
                self._send_dealer(dealer, b"HB", self._hb_body(now))
                if self.role == "standby" and not self._helloed:
                    self._send_dealer(dealer, b"HELLO", {"node": self.node_id, "last_seq": self.journal.head,
                                                         "epoch": self.epoch})
                    self._helloed = True
                next_hb = now + self.hb_interval
            # Heartbeat loss: only a standby acts on it (gateway.ha ignores it otherwise).
            last = self._peer_last if self._peer_last is not None else started
            if self.role == "standby" and now - last > self.hb_interval * self.hb_threshold:
                self._peer_last = now          # one trigger per detection period
                self.on_trigger("heartbeat_lost")
            timeout_ms = max(0, int((next_hb - self.clock()) * 1000)) or 1
            events = dict(poller.poll(timeout_ms))
            if wake_rx in events:
                while wake_rx.poll(0):
                    wake_rx.recv()
            while True:
                try:
                    c = self._cmds.get_nowait()
                except queue.Empty:
                    break
                if c[0] == "role":
                    if c[1] != self.role:
                        self._helloed = False
                        if self.role == "active":
                            self.sender.peers.clear()
                    self._send_dealer(dealer, b"HB", self._hb_body(self.clock()))
                elif c[0] == "handover":
                    handover_pending = True
            if router in events:
                self._drain_router(router)
            if dealer in events:
                self._drain_dealer(dealer)
            if self.role == "active":
                for ident, msg in self.sender.batches(self.journal.head, self.epoch):
                    router.send_multipart([ident, *msg])
                if handover_pending:
                    if self.sender.peers and (self.sender.min_acked() or 0) >= self.journal.head:
                        for ident in list(self.sender.peers):
                            router.send_multipart([ident, *encode(b"HANDOVER", {"epoch": self.epoch,
                                                                                "head": self.journal.head})])
                        handover_pending = False
                    elif not self.sender.peers:
                        log.warning("replication: failover requested but no standby is connected")
                        handover_pending = False
                        self.on_trigger("handover_aborted")
        for s in (router, dealer, wake_rx):
            s.close(0)

    def _new_dealer(self):
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IDENTITY, self.node_id.encode())
        # Never queue heartbeats for a dead peer: drop instead of piling up.
        dealer.setsockopt(zmq.SNDHWM, 1000)
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        self._secure(dealer, server=False)
        dealer.connect(self.peer)
        return dealer

    def _send_dealer(self, dealer, kind: bytes, body: dict) -> None:
        try:
            dealer.send_multipart(encode(kind, body), zmq.NOBLOCK)
        except zmq.Again:
            pass                       # no connection to the peer right now

    def _hb_body(self, now: float) -> dict:
        return {"node": self.node_id, "role": self.role, "epoch": self.epoch, "head": self.journal.head,
                "prio": self.priority, "applied": self.journal.head, "ts": time.time()}

    def _seen_peer(self, body: dict) -> None:
        self._peer_last = self.clock()
        for k in ("role", "epoch", "head", "applied"):
            if k in body:
                self._peer_info[k] = body[k]
        if "epoch" in body and "role" in body:
            self.on_trigger("peer_epoch", body["role"], int(body["epoch"]), int(body.get("prio", 100)),
                            str(body.get("node", "?")))

    def _drain_router(self, router) -> None:
        while router.poll(0):
            ident, *frames = router.recv_multipart()
            try:
                kind, body = decode(frames)
            except ProtocolViolation as exc:
                log.warning("replication: dropped a message from %r: %s", ident, exc)
                continue
            now = self.clock()
            if kind == b"HB":
                self._seen_peer(body)
                router.send_multipart([ident, *encode(b"HB", self._hb_body(now))])
                if self.role == "active" and body.get("role") == "standby" and ident not in self.sender.peers:
                    # A standby that lost its session (we restarted): ask it to re-HELLO.
                    router.send_multipart([ident, *encode(b"REFUSED", {"reason": "hello again"})])
            elif kind == b"HELLO":
                if self.role != "active":
                    router.send_multipart([ident, *encode(b"REFUSED", {"reason": "not active"})])
                    continue
                last = int(body.get("last_seq", 0))
                if last > self.journal.head:
                    log.warning("replication: peer %s is ahead (%d > %d): its tail is not from this term",
                                body.get("node"), last, self.journal.head)
                    router.send_multipart([ident, *encode(b"REFUSED", {"reason": "diverged",
                                                                       "head": self.journal.head})])
                    continue
                self.sender.hello(ident, str(body.get("node")), last, self.journal.head, now)
                log.info("replication: standby %s joined at seq %d (head %d)", body.get("node"), last,
                         self.journal.head)
            elif kind == b"ACK":
                p = self.sender.ack(ident, int(body.get("seq", 0)), now)
                if p is not None:
                    with self._acked_cv:
                        self._acked = self.sender.min_acked() or 0
                        self._acked_cv.notify_all()
            elif kind == b"TAKEN":
                self.on_trigger("handover_done", int(body.get("epoch", 0)))

    def _drain_dealer(self, dealer) -> None:
        while dealer.poll(0):
            frames = dealer.recv_multipart()
            try:
                kind, body = decode(frames)
            except ProtocolViolation as exc:
                log.warning("replication: dropped a message from the peer: %s", exc)
                continue
            if kind == b"HB":
                self._seen_peer(body)
            elif kind == b"BATCH":
                self._peer_last = self.clock()
                if self.role != "standby":
                    continue
                first = int(body["first"])
                frames_in = body["frames"]
                head = self.journal.head
                if first > head + 1:
                    # We missed frames (the peer restarted its session): resume.
                    self._send_dealer(dealer, b"HELLO", {"node": self.node_id, "last_seq": head,
                                                         "epoch": self.epoch})
                    continue
                skip = head + 1 - first               # duplicates after a re-HELLO
                new = frames_in[skip:] if skip > 0 else frames_in
                if new:
                    records = self.journal.append_frames(new)
                    self.on_records(records)
                self._send_dealer(dealer, b"ACK", {"seq": self.journal.head, "epoch": self.epoch})
            elif kind == b"HANDOVER":
                if self.journal.head >= int(body.get("head", 0)):
                    self.on_trigger("handover_received", int(body.get("epoch", 0)))
                    self._send_dealer(dealer, b"TAKEN", {"epoch": self.epoch})
                else:
                    log.warning("replication: handover at head %s but only %d applied; waiting",
                                body.get("head"), self.journal.head)
            elif kind == b"REFUSED":
                reason = body.get("reason")
                if reason == "diverged":
                    self.on_trigger("diverged", int(body.get("head", 0)))
                self._helloed = False
