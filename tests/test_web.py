"""The web interface (ops/web/) with Flask's test client: login and roles,
CSRF refusal, a read-only user refused a change, every change logged with
the user, the dashboard's numbers as `gwctl status` gives them, a call's
ladder page, configuration pages, an edit checked with errors at their line;
and the node file's [web] table (gateway/nodefile.py)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

pytest.importorskip("flask")

from werkzeug.security import generate_password_hash

from gateway.ladder import Ladder, Step
from gateway.nodefile import NodeFileError, WebSettings, WebUser, parse_node_file
from ops.web.app import create_app
from ops.web.nodes import Pair

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "ch2-incoming-call-dip-pool.cfg"
ADMIN_PW, VIEWER_PW = "admin-secret-1", "viewer-secret-1"

LADDER = Ladder("sip", "c1@10.1.1.3;t1", ("c1@10.1.1.3", "c1@1.1.1.20"),
                ("A 10.1.1.3", "gateway", "B 1.1.1.4"),
                (Step(5, 100.0, "message", "A 10.1.1.3", "B 1.1.1.4", "INVITE (CSeq 1)",
                      "10.1.1.3 -> 1.1.1.4", "1.1.1.20 -> 1.1.1.4"),
                 Step(9, 100.5, "pinhole", "gateway", "gateway", "pinhole open media udp 1.1.1.20:30000"
                      " -> 10.1.1.3:30000", detail="<script>alert(1)</script>")), 100.0)


class FakeNodes:
    """Two nodes' control channels: status, show, failover (swaps roles),
    clear-session, ladder, call-list."""

    def __init__(self) -> None:
        self.roles = {"/run/gw-a.sock": "active", "/run/gw-b.sock": "standby"}
        self.epoch = 1
        self.calls: list[tuple[str, str, dict]] = []

    def __call__(self, cmd, args, *, node, timeout):
        self.calls.append((node, cmd, args))
        name = node.rsplit("/", 1)[-1][:-5]
        role = self.roles[node]
        if cmd == "status":
            return {"node": name, "role": role, "epoch": self.epoch, "forwarding": role == "active",
                    "replication": "sync", "journal_head": 42, "applied": 42, "calls": 1,
                    "registrations": 0, "pinholes": 2, "endpoints": 0,
                    "peer": {"role": "standby" if role == "active" else "active", "epoch": self.epoch,
                             "seen_ago_ms": 12.0, "head": 42, "applied": 40,
                             "lag_events": 2 if role == "active" else None},
                    "drops": {}, "ingest": {"drop_codes": {"policy-deny": 7, "malformed": 1},
                                            "overload": {"overloaded": False, "shed": 3, "admitted": 90,
                                                         "budget": 200.0, "rate": 200.0,
                                                         "active_sources": 1}}}
        if cmd == "show":
            return {"calls": [{"alg": "sip", "call": "c1@10.1.1.3;t1", "call_id": "c1@10.1.1.3",
                               "phase": "confirmed", "mode": "outbound", "private": "10.1.1.3",
                               "alg_address": "1.1.1.20", "pinholes": 2}],
                    "pinholes": [{"id": "c1#p1", "kind": "media", "proto": "udp", "direction": "inbound",
                                  "dst": "1.1.1.20:30000", "to": "10.1.1.3:30000", "call": "c1"},
                                 {"id": "c1#p2", "kind": "media", "proto": "udp", "direction": "inbound",
                                  "dst": "1.1.1.20:30001", "to": "10.1.1.3:30001", "call": "c1"}],
                    "registrations": [], "endpoints": []}[args["what"]]
        if cmd == "get-session":
            return []
        if cmd == "call-list":
            return [{"protocol": "sip", "call": "c1@10.1.1.3", "parties": "outbound 10.1.1.3 as 1.1.1.20",
                     "started_at": 100.0, "ended_at": None, "end_reason": None, "ids": []}]
        if cmd == "ladder":
            return LADDER.to_dict() if args["call"] in LADDER.ids else None
        if cmd == "failover":
            other = next(s for s in self.roles if s != node)
            self.roles[node], self.roles[other] = "standby", "active"
            self.epoch += 1
            return {"ok": True, "ms": 80, "role": "standby", "from_epoch": self.epoch - 1, "epoch": self.epoch}
        if cmd == "clear-session":
            return {"cleared": 2, "sessions": [], "pinholes_reopened": 0}
        raise AssertionError(cmd)


def web_settings() -> WebSettings:
    return WebSettings("127.0.0.1", 8443, "c.pem", "k.pem",
                       (WebUser("alice", "admin", generate_password_hash(ADMIN_PW)),
                        WebUser("bob", "read-only", generate_password_hash(VIEWER_PW))))


@pytest.fixture
def nodes():
    return FakeNodes()


@pytest.fixture
def client(nodes):
    app = create_app(web_settings(), Pair(list(nodes.roles), call=nodes), str(CONFIG),
                     sse_seconds=0.0, sse_interval=0.01)
    app.testing = True
    return app.test_client()


def token(resp) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', resp.get_data(as_text=True))
    assert m, "no CSRF token on the page"
    return m.group(1)


def login(client, user="alice", pw=ADMIN_PW):
    page = client.get("/login")
    return client.post("/login", data={"username": user, "password": pw, "csrf_token": token(page)})


def test_pages_need_a_login(client):
    r = client.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert client.get("/events").status_code == 401


def test_wrong_password_is_refused_and_logged(client, caplog):
    with caplog.at_level(logging.INFO, "gateway.web.audit"):
        r = login(client, pw="wrong")
    assert r.status_code == 401 and "wrong user name or password" in r.get_data(as_text=True)
    assert "failed login for 'alice'" in caplog.text
    assert login(client, user="mallory", pw=ADMIN_PW).status_code == 401
    assert client.get("/").status_code == 302


def test_a_stray_request_before_login_keeps_the_login_forms_token(client):
    # Browsers fetch /favicon.ico with the login page: that request must not
    # wipe the session holding the form's CSRF token (it did: every login
    # from Chromium was refused).
    page = client.get("/login")
    assert client.get("/favicon.ico").status_code == 302
    r = client.post("/login", data={"username": "alice", "password": ADMIN_PW, "csrf_token": token(page)})
    assert r.status_code == 302


def test_login_without_csrf_token_is_refused(client):
    client.get("/login")
    r = client.post("/login", data={"username": "alice", "password": ADMIN_PW})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)


def test_dashboard_shows_both_nodes_as_gwctl_status_does(client):
    assert login(client).status_code == 302
    html = client.get("/").get_data(as_text=True)
    assert "gw-a" in html and "gw-b" in html and 'role-active">active' in html
    assert "policy-deny" in html and "3 shed, 90 admitted" in html and "2 events" in html
    d = client.get("/api/dashboard").get_json()
    assert [n["role"] for n in d["nodes"]] == ["active", "standby"]
    assert d["per_alg"]["sip"] == {"calls": 1, "pinholes": 2, "registrations": 0, "endpoints": 0}


def test_events_stream_sends_the_dashboard(client):
    login(client)
    r = client.get("/events")
    body = r.get_data(as_text=True)
    assert r.mimetype == "text/event-stream" and body.startswith("retry: 1000")
    assert '"role": "active"' in body


def test_calls_tables_filter_and_the_ladder_page(client):
    login(client)
    html = client.get("/calls").get_data(as_text=True)
    assert "c1@10.1.1.3" in html and "1.1.1.20:30000" in html
    assert "c1@10.1.1.3" not in client.get("/calls?q=nomatch").get_data(as_text=True).split("SIP calls")[1] \
        .split("MGCP calls")[0]
    page = client.get("/call/c1@10.1.1.3")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in text and "INVITE (CSeq 1)" in text
    assert "1.1.1.20 -&gt; 1.1.1.4" in text
    # text from the network is escaped in the SVG and the table
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    assert client.get("/call/unknown").status_code == 404


def test_read_only_user_is_refused_a_change_and_the_refusal_logged(client, nodes, caplog):
    login(client, "bob", VIEWER_PW)
    page = client.get("/ops")
    with caplog.at_level(logging.INFO, "gateway.web.audit"):
        r = client.post("/ops/failover", data={"csrf_token": token(page), "confirm": "yes"})
        r2 = client.post("/ops/clear-session", data={"csrf_token": token(page), "filter": "all"})
    assert r.status_code == 403 and "read-only" in r.get_data(as_text=True)
    assert r2.status_code == 403
    assert not [c for c in nodes.calls if c[1] in ("failover", "clear-session")]
    assert "user=bob role=read-only" in caplog.text and "refused" in caplog.text


def test_post_without_csrf_token_changes_nothing(client, nodes):
    login(client)
    r = client.post("/ops/failover", data={"confirm": "yes"})
    assert r.status_code == 400
    r = client.post("/ops/failover", data={"confirm": "yes", "csrf_token": "forged"})
    assert r.status_code == 400
    assert nodes.roles["/run/gw-a.sock"] == "active"


def test_admin_failover_needs_the_confirmation_and_is_logged_with_the_user(client, nodes, caplog):
    login(client)
    tok = token(client.get("/ops"))
    client.post("/ops/failover", data={"csrf_token": tok})
    assert nodes.roles["/run/gw-a.sock"] == "active"          # not confirmed: nothing done
    with caplog.at_level(logging.INFO, "gateway.web.audit"):
        r = client.post("/ops/failover", data={"csrf_token": tok, "confirm": "yes"}, follow_redirects=True)
    assert nodes.roles == {"/run/gw-a.sock": "standby", "/run/gw-b.sock": "active"}
    assert ("/run/gw-a.sock", "failover", {"timeout": 3.0}) in nodes.calls
    assert "failover done" in r.get_data(as_text=True)
    assert "user=alice role=admin" in caplog.text and "action=failover outcome=done" in caplog.text
    r = client.post("/ops/clear-session", data={"csrf_token": tok, "filter": "src-ip 10.1.1.3"},
                    follow_redirects=True)
    assert "2 session(s) cleared" in r.get_data(as_text=True)
    assert ("/run/gw-b.sock", "clear-session", {"filter": ["src-ip", "10.1.1.3"], "all": False}) in nodes.calls
    assert "alice (admin)" in client.get("/ops").get_data(as_text=True)


def test_configuration_pages_follow_the_manual(client):
    login(client)
    html = client.get("/config/mip-dip").get_data(as_text=True)
    assert "DIP 5" in html and "set interface ethernet3 dip 5 1.1.1.20 1.1.1.40 incoming" in html
    assert "not applied" in client.get("/config/edit").get_data(as_text=True)
    for page in ("interfaces", "zones", "addresses", "policies", "sip", "mgcp", "h323", "screens"):
        assert client.get(f"/config/{page}").status_code == 200
    assert client.get("/config/nope").status_code == 404


def test_config_edit_is_checked_with_errors_at_their_line_not_applied(client):
    login(client)
    tok = token(client.get("/config/edit"))
    good = CONFIG.read_text()
    bad = good.replace("set address trust phone1", "set adress trust phone1", 1)
    line = next(i for i, l in enumerate(bad.splitlines(), 1) if "adress" in l)
    r = client.post("/config/check", data={"csrf_token": tok, "text": bad})
    html = r.get_data(as_text=True)
    # as `gwctl config check` says it: the misspelt keyword, and the policy
    # that names the address it no longer defines
    assert r.status_code == 200 and "invalid (2 errors)" in html
    assert f'data-line="{line}">line {line}, column 5: unknown keyword: \'adress\'' in html
    assert "undefined source address: 'phone1'" in html
    assert f'class="bad" id="line-{line}"' in html and "not applied" in html
    ok = client.post("/config/check", data={"csrf_token": tok, "text": good}).get_data(as_text=True)
    assert "valid (2 policies" in ok
    assert CONFIG.read_text() == good                     # never written


def test_logout_ends_the_session(client):
    login(client)
    tok = token(client.get("/"))
    client.post("/logout", data={"csrf_token": tok})
    assert client.get("/").status_code == 302


NODE = '''node = "gw-a"
config = "gw.cfg"
journal = "j"
'''


def web_table(body: str) -> str:
    return NODE + "[web]\n" + body


def test_node_file_web_table_reads_users_and_paths():
    h = generate_password_hash("x" * 10)
    s = parse_node_file(web_table(f'''bind = "192.0.2.10:8443"
certificate = "web/cert.pem"
private_key = "web/key.pem"
nodes = ["/run/a.sock", "/run/b.sock"]
idle_timeout = "5m"
[web.users]
alice = {{ role = "admin", password = "{h}" }}
bob = {{ role = "read-only", password = "{h}" }}
'''), "/etc/gw/node.toml")
    w = s.web
    assert (w.host, w.port, w.certificate, w.idle_timeout) == ("192.0.2.10", 8443, "/etc/gw/web/cert.pem", 300.0)
    assert [(u.name, u.role) for u in w.users] == [("alice", "admin"), ("bob", "read-only")]
    assert w.nodes == ("/run/a.sock", "/run/b.sock")
    assert parse_node_file(NODE).web is None


@pytest.mark.parametrize("body,message", [
    ('bind = "0.0.0.0:8443"\ncertificate = "c"\nprivate_key = "k"\n[web.users]\na = { role = "admin", password = "scrypt:1:1:1$s$h" }\n',
     "management address only"),
    ('bind = "gateway:8443"\ncertificate = "c"\nprivate_key = "k"\n', "'gateway' is not an IPv4 or IPv6 address"),
    ('bind = "127.0.0.1:0"\ncertificate = "c"\nprivate_key = "k"\n', "not 1..65535"),
    ('bind = "[::]:8443"\ncertificate = "c"\nprivate_key = "k"\n', "management address only"),
    ('bind = "[127.0.0.1]:8443"\ncertificate = "c"\nprivate_key = "k"\n', "brackets are for IPv6"),
    ('bind = "127.0.0.1:8443"\nprivate_key = "k"\n', "needs 'certificate'"),
    ('bind = "127.0.0.1:8443"\ncertificate = "c"\nprivate_key = "k"\n', "at least one user"),
    ('bind = "127.0.0.1:8443"\ncertificate = "c"\nprivate_key = "k"\n[web.users]\na = { role = "root", password = "scrypt:1:1:1$s$h" }\n',
     "role 'root' is not one of admin, read-only"),
    ('bind = "127.0.0.1:8443"\ncertificate = "c"\nprivate_key = "k"\n[web.users]\na = { role = "admin", password = "hunter22" }\n',
     "never the password itself"),
    ('bind = "127.0.0.1:8443"\ncertificate = "c"\nprivate_key = "k"\nport = 1\n', "unknown key(s) in [web]: port"),
])
def test_node_file_web_table_errors_name_the_key(body, message):
    with pytest.raises(NodeFileError, match=re.escape(message)):
        parse_node_file(web_table(body), "node.toml")


def test_gwctl_web_passwd_makes_a_hash_the_node_file_takes(monkeypatch, capsys):
    import io
    from werkzeug.security import check_password_hash
    from ops.gwctl import main as gwctl
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert gwctl(["web", "passwd"]) == 0
    h = capsys.readouterr().out.strip()
    assert check_password_hash(h, "correct horse")
    s = parse_node_file(web_table(f'bind = "127.0.0.1:8443"\ncertificate = "c"\nprivate_key = "k"\n'
                                  f'[web.users]\na = {{ role = "admin", password = "{h}" }}\n'))
    assert s.web.users[0].password == h


from hypothesis import given, settings, strategies as st

_VALUES = st.one_of(st.text(max_size=30), st.integers(-5, 70000), st.booleans(),
                    st.lists(st.text(max_size=8), max_size=3),
                    st.sampled_from(["127.0.0.1:8443", "[::1]:8443", "0.0.0.0:1", "::", "15m", "0s",
                                     "scrypt:32768:8:1$a$b", "admin", "read-only"]))


def _toml(v) -> str:
    import json as _json
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_json.dumps(x) for x in v) + "]"
    return _json.dumps(v)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["bind", "certificate", "private_key", "nodes", "idle_timeout",
                                        "port", "users"]), _VALUES, max_size=6),
       st.dictionaries(st.text("abcxyz", min_size=1, max_size=4),
                       st.dictionaries(st.sampled_from(["role", "password", "pw"]), _VALUES, max_size=3),
                       max_size=3))
def test_node_file_web_table_parses_or_says_why(table, users):
    """Whatever the [web] table holds: settings, or a NodeFileError naming
    the file; never another exception."""
    body = "".join(f"{k} = {_toml(v)}\n" for k, v in table.items() if k != "users")
    if users and "users" not in table:
        body += "[web.users]\n" + "".join(
            f"{name} = {{ {', '.join(f'{k} = {_toml(v)}' for k, v in u.items())} }}\n"
            for name, u in users.items())
    try:
        s = parse_node_file(web_table(body), "node.toml")
    except NodeFileError as exc:
        assert str(exc).startswith("node.toml: ")
    else:
        assert s.web.users and all(u.role in ("admin", "read-only") for u in s.web.users)
        assert s.web.host not in ("0.0.0.0", "::")


def test_a_login_expires_after_the_idle_timeout(nodes):
    import dataclasses
    import time as _time
    web = dataclasses.replace(web_settings(), idle_timeout=1.0)
    app = create_app(web, Pair(list(nodes.roles), call=nodes), str(CONFIG))
    c = app.test_client()
    login(c)
    assert c.get("/config/zones").status_code == 200
    _time.sleep(2.2)                      # the signed cookie's timestamps count whole seconds
    r = c.get("/config/zones")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
