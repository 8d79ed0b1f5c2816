"""One record per step (gateway/events.py ``StepEvents``): the events one step
made for one entity are journaled as one record, and every reader (standby,
replay, snapshot fold, ladder, history) sees exactly the events, in order, as
when each had a record of its own."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway import domain
from gateway.event_steps import LocalId
from gateway import event_wire
from gateway.event_wire import LOCAL_ID_FIELDS
from gateway.events import STEP_TYPE, StepEvents, UnknownEvent, decode, expand, in_steps
from journal.record import Record, decode_record, encode_record
from test_replication_harness import call_events
from test_standby_batch_apply import _pair, as_records, histories, observed, per_event_on_records


def _mixed(draw) -> list:
    """Events of a few calls interleaved (several streams, runs of each)."""
    calls = {i: call_events(i, activity=draw(st.integers(0, 3))) for i in range(draw(st.integers(1, 3)))}
    out = []
    while any(calls.values()):
        i = draw(st.sampled_from(sorted(i for i, evs in calls.items() if evs)))
        out.append(calls[i].pop(0))
    return out


@given(st.data())
def test_in_steps_keeps_the_events_and_their_order_one_record_per_run_of_a_stream(data):
    events = _mixed(data.draw)
    steps = in_steps(events)
    assert [e for s in steps for e in expand(s)] == events
    for s in steps:
        assert len({e.stream for e in expand(s)}) == 1
        assert type(s) is StepEvents            # every SIP event has a code (gateway/event_wire.py)
    # Maximal runs: two neighbouring records never share a stream.
    assert all(a.stream != b.stream for a, b in zip(steps, steps[1:]))


def test_a_single_event_is_a_step_record_unless_it_has_no_code():
    from test_journal_record import Hangup
    (ev,) = call_events(1, activity=0)
    assert in_steps([ev]) == [StepEvents((ev,))]
    other = Hangup("c1", "alice", 16)                       # a type without a code: named form
    assert in_steps([other]) == [other]
    assert in_steps([]) == []


def _real_steps() -> list[list]:
    """The events of each step of a real SIP ALG call (bench_snapshots' template)."""
    from bench_snapshots import template_steps
    return [events for _part, events in template_steps() if events]


def test_a_step_record_round_trips_and_carries_the_call_key_once():
    for step in [s for s in _real_steps() if len(s) > 1]:
        (rec_ev,) = in_steps(step)
        rec = Record.of(rec_ev, seq=7, epoch=1, timestamp=1000.0, version=3)
        back, _end = decode_record(encode_record(rec))
        assert back.type == STEP_TYPE and back.stream == step[0].stream
        assert list(back.events()) == step
        key = step[0].key
        # The key is the stream's tail: the payload says where it starts.
        assert back.payload["k"] == len("call/") and back.stream == f"call/{key}"
        assert all("key" not in p for _t, _s, p in back.payload["e"])
        # The raw view (history, ladder filters) puts the key back.
        assert back.entries() == [(e.TYPE, e.to_payload()) for e in step]


def test_events_with_different_keys_in_one_stream_keep_theirs():
    a, b = call_events(1, activity=1)
    other = type(b)(key="someone-else", at=b.at, signalling_deadline=b.signalling_deadline,
                    session_expires=b.session_expires)
    step = StepEvents((a, other))
    p = step.to_payload()
    assert "k" not in p and decode(STEP_TYPE, StepEvents.SCHEMA, p) == step


def test_a_real_call_costs_a_record_per_step_and_fewer_bytes():
    steps = _real_steps()
    events = [e for s in steps for e in s]

    def size(evs) -> int:
        return sum(len(encode_record(Record.of(e, seq=123456, epoch=1, timestamp=1.7e9, version=9)))
                   for e in evs)
    per_event, per_step = size(events), size([r for s in steps for r in in_steps(s)])
    # Issue targets: <= 10 journaled records and <= 2.5 KB per call.
    assert len([r for s in steps for r in in_steps(s)]) == len(steps) <= 10
    assert per_step <= 2500 and per_step < 0.5 * per_event, (per_step, per_event)


BAD_STEPS = [
    {}, {"e": []}, {"e": "x"}, {"e": [1]}, {"e": [["sip.call_activity", 1]]},
    {"e": [[STEP_TYPE, 1, {"e": []}]]},                     # a step inside a step
    {"e": [["sip.call_activity", "1", {}]]}, {"e": [[5, 1, {}]]}, {"e": [["sip.call_activity", 1, []]]},
    {"e": [["no.such_event", 1, {}]]}, {"e": [["sip.call_activity", 1, {"at": 1.0}]]},
    {"e": [["sip.call_activity", 1, {"at": 1.0, "signalling_deadline": 2.0,
                                     "session_expires": None}]], "k": 5},
]


@pytest.mark.parametrize("payload", BAD_STEPS)
def test_a_malformed_step_record_is_an_undecodable_event(payload):
    with pytest.raises(UnknownEvent):
        decode(STEP_TYPE, StepEvents.SCHEMA, payload)
    rec = Record(1, 1, 1.0, "call/x", 1, STEP_TYPE, 1, payload)
    assert rec.entries()                # the raw view shows something, never raises


_codes = st.sampled_from([0, 1, 30, 36, 47, 48, 49, 999])      # known codes, and none
_items = st.lists(st.one_of(_codes, st.sampled_from(["sip.call_activity", STEP_TYPE, "x"])), min_size=1,
                  max_size=1).flatmap(lambda t: st.tuples(st.just(t[0]), st.sampled_from([0, 1, 2]),
                                                          st.lists(st.none() | st.integers(0, 70000)
                                                                   | st.floats(allow_nan=False)
                                                                   | st.text(max_size=6), max_size=14)))
_ints = st.integers(-(1 << 63), (1 << 64) - 1)        # what msgpack carries


@given(st.recursive(st.none() | st.booleans() | _ints | st.text(max_size=6) | _items.map(list),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                               max_size=4),
                    max_leaves=20))
