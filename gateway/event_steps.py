"""A step record's events read without building them (the raw history's
views): the key they share, and the names of a compact event's values
(gateway/event_wire.py)."""

from __future__ import annotations

from typing import Any

from gateway import event_wire
from gateway.event_payload import UnknownEvent


def step_entries(payload: Any, stream: str | None) -> list[tuple[str, dict[str, Any]]]:
    """``(type, payload)`` of each event a step record's payload holds, named
    and with the shared ``key`` put back, without building the events (the
    raw history's views: ``Record.entries``). Never raises: an item that is
    not an event of this build is left out (decoding the record reports it)."""
    if not isinstance(payload, dict):
        return []
    try:
        key = step_key(payload, stream)
    except ValueError:
        key = None
    inner = payload.get("e")
    keyless = type(key) is str
    out = []
    for item in inner if isinstance(inner, list) else ():
        if not isinstance(item, list) or len(item) != 3:
            continue
        t, schema, p = item
        if type(t) is int and type(schema) is int and isinstance(p, list):
            try:
                t, p = _named(t, schema, p, keyless)
            except (UnknownEvent, ValueError):
                continue
        elif not isinstance(p, dict):
            continue
        out.append((str(t), {**p, "key": key} if keyless else p))
    return out


def step_key(payload: dict[str, Any], stream: str | None) -> str | None:
    """The key a step record's events share (``k``), or None."""
    k = payload.get("k")
    if k is None or type(k) is str:
        return k
    if type(k) is int and stream is not None and 0 < k < len(stream):
        return stream[k:]
    raise ValueError("a step record's key is a text, or where it starts in the record's stream")


def _named(code: int, schema: int, values: list, keyless: bool) -> tuple[str, dict[str, Any]]:
    """``(type, payload)`` of an event written in the compact form."""
    t = event_wire.TYPES.get(code)
    if t is None:
        raise UnknownEvent(f"unknown event code {code} in a step record")
    names = event_wire.FIELDS.get((t, schema))
    if names is None:
        raise UnknownEvent(f"{t} schema {schema} has no field order in this build")
    if keyless:
        names = tuple(n for n in names if n != "key")
    if len(values) != len(names):
        raise ValueError(f"{t}: {len(values)} values for {len(names)} fields")
    return t, dict(zip(names, values))
