"""The bound on Contact/Route/Record-Route elements per message.

A route has a hop per proxy (Max-Forwards starts at 70) and a registrar lists
the few bindings of an address of record, but a 64 KiB datagram holds ~6,500
short elements ("sip:a@h,"), which took 50-80 ms of CPU to read and refuse.
Above MAX_URI_ELEMENTS (commas of those headers plus one per line) the
message is refused, with the same reason by every reading."""

from __future__ import annotations

import pytest

from gateway.errors import RemoteProtocolError
from gateway.sip import parse_message
from gateway.sip.message import MAX_URI_ELEMENTS, _parse

HEAD = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        b"From: <sip:a@10.0.0.1>;tag=1\r\nTo: <sip:a@10.0.0.1>;tag=2\r\nCall-ID: r@10.0.0.1\r\n"
        b"CSeq: 1 REGISTER\r\n")


def with_contacts(n: int, per_line: int) -> bytes:
    lines = []
    while n > 0:
        k = min(n, per_line)
        lines.append(b"Contact: " + b", ".join(b"<sip:a@10.0.0.%d>" % (i % 250 + 1)
                                                for i in range(k)) + b"\r\n")
        n -= k
    return HEAD + b"".join(lines) + b"Content-Length: 0\r\n\r\n"


@pytest.mark.parametrize("per_line", [1, 7, MAX_URI_ELEMENTS])
def test_elements_up_to_the_bound_are_read(per_line):
    msg = parse_message(with_contacts(MAX_URI_ELEMENTS, per_line))
    assert len(msg.contacts) == MAX_URI_ELEMENTS


@pytest.mark.parametrize("per_line", [1, 7, MAX_URI_ELEMENTS + 1])
def test_one_element_more_is_refused_by_every_reading(per_line):
    data = with_contacts(MAX_URI_ELEMENTS + 1, per_line)
    reasons = set()
    for reader in (parse_message, lambda d: _parse(d, True), lambda d: _parse(d, False)):
        with pytest.raises(RemoteProtocolError) as exc:
            reader(data)
        reasons.add(exc.value.reason)
    assert len(reasons) == 1 and "Contact/Route/Record-Route" in reasons.pop()
