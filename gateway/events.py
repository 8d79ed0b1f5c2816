"""The event vocabulary: frozen, versioned domain events and their registry.

Every state change of a call, registration, MGCP endpoint or pinhole is an
event. Events are frozen, slotted dataclasses declared with :func:`event`, which
gives each a stable type name and a schema version. The journal stores
``(type, schema, payload)`` where payload is :meth:`Event.to_payload` (plain
dicts, lists, str, int, bytes, bool, None: whatever msgpack carries), and reads
it back with :func:`decode`, upcasting old schema versions first (old payloads
are never rewritten on disk).

State is the fold of events: each domain module provides a pure
``apply(state, event) -> state`` that the live path, replay and the standby
all use.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable, ClassVar, TypeVar

from gateway import event_wire
from gateway.construct import frozen_constructor
from gateway.event_payload import _PLAIN, _PLANS, UndecodableEvent, UnknownEvent, _encode, _plan
from gateway.event_steps import FullIds, _named, local_marks, relative_ids, step_entries, step_key

# The payload's plans and errors and the step records' readers stay importable from here.
__all__ = ["E", "STEP_TYPE", "Event", "StepEvents", "UndecodableEvent", "UnknownEvent", "decode", "domain_event",
           "event", "expand", "in_steps", "registered", "step_entries", "step_key", "upcaster",
           "_PLAIN", "_PLANS", "_encode", "_encoder", "_named", "_plan", "_wire_of"]

_REGISTRY: dict[str, type["Event"]] = {}
# (type name, from schema) -> function(payload) -> payload of schema + 1
_UPCASTERS: dict[tuple[str, int], Callable[[dict], dict]] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Base of every domain event. Subclasses are declared with :func:`event`."""

    TYPE: ClassVar[str] = ""
    SCHEMA: ClassVar[int] = 1

    @property
    def stream(self) -> str:
        """The stream (entity) this event belongs to, e.g. ``call/<id>``."""
        raise NotImplementedError(f"{type(self).__name__} must define stream")

    def to_payload(self) -> dict[str, Any]:
        # Every event is journaled: the field plan is computed once per class
        # (dataclasses.fields() per call was most of the cost of an append).
        plan = _PLANS.get(type(self)) or _plan(type(self))
        return {name: (v if type(v) in _PLAIN else _encode(v))
                for name in plan.names for v in (getattr(self, name),)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "Event":
        plan = _PLANS.get(cls) or _plan(cls)
        plain = plan.plain
        if plain is not None and payload.keys() <= plain:
            # Every field plain and no key outside them: the payload is the
            # keyword arguments as they are (half the cost of a decode, which
            # a standby and a replay do for every record).
            return cls(**payload)
        kwargs = {}
        for name, kind in plan.decoders:
            if name in payload:
                v = payload[name]
                kwargs[name] = v if kind is None or v is None else kind(v)
        return cls(**kwargs)


E = TypeVar("E", bound=type[Event])


def event(type_name: str, schema: int = 1) -> Callable[[E], E]:
    """Class decorator: register a frozen, slotted event dataclass.

    The class must already be a dataclass subclass of :class:`Event`; this
    records its wire name and schema version."""

    def wrap(cls: E) -> E:
        if type_name in _REGISTRY and _REGISTRY[type_name] is not cls:
            raise ValueError(f"event type {type_name!r} registered twice")
        cls.TYPE = type_name
        cls.SCHEMA = schema
        _REGISTRY[type_name] = cls
        return cls

    return wrap


def domain_event(type_name: str, schema: int = 1, *,
                 stream: Callable[[Any], str] | None = None) -> Callable[[type], type]:
    """Class decorator for an ALG's event: makes the class a frozen, slotted
    dataclass, gives it ``stream`` (the entity it belongs to, computed by
    ``stream(event)``) when the class does not inherit one, and registers it
    with :func:`event` under ``type_name``/``schema``."""

    def wrap(cls: type) -> type:
        cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
        if stream is not None:
            cls.stream = property(stream, doc="The stream (entity) this event belongs to.")
        return event(type_name, schema)(cls)

    return wrap


def upcaster(type_name: str, from_schema: int) -> Callable[[Callable[[dict], dict]], Callable[[dict], dict]]:
    """Register a function turning a payload of ``from_schema`` into ``from_schema + 1``."""

    def wrap(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        _UPCASTERS[(type_name, from_schema)] = fn
        return fn

    return wrap


def decode(type_name: str, schema: int, payload: dict[str, Any], stream: str | None = None) -> Event:
    """Rebuild an event from its journal form, upcasting older schemas.
    ``stream``: the record's, which a step record may name its key by."""
    cls = _REGISTRY.get(type_name)
    if cls is None:
        raise UnknownEvent(f"unknown event type {type_name!r}")
    if schema > cls.SCHEMA:
        raise UnknownEvent(f"{type_name} schema {schema} is newer than this build's {cls.SCHEMA}")
    if not isinstance(payload, dict):
        raise UndecodableEvent(f"{type_name}: payload is a {type(payload).__name__}, not a map")
    try:
        while schema < cls.SCHEMA:
            step = _UPCASTERS.get((type_name, schema))
            if step is None:
                raise UnknownEvent(f"no upcaster for {type_name} schema {schema}")
            payload = step(dict(payload))
            schema += 1
        return cls.from_payload(payload) if cls is not StepEvents else StepEvents.from_payload(payload, stream)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # A missing field is a TypeError of __init__, a bad address a
        # ValueError of IPv4Address, a missing key an upcaster's KeyError.
        raise UndecodableEvent(f"{type_name} schema {schema}: {type(exc).__name__}: {exc}") from None


def registered() -> dict[str, type[Event]]:
    return dict(_REGISTRY)


# --- one record per step: the events one step made for one entity ----------

STEP_TYPE = "step"


@event(STEP_TYPE, schema=2)
@dataclasses.dataclass(frozen=True, slots=True)
class StepEvents(Event):
    """The events one step (a message, a timer, a media refresh) made for one
    entity, journaled as ONE record: a call costs a record per message, not
    per state change (a SIP call was 28-33 records, ~6.6 KB; the record's
    seq, epoch, time, stream and version, the field names, and the ``key``
    every event of a call repeats, were most of it). The events inside are
    folded, mirrored and shown one by one, exactly as if each had its own
    record: readers take them out with :func:`expand`. Payload::

        {"e": [[code, schema, [value, ...]] or [type, schema, {field: value}], ...],
         "k": key}

    An event whose type and schema are in gateway/event_wire.py is written by
    its code with its values in that entry's field order; any other in the
    named form. ``k`` (present when every event has the same ``key`` field)
    is left out of each event and put back on decode; where the record's
    stream ends with that key (``call/<key>``) ``k`` is the number of
    characters before it in the stream, and decoding needs the stream.
    Schema 2: a coded event's id field (gateway/event_wire.py
    ``LOCAL_ID_FIELDS``) holding an id local to the record's entity
    (``<key>#p6``, ``<stream>#g2``) is written relative to the stream
    (gateway/event_steps.py ``LocalId``); schema 1 records hold none."""

    events: tuple[Event, ...]

    @property
    def stream(self) -> str:
        return self.events[0].stream

    def to_payload(self) -> dict[str, Any]:
        # Each event's values in its class's field order (to_payload's order,
        # which _wire_of checked is the table's), read by one attrgetter per
        # class: the journal writer encodes every step of every call.
        rows = []
        key: Any = _UNSET
        for ev in self.events:
            wire, names, get, at, ids, keyless_ids = _ENCODERS.get(type(ev)) or _encoder(type(ev))
            vals = [v if type(v) in _PLAIN else _encode(v) for v in get(ev)]
            k = vals[at] if at is not None else _NO_KEY
            key = k if key is _UNSET or key == k else None
            rows.append((ev, wire, names, vals, at, ids, keyless_ids))
        if type(key) is not str:
            key = None                       # not every event has it, or they differ
        stream = self.stream
        marks = None                         # the relative ids' prefixes, once a row has ids
        inner = []
        for ev, wire, names, vals, at, ids, keyless_ids in rows:
            if key is not None:
                del vals[at]
                names = names[:at] + names[at + 1:]
                ids = keyless_ids
            if wire is None:
                inner.append([ev.TYPE, ev.SCHEMA, dict(zip(names, vals))])
            else:
                if ids:
                    if marks is None:
                        marks = local_marks(stream, key)
                    relative_ids(vals, ids, marks)
                inner.append([wire, ev.SCHEMA, vals])
        if key is None:
            return {"e": inner}
        if len(stream) > len(key) and stream.endswith(key):
            return {"e": inner, "k": len(stream) - len(key)}     # the key is the stream's tail
        return {"e": inner, "k": key}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], stream: str | None = None) -> "StepEvents":
        inner = payload["e"]
        key = step_key(payload, stream)
        if not isinstance(inner, list) or not inner:
            raise ValueError("a step record holds a non-empty list of events")
        events = []
        fast = _FAST_KEYLESS if key is not None else _FAST
        full = None                             # the relative ids written out (one name per record)
        for item in inner:
            if not isinstance(item, list) or len(item) != 3 or type(item[1]) is not int:
                raise ValueError("a step record's event is [type, schema, payload]")
            t, schema, p = item
            if type(t) is int and isinstance(p, list):
                plan = fast.get((t, schema)) or _fast_plan(t, schema, key is not None)
                if plan is not _SLOW and len(p) == plan[2]:
                    # This build's schema, every field plain: the values are
                    # the constructor's arguments (the key put in its place),
                    # the ids among them written out (event_steps.LocalId).
                    made, at, _n, ids = plan
                    for i in ids:
                        v = p[i]
                        if type(v) is slice:
                            if p is item[2]:
                                p = p.copy()            # the record's payload stays as read
                            if full is None:
                                full = FullIds(stream)
                            p[i] = full(v)
                    if at == 0:                 # the ALGs' events: the key first
                        events.append(made(key, *p))
                    else:
                        events.append(made(*p) if at is None else made(*p[:at], key, *p[at:]))
                    continue
                if slice in map(type, p):
                    if full is None:
                        full = FullIds(stream)
                    p = [full(v) if type(v) is slice else v for v in p]
                t, p = _named(t, schema, p, key is not None)
            elif type(t) is str and t != STEP_TYPE and isinstance(p, dict):
                pass
            else:
                raise ValueError("a step record's event is [code, schema, values] or [type, schema, payload]")
            if key is not None:
                p = {**p, "key": key}
            events.append(decode(t, schema, p))
        return cls(tuple(events))


