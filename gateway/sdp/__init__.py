"""SDP (RFC 4566) parsing by position, shared by the SIP and MGCP ALGs."""

from gateway.sdp.parse import Connection, Media, SessionDescription, media_destination, parse_sdp

__all__ = ["Connection", "Media", "SessionDescription", "media_destination", "parse_sdp"]
