"""What one SIP message is to its call: the party and dialog it comes from
(RFC 3261 12.2), its transaction, and the checks made before any action: SIP
attack protection (manual chapter 2, "SIP Attack Protection") and a response
answering an INVITE transaction of the call ("SIP ALG", stateful inspection)."""

from __future__ import annotations

from gateway.alg_result import Dropped
from gateway.sip import events as ev
from gateway.sip.alg_context import SipContext
from gateway.sip.alg_run import _Run
from gateway.sip.state import Call
from gateway.sip.transitions import CALLING


class _MessageDialog:
    """One message's place in its call: sender, dialog, transaction."""

    def __init__(self, run: _Run, ctx: SipContext, msg, data: bytes) -> None:
        self.run = run
        self.ctx = ctx
        self.msg = msg
        self.data = data
        self.now = run.now
        self.settings = run.settings
        self.src_ip = str(ctx.src[0])
        self.dst_ip = str(ctx.dst[0])
        self.key: str | None = None
        self.fork_loser = False

    @property
    def call(self) -> Call | None:
        return self.run.st.calls.get(self.key) if self.key else None

    def sender(self, call: Call) -> str:
        """"a" when the message comes from the party that sent the initial
        INVITE, else "b" (a request's From is its sender; a response's From
        is the other party)."""
        mine = self.msg.from_tag == call.from_tag
        return ("a" if mine else "b") if self.msg.is_request else ("b" if mine else "a")

    def of_another_dialog(self, call: Call) -> bool:
        """The message belongs to a dialog of the call other than the one its
        first 2xx set up (another fork). A dialog is its Call-ID and the two
        tags, whichever party sent the request (RFC 3261 §12.2): in a request
        from the callee, and in the caller's answer to it, the From tag is the
        callee's and the To tag the caller's."""
        msg = self.msg
        if call.to_tag is None or (msg.to_tag == call.to_tag and msg.from_tag == call.from_tag):
            return False
        tags = (msg.from_tag or "", msg.to_tag or "")
        return tags != (call.from_tag, call.to_tag) and tags != (call.to_tag, call.from_tag)

    def private_side(self, call: Call) -> str | None:
        if call.mode == "outbound":
            return "a"
        if call.mode == "inbound":
            return "b"
        return None

    def is_forward(self, call: Call) -> bool:
        # The same INVITE (no To tag yet) leaving by the interface its caller
        # came in on: "B and C are reached using the same interface"
        # (Forwarded Calls).
        return (self.msg.to_tag is None and call.phase == CALLING
                and bool(self.ctx.egress) and self.ctx.egress == call.ingress
                and self.msg.via_branch is not None
                and call.txn(self.msg.via_branch, self.msg.cseq[0], "INVITE") is None)

    def check_protect(self) -> None:
        until = self.run.st.protect.get((self.src_ip, self.dst_ip))
        if until is not None and until > self.now:
            raise Dropped(f"sip protect deny: INVITE from {self.src_ip} to {self.dst_ip} "
                        f"refused for {until - self.now:.1f} s more after a 3xx/4xx/5xx answer")

    def check_invite_transaction(self, call: Call) -> None:
        """A response to an INVITE must answer an INVITE transaction of the call
        (its Via branch and CSeq): a stray or forged one (it is UDP) must not
        answer, reject or fork the call ("stateful inspection", ch. 2 "SIP ALG")."""
        branch = self.msg.via_branch
        if branch is None or call.txn(branch, self.msg.cseq[0], "INVITE") is None:
            raise Dropped(f"SIP {self.msg.status_code} to INVITE answers no INVITE transaction of "
                        f"call {call.call_id} (Via branch {branch}, CSeq {self.msg.cseq[0]})")

    def record_txn(self) -> None:
        call, msg = self.call, self.msg
        if call is None or not msg.is_request or msg.via_branch is None:
            return
        if call.txn(msg.via_branch, msg.cseq[0], msg.method) is None:
            self.run.emit(ev.new.TransactionSeen(call.key, msg.via_branch, msg.cseq[0], msg.method,
                                             self.sender(call), self.src_ip, self.dst_ip))

    def restarts_timer_c(self) -> bool:
        msg = self.msg
        if msg.is_request:
            return msg.method == "INVITE"
        return msg.cseq[1] == "INVITE" and 101 <= (msg.status_code or 0) <= 199
