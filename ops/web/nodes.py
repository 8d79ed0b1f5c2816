"""The nodes the web interface shows, reached over their control channels
(actors/control.py) with the same queries as ``gwctl``: ``status`` for the
dashboard, ``show``/``get-session`` for the tables, ``ladder``/``call-list``
for calls, ``failover``/``clear-session`` for operations."""

from __future__ import annotations

from typing import Any, Callable

from ops.control_client import call as control_call

Caller = Callable[..., Any]


class NodeUnreachable(Exception):
    pass


class Pair:
    """The control sockets of the nodes shown (both of a pair when both are
    reachable from this host, as in the lab; else this node's own, which
    reports its peer as last heard)."""

    def __init__(self, sockets: list[str], call: Caller = control_call, timeout: float = 5.0) -> None:
        if not sockets:
            raise ValueError("no node to show: give at least one control socket")
        self.sockets = list(sockets)
        self._call = call
        self.timeout = timeout

    def ask(self, socket: str, cmd: str, args: dict | None = None, timeout: float | None = None):
        try:
            return self._call(cmd, args or {}, node=socket, timeout=timeout or self.timeout)
        except (ConnectionError, OSError) as exc:
            raise NodeUnreachable(str(exc)) from None

    def statuses(self) -> list[dict]:
        """One entry per node: ``{"socket", "ok", "status" | "error"}``."""
        out = []
        for s in self.sockets:
            try:
                out.append({"socket": s, "ok": True, "status": self.ask(s, "status")})
            except (NodeUnreachable, RuntimeError) as exc:
                out.append({"socket": s, "ok": False, "error": str(exc)})
        return out

    def active(self, statuses: list[dict] | None = None) -> str | None:
        for e in statuses if statuses is not None else self.statuses():
            if e["ok"] and e["status"].get("role") == "active":
                return e["socket"]
        return None

    def ask_active(self, cmd: str, args: dict | None = None, timeout: float | None = None):
        """Ask the active node (the one whose state is authoritative); the
        first reachable node when none reports active."""
        sts = self.statuses()
        sock = self.active(sts) or next((e["socket"] for e in sts if e["ok"]), None)
        if sock is None:
            raise NodeUnreachable("no node answers: " + "; ".join(e.get("error", "") for e in sts))
        return sock, self.ask(sock, cmd, args, timeout)


def _pinhole_alg(row: dict) -> str:
    if str(row.get("id", "")).startswith("mgcp-call/") or str(row.get("call", "")).startswith("mgcp-call/"):
        return "mgcp"
    return "h323" if row.get("kind") in ("q931", "h245", "rtp", "rtcp") else "sip"


def dashboard(pair: Pair) -> dict:
    """The dashboard's numbers: each node's status as `gwctl status` shows
    it, and per ALG counts from the active node's tables."""
    sts = pair.statuses()
    active = pair.active(sts)
    nodes = []
    for e in sts:
        if not e["ok"]:
            nodes.append({"socket": e["socket"], "reachable": False, "error": e["error"]})
            continue
        s = e["status"]
        ingest = s.get("ingest") or {}
        codes = ingest.get("drop_codes")
        if codes is None:
            codes = (s.get("datapath") or {}).get("drop_codes") or {}
        ov = ingest.get("overload") or {}
        peer = s.get("peer") or {}
        nodes.append({"socket": e["socket"], "reachable": True, "node": s["node"], "role": s["role"],
                      "epoch": s["epoch"], "forwarding": s["forwarding"], "replication": s["replication"],
                      "journal_head": s["journal_head"], "applied": s["applied"],
                      "peer": {"role": peer.get("role"), "epoch": peer.get("epoch"),
                               "seen_ago_ms": peer.get("seen_ago_ms"), "lag_events": peer.get("lag_events")}
                      if peer else None,
                      "calls": s["calls"], "registrations": s["registrations"], "pinholes": s["pinholes"],
                      "endpoints": s.get("endpoints"),
                      "drops": dict(sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))),
                      "alg_drops": s.get("drops") or {},
                      "shed": ov.get("shed", 0), "admitted": ov.get("admitted", 0),
                      "overloaded": bool(ov.get("overloaded"))})
    per_alg = {a: {"calls": 0, "pinholes": 0, "registrations": 0, "endpoints": 0} for a in ("sip", "mgcp", "h323")}
    if active is not None:
        try:
            for r in pair.ask(active, "show", {"what": "calls"}):
                if r:
                    per_alg[r.get("alg", "sip")]["calls"] += 1
            for r in pair.ask(active, "show", {"what": "pinholes"}):
                per_alg[_pinhole_alg(r)]["pinholes"] += 1
            for r in pair.ask(active, "show", {"what": "registrations"}):
                per_alg["sip" if "call_id" in r else "h323"]["registrations"] += 1
            per_alg["mgcp"]["endpoints"] = len(pair.ask(active, "show", {"what": "endpoints"}))
        except (NodeUnreachable, RuntimeError):
            pass
    return {"nodes": nodes, "active": active, "per_alg": per_alg}
