"""The H.323 ALG's timers and bounds (:class:`H323Settings`, manual chapter
1) and the settings used when none are given."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class H323Settings:
    """Timers of the H.323 ALG. The manual gives none for H.323; these are
    the SIP ALG's defaults (ch. 2 "Session Inactivity Timeout": signalling
    43200 s, media 120 s) and the MGCP ALG's 30 s transaction timeout, which
    covers H.225.0's RAS retries (Annex A: 3 s, a few times) with room."""

    ras_transaction_timeout: int = 30
    signaling_inactivity_timeout: int = 43200
    media_inactivity_timeout: int = 120
    max_call_duration: int = 86400
    # RCF without timeToLive: the registration is kept this long (H.225.0
    # 7.9.1: without timeToLive the gatekeeper sets no expiry; a bound keeps
    # the incoming DIP table from growing forever).
    registration_ttl: int = 3600
    # Bounds on what hostile traffic can make the ALG hold. The
    # configuration language has no H.323 section (the manual gives H.323 no
    # such settings), so these are constants:
    # - a call admitted or set up but not connected ends after this long.
    #   Q.931 lets the called side ring for T301 (3 min at least) after the
    #   T303 (4 s) and T310 (10 s) waits; a minute more covers them.
    setup_timeout: int = 240
    # - calls in setup (before Connect) one source IP may have: a Setup or
    #   ARQ over it is dropped. A PBX or gateway behind one address places
    #   many calls at once, so the bound is generous.
    max_setups_per_source: int = 256
    # - RAS transactions awaiting an answer per requester IP (an endpoint
    #   has one or two outstanding; H.225.0 7.5 retries with the same seq).
    max_ras_per_source: int = 64


DEFAULT_SETTINGS = H323Settings()
