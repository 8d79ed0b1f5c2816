"""gatewayd's log lines: on stderr, and under systemd into the journal with
each line's priority.

systemd connects a service's stderr to journald and says so in
``$JOURNAL_STREAM`` (``DEVICE:INODE`` of that stream, systemd.exec(5)). A
line that starts with ``<N>`` (syslog priority, sd-daemon(3)) is stored with
that priority, so ``journalctl -p warning -u voip-alg-gateway@gw-a`` shows
the warnings, and the journal adds its own timestamp. Drop lines keep their
code (``drop [policy-deny]: ...``, actors/ingest.py) and are INFO (6)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Mapping, TextIO

PLAIN_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
JOURNAL_FORMAT = "%(name)s %(levelname)s %(message)s"

# logging level -> syslog priority (sd-daemon(3): <3> error ... <7> debug)
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prio = syslog_priority(record.levelno)
        # Every line of a multi-line record (a traceback) carries the priority:
        # the journal stores each line as an entry of its own.
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).split("\n"))


def to_journal(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal stream systemd set up."""
    env = os.environ if env is None else env
    want = env.get("JOURNAL_STREAM", "")
    if not want:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def configure_logging(level: str, stream: TextIO | None = None,
                      env: Mapping[str, str] | None = None, *, queued: bool = False):
    """Returns the QueueListener when ``queued`` (stop it at exit), else None.

    ``queued``: a log call only puts the record on a queue and one thread of
    its own writes the lines. A write to a log file may wait for a busy disk,
    and a thread that logs while it holds a lock (the HA lock, when a role
    changes) would hold every thread that wants that lock, the HA
    transport's heartbeats among them."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if to_journal(stream, env) else logging.Formatter(PLAIN_FORMAT))
    if not queued:
        # basicConfig: as before, nothing changes when the process already has
        # handlers (a test harness's, an embedding program's).
        logging.basicConfig(level=getattr(logging, level), handlers=[handler])
        return None
    import queue
    from logging.handlers import QueueHandler, QueueListener
    q: queue.SimpleQueue = queue.SimpleQueue()
    listener = QueueListener(q, handler, respect_handler_level=True)
    listener.start()
    queued_handler = QueueHandler(q)
    # The record is formatted once, by the writer's handler: the queue keeps
    # only the message (and any traceback) it prepared.
    queued_handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[queued_handler])
    return listener
