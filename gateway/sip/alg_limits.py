"""The SIP ALG's timers and bounds (manual chapter 2 of the ScreenOS guide):
the teardown delay, media channels per direction, private bindings per call,
registration lifetimes (RFC 3261 17.1.2.2, 10.2.1.1), the hard bound on a
call's duration, and the settings used when none are given."""

from __future__ import annotations

from gateway.config.model import SipSettings

# "the ALG delays call teardown for five seconds to allow time for
# transmission of the 200 OK" (Call Termination, Call Cancellation).
TEARDOWN_DELAY = 5.0
# "Juniper Networks security devices support up to 6 SDP channels negotiated
# for each direction, for a total of 12 channels per call" (SIP Body).
MAX_CHANNELS_PER_DIRECTION = 6
# Private transport addresses (Via, Contact, Record-Route) one call may bind
# to public ports, each with an inbound pinhole, until it ends. A call has a
# handful (the party, a proxy or two); without a bound one datagram of Via
# lines took hundreds of the ALG address's ports.
MAX_BINDINGS_PER_CALL = 16
# A REGISTER waiting for its answer: a non-INVITE transaction ends within
# 64*T1 = 32 s (RFC 3261 §17.1.2.2, Timer F).
PENDING_REGISTRATION = 32.0
# RFC 3261 §10.2.1.1: a registration without Expires lasts 3600 s.
DEFAULT_REGISTRATION = 3600
# The longest lifetime an Incoming DIP table entry gets, whatever the registrar says.
MAX_REGISTRATION = 86400
DEFAULT_SETTINGS = SipSettings()


def _max_duration(settings: SipSettings) -> int:
    # The hard bound on a call (Call Session Timers: "hard timeout values to
    # set the maximum amount of time a call can exist").
    return getattr(settings, "max_call_duration", 86400)
