"""Fencing figures over many trials: the gatewayd pair in a fresh namespace
lab per trial (ch2-incoming-call-with-mip by default), SIPp calls with RTP,
then a fault in the active at the middle of the calls.

    flock /tmp/voip-lab.lock .venv/bin/python bench/bench_fence.py --trials 50 [--fault sigkill|stall]

``sigkill``: the active gatewayd is SIGKILLed and not restarted; reported:
calls completed, how long its addresses stayed on its interfaces (the fence
supervisor removes them when its pipe closes), the other node's takeover time
and the longest RTP gap. ``stall``: every thread of the active stands still
for --stall seconds (gwctl debug stall). For both: samples (every 50 ms) that
saw an owned address on both nodes, which must be none. Each trial is
bounded (SIPp's global timeout, the lab's command timeouts)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import load_file  # noqa: E402
from ops.lab import fence_trials, netns  # noqa: E402
from ops.lab import gateway_starter as gs  # noqa: E402
from ops.lab.plan import build_plan, suggest_call  # noqa: E402


def one(example: Path, fault: str, stall: float, n: int,
        keep: Path | None = None, calls: dict | None = None) -> fence_trials.FenceTrial:
    name = f"bf{os.getpid() % 10000}"          # lab names: at most 6 characters
    state_dir = Path(tempfile.mkdtemp(prefix="bench-fence-"))
    try:
        cfg = load_file(example)
        plan = build_plan(cfg, lab=name)
        state = netns.up(plan, starter=gs.NAME, config=str(example), state_dir=state_dir)
        t = fence_trials.trial(state, suggest_call(plan, cfg), fault=fault, stall_s=stall, **(calls or {}))
        if not t.ok and keep is not None:
            # The nodes' logs of a failed trial, for a look afterwards.
            dest = keep / f"trial-{n}"
            dest.mkdir(parents=True, exist_ok=True)
            for f in gs.lab_dir(state).glob("*.log"):
                shutil.copy(f, dest / f.name)
            (dest / "trial.txt").write_text(repr(t) + "\n")
        return t
    except Exception as exc:     # reported as a failed trial, the run goes on
        t = fence_trials.FenceTrial(fault, 0, 0, 0)
        t.error = f"{type(exc).__name__}: {exc}"
        return t
    finally:
        netns.down(name, state_dir=state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--fault", choices=list(fence_trials.FAULTS), default="sigkill")
    p.add_argument("--stall", type=float, default=2.0, help="stall seconds (--fault stall)")
    p.add_argument("--example", default="ch2-incoming-call-with-mip")
    p.add_argument("--max-seconds", type=float, default=540,
                   help="stop starting trials after this long (a locked run stays short)")
    p.add_argument("--calls", type=int, default=6, help="SIPp calls per trial (default 6)")
    p.add_argument("--rate", type=float, default=3.0, help="calls per second (default 3)")
    p.add_argument("--hold-ms", type=int, default=4000,
                   help="each call's length with RTP (default 4000); the fault comes at the middle of "
                        "calls/rate + hold, so a hold of at least calls/rate seconds has every call "
                        "in progress at the fault")
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep-logs", metavar="DIR", help="copy the nodes' logs of failed trials here")
    args = p.parse_args(argv)
    why = netns.available()
    if why:
        print(f"bench_fence: lab unavailable: {why}", file=sys.stderr)
        return 2
    os.environ["GATEWAYD_DEBUG_COMMANDS"] = "1"      # the nodes inherit it (stall)
    example = ROOT / "examples" / f"{args.example}.cfg"
    t0 = time.monotonic()
    trials = []
    for n in range(args.trials):
        if time.monotonic() - t0 > args.max_seconds:
            break
        t = one(example, args.fault, args.stall, n, Path(args.keep_logs) if args.keep_logs else None,
                calls={"calls": args.calls, "rate": args.rate, "hold_ms": args.hold_ms})
        trials.append(t)
        if len(trials) >= 3 and all(x.calls_attempted == 0 for x in trials[-3:]):
            print("bench_fence: three trials in a row placed no call; stopping", file=sys.stderr)
            break
        print(f"trial {n}: ok={t.ok} calls {t.calls_completed}/{t.calls_attempted} "
              f"removal {t.removal_s} s takeover {t.takeover_s} s RTP gap {t.rtp_gap_s} s "
              f"both-held samples {len(t.both_held)}" + (f" error {t.error}" if t.error else ""),
              flush=True)
    s = fence_trials.summary(trials)
    print(json.dumps(s, indent=2) if args.json else
          "\n".join(f"{k}: {v}" for k, v in s.items()))
    return 0 if s["ok"] == s["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
