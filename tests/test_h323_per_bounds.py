"""The PER decoder's work and memory per message are bounded: the inputs
that made pycrate loop or grow, each the smallest change of a corpus frame
found to do it."""

from __future__ import annotations

import pytest
from pycrate_asn1dir import H225, H245
from pycrate_asn1rt.codecs import ASN1CodecPER
from pycrate_core.charpy import Charpy

from gateway.errors import RemoteProtocolError
from gateway.h323 import per, per_guard
from gateway.h323.ras import parse_ras

from h323_bounds import check_bounded, frames

F = frames()


def _edit(data: bytes, changes: dict[int, int]) -> bytes:
    m = bytearray(data)
    for i, v in changes.items():
        m[i] = v
    return bytes(m)


def test_error_inside_a_recursive_type_returns_at_once():
    """Corpus RRQ (frame 73) with two octets changed: the decoder meets a
    bad CHOICE index inside GenericData -> Content.nested -> GenericData,
    whose _parent chain is a cycle; naming the component for the error
    looped, growing a list until MemoryError (minutes, gigabytes)."""
    bad = _edit(F[73], {265: 0x55, 268: 0xC0})
    err = check_bounded(parse_ras, bad)
    assert isinstance(err, RemoteProtocolError) and "invalid CHOICE index" in str(err)


def test_failed_decode_leaves_no_parent_links_behind():
    """A failure deep in a recursive type leaves the decoder's _parent
    links as they were compiled, so the next message starts clean."""
    before = [(o, p) for o, p in per_guard._parents]
    with pytest.raises(RemoteProtocolError):
        parse_ras(_edit(F[73], {265: 0x55, 268: 0xC0}))
    assert all(o._parent is p for o, p in before)
    assert parse_ras(F[73]).kind == "registrationRequest"


def test_count_beyond_the_bits_left_is_refused_before_decoding_items():
    """GCF (frame 60) with its first length determinant made a 64K-item
    fragment (X.691 11.9.3.8): 83 octets cannot hold 65536 items."""
    err = check_bounded(parse_ras, _edit(F[60], {4: 0xC4}))
    assert "length determinant 65536 exceeds" in str(err)


def test_same_count_check_in_the_structure_walk():
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        per.structure_offsets(per.RAS_MESSAGE, _edit(F[60], {4: 0xC4}), "ras")


def _types(roots):
    seen, stack = set(), list(roots)
    while stack:
        o = stack.pop()
        if id(o) in seen or not hasattr(o, "TYPE"):
            continue
        seen.add(id(o))
        yield o
        c = getattr(o, "_cont", None)
        if c is not None and hasattr(c, "TYPE"):
            stack.append(c)
        elif c is not None and hasattr(c, "values"):
            stack.extend(c.values())


def test_no_sequence_of_item_takes_zero_bits():
    """The count check assumes each item of a SEQUENCE OF takes a bit at
    least; an item type decodable from no bits (NULL, say) would make a
    count of N items legitimately fit in fewer than N bits."""
    checked = 0
    for o in _types(list(H225.H323_MESSAGES._all_) + list(H245.MULTIMEDIA_SYSTEM_CONTROL._all_)):
        if o.TYPE not in ("SEQUENCE OF", "SET OF"):
            continue
        checked += 1
        ASN1CodecPER._off = [0]
        with pytest.raises(Exception):
            o._cont._from_per(Charpy(b""))
    assert checked > 100
    per_guard.restore_parents()


def test_corpus_still_decodes_everywhere():
    """Every corpus RAS datagram but the malformed frame 59 still parses."""
    for n, data in F.items():
        if 60 <= n <= 75 and n not in (65, 66):
            parse_ras(data)


def test_no_character_takes_zero_bits():
    """Same assumption for strings: a permitted alphabet of one character
    would be coded in zero bits a character (X.691 30.5.2)."""
    ASN1CodecPER.ALIGNED = True
    strings = [o for o in _types(list(H225.H323_MESSAGES._all_) + list(H245.MULTIMEDIA_SYSTEM_CONTROL._all_))
               if hasattr(o, "_get_char_dyn")]
    assert len(strings) > 50
    assert all(o._get_char_dyn() != 0 for o in strings)
