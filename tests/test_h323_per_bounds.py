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


def _rrq_with_aliases(n: int) -> bytes:
    """The corpus RRQ (frame 61) with ``n`` one-digit terminal aliases: a
    valid message, about 2 octets an alias, whose decoding costs by the
    item rather than by the octet (the shape the RAS fuzz campaign found
    slow: 4,426 one-digit aliases, 27 KB, 238 ms)."""
    obj = per.RAS_MESSAGE
    obj.from_aper(F[61])
    kind, fields = obj.get_val()
    obj.set_val((kind, dict(fields, terminalAlias=[("dialledDigits", "#")] * n)))
    return obj.to_aper()


def test_message_over_the_decoded_size_is_refused_before_decoding():
    """12,000 aliases (24 KB) took 81 ms to decode; over MAX_PDU_OCTETS it
    is refused as it arrives, whatever it holds."""
    big = _rrq_with_aliases(12000)
    assert len(big) > per.MAX_PDU_OCTETS
    err = check_bounded(parse_ras, big)
    assert isinstance(err, RemoteProtocolError) and f"over the {per.MAX_PDU_OCTETS}" in str(err)
    # The same bound for a call signalling UUIE and for H.245.
    for obj, what in ((per.USER_INFORMATION, "H323-UserInformation"),
                      (per.H245_MESSAGE, "MultimediaSystemControlMessage")):
        with pytest.raises(RemoteProtocolError, match="over the"):
            per.decode(obj, b"\x00" * (per.MAX_PDU_OCTETS + 1), what)


def test_largest_decoded_message_parses_within_the_bounds():
    """Up to the bound a message is decoded, in time: as many aliases as
    fit in MAX_PDU_OCTETS."""
    n = 1
    while len(_rrq_with_aliases(n * 2)) <= per.MAX_PDU_OCTETS:
        n *= 2
    msg = check_bounded(parse_ras, _rrq_with_aliases(n))
    assert msg.kind == "registrationRequest" and len(msg.fields["terminalAlias"]) == n


def test_structure_walk_is_bounded_too():
    """The walk that places addresses when their octets also occur
    elsewhere in the message decodes again keeping every bit's place, some
    five times the cost of a decoding: 2,000 aliases (4 KB) took 59 ms. It
    is done for messages up to MAX_WALK_OCTETS; a larger message whose
    addresses cannot be placed by their octets alone is refused."""
    big = _rrq_with_aliases(1900)
    assert per.MAX_WALK_OCTETS < len(big) <= per.MAX_PDU_OCTETS
    err = check_bounded(per.structure_offsets, per.RAS_MESSAGE, big, "RasMessage")
    assert isinstance(err, RemoteProtocolError) and f"over the {per.MAX_WALK_OCTETS}" in str(err)
    small = _rrq_with_aliases(100)
    assert len(small) <= per.MAX_WALK_OCTETS
    assert len(check_bounded(per.structure_offsets, per.RAS_MESSAGE, small, "RasMessage")) == 2
