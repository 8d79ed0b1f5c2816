"""End to end: `gwctl config apply` to a running lab pair in the middle of
calls (manual ch. 2 "Example: Incoming Call with MIP", SIPp with RTP).

A change the calls still satisfy: they carry on with RTP both ways; the
standby runs the new configuration (same hash); a failover afterwards keeps
it. Then a change that no longer permits the caller: its call in progress
is ended (ScreenOS session rematch, gateway/rematch.py): gone from the
active's calls, its RTP stops in both directions.

Needs root, ip netns, nft and SIPp; skipped with the reason otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ops.lab import gateway_starter as gs
from ops.lab import sipp
from ops.lab.netns import read_counters
from ops.lab.plan import suggest_call

from test_e2e_calls import EXAMPLES, PINHOLE_GRACE, _assert_calls, lab_of

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
BASE = (EXAMPLES / "ch2-incoming-call-with-mip.cfg").read_text()
# Still permits phone2's calls to phone1's MIP: one more caller allowed.
MORE = BASE + ("set address untrust extra 1.1.1.9/32\n"
               "set policy from untrust to trust extra mip(1.1.1.5) sip permit\n")
# Only "extra" may call the MIP now: phone2's call is no longer permitted.
ONLY_EXTRA = MORE.replace("set policy from untrust to trust any mip(1.1.1.5) sip permit\n", "")


def gwctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops.gwctl", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def running(sock) -> dict:
    return gs.node_call(sock, "config-running", {}, timeout=10.0)


def calls_in_background(call, **kw):
    out: dict = {}

    def run() -> None:
        try:
            out["r"] = sipp.run_calls(call.caller, call.callee, dial=call.dial,
                                      per_call_media_port=True, **kw)
        except BaseException as exc:       # reported by the test
            out["error"] = exc
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


def test_apply_mid_call_then_failover_then_a_denied_call_ends(tmp_path):
    with lab_of(tmp_path, "lc") as make:
        base = tmp_path / "gateway.cfg"
        base.write_text(BASE)
        cfg, plan, state = make(base)
        call = suggest_call(plan, cfg)
        paths = gs.node_paths(state, plan)
        active = gs.active_role(state)
        standby = next(r for r in paths if r != active)

        # 1. A change the calls in progress still satisfy, applied mid-call.
        more = tmp_path / "more.cfg"
        more.write_text(MORE)
        th, out = calls_in_background(call, calls=2, rate=2.0, duration_ms=6000)
        time.sleep(3.0)
        diff = gwctl("config", "diff", "--node", str(paths[active].socket), str(more))
        assert diff.returncode == 1 and "+set address untrust extra" in diff.stdout, diff
        applied = gwctl("config", "apply", "--node", str(paths[active].socket), str(more))
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert "0 call(s) ended" in applied.stdout, applied.stdout
        new_hash = running(paths[active].socket)["hash"]
        th.join(60)
        assert "error" not in out, out.get("error")
        _assert_calls(out["r"], 2)           # every call completed, RTP both ways
        # The ALG keeps an ended call 5 s after its BYE (teardown delay): gone
        # before the next part, whose count of calls ended is exact.
        deadline = time.monotonic() + PINHOLE_GRACE + 10
        while gs.node_call(paths[active].socket, "show", {"what": "calls"}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gs.node_call(paths[active].socket, "show", {"what": "calls"}) == []
        deadline = time.monotonic() + 10
        while running(paths[standby].socket)["hash"] != new_hash and time.monotonic() < deadline:
            time.sleep(0.2)
        shown = gwctl("config", "show", "--running", "--node", str(paths[standby].socket))
        assert shown.returncode == 0 and new_hash in shown.stdout and "extra" in shown.stdout, shown

        # 2. A failover keeps it.
        fo = gs.failover(state)
        assert fo.to_role == standby
        assert running(paths[standby].socket)["hash"] == new_hash
        # 3. A change that no longer permits phone2: the old active, a
        # standby now, refuses it; the new active applies it, and the call in
        # progress ends, its RTP stops.
        only = tmp_path / "only-extra.cfg"
        only.write_text(ONLY_EXTRA)
        refused = gwctl("config", "apply", "--node", str(paths[active].socket), str(only))
        assert refused.returncode == 1 and "is the standby" in refused.stderr, refused
        th, out = calls_in_background(call, calls=1, rate=1.0, duration_ms=9000)
        sock = paths[standby].socket                  # the active now
        deadline = time.monotonic() + 20
        while not gs.node_call(sock, "show", {"what": "calls"}) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        before = read_counters(call.callee.netns)
        assert before[0] > 0, "no RTP reached the callee before the change"
        applied = gwctl("config", "apply", "--node", str(sock), str(only))
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert "1 call(s) ended" in applied.stdout, applied.stdout
        assert gs.node_call(sock, "show", {"what": "calls"}) == []
        time.sleep(1.0)
        settled = read_counters(call.callee.netns), read_counters(call.caller.netns)
        time.sleep(2.0)
        after = read_counters(call.callee.netns), read_counters(call.caller.netns)
        # Nothing reaches either party any more (a packet or two in flight aside).
        assert after[0][0] - settled[0][0] <= 2 and after[1][0] - settled[1][0] <= 2, (settled, after)
        assert running(paths[active].socket)["hash"] == running(sock)["hash"]
        th.join(60)
