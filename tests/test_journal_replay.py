"""Replay: folding the journal with the live path's pure apply gives the live
state, from the start or from a snapshot, to a sequence number, a time, or for
one stream; snapshot files are atomic and checked."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.events import Event, event, upcaster
from journal.record import Record
from journal.replay import history, replay, snapshot_dir
from journal.snapshot import SnapshotError, latest_snapshot, list_snapshots, read_snapshot, write_snapshot
from journal.store import Journal


# --- a small call domain, test-only (names unique to this module) ---------

@event("test.journal_replay.offered")
@dataclasses.dataclass(frozen=True, slots=True)
class Offered(Event):
    call_id: str
    caller: str

    @property
    def stream(self) -> str:
        return f"call/{self.call_id}"


@event("test.journal_replay.answered")
@dataclasses.dataclass(frozen=True, slots=True)
class Answered(Event):
    call_id: str

    @property
    def stream(self) -> str:
        return f"call/{self.call_id}"


@event("test.journal_replay.media", schema=2)
@dataclasses.dataclass(frozen=True, slots=True)
class Media(Event):
    call_id: str
    packets: int
    octets: int

    @property
    def stream(self) -> str:
        return f"call/{self.call_id}"


@upcaster("test.journal_replay.media", 1)
def _media_1_to_2(payload: dict) -> dict:
    # Schema 1 counted packets only; 160-byte G.711 frames are the old default.
    payload.setdefault("octets", payload["packets"] * 160)
    return payload


@event("test.journal_replay.ended")
@dataclasses.dataclass(frozen=True, slots=True)
class Ended(Event):
    call_id: str
    cause: int

    @property
    def stream(self) -> str:
        return f"call/{self.call_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    status: str
    caller: str
    packets: int = 0
    octets: int = 0
    cause: int | None = None


def apply(state: dict[str, Call], ev: Event) -> dict[str, Call]:
    """Pure: returns a new mapping; events for unknown or ended calls change nothing."""
    call = state.get(ev.call_id)
    if isinstance(ev, Offered):
        return state if call else {**state, ev.call_id: Call("offered", ev.caller)}
    if call is None or call.status == "ended":
        return state
    if isinstance(ev, Answered):
        new = dataclasses.replace(call, status="answered")
    elif isinstance(ev, Media):
        new = dataclasses.replace(call, packets=call.packets + ev.packets, octets=call.octets + ev.octets)
    elif isinstance(ev, Ended):
        new = dataclasses.replace(call, status="ended", cause=ev.cause)
    else:
        return state
    return {**state, ev.call_id: new}


def encode_state(state: dict[str, Call]) -> dict:
    return {k: dataclasses.astuple(v) for k, v in state.items()}


def decode_state(payload: dict) -> dict[str, Call]:
    return {k: Call(*v) for k, v in payload.items()}


def fold(events) -> dict[str, Call]:
    state: dict[str, Call] = {}
    for ev in events:
        state = apply(state, ev)
    return state


call_ids = st.sampled_from(["c1", "c2", "c3", "c4"])
domain_events = st.one_of(
    st.builds(Offered, call_id=call_ids, caller=st.sampled_from(["alice", "bob"])),
    st.builds(Answered, call_id=call_ids),
    st.builds(Media, call_id=call_ids, packets=st.integers(0, 1000), octets=st.integers(0, 10**6)),
    st.builds(Ended, call_id=call_ids, cause=st.sampled_from([16, 17, 31])),
)


def write(path, events, batch_sizes, epoch=1, t0=100.0):
    """Journal ``events`` in batches; return the live state after each record."""
    live = [{}]
    with Journal.open(path, fsync=False, segment_bytes=2048) as j:
        i = 0
        sizes = iter(batch_sizes)
        while i < len(events):
            n = max(1, next(sizes, 3))
            batch = events[i:i + n]
            j.append_batch([(ev, t0 + i + k) for k, ev in enumerate(batch)], epoch=epoch)
            for ev in batch:
                live.append(apply(live[-1], ev))
            i += n
    return live


# ------------------------------------------------------------- properties

@settings(max_examples=80, deadline=None)
@given(events=st.lists(domain_events, min_size=1, max_size=60),
       batch_sizes=st.lists(st.integers(1, 10), max_size=60), data=st.data())
def test_replay_equals_live_fold(events, batch_sizes, data):
    with tempfile.TemporaryDirectory() as d:
        live = write(d, events, batch_sizes)
        n = len(events)
        assert replay(d, apply, {}) == (live[n], n)
        with Journal.open(d) as j:
            assert replay(j, apply, {}) == (live[n], n)
        # Snapshots at random points: replay from the newest usable one.
        for k in sorted(set(data.draw(st.lists(st.integers(1, n), max_size=3)))):
            write_snapshot(snapshot_dir(d), k, encode_state(live[k]), epoch=1, timestamp=100.0 + k - 1)
        target = data.draw(st.integers(0, n))
        assert replay(d, apply, {}, until_seq=target, decode_snapshot=decode_state) == (live[target], target)
        assert replay(d, apply, {}, decode_snapshot=decode_state) == (live[n], n)
        # Record k has timestamp 100 + k - 1: the state "as of" that time is live[k].
        assert replay(d, apply, {}, until_time=100.0 + target - 1 + 0.5,
                      decode_snapshot=decode_state) == (live[target], target)


def test_snapshot_shortens_replay(tmp_path):
    events = [Offered("c1", "alice"), Answered("c1")] + [Media("c1", 1, 160)] * 50 + [Ended("c1", 16)]
    live = write(tmp_path, events, [7])
    write_snapshot(snapshot_dir(tmp_path), 40, encode_state(live[40]), epoch=1)
    seen = []

    def counting(state, ev):
        seen.append(ev)
        return apply(state, ev)

    assert replay(tmp_path, counting, {}, decode_snapshot=decode_state) == (live[-1], len(events))
    assert len(seen) == len(events) - 40
    seen.clear()
    # Without a snapshot decoder, snapshots are not used.
    assert replay(tmp_path, counting, {})[0] == live[-1] and len(seen) == len(events)


def test_replay_one_stream_and_history(tmp_path):
    events = [Offered("c1", "alice"), Offered("c2", "bob"), Answered("c2"), Media("c1", 5, 800),
              Ended("c2", 17), Media("c1", 1, 160)]
    write(tmp_path, events, [2, 2, 2])
    write_snapshot(snapshot_dir(tmp_path), 6, {"ignored": True}, epoch=1)
    state, last = replay(tmp_path, apply, {}, stream="call/c2", decode_snapshot=decode_state)
    assert state == {"c2": Call("ended", "bob", cause=17)} and last == 6
    state, last = replay(tmp_path, apply, {}, stream="call/c1", until_seq=4)
    assert state == {"c1": Call("offered", "alice", packets=5, octets=800)} and last == 4
    recs = history(tmp_path, "call/c1")
    assert [r.seq for r in recs] == [1, 4, 6] and [r.version for r in recs] == [1, 2, 3]
    assert [r.event() for r in recs] == [events[0], events[3], events[5]]
    assert history(tmp_path, "call/none") == []


def test_until_time_stops_at_the_first_later_record(tmp_path):
    with Journal.open(tmp_path) as j:
        j.append_batch([(Offered("c1", "a"), 10.0), (Answered("c1"), 20.0)], epoch=1)
        j.append_batch([(Ended("c1", 16), 30.0)], epoch=1)
    assert replay(tmp_path, apply, {}, until_time=9.9) == ({}, 0)
    assert replay(tmp_path, apply, {}, until_time=20.0) == ({"c1": Call("answered", "a")}, 2)
    assert replay(tmp_path, apply, {}, until_time=1e9)[1] == 3


def test_old_schema_records_are_upcast_during_replay(tmp_path):
    with Journal.open(tmp_path) as j:
        j.append_batch([(Offered("c1", "alice"), 1.0)], epoch=1)
        # A record as an older build wrote it: Media schema 1 had no "octets".
        j.append_records([Record(2, 1, 2.0, "call/c1", 2, Media.TYPE, 1, {"call_id": "c1", "packets": 3})])
    state, _ = replay(tmp_path, apply, {})
    assert state == {"c1": Call("offered", "alice", packets=3, octets=480)}
    assert history(tmp_path, "call/c1")[1].payload == {"call_id": "c1", "packets": 3}   # not rewritten


def test_snapshot_past_a_truncated_tail_is_not_used(tmp_path):
    events = [Offered("c1", "a"), Answered("c1"), Media("c1", 2, 2), Ended("c1", 16)]
    live = write(tmp_path, events, [1])
    write_snapshot(snapshot_dir(tmp_path), 2, encode_state(live[2]), epoch=1)
    write_snapshot(snapshot_dir(tmp_path), 4, encode_state(live[4]), epoch=1)
    with Journal.open(tmp_path) as j:
        j.truncate_after(3)
    assert replay(tmp_path, apply, {}, decode_snapshot=decode_state) == (live[3], 3)


def test_replay_reads_without_repairing_or_locking(tmp_path, caplog):
    events = [Offered("c1", "a"), Answered("c1"), Ended("c1", 16)]
    live = write(tmp_path, events, [1])
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\xa1\x00\x00")                  # a torn header
    size = seg.stat().st_size
    with _held(tmp_path), caplog.at_level(logging.WARNING, logger="journal"):
        assert replay(tmp_path, apply, {}) == (live[3], 3)
    assert seg.stat().st_size == size
    assert any("damaged tail" in m and f"offset {size - 3}" in m for m in caplog.messages)


class _held:
    """Hold the journal's lock as a live node would, in this process."""

    def __init__(self, path):
        import fcntl
        self.fd = os.open(Path(path) / "LOCK", os.O_RDWR | os.O_CREAT)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


