"""A step record's events read without building them (the raw history's
views): the key they share, the names of a compact event's values
(gateway/event_wire.py), and the ids written relative to the record's stream."""

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
                if slice in map(type, p):
                    p = local_ids(p, stream)
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


# An id a call's ALG made for its pinholes and media groups is the call's
# name, "#", and a serial ("<key>#p6", "<mgcp stream>#g2"): the name is the
# record's stream or its tail, so a step record writes only what follows the
# "#" with where the name starts in the stream (0: the whole stream; SIP:
# len("call/")). The ids were a quarter of a SIP call's journal bytes. The
# journal writes one as msgpack's ext type of that code (journal/record.py).
#
# Here, written and read, a relative id is a ``slice``: ``start`` where the
# name starts in the stream, ``stop`` the UTF-8 bytes after the "#", so it
# stands for ``stream[start:] + "#" + stop.decode()``. A builtin, because
# msgpack's unpacker then makes one per id without running Python code (the
# journal passes ``slice`` as its ext hook): a dataclass of ours cost ~1 us
# per id there, and a standby and a replay decode every record.
LocalId = slice
LOCAL_ID_MAX_SKIP = 127            # msgpack's highest application ext code


def local_marks(stream: str, key: str | None) -> tuple[tuple[str, int], ...]:
    """``(prefix, code)`` of the ids a step record of ``stream`` writes
    relative to it: the key where it is the stream's tail, and the stream's
    own name."""
    marks = [(stream + "#", 0)]
    if key is not None and len(stream) > len(key) and stream.endswith(key):
        skip = len(stream) - len(key)
        if skip <= LOCAL_ID_MAX_SKIP:
            marks.insert(0, (key + "#", skip))
    return tuple(marks)


def relative_ids(values: list, places, marks: tuple[tuple[str, int], ...]) -> None:
    """Write, in place, each of ``values`` at ``places`` (the id fields) that
    is an id local to the record (it starts with one of ``marks``' prefixes)
    in its relative form."""
    for i in places:
        v = values[i]
        if type(v) is str:
            for prefix, code in marks:
                if v.startswith(prefix):
                    values[i] = slice(code, v[len(prefix):].encode())
                    break


def id_prefix(start: Any, stream: str | None) -> str:
    """What a relative id's bytes follow: the name that starts at ``start``
    in the record's ``stream``, and "#". Raises ValueError for a place that
    is not in it."""
    if type(start) is not int or stream is None or not 0 <= start < len(stream):
        raise ValueError("a step record's relative id names no place in the record's stream")
    return stream[start:] + "#"


class FullIds:
    """The relative ids of one record of ``stream`` written out in full: the
    name a place stands for is looked up once per place (a record's ids
    mostly share one). A call raises ValueError for an id that names no
    place in the stream or is not [place, bytes]."""

    __slots__ = ("stream", "_start", "_prefix")

    def __init__(self, stream: str | None) -> None:
        self.stream = stream
        self._start: Any = None
        self._prefix = ""

    def __call__(self, v: slice) -> str:
        rest = v.stop
        if type(rest) is not bytes or v.step is not None:
            raise ValueError("a step record's relative id is [place, bytes]")
        if v.start != self._start or self._start is None:
            self._prefix = id_prefix(v.start, self.stream)
            self._start = v.start
        return self._prefix + rest.decode()         # UnicodeDecodeError is a ValueError


def local_ids(values: list, stream: str | None) -> list:
    """``values`` with each relative id written out in full against the
    record's ``stream``. Raises ValueError for one that names no place in it."""
    full = FullIds(stream)
    return [full(v) if type(v) is slice else v for v in values]
