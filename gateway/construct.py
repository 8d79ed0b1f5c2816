"""Cheap construction of frozen slotted dataclass instances.

A frozen dataclass's ``__init__`` sets each field through
``object.__setattr__`` (it must get past the frozen ``__setattr__``), which
costs about half a microsecond for a three-field :class:`~gateway.span.Span`.
The parsers build a few dozen such objects per message, so on their hot path
they use :func:`frozen_constructor`: it sets the slots through the slot
descriptors directly. The result is an ordinary instance of the class (same
type, equality, hash, repr, still frozen); only the way in is faster."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


def frozen_constructor(cls: type) -> Callable[..., Any]:
    """A function taking every field of ``cls`` positionally (defaults are not
    applied, ``__post_init__`` is not run) and returning a ``cls`` instance."""
    params = cls.__dataclass_params__
    if not params.frozen or "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} is not a frozen slotted dataclass without __post_init__")
    names = [f.name for f in dataclasses.fields(cls)]
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = []
    for i, name in enumerate(names):
        env[f"_set{i}"] = getattr(cls, name).__set__
        lines.append(f"    _set{i}(o, {name})\n")
    src = f"def make({', '.join(names)}):\n    o = _new(_cls)\n{''.join(lines)}    return o\n"
    exec(src, env)  # noqa: S102 - generated from the class's own field names
    make = env["make"]
    make.__name__ = make.__qualname__ = f"make_{cls.__name__}"
    return make
