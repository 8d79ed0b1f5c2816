"""What ``gwctl replay`` prints of each ALG's state (ops/commands/replay.py
asks every adapter of gateway.algs.ADAPTERS): its tables, each sorted by key
so that one journal prints the same on every run (the states' maps iterate
in hash order, which varies between processes), and which journal streams
tell the history of the call ``--call`` names.

Each ``*_replay(state, call)`` returns ``(tables, history)``: ``tables`` the
output's keys for that ALG (``call``: only that call, and no registration or
endpoint table); ``history(stream)`` True for a record of that call."""

from __future__ import annotations

from typing import Callable


def _addr(a) -> str:
    return f"{a[0]}:{a[1]}"


def _to(p) -> str | None:
    return _addr(p.to) if p.to else None


def media_view(g) -> dict:
    """A SIP or MGCP media group as ``show calls`` and ``gwctl replay`` print it."""
    return {"group": g.group, "dst": f"{g.dst_ip}:{g.dst_port}",
            "public": f"{g.public_ip}:{g.public_port}" if g.public_ip else None}


def sip_replay(st, call: str | None) -> tuple[dict, Callable[[str], bool]]:
    """SIP calls (by the Call-ID as either side sees it, or the call key) and
    the Incoming DIP registrations."""
    calls = sorted((c for c in st.calls.values()
                    if call is None or call in (c.call_id, c.public_call_id, c.key)),
                   key=lambda c: c.key)
    tables: dict = {
        "calls": [{"call": c.key, "call_id": c.call_id, "public_call_id": c.public_call_id,
                   "phase": c.phase, "mode": c.mode, "private": c.private_ip, "alg": c.alg_ip,
                   "started_at": c.started_at,
                   "media": [media_view(g) for g in c.groups],
                   "pinholes": [{"id": p.id, "kind": p.kind, "dst": _addr(p.dst), "to": _to(p)}
                                for p in c.pinholes]}
                  for c in calls]}
    if call is None:
        tables["registrations"] = sorted(
            ({"public": f"{r.public_ip}:{r.public_port}", "private": f"{r.private_ip}:{r.private_port}",
              "expires_at": r.expires_at} for r in st.registrations.values()),
            key=lambda r: (r["public"], r["private"]))
    # A call that ended before the target still has its story in the
    # journal: found by its stream (call/<Call-ID>;<tag>), not the state.
    streams = {f"call/{c.key}" for c in calls}
    prefix = f"call/{call};"
    return tables, lambda stream: stream in streams or stream.startswith(prefix)


def mgcp_replay(st, call: str | None) -> tuple[dict, Callable[[str], bool]]:
    """MGCP calls (by call id), their connections, media and pinholes; the
    endpoints and the number of open transactions."""
    calls = sorted((c for c in st.calls.values() if call in (None, c.call_id)),
                   key=lambda c: (c.gateway, c.call_id))
    tables: dict = {"mgcp_calls": [_mgcp_call(c) for c in calls]}
    if call is None:
        tables["mgcp_endpoints"] = [
            {"gateway": e.gateway, "endpoint": e.name,
             "in_service": e.out_of_service_at is None,
             "out_of_service_at": e.out_of_service_at, "restart_method": e.restart_method,
             "notified_entity": e.notified_entity}
            for e in sorted(st.endpoints.values(), key=lambda e: (e.gateway, e.name))]
        tables["mgcp_transactions"] = len(st.txns)
    streams = {c.stream for c in calls}
    suffix = f"/{call}"
    return tables, lambda stream: stream in streams or (stream.startswith("mgcp-call/")
                                                        and stream.endswith(suffix))


def _mgcp_call(c) -> dict:
    return {"gateway": c.gateway, "call_id": c.call_id, "started_at": c.started_at,
            "connections": sorted(c.connections),
            "media": [{**media_view(g), "connection": g.conn_id}
                      for g in sorted(c.groups.values(), key=lambda g: g.group)],
            "pinholes": [{"id": p.id, "direction": p.direction, "dst": _addr(p.dst), "to": _to(p)}
                         for p in sorted(c.pinholes.values(), key=lambda p: p.id)]}


def h323_replay(st, call: str | None, summary) -> tuple[dict, Callable[[str], bool]]:
    """H.323 calls (manual ch. 1), keyed by their H.225.0 callIdentifier, as
    ``show calls`` summarises them (``summary``) with their pinholes; the RAS
    registrations behind incoming DIP addresses."""
    tables: dict = {"h323_calls": [summary(st, k) | {
        "pinhole_list": [{"id": p.id, "kind": p.kind, "group": p.group, "dst": _addr(p.dst), "to": _to(p)}
                         for p in sorted(st.calls[k].pinholes.values(), key=lambda p: p.id)]}
        for k in sorted(st.calls) if call is None or call == k]}
    if call is None:
        tables["h323_registrations"] = sorted(
            ({"public": _addr(r.public), "private": _addr(r.private), "expires_at": r.expires_at}
             for r in st.registrations.values()),
            key=lambda r: (r["public"], r["private"]))
    stream = f"h323-call/{call}"
    return tables, lambda s: s == stream
