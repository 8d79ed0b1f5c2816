"""Why a packet was dropped, as one of a closed set of codes.

A drop's reason text names addresses, ports and what an ALG's parser found:
good for one log line, useless as a counter key (a port sweep makes every
packet's text different). Counters are kept per *code*, a short fixed name
from :data:`CODES`, so the set of counters is bounded by this module and the
operator's view (``gwctl status``) stays readable whatever arrives. The text
goes only into the log, at most one line per code (or per code and source)
per second, with the number of drops not logged since (:class:`LogThrottle`).

:func:`code_of` maps what the datapath and the node already say about a drop
(``Drop.category`` and, for ALG drops, which ALG) to a code; every value it
returns is in :data:`CODES` (a property test checks it for any input).
"""

from __future__ import annotations

# The closed set. Adding a code is a change to this module, never a runtime
# event: counters keyed by these stay bounded.
CODES: frozenset[str] = frozenset({
    "malformed",                    # the IPv4/UDP/TCP header did not parse
    "fragment",                     # a fragment of no session, or of signalling (no reassembly)
    "checksum",                     # a bad IPv4/UDP/TCP checksum on a packet bound for an ALG
    "screen-udp-flood",             # manual ch. 2 "Example: UDP Flooding Protection"
    "screen-src-session-limit",     # manual ch. 2 "Example: SIP Connection Maximum"
    "policy-deny",                  # no policy permits the flow (or an incoming DIP with no registration)
    "session-reply-tuple-taken",    # the flow's reply tuple belongs to another session
    "session-no-port",              # no free public port for source translation
    "tcp-stream-held",              # a TCP segment waits behind a gap in the ALG's stream
    "overload-shed",                # a new dialog shed by overload control
    "alg-sip",                      # the SIP ALG refused the message
    "alg-mgcp",                     # the MGCP ALG refused the message
    "alg-h323",                     # the H.323 ALG refused the message
    "alg",                          # an ALG drop whose ALG is not known
    "held-timeout",                 # no verdict for a held packet in time
    "journal",                      # the message's events could not be journaled
    "standby",                      # this node is not forwarding (standby, handover)
    "ingress-unknown",              # arrived on an interface that is not the gateway's
    "worker-stopping",              # held when the packet worker stopped
    "internal-error",               # the datapath raised on the packet (a defect)
    "other",
})

# Drop.category (gateway.datapath.pipeline) -> code.
_BY_CATEGORY = {
    "malformed": "malformed",
    "fragment": "fragment",
    "checksum": "checksum",
    "screen-udp-flood": "screen-udp-flood",
    "screen-limit-session": "screen-src-session-limit",
    "policy": "policy-deny",
    "held": "tcp-stream-held",
    "overload": "overload-shed",
    "held-timeout": "held-timeout",
    "standby": "standby",
    "ingress": "ingress-unknown",
    "worker": "worker-stopping",
    "journal": "journal",
    "error": "internal-error",
}

_ALG_CODES = {"sip": "alg-sip", "mgcp": "alg-mgcp", "h323": "alg-h323"}

# Fixed reason texts of drops that the node reports with category "alg"
# although no ALG decided them (kept as they are: tests and operators know them).
STANDBY_REASON = "standby: not forwarding"
JOURNAL_REASON_PREFIX = "journal:"
NO_PORT_PREFIX = "no free port"


def code_of(category: str, reason: str = "", alg: str | None = None) -> str:
    """The code of a drop from its category, its reason text (only to tell
    the node's fixed standby/journal texts and the session table's two cases
    apart) and, for an ALG's drop, the ALG's name."""
    code = _BY_CATEGORY.get(category)
    if code is not None:
        return code
    if category == "session":
        return "session-no-port" if reason.startswith(NO_PORT_PREFIX) else "session-reply-tuple-taken"
    if category == "alg":
        if reason == STANDBY_REASON:
            return "standby"
        if reason.startswith(JOURNAL_REASON_PREFIX):
            return "journal"
        return _ALG_CODES.get(alg or "", "alg")
    return "other"


def count(counters: dict[str, int], code: str) -> None:
    """One more drop under ``code`` (``code`` must be one of :data:`CODES`)."""
    counters[code] = counters.get(code, 0) + 1


# Reason texts are counted too, for `status` and pcap mode's summary; they
# carry addresses and ports, so a port sweep would make them unbounded: past
# this many distinct texts the rest count as one (the codes are not capped).
MAX_REASON_TEXTS = 256
OTHER_REASONS = "(other reasons)"


def count_reason(reasons: dict[str, int], reason: str) -> None:
    """One more drop for the text ``reason``, within MAX_REASON_TEXTS texts."""
    if reason in reasons:
        reasons[reason] += 1
    elif len(reasons) < MAX_REASON_TEXTS:
        reasons[reason] = 1
    else:
        reasons[OTHER_REASONS] = reasons.get(OTHER_REASONS, 0) + 1


class LogThrottle:
    """At most one log line per key per ``interval`` seconds (sans-I/O: the
    caller passes the time and writes the line). ``check(key, now)`` returns
    None when the line is to be suppressed, else the number of lines
    suppressed for that key since the last one written. Keys are codes, or
    (code, source) pairs for per-source lines; at most ``max_keys`` are
    remembered (when full, the table is emptied: at worst one extra line
    per key, never unbounded memory)."""

    __slots__ = ("interval", "max_keys", "_last")

    def __init__(self, interval: float = 1.0, max_keys: int = 4096) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict = {}                    # key -> [last written, suppressed]

    def check(self, key, now: float) -> int | None:
        st = self._last.get(key)
        if st is None:
            if len(self._last) >= self.max_keys:
                self._last.clear()
            self._last[key] = [now, 0]
            return 0
        if now - st[0] >= self.interval or now < st[0]:
            n = st[1]
            st[0], st[1] = now, 0
            return n
        st[1] += 1
        return None

    def __len__(self) -> int:
        return len(self._last)
