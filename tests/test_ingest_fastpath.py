"""The worker's fast path for established UDP (gateway/datapath/fastpath.py):
the same verdicts, bytes and counters as the full datapath gives."""

from __future__ import annotations

import socket

from actors import nfq_verdicts as nv
from actors.ingest import NfqueueWorker
from gateway.config import parse_text
from gateway.datapath import Datapath
from gateway.packet import build_udp

from test_datapath_pipeline import NAT_CFG

# Interface NAT from trust to untrust (the pipeline tests' configuration).
CFG = NAT_CFG

LO = socket.if_nametoindex("lo")


class Pkt:
    """A queued packet as the worker sees it (netfilterqueue's Packet)."""

    def __init__(self, data: bytes, pid: int, indev: int = LO) -> None:
        self.data, self.id, self.indev = data, pid, indev

    def get_payload(self) -> bytes:
        return self.data


def worker(sent: list, **kw) -> NfqueueWorker:
    w = NfqueueWorker(7, {"lo": "ethernet1"}, Datapath(parse_text(CFG)), install=False,
                      clock=lambda: 50.0, **kw)
    w.verdicts = nv.BatchedVerdicts(-1, 7, sender=sent.append)
    return w


def test_established_packets_take_the_fast_path_with_the_same_result():
    sent: list[bytes] = []
    w = worker(sent)
    twin = Datapath(parse_text(CFG))
    pkts = [build_udp("10.1.1.3", "1.1.1.9", 4000, 9000, b"x" * n) for n in (10, 11, 171)]
    for i, buf in enumerate(pkts * 2):
        w._callback(Pkt(buf, i + 1))
    w.verdicts.flush()
    want = [(7, i + 1, nv.NF_ACCEPT, bytes(twin.process(buf, "ethernet1", 50.0).data))
            for i, buf in enumerate(pkts * 2)]
    assert nv.decode_verdicts(b"".join(sent)) == want
    assert w.datapath.paths == twin.paths == {"fast-session": 5, "fast-pinhole": 0, "policy": 1,
                                              "alg": 0}
    (s,), (t,) = list(w.datapath.sessions), list(twin.sessions)
    assert (s.fwd_packets, s.fwd_bytes, s.deadline) == (t.fwd_packets, t.fwd_bytes, t.deadline)
    assert w.counters["accepted"] == w.counters["packets"] == 6


def test_standby_and_foreign_interfaces_are_dropped_before_the_fast_path():
    sent: list[bytes] = []
    up = [True]
    w = worker(sent, forwarding=lambda: up[0])
    buf = build_udp("10.1.1.3", "1.1.1.9", 4000, 9000, b"x")
    w._callback(Pkt(buf, 1))
    up[0] = False
    w._callback(Pkt(buf, 2))
    up[0] = True
    w._ifnames[12345] = None
    w._callback(Pkt(buf, 3, indev=12345))
    w.verdicts.flush()
    assert [v[2] for v in nv.decode_verdicts(b"".join(sent))] == [nv.NF_ACCEPT, nv.NF_DROP, nv.NF_DROP]
    assert w.counters["standby_dropped"] == 1 and w.datapath.paths["fast-session"] == 0


def test_a_new_datapath_brings_its_own_fast_path():
    sent: list[bytes] = []
    w = worker(sent)
    buf = build_udp("10.1.1.3", "1.1.1.9", 4000, 9000, b"x")
    w._callback(Pkt(buf, 1))
    w._callback(Pkt(buf, 2))
    assert w.datapath.paths["fast-session"] == 1
    fresh = Datapath(parse_text(CFG))
    w.replace_datapath(fresh)
    w._callback(Pkt(buf, 3))
    assert fresh.paths == {"fast-session": 0, "fast-pinhole": 0, "policy": 1, "alg": 0}


def test_no_fast_path_under_a_udp_flood_screen():
    w = NfqueueWorker(7, {"lo": "ethernet1"}, Datapath(parse_text(
        CFG + "set zone trust screen udp-flood dst-ip 1.1.1.9 threshold 1000\n")), install=False)
    assert w._fast is None
