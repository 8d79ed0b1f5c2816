"""Aligned PER for the lab's H.323 messages through pycrate's compiled
H.225.0 / H.245 modules, with pycrate's encoding of SEQUENCE extension
additions corrected (X.691 19.7-19.9); every encoding is decoded again and
compared with the value, and every use holds :data:`CODEC_LOCK`."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any

from pycrate_asn1dir import H225 as _H225
from pycrate_asn1dir import H245 as _H245
from pycrate_asn1rt import asnobj_construct as _construct
from pycrate_asn1rt.codecs import ASN1CodecPER
from pycrate_asn1rt.utils import T_UINT

RAS = _H225.H323_MESSAGES.RasMessage
UUIE = _H225.H323_MESSAGES.H323_UserInformation
H245 = _H245.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage
OLC = _H245.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel

CODEC_LOCK = threading.RLock()


_orig_to_per = _construct._CONSTRUCT._to_per


def _to_per_fixed(self):
    if self._ext is None or self.TYPE != _construct.TYPE_SEQ:
        return _orig_to_per(self)
    val = self._val
    present = [k for k in val if k in self._ext]
    if not present:
        return _orig_to_per(self)
    if any(isinstance(i, list) for i in self._ext_nest) or any(k[:5] == "_ext_" for k in val):
        raise NotImplementedError(f"{self.fullname()}: extension groups are not encoded here")
    self._val = {k: v for k, v in val.items() if k not in self._ext}
    try:
        gen = _orig_to_per(self)            # root, extension bit 0 (X.691 19.1)
    finally:
        self._val = val
    assert gen[0] == (T_UINT, 0, 1)
    gen[0] = (T_UINT, 1, 1)
    # X.691 19.8: a normally small length (n - 1 in 6 bits after a 0 bit; the
    # H.225.0 / H.245 sequences have fewer than 64 additions), then the bitmap.
    n = len(self._ext_nest)
    assert n <= 64
    bits = sum(1 << (n - 1 - i) for i, ident in enumerate(self._ext_nest) if ident in val)
    gen.append((T_UINT, n - 1, 7))
    gen.append((T_UINT, bits, n))
    ASN1CodecPER._off[-1] += 7 + n
    for ident in self._ext_nest:
        if ident in val:
            comp = self._cont[ident]
            par, comp._parent = comp._parent, self
            comp._val = val[ident]
            # X.691 19.9 / 10.2: each an open type, octet aligned.
            gen.extend(ASN1CodecPER.encode_unconst_open(comp))
            comp._parent = par
    return gen


@contextmanager
def _fixed_encoder():
    _construct._CONSTRUCT._to_per = _to_per_fixed
    try:
        yield
    finally:
        _construct._CONSTRUCT._to_per = _orig_to_per


class EncodeError(ValueError):
    """pycrate's encoding does not decode back to the value."""


def encode(obj, value: Any) -> bytes:
    """Aligned PER of ``value``; decoded again and compared."""
    with CODEC_LOCK:
        with _fixed_encoder():
            obj.set_val(value)
            data = obj.to_aper()
        obj.from_aper(data)
        back = obj.get_val()
    if back != value:
        raise EncodeError(f"{obj._name}: encoding does not decode to the value: {back!r} != {value!r}")
    return data


class DecodeError(ValueError):
    """Not a decodable message."""


def decode(obj, data: bytes) -> Any:
    """The value of ``data``; anything pycrate cannot decode is a DecodeError."""
    with CODEC_LOCK:
        try:
            obj.from_aper(data)
            return obj.get_val()
        except Exception as exc:        # pycrate raises many kinds
            raise DecodeError(f"{obj._name}: {type(exc).__name__}: {exc}") from None
