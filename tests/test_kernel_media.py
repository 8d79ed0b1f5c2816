"""actors/kernel_media.py with the commands recorded instead of run: what it
installs and removes, how it follows the sessions and the node's role, and
what happens when the kernel refuses."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from actors.kernel_media import KernelMedia, rule_specs
from gateway.packet import build_udp

from test_datapath_fastpath import FLOOD_CFG, datapath


class Host:
    """The commands, and the answers: ``fail`` names commands that fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail: set[str] = set()
        self.listing = {"nftables": [{"map": {"name": "flows", "elem": []}}]}

    def __call__(self, args, input=None, **kw):
        self.calls.append((list(args), input))
        word = "list" if "list" in args else ("iptables" if args[0] == "iptables" else
                                             "table" if input and "chain pre" in input else
                                             "batch" if input else args[0])
        if word in self.fail:
            return subprocess.CompletedProcess(args, 1, "", "refused")
        return subprocess.CompletedProcess(args, 0, json.dumps(self.listing) if word == "list" else "",
                                           "")

    def batches(self) -> list[str]:
        return [i for a, i in self.calls if i and "chain pre" not in i]


class Worker:
    def __init__(self, dp) -> None:
        self.datapath = dp
        self.lock = threading.RLock()
        self.clock = lambda: 5.0


def media(dp, host, active=lambda: True) -> KernelMedia:
    km = KernelMedia(3, ["gwa", "gwb"], Worker(dp), active, run=host)
    assert km.install()
    return km


def established(dp) -> None:
    dp.process(build_udp("2.2.2.2", "1.1.1.1", 6000, 20000, b"x"), "ethernet3", 0.0)
    dp.process(build_udp("10.1.1.3", "2.2.2.2", 4000, 6000, b"x"), "ethernet1", 0.0)


def test_install_sync_count_and_remove():
    host, dp = Host(), datapath()
    km = media(dp, host)
    table = [i for a, i in host.calls if i and "chain pre" in i]
    assert len(table) == 1 and "table inet voipgw_media_q3" in table[0]
    accepts = [a for a, _ in host.calls if a[0] == "iptables"]
    assert [a[a.index("-I") + 1:] for a in accepts] == rule_specs(3, ["gwa", "gwb"])
    assert km.status()["media_path"] == "kernel"
    established(dp)
    assert km.sync() == 2
    (batch,) = host.batches()
    assert batch.count("add element inet voipgw_media_q3 flows") == 1
    assert km.sync() == 0                                    # nothing changed
    # The kernel's counters come back into the session.
    (sess,) = [s for s in dp.sessions if s.kind == "media"]
    host.listing["nftables"][0]["map"]["elem"] = [
        [{"elem": {"val": {"concat": ["2.2.2.2", "1.1.1.1", 6000, 20000]},
                   "counter": {"packets": 30, "bytes": 6000}}}, 1],
        [{"elem": {"val": {"concat": ["10.1.1.3", "2.2.2.2", 4000, 6000]},
                   "counter": {"packets": 20, "bytes": 4000}}}, 2]]
    assert km.count() == 50
    assert sess.fwd_packets == 31 and sess.rev_packets == 21 and sess.deadline == 5.0 + sess.timeout
    km.remove()
    deletes = [a for a, _ in host.calls if a[0] == "iptables" and "-D" in a]
    assert len(deletes) >= 2
    assert ["nft", "delete", "table", "inet", "voipgw_media_q3"] in [a for a, _ in host.calls]


def test_a_refused_batch_flushes_and_starts_over():
    host, dp = Host(), datapath()
    km = media(dp, host)
    established(dp)
    host.fail.add("batch")
    km.sync()
    assert km.errors == 1 and len(km.flows) == 0
    assert any("flush map inet voipgw_media_q3 flows" in (i or "") for _, i in host.calls)
    host.fail.clear()
    assert km.sync() == 2 and len(km.flows) == 2


def test_a_standby_holds_no_flows_and_says_why():
    host, dp = Host(), datapath()
    role = {"active": True}
    km = media(dp, host, lambda: role["active"])
    established(dp)
    km.sync()
    role["active"] = False
    km.sync()
    assert len(km.flows) == 0 and "delete element" in host.batches()[-1]
    st = km.status()
    assert st["media_path"] == "userspace" and st["reason"] == "not forwarding (standby)"


def test_userspace_when_the_kernel_cannot():
    host = Host()
    host.fail.add("table")
    km = KernelMedia(3, ["gwa"], Worker(datapath()), run=host)
    assert not km.install()
    st = km.status()
    assert st["media_path"] == "userspace" and "refused" in st["reason"]
    # A UDP flood screen counts every packet in userspace: no offload.
    host, dp = Host(), datapath(FLOOD_CFG)
    km = media(dp, host)
    established(dp)
    assert km.sync() == 0 and "flood" in km.status()["reason"]


