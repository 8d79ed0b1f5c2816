"""An event's journal payload: the field plan of each event class (which
fields a payload holds and how each is read back), the plain encoding of
values, and the errors of a record that does not make an event."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from typing import Any, Callable


class UnknownEvent(Exception):
    """A journal record names an event type or schema this build does not know."""


class UndecodableEvent(UnknownEvent):
    """A journal record of a known type whose payload does not make that
    event (a field missing, unknown or of the wrong kind)."""


_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    names: tuple[str, ...]
    # (field name, decoder or None for plain values)
    decoders: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    # The field names when no field needs a decoder, else None.
    plain: frozenset[str] | None = None


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    fields = dataclasses.fields(cls)
    decoders = []
    for f in fields:
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if ann.startswith("IPv4Address"):
            dec = IPv4Address
        elif ann.startswith("tuple"):
            dec = _as_tuple
        elif ann.startswith("frozenset"):
            dec = _as_frozenset
        else:
            dec = None
        decoders.append((f.name, dec))
    plan = _Plan(tuple(f.name for f in fields), tuple(decoders),
                 None if any(dec for _, dec in decoders) else frozenset(f.name for f in fields))
    _PLANS[cls] = plan
    return plan


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def _as_frozenset(value: Any) -> Any:
    if isinstance(value, list):
        return frozenset(tuple(v) if isinstance(v, list) else v for v in value)
    return value


# --- payload encoding: keep the journal format plain and language-neutral ---

def _encode(value: Any) -> Any:
    if isinstance(value, IPv4Address):
        return str(value)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, frozenset):
        return sorted(_encode(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
