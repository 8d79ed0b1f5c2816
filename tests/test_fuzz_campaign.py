"""The fuzz campaign driver (bench/fuzz_campaign.py) and its targets, in a
bounded run: a few hundred inputs a target keep to the rule (read, or the
target's own error class, within 50 ms and bounded memory); the driver
saves a failing input, and prints its totals also when interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from fuzz_campaign import Campaign  # noqa: E402
from fuzz_targets import TARGETS  # noqa: E402

INPUTS = 150


def _args(tmp_path, **kw):
    base = dict(seed=7, out=str(tmp_path), bound_ms=50.0, stall_s=5.0, memory_mb=8.0, memory_every=50,
                keep=20)
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_keeps_the_rule(tmp_path, name):
    import random
    target = TARGETS[name].load()
    assert target.seeds
    c = Campaign(target, _args(tmp_path))
    rng = random.Random(7)
    for seed in target.seeds:           # the seeds themselves are read
        c.one(seed)
    for _ in range(INPUTS):
        c.one(target.mutator(rng, rng.choice(target.seeds)))
    s = c.summary(None)
    assert s["failures"] == 0, (s["findings"], sorted(os.listdir(tmp_path)))
    assert s["inputs"] == INPUTS + len(target.seeds)
    assert s["accepted"] >= len(target.seeds) // 2
    assert s["refused"] > 0 or not target.expected       # an ALG step refuses nothing: it drops


_FAKE = """
import sys
sys.path.insert(0, {bench!r})
import fuzz_campaign, fuzz_targets
from fuzz_mutations import Mutator

SLOW = b"slow-seed-0123456789abcdef"

def read(data):
    if b"!" in data:
        raise KeyError("a finding")
    if data == SLOW:
        import time
        t = time.thread_time()
        while time.thread_time() - t < 0.06:
            pass
    if b"?" in data:
        raise ValueError("refused")

def build():
    return [b"abc", SLOW], Mutator([b"!", b"?"], [b"x"], pool=[b"abc"]), read, (ValueError,)

fuzz_targets.TARGETS["fake"] = fuzz_targets.Target("fake", "a reader with a defect", build)
fuzz_campaign.TARGETS["fake"] = fuzz_targets.TARGETS["fake"]
sys.exit(fuzz_campaign.main(sys.argv[1:]))
"""


def _driver(tmp_path, *argv):
    """The driver on a fake target, its output to a file (findings print
    a line each: a pipe nobody reads would stall it)."""
    script = tmp_path / "fake_driver.py"
    script.write_text(_FAKE.format(bench=str(ROOT / "bench")))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(tmp_path / "driver.out", "w")
    # SIGINT ignored, as a shell leaves it for a command run in the background.
    p = subprocess.Popen([sys.executable, str(script), "--target", "fake", "--out", str(tmp_path / "out"),
                          "--address-space-mb", "0", *argv], stdout=log, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    log.close()
    return p


def _totals(tmp_path) -> dict:
    out = (tmp_path / "driver.out").read_text()
    return json.loads(out[out.index("\n{") + 1:])


def test_findings_are_saved_and_counted(tmp_path):
    p = _driver(tmp_path, "--count", "400", "--seed", "3")
    assert p.wait(timeout=120) == 1
    s = _totals(tmp_path)
    assert s["inputs"] == 400 and s["findings"].get("raise", 0) > 0 and s["findings"].get("slow", 0) >= 1
    assert s["slowest_ms"] >= 50 and s["failures"] == sum(s["findings"].values())
    saved = sorted((tmp_path / "out").glob("fake-raise-3-*.bin"))
    assert saved and all(b"!" in f.read_bytes() for f in saved)
    assert "KeyError" in saved[0].with_suffix(".txt").read_text()
    # The slow seed (and mutations of it that left it as it was), no other.
    slow = list((tmp_path / "out").glob("fake-slow-3-*.bin"))
    assert slow and {f.read_bytes() for f in slow} == {b"slow-seed-0123456789abcdef"}


@pytest.mark.parametrize("sig, name", [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_totals_printed_when_interrupted(tmp_path, sig, name):
    p = _driver(tmp_path, "--count", "1000000000", "--seed", "5")
    summary = tmp_path / "out" / "summary-fake-5.json"
    deadline = time.monotonic() + 60
    # Under way once its first finding is printed.
    while "FINDING" not in (tmp_path / "driver.out").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(sig)
    assert p.wait(timeout=60) == 1
    s = _totals(tmp_path)
    assert s["interrupted"] == name and s["inputs"] > 0 and s["failures"] > 0
    assert json.loads(summary.read_text())["inputs"] == s["inputs"]
