"""The media offload in a real kernel (actors/kernel_media.py): the ingest
worker stand-alone with the SIP ALG inline (tests/test_ingest_netns.py's
three namespaces), a call, then RTP both ways. Once the media session is
established its packets are forwarded by the kernel: the queue's packet
count (its ``id_sequence`` in /proc) stops growing while every datagram
still arrives, rewritten; the session stays while its media flows past
the inactivity timeout (the kernel's counters keep it alive), and its
flows leave the kernel when it goes quiet. Both layouts: the nftables
table ("maps") and the tc ingress program ("bpf")."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from test_ingest_netns import CONFIG, PY, ROOT, lab, sh, start_worker, stop_worker  # noqa: F401

pytestmark = pytest.mark.netns
RTP = str(ROOT / "tests" / "netns_rtp.py")
QUEUE = 11
INACTIVITY = 4


def queued(gw: str, queue: int) -> int:
    """Packets the kernel has put in the queue so far (``id_sequence``)."""
    text = sh("ip", "netns", "exec", gw, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout
    for line in text.splitlines():
        f = line.split()
        if f and int(f[0]) == queue:
            return int(f[7])
    raise AssertionError(f"queue {queue} not bound: {text}")


def kernel_flows(gw: str) -> dict:
    from gateway.datapath.offload import parse_counters, table_name
    r = sh("ip", "netns", "exec", gw, "nft", "-j", "list", "map", "inet", table_name(QUEUE), "flows")
    return parse_counters(r.stdout)


def program_on(gw: str) -> list[str]:
    """The queued interfaces whose ingress runs the offload's program."""
    return [dev for dev in ("gwa", "gwb")
            if "voipgw_media" in sh("ip", "netns", "exec", gw, "tc", "filter", "show", "dev", dev,
                                    "ingress").stdout]


def kernel_view(gw: str, layout: str) -> dict:
    """The table's flows (maps); the program's interfaces (bpf: the
    stand-alone worker reports its map's counters only in its final
    statistics, checked below; the pair's lab test reads the map itself)."""
    return kernel_flows(gw) if layout == "maps" else {"attached": program_on(gw)}


@pytest.mark.parametrize("layout", ["maps", "bpf"])
def test_established_media_bypasses_the_queue_and_leaves_when_quiet(lab, layout):
    gw = lab["gw"]
    lab["cfg"].write_text(CONFIG + f"set sip media-inactivity-timeout {INACTIVITY}\n"
                          "set flow media-offload\n")
    worker = start_worker(lab, QUEUE, "--sip-inline", "--media-offload", layout)
    uas = uac = None
    try:
        rules = sh("ip", "netns", "exec", gw, "iptables", "-t", "raw", "-S", "PREROUTING").stdout
        # The table's packets are recognised ahead of the queue by a raw
        # rule; the program's never reach netfilter.
        assert rules.count("UNTRACKED") == (2 if layout == "maps" else 0), rules
        uas = subprocess.Popen(["ip", "netns", "exec", lab["b"], PY, RTP, "uas", "1.1.1.9", "30"],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT / "tests")
        assert uas.stdout.readline().strip() == "listening"
        # Phase 0: the call's first packets (through the queue: they open the
        # media session); phase 1: 6 s of RTP at 50/s, longer than the
        # inactivity timeout; phase 2: silence past it.
        uac = subprocess.Popen(["ip", "netns", "exec", lab["a"], PY, RTP, "uac", "10.1.1.3",
                                "1.1.1.9", f"20:0.02:1.5,300:0.02:0.5,0:0:{INACTIVITY + 4}"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               cwd=ROOT / "tests")
        answer = json.loads(uac.stdout.readline())
        assert answer.get("answer") == ["1.1.1.9", 7000], answer
        p0 = json.loads(uac.stdout.readline())
        flows = kernel_view(gw, layout)
        before = queued(gw, QUEUE)
        uac.stdin.write("\n")
        uac.stdin.flush()
        p1 = json.loads(uac.stdout.readline())
        after = queued(gw, QUEUE)
        during = kernel_view(gw, layout)
        uac.stdin.write("\n")
        uac.stdin.flush()
        p2 = json.loads(uac.stdout.readline())
        quiet = kernel_view(gw, layout)
        uac.stdin.write("\n")
        uac.stdin.flush()
        assert uac.stdout.readline().strip() == "done"
    finally:
        for p in (uac, uas):
            if p is not None and p.poll() is None:
                p.terminate()
        stats = stop_worker(worker)
    log_text = (lab["tmp"] / "worker.log").read_text()
    assert p0["sent"] == 20 and p0["echoed"] >= 19, (p0, log_text)
    off = stats["media_offload"]
    assert off["layout"] == layout, off
    # Both directions of the call's RTP in the kernel after the first packets.
    if layout == "maps":
        assert len(flows) == 2, (flows, log_text)
    else:
        assert flows == during == quiet == {"attached": ["gwa", "gwb"]}, (flows, during, quiet)
    # 300 datagrams each way, all echoed, and the queue saw (almost) none of
    # them: at most the few of a reinstall if the box stalled.
    # Forwarded as a router does: the TTL one less each way (64 sent, echoed
    # with what arrived, 62 back), the checksums right (all echoed).
    assert p1 == {"phase": 1, "sent": 300, "echoed": 300, "ttls": [62]}, p1
    assert after - before <= 10, (before, after)
    # Kept in the kernel while RTP flowed for longer than the inactivity
    # timeout, gone once quiet past it.
    if layout == "maps":
        assert sum(c[0] for c in during.values()) >= 600, during
        assert len(during) == 2
        assert quiet == {}, (quiet, log_text)
    assert p2["sent"] == 0
    assert off["media_path"] == "kernel" and off["packets"] >= 600, off
    assert off["flows"] == 0 and off["added"] == 2 and off["removed"] == 2, off
    assert stats["datapath"]["paths"]["kernel"] >= 600
    # Stopped: the table and the rules are gone.
    rules = sh("ip", "netns", "exec", gw, "iptables", "-t", "raw", "-S", "PREROUTING").stdout
    assert "UNTRACKED" not in rules and "NFQUEUE" not in rules
    tables = sh("ip", "netns", "exec", gw, "nft", "list", "tables").stdout
    assert "voipgw_media" not in tables
    assert program_on(gw) == []
