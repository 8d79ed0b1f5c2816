"""The web interface's Flask application.

Security (see the node file's ``[web]``):
- every page but the login form needs a logged-in user; users and their
  salted password hashes come from the node file, each an ``admin`` or
  ``read-only``;
- the session is Flask's signed cookie (key drawn at start: a restart logs
  everyone out), Secure, HttpOnly, SameSite=Strict, expiring after
  ``idle_timeout`` without a request;
- every POST carries the session's CSRF token (a form field or the
  ``X-CSRF-Token`` header), compared in constant time; a POST without it is
  refused (400) and logged;
- changes (failover, clear session) need the admin role: a read-only user
  is refused (403) and the refusal is logged; every change is logged with
  the user (logger ``gateway.web.audit``) and kept in the recent list shown
  on the operations page.

The configuration pages are read-only: an edit is checked exactly as
``gwctl config check`` checks a file (errors with line, column and token)
but not applied: the running pair has no live apply yet."""

from __future__ import annotations

import collections
import functools
import hmac
import json
import logging
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from flask import (Flask, Response, abort, flash, g, jsonify, redirect, render_template, request,
                   session, stream_with_context, url_for)
from markupsafe import Markup
from werkzeug.security import check_password_hash

from gateway.config import check_text
from gateway.ladder import Ladder
from gateway.nodefile import WebSettings

from .config_pages import PAGES, pages
from .ladder_svg import render_svg
from .nodes import NodeUnreachable, Pair, dashboard

audit = logging.getLogger("gateway.web.audit")

# A dummy hash checked for unknown users, so that a wrong user name takes as
# long as a wrong password (no user enumeration by timing).
_DUMMY_HASH = "pbkdf2:sha256:600000$x$" + "0" * 64
SSE_SECONDS = 60.0        # one event stream lasts this long; the browser reconnects
SSE_INTERVAL = 1.0
# The calls page lists the calls started in the newest this many journal
# records (~8,000 SIP calls at ~26 events a call): reading hours of journal
# for every page would take seconds of the node's time.
HISTORY_WINDOW = 200_000


