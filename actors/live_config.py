"""Live configuration of a running pair (``gwctl config apply|diff|show --running``).

One apply is one journaled event (``gateway.running_config.ConfigApplied``,
with the new configuration's normal form), written and replicated like the
ALGs' events: the standby switches when it folds that record, so both nodes
change configuration at the same point of the journal, and a standby that
takes over runs what the active last applied. The event is part of the state
(``DomainState.config``), so it is in every snapshot: a node that restarts or
rejoins runs the pair's configuration from its journal or the snapshot it is
sent, and logs it when its node file says something else.

Only the active applies. A standby refuses with the active's name (an apply
forwarded over the HA link would need a request channel the replication
protocol does not have; the operator's ``gwctl`` reaches the active's socket
as easily). One apply at a time: a second is refused while one is under way.
Every apply is logged with the new and old hashes, the file and who asked
(the control connection's peer credentials and what gwctl said).

What the new policy no longer permits (gateway/rematch.py, ScreenOS's
session rematch): policy sessions of the datapath are looked up again and
removed when denied; the calls each ALG judges denied (a SIP call by its
caller's INVITE, an H.323 or MGCP call by the denied session that carries
its signalling) are ended as the ALG ends a call (their pinholes closed,
``CallEnded``), in the same journal batch as the configuration event, right
after it; everything else carries on.

Persistence: the journal (and its snapshots) is the record; a copy of the
normal form is written atomically to ``running.cfg`` in the node's journal
directory at every switch, for the operator to read (and to start a node
from with ``--config``). The node file's ``config`` path stays the
operator's source: it is read at start and compared, never written.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from typing import Any

from gateway import running_config
from gateway.config import ConfigError, check_text, parse_text
from gateway.config.diff import (
    config_hash, diff_configs, diff_texts, normal_text, restart_only_changes, short, text_hash,
)
from gateway.config.model import Config
from gateway.policy import Engine
from gateway.algs import ADAPTERS
from gateway.rematch import sessions_denied

log = logging.getLogger("gateway.config")

RUNNING_FILE = "running.cfg"
# How long an apply waits for its event to be complete (journaled; in sync
# mode acknowledged by the standby).
APPLY_TIMEOUT = 10.0


class ApplyRefused(Exception):
    """An apply that changes nothing on the pair, with the reason for the operator."""


class LiveConfig:
    """The node's configuration as it runs, and the commands that change it."""

    def __init__(self, node, file_config: Config, file_path: str, *,
                 state_dir: str | None = None, clock=time.time) -> None:
        self.node = node
        self.file_config = file_config
        self.file_path = file_path
        self.file_hash = config_hash(file_config)
        self.state_dir = state_dir
        self.clock = clock
        self.current = node.config
        self.current_hash = config_hash(node.config)
        self._applying = threading.Lock()
        self._busy: str | None = None
        # Who runs what is the node's business; the datapath, the ALGs'
        # settings and (through these hooks) others follow a switch.
        self.on_switch: list = []
        node.live_config = self

    # ----------------------------------------------------------- queries
    def running(self) -> dict:
        rc = self.node.state.config
        return {"hash": self.current_hash, "text": normal_text(self.current),
                "origin": "journal" if rc is not None else "node file",
                "source": rc.source if rc is not None else self.file_path,
                "by": rc.by if rc is not None else None, "at": rc.at if rc is not None else None,
                "node_file": self.file_path, "node_file_hash": self.file_hash,
                "node": self.node.node_id, "role": self.node.role.role}

    # ------------------------------------------------------------- start
    def adopt(self) -> bool:
        """At start, after the journal's recovery: run the pair's running
        configuration when one was ever applied; say so when the node file
        differs. True when the journal's configuration was adopted."""
        rc = self.node.state.config
        if rc is None:
            return False
        if rc.hash == self.current_hash:
            self._persist(rc.text, rc)
            return False
        cfg = self._parse_running(rc)
        if cfg is None:
            return False
        d = diff_texts(normal_text(self.file_config), rc.text, self.file_path, "running")
        log.warning("config: node %s: the node file's configuration %s (%s) differs from the pair's "
                    "running configuration %s (applied %s by %s from %s): running %s; %d line(s) of "
                    "the normal forms differ (gwctl config diff %s)",
                    self.node.node_id, self.file_path, short(self.file_hash), short(rc.hash),
                    _when(rc.at), rc.by, rc.source, short(rc.hash), len(d.added) + len(d.removed),
                    self.file_path)
        left = restart_only_changes(self.file_config, cfg)
        if left:
            log.error("config: node %s: settings set up at start come from the node file, not from "
                      "the running configuration: %s", self.node.node_id, "; ".join(left))
        self._switch(cfg, rc.hash, rc)
        return True

    # ---------------------------------------------------------- standby
    def follow(self, events) -> None:
        """Records folded on the standby (or after a cut or a received
        snapshot): switch when the running configuration changed."""
        rc = self.node.state.config
        if rc is None:
            if self.current_hash == self.file_hash:
                return
            # A divergence cut removed every configuration event this node
            # had: nothing was applied in the pair's history, the node
            # file's configuration runs again.
            cfg, h = self.file_config, self.file_hash
        elif rc.hash == self.current_hash:
            return
        else:
            cfg, h = self._parse_running(rc), rc.hash
            if cfg is None:
                return
        was = self.current_hash
        removed = self._switch(cfg, h, rc)
        if rc is None:
            log.warning("config: node %s: back to the node file's configuration %s (was %s): the "
                        "journal after the cut holds no applied configuration", self.node.node_id,
                        short(h), short(was))
            return
        log.warning("config: node %s (%s): now running %s (was %s), applied by %s from %s; "
                    "%d session(s) the new policy denies removed", self.node.node_id,
                    self.node.role.role, short(rc.hash), short(was), rc.by, rc.source, removed)

    # ------------------------------------------------------------ apply
    def apply(self, text: str, filename: str, by: str, *, expect: str | None = None) -> dict:
        """Check ``text`` (all or nothing), and make it the pair's running
        configuration: one journaled event, then the switch. Raises
        :class:`ApplyRefused` with the reason otherwise."""
        node = self.node
        if node.role.role != "active":
            peer = None
            if node.replicator is not None:
                try:
                    peer = node.replicator.status().peer_role
                except Exception:       # noqa: BLE001 - only for the message
                    peer = None
            raise ApplyRefused(f"node {node.node_id} is the {node.role.role}: a configuration is "
                               "applied on the active node, which replicates it to the standby "
                               f"(the peer is {peer or 'unknown'}); run gwctl config apply --node "
                               "ACTIVE there")
        if not self._applying.acquire(blocking=False):
            raise ApplyRefused(f"another configuration apply is in progress ({self._busy}); "
                               "try again when it has finished")
        try:
            self._busy = f"{filename} asked by {by}"
            return self._apply(text, filename, by, expect)
        finally:
            self._busy = None
            self._applying.release()

    def _apply(self, text: str, filename: str, by: str, expect: str | None) -> dict:
        node = self.node
        cfg, diagnostics = check_text(text, filename)
        if cfg is None:
            errors = [str(d) for d in diagnostics if d.severity == "error"]
            raise ApplyRefused(f"{filename}: invalid ({len(errors)} error"
                               f"{'s' if len(errors) != 1 else ''}), nothing applied:\n"
                               + "\n".join(errors))
        if expect and expect != self.current_hash:
            raise ApplyRefused(f"the running configuration is {short(self.current_hash)}, not "
                               f"{short(expect)} as expected: it changed since the difference was "
                               "shown; run gwctl config diff again")
        new_hash = config_hash(cfg)
        d = diff_configs(self.current, cfg, "running", filename)
        if d.empty:
            raise ApplyRefused(f"{filename} is the running configuration ({short(new_hash)}): "
                               "nothing to apply")
        left = restart_only_changes(self.current, cfg)
        if left:
            raise ApplyRefused("these settings cannot change on a running pair: " + "; ".join(left)
                               + ". Nothing applied. Change them in both nodes' configuration "
                               "files and restart both nodes")
        engine = Engine(cfg)
        rendered = normal_text(cfg)
        done = threading.Event()
        written: list = []

        def complete(recs) -> None:
            written.append(recs)
            done.set()

        with node.dp_lock, node.state_lock:
            dp = node.datapath
            sessions = sessions_denied(engine, dp.sessions) if dp is not None and hasattr(dp, "sessions") else []
            denied = [(a, key, reason) for a in ADAPTERS.values()
                      for key, reason in a.calls_denied(getattr(node.state, a.name), engine, sessions)]
            event = running_config.ConfigApplied(rendered, new_hash, self.current_hash, filename, by,
                                                 self.clock(), tuple(f"{a.call_prefix}/{k}" for a, k, _ in denied))
            events = [event] + self._ending(node.state, denied, cfg)
            st = node.state
            from gateway import domain
            for e in events:
                st = domain.apply(st, e)
            node.state = st
            node._state_is_fold = False
            node.counters["events"] += len(events)
            was = self.current_hash
            removed = self._switch(cfg, new_hash, st.config, engine=engine, denied=sessions, persist=False)
            node._mirror(events[1:])
            node._datapath_follow(events[1:])
            # In the journal right where the switch is: the packets before it
            # were decided by the old configuration, those after by the new.
            node.writer.submit(events, complete)
        ok = done.wait(APPLY_TIMEOUT) and written and written[0] is not None
        self._persist(rendered, st.config)
        log.warning("config: node %s: applied %s (was %s) from %s, asked by %s: %d line(s) removed, "
                    "%d added; %d call(s) the new policy denies ended, %d session(s) removed%s",
                    node.node_id, short(new_hash), short(was), filename, by, len(d.removed),
                    len(d.added), len(denied), removed,
                    "" if ok else "; THE EVENT WAS NOT CONFIRMED WRITTEN (journal or standby)")
        for a, key, reason in denied:
            log.warning("config: %s call %s ended (config-denied): %s", a.name, key, reason)
        return {"applied": True, "hash": new_hash, "previous": was, "diff": list(d.unified),
                "calls_ended": [{"alg": a.name, "call": k, "reason": r} for a, k, r in denied],
                "sessions_removed": removed, "journaled": bool(ok),
                "replication": node.mode, "node": node.node_id}

    def _ending(self, state, denied, cfg: Config) -> list:
        """The ALG events that end the calls the new policy denies, each ALG's
        as it ends a call (its pinholes closed, then CallEnded)."""
        out: list = []
        for a in ADAPTERS.values():
            mine = [(key, f"the configuration applied no longer permits the call: {reason}")
                    for b, key, reason in denied if b is a]
            if mine:
                out += a.end_calls(getattr(state, a.name), mine, self.clock(), a.settings(cfg)).events
        return out

    # ----------------------------------------------------------- switch
    def _switch(self, cfg: Config, h: str, rc, *, engine: Engine | None = None,
                denied: list | None = None, persist: bool = True) -> int:
        """Run ``cfg`` from now on; the policy sessions it denies are removed
        (gateway/rematch.py; ``denied``: those already judged, under the
        datapath lock held since). Returns how many were."""
        node = self.node
        engine = engine if engine is not None else Engine(cfg)
        removed = 0
        with node.dp_lock:
            node.config = cfg
            if node.media_refresh > 0:
                node.media_refresh = type(node).media_refresh_for(cfg)
            dp = node.datapath
            if dp is not None and hasattr(dp, "reconfigure"):
                dp.reconfigure(cfg, engine)
                if denied is None:
                    denied = sessions_denied(engine, list(dp.sessions))
                for sess, why in denied:
                    if dp.remove_session(sess):
                        removed += 1
                        log.warning("config: session %d removed (config-denied): %s %s -> %s: %s",
                                    sess.id, sess.kind, _addr(sess.fwd_key, 1), _addr(sess.fwd_key, 3),
                                    why)
        self.current = cfg
        self.current_hash = h
        for hook in self.on_switch:
            try:
                hook(cfg, engine)
            except Exception:          # noqa: BLE001 - a hook must not undo the switch
                log.exception("config: a hook of the switch to %s failed", short(h))
        if persist and rc is not None:
            self._persist(rc.text, rc)
        return removed

    def _parse_running(self, rc) -> Config | None:
        try:
            cfg = parse_text(rc.text, f"<running configuration {short(rc.hash)}>")
        except ConfigError as exc:
            # Cannot happen for a text this build rendered; a journal of a
            # newer build might: keep running what runs, loudly.
            log.error("config: node %s: the pair's running configuration %s does not parse here "
                      "(%s); still running %s", self.node.node_id, short(rc.hash),
                      "; ".join(str(d) for d in exc.diagnostics[:3]), short(self.current_hash))
            return None
        if text_hash(rc.text) != rc.hash:
            log.error("config: node %s: the running configuration's hash does not match its text",
                      self.node.node_id)
        return cfg

    def _persist(self, text: str, rc) -> None:
        """A copy of the running configuration next to the node's journal,
        written atomically (temporary file, fsync, rename, directory fsync)."""
        if self.state_dir is None:
            return
        header = (f"# running configuration {rc.hash if rc is not None else ''}\n"
                  f"# applied {_when(rc.at) if rc is not None else '-'} by "
                  f"{rc.by if rc is not None else '-'} from {rc.source if rc is not None else '-'}\n"
                  "# the pair's journal holds it; this copy is for reading\n")
        try:
            write_atomically(os.path.join(self.state_dir, RUNNING_FILE), header + text)
        except OSError as exc:
            log.error("config: could not write %s: %s", RUNNING_FILE, exc)

    # ---------------------------------------------------------- control
    def control(self, cmd: str, args: dict) -> Any:
        from actors.control import ControlError
        if cmd == "config-running":
            return self.running()
        if cmd == "config-apply":
            text = args.get("text")
            if not isinstance(text, str):
                raise ControlError("config-apply needs the configuration's text")
            filename = str(args.get("file") or "<gwctl>")
            peer = args.get("_peer") or {}
            said = str(args.get("by") or "gwctl")
            by = f"uid {peer.get('uid', '?')} pid {peer.get('pid', '?')} ({said})" if peer else said
            try:
                return self.apply(text, filename, by, expect=args.get("expect") or None)
            except ApplyRefused as exc:
                raise ControlError(str(exc)) from None
        raise ControlError(f"unknown configuration command {cmd!r}")


def write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".running-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _addr(key, i: int) -> str:
    from ipaddress import IPv4Address
    return f"{IPv4Address(key[i])}:{key[i + 1]}"


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
