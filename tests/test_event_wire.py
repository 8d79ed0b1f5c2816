"""gateway/event_wire.py is a wire contract: every journaled event type has a
code and its fields' order, the table matches the classes, codes are never
reused, and a step record written in the compact form reads back."""

from __future__ import annotations

import gateway.domain  # noqa: F401 - registers the ALGs' events
import gateway.running_config  # noqa: F401 - config.applied
from gateway import event_wire
from gateway.events import STEP_TYPE, StepEvents, _plan, decode, registered
from gateway.sip import events as sip_ev


def _journaled_types() -> dict:
    return {t: c for t, c in registered().items() if t != STEP_TYPE and not t.startswith("test.")}


def test_every_event_type_has_a_code_and_its_fields_in_order():
    for t, cls in _journaled_types().items():
        assert t in event_wire.CODES, f"{t}: give it the next free code in gateway/event_wire.py"
        assert event_wire.FIELDS.get((t, cls.SCHEMA)) == _plan(cls).names, (
            f"{t} schema {cls.SCHEMA}: its fields differ from gateway/event_wire.py; a change of "
            f"fields is a new schema: add its entry, keep the old one")


def test_codes_are_unique_and_read_back():
    assert len(set(event_wire.CODES.values())) == len(event_wire.CODES)
    assert all(event_wire.TYPES[c] == t for t, c in event_wire.CODES.items())
    assert all(t in event_wire.CODES for t, _schema in event_wire.FIELDS)


def test_a_compact_step_written_by_this_format_reads_back():
    # Written out by hand: a renumbered code or a reordered field list fails here.
    payload = {"e": [[event_wire.CODES["sip.call_activity"], 1, [100.0, 281.0, None]],
                     [event_wire.CODES["sip.call_terminating"], 1, ["BYE", 105.0]]],
               "k": "c1;t"}
    assert event_wire.CODES["sip.call_activity"] == 30 and event_wire.CODES["sip.call_terminating"] == 37
    assert decode(STEP_TYPE, 1, payload) == StepEvents((
        sip_ev.CallActivity(key="c1;t", at=100.0, signalling_deadline=281.0, session_expires=None),
        sip_ev.CallTerminating(key="c1;t", method="BYE", teardown_at=105.0)))


def test_an_event_outside_the_table_is_written_named():
    from test_journal_record import Hangup
    step = StepEvents((Hangup("c1", "alice", 16), Hangup("c1", "bob", 17)))
    p = step.to_payload()
    assert [item[0] for item in p["e"]] == [Hangup.TYPE, Hangup.TYPE]
    assert decode(STEP_TYPE, 1, p) == step
