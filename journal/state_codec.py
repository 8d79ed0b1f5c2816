"""The folded state as bytes, for snapshots: encode without holding the
interpreter for long, decode fast, and build nothing but state objects.

A node's state is a tree of frozen slotted dataclasses whose large parts are
``immutables.Map`` fields (calls, registrations, pinholes...). The encoding
walks the dataclasses of the top levels and cuts every large map into chunks
of ``CHUNK`` entries, each pickled on its own: one ``pickle.dumps`` call (C
code that never lets another thread run) covers at most ``CHUNK`` entries, so
a snapshot taken beside a busy datapath holds the GIL for well under a
millisecond at a time instead of for the whole state.

Pickle because it is the fastest decoder the standard library has for such a
tree (a restart must load the state in well under the restart target); the
loader accepts only classes of the gateway's own state (dataclasses and enums
under ``gateway.``), ``immutables.Map`` and a few plain builtins, so a
damaged or hostile file cannot name any other callable (the Python
documentation's "Restricting Globals").

Layout (msgpack-friendly plain data, the leaves are pickle bytes)::

    ["d", "module:QualName", {field: node, ...}]   a dataclass walked into
    ["m", [chunk bytes, ...]]                       a map cut into chunks
    ["p", bytes]                                    any other value, pickled
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import io
import operator
import pickle
from typing import Any, Callable

from immutables import Map

from gateway.construct import frozen_constructor

# Entries per pickled chunk of a map: ~0.2 ms of pickling for SIP calls.
CHUNK = 256
# How deep the encoder walks dataclasses looking for maps to cut (DomainState
# -> SipState -> its maps): below that, a value is one pickle.
WALK_DEPTH = 3
_PROTOCOL = 5

_BUILTINS = {("builtins", n) for n in ("frozenset", "set", "tuple", "list", "dict", "complex",
                                       "bytearray", "slice", "range", "int", "float", "str")}
_OTHER = {("immutables._map", "Map"), ("immutables", "Map"),
          ("ipaddress", "IPv4Address"), ("ipaddress", "IPv6Address"),
}


class StateDecodeError(ValueError):
    """Snapshot state bytes that are not a state this build can rebuild."""


# A frozen slotted dataclass pickles by default through dataclasses'
# __getstate__/__setstate__, which call fields() per object: most of the time
# of a snapshot. Here it is reduced to (its class, its field values) and
# rebuilt through gateway.construct's slot setters, an order faster.
_GETTERS: dict[type, Callable[[Any], tuple] | None] = {}
_BUILDERS: dict[type, Callable[..., Any]] = {}
# Each field's default (dataclasses.MISSING: none), for records written
# before their class gained fields (see _build).
_DEFAULTS: dict[type, tuple] = {}


def _getter(cls: type) -> Callable[[Any], tuple] | None:
    try:
        return _GETTERS[cls]
    except KeyError:
        pass
    get = None
    if (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__
            and not hasattr(cls, "__post_init__")):
        names = [f.name for f in dataclasses.fields(cls)]
        if len(names) == 1:
            one = operator.attrgetter(names[0])
            get = lambda o: (one(o),)  # noqa: E731
        elif names:
            get = operator.attrgetter(*names)
    _GETTERS[cls] = get
    return get


def _build(cls: type, values: tuple) -> Any:
    """Loader side of a reduced dataclass (named in pickles as journal.state_codec._build).

    A record written before fields with defaults were added at the end of
    its class (e.g. a SIP pinhole before ``channel`` and ``alg``,
    gateway.pinhole) takes their defaults; any other shortfall is not a
    state of this build."""
    make = _BUILDERS.get(cls)
    if make is None:
        if _getter(cls) is None:
            raise StateDecodeError(f"{cls.__qualname__} is not a frozen slotted state class")
        make = _BUILDERS[cls] = frozen_constructor(cls)
        _DEFAULTS[cls] = tuple(f.default for f in dataclasses.fields(cls))
    defaults = _DEFAULTS[cls]
    if len(values) < len(defaults):
        later = defaults[len(values):]
        if any(d is dataclasses.MISSING for d in later):
            raise StateDecodeError(f"{cls.__qualname__}: {len(values)} values where {len(defaults)} expected")
        values = tuple(values) + later
    return make(*values)


class _Dumper(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        get = _getter(type(obj))
        if get is None:
            return NotImplemented
        return _build, (type(obj), get(obj))


def _dumps(value: Any, canonical: bool = False) -> bytes:
    buf = io.BytesIO()
    p = _Dumper(buf, _PROTOCOL)
    # canonical: no memo, so the bytes depend on the values only, not on
    # which objects the fold happened to share: equal states give equal
    # bytes (for comparing states byte for byte). Snapshots keep the memo:
    # half the size and four times faster to load (each class is named once).
    p.fast = canonical
    p.dump(value)
    return buf.getvalue()


class _Loader(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, "_build"):
            return _build
        if (module, name) in _BUILTINS or (module, name) in _OTHER:
            return super().find_class(module, name)
        if module == "gateway" or module.startswith("gateway."):
            obj = super().find_class(module, name)
            if isinstance(obj, type) and (dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum)):
                return obj
        raise StateDecodeError(f"snapshot names {module}.{name}, which is not part of the state")


def _loads(data: bytes) -> Any:
    try:
        return _Loader(io.BytesIO(data)).load()
    except StateDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a damaged pickle is a decode error
        raise StateDecodeError(f"undecodable state chunk ({type(exc).__name__}: {exc})") from None


def encode_tree(value: Any, depth: int = WALK_DEPTH, *, canonical: bool = False) -> list:
    """The plain-data tree of ``value`` (see the module docstring); with
    ``canonical``, bytes that depend on the values only (see ``_dumps``)."""
    if depth > 0 and dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return ["d", f"{cls.__module__}:{cls.__qualname__}",
                {f.name: encode_tree(getattr(value, f.name), depth - 1, canonical=canonical)
                 for f in dataclasses.fields(cls)}]
    if type(value) is Map and len(value) > CHUNK:
        chunks, items = [], []
        for item in value.items():
            items.append(item)
            if len(items) == CHUNK:
                chunks.append(_dumps(items, canonical))
                items = []
        if items:
            chunks.append(_dumps(items, canonical))
        return ["m", chunks]
    return ["p", _dumps(value, canonical)]


def decode_tree(node: Any) -> Any:
    """Rebuild the value :func:`encode_tree` gave. Raises :class:`StateDecodeError`."""
    if not isinstance(node, (list, tuple)) or not node:
        raise StateDecodeError("state node is not a tagged list")
    tag = node[0]
    if tag == "p" and len(node) == 2 and isinstance(node[1], bytes):
        return _loads(node[1])
    if tag == "m" and len(node) == 2 and isinstance(node[1], list):
        out = Map()
        with out.mutate() as m:
            for chunk in node[1]:
                if not isinstance(chunk, bytes):
                    raise StateDecodeError("map chunk is not bytes")
                items = _loads(chunk)
                if not isinstance(items, list):
                    raise StateDecodeError("map chunk is not a list of entries")
                for k, v in items:
                    m[k] = v
            return m.finish()
    if tag == "d" and len(node) == 3 and isinstance(node[1], str) and isinstance(node[2], dict):
        module, _, qualname = node[1].partition(":")
        cls = _dataclass(module, qualname)
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        # A field the snapshot predates (added since, with a default: e.g.
        # DomainState.config, the running configuration) takes its default;
        # any other mismatch is a foreign state.
        later = {f.name: f.default for f in fields
                 if f.name not in node[2] and f.default is not dataclasses.MISSING}
        if set(node[2]) | set(later) != names:
            raise StateDecodeError(f"{node[1]}: fields {sorted(node[2])} where {sorted(names)} expected")
        values = {k: decode_tree(v) for k, v in node[2].items()}
        values.update(later)
        obj = object.__new__(cls)
        for k, v in values.items():
            object.__setattr__(obj, k, v)
        return obj
    raise StateDecodeError(f"unknown state node {str(tag)[:8]!r}")


def _dataclass(module: str, qualname: str) -> type:
    if not (module == "gateway" or module.startswith("gateway.")):
        raise StateDecodeError(f"snapshot names {module}.{qualname}, which is not part of the state")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise StateDecodeError(f"snapshot names {module}.{qualname}, unknown to this build") from None
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise StateDecodeError(f"snapshot names {module}.{qualname}, which is not a state class")
    return obj


def bin_header(n: int) -> bytes:
    """msgpack's header of a byte string of n bytes (the Packer has none): bin 8/16/32."""
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def tree_parts(node: Any, out: list[bytes], packer: Any) -> list[bytes]:
    """The msgpack encoding of a tree from :func:`encode_tree`, in parts (its
    pickled chunks as they are, with msgpack headers between), so that no
    single call copies the whole state. ``b"".join(parts)`` equals
    ``msgpack.packb(node, use_bin_type=True)``."""
    if isinstance(node, list):
        out.append(packer.pack_array_header(len(node)))
        for x in node:
            tree_parts(x, out, packer)
    elif isinstance(node, dict):
        out.append(packer.pack_map_header(len(node)))
        for k, v in node.items():
            out.append(packer.pack(k))
            tree_parts(v, out, packer)
    elif isinstance(node, bytes):
        out.append(bin_header(len(node)))
        out.append(node)
    else:
        out.append(packer.pack(node))
    return out
