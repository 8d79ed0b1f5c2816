"""The queue's netlink receive buffer holds the queue's length of packets:
the kernel drops a queued packet it cannot put on the socket whatever the
queue length (actors/ingest.py, SOCK_BYTES_PER_PACKET)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from actors.ingest import DEFAULT_MAX_LEN, sock_rcvbuf

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")

# netfilterqueue's default receive buffer (its _impl.pyx: SockRcvSize), made
# for its default queue length of 1024.
NETFILTERQUEUE_DEFAULT = 1024 * (4016 + 780) // 2

PROBE = """
import os, socket
from actors.ingest import NfqueueWorker
from gateway.config import parse_text
from gateway.datapath import Datapath
w = NfqueueWorker(4242, {}, Datapath(parse_text("set interface ethernet1 zone trust\\n")),
                  install=False, batch_verdicts=False)
w.start()
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12, fileno=os.dup(w._nfq.get_fd()))
print(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
s.close()
w.stop()
"""


def test_buffer_scales_with_the_queue_length():
    assert sock_rcvbuf(1024) == NETFILTERQUEUE_DEFAULT
    assert sock_rcvbuf(DEFAULT_MAX_LEN) == DEFAULT_MAX_LEN // 1024 * NETFILTERQUEUE_DEFAULT


@pytest.mark.netns
def test_bound_queue_gets_the_buffer():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    ns = f"rcvbuf{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, PY, "-c", PROBE], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        # The kernel doubles what is asked for (socket(7), SO_RCVBUF).
        assert int(r.stdout.split()[-1]) == 2 * sock_rcvbuf(DEFAULT_MAX_LEN)
    finally:
        subprocess.run(["ip", "netns", "del", ns])
