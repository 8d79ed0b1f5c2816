"""The patterns and limits the SIP message parser shares: white space, the
CSeq, Via and Call-ID shapes (RFC 3261 25.1, 8.1.1.5, 20.42), the bound on
Contact/Route/Record-Route elements, and which header fields a message must
carry once (RFC 3261 7.3.1, 8.1.1; RFC 4475 3.3.8/3.3.9)."""

from __future__ import annotations

import re

from gateway.sip.headers import TOKEN

_WS = " \t\r\n"
_WSB = b" \t\r\n"
_CSEQ_RE = re.compile(r"([0-9]+)\s+(" + TOKEN + r")\Z")
_VIA_RE = re.compile(
    r"(" + TOKEN + r")\s*/\s*(" + TOKEN + r")\s*/\s*(" + TOKEN + r")\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:\s*:\s*([0-9]{1,5}))?")
_ADDR_SPEC_RE = re.compile(r"[^\s;]+")
_HAS_WS_RE = re.compile(r"\s")
_CALLID_HOST_RE = re.compile(r"@([0-9.]+)(?::([0-9]{1,5}))?\Z")
_DIGITS_RE = re.compile(r"[0-9]{1,10}\Z")
# Contact, Route and Record-Route elements one message may carry, counted as
# the commas of those headers plus one per header line (an upper bound: a
# quoted display name may hold commas too). A route has a hop per proxy
# (Max-Forwards starts at 70) and a registrar lists the few bindings of an
# address of record; a 64 KiB datagram of short elements ("sip:a@h,") was
# ~6,500 of them and took 50-80 ms to read and refuse.
MAX_URI_ELEMENTS = 512
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")

# Header fields of which a request or response carries exactly one
# (RFC 3261 7.3.1: only list-valued fields may repeat; RFC 4475 3.3.8/3.3.9).
_SINGLE = ("from", "to", "call-id", "cseq", "content-length", "content-type")
_REQUIRED = ("via", "from", "to", "call-id", "cseq")  # RFC 3261 8.1.1
_REQUIRED_SET = frozenset(_REQUIRED)
