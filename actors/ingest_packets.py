"""The ingest worker per packet (DESIGN.md, "A packet's way through"): the
fast path's verdict at once, a standby's drop, new dialogs shed under
overload, signalling held for its ALG and answered in order, and the
worker's counters (``gwctl status``)."""

from __future__ import annotations

import logging
import socket
import threading

from gateway.datapath import Alg, Drop, Forward
from gateway.drops import code_of, count
from gateway.overload import new_dialog_kind

log = logging.getLogger("voip_alg.ingest")

STANDBY_DROP = "standby: not forwarding"


class PacketPath:
    """Packets in, verdicts out; a part of :class:`actors.ingest.NfqueueWorker` (a base class)."""

    # -- per packet ---------------------------------------------------------------

    def _ifname(self, ifindex: int) -> str | None:
        try:
            return self._ifnames[ifindex]
        except KeyError:
            try:
                linux = socket.if_indextoname(ifindex)
            except OSError:
                linux = None
            name = self.linux_ifaces.get(linux) if linux else None
            self._ifnames[ifindex] = name
            return name

    def _drop(self, pkt, reason: str, now: float, code: str = "other", key=None) -> None:
        self.verdicts.drop(pkt)
        self.counters["dropped"] += 1
        count(self.drop_codes, code)
        self.drop_log(reason, now, code, key)

    def _callback(self, pkt) -> None:
        c = self.counters
        c["packets"] += 1
        now = self.clock()
        try:
            if not self.forwarding():
                c["standby_dropped"] += 1
                self._drop(pkt, STANDBY_DROP, now, "standby")
                return
            ingress = self._ifnames.get(pkt.indev) or self._ifname(pkt.indev)
            if ingress is None:
                self._drop(pkt, f"ingress ifindex {pkt.indev} is not a gateway interface", now,
                           "ingress-unknown")
                return
            buf = pkt.get_payload()
            fast = self._fast
            lock = self.lock
            lock.acquire()          # not `with`: half the cost, per packet
            try:
                # Established UDP first (gateway/datapath/fastpath.py): the
                # same bytes and accounting as Datapath.process would give,
                # a Forward on "fast-session" without a note.
                data = fast.process(buf, now) if fast is not None else None
                if data is None:
                    out = self._datapath.process(buf, ingress, now)
            finally:
                lock.release()
            if self._verdicts:
                # ALG answers already decided (done() runs under the same lock
                # as finish_alg) go out before this packet's verdict: a later
                # segment or a retransmission of the same flow must never
                # overtake the packet the ALG held.
                self._apply_verdicts()
            if data is not None:
                self.verdicts.accept(pkt, None if data is buf else data, fast.mark)
                c["accepted"] += 1
                return
            kind = type(out)
            if kind is Forward:
                self.verdicts.accept(pkt, None if out.data is buf else out.data, out.mark)
                c["accepted"] += 1
                if out.note:
                    log.info("%s: %s", out.note, _describe(buf))
            elif kind is Drop:
                self._drop(pkt, out.reason, now, code_of(out.category, out.reason))
            elif self.overload is None or not self._shed(pkt, out, now):
                self._hold(pkt, out, now)
        except Exception:
            c["errors"] += 1
            log.exception("datapath failed on a packet; dropped")
            try:
                self.verdicts.drop(pkt)
                count(self.drop_codes, "internal-error")
            except RuntimeError:
                pass                      # the verdict was already given

    def _shed(self, pkt, out: Alg, now: float) -> bool:
        """Overload control before the ALG (gateway/overload.py): a message
        that starts a new dialog, from a source past its share of the
        budget, is dropped here, before any parse or ALG work; everything
        in a dialog, and TCP segments (dropping one would break its
        stream's framing), goes on. True when shed."""
        if out.segment is not None:
            return False
        kind = new_dialog_kind(out.alg, out.payload)
        if kind is None or self.overload.admit(out.packet.src_int, now):
            return False
        self.counters["shed"] += 1
        src = out.src[0]
        self._drop(pkt, f"{kind} from {src}: over its share of {self.overload.budget:.0f} new "
                        f"dialogs/s ({self.overload.active_sources()} sources asking)",
                   now, "overload-shed", ("overload-shed", src))
        return True

    def _hold(self, pkt, out: Alg, now: float) -> None:
        if self.on_alg is None:
            self._drop(pkt, f"{out.alg} ALG not running", now, "alg-" + out.alg
                       if out.alg in ("sip", "mgcp", "h323") else "alg")
            return
        pkt.retain()
        token = self._next_token
        self._next_token += 1
        self._held[token] = (pkt, now, out.alg)
        self.counters["held"] += 1

        def done(result: Forward | Drop, _token=token) -> None:
            self._verdicts.append((_token, result))
            if threading.get_ident() != self._loop_ident:
                self._wake()          # the loop gives queued verdicts before it sleeps

        try:
            self.on_alg(out, done)
        except Exception:
            log.exception("on_alg failed; packet dropped")
            done(Drop(f"{out.alg} ALG hand-off failed", "error"))

    def _apply_verdicts(self) -> None:
        q = self._verdicts
        while q:
            token, result = q.popleft()
            self._give(token, result)

    def _give(self, token: int, result) -> None:
        held = self._held.pop(token, None)
        if held is None:
            return                        # timed out already, or given twice
        pkt = held[0]
        now = self.clock()
        self._latency_sum += now - held[1]
        self._latency_n += 1
        try:
            if type(result) is Forward:
                self.verdicts.accept(pkt, result.data, result.mark)
                self.counters["accepted"] += 1
                if result.note:
                    # What the ALG's answer changed beyond the packet (a media
                    # flow taken over by the newest negotiation).
                    log.info("%s ALG: %s", held[2], result.note)
            elif type(result) is Drop:
                self._drop(pkt, result.reason, now, code_of(result.category, result.reason, held[2]))
            else:
                self._drop(pkt, f"bad ALG verdict {result!r}", now, "internal-error")
        except RuntimeError as e:         # queue unbound meanwhile
            log.warning("verdict for a held packet lost: %s", e)

    def stats(self) -> dict:
        with self.lock:
            dp = self.datapath.stats()
        return {"worker": dict(self.counters), "held_now": len(self._held), "datapath": dp,
                "drop_codes": dict(self.drop_codes),
                "overload": self.overload.stats() if self.overload is not None else None}

    def status(self) -> dict:
        """What ``gwctl status`` shows of this worker: its counters, drops by
        code (every packet it dropped, once) and overload control."""
        return {**self.counters, "held_now": len(self._held), "drop_codes": dict(self.drop_codes),
                "overload": self.overload.stats() if self.overload is not None else None}


def _describe(buf: bytes) -> str:
    if len(buf) < 24:
        return "?"
    src = socket.inet_ntoa(buf[12:16])
    dst = socket.inet_ntoa(buf[16:20])
    hl = (buf[0] & 15) * 4
    sp = int.from_bytes(buf[hl:hl + 2], "big") if len(buf) >= hl + 4 else 0
    dp = int.from_bytes(buf[hl + 2:hl + 4], "big") if len(buf) >= hl + 4 else 0
    return f"{src}:{sp} -> {dst}:{dp} proto {buf[9]}"