def create_app(web: WebSettings, pair: Pair, config_path: str | None, *,
               sse_seconds: float = SSE_SECONDS, sse_interval: float = SSE_INTERVAL) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_SECURE=True, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_NAME="gwweb", PERMANENT_SESSION_LIFETIME=web.idle_timeout,
        SESSION_REFRESH_EACH_REQUEST=True, MAX_CONTENT_LENGTH=1 << 20)
    users = {u.name: u for u in web.users}
    recent: collections.deque = collections.deque(maxlen=50)
    lock = threading.Lock()

    def log_change(action: str, outcome: str, **what) -> None:
        entry = {"at": time.time(), "user": session.get("user"), "role": session.get("role"),
                 "action": action, "outcome": outcome, "from": request.remote_addr, **what}
        with lock:
            recent.appendleft(entry)
        audit.info("web: user=%s role=%s from=%s action=%s outcome=%s %s", entry["user"], entry["role"],
                   entry["from"], action, outcome, " ".join(f"{k}={v}" for k, v in what.items()))

    def csrf_token() -> str:
        tok = session.get("csrf")
        if not tok:
            tok = session["csrf"] = secrets.token_urlsafe(32)
        return tok

    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["config_pages"] = PAGES

    @app.template_filter("utc")
    def utc(at) -> str:
        if at is None:
            return "-"
        return datetime.fromtimestamp(float(at), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    @app.before_request
    def guard():
        if request.endpoint in ("login", "static"):
            if request.method == "POST":
                check_csrf()
            return None
        if session.get("user") not in users:
            # Not clear(): a stray request (the browser's /favicon.ico) must
            # not wipe the login form's CSRF token from the session.
            session.pop("user", None)
            session.pop("role", None)
            if request.endpoint in ("events",) or request.accept_mimetypes.best == "application/json":
                abort(401)
            return redirect(url_for("login", next=request.path))
        # The role is the node file's, not the cookie's: a user demoted in
        # the node file loses admin rights with the next restart at the latest.
        g.user, g.role = session["user"], users[session["user"]].role
        session.permanent = True
        if request.method == "POST":
            check_csrf()
        return None

    def check_csrf() -> None:
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        want = session.get("csrf") or ""
        if not want or not hmac.compare_digest(sent.encode(), want.encode()):
            audit.warning("web: refused a POST to %s from %s by %s: CSRF token missing or wrong",
                          request.path, request.remote_addr, session.get("user") or "nobody")
            abort(400, "the form's CSRF token is missing or wrong: reload the page and try again")

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                   "frame-ancestors 'none'; form-action 'self'")
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Strict-Transport-Security"] = "max-age=31536000"
        if request.endpoint != "static":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    def admin_only(action: str) -> Callable:
        def wrap(view):
            @functools.wraps(view)
            def inner(*a, **kw):
                if g.role != "admin":
                    log_change(action, "refused: read-only user")
                    abort(403, f"{g.user} is a read-only user: {action} needs an administrator")
                return view(*a, **kw)
            return inner
        return wrap

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def error(exc):
        return render_template("error.html", code=exc.code, message=exc.description), exc.code

    @app.errorhandler(401)
    def unauthorised(exc):
        return jsonify({"error": "log in first"}), 401

    # --- login ---------------------------------------------------------
    @app.route("/login", methods=["GET", "POST"])
    def login():
        error_text = None
        if request.method == "POST":
            name = request.form.get("username", "")
            pw = request.form.get("password", "")
            user = users.get(name)
            ok = check_password_hash(user.password if user else _DUMMY_HASH, pw) and user is not None
            if ok:
                session.clear()
                session["user"], session["role"] = name, user.role
                session["csrf"] = secrets.token_urlsafe(32)
                session.permanent = True
                audit.info("web: user=%s role=%s from=%s logged in", name, user.role, request.remote_addr)
                nxt = request.args.get("next", "")
                return redirect(nxt if nxt.startswith("/") and not nxt.startswith("//") else url_for("index"))
            audit.warning("web: failed login for %r from %s", name, request.remote_addr)
            error_text = "wrong user name or password"
        return render_template("login.html", error=error_text), 401 if error_text else 200

    @app.post("/logout")
    def logout():
        audit.info("web: user=%s logged out", g.user)
        session.clear()
        return redirect(url_for("login"))

    # --- dashboard -----------------------------------------------------
    @app.get("/")
    def index():
        return render_template("dashboard.html", d=dashboard(pair))

    @app.get("/api/dashboard")
    def api_dashboard():
        return jsonify(dashboard(pair))

    @app.get("/events")
    def events():
        """Server-sent events: the dashboard's numbers every ``sse_interval``
        seconds for ``sse_seconds``, then the stream ends and the browser's
        EventSource reconnects (so no server thread is held for ever)."""
        def stream():
            yield "retry: 1000\n\n"
            end = time.monotonic() + sse_seconds
            while True:
                yield f"data: {json.dumps(dashboard(pair), default=str)}\n\n"
                if time.monotonic() + sse_interval > end:
                    return
                time.sleep(sse_interval)
        return Response(stream_with_context(stream()), mimetype="text/event-stream",
                        headers={"X-Accel-Buffering": "no"})

    # --- calls ---------------------------------------------------------
    def rows(what: str) -> list[dict]:
        try:
            _sock, got = pair.ask_active("show", {"what": what})
            return [r for r in got if r]
        except (NodeUnreachable, RuntimeError) as exc:
            flash(f"show {what}: {exc}")
            return []

    @app.get("/calls")
    def calls():
        q = request.args.get("q", "").strip()
        alg = request.args.get("alg", "")

        def keep(r: dict) -> bool:
            if alg and r.get("alg", alg) != alg:
                return False
            return not q or q.lower() in json.dumps(r, default=str).lower()
        live = [r for r in rows("calls") if keep(r)]
        tables = {
            "sip": [r for r in live if r.get("alg") == "sip"],
            "mgcp": [r for r in live if r.get("alg") == "mgcp"],
            "h323": [r for r in live if r.get("alg") == "h323"],
            "endpoints": [r for r in rows("endpoints") if not alg or alg == "mgcp" if keep(r)],
            "registrations": [r for r in rows("registrations") if not q or keep(r)],
            "pinholes": [r for r in rows("pinholes") if not q or keep(r)],
        }
        try:
            _s, sessions = pair.ask_active("get-session", {"filter": []})
        except (NodeUnreachable, RuntimeError) as exc:
            flash(f"get session: {exc}")
            sessions = []
        tables["sessions"] = [r for r in sessions if not q or keep(r)][:500]
        try:
            _s, history = pair.ask_active("call-list", {"limit": 200, "window": HISTORY_WINDOW},
                                          timeout=30.0)
        except (NodeUnreachable, RuntimeError) as exc:
            flash(f"call list: {exc}")
            history = []
        history = [r for r in reversed(history) if (not alg or r["protocol"] == alg)
                   and (not q or keep(r))]
        return render_template("calls.html", t=tables, history=history, q=q, alg=alg)

    @app.get("/call/<path:call_id>")
    def call_page(call_id: str):
        try:
            sock, found = pair.ask_active("ladder", {"call": call_id}, timeout=30.0)
        except (NodeUnreachable, RuntimeError) as exc:
            abort(404, f"ladder of {call_id}: {exc}")
        if found is None:
            abort(404, f"no call {call_id!r} in the journal of the active node (calls older than "
                       "the journal's retention are gone)")
        lad = Ladder.from_dict(found)
        return render_template("call.html", ladder=lad, svg=Markup(render_svg(lad)), node=sock)

    @app.get("/api/call/<path:call_id>")
    def api_call(call_id: str):
        _s, found = pair.ask_active("ladder", {"call": call_id}, timeout=30.0)
        return (jsonify(found), 200) if found is not None else (jsonify({"error": "no such call"}), 404)

    # --- configuration -------------------------------------------------
    def running_text() -> tuple[str, str]:
        if not config_path:
            abort(404, "this web interface was started without the node file's configuration")
        try:
            with open(config_path, encoding="utf-8", errors="replace", newline="") as f:
                return config_path, f.read()
        except OSError as exc:
            abort(404, f"cannot read {config_path}: {exc.strerror or exc}")

    @app.get("/config")
    def config_index():
        return redirect(url_for("config_page", page="interfaces"))

    @app.route("/config/<page>", methods=["GET"])
    def config_page(page: str):
        if page not in dict(PAGES) and page != "edit":
            abort(404, f"no configuration page {page!r}")
        path, text = running_text()
        cfg, diags = check_text(text, path)
        if page == "edit":
            return render_template("config_edit.html", text=text, path=path, result=None)
        return render_template("config.html", page=page, p=pages(cfg)[page] if cfg else None,
                               diags=diags, path=path)

    @app.post("/config/check")
    def config_check():
        """Check an edit as `gwctl config check` does; never applied."""
        path, _ = running_text()
        text = request.form.get("text", "")
        cfg, diags = check_text(text, "edit")
        errors = [d for d in diags if d.severity == "error"]
        # Not a change (nothing is applied), but who checked what is worth a line.
        audit.info("web: user=%s checked a configuration edit: %s", g.user,
                   "valid" if cfg is not None else f"{len(errors)} error(s)")
        result = {"valid": cfg is not None, "errors": errors,
                  "others": [d for d in diags if d.severity != "error"],
                  "summary": (f"valid ({len(cfg.policies)} policies, {len(cfg.interfaces)} interfaces, "
                              f"{len(cfg.addresses)} addresses)") if cfg is not None else
                  f"invalid ({len(errors)} error{'s' if len(errors) != 1 else ''})",
                  "error_lines": sorted({d.line for d in errors})}
        return render_template("config_edit.html", text=text, path=path, result=result)

    # --- operations ----------------------------------------------------
    @app.get("/ops")
    def ops():
        with lock:
            log = list(recent)
        return render_template("ops.html", d=dashboard(pair), log=log)

    @app.post("/ops/failover")
    @admin_only("failover")
    def failover():
        if request.form.get("confirm") != "yes":
            flash("failover not done: tick the confirmation box")
            return redirect(url_for("ops"))
        active = pair.active()
        if active is None:
            log_change("failover", "failed: no active node")
            flash("failover not done: no node reports active")
            return redirect(url_for("ops"))
        try:
            res = pair.ask(active, "failover", {"timeout": 3.0}, timeout=15.0)
        except (NodeUnreachable, RuntimeError) as exc:
            log_change("failover", f"failed: {exc}", node=active)
            flash(f"failover failed: {exc}")
            return redirect(url_for("ops"))
        if res.get("ok"):
            log_change("failover", "done", node=active, epoch=f"{res['from_epoch']}->{res['epoch']}",
                       ms=res["ms"])
            flash(f"failover done in {res['ms']} ms: epoch {res['from_epoch']} -> {res['epoch']}")
        else:
            log_change("failover", f"did not complete: {res.get('reason')}", node=active)
            flash(f"failover did not complete: {res.get('reason')}")
        return redirect(url_for("ops"))

    @app.post("/ops/clear-session")
    @admin_only("clear session")
    def clear_session():
        words = request.form.get("filter", "").split()
        all_ = [w.lower() for w in words] == ["all"]
        if not words:
            flash("clear session: give a filter (src-ip A, dst-ip A, src-port N, dst-port N, "
                  "protocol P, id N) or `all`")
            return redirect(url_for("ops"))
        node = request.form.get("node") or pair.active()
        if node not in pair.sockets:
            abort(400, "clear session: unknown node")
        try:
            res = pair.ask(node, "clear-session", {"filter": [] if all_ else words, "all": all_})
        except (NodeUnreachable, RuntimeError) as exc:
            log_change("clear session", f"failed: {exc}", node=node, filter=" ".join(words))
            flash(f"clear session failed: {exc}")
            return redirect(url_for("ops"))
        log_change("clear session", "done", node=node, filter=" ".join(words), cleared=res["cleared"])
        flash(f"{res['cleared']} session(s) cleared")
        return redirect(url_for("ops"))

    return app