@upcaster(STEP_TYPE, 1)
def _step_from_schema_1(payload: dict[str, Any]) -> dict[str, Any]:
    # Schema 1 wrote every id in full: its values read as they are.
    return payload


_NO_KEY = object()
_UNSET = object()
_WIRE: dict[type, int | None] = {}
# class -> (wire code or None, field names, a getter of their values as a
# tuple, where "key" is or None)
_ENCODERS: dict[type, tuple] = {}


def _encoder(cls: type) -> tuple:
    plan = _PLANS.get(cls) or _plan(cls)
    names = tuple(plan.names)
    if len(names) > 1:
        get = operator.attrgetter(*names)
    else:
        # attrgetter of one name gives the value itself, not a 1-tuple (a
        # one-field event holding a tuple would be read as its fields).
        get = (lambda ev, name=names[0]: (getattr(ev, name),)) if names else (lambda _ev: ())
    enc = (_wire_of(cls), names, get, names.index("key") if "key" in names else None,
           _id_places(names, False), _id_places(names, True))
    _ENCODERS[cls] = enc
    return enc


def _wire_of(cls: type) -> int | None:
    """The class's code when its fields are the table's entry for its
    schema (gateway/event_wire.py), else None: the named form."""
    try:
        return _WIRE[cls]
    except KeyError:
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            return None                     # not an event: nothing to write compactly
        code = event_wire.CODES.get(cls.TYPE)
        names = event_wire.FIELDS.get((cls.TYPE, cls.SCHEMA))
        plan = _PLANS.get(cls) or _plan(cls)
        _WIRE[cls] = code if code is not None and names == plan.names else None
        return _WIRE[cls]


