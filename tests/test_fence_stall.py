"""Test-only stall injection (actors/stall.py, gatewayd --debug-commands): the
stall holds the GIL, so no other thread of the process runs, as in a long GC
pause; gatewayd refuses it unless started for tests."""

import threading
import time

import pytest

from actors.control import ControlError
from actors.stall import hold_gil, stall_soon
from ops.gatewayd import _debug_stall, build_parser


def test_hold_gil_stops_every_other_thread():
    ticks = []
    stop = threading.Event()

    def other():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)
    t = threading.Thread(target=other, daemon=True)
    t.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    spun = hold_gil(0.4)
    t1 = time.perf_counter()
    stop.set()
    t.join(2)
    assert spun >= 0.4
    # At most one tick may land in the window (the thread was running when the stall began).
    inside = [x for x in ticks if t0 + 0.01 < x < t1 - 0.01]
    assert len(inside) <= 1, len(inside)


def test_stall_bounds():
    for bad in (0, -1, 31):
        with pytest.raises(ValueError):
            stall_soon(bad)


def test_gatewayd_refuses_stall_without_debug_commands():
    with pytest.raises(ControlError, match="--debug-commands"):
        _debug_stall({"seconds": 1}, args_enabled=False)
    with pytest.raises(ControlError):
        _debug_stall({"seconds": "x"}, args_enabled=True)


def test_debug_flag_is_off_by_default_and_documented(monkeypatch):
    monkeypatch.delenv("GATEWAYD_DEBUG_COMMANDS", raising=False)
    p = build_parser()
    assert not p.parse_args(["--node-file", "x"]).debug_commands
    assert "--debug-commands" in p.format_help()
