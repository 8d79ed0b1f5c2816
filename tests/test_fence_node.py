"""The node's lease glue (actors/node.py): forwarding is checked against the
lease per packet, the supervisor is told each lease before any address is
added, an expired lease demotes and releases, and a graceful handover gives
the addresses up before the standby is told to take over."""

from __future__ import annotations

import time

from actors.node import Node
from gateway.config.model import Config

CFG = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())


class FakeAddresses:
    def __init__(self) -> None:
        self.log: list = []

    def lease(self, until):
        self.log.append(("lease", until))

    def acquire(self):
        self.log.append(("acquire",))

    def release(self):
        self.log.append(("release",))


def node(tmp_path, lease=0.3):
    n = Node("a", CFG, str(tmp_path / "j"), addresses=FakeAddresses(), lease=lease)
    n.start()
    return n


def test_lease_is_reported_before_the_addresses_are_added(tmp_path):
    n = node(tmp_path)
    try:
        kinds = [e[0] for e in n.addresses.log]
        assert kinds[:2] == ["lease", "acquire"]
        assert n.addresses.log[0][1] == n.role.lease_until
    finally:
        n.stop()


def test_forwarding_ends_with_the_lease_without_any_trigger(tmp_path):
    n = node(tmp_path, lease=0.3)
    try:
        assert n.forwarding and n.role.role == "active"
        time.sleep(0.35)
        # Nobody renewed (no heartbeats): the per-packet check alone says no.
        assert not n.forwarding and n.role.role == "active"
        n.on_trigger("lease_check", time.monotonic())
        assert n.role.role == "standby" and ("release",) in n.addresses.log
    finally:
        n.stop()


def test_renewal_after_expiry_demotes(tmp_path):
    n = node(tmp_path, lease=0.3)
    try:
        n.on_trigger("lease_renewed", time.monotonic())
        assert n.forwarding
        time.sleep(0.35)
        n.on_trigger("lease_renewed", time.monotonic())
        assert n.role.role == "standby" and not n.forwarding
    finally:
        n.stop()


def test_graceful_handover_releases_before_anything_else(tmp_path):
    """Without a standby the handover aborts: the addresses were given up
    first, then taken back (the order a standby would see: released, then
    HANDOVER)."""
    n = node(tmp_path, lease=30.0)
    try:
        n.addresses.log.clear()
        r = n.failover(timeout=2.0)
        assert r["ok"] is False and n.role.role == "active" and n.forwarding
        kinds = [e[0] for e in n.addresses.log if e[0] != "lease"]
        assert kinds == ["release", "acquire"]
    finally:
        n.stop()


def test_a_node_without_lease_is_not_fenced(tmp_path):
    n = node(tmp_path, lease=None)
    try:
        assert n.forwarding
        # No lease to report: the supervisor's default (none) never expires.
        assert n.addresses.log == [("acquire",)]
    finally:
        n.stop()


def test_a_stopping_active_gives_its_addresses_up_before_its_ha_connection_closes(tmp_path):
    """The standby takes over as soon as the active's HA connection closes
    (actors/replication.py): a stopping active must not hold the addresses
    until its process has exited. A stopping standby holds none."""
    order: list = []
    n = node(tmp_path)

    class Repl:
        def stop(self):
            order.append("replicator stopped")

    n.replicator = Repl()
    real_release = n.addresses.release
    n.addresses.release = lambda: (order.append("released"), real_release())
    assert n.role.role == "active"
    n.stop()
    assert order == ["released", "replicator stopped"]

    standby = Node("b", CFG, str(tmp_path / "jb"), addresses=FakeAddresses(), lease=0.3)
    standby.start(role="standby")
    standby.stop()
    assert ("release",) not in standby.addresses.log
