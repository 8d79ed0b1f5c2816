"""gatewayd's log lines under systemd: each line carries its syslog priority
for journald, and a drop line keeps its code."""

from __future__ import annotations

import logging
import os

from actors.ingest import DropLog
from ops.log_setup import JournalFormatter, syslog_priority, to_journal


def test_journal_stream_is_recognised_by_device_and_inode(tmp_path):
    with open(tmp_path / "stderr", "w") as f:
        st = os.fstat(f.fileno())
        assert to_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not to_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not to_journal(f, {})


def test_priorities():
    assert [syslog_priority(lv) for lv in (logging.DEBUG, logging.INFO, logging.WARNING,
                                           logging.ERROR, logging.CRITICAL)] == [7, 6, 4, 3, 2]


def test_a_drop_line_reaches_the_journal_with_its_code_and_priority():
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    logger = logging.getLogger("gateway.ingest.test-journal")
    logger.propagate = False
    handler = Collect()
    handler.setFormatter(JournalFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        DropLog(logger)("no policy permits udp 1.1.1.4:5060 -> 10.1.1.3:5060", 1.0, "policy-deny")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("datapath failed on a packet; dropped")
    finally:
        logger.removeHandler(handler)
    assert lines[0] == ("<6>gateway.ingest.test-journal INFO drop [policy-deny]: no policy permits "
                        "udp 1.1.1.4:5060 -> 10.1.1.3:5060")
    # every line of a traceback keeps the record's priority
    assert all(ln.startswith("<3>") for ln in lines[1].split("\n")) and "ValueError: boom" in lines[1]


def test_queued_logging_never_waits_for_the_stream():
    """gatewayd's node mode: a log call only queues the record; a stream
    that blocks (a log file on a busy disk) holds the writer thread, not the
    thread that logs (which may hold the HA lock)."""
    import subprocess
    import sys
    code = r'''
import logging, threading, time
from ops.log_setup import configure_logging
gate = threading.Event()
class Slow:
    def write(self, s):
        gate.wait(10)
        import sys; sys.__stdout__.write(s)
    def flush(self): pass
    def fileno(self): raise OSError
listener = configure_logging("INFO", stream=Slow(), env={}, queued=True)
t0 = time.monotonic()
for i in range(50):
    logging.getLogger("x").warning("line %d", i)
took = time.monotonic() - t0
gate.set()
listener.stop()
print("TOOK", took)
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    took = float(out.stdout.split("TOOK")[1])
    assert took < 1.0, took                       # not 50 x the stream's wait
    assert out.stdout.count("x WARNING line") == 50