def test_flows_of_a_released_call_leave_the_kernel_at_once_not_at_the_next_turn():
    # A DLCX (or a call's end) releases its media sessions: the datapath
    # wakes the offload, which takes exactly their flows out in one batch;
    # the periodic turn (30 s here) is not waited for.
    host, dp = Host(), datapath()
    km = KernelMedia(3, ["gwa", "gwb"], Worker(dp), run=host, interval=30.0, count_interval=60.0)
    assert km.install()
    established(dp)
    assert km.sync() == 2
    km.start()
    try:
        before = len(host.batches())
        with km.worker.lock:
            gone = dp.release_call("c")
        assert len(gone) == 1 and dp.offload_gone == gone
        deadline = time.monotonic() + 5.0
        while len(host.batches()) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        (batch,) = host.batches()[before:]
        assert batch.count("delete element inet voipgw_media_q3 flows") == 1
        assert "2.2.2.2 . 1.1.1.1 . 6000 . 20000" in batch and "10.1.1.3 . 2.2.2.2 . 4000 . 6000" in batch
        assert len(km.flows) == 0 and dp.offload_gone == [] and gone[0].offloaded == 0
        assert km.flows.stats()["removed"] == 2
    finally:
        km.remove()
    # Stopped: the datapath no longer wakes it.
    assert dp.offload_wake is None


def test_sessions_that_were_never_in_the_kernel_wake_nothing():
    dp = datapath()
    woken = []
    dp.offload_wake = lambda: woken.append(1)
    established(dp)                          # the offload never took them
    dp.release_call("c")
    assert woken == [] and dp.offload_gone == []


def _no_program(monkeypatch):
    from actors.kernel_media_bpf import BpfFlows
    monkeypatch.setattr(BpfFlows, "install", lambda self: "the BPF program could not be loaded: refused")


def test_auto_takes_the_table_where_the_program_cannot_load(monkeypatch):
    _no_program(monkeypatch)
    host, dp = Host(), datapath()
    km = KernelMedia(3, ["gwa", "gwb"], Worker(dp), run=host, mode="auto")
    assert km.install()
    st = km.status()
    assert st["media_path"] == "kernel" and st["layout"] == "maps" and st["table"] == "voipgw_media_q3"
    assert st["bpf_unavailable"] == "the BPF program could not be loaded: refused"
    assert len(km.rule_specs()) == 2 and km.bpf is None
    km.remove()


def test_the_bpf_layout_alone_leaves_media_in_userspace_when_it_cannot_load(monkeypatch):
    _no_program(monkeypatch)
    host, dp = Host(), datapath()
    km = KernelMedia(3, ["gwa", "gwb"], Worker(dp), run=host, mode="bpf")
    assert not km.install()
    st = km.status()
    assert st["media_path"] == "userspace" and st["reason"].startswith("the BPF program could not")
    assert host.calls == []                  # no table, no rule


def test_an_unknown_layout_is_refused():
    import pytest
    with pytest.raises(ValueError, match="maps, chains, bpf or auto"):
        KernelMedia(3, ["gwa"], Worker(datapath()), run=Host(), mode="flowtable")


def test_gwctl_status_says_which_kernel_path_carries_the_media(monkeypatch, capsys):
    from ops.commands import node as node_cmd
    from ops.gwctl import build_parser
    base = {"node": "gw-a", "role": "active", "epoch": 3, "forwarding": True, "replication": "sync",
            "journal_head": 9, "applied": 9, "calls": 0, "registrations": 0, "pinholes": 0,
            "actors": 1, "datapath": {"paths": {}}}
    for mo, lines in (
            ({"media_path": "kernel", "layout": "bpf", "flows": 4, "packets": 900, "map_id": 7},
             ["media path: kernel (tc program); 4 flow direction(s) in the kernel, 900 packets forwarded there"]),
            ({"media_path": "kernel", "layout": "maps", "flows": 2, "packets": 10,
              "bpf_unavailable": "the BPF program could not be loaded: refused"},
             ["media path: kernel (nftables); 2 flow direction(s)",
              "media tc program not in use: the BPF program could not be loaded: refused"])):
        monkeypatch.setattr(node_cmd, "_call", lambda args, cmd, payload=None: {**base, "media_offload": mo})
        args = build_parser().parse_args(["status"])
        assert args.func(args) == 0
        out = capsys.readouterr().out
        for line in lines:
            assert line in out, out
