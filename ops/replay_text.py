"""The text form of ``gwctl replay``: the state as tables (SIP, H.323 and
MGCP calls, registrations, MGCP endpoints, media and pinholes) and a call's
history as one line per journal record, its event's fields written out as
``name=value`` (addresses as ``ip:port``, deadlines relative to the record).

It reads the same data the ``--json`` form prints (ops/commands/replay.py),
so the two never disagree."""

from __future__ import annotations

from typing import Iterable

from ops.text_table import cell, section, table, utc

# Fields an event repeats from the stream its history is printed under.
_IDENTITY = ("key", "call_id", "gateway")


def state_lines(out: dict, *, one_call: bool) -> list[str]:
    """The state part of the output (everything but the history)."""
    lines: list[str] = []
    sip = out["calls"]
    lines += section("SIP calls", ["CALL", "PHASE", "MODE", "PRIVATE", "ALG", "STARTED (UTC)",
                                   "MEDIA", "PINHOLES"],
                     [[c["call"], c["phase"], c["mode"], c["private"], c["alg"],
                       utc(c["started_at"]), len(c["media"]), len(c["pinholes"])] for c in sip])
    if not one_call:
        lines += section("SIP registrations", ["PUBLIC", "PRIVATE", "EXPIRES (UTC)"],
                         [[r["public"], r["private"], utc(r["expires_at"])]
                          for r in out.get("registrations", [])])
    h323 = out["h323_calls"]
    lines += section("H.323 calls", ["CALL", "PHASE", "CONNECTION", "CALL REF", "STARTED (UTC)",
                                     "H.245", "MEDIA", "PINHOLES"],
                     [[c["call"], c["phase"], c["connection"], c.get("call_reference"),
                       utc(c.get("since")), c["h245"], len(c["media"]), c["pinholes"]]
                      for c in h323])
    if not one_call:
        lines += section("H.323 registrations", ["PUBLIC", "PRIVATE", "EXPIRES (UTC)"],
                         [[r["public"], r["private"], utc(r["expires_at"])]
                          for r in out.get("h323_registrations", [])])
    mgcp = out["mgcp_calls"]
    lines += section("MGCP calls", ["GATEWAY", "CALL-ID", "CONNECTIONS", "STARTED (UTC)", "MEDIA",
                                    "PINHOLES"],
                     [[c["gateway"], c["call_id"], c["connections"], utc(c["started_at"]),
                       len(c["media"]), len(c["pinholes"])] for c in mgcp])
    if not one_call:
        lines += section("MGCP endpoints", ["GATEWAY", "ENDPOINT", "STATE", "NOTIFIED ENTITY"],
                         [[e["gateway"], e["endpoint"],
                           "in service" if e["in_service"] else
                           f"out of service since {utc(e['out_of_service_at'])}"
                           + (f" ({e['restart_method']})" if e.get("restart_method") else ""),
                           e["notified_entity"]] for e in out.get("mgcp_endpoints", [])])
        if out.get("mgcp_transactions"):
            lines.append(f"MGCP transactions awaiting a response: {out['mgcp_transactions']}")
    # Identifiers shown without the call's name in front (it has a column).
    def own(call: str, *streams: str) -> tuple[str, ...]:
        return tuple(x for st in (call, *streams) for x in (st + "#", st + "/"))

    media = [["SIP", c["call"], _short(m["group"], own(c["call"], f"call/{c['call']}")), None,
              m["dst"], m["public"]] for c in sip for m in c["media"]]
    media += [["H.323", c["call"], _short(g, own(c["call"])), None,
               [p["dst"] for p in c.get("pinhole_list", []) if p.get("group") == g], None]
              for c in h323 for g in c["media"]]
    media += [["MGCP", f"{c['gateway']}/{c['call_id']}",
               _short(m["group"], own(f"mgcp-call/{c['gateway']}/{c['call_id']}")),
               m["connection"], m["dst"], m["public"]] for c in mgcp for m in c["media"]]
    lines += section("Media", ["ALG", "CALL", "GROUP", "CONNECTION", "ADDRESS", "PUBLIC"], media)
    holes = [["SIP", c["call"], _short(p["id"], own(c["call"], f"call/{c['call']}")), p["kind"],
              p["dst"], p["to"]] for c in sip for p in c["pinholes"]]
    holes += [["H.323", c["call"], _short(p["id"], own(c["call"])), p["kind"], p["dst"], p["to"]]
              for c in h323 for p in c.get("pinhole_list", [])]
    holes += [["MGCP", f"{c['gateway']}/{c['call_id']}",
               _short(p["id"], own(f"mgcp-call/{c['gateway']}/{c['call_id']}")), p["direction"],
               p["dst"], p["to"]] for c in mgcp for p in c["pinholes"]]
    lines += section("Pinholes", ["ALG", "CALL", "PINHOLE", "KIND", "TO ADDRESS", "FORWARDED TO"],
                     holes)
    return lines


def _short(value: object, prefixes: tuple[str, ...]) -> object:
    """An identifier without the call's own name in front of it."""
    if isinstance(value, str):
        for p in prefixes:
            if p and value.startswith(p) and len(value) > len(p):
                return value[len(p):].lstrip("/")
    return value


def describe(payload: dict, at: float, stream: str) -> str:
    """One event's fields as ``name=value`` words: the call's identity left
    out (the history is printed under it), ``X_ip``/``X_port`` joined as
    ``X=ip:port``, times and deadlines relative to the record (``+120.0s``),
    absent values left out."""
    names = {stream, stream.split("/", 1)[-1], str(payload.get("key", "") or "")} - {""}
    prefixes = tuple(n + sep for n in sorted(names, key=len, reverse=True) for sep in "#/")
    words: list[str] = []
    done: set[str] = set()
    for name, value in payload.items():
        if name in done or name in _IDENTITY:
            continue
        if name.endswith("_ip") and f"{name[:-3]}_port" in payload:
            port = payload[f"{name[:-3]}_port"]
            done.add(f"{name[:-3]}_port")
            if value is None:
                continue
            name, value = name[:-3], f"{value}:{port}"
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, float) and (name == "at" or name.endswith(("deadline", "expires_at",
                                                                          "_at", "expires"))):
            if name == "at" and abs(value - at) < 1e-6:
                continue
            value = f"{value - at:+.1f}s"
        else:
            value = cell(_short(value, prefixes))
            if " " in value:
                value = f'"{value}"'
        words.append(f"{name}={value}")
    return " ".join(words)


def history_lines(events: Iterable[dict]) -> list[str]:
    """Each stream's records under a heading: sequence number, UTC time,
    seconds since the stream's first record shown, event, its fields."""
    by_stream: dict[str, list[dict]] = {}
    for e in events:
        by_stream.setdefault(e.get("stream", ""), []).append(e)
    lines: list[str] = []
    for stream, evs in by_stream.items():
        first = evs[0]["at"]
        lines.append(f"History of {stream or 'the call'} ({len(evs)} records)")
        lines += table(["SEQ", "TIME (UTC)", "+SECONDS", "EVENT", "DETAILS"],
                       [[f"#{e['seq']}", utc(e["at"]), f"{e['at'] - first:+.3f}",
                         e["type"], describe(e["event"], e["at"], stream)] for e in evs])
    if not lines:
        lines.append("History: no records of this call")
    return lines


__all__ = ["state_lines", "describe", "history_lines"]
