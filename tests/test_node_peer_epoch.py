"""A standby's epoch reaches its HA transport: the heartbeats it sends carry
the epoch its role machine holds, so the active shows the standby's real
epoch (actors/node.py, gateway/ha.py on_peer_epoch)."""

from __future__ import annotations

from types import SimpleNamespace

from actors.node import Node
from gateway.config.model import Config

CFG = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())


class Transport:
    """The part of actors.replication.Replicator the node uses; it records
    the role and epoch it is told, which its heartbeats would carry."""

    def __init__(self) -> None:
        self.role, self.epoch = "standby", 0
        self.told: list[tuple[str, int]] = []

    def set_role(self, role: str, epoch: int) -> None:
        self.role, self.epoch = role, epoch
        self.told.append((role, epoch))

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def notify_appended(self) -> None: ...
    def has_standby(self) -> bool: return False
    def wait_acked(self, seq, timeout) -> bool: return True

    def status(self):
        return SimpleNamespace(peer_role="active", peer_epoch=1, peer_seen_ago=0.1, peer_head=0,
                               peer_applied=0)


def test_a_standby_adopting_the_active_epoch_tells_its_transport(tmp_path):
    transport = Transport()
    node = Node("gw-b", CFG, str(tmp_path / "j"), fsync=False, timer_thread=False,
                replicator_factory=lambda _n: transport)
    node.start(role="standby")
    try:
        assert node.status()["epoch"] == 0
        # The active's heartbeat: role active, epoch 1, priority 100, node gw-a.
        node.on_transport_trigger("peer_epoch", "active", 1, 100, "gw-a")
        assert node.status()["role"] == "standby" and node.status()["epoch"] == 1
        assert (transport.role, transport.epoch) == ("standby", 1)
        # Heard again, nothing new to tell.
        node.on_transport_trigger("peer_epoch", "active", 1, 100, "gw-a")
        assert transport.told == [("standby", 1)]
    finally:
        node.stop()
