"""End to end: legitimate calls keep completing through the gatewayd pair
while a second host floods INVITEs at more than four times the pair's
capacity (overload control, gateway/overload.py; bench/bench_flood.py has
the full comparison).

Needs root, ip netns, nft and SIPp; skipped with the reason otherwise. Run
under the lab lock: flock /tmp/voip-lab.lock ... -m netns."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ops.lab import gateway_starter as gs
from ops.lab import netns, sipp

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
# The pair's signalling-only capacity on the shared 2-core lab machine
# (bench_flood.py's ladder: the highest step with every call completed; see
# also ARCHITECTURE.md "Call rate through the gateway pair", 480-640/s).
PAIR_CAPACITY = 320
FLOOD_RATE = 4 * PAIR_CAPACITY


def _why_not() -> str | None:
    why = netns.available()
    if why:
        return why
    for tool in ("nft", sipp.SIPP, "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not sipp.G711A_PCAP.exists():
        return f"{sipp.G711A_PCAP} missing (Debian sip-tester)"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "netfilterqueue is not installed in this environment"
    return None


WHY = _why_not()


@pytest.fixture(scope="module")
def bench_flood():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_flood as bf
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return bf


@pytest.mark.skipif(WHY is not None, reason=WHY or "")
def test_legitimate_calls_complete_during_a_4x_invite_flood(bench_flood):
    bf = bench_flood
    with bf.flood_lab(gs.NAME) as (state, call, dial):
        flooder = next(h for h in state.get_plan().hosts if h.label == bf.FLOOD_HOST)
        row = bf.flood_step(state, call, flooder, dial, flood_rate=FLOOD_RATE, flood_seconds=10.0,
                            legit_calls=20, legit_rate=2.0, hold_ms=1000)
    assert row["legit_completed"] >= 19, row          # >= 95% of the legitimate calls
    # RTP of the legitimate calls flowed both ways.
    assert row["rtp_sent"] > 0 and row["rtp_at_callee"] >= 0.9 * row["rtp_sent"], row
    assert row["rtp_back"] >= 0.9 * row["rtp_echoed"], row
    # The flood was shed at the active, per code, not carried to the ALG.
    assert row["shed"] and row["shed"] > 0, row
    active = next(v for v in row["nodes_after"].values() if v.get("role") == "active")
    assert active["drop_codes"].get("overload-shed", 0) > 0
