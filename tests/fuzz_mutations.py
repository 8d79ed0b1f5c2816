"""The byte-level mutation engine shared by the fuzz tests and campaigns
(tests/sip_fuzz.py for SIP/SDP, bench/fuzz_campaign.py for every other
input the gateway reads).

A :class:`Mutator` knows nothing of a grammar: what makes it fit one input
is its ``tokens`` (octet strings the grammar treats specially, inserted or
written over one octet) and its ``run_units`` (what long runs are made of:
where a backtracking pattern or a per-item loop would show its cost). One
call makes one to four of: a bit flipped, random octets inserted, a token
inserted, a long run inserted, a slice repeated, octets deleted, the input
truncated, a piece of another seed spliced in, an octet replaced by a token.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

MAX_RUN = 64 * 1024


def run_length(rng: random.Random, max_run: int = MAX_RUN) -> int:
    """Log-uniform up to ``max_run``: short runs mostly, long ones regularly."""
    return min(int(2 ** rng.uniform(0, 16)), max_run)


@dataclass(frozen=True)
class Mutator:
    """``max_len``: the output is cut to this many octets (a UDP datagram or
    a TCP header section is smaller; inputs beyond it are refused by size
    before any parsing). ``finish``: applied to half of the outputs (e.g. a
    length field or checksum made right again, so the mutation reaches the
    part of the input behind it)."""

    tokens: Sequence[bytes]
    run_units: Sequence[bytes]
    max_len: int = MAX_RUN
    max_run: int = MAX_RUN
    finish: Callable[[bytes], bytes] | None = None
    pool: Sequence[bytes] = field(default=())

    def __call__(self, rng: random.Random, data: bytes, pool: Sequence[bytes] | None = None) -> bytes:
        pool = self.pool if pool is None else pool
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(9)
            pos = rng.randint(0, len(buf))
            if op == 0 and pos < len(buf):                      # flip a bit
                buf[pos] ^= 1 << rng.randrange(8)
            elif op == 1:                                       # insert random octets
                buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif op == 2:                                       # insert a token
                buf[pos:pos] = rng.choice(self.tokens)
            elif op == 3:                                       # a long run
                unit = rng.choice(self.run_units)
                buf[pos:pos] = (unit * (run_length(rng, self.max_run) // len(unit) + 1))[:self.max_run]
            elif op == 4 and pos < len(buf):                    # repeat a slice
                k = rng.randint(1, min(64, len(buf) - pos))
                piece = bytes(buf[pos:pos + k])
                buf[pos:pos] = (piece * (run_length(rng, self.max_run) // k + 1))[:self.max_run]
            elif op == 5:                                       # delete
                del buf[pos:pos + rng.randint(1, 16)]
            elif op == 6:                                       # truncate
                del buf[pos:]
            elif op == 7 and pool:                              # splice another seed in
                other = rng.choice(pool)
                a = rng.randint(0, len(other))
                buf[pos:pos] = other[a:a + rng.randint(1, 256)]
            elif op == 8 and pos < len(buf):                    # replace one octet by a token
                buf[pos:pos + 1] = rng.choice(self.tokens)
        out = bytes(buf[:self.max_len])
        if self.finish is not None and rng.random() < 0.5:
            return self.finish(out)
        return out
