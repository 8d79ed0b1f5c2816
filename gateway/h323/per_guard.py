"""Bounds on pycrate's PER decoder, so that one message cannot stall or
exhaust a node.

Two defects of the decoder (pycrate_asn1rt) on hostile input, and what this
module does about each; :func:`install` applies the guards once, before the
first decode (``gateway.h323.per`` calls it at import):

* Recursive types (H.225.0 ``GenericData`` -> ``Content.nested`` ->
  ``GenericData``; H.245 has others) are one Python object per type, and the
  decoder points a component's ``_parent`` at the object decoding it. Inside
  a recursion the parent chain is therefore a cycle, and an error raised
  there formats its message with ``fullname()``, which follows ``_parent`` up
  to None: it never gets there, and the list of names it builds grows until
  MemoryError (a 345-octet RAS datagram: 124 s, 3.8 GB). ``fullname`` (and
  the other walks up the chain) are replaced by walks that stop at the first
  object seen twice or after :data:`MAX_DEPTH` levels. The decoder restores
  ``_parent`` only when a decode succeeds, so after a failure the links are
  put back as the compiled modules had them (:func:`restore_parents`): the
  next message must not start from a cyclic chain.
* A PER length determinant (X.691 11.9) can announce up to 16383 items, and
  a fragmented one (11.9.3.8, 16K to 64K items a fragment) up to the
  decoder's own limit of a million items. Every item of a SEQUENCE OF and
  every character or octet of a string takes at least one bit (the tests
  check that no SEQUENCE OF of H.225.0 or H.245 has an item type, and no
  string an alphabet, that can take none), so a count larger than the bits that remain cannot be
  satisfied: it is refused before any item is decoded
  (:func:`_checked_count`), and the work and memory of a decode stay
  proportional to the message's length.
"""

from __future__ import annotations

from pycrate_asn1rt.asnobj import ASN1Obj
from pycrate_asn1rt.codecs import ASN1CodecPER, ASN1PERDecodeErr
from pycrate_asn1rt.utils import TYPE_CLASS

# Deepest chain of enclosing components worth naming in an error message;
# the H.225.0 / H.245 modules nest a few dozen levels without recursion.
MAX_DEPTH = 64

_installed = False
_parents: list[tuple[ASN1Obj, object]] = []


def _chain(obj: ASN1Obj):
    """``obj`` and its enclosing objects, outwards, each at most once and
    no more than MAX_DEPTH of them."""
    seen = set()
    depth = 0
    while obj is not None and id(obj) not in seen and depth < MAX_DEPTH:
        seen.add(id(obj))
        yield obj
        obj = obj._parent
        depth += 1


def _fullname(self: ASN1Obj) -> str:
    return ".".join(reversed([o._name for o in _chain(self)]))


def _get_root(self: ASN1Obj) -> ASN1Obj:
    last = self
    for last in _chain(self):
        pass
    return last


def _get_root_path(self: ASN1Obj) -> list:
    return list(reversed([o._name for o in _chain(self)]))


def _in_class(self: ASN1Obj) -> bool:
    return any(o.TYPE == TYPE_CLASS for o in _chain(self._parent)) if self._parent is not None else False


def _remaining_bits(char) -> int:
    return char._len_bit - char._cur


def _checked_count(decode):
    def checked(cla, char):
        out = decode(char)
        cnt = out[0] if type(out) is tuple else out
        if cnt > _remaining_bits(char):
            raise ASN1PERDecodeErr(f"length determinant {cnt} exceeds the {_remaining_bits(char)} bits left")
        return out
    return classmethod(checked)


def _record_parents(roots) -> None:
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        o = stack.pop()
        if id(o) in seen or not isinstance(o, ASN1Obj):
            continue
        seen.add(id(o))
        _parents.append((o, o._parent))
        cont = o._cont
        if cont is None:
            continue
        if isinstance(cont, ASN1Obj):
            stack.append(cont)
        elif hasattr(cont, "values"):
            stack.extend(cont.values())


def restore_parents() -> None:
    """Put every ``_parent`` link back as compiled (after a failed decode)."""
    for o, p in _parents:
        if o._parent is not p:
            o._parent = p


def install(modules) -> None:
    """Apply the guards (idempotent) and remember the compiled ``_parent``
    links of every type of ``modules`` (pycrate_asn1dir modules)."""
    global _installed
    if not _installed:
        ASN1Obj.fullname = _fullname
        ASN1Obj.get_root = _get_root
        ASN1Obj.get_root_path = _get_root_path
        ASN1Obj.in_class = _in_class
        ASN1CodecPER.decode_count = _checked_count(ASN1CodecPER.decode_count)
        ASN1CodecPER.decode_count_ws = _checked_count(ASN1CodecPER.decode_count_ws)
        _installed = True
    _record_parents(o for m in modules for o in m._all_)
