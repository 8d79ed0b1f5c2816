"""The compact form of the events inside a step record (gateway/events.py
``StepEvents``): a number for each event type and the order of each
(type, schema)'s fields, so an event inside a step is ``[code, schema,
[values...]]`` instead of ``[type name, schema, {field: value, ...}]``.

The field names were half of a SIP call's journal bytes. This table is a wire
contract, like the type names it stands for: entries are only ever added. A
new event type gets the next free code; a schema change adds a
``(type, new schema)`` entry and keeps the old one, so step records written by
older builds still read (the values are named by the old entry, then upcast).
tests/test_event_wire.py fails when a registered event's fields differ from
its entry here, or when an event has no entry. An event missing from the table
(a test's own event type) is written in the named form, which is always read.
"""

from __future__ import annotations

CODES: dict[str, int] = {
    "config.applied": 1,
    "h323.call_ended": 2,
    "h323.call_progressed": 3,
    "h323.call_started": 4,
    "h323.h245_bound": 5,
    "h323.media_seen": 6,
    "h323.pinhole_closed": 7,
    "h323.pinhole_opened": 8,
    "h323.pinhole_shared": 9,
    "h323.port_mapped": 10,
    "h323.ras_ended": 11,
    "h323.ras_requested": 12,
    "h323.registered": 13,
    "h323.unregistered": 14,
    "mgcp.call_ended": 15,
    "mgcp.call_started": 16,
    "mgcp.connection_created": 17,
    "mgcp.connection_deleted": 18,
    "mgcp.endpoint_restarted": 19,
    "mgcp.media_bound": 20,
    "mgcp.media_released": 21,
    "mgcp.media_seen": 22,
    "mgcp.notified_entity_set": 23,
    "mgcp.pinhole_closed": 24,
    "mgcp.pinhole_opened": 25,
    "mgcp.transaction_answered": 26,
    "mgcp.transaction_ended": 27,
    "mgcp.transaction_started": 28,
    "sip.binding_added": 29,
    "sip.call_activity": 30,
    "sip.call_answered": 31,
    "sip.call_ended": 32,
    "sip.call_forwarded": 33,
    "sip.call_rejected": 34,
    "sip.call_retried": 35,
    "sip.call_started": 36,
    "sip.call_terminating": 37,
    "sip.media_bound": 38,
    "sip.media_released": 39,
    "sip.media_seen": 40,
    "sip.pinhole_closed": 41,
    "sip.pinhole_opened": 42,
    "sip.protect_deny_added": 43,
    "sip.protect_deny_expired": 44,
    "sip.registration_bound": 45,
    "sip.registration_removed": 46,
    "sip.transaction_seen": 47,
    "tcp.seq_adjusted": 48,
}

