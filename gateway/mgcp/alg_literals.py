"""Numbers and addresses as the MGCP ALG reads them from the wire text
(manual chapter 3): a dotted quad and a number of 1-9 ASCII digits."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"[0-9]{1,9}\Z")

_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                   r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")


def _is_ipv4(text: str) -> bool:
    """A dotted quad of ASCII digits (str.isdigit() would let "\u00b2" through
    to int(), which refuses it)."""
    return _IPV4.match(text) is not None


def _ascii_int(text: str) -> int | None:
    """``text`` as a number of 1-9 ASCII digits, else None."""
    return int(text) if _NUMBER.match(text) else None