def _id_places(names, keyless: bool) -> tuple[int, ...]:
    """Where among ``names`` the ids local to a record are (gateway/event_wire.py
    LOCAL_ID_FIELDS), with the ``key`` field left out when ``keyless`` (a step
    record whose events share it writes it once)."""
    if keyless:
        names = [n for n in names if n != "key"]
    return tuple(i for i, n in enumerate(names) if n in event_wire.LOCAL_ID_FIELDS)


_SLOW = (None, None, -1, ())
# (code, schema) -> (what builds the class from its values, where the key goes
# or None, values expected, where the id fields are), or _SLOW (no count of
# values matches it) where the values must be named first (an older schema, a
# field that needs a decoder, an unknown code): with and without the call key
# written once.
_FAST: dict[tuple[int, int], tuple] = {}
_FAST_KEYLESS: dict[tuple[int, int], tuple] = {}


def _fast_plan(code: int, schema: int, keyless: bool) -> tuple:
    table = _FAST_KEYLESS if keyless else _FAST
    t = event_wire.TYPES.get(code)
    cls = _REGISTRY.get(t) if t is not None else None
    plan = _SLOW
    if cls is not None and cls.SCHEMA == schema and event_wire.FIELDS.get((t, schema)) is not None:
        p = _PLANS.get(cls) or _plan(cls)
        if p.plain is not None and p.names == event_wire.FIELDS[(t, schema)]:
            made = _maker(cls)
            if not keyless:
                plan = (made, None, len(p.names), _id_places(p.names, False))
            elif "key" in p.names:
                plan = (made, p.names.index("key"), len(p.names) - 1, _id_places(p.names, True))
    table[(code, schema)] = plan
    return plan


