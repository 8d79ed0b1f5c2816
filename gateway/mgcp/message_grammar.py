"""The vocabulary and bounds of the MGCP parser (RFC 3435 2.3, 3.2.1, 3.2.2 and
appendix A; manual chapter 3, "MGCP Security"): the verbs, parameter codes and
restart methods, the limits on what one datagram may hold, the patterns of
its lines and values, and the error every refusal raises."""

from __future__ import annotations

import re

from gateway.errors import RemoteProtocolError
from gateway.span import Span

# RFC 3435 section 2.3 / 3.2.1: the nine commands. MESG is not among them (it is
# a PacketCable NCS command, not an RFC 3435 one); experimental "X..." verbs are
# refused as well, since the manual passes only RFC 3435 message formats.
VERBS = frozenset({"EPCF", "CRCX", "MDCX", "DLCX", "RQNT", "NTFY", "AUEP", "AUCX", "RSIP"})

# RFC 3435 section 3.2.2: every parameter code.
PARAMETER_CODES = frozenset({
    "B", "C", "I", "N", "X", "L", "M", "R", "S", "D", "O", "P", "E", "Z", "Z2", "I2",
    "F", "Q", "T", "RM", "RD", "A", "ES", "PL", "MD", "K",
})

# RFC 3435 section 2.3.12 / appendix A: RestartMethod.
RESTART_METHODS = frozenset({"graceful", "forced", "restart", "disconnected", "cancel-graceful"})

# Bounds on what one datagram may hold, far above real traffic (a response
# piggy-backed with a command or an ack, 3.5.5; a dozen parameters; one or
# two session descriptions of a few media lines, 3.4) and low enough that a
# 64 KiB datagram costs the parser and the ALG a few milliseconds: without
# them one datagram of 2,700 m= lines made the ALG bind 2,700 media groups.
MAX_MESSAGES = 16            # piggy-backed messages per datagram
MAX_PARAMS = 128             # parameter lines per message
MAX_DESCRIPTIONS = 4         # session descriptions per message
MAX_MEDIA = 16               # m= lines per message body
# Lines per session description. gateway.sdp.parse_sdp first tries one
# pattern over the whole description whose runs of "other" lines around the
# optional c= and direction lines can be split in O(n^3) ways before a late
# mismatch fails it (8 KiB of "a=x" lines and a bad byte: 100 s). An RFC 3435
# connection descriptor has a few lines (v, o, s, c, t, m and some a=); at
# this bound the worst case costs about 2 ms.
MAX_SDP_LINES = 40
# Bytes per session description line. Its a=rtcp patterns (the whole-
# description one and the line scan) retry a run of blanks inside a line from
# every position: quadratic in the line (8 KiB of tabs after "a=rtcp:1":
# 0.5 s). Descriptor lines are short; at this bound the worst costs ~4 ms.
MAX_SDP_LINE = 512
# Terms of a local endpoint name. Names are a few hierarchical terms (RFC
# 3435 2.1.1: aaln/1, ds/ds1-1/1); the ALG looks up the RSIP of every
# wildcard prefix of a name (2.3.12), each as long as the name so far, so
# the cost grows with the square of the terms (6,456 terms: 282 ms).
MAX_ENDPOINT_TERMS = 32

_LINE_END = re.compile(rb"\r\n|\n|\r")
_LONE_CR = re.compile(rb"\r(?!\n)")
_BAD_CHAR = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The command and response lines are matched after their trailing blanks are
# cut (``_strip_blanks``): with a trailing ``[ \t]*\Z`` after a lazy field, the
# engine retried the blank run from every position inside it, quadratic in a
# line of spaces and tabs. Without it each field ends where the next begins or
# at the line's end, and every match is linear in the line.
_COMMAND = re.compile(
    rb"([A-Za-z][A-Za-z0-9]{3})[ \t]+([0-9]{1,9})[ \t]+(\S+)[ \t]+([Mm][Gg][Cc][Pp])[ \t]+([0-9]{1,4}\.[0-9]{1,4})"
    rb"(?:[ \t]+([A-Za-z][A-Za-z0-9.\- \t]*))?\Z")
_RESPONSE = re.compile(
    rb"([0-9]{3})[ \t]+([0-9]{1,9})(?:[ \t]+/([A-Za-z0-9][A-Za-z0-9\-]{0,31}))?(?:[ \t]+(.*))?\Z", re.DOTALL)
_PARAM = re.compile(rb"([A-Za-z0-9][A-Za-z0-9+\-/]{0,63}):[ \t]*")
_EXT_PARAM = re.compile(r"X[-+][A-Z0-9]{1,32}\Z|[A-Z0-9][A-Z0-9\-]{0,31}/[A-Z0-9][A-Z0-9\-]{0,31}\Z")
_HEX_ID = re.compile(r"[0-9A-Fa-f]{1,32}\Z")
_LOCAL_PART = re.compile(r"[\x21-\x23\x25-\x29\x2b-\x2e\x30-\x3f\x41-\x7e]+\Z")
_DNS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,254}\Z")
_RANGE = re.compile(r"\[[^\]]*\]")
_PKG_RM = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,31}/[A-Za-z0-9\-]{1,32}\Z")
# RFC 3435 appendix A: a number is ASCII digits ("1*9(DIGIT)" for a
# transaction id). str.isdigit() also accepts other scripts' digits and
# superscripts ("\u00b2"), which int() then refuses: every number is checked
# against this instead.
_DIGITS = re.compile(r"[0-9]{1,9}\Z")
# K: (RFC 3435 3.5.6): confirmedTransactionIdRange *("," ...), a range being
# TransactionId ["-" TransactionId].
_ACK_RANGE = re.compile(r"[ \t]*([0-9]{1,9})(?:[ \t]*-[ \t]*([0-9]{1,9}))?[ \t]*\Z")


def _bad(reason: str, offset: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"MGCP: {reason}", offset=offset)


def _span(data: bytes, start: int, end: int) -> Span:
    return Span(start, end, data[start:end].decode("latin-1"))
