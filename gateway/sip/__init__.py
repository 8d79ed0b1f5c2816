"""SIP (RFC 3261) parsing and rewriting by position, for the SIP ALG."""

from gateway.sip.framing import frame_stream, is_keepalive
from gateway.sip.message import AddressRef, Contact, Header, SipMessage, parse_message
from gateway.sip.rewrite import rewrite_message

__all__ = ["AddressRef", "Contact", "Header", "SipMessage", "frame_stream", "is_keepalive", "parse_message",
           "rewrite_message"]
