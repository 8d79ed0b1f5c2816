"""The H.323 call of test_h323_datapath through a node (dialog actors,
journal, entity actors, timers): show calls and pinholes list it, the
journal replays to the live state, ReleaseComplete ends it everywhere."""

from __future__ import annotations

import threading

from scapy.layers.inet import IP

from actors.node import Node
from gateway import domain
from gateway.datapath import Alg, Datapath, Forward
from gateway.packet import build_udp
from journal.replay import replay
from test_h323_datapath import (
    CONNECT, GUID, MIP1, OLC1, PHONE1, PHONE2, ROOT, SETUP, conn_out, release,
)
from gateway.config import load_file


class NodeGateway:
    """Packets through the datapath; ALG outcomes through the node."""

    def __init__(self, journal: str) -> None:
        cfg = load_file(ROOT / "examples" / "ch1-outgoing-calls-with-nat.cfg")
        self.dp = Datapath(cfg)
        self.now = 1000.0
        self.node = Node("n1", cfg, journal, datapath=self.dp, clock=lambda: self.now, fsync=False,
                         timer_thread=False)
        self.node.start()

    def send(self, buf: bytes, ingress: str, now: float):
        self.now = now
        with self.node.dp_lock:
            out = self.dp.process(buf, ingress, now)
        if isinstance(out, Alg):
            box, done = [], threading.Event()
            self.node.handle_alg(out, lambda final: (box.append(final), done.set()))
            assert done.wait(10)
            out = box[0]
        return out


def test_h323_call_through_the_node(tmp_path):
    gw = NodeGateway(str(tmp_path / "j"))
    try:
        q931 = conn_out(gw, (PHONE1, 32803), (PHONE2, 1720), MIP1)
        q931.open(1000.0)
        out = q931.data("a", SETUP, 1000.1)
        assert isinstance(out, Forward) and IP(out.data).src == MIP1
        assert isinstance(q931.data("b", CONNECT, 1000.2), Forward)
        h245 = conn_out(gw, (PHONE1, 40000), (PHONE2, 1232), MIP1)
        h245.open(1000.3)
        assert isinstance(h245.data("a", OLC1, 1000.4), Forward)
        gw.node.quiesce()

        key = GUID.hex()
        calls = gw.node.show("calls")
        (call,) = [c for c in calls if c and c.get("alg") == "h323"]
        assert call["call"] == key and call["phase"] == "connected" and call["h245"] == [f"{PHONE2}:1232"]
        holes = gw.node.show("pinholes")
        assert {h["kind"] for h in holes if h["call"] == key} == {"signalling", "media"}
        assert gw.node.status()["calls"] == 1
        assert gw.node.timers.specs()                       # the call's deadline is armed

        # RTCP from IP_Phone2 to the public address its OLC announced.
        p = gw.send(build_udp(PHONE2, MIP1, 2007, 5001, b"\x81" * 20), "ethernet3", 1001.0)
        assert isinstance(p, Forward) and IP(p.data).dst == PHONE1

        ref = gw.node.state.h323.calls[key].call_reference
        assert isinstance(q931.data("b", release(ref, True), 1002.0), Forward)
        gw.node.quiesce()
        assert key not in gw.node.state.h323.calls
        assert not [h for h in gw.node.show("pinholes") if h["call"] == key]
        assert not [s for s in gw.dp.sessions if s.kind == "media" and s.call == key]
        live = gw.node.state
    finally:
        gw.node.stop()
    state, _last = replay(str(tmp_path / "j"), domain.apply, domain.EMPTY)
    assert state == live