# ------------------------------------------------------------- snapshots

def test_snapshot_round_trip_and_selection(tmp_path):
    d = tmp_path / "snaps"
    assert latest_snapshot(d) is None
    write_snapshot(d, 10, {"a": [1, 2]}, epoch=1, timestamp=5.0)
    write_snapshot(d, 20, b"\x00opaque", epoch=2, timestamp=9.0)
    write_snapshot(d, 30, {"b": None}, epoch=2)
    assert [s for s, _ in list_snapshots(d)] == [10, 20, 30]
    assert not [p for p in d.iterdir() if p.suffix != ".snap"]     # no temporary file left
    latest = latest_snapshot(d)
    assert (latest.seq, latest.epoch, latest.state, latest.timestamp) == (30, 2, {"b": None}, None)
    assert latest_snapshot(d, 29).state == b"\x00opaque"
    assert latest_snapshot(d, 10).state == {"a": [1, 2]}
    assert latest_snapshot(d, 9) is None
    assert latest_snapshot(d, at_or_before_time=8.0).seq == 10    # 30 has no timestamp
    with pytest.raises(TypeError):
        write_snapshot(d, 40, ["not", "a", "mapping"], epoch=1)


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
def test_damaged_snapshot_is_skipped_with_a_log_line(tmp_path, caplog, damage):
    d = tmp_path / "snaps"
    write_snapshot(d, 10, {"ok": 1}, epoch=1)
    bad = write_snapshot(d, 20, {"ok": 2}, epoch=1)
    data = bytearray(bad.read_bytes())
    if damage == "flip":
        data[-2] ^= 0x10
    elif damage == "truncate":
        del data[-1]
    elif damage == "magic":
        data[0:6] = b"XXXXXX"
    else:
        data = bytearray()
    bad.write_bytes(bytes(data))
    with pytest.raises(SnapshotError):
        read_snapshot(bad)
    with caplog.at_level(logging.WARNING, logger="journal"):
        assert latest_snapshot(d).state == {"ok": 1}
    assert any(str(bad) in m for m in caplog.messages)
