"""Cheap scans of a signalling payload, without a full parse: the SIP Call-ID
(RFC 3261 §20.8), whether a payload is SIP (§7.1, §7.2), and an MGCP message's
actor key (RFC 3435 §3.2.1, §3.3). They choose the actor a packet goes to
before its ALG parses it."""

from __future__ import annotations


def sip_call_id(payload: bytes) -> str:
    """The Call-ID header's value (RFC 3261 §20.8, compact form ``i``), found
    in the header part without a full parse; "" when there is none. Header
    names are case-insensitive (§7.3.1), the value is not."""
    low = payload.lower()
    end = low.find(b"\r\n\r\n")
    if end < 0:
        end = len(low)
    for name in (b"\ncall-id", b"\ni"):
        start = 0
        while True:
            i = low.find(name, start, end)
            if i < 0:
                break
            j = i + len(name)
            while j < end and low[j] in b" \t":
                j += 1
            if j < end and low[j] == 58:                    # ':'
                k = j + 1
                while k < end and low[k] not in b"\r\n":
                    k += 1
                return payload[j + 1:k].strip().decode("utf-8", "replace")
            start = i + 1
    return ""


def looks_like_sip(payload: bytes) -> bool:
    """A SIP request or response line (RFC 3261 §7.1, §7.2)."""
    line_end = payload.find(b"\n", 0, 512)
    line = payload[:line_end if line_end >= 0 else 512].rstrip(b"\r")
    return line.startswith(b"SIP/2.0 ") or line.endswith(b" SIP/2.0")


def mgcp_key(payload: bytes) -> str:
    """Actor key of an MGCP message from its first line (RFC 3435 §3.2.1, §3.3):
    ``ep:<endpoint>`` (lower case: endpoint names are case-insensitive) for a
    command, ``tid:<id>`` for a response; "" when the line is not MGCP."""
    line_end = payload.find(b"\n", 0, 512)
    words = payload[:line_end if line_end >= 0 else 512].split()
    if len(words) >= 2 and words[0].isdigit():
        return "tid:" + words[1].decode("ascii", "replace")
    if len(words) >= 3:
        return "ep:" + words[2].decode("utf-8", "replace").lower()
    return ""
