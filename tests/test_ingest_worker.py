"""The ingest worker's verdicts, without a kernel: fake NFQUEUE packets with
the netfilterqueue Packet methods the worker uses."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from actors.ingest import STANDBY_DROP, DropLog, NfqueueWorker
from gateway.config import parse_text
from gateway.datapath import Alg, Datapath, Drop, Forward
from gateway.packet import build_udp, parse

CFG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 route
set policy from trust to untrust any any mgcp-ca deny
set policy from trust to untrust any any any permit
"""

LO = socket.if_nametoindex("lo")


class FakePacket:
    def __init__(self, data: bytes, indev: int = LO) -> None:
        self.data = data
        self.indev = indev
        self.verdict: str | None = None
        self.payload: bytes | None = None
        self.retained = False

    def get_payload(self) -> bytes:
        return self.data

    def set_payload(self, b: bytes) -> None:
        self.payload = b

    def retain(self) -> None:
        self.retained = True

    def _give(self, v: str) -> None:
        if self.verdict is not None:
            raise RuntimeError("Verdict already given for this packet")
        self.verdict = v

    def accept(self) -> None:
        self._give("accept")

    def drop(self) -> None:
        self._give("drop")


def worker(**kw) -> NfqueueWorker:
    kw.setdefault("clock", lambda: 100.0)
    return NfqueueWorker(3, {"lo": "ethernet1"}, Datapath(parse_text(CFG)), install=False, **kw)


def test_forward_sets_the_rewritten_payload():
    w = worker()
    p = FakePacket(build_udp("10.1.1.3", "1.1.1.9", 4000, 9000, b"hi"))
    w._callback(p)
    assert p.verdict == "accept"
    assert parse(p.payload).src == parse(build_udp("1.1.1.1", "1.1.1.9", 1, 2, b"")).src
    assert w.counters["accepted"] == 1


def test_drop_is_logged_with_its_reason_rate_limited(caplog):
    w = worker()
    with caplog.at_level(logging.INFO, logger="voip_alg.ingest"):
        for _ in range(3):
            p = FakePacket(build_udp("10.1.1.3", "1.1.1.9", 4000, 2727, b"RSIP"))
            w._callback(p)
            assert p.verdict == "drop"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["drop [policy-deny]: denied by policy 1 (trust->untrust)"]
    assert w.counters["dropped"] == 3


def test_drop_log_reports_the_suppressed_count():
    seen = []

    class L:
        def info(self, fmt, *a):
            seen.append(fmt % a)

    d = DropLog(L(), interval=1.0)
    assert d("r", 0.0) and not d("r", 0.5) and not d("r", 0.9)
    assert d("r", 1.0)
    assert seen == ["drop: r", "drop: r (and 2 more since)"]


def test_standby_drops_everything():
    w = worker(forwarding=lambda: False)
    p = FakePacket(build_udp("10.1.1.3", "1.1.1.9", 4000, 9000, b"hi"))
    w._callback(p)
    assert p.verdict == "drop" and w.counters["standby_dropped"] == 1
    assert w.drop_log._last["standby"]
    assert w.drop_codes == {"standby": 1}


def test_unknown_input_interface_dropped():
    w = worker()
    p = FakePacket(build_udp("10.1.1.3", "1.1.1.9", 4000, 9000, b"hi"), indev=999999)
    w._callback(p)
    assert p.verdict == "drop"


