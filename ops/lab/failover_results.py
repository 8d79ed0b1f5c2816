"""What a failover of the lab's pair measured, and what calls placed across
one saw: the takeover's time and epoch, and RTP counted by the hosts before,
during and after it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FailoverResult:
    from_role: str
    to_role: str
    crash: bool
    seconds: float                # until the other node reported active and forwarding
    epoch: int
    node_reply: dict | None       # the active's answer to ``failover`` (graceful only)
    restarted: bool               # a crashed node was started again (as standby)


@dataclass(frozen=True, slots=True)
class RtpSplit:
    """Media packets counted by the hosts' nft counters (see ops/lab/sipp.py),
    split at the moment the failover was started."""

    caller_sent: int
    callee_received: int
    callee_sent: int
    caller_received: int

    def both_ways(self, min_ratio: float = 0.6) -> bool:
        """Media flowed both ways: something was sent each way and at least
        ``min_ratio`` of it arrived (the callee echoes what it receives, so a
        stream cut at the gateway shows as a low ratio, not as zero sent)."""
        return (self.caller_sent > 0 and self.callee_sent > 0
                and self.callee_received >= min_ratio * self.caller_sent
                and self.caller_received >= min_ratio * self.callee_sent)


@dataclass(frozen=True, slots=True)
class FailoverRun:
    calls: object                  # ops.lab.sipp.CallResult
    failover: FailoverResult | None
    failover_error: str | None
    rtp_before: RtpSplit           # from the start to the failover's start
    # From the moment the other node reports active and forwarding to the
    # end: what the new active carries. The takeover's own gap is in
    # ``failover.seconds`` and ``rtp_during`` (a loaded box may take the
    # failover command late, near the calls' end: a window that began
    # before the takeover was then mostly gap).
    rtp_after: RtpSplit
    failover_at: float             # seconds after the first INVITE was due
    # What the new active showed right after taking over: the calls in
    # progress (with their next deadline: the timers it rebuilt) and pinholes.
    calls_after_failover: list | None = None
    pinholes_after_failover: list | None = None
    rtp_during: RtpSplit | None = None   # from the failover's start to the takeover
