"""Whether a ZeroMQ socket of the HA transport has a message waiting, asked
without waiting and without building a Poller per call (several such calls
per replicated batch)."""

from __future__ import annotations

import zmq


def _readable(sock) -> bool:
    """Whether a message can be received from ``sock`` without waiting: one
    zmq_poll of that socket, what ``sock.poll(0)`` does too without the
    Poller object pyzmq builds and registers for every such call (six of
    them per replicated batch)."""
    return bool(_zmq_poll([(sock, _POLLIN)], 0))


_zmq_poll = zmq.zmq_poll
_POLLIN = int(zmq.POLLIN)


def _waiting(*sockets) -> bool:
    """Whether a message is ready on any of ``sockets`` (no wait)."""
    return any(_readable(sock) for sock in sockets)