SIP = (b"INVITE sip:b@1.1.1.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.3:5060;branch=z9hG4bK1\r\n"
       b"From: <sip:a@10.1.1.3>;tag=a\r\nTo: <sip:b@1.1.1.9>\r\nCall-ID: w1@10.1.1.3\r\n"
       b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def test_alg_packet_held_and_answered_from_another_thread():
    got: list = []
    w = worker(on_alg=lambda out, done: got.append((out, done)))
    p = FakePacket(build_udp("10.1.1.3", "1.1.1.9", 5060, 5060, SIP))
    w._callback(p)
    assert p.retained and p.verdict is None and len(w._held) == 1
    out, done = got[0]
    assert isinstance(out, Alg) and out.key == "w1@10.1.1.3"

    def actor():
        res = w.finish_alg(out, "forward", out.payload.replace(b"10.1.1.3", b"1.1.1.1"))
        done(res)

    t = threading.Thread(target=actor)
    t.start()
    t.join()
    assert p.verdict is None                 # given on the worker thread only
    w._apply_verdicts()
    assert p.verdict == "accept" and b"Via: SIP/2.0/UDP 1.1.1.1:5060" in p.payload
    assert parse(p.payload).l4_checksum_ok
    # A second answer for the same packet is ignored.
    done(Drop("late", "alg"))
    w._apply_verdicts()
    assert p.verdict == "accept"


def test_held_packet_without_answer_times_out():
    now = [100.0]
    w = worker(on_alg=lambda out, done: None, clock=lambda: now[0], hold_timeout=2.0)
    p = FakePacket(build_udp("10.1.1.3", "1.1.1.9", 5060, 5060, SIP))
    w._callback(p)
    w._housekeeping(101.0)
    assert p.verdict is None
    w._housekeeping(102.5)
    assert p.verdict == "drop" and w.counters["held_timeout"] == 1


def test_alg_packet_without_runner_is_dropped():
    w = worker()
    p = FakePacket(build_udp("10.1.1.3", "1.1.1.9", 5060, 5060, SIP))
    w._callback(p)
    assert p.verdict == "drop" and not w._held


def test_datapath_bug_drops_the_packet_and_is_counted(caplog):
    w = worker()

    class Broken:
        def process(self, *a):
            raise KeyError("bug")

    w.datapath = Broken()
    p = FakePacket(build_udp("10.1.1.3", "1.1.1.9", 4000, 9000, b"hi"))
    with caplog.at_level(logging.ERROR, logger="voip_alg.ingest"):
        w._callback(p)
    assert p.verdict == "drop" and w.counters["errors"] == 1
    assert any("datapath failed" in r.getMessage() for r in caplog.records)


def test_housekeeping_expires_and_reports_activity():
    expired, activity = [], []
    w = worker(on_expired=expired.extend, on_activity=activity.extend)
    w._callback(FakePacket(build_udp("10.1.1.3", "1.1.1.9", 4000, 9000, b"hi")))
    w._housekeeping(100.0 + 61)
    assert len(expired) == 1 and expired[0].kind == "policy"


def test_rule_specs():
    w = NfqueueWorker(4, {"veth0": "ethernet1", "veth1": "ethernet3"},
                      Datapath(parse_text(CFG)), bypass=True)
    specs = w.rule_specs()
    assert [s[2] for s in specs] == ["veth0", "veth1"]
    for s in specs:
        assert s[0] == "PREROUTING" and s[s.index("--queue-num") + 1] == "4"
        assert s[-1] == "--queue-bypass" and "NFQUEUE" in s
    assert "--queue-bypass" not in NfqueueWorker(4, {"v": "e"}, w.datapath).rule_specs()[0]


def test_shared_lock_is_used():
    import threading
    shared = threading.RLock()
    w = worker(lock=shared)
    assert w.lock is shared
    with w.locked() as dp:
        assert dp is w.datapath
        assert shared._is_owned()


# -- overload control in the worker (gateway/overload.py) ---------------------------

def _invite(n: int, src: str = "10.1.1.3", to_tag: bool = False) -> bytes:
    msg = SIP.replace(b"Call-ID: w1@", b"Call-ID: w%d@" % n)
    if to_tag:
        msg = msg.replace(b"To: <sip:b@1.1.1.9>", b"To: <sip:b@1.1.1.9>;tag=b")
    return build_udp(src, "1.1.1.9", 5060, 5060, msg)


def test_new_dialogs_past_the_budget_are_shed_before_the_alg(caplog):
    from gateway.overload import NewDialogBudget, OverloadSettings
    now = [100.0]
    held: list = []
    w = worker(on_alg=lambda out, done: held.append(out), clock=lambda: now[0],
               overload=NewDialogBudget(OverloadSettings(rate=10)))
    caplog.set_level(logging.INFO, logger="voip_alg.ingest")
    verdicts = []
    for i in range(200):
        p = FakePacket(_invite(i))
        w._callback(p)
        verdicts.append(p.verdict)
    # The source's burst (10/s x 0.5 s) reaches the ALG; the rest is shed.
    assert len(held) == 5 and verdicts.count("drop") == 195
    assert w.counters["shed"] == 195 and w.drop_codes == {"overload-shed": 195}
    shed_lines = [r.getMessage() for r in caplog.records if "overload-shed" in r.getMessage()]
    assert len(shed_lines) == 1 and "sip-invite from 10.1.1.3" in shed_lines[0]
    # In-dialog requests are never shed.
    p = FakePacket(_invite(999, to_tag=True))
    w._callback(p)
    assert p.verdict is None and len(held) == 6
    # A second later the source has tokens again, and one more log line comes
    # with the count of the ones not logged.
    now[0] = 101.5
    for i in range(50):
        w._callback(FakePacket(_invite(1000 + i)))
    lines = [r.getMessage() for r in caplog.records if "overload-shed" in r.getMessage()]
    assert len(lines) == 2 and "more since" in lines[1]


def test_worker_takes_overload_settings_from_the_configuration():
    w = worker()
    assert w.overload is not None and w.overload.settings.rate == 200 and w.overload.settings.min_rate == 50
    off = NfqueueWorker(3, {"lo": "ethernet1"},
                        Datapath(parse_text(CFG + "set flow overload new-dialog-rate 0\n")),
                        install=False)
    assert off.overload is None


def test_held_completion_latency_feeds_overload():
    now = [100.0]
    w = worker(on_alg=lambda out, done: None, clock=lambda: now[0], hold_timeout=10.0)
    for i in range(3):
        w._callback(FakePacket(_invite(i)))
    token = next(iter(w._held))
    now[0] = 100.9
    w._verdicts.append((token, Drop("x", "alg")))
    w._apply_verdicts()
    assert w._latency_sum / w._latency_n == pytest.approx(0.9)
    w._housekeeping(101.0)
    assert w.overload.overloaded and w.overload.budget < 200
    assert w.drop_codes == {"alg-sip": 1}


def test_screens_act_before_the_alg():
    """The manual's UDP flood screen and source-IP session limit drop in the
    datapath, before the packet is held for its ALG (the expensive path)."""
    cfg = CFG + ("set zone trust screen udp-flood dst-ip 1.1.1.9 threshold 3\n"
                 "set zone trust screen limit-session source-ip-based 2\n")
    calls = []
    now = [100.0]
    w = NfqueueWorker(3, {"lo": "ethernet1"}, Datapath(parse_text(cfg)), install=False,
                      clock=lambda: now[0], overload=None)
    w.on_alg = lambda out, done: (calls.append(out), done(w.finish_alg(out, "forward", out.payload)))
    ps = [FakePacket(build_udp("10.1.1.3", "1.1.1.9", 6000 + i, 5060, _invite(i)[28:]))
          for i in range(6)]
    for p in ps:
        w._callback(p)
        w._apply_verdicts()
    # Two sessions (the limit), then the third new flow is refused by the
    # limit, the fourth packet of the second and beyond by the flood screen.
    assert len(calls) == 2
    assert [p.verdict for p in ps] == ["accept", "accept", "drop", "drop", "drop", "drop"]
    assert w.drop_codes == {"screen-src-session-limit": 1, "screen-udp-flood": 3}
