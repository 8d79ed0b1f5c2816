"""Long fuzzing campaign for the MGCP parser and the ALG step (not in CI).

The inputs and the rule are tests/mgcp_fuzz.py's (the CI tests run a few
hundred of them): mutated seeds -- the manual's messages, the corpus
capture's payloads -- and, every 1000th input, a pathological shape at a
random size up to 64 KiB. Each input goes through ``parse_datagram`` and
then ``step`` (a warm state with a call and transactions, one of five
contexts in turn: both roles, "either", NAT both ways); every 20th step's
state is carried on, so the state machine wanders beyond the warm start (it
is reset when it grows past 2,000 transactions or calls).

A finding is an exception other than RemoteProtocolError out of the parser,
any exception out of step, or an input over the CPU budget (checked twice).
Findings are written, with the input, to the output directory.

Run: .venv/bin/python bench/fuzz_mgcp.py [seconds=600] [seed=1] [outdir=/tmp/fuzz-mgcp]"""

from __future__ import annotations

import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.errors import RemoteProtocolError  # noqa: E402
from gateway.mgcp.alg import step  # noqa: E402
from gateway.mgcp.message import parse_datagram  # noqa: E402
from tests.mgcp_fuzz import (BUDGET_S, CONTEXTS, PATHOLOGICAL, SEEDS, SETTINGS, mutate,  # noqa: E402
                             pathological, warm_state)


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 600.0
    seed = int(argv[1]) if len(argv) > 1 else 1
    outdir = Path(argv[2] if len(argv) > 2 else "/tmp/fuzz-mgcp")
    outdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    warm = warm_state()
    state = warm
    counts = {"inputs": 0, "parsed": 0, "refused": 0, "forward": 0, "drop": 0, "findings": 0}
    slowest = (0.0, b"")
    t_end = time.monotonic() + seconds
    now = 10.0
    while time.monotonic() < t_end:
        for _ in range(200):
            i = counts["inputs"]
            if i % 1000 == 999:
                data = pathological(rng.choice(PATHOLOGICAL), rng.randint(1, 65536))
            else:
                data = mutate(rng, rng.choice(SEEDS))
            counts["inputs"] += 1
            t0 = time.process_time()
            try:
                parse_datagram(data)
                counts["parsed"] += 1
            except RemoteProtocolError:
                counts["refused"] += 1
            except Exception:
                _finding(outdir, counts, "parser", data, traceback.format_exc())
            ctx = CONTEXTS[i % len(CONTEXTS)]
            now += 0.001
            try:
                r = step(state, ctx, data, now, SETTINGS)
                counts[r.verdict] += 1
                if i % 20 == 0:
                    state = r.state
                    if len(state.txns) > 2000 or len(state.calls) > 2000:
                        state = warm
            except Exception:
                _finding(outdir, counts, "step", data, traceback.format_exc())
            spent = time.process_time() - t0
            if spent > slowest[0]:
                slowest = (spent, data)
            if spent > BUDGET_S:
                # Again, to tell a real cost from a stall of the machine.
                t1 = time.process_time()
                try:
                    parse_datagram(data)
                except RemoteProtocolError:
                    pass
                step(state, ctx, data, now, SETTINGS)
                again = time.process_time() - t1
                if again > BUDGET_S:
                    _finding(outdir, counts, "slow", data, f"{spent * 1000:.1f} ms, again {again * 1000:.1f} ms")
    counts["slowest_ms"] = round(slowest[0] * 1000, 2)
    counts["slowest_len"] = len(slowest[1])
    counts["seconds"] = seconds
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 1 if counts["findings"] else 0


def _finding(outdir: Path, counts: dict, kind: str, data: bytes, why: str) -> None:
    counts["findings"] += 1
    n = counts["findings"]
    if n <= 50:
        (outdir / f"{kind}-{n}.bin").write_bytes(data)
        (outdir / f"{kind}-{n}.txt").write_text(why)
    print(f"finding {n} ({kind}): {why.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
