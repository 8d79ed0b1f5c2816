"""One evaluation of the MGCP ALG (a datagram, a timer, a media report; manual
chapter 3): the running state and what it emitted, which timer each event
arms, and how connections and calls end (their media groups released, their
pinholes closed)."""

from __future__ import annotations

from gateway.alg_result import Run, close_hole, open_hole
from gateway.mgcp import events as ev
from gateway.mgcp.state import Call, MgcpState, Txn, apply, txn_key


def _txn_timer(e: ev.TransactionStarted | ev.TransactionAnswered | ev.TransactionEnded) -> str:
    return txn_key(e.gateway, e.origin, e.tid)


def _no_timer(e: ev.Event) -> None:
    return None


def _pinhole_opened(st: MgcpState, e: ev.PinholeOpened, opened: dict, closed: list) -> None:
    call = st.calls.get((e.gateway, e.call_id))
    open_hole(call.pinholes.get(e.pinhole) if call else None, opened)


def _pinhole_closed(st: MgcpState, e: ev.PinholeClosed, opened: dict, closed: list) -> None:
    close_hole(e.pinhole, opened, closed)


class _Run(Run):
    """One evaluation: the running state and what it emitted."""

    apply = staticmethod(apply)
    # A transaction's timer is its own key, not the endpoint's stream; an
    # endpoint's restart or notified entity arms nothing.
    TIMER_KEYS = {ev.TransactionStarted: _txn_timer, ev.TransactionAnswered: _txn_timer,
                  ev.TransactionEnded: _txn_timer, ev.EndpointRestarted: _no_timer,
                  ev.NotifiedEntitySet: _no_timer}
    PINHOLES = {ev.PinholeOpened: _pinhole_opened, ev.PinholeClosed: _pinhole_closed}

    # --- calls and connections ----------------------------------------------

    def release_group(self, call: Call, group: str, reason: str) -> None:
        for p in list(call.pinholes.values()):
            if p.group == group:
                self.emit(ev.PinholeClosed(call.gateway, call.call_id, p.id, reason))
        self.emit(ev.MediaReleased(call.gateway, call.call_id, group, reason))

    def end_call(self, gateway: str, call_id: str, reason: str) -> None:
        call = self.st.calls[(gateway, call_id)]
        for p in call.pinholes:
            self.emit(ev.PinholeClosed(gateway, call_id, p, reason))
        self.emit(ev.CallEnded(gateway, call_id, reason))
        self.logs.append(f"MGCP call {call_id} of gateway {gateway} ended: {reason}")

    def delete_connection(self, gateway: str, call_id: str, conn_id: str, reason: str) -> None:
        call = self.st.calls[(gateway, call_id)]
        for g in list(call.groups.values()):
            if g.conn_id == conn_id:
                self.release_group(self.st.calls[(gateway, call_id)], g.group, reason)
        self.emit(ev.ConnectionDeleted(gateway, call_id, conn_id, reason))
        self.end_if_empty(gateway, call_id, reason)

    def end_if_empty(self, gateway: str, call_id: str, reason: str) -> None:
        call = self.st.calls.get((gateway, call_id))
        if call is None or len(call.connections):
            return
        # A CRCX still waiting for its response keeps the call.
        if not len(call.pending):
            self.end_call(gateway, call_id, reason)


def _release_pending(run: _Run, t: Txn, reason: str) -> None:
    call = run.st.calls.get((t.gateway, t.call_id))
    if call is None:
        return
    for g in list(call.groups.values()):
        if g.conn_id is None and g.tid == t.tid:
            run.release_group(run.st.calls[(t.gateway, t.call_id)], g.group, reason)
    run.end_if_empty(t.gateway, t.call_id, reason)