def _maker(cls: type) -> Callable[..., Event]:
    """What builds ``cls`` from its values in field order: its slots set
    through their descriptors (gateway/construct.py: a frozen dataclass's
    ``__init__`` pays ``object.__setattr__`` per field, and a standby and a
    replay build every event), or the class itself where that cannot be used."""
    try:
        return frozen_constructor(cls)
    except TypeError:
        return cls


def expand(ev: Event) -> tuple[Event, ...] | list[Event]:
    """The events a decoded record holds: a step record's, or the event itself."""
    return ev.events if type(ev) is StepEvents else (ev,)


def in_steps(events: list[Event]) -> list[Event]:
    """``events`` of one step as they are journaled: each run of consecutive
    events of one stream becomes one :class:`StepEvents` record (a single
    event outside gateway/event_wire.py stays itself). Order is kept, so
    :func:`expand` over the result gives ``events`` back."""
    if len(events) == 1:
        return [_record_of(events)]
    out: list[Event] = []
    run: list[Event] = []
    stream = None
    for ev in events:
        s = ev.stream
        if run and s != stream:
            out.append(_record_of(run))
            run = []
        stream = s
        run.append(ev)
    if run:
        out.append(_record_of(run))
    return out


def _record_of(run: list[Event]) -> Event:
    # A lone event is a step record too where the compact form has it (its
    # field names and type name cost more than the wrapping).
    if len(run) == 1 and _wire_of(type(run[0])) is None:
        return run[0]
    return StepEvents(tuple(run))
