"""Media activity from the datapath to the voice channels' entities: which
reports reach the ALG, and when (``Node.report_media``, called by the ingest
worker's housekeeping).

``MediaReports`` is a part of :class:`actors.node.Node` (a base class): its
only state is the coalescing of reports (``_media_reported``,
``_media_pending``, made by the node); each report becomes a
:class:`MediaReport`, and a drain's reports for one call go to the call's
entity actor as one message, whose turn runs the ALG's ``media_activity``
step for each (``Node._media``) and journals them as one record."""

from __future__ import annotations

from dataclasses import dataclass

from actors.algs import ADAPTERS
from gateway.config.model import Config
from gateway.datapath.pinholes import TAKEOVER_PINHOLE


@dataclass(frozen=True, slots=True)
class MediaReport:
    alg: str
    group: str
    pinhole: str | None
    at: float


@dataclass(frozen=True, slots=True)
class MediaBatch:
    """The reports of one drain for one entity, taken in one turn (both
    voice channels of a call, or both directions of one, report together:
    one journal record, not one each)."""

    reports: tuple[MediaReport, ...]


class MediaReports:
    @staticmethod
    def media_refresh_for(config: Config) -> float:
        """How often a voice channel with steady traffic is reported to its
        ALG: a quarter of the shortest media inactivity timeout (SIP ``set
        alg sip media-inactivity-timeout``, MGCP ``inactive-media-timeout``),
        at most 30 s, so the ALG's media deadline never passes while media
        flows."""
        timeouts = [float(config.sip.media_inactivity_timeout)]
        mgcp = getattr(config, "mgcp", None)
        if mgcp is not None:
            timeouts.append(float(mgcp.inactive_media_timeout))
        return max(0.0, min(30.0, min(timeouts) / 4))

    def coalesce_media(self, activity) -> list:
        """Fewer media reports, same deadlines. The datapath drains activity
        every housekeeping interval (0.2 s); each report is a journaled,
        replicated ``media_seen`` event, which for steady RTP was five events
        a second per voice channel, most of a call's events. A report that
        used a pinhole is passed at once (the ALG closes the pinhole), as is
        the first traffic of a channel; steady traffic is passed again only
        ``media_refresh`` seconds after the last report; and when a channel
        falls quiet its held-back last time is passed on the next drain, so
        the ALG's inactivity deadline is exact once media stops and at most
        ``media_refresh`` (+ one drain) early while it flows. Called by one
        thread (the ingest worker's housekeeping)."""
        refresh = self.media_refresh
        if refresh <= 0:
            return list(activity)
        reported, pending = self._media_reported, self._media_pending
        out, now_reported = [], {}
        for group, pinhole, at in activity:
            last = reported.get(group)
            if pinhole is not None or last is None or at - last >= refresh:
                out.append((group, pinhole, at))
                now_reported[group] = at
                pending.pop(group, None)
            else:
                pending[group] = at
                now_reported.setdefault(group, last)
        for group in [g for g in pending if g not in now_reported]:
            out.append((group, None, pending.pop(group)))
        # Only channels with traffic in this drain stay: a quiet one's next
        # packet is reported at once.
        self._media_reported = now_reported
        return out

    def report_media(self, activity) -> None:
        """From the datapath's drain: (group, pinhole id or None, last seen) tuples."""
        if self.media_refresh > 0:
            activity = self.coalesce_media(activity)
        used = [p for _g, p, _a in activity if p and TAKEOVER_PINHOLE in p]
        if used and self.datapath is not None:
            # A takeover pinhole did its job: the media session exists again.
            with self.dp_lock:
                self.datapath.remove_pinholes(used)
        st = self.state
        batches: dict[tuple, tuple] = {}       # entity -> (its actor, its reports in order)
        for group, pinhole, at in activity:
            for adapter in ADAPTERS.values():
                call = adapter.call_of_group(self._get_from(st, adapter), group)
                if call is not None:
                    break
            else:
                continue                       # the channel ended meanwhile
            # The call owns its channels and their pinholes (the ALG's state
            # holds them under the call); a pinhole's own actor takes the
            # report only where the call has none.
            entity = ("entity", call)
            target = self.directory.get(entity)
            if target is None and pinhole:
                entity = ("entity", f"pinhole/{pinhole}")
                target = self.directory.get(entity)
            if target is None:
                continue
            report = MediaReport(adapter.name, group, pinhole, at)
            held = batches.get(entity)
            if held is None:
                batches[entity] = (target, [report])
            else:
                held[1].append(report)
        for target, reports in batches.values():
            target.tell(reports[0] if len(reports) == 1 else MediaBatch(tuple(reports)))
