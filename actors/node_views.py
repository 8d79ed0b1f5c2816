"""The operator's views and commands of a node (``gwctl show``, ``status``,
``history``, ``get``/``clear session``, the control channel's dispatch).

``NodeViews`` is a part of :class:`actors.node.Node` (a base class): it owns
no state and only reads the node's (its state under ``state_lock``, its
datapath under ``dp_lock``, its journal, writer and replicator); the views of
each ALG's state are the pure functions of ``gateway/algs.py``."""

from __future__ import annotations

import logging
import time

from actors.algs import all_calls, all_registrations, entity_summary
from gateway import ha
from gateway.datapath.pinholes import sip_media_pinholes
from gateway.datapath.session_filter import FilterError, media_by_pinhole, parse_filter, session_row

log = logging.getLogger("gateway.node")


class NodeViews:
    def entity_summary(self, stream: str) -> dict | None:
        return entity_summary(self.state, stream)

    def show(self, what: str) -> list[dict]:
        with self.state_lock:
            st = self.state
        if what == "calls":
            return all_calls(st)
        if what == "registrations":
            return all_registrations(st)
        if what == "pinholes":
            media = {}
            if self.datapath is not None and hasattr(self.datapath, "sessions"):
                with self.dp_lock:
                    media = media_by_pinhole(self.datapath.sessions)
            return [{"id": p.id, "call": p.call, "group": p.group, "kind": p.kind, "proto": p.proto,
                     "direction": p.direction, "dst": f"{p.dst[0]}:{p.dst[1]}",
                     "to": f"{p.to[0]}:{p.to[1]}" if p.to else None, "expires_at": p.expires_at,
                     **({"traffic": media[p.id]} if p.id in media else {})}
                    for p in self._open_pinholes(st)]
        if what == "endpoints":
            now = self.clock()
            return [{"gateway": e.gateway, "endpoint": e.name,
                     "state": "in service" if e.in_service(now) else f"out of service ({e.restart_method})",
                     "notified_entity": e.notified_entity or e.notified_source}
                    for e in st.mgcp.endpoints.values()]
        raise ValueError(f"show what? expected calls, registrations, endpoints or pinholes, got {what!r}")

    def status(self) -> dict:
        r = self.role
        now = time.monotonic()
        out = {"node": self.node_id, "role": r.role, "epoch": r.epoch,
               "forwarding": ha.may_forward(r, now),
               # What is left of the fencing lease (None: not fenced or not active).
               "lease_left_ms": round((r.lease_until - now) * 1000) if r.lease is not None
               and r.role == "active" else None,
               "replication": self.mode, "journal_head": self.journal.head,
               "applied": self.journal.head if r.role == "active" else self.applied,
               "calls": len(self.sip.calls) + len(self.state.mgcp.calls) + len(self.state.h323.calls),
               "registrations": len(self.sip.registrations) + len(self.state.h323.registrations),
               "endpoints": len(self.state.mgcp.endpoints),
               "pinholes": len(self._open_pinholes(self.state)),
               "actors": self.pool.live_count(), "counters": dict(self.counters),
               "drops": dict(self.drop_reasons), "drop_codes": dict(self.drop_codes),
               "last_failover": self.last_failover,
               "journal": {"batches": self.writer.batches, "records": self.writer.records,
                           "events": self.writer.events,
                           "ack_lapses": self.writer.ack_lapses,
                           "unreplicated_batches": self.writer.unreplicated_batches,
                           "first": self.journal.first_seq, "recovery": self.recovery},
               "snapshots": self.snapshots.status() if self.snapshots is not None else None}
        if self.replicator is not None:
            rs = self.replicator.status()
            lag = None if rs.peer_head is None else max(0, self.journal.head - (rs.peer_applied or 0))
            out["peer"] = {"role": rs.peer_role, "epoch": rs.peer_epoch, "seen_ago_ms":
                           None if rs.peer_seen_ago is None else round(rs.peer_seen_ago * 1000, 1),
                           "head": rs.peer_head, "applied": rs.peer_applied,
                           "lag_events": lag if r.role == "active" else None,
                           "standby_connected": self.replicator.has_standby()}
        if self.datapath is not None and hasattr(self.datapath, "stats"):
            with self.dp_lock:
                out["datapath"] = self.datapath.stats()
        return out

    def control(self, cmd: str, args: dict):
        """The control channel's commands (``gwctl``)."""
        from actors.control import ControlError
        if cmd == "status":
            return self.status()
        if cmd == "show":
            try:
                return self.show(str(args.get("what", "")))
            except ValueError as exc:
                raise ControlError(str(exc)) from None
        if cmd == "failover":
            try:
                return self.failover(float(args.get("timeout", 3.0)))
            except RuntimeError as exc:
                raise ControlError(str(exc)) from None
        if cmd == "history":
            return self.history(str(args.get("call", "")))
        if cmd == "ladder":
            # The ladder of one call (gateway/ladder.py) from this node's journal.
            from journal.call_ladder import ladder
            call = str(args.get("call", ""))
            if not call:
                raise ControlError("ladder needs a call id (gwctl call list shows them)")
            found = ladder(self.journal, call)
            return None if found is None else found.to_dict()
        if cmd == "call-list":
            from journal.call_ladder import calls
            limit, window = args.get("limit"), args.get("window")
            return [c.to_dict() for c in calls(self.journal, limit=int(limit) if limit else None,
                                               window=int(window) if window else None)]
        if cmd.startswith("config-"):
            if self.live_config is None:
                raise ControlError("this node does not take configuration commands")
            return self.live_config.control(cmd, args)
        if cmd in ("get-session", "clear-session"):
            words = args.get("filter") or []
            if not isinstance(words, list):
                raise ControlError("session filter: want a list of words, e.g. "
                                   '["src-ip", "1.1.1.9", "protocol", "udp"]')
            try:
                if cmd == "get-session":
                    return self.get_sessions(words)
                return self.clear_sessions(words, all_=bool(args.get("all")))
            except (FilterError, RuntimeError) as exc:
                raise ControlError(str(exc)) from None
        raise ControlError(f"unknown command {cmd!r}; expected status, show, failover, history, "
                           "ladder, call-list, get-session, clear-session, config-running or config-apply")

    # Sessions live in this node's datapath only: they are not journaled or
    # replicated (the standby holds none of the active's; a node taking over
    # clears what it had and rebuilds from the ALGs' replicated state: the
    # open pinholes and, for established voice channels, takeover pinholes).
    # So `get session` shows, and `clear session` removes, this node's own.

    def get_sessions(self, words) -> list[dict]:
        """``gwctl get session [src-ip A] [dst-ip A] [src-port N] [dst-port N]
        [protocol P] [id N]``: this node's sessions matching every word."""
        f = parse_filter(words)
        if self.datapath is None:
            return []
        now = self.clock()
        with self.dp_lock:
            return [session_row(s, now) for s in self.datapath.sessions if f.matches(s)]

    def clear_sessions(self, words, *, all_: bool = False) -> dict:
        """``gwctl clear session [filters]``: remove the matching sessions of
        this node's datapath; the flows' next packets start again (policy,
        the ALG, a pinhole). A cleared media session of a call still in
        progress gets the call's takeover pinholes back (as after a
        failover), so the call's media finds its way again. Without a filter
        nothing is cleared unless ``all_`` (``clear session all``)."""
        f = parse_filter(words)
        if f.is_empty() and not all_:
            raise RuntimeError("clear session needs a filter (src-ip, dst-ip, src-port, dst-port, "
                               "protocol, id) or `all`")
        if self.datapath is None:
            return {"cleared": 0, "sessions": [], "pinholes_reopened": 0}
        now = self.clock()
        with self.state_lock:
            st = self.state
        with self.dp_lock:
            gone = [s for s in self.datapath.sessions if f.matches(s)]
            rows = [session_row(s, now) for s in gone]
            for s in gone:
                self.datapath.remove_session(s)
            groups = {g for s in gone if s.kind == "media" for g in (s.group, s.rev_group) if g}
            reopen = []
            if groups and self.role.role == "active":
                reopen = [p for p in sip_media_pinholes(st.sip)
                          if p.group in groups and p.id not in self.datapath.pinholes]
                self.datapath.install_pinholes(reopen)
        for r in rows:
            log.warning("node %s: session %d cleared by the operator: %s %s -> %s", self.node_id,
                        r["id"], r["protocol"], r["src"], r["dst"])
        return {"cleared": len(rows), "sessions": rows, "pinholes_reopened": len(reopen)}

    def history(self, call_id: str) -> list[dict]:
        """The journaled events of a call, by Call-ID (or a call key)."""
        if not call_id:
            raise ValueError("history needs a Call-ID")
        prefix = f"call/{call_id}"
        out = []
        # From the oldest record retention kept (older calls' events are gone).
        for rec in self.journal.read(self.journal.first_seq):
            # SIP: call/<Call-ID>;<tag>; MGCP: mgcp-call/<gateway>/<CallId>
            if (rec.stream == prefix or rec.stream.startswith(prefix + ";")
                    or (rec.stream.startswith("mgcp-call/") and rec.stream.endswith("/" + call_id))):
                out += [{"seq": rec.seq, "epoch": rec.epoch, "at": rec.timestamp, "stream": rec.stream,
                         "type": t, "event": p} for t, p in rec.entries()]
        return out
