"""The SIP ALG's actions on one message (manual chapter 2), as the transition table names them."""

from gateway.alg_result import Dropped
from gateway.ports import MEDIA_PORT_LOW
from gateway.sip import events as ev, nat
from gateway.sip.alg_header_nat import _HeaderNat
from gateway.sip.alg_limits import (DEFAULT_REGISTRATION, MAX_CHANNELS_PER_DIRECTION, MAX_REGISTRATION,
                                    PENDING_REGISTRATION, TEARDOWN_DELAY, _max_duration)
from gateway.sip.alg_literals import _is_ipv4, _is_port, _port
from gateway.sip.portmap import allocate_port
from gateway.sip.state import _call_base
from gateway.sip.transitions import CALLING, CONFIRMED, NONE, TABLE, lookup, request_trigger, response_trigger
from gateway.span import Edit


class _Message(_HeaderNat):
    def process(self) -> None:
        msg = self.msg
        cseq_method = msg.cseq[1]
        if msg.is_request:
            trigger = request_trigger(msg.method)
        else:
            trigger = response_trigger(msg.status_code, cseq_method)
        if msg.is_request and msg.method == "INVITE":
            self.check_protect()
        phase = NONE
        if cseq_method != "REGISTER":
            call = self.run.st.find_call(msg.call_id, msg.from_tag or "", msg.to_tag)
            if call is not None:
                self.key = call.key
                phase = call.phase
                if trigger == "INVITE" and self.is_forward(call):
                    trigger = "FORWARD"
                if not msg.is_request and cseq_method == "INVITE":
                    self.check_invite_transaction(call)
        t = lookup(phase, trigger)
        for action in t.actions:
            _ACTIONS[action](self)

    def do_protect(self) -> None:
        s = self.settings
        code = self.msg.status_code or 0
        if not s.protect_deny or not 300 <= code < 600:
            return
        # Only a reply to an INVITE the ALG passed ("monitor INVITE requests
        # and proxy server replies to them", SIP Attack Protection): the
        # request's own transaction names its source and the proxy. A
        # response matching none (stray, or forged: it is UDP) would let
        # anyone block a phone's INVITEs to its proxy.
        call = self.call
        txn = None
        if call is not None and self.msg.via_branch is not None:
            txn = call.txn(self.msg.via_branch, self.msg.cseq[0], "INVITE")
        if txn is None:
            return
        src, proxy = txn.src_ip, txn.dst_ip
        if s.protect_deny_dst is not None and proxy != str(s.protect_deny_dst.ip):
            return
        self.run.emit(ev.new.ProtectDenyAdded(src, proxy, self.now + s.protect_deny_timeout))

    def do_start(self) -> None:
        msg, ctx = self.msg, self.ctx
        limit = self.settings.max_setup_calls_per_source
        if self.run.st.setup_by_src.get(self.src_ip, 0) >= limit:
            # Each call in setup holds ports, pinholes and a timer until its
            # answer or Timer C: one source flooding INVITEs that are never
            # answered must not take them all.
            raise Dropped(f"sip setup limit: INVITE from {self.src_ip} refused, it already has "
                        f"{limit} calls in setup (set sip max-setup-calls-per-source)")
        from_tag = msg.from_tag or ""
        key = f"{msg.call_id};{from_tag}"
        mode, private_ip, alg_ip = "none", None, None
        if ctx.direction == "outbound" and ctx.nat_src is not None:
            mode, private_ip, alg_ip = "outbound", self.src_ip, str(ctx.nat_src[0])
        elif ctx.direction == "inbound":
            target = ctx.nat_dst
            if target is None:
                reg = self.run.st.registrations.get((self.dst_ip, _port(ctx.dst[1])))
                if reg is None:
                    raise Dropped(f"inbound INVITE to {self.dst_ip}:{ctx.dst[1]} matches no MIP, "
                                "VIP or Incoming DIP registration")
                target = (reg.private_ip, reg.private_port)
                self.run.route_to = target
            mode, private_ip, alg_ip = "inbound", str(target[0]), self.dst_ip
        if private_ip == alg_ip:
            mode, private_ip, alg_ip = "none", None, None
        public_call_id = msg.call_id
        if mode == "outbound":
            local, at, host = msg.call_id.rpartition("@")
            if at and host == private_ip:
                public_call_id = f"{local}@{alg_ip}"
        self.run.emit(ev.new.CallStarted(key, msg.call_id, public_call_id, from_tag, mode,
                                     private_ip, alg_ip, ctx.ingress, ctx.egress, self.now,
                                     self.now + _max_duration(self.settings)))
        self.key = key
        self.record_txn()
        if ctx.ingress and ctx.ingress == ctx.egress:
            # Both legs by one interface: media never crosses the device.
            self.run.emit(ev.new.CallForwarded(key))

    def do_activity(self) -> None:
        call = self.call
        if call is None:
            return
        self.record_txn()
        if call.phase == CALLING:
            # No final answer yet: the call lasts as long as its INVITE
            # transaction, which Timer C bounds (RFC 3261 §16.6 bullet 11,
            # §16.8): started by the INVITE, restarted by a provisional
            # answer 101-199 (§16.7 step 2), otherwise left running. An
            # unanswered INVITE (a scanner's) goes after it, with its ports
            # and pinholes.
            if self.restarts_timer_c():
                deadline = self.now + self.settings.timer_c
            else:
                deadline = call.signalling_deadline
            self.run.emit(ev.new.CallActivity(call.key, self.now, deadline, call.session_expires))
            return
        timeout = call.session_expires or self.settings.signaling_inactivity_timeout
        self.run.emit(ev.new.CallActivity(call.key, self.now, self.now + timeout, call.session_expires))

    def do_session(self) -> None:
        # "If the ALG receives another INVITE before the session times out,
        # it resets all timeout values to this new INVITE or to default
        # values" (Call Session Timers).
        call = self.call
        self.run.emit(ev.new.CallActivity(call.key, self.now,
                                      self.now + self.settings.signaling_inactivity_timeout, None))

    def do_answer(self) -> None:
        call, msg = self.call, self.msg
        to_tag = msg.to_tag or ""
        if self.of_another_dialog(call):
            # Forking: "the SIP ALG parses but updates call information with
            # the first 200 OK message it receives".
            self.fork_loser = True
            self.run.logs.append(f"call {call.call_id}: 2xx from another fork (tag {to_tag!r}) "
                                 "passed; call kept from the first 2xx")
            return
        if call.to_tag is None:
            self.run.emit(ev.new.CallAnswered(call.key, to_tag, self.now,
                                          self.now + self.settings.media_inactivity_timeout,
                                          self.now + self.settings.media_inactivity_timeout))
        # Session-Expires of the 2xx sets the signalling timeout (Call
        # Session Timers); without it the configured default applies.
        se = msg.session_expires if msg.session_expires else None
        timeout = se or self.settings.signaling_inactivity_timeout
        self.run.emit(ev.new.CallActivity(call.key, self.now, self.now + timeout, se))

    def do_reject(self) -> None:
        self.run.emit(ev.new.CallRejected(self.key, self.msg.status_code, self.now + TEARDOWN_DELAY))

    def do_retry(self) -> None:
        self.run.emit(ev.new.CallRetried(self.key, self.now))

    def do_teardown(self) -> None:
        self.run.emit(ev.new.CallTerminating(self.key, self.msg.method, self.now + TEARDOWN_DELAY))

    def do_forward(self) -> None:
        call = self.call
        if not call.forwarded:
            self.run.emit(ev.new.CallForwarded(call.key))
        for g in call.groups:
            self.run.release_group(call.key, g.group, "forwarded call: media bypasses the device")

    def do_headers(self) -> None:
        call = self.call
        if call is None:
            return self.do_stateless()
        direction = self.msg_direction(call)
        if direction == "none" or call.alg_ip is None:
            return
        msg = self.msg
        actions = nat.field_actions(msg.cseq[1] if not msg.is_request else msg.method, direction,
                                    msg.is_request, call.call_id != call.public_call_id)
        if direction == "outbound":
            self.run.edits += nat.header_edits(msg.addresses, actions, self.call_l2a, self.call_a2l)
        else:
            self.route_inbound(call)
            self.run.edits += nat.header_edits(msg.addresses, actions, self.call_l2a, self.call_a2l)
            self.contact_pinholes(call)

    def do_stateless(self) -> None:
        direction = self.msg_direction(None)
        if direction == "none":
            return
        l2a, a2l = self.stateless_mapper()
        if l2a is None:
            return
        msg = self.msg
        actions = nat.field_actions(msg.method if msg.is_request else msg.cseq[1], direction,
                                    msg.is_request)
        self.run.edits += nat.header_edits(msg.addresses, actions, l2a, a2l)

    def do_register(self) -> None:
        ctx, msg, st = self.ctx, self.msg, self.run.st
        if self.msg_direction(None) != "outbound":
            return self.do_stateless()
        alg = str(ctx.nat_src[0])
        for c in msg.contacts:
            if c.star or c.host is None or c.host.text != self.src_ip:
                continue
            port = int(c.port.text) if c.port is not None and _is_port(c.port.text) else nat.SIP_PORT
            reg = st.registration_for_private(c.host.text, port)
            if reg is not None and reg.public_ip == alg:
                # A refresh keeps its binding (and its lifetime until the
                # registrar answers).
                continue
            if (c.host.text, port) == (self.src_ip, _port(ctx.src[1])):
                pub, owned = _port(ctx.nat_src[1]), False
            elif self.keeps_ports(alg):
                pub, owned = port, True       # a MIP: the host's own port
            else:
                got = allocate_port(st.ports, alg, hint=port, low=MEDIA_PORT_LOW)
                if got is None:
                    raise Dropped(f"no free public port on {alg} for contact {c.host.text}:{port}")
                pub, owned = got, True
            self.run.emit(ev.new.RegistrationBound(alg, pub, c.host.text, port, msg.call_id,
                                               self.now + PENDING_REGISTRATION, owned))
            st = self.run.st
        self.do_stateless()

    def do_registered(self) -> None:
        msg = self.msg
        if self.msg_direction(None) != "inbound":
            return self.do_stateless()
        st = self.run.snapshot()
        listed: set[tuple[str, int]] = set()
        for c in msg.contacts:
            if c.star or c.host is None:
                continue
            port = int(c.port.text) if c.port is not None and _is_port(c.port.text) else nat.SIP_PORT
            reg = st.registrations.get((c.host.text, port))
            if reg is None:
                continue
            if _call_base(reg.call_id) != _call_base(msg.call_id):
                # A binding of another REGISTER (RFC 3261 §10.3 lists all
                # of the AOR's): not this answer's to change, and a forged
                # answer naming only a public contact must change nothing.
                continue
            listed.add((reg.public_ip, reg.public_port))
            # The lifetime is the registrar's: the contact's expires
            # parameter, else the Expires header (Figure 10: 3600 from the
            # 200 OK replaces the 7200 asked for).
            life = c.expires if c.expires is not None else msg.expires
            if life is None:
                life = DEFAULT_REGISTRATION
            # An Incoming DIP entry holds a public port and a way in: the
            # registrar's word is capped, so a forged or careless 2^31 s cannot
            # pin them for ever (phones refresh well within a day).
            life = min(life, MAX_REGISTRATION)
            if life == 0:
                self.run.emit(ev.new.RegistrationRemoved(reg.public_ip, reg.public_port, "unregistered"))
            else:
                self.run.emit(ev.new.RegistrationBound(reg.public_ip, reg.public_port, reg.private_ip,
                                                   reg.private_port, reg.call_id,
                                                   self.now + life, reg.owned))
        # Bindings of this REGISTER the registrar no longer lists were
        # removed (e.g. Expires: 0, RFC 3261 §10.2.2).
        # The answer carries the Call-ID as the registrar saw it (the ALG's
        # address after the @); the binding keeps the one ph1 sent.
        for reg in st.registrations_of(self.dst_ip, msg.call_id):
            if (reg.public_ip, reg.public_port) not in listed:
                self.run.emit(ev.new.RegistrationRemoved(reg.public_ip, reg.public_port, "unregistered"))
        # Translate with the bindings as they were when the answer arrived.
        saved = self.run.st
        self.run.st = st
        self.do_stateless()
        self.run.st = saved

    def do_refer(self) -> None:
        """REFER from inside naming a party inside: that party gets a public
        address (its registration's when it has one) so the referred party
        outside can reach it (SIP Request Methods, "Refer")."""
        ctx, msg = self.ctx, self.msg
        if self.msg_direction(self.call) != "outbound":
            return
        for h in msg.headers:
            if h.name not in ("refer-to", "r"):
                continue
            span = h.value
            text = span.text
            at = text.find("@")
            if at < 0:
                continue
            i = at + 1
            j = i
            while j < len(text) and ("0" <= text[j] <= "9" or text[j] == "."):
                j += 1
            host = text[i:j]
            if not _is_ipv4(host):
                continue
            port, k = nat.SIP_PORT, j
            if j < len(text) and text[j] == ":":
                k = j + 1
                while k < len(text) and "0" <= text[k] <= "9":
                    k += 1
                digits = text[j + 1:k]
                if digits:
                    if not _is_port(digits):
                        continue
                    port = int(digits)
            call = self.call
            alg = call.alg_ip if call is not None else str(ctx.nat_src[0])
            if host == alg:
                continue
            reg = self.run.st.registration_for_private(host, port)
            if reg is not None:
                pub = (reg.public_ip, reg.public_port)
            elif call is not None:
                b = call.binding_for_private(host, port) or self.bind(call, host, port)
                pub = (b.public_ip, b.public_port)
            else:
                continue
            new = f"{pub[0]}:{pub[1]}" if (pub[1] != nat.SIP_PORT or k > j) else pub[0]
            self.run.edits.append(Edit(span.start + i, span.start + k, new.encode("ascii")))

    def do_media(self) -> None:
        msg, call = self.msg, self.call
        if call is None or self.fork_loser:
            return
        if msg.body_kind == "encrypted":
            # "the SIP ALG permits it through the firewall anyway, but
            # generates a log message" (note in "ALG").
            self.run.logs.append(f"call {call.call_id}: encrypted SDP ({msg.content_type}) "
                                 "passed uninspected; no pinholes opened for it")
            return
        sd = msg.sdp
        if sd is None:
            return
        if (not msg.is_request and msg.to_tag is not None and call.phase == CONFIRMED
                and self.of_another_dialog(call)):
            return
        side = self.sender(call)
        key = call.key
        nat_side = call.alg_ip is not None and side == self.private_side(call)
        existing = {g.index: g for g in call.groups if g.side == side}
        ports: dict[int, int] = {}
        rejected: set[int] = set()
        local = self._local_ips(call) if nat_side else set()
        channels = 0
        for i, m in enumerate(sd.media):
            old = existing.get(i)
            dest = m.conn if m.conn is not None else m.session_conn
            if m.port == 0:
                # A stream removed (RFC 3264 §8.2): its channel goes.
                if old:
                    self.run.release_group(key, old.group, "media stream removed")
                continue
            if dest is None:
                raise Dropped(f"SDP m= line {i + 1} has no c= at media or session level")
            addr = dest.addr.text
            if dest.is_multicast:
                self.run.logs.append(f"call {call.call_id}: multicast c= {addr} unsupported; "
                                     "no pinhole")
                if old:
                    self.run.release_group(key, old.group, "multicast")
                continue
            if addr == "0.0.0.0":
                # On hold: "The SIP ALG does not create pinholes for RTP and
                # RTCP traffic when the destination IP address is 0.0.0.0".
                if old:
                    self.run.release_group(key, old.group, "on hold")
                continue
            if not _is_ipv4(addr):
                self.run.logs.append(f"call {call.call_id}: c= {addr} is not an IPv4 address; "
                                     "no pinhole")
                continue
            channels += 1
            if channels > MAX_CHANNELS_PER_DIRECTION:
                self.run.logs.append(
                    f"call {call.call_id}: media channel {channels} of one direction refused "
                    f"(at most {MAX_CHANNELS_PER_DIRECTION}); m= port set to 0")
                if old:
                    self.run.release_group(key, old.group, "too many channels")
                rejected.add(i)
                continue
            rtcp_port = m.rtcp_port if m.rtcp_port is not None else m.port + 1
            rtcp_ip = m.rtcp_addr.text if m.rtcp_addr is not None else addr
            if nat_side:
                local.add(addr)
            if (old is not None and old.dst_ip == addr and old.dst_port == m.port
                    and old.rtcp_port == rtcp_port):
                if old.public_port is not None:
                    ports[i] = old.public_port
                continue
            if old is not None:
                self.run.release_group(key, old.group, "media changed")
            self.bind_media(i, side, addr, m.port, rtcp_ip, rtcp_port, nat_side, ports)
        for idx, g in existing.items():
            if idx >= len(sd.media):
                self.run.release_group(key, g.group, "media stream removed")
        if nat_side:
            self.run.edits += nat.sdp_edits(sd, call.alg_ip, local, ports, rejected)
        elif rejected and self.msg_direction(call) != "none":
            self.run.edits += nat.sdp_edits(sd, call.alg_ip or "", set(), {}, rejected)
        elif rejected:
            self.run.edits += nat.sdp_edits(sd, "", set(), {}, rejected)


_ACTIONS = {a: getattr(_Message, "do_" + a) for t in TABLE.values() for a in t.actions}
