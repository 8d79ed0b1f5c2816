"""The node after a flood of unanswered INVITEs: once Timer C (RFC 3261
§16.6 bullet 11) has passed, its calls, pinholes, dialog actors and timers
are back to what they were before the flood."""

from __future__ import annotations

from actors.node import Node
from gateway.config.model import SipSettings
from tests.test_node import CFG, Clock, send, wait_for
from tests.test_sip_alg_bounds import ctx_from, scan_invite


def test_unanswered_invites_through_the_node_are_gone_after_timer_c(tmp_path):
    clock = Clock()
    node = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False)
    node.start()
    try:
        before = (len(node.show("calls")), len(node.show("pinholes")),
                  node.directory.count("entity"), len(node.timers))
        n = 200
        for i in range(n):
            src = f"203.0.113.{i % 20}"
            out = send(node, ctx_from(src), scan_invite(i, src), key=f"scan{i}")
            assert not getattr(out, "reason", ""), out.reason  # forwarded, not dropped
        assert len(node.show("calls")) == n and node.show("pinholes")
        clock.t += SipSettings().timer_c + 1
        node.timers.fire_due()
        wait_for(lambda: not node.show("calls"), timeout=20.0)
        wait_for(lambda: (len(node.show("calls")), len(node.show("pinholes")),
                          node.directory.count("entity"), len(node.timers)) == before,
                 timeout=20.0)
    finally:
        node.stop()
