"""End to end with ``set flow media-offload``: SIPp calls with RTP through
the gatewayd pair in the namespace lab (the chapter 2 MIP example). Every
call completes with its RTP both ways, the active node's queue sees only
the signalling and each media direction's first packets (the kernel's
counters carry the rest), and the kernel's flows are gone once the calls'
pinholes are (BYE + 5 s)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from ops.lab import gateway_starter as gs
from ops.lab import netns, sipp
from ops.lab.plan import suggest_call

from test_e2e_calls import EXAMPLES, TAKEOVER_BOUND_S, _assert_calls, _wait_no_pinholes, lab_of

pytestmark = pytest.mark.netns


def offload_config(tmp_path):
    text = (EXAMPLES / "ch2-incoming-call-with-mip.cfg").read_text()
    out = tmp_path / "mip-offload.cfg"
    out.write_text(text.replace("\nsave", "\nset flow media-offload\nsave", 1)
                   if "\nsave" in text else text.rstrip("\n") + "\nset flow media-offload\n")
    return out


def kernel_flows(ns: str, mo: dict) -> int:
    """The flows the kernel holds for a node (its ``media_offload`` status):
    read from the kernel itself, the tc program's map by its id or the
    nftables table's map."""
    if mo.get("layout") == "bpf":
        from actors.kernel_media_bpf import flows_of_map
        return len(flows_of_map(mo["map_id"]))
    r = subprocess.run(netns.ns_cmd(ns, "nft", "-j", "list", "map", "inet", mo["table"], "flows"),
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    maps = [x["map"] for x in json.loads(r.stdout)["nftables"] if "map" in x]
    return len(maps[0].get("elem", []))


def test_sipp_calls_with_media_in_the_kernel(tmp_path) -> None:
    with lab_of(tmp_path, "mo") as make:
        cfg, plan, state = make(offload_config(tmp_path))
        call = suggest_call(plan, cfg)
        r = sipp.run_calls(call.caller, call.callee, dial=call.dial, calls=2, rate=2,
                           duration_ms=4000, per_call_media_port=True)
        _assert_calls(r, 2)
        role = gs.active_role(state)
        time.sleep(1.5)                        # one more read of the kernel's counters
        st = gs.node_status(state)[role]
        mo = st["media_offload"]
        rtp = r.rtp_sent + r.callee_rtp_sent
        assert mo["media_path"] == "kernel", mo
        # The tc program wherever it loads (the nftables table otherwise, and why).
        assert mo["layout"] == "bpf" or "bpf_unavailable" in mo, mo
        # Most of the RTP never reached the node: the kernel forwarded it.
        assert mo["packets"] >= 0.8 * rtp, (mo, rtp)
        assert st["ingest"]["packets"] < 0.2 * rtp, (st["ingest"], rtp)
        # BYE + 5 s: the pinholes close, the sessions go, and so do the flows.
        assert _wait_no_pinholes(state) == []
        ns = gs.node_paths(state, plan)[role].netns
        deadline = time.monotonic() + 3.0
        while kernel_flows(ns, mo) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert kernel_flows(ns, mo) == 0


def flows_or_none(ns: str, table: str) -> int:
    """The kernel flows in ``table`` of namespace ``ns``; 0 when the table is
    not there (a node that is not forwarding holds none)."""
    if table is None:
        return 0
    r = subprocess.run(netns.ns_cmd(ns, "nft", "-j", "list", "map", "inet", table, "flows"),
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return 0
    maps = [x["map"] for x in json.loads(r.stdout)["nftables"] if "map" in x]
    return len(maps[0].get("elem", [])) if maps else 0


@pytest.mark.parametrize("crash", [False, True], ids=["failover", "sigkill"])
def test_media_keeps_flowing_through_a_failover_with_offload(tmp_path, crash) -> None:
    with lab_of(tmp_path, "mf" if not crash else "mk") as make:
        cfg, plan, state = make(offload_config(tmp_path))
        call = suggest_call(plan, cfg)
        calls, rate, hold_ms = 4, 2.0, 5000
        first = gs.node_status(state)
        run = gs.calls_with_failover(state, call.caller, call.callee, call.dial, calls=calls,
                                     rate=rate, duration_ms=hold_ms,
                                     failover_at=(calls / rate + hold_ms / 1000) / 2, crash=crash)
        assert run.failover is not None, run.failover_error
        r = run.calls
        assert r.calls_attempted == calls and r.calls_completed == calls and r.calls_failed == 0, r
        assert run.rtp_before.both_ways(0.95), run.rtp_before
        # What the takeover itself loses is its time (the RTP gap; a SIGKILL
        # is seen when the dead process's HA connection closes).
        assert run.failover.seconds <= TAKEOVER_BOUND_S, (run.failover, run.rtp_during)
        assert run.rtp_after.both_ways(0.9 if not crash else 0.8), run.rtp_after
        # The new active forwards the media in the kernel, the calls' flows
        # installed from its state before it announced the addresses.
        st = gs.node_status(state)[run.failover.to_role]
        assert st["role"] == "active" and st["media_offload"]["media_path"] == "kernel", st
        assert st["media_offload"]["added"] >= 2, st["media_offload"]
        if crash:
            # The killed node, started again as the standby, holds no flows
            # of its own: what the dead process had installed is gone.
            assert run.failover.restarted
            old = gs.node_status(state)[run.failover.from_role]
            assert old["role"] == "standby", old
            ns_old = gs.node_paths(state, plan)[run.failover.from_role].netns
            assert flows_or_none(ns_old, st["media_offload"]["table"]) == 0
            assert old["media_offload"]["flows"] == 0, old["media_offload"]
            if st["media_offload"]["layout"] == "bpf":
                # The dead process's program and map left with it (its fence
                # detached the filters and unpinned the program).
                from actors.kernel_media_bpf import flows_of_map
                died = first[run.failover.from_role]["media_offload"]["map_id"]
                assert old["media_offload"]["map_id"] != died, old["media_offload"]
                with pytest.raises(FileNotFoundError):
                    flows_of_map(died)
        assert _wait_no_pinholes(state) == []
