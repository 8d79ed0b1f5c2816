"""CURVE for the HA transport: a node's key pair and its peer's public key
(``gwctl keys``), and the ZAP check that lets only the peer's key connect and
logs any other key it refuses."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("gateway.replication")


@dataclass(frozen=True, slots=True)
class CurveKeys:
    public: bytes           # z85, this node
    secret: bytes           # z85, this node
    peer_public: bytes      # z85, the server key of the peer's ROUTER
    authorized: frozenset[bytes]  # z85 client keys allowed to connect to our ROUTER

    @classmethod
    def load(cls, own_key_file: str, peer_public_file: str) -> "CurveKeys":
        """Load ``NAME.key_secret`` (own pair) and the peer's ``NAME.key``."""
        import zmq.auth
        pub, sec = zmq.auth.load_certificate(own_key_file)
        peer_pub, _ = zmq.auth.load_certificate(peer_public_file)
        if sec is None:
            raise ValueError(f"{own_key_file} holds no secret key (want the .key_secret file)")
        return cls(pub, sec, peer_pub, frozenset({peer_pub}))


class _KeyCheck:
    """ZAP credentials provider: only the peer's key may replicate; log refusals."""

    def __init__(self, authorized: frozenset[bytes]) -> None:
        self.authorized = authorized

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.authorized
        if not ok:
            log.warning("replication: refused a connection with unknown CURVE key %s",
                        key.decode("ascii", "replace"))
        return ok