FIELDS: dict[tuple[str, int], tuple[str, ...]] = {
    ("config.applied", 1): ("text", "hash", "previous", "source", "by", "at", "ended",),
    ("h323.call_ended", 1): ("key", "reason",),
    ("h323.call_progressed", 1): ("key", "phase", "signalling_deadline",),
    ("h323.call_started", 1): ("key", "conn", "call_reference", "at", "signalling_deadline",
        "max_deadline", "origin", "setup_deadline",),
    ("h323.h245_bound", 1): ("key", "addresses",),
    ("h323.media_seen", 1): ("key", "group", "media_deadline",),
    ("h323.pinhole_closed", 1): ("key", "pinhole", "reason",),
    ("h323.pinhole_opened", 1): ("key", "pinhole", "kind", "transport", "dst", "to", "group",
        "media_deadline",),
    ("h323.pinhole_shared", 1): ("key", "pinhole", "group", "add",),
    ("h323.port_mapped", 1): ("key", "public", "private",),
    ("h323.ras_ended", 1): ("requester", "seq", "outcome",),
    ("h323.ras_requested", 1): ("requester", "seq", "kind", "expires_at", "binding", "call",),
    ("h323.registered", 1): ("public", "private", "expires_at",),
    ("h323.unregistered", 1): ("public", "reason",),
    ("mgcp.call_ended", 1): ("gateway", "call_id", "reason",),
    ("mgcp.call_started", 1): ("gateway", "call_id", "at", "max_deadline",),
    ("mgcp.connection_created", 1): ("gateway", "call_id", "conn_id", "endpoint", "tid",),
    ("mgcp.connection_deleted", 1): ("gateway", "call_id", "conn_id", "reason",),
    ("mgcp.endpoint_restarted", 2): ("gateway", "endpoint", "method", "at", "out_of_service_at", "tid",),
    ("mgcp.media_bound", 1): ("gateway", "call_id", "group", "conn_id", "tid", "side", "index",
        "dst_ip", "dst_port", "rtcp_ip", "rtcp_port", "public_ip", "public_port", "media_deadline",),
    ("mgcp.media_released", 1): ("gateway", "call_id", "group", "reason",),
    ("mgcp.media_seen", 1): ("gateway", "call_id", "group", "at", "media_deadline",),
    ("mgcp.notified_entity_set", 2): ("gateway", "endpoint", "entity", "source", "tid",),
    ("mgcp.pinhole_closed", 1): ("gateway", "call_id", "pinhole", "reason",),
    ("mgcp.pinhole_opened", 1): ("gateway", "call_id", "pinhole", "group", "direction", "dst_ip",
        "dst_port", "to_ip", "to_port",),
    ("mgcp.transaction_answered", 1): ("gateway", "endpoint", "origin", "tid", "code", "expires_at",),
    ("mgcp.transaction_ended", 1): ("gateway", "endpoint", "origin", "tid", "reason",),
    ("mgcp.transaction_started", 1): ("gateway", "endpoint", "origin", "tid", "verb", "src_ip",
        "src_port", "call_id", "conn_id", "at", "expires_at",),
    ("sip.binding_added", 1): ("key", "private_ip", "private_port", "public_ip", "public_port",
        "owned",),
    ("sip.call_activity", 1): ("key", "at", "signalling_deadline", "session_expires",),
    ("sip.call_answered", 1): ("key", "to_tag", "at", "media_deadline", "pinhole_expires",),
    ("sip.call_ended", 1): ("key", "reason",),
    ("sip.call_forwarded", 1): ("key",),
    ("sip.call_rejected", 1): ("key", "code", "teardown_at",),
    ("sip.call_retried", 1): ("key", "at",),
    ("sip.call_started", 1): ("key", "call_id", "public_call_id", "from_tag", "mode", "private_ip",
        "alg_ip", "ingress", "egress", "at", "max_deadline",),
    ("sip.call_terminating", 1): ("key", "method", "teardown_at",),
    ("sip.media_bound", 1): ("key", "group", "side", "index", "dst_ip", "dst_port", "rtcp_port",
        "public_ip", "public_port", "media_deadline",),
    ("sip.media_released", 1): ("key", "group", "reason",),
    ("sip.media_seen", 1): ("key", "group", "at", "media_deadline",),
    ("sip.pinhole_closed", 1): ("key", "pinhole", "reason",),
    ("sip.pinhole_opened", 1): ("key", "pinhole", "group", "kind", "proto", "direction", "dst_ip",
        "dst_port", "to_ip", "to_port", "from_ip", "from_port", "expires_at",),
    ("sip.protect_deny_added", 1): ("src_ip", "proxy_ip", "until",),
    ("sip.protect_deny_expired", 1): ("src_ip", "proxy_ip",),
    ("sip.registration_bound", 1): ("public_ip", "public_port", "private_ip", "private_port",
        "call_id", "expires_at", "owned",),
    ("sip.registration_removed", 1): ("public_ip", "public_port", "reason",),
    ("sip.transaction_seen", 1): ("key", "branch", "cseq", "method", "sender", "src_ip", "dst_ip",),
    ("tcp.seq_adjusted", 1): ("conn", "sender", "position", "change",),
}

# The fields that hold an id an entity made of its own name ("<key>#p6"): a
# step record writes such a value relative to its stream where it is one
# (gateway/event_steps.py LocalId), and reads these positions only.
LOCAL_ID_FIELDS = frozenset({"pinhole", "group"})

# code -> type name (decoding)
TYPES: dict[int, str] = {code: name for name, code in CODES.items()}