def test_any_step_payload_decodes_or_is_an_undecodable_event(value):
    payload = {"e": value} if not isinstance(value, dict) else value
    try:
        decode(STEP_TYPE, StepEvents.SCHEMA, payload)
    except UnknownEvent:
        pass
    Record(1, 1, 1.0, "call/x", 1, STEP_TYPE, 1, payload).entries()


@given(st.lists(_items.map(list), min_size=1, max_size=4), st.none() | st.text(max_size=8))
def test_any_compact_step_decodes_or_is_an_undecodable_event(items, key):
    payload = {"e": items} if key is None else {"e": items, "k": key}
    try:
        decode(STEP_TYPE, StepEvents.SCHEMA, payload)
    except UnknownEvent:
        pass
    Record(1, 1, 1.0, "call/x", 1, STEP_TYPE, 1, payload).entries()


@st.composite
def stepped(draw, events: list) -> list:
    """``events`` cut into random steps, each journaled as in_steps does."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=len(events))))
    out, done = [], 0
    for cut in [c for c in cuts if c < len(events)] + [len(events)]:
        out += in_steps(events[done:cut])
        done = cut
    return out


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_a_standby_given_step_records_equals_one_given_a_record_per_event(tmp_path, history, data):
    """Real SIP calls, generated SIP histories and MGCP events, cut into random
    steps: after every batch of step records the standby's state, entities,
    timers, show and event counter equal those of the per-event standby at
    the same event."""
    steps = data.draw(stepped(history))
    records = as_records(steps, 1)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(records) - 1)), max_size=6)))
    batched, reference = _pair(tmp_path)
    try:
        done = events_done = 0
        for cut in [c for c in cuts if c < len(records)] + [len(records)]:
            batch = records[done:cut]
            done = cut
            evs = [e for r in batch for e in r.events()]
            batched.on_records(batch)
            per_event_on_records(reference, as_records(evs, events_done + 1))
            events_done += len(evs)
            mine, theirs = observed(batched), observed(reference)
            assert mine.pop("applied") == (batch[-1].seq if batch else 0)
            theirs.pop("applied")
            assert mine == theirs
        expected = domain.EMPTY
        for e in history:
            expected = domain.apply(expected, e)
        assert batched.state == expected
    finally:
        for n in (batched, reference):
            n.stop()


def test_replay_applies_a_step_whole_or_reports_it(tmp_path):
    """A step record whose second event the state cannot take is reported as
    one record, and none of its events is applied (--partial)."""
    from gateway.sip import events as sip_ev
    from gateway.sip import state as sip_state
    from gateway.sip import state_fold as sip_fold
    from journal.replay import replay
    from journal.store import Journal
    good = call_events(1, activity=1)
    # Call 2 starts, then activity of a call that never started: the second
    # event cannot be folded (activity of call 2 itself would be).
    bad = StepEvents((call_events(2, activity=0)[0],
                      sip_ev.CallActivity(key="call-2@10.0.0.1;tag-2x", at=1.0, signalling_deadline=2.0,
                                          session_expires=None)))
    with Journal.open(tmp_path / "j", fsync=False) as j:
        j.append_batch([(e, 1.0) for e in in_steps(good)], 1)
        j.append_records([Record(2, 1, 2.0, "call/call-2@10.0.0.1;tag-2", 1, STEP_TYPE, 1, bad.to_payload())])
    problems = []
    state, last = replay(tmp_path / "j", sip_fold.apply, sip_state.EMPTY, problems=problems)
    assert last == 2 and [p.seq for p in problems] == [2]
    assert set(state.calls) == {"call-1@10.0.0.1;tag-1"}          # nothing of the bad step applied


def test_a_journal_written_before_step_records_then_after_replays_whole(tmp_path):
    """An upgraded node appends step records to a journal of per-event
    records: replay, the snapshot fold and the ladder read both forms."""
    from journal.call_ladder import ladder
    from journal.checkpoint import open_at_snapshot
    from journal.replay import replay
    from journal.store import Journal
    steps = _real_steps()
    half = len(steps) // 2
    with Journal.open(tmp_path / "j", fsync=False) as j:
        for s in steps[:half]:
            j.append_batch([(e, 1.0) for e in s], 1)             # a record per event
        for s in steps[half:]:
            j.append_batch([(e, 2.0) for e in in_steps(s)], 1)   # a record per step
        head = j.head
    events = [e for s in steps for e in s]
    expected = domain.EMPTY
    for e in events:
        expected = domain.apply(expected, e)
    assert replay(tmp_path / "j", domain.apply, domain.EMPTY) == (expected, head)
    rec = open_at_snapshot(tmp_path / "j", domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.state == expected
    finally:
        rec.journal.close()
    lad = ladder(tmp_path / "j", events[0].call_id)
    assert lad is not None and any(s.label == "call ended" for s in lad.steps)
    assert {s.seq for s in lad.steps} >= {1, head}          # from the first record to the last


def test_a_key_named_by_its_place_in_the_stream_needs_that_stream():
    step = in_steps(call_events(3, activity=1))[0]
    p = step.to_payload()
    assert p["k"] == len("call/")
    assert decode(STEP_TYPE, StepEvents.SCHEMA, p, step.stream) == step
    for stream in (None, "call/", "x"):                     # no stream, or none the key fits
        with pytest.raises(UnknownEvent):
            decode(STEP_TYPE, StepEvents.SCHEMA, p, stream)
    for k in (0, -1, 10_000, 1.5):
        with pytest.raises(UnknownEvent):
            decode(STEP_TYPE, StepEvents.SCHEMA, {**p, "k": k}, step.stream)
    rec = Record(1, 1, 1.0, step.stream, 1, STEP_TYPE, 1, p)
    assert rec.entries() == [(e.TYPE, e.to_payload()) for e in step.events]


def _payload_by_definition(step: StepEvents) -> dict:
    """The step payload built from each event's own payload, as the class
    docstring defines it: the shared ``key`` written once (where it starts in
    the stream when it is the stream's tail), a coded event's values in its
    field order with the call's own ids (its id fields) relative to the stream, any other
    event named."""
    from gateway.events import _wire_of
    payloads = [ev.to_payload() for ev in step.events]
    keys = [p.get("key") if "key" in p else None for p in payloads]
    key = keys[0] if all("key" in p for p in payloads) and len(set(keys)) == 1 \
        and type(keys[0]) is str else None
    stream = step.stream

    def relative(v):
        # An id field's value of the call's own (its name, "#", a serial) is
        # written as what follows the "#" with where the name starts in the stream.
        if type(v) is str:
            if key is not None and len(stream) > len(key) and stream.endswith(key) and v.startswith(key + "#"):
                return LocalId(len(stream) - len(key), v[len(key) + 1:].encode())
            if v.startswith(stream + "#"):
                return LocalId(0, v[len(stream) + 1:].encode())
        return v

    inner = []
    for ev, p in zip(step.events, payloads):
        if key is not None:
            p = {n: v for n, v in p.items() if n != "key"}
        wire = _wire_of(type(ev))
        inner.append([ev.TYPE, ev.SCHEMA, p] if wire is None
                     else [wire, ev.SCHEMA, [relative(v) if n in LOCAL_ID_FIELDS else v for n, v in p.items()]])
    if key is None:
        return {"e": inner}
    return {"e": inner, "k": len(stream) - len(key) if len(stream) > len(key) and stream.endswith(key)
            else key}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_compact_payload_is_the_one_its_definition_gives(data):
    pool = [e for s in _real_steps() for e in s] + _mixed(data.draw)
    events = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6))
    step = StepEvents(tuple(events))
    p = step.to_payload()
    assert p == _payload_by_definition(step)
    assert decode(STEP_TYPE, StepEvents.SCHEMA, p, step.stream).events == step.events


def test_the_encoder_reads_a_one_field_event_as_one_value_even_when_it_is_a_tuple():
    # StepEvents is such a class: one field, a tuple. The getter gives the
    # field's value as one element (attrgetter of one name would give the
    # tuple itself, read as that many fields).
    from gateway.events import _encoder
    step = StepEvents(tuple(_real_steps()[0]))
    _wire, names, get, _at, _ids, _keyless_ids = _encoder(StepEvents)
    assert names == ("events",) and get(step) == (step.events,)


# --- a call's own ids written relative to the record's stream (schema 2) ----

def _full_ids_payload(step: StepEvents) -> dict:
    """The payload as schema 1 wrote it: every id in full."""
    def full(v):
        return v.stop.decode().join((step.stream[v.start:] + "#", "")) if type(v) is LocalId else v
    p = step.to_payload()
    return {**p, "e": [[t, s, [full(v) for v in vals] if isinstance(vals, list) else vals]
                       for t, s, vals in p["e"]]}


def test_a_sip_call_s_pinhole_and_group_ids_are_written_after_the_hash_only():
    steps = [in_steps(s)[0] for s in _real_steps()]
    with_ids = [s for s in steps if any("#" in str(v) for e in s.events for v in e.to_payload().values())]
    assert with_ids
    for step in with_ids:
        key = step.events[0].key
        rec = Record.of(step, seq=7, epoch=1, timestamp=1000.0, version=3)
        frame = encode_record(rec)
        assert (key + "#").encode() not in frame            # no id written in full
        back, _end = decode_record(frame)
        assert back.schema == 2 and list(back.events()) == list(step.events)
        assert back.entries() == [(e.TYPE, e.to_payload()) for e in step.events]
        # Each relative id starts where the key does in the stream ("call/").
        codes = {v.start for _t, _s, vals in back.payload["e"] for v in vals if type(v) is LocalId}
        assert codes == {len("call/")}


def test_an_mgcp_call_s_ids_are_written_relative_to_its_whole_stream():
    from gateway.mgcp import events as mev
    stream = mev.call_stream("10.0.0.9", "A3C47F21456789F0")
    step = StepEvents((mev.MediaSeen("10.0.0.9", "A3C47F21456789F0", stream + "#g2", 5.0, 35.0),
                       mev.PinholeClosed("10.0.0.9", "A3C47F21456789F0", stream + "#p4", "used")))
    p = step.to_payload()
    assert [v for _t, _s, vals in p["e"] for v in vals if type(v) is LocalId] == \
        [LocalId(0, b"g2"), LocalId(0, b"p4")]
    back, _end = decode_record(encode_record(Record.of(step, seq=1, epoch=1, timestamp=1.0, version=1)))
    assert list(back.events()) == list(step.events)


def test_a_step_record_of_schema_1_with_every_id_in_full_still_reads():
    for step in [in_steps(s)[0] for s in _real_steps()]:
        old = _full_ids_payload(step)
        rec = Record(3, 1, 1.0, step.stream, 2, STEP_TYPE, 1, old)
        back, _end = decode_record(encode_record(rec))
        assert back.schema == 1 and list(back.events()) == list(step.events)
        assert back.entries() == [(e.TYPE, e.to_payload()) for e in step.events]


def test_the_relative_ids_make_a_sip_call_s_journal_a_tenth_smaller_or_more():
    steps = [r for s in _real_steps() for r in in_steps(s)]

    def size(payload_of) -> int:
        return sum(len(encode_record(Record(123456, 1, 1.7e9, s.stream, 9, STEP_TYPE, StepEvents.SCHEMA,
                                            payload_of(s)))) for s in steps)
    relative, full = size(lambda s: s.to_payload()), size(_full_ids_payload)
    assert relative <= 0.9 * full, (relative, full)       # 1,726 against 2,026 B (a 20-character key)


def _with_code(frame: bytes, code: int, signed: int) -> bytes:
    """``frame`` with the ext code ``code`` of its one relative id made
    ``signed`` (msgpack writes no negative application code; a damaged or
    crafted journal may hold one), its CRC made good again."""
    import zlib
    from journal.record import HEADER, HEADER_SIZE
    body = frame[HEADER_SIZE:]
    at = body.index(bytes((0xD5, code)))                # fixext 2: marker, code, 2 bytes
    body = body[:at + 1] + signed.to_bytes(1, "big", signed=True) + body[at + 2:]
    length = len(body).to_bytes(4, "big")
    return HEADER.pack(frame[0], len(body), zlib.crc32(body, zlib.crc32(length))) + body


@pytest.mark.parametrize("bad", [LocalId(40, b"p1"), LocalId(99, b"p1"), LocalId(5, b"\xff\xfe"),
                                 LocalId(127, b"")])
def test_a_relative_id_that_names_no_place_in_the_stream_is_an_undecodable_event(bad):
    step = next(in_steps(s)[0] for s in _real_steps() if any(e.TYPE == "sip.pinhole_closed" for e in s))
    p = step.to_payload()
    # Each id field's value made ``bad`` (the key is written once: the
    # fields after it are one place earlier).
    places = {w: [i - 1 for i, n in enumerate(names) if n in LOCAL_ID_FIELDS]
              for (t, _s), names in event_wire.FIELDS.items() for w in (event_wire.CODES[t],)}
    p = {**p, "e": [[t, s, [bad if i in places[t] else v for i, v in enumerate(vals)]] for t, s, vals in p["e"]]}
    assert any(bad in vals for _t, _s, vals in p["e"])
    frame = encode_record(Record(1, 1, 1.0, "call/short", 1, STEP_TYPE, 2, p))
    if bad.start == 99:
        frame = _with_code(frame, 99, -3)
    rec, _end = decode_record(frame)
    assert bad.start != 99 or any(LocalId(-3, b"p1") in vals for _t, _s, vals in rec.payload["e"])
    with pytest.raises(UnknownEvent):
        rec.events()
    rec.entries()                         # the raw view shows what it can, never raises
    with pytest.raises(UnknownEvent):
        decode(STEP_TYPE, 2, p)           # no stream to read it against


@given(st.lists(st.tuples(st.sampled_from([30, 36, 40, 41, 42]), st.just(1),
                          st.lists(st.none() | st.text(max_size=6)
                                   | st.builds(LocalId, st.integers(0, 127), st.binary(max_size=5)),
                                   max_size=14)).map(list), min_size=1, max_size=4),
       st.none() | st.integers(0, 20) | st.text(max_size=8))
def test_any_step_with_relative_ids_decodes_or_is_an_undecodable_event(items, key):
    payload = {"e": items} if key is None else {"e": items, "k": key}
    rec, _end = decode_record(encode_record(Record(1, 1, 1.0, "call/a;b", 1, STEP_TYPE, 2, payload)))
    try:
        rec.events()
    except UnknownEvent:
        pass
    rec.entries()
