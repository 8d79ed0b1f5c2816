"""A lab plan as plain JSON data, for the lab's state file, and back."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import NoneType, UnionType
from typing import Literal, Union, get_args, get_origin, get_type_hints

from ops.lab.plan_model import Plan


def to_data(obj: object) -> object:
    """Plain JSON data for a plan (or any part of it)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [to_data(x) for x in obj]
    if isinstance(obj, (IPv4Address, IPv4Interface, IPv4Network)):
        return str(obj)
    return obj


def _from(tp: object, value: object) -> object:
    origin = get_origin(tp)
    if origin in (Union, UnionType):
        args = [a for a in get_args(tp) if a is not NoneType]
        return None if value is None else _from(args[0], value)
    if origin is tuple:
        (item, _) = get_args(tp)
        assert isinstance(value, list)
        return tuple(_from(item, v) for v in value)
    if origin is Literal:
        return value
    if isinstance(tp, type) and is_dataclass(tp):
        assert isinstance(value, dict)
        hints = get_type_hints(tp)
        return tp(**{f.name: _from(hints[f.name], value[f.name]) for f in fields(tp)})
    if tp in (IPv4Address, IPv4Interface, IPv4Network):
        return tp(value)  # type: ignore[operator]
    return value


def plan_from_data(data: object) -> Plan:
    plan = _from(Plan, data)
    assert isinstance(plan, Plan)
    return plan
