"""A long fuzz campaign of the SIP/SDP parsers and the SIP ALG step (not run by
pytest: the CI tests in tests/test_sip_fuzz_bounds.py run a bounded share).

    PYTHONPATH=$PWD .venv/bin/python tests/fuzz/sip_campaign.py --seconds 600 --out /tmp/sipfuzz

Inputs are mutations of the RFC 4475 torture messages and built messages
(tests/sip_fuzz.py). Every input goes through the four parsers; one in
``--alg-every`` also through the ALG step in a call state of a random message
sequence. Anything raised other than RemoteProtocolError, any parser input
over ``--bound-ms`` of CPU (the least of three runs), and any ALG pinhole the
datapath could not install is a finding: written to ``--out`` with its
traceback, and counted. The summary gives the counts, the slowest input per
parser and the CPU time per KiB of the slowest ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))          # tests/: sip_fuzz, the SIP ALG tests' helpers

from sip_fuzz import PARSERS, cpu_time, fix_length, mutate, run, seeds  # noqa: E402


def _alg_runner():
    from gateway.config.model import SipSettings
    from gateway.datapath.pinholes import PinholeTable
    from gateway.sip.alg import step
    from test_sip_alg_replay import MESSAGES, evaluations

    cfgs = (SipSettings(), SipSettings(protect_deny=True))
    pool = [m for _, m in MESSAGES]

    def once(rng: random.Random) -> None:
        sequence = [("msg", 0, 0.0)] + [
            (rng.choice(("msg", "msg", "timer", "media")), rng.randrange(len(MESSAGES)),
             rng.uniform(0, 300)) for _ in range(rng.randrange(12))]
        cfg = rng.choice(cfgs)
        state = None
        for _before, r in evaluations(sequence, cfg):
            state = r.state
        ctx, msg = rng.choice(MESSAGES)
        if rng.random() < 0.5:
            words = sorted({w for w in msg.replace(b":", b" ").replace(b"@", b" ").split()
                            if w.count(b".") == 3})
            if words:
                msg = fix_length(msg.replace(rng.choice(words), rng.choice(
                    [b"pbx.example.com", b"1\xb2.1.1.1", b"999.1.1.1", b"h"])))
        data = mutate(rng, msg, pool)
        r = step(state, ctx, data, 9000.0, cfg)
        assert r.verdict in ("forward", "drop")
        if r.verdict == "drop":
            assert r.state is state and not r.events
        table = PinholeTable()
        for p in r.pinholes_open:
            table.install(p)

    return once


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--bound-ms", type=float, default=50.0)
    ap.add_argument("--alg-every", type=int, default=20)
    ap.add_argument("--out", default="/tmp/sip-fuzz-campaign")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "big")
    rng = random.Random(seed)
    pool = seeds()
    alg = _alg_runner()
    bound = args.bound_ms / 1000.0
    counts = {"inputs": 0, "parser_runs": 0, "alg_steps": 0, "refused": 0, "accepted": 0,
              "findings": 0, "bytes": 0}
    slowest: dict[str, tuple[float, int]] = {}
    per_kib: list[tuple[float, str, int]] = []
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        data = mutate(rng, rng.choice(pool), pool)
        counts["inputs"] += 1
        counts["bytes"] += len(data)
        for name, fn in PARSERS.items():
            counts["parser_runs"] += 1
            try:
                t0 = time.process_time()
                outcome = run(fn, data)
                spent = time.process_time() - t0
            except Exception:            # a finding: anything but RemoteProtocolError
                counts["findings"] += 1
                (out / f"raise-{name}-{counts['findings']}.bin").write_bytes(data)
                (out / f"raise-{name}-{counts['findings']}.txt").write_text(traceback.format_exc())
                continue
            counts["refused" if outcome == "refused" else "accepted"] += 1
            if spent > bound:
                spent = cpu_time(fn, data, tries=3)
                if spent > bound:
                    counts["findings"] += 1
                    (out / f"slow-{name}-{counts['findings']}.bin").write_bytes(data)
            if spent > slowest.get(name, (0.0, 0))[0]:
                slowest[name] = (spent, len(data))
                (out / f"slowest-{name}.bin").write_bytes(data)
            if len(data) >= 4096:
                per_kib.append((spent / (len(data) / 1024), name, len(data)))
                if len(per_kib) > 2000:
                    per_kib.sort(reverse=True)
                    del per_kib[20:]
        if counts["inputs"] % args.alg_every == 0:
            counts["alg_steps"] += 1
            try:
                alg(rng)
            except Exception:
                counts["findings"] += 1
                (out / f"alg-{counts['findings']}.txt").write_text(traceback.format_exc())
    per_kib.sort(reverse=True)
    summary = {
        "seed": seed, "seconds": round(time.monotonic() - start, 1), "counts": counts,
        "slowest_ms": {k: (round(v[0] * 1000, 2), v[1]) for k, v in slowest.items()},
        "worst_us_per_kib": [(round(t * 1e6, 1), n, size) for t, n, size in per_kib[:10]],
    }
    text = json.dumps(summary, indent=1)
    (out / "summary.json").write_text(text)
    print(text)
    return 1 if counts["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
