"""End to end: the web interface (`gwctl web`) against a lab pair, driven in
headless Chromium, and the ladder of a lab call (`gwctl call ladder` over
the control channel).

One lab (examples/ch2-incoming-call-with-mip.cfg, gatewayd pair), one SIPp
call held a few seconds with RTP. In the browser: log in; the call appears
on the live dashboard (server-sent events) and in the calls table; its
ladder page draws INVITE, 200 OK, ACK and BYE; a forced failover with its
confirmation swaps the roles on the dashboard; a read-only user is refused
the failover; a bad configuration edit shows its error at its line.
Screenshots are saved under the test's tmp_path (and, with
WEBUI_SCREENSHOT_DOCS=1, the dashboard's into docs/webui-dashboard.png).

Needs root, ip netns, nft, SIPp, openssl, chromium and chromium-driver;
skipped with the reason otherwise."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ops.lab import gateway_starter as gs
from ops.lab import sipp
from ops.lab.plan import suggest_call

import lab_requirements as lab
from test_e2e_calls import EXAMPLES, lab_of

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "ch2-incoming-call-with-mip"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ADMIN, ADMIN_PW = "alice", "alice-web-secret"
VIEWER, VIEWER_PW = "bob", "bob-web-secret"
HOLD_MS = 9000


def _selenium() -> str | None:
    try:
        import selenium  # noqa: F401
        import flask  # noqa: F401
        import cheroot  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[web,test]')"
    return None


WHY = lab.missing(lab.tools("nft", sipp.SIPP, "openssl", CHROMIUM, DRIVER), lab.netfilterqueue, _selenium)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _web_node_file(d: Path, config: Path, sockets: list[Path], port: int) -> Path:
    from werkzeug.security import generate_password_hash
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(d / "web.key"), "-out", str(d / "web.crt"), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    nodes = ", ".join(json.dumps(str(s)) for s in sockets)
    f = d / "web.toml"
    f.write_text(f'''node = "web"
config = {json.dumps(str(config))}
journal = {json.dumps(str(d / "unused-journal"))}
[web]
bind = "127.0.0.1:{port}"
certificate = "web.crt"
private_key = "web.key"
nodes = [{nodes}]
[web.users]
{ADMIN} = {{ role = "admin", password = "{generate_password_hash(ADMIN_PW)}" }}
{VIEWER} = {{ role = "read-only", password = "{generate_password_hash(VIEWER_PW)}" }}
''')
    return f


class Web:
    """`gwctl web` as a subprocess, and a headless Chromium on it."""

    def __init__(self, node_file: Path, port: int, shots: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        self.base = f"https://127.0.0.1:{port}"
        self.shots = shots
        self.log = open(shots / "gwctl-web.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "ops.gwctl", "web", str(node_file)],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None, (shots / "gwctl-web.log").read_text()
                assert time.monotonic() < deadline, "gwctl web did not start listening"
                time.sleep(0.1)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--ignore-certificate-errors", "--window-size=1400,1000"):
            opts.add_argument(a)
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
        self.driver.set_page_load_timeout(30)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.log.close()

    def go(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def wait(self, pred, timeout: float = 20.0, what: str = ""):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(lambda d: pred(), what)

    def shot(self, name: str) -> Path:
        p = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(p))
        return p

    def login(self, user: str, pw: str) -> None:
        self.go("/login")
        self.find("#username").send_keys(user)
        self.find("#password").send_keys(pw)
        self.find("#login").click()
        self.wait(lambda: self.driver.title.startswith("Dashboard"), what="dashboard after login")

    def logout(self) -> None:
        self.find("header form.who button").click()
        self.wait(lambda: self.driver.title.startswith("Log in"), what="login page after logout")


def _roles(web: Web) -> dict[str, str]:
    from selenium.webdriver.common.by import By
    out = {}
    for el in web.driver.find_elements(By.CSS_SELECTOR, ".node"):
        names = el.find_elements(By.CSS_SELECTOR, ".node-name")
        if names:
            out[names[0].text] = el.find_element(By.CSS_SELECTOR, ".role").text
    return out


@pytest.fixture
def pair(tmp_path):
    if WHY:
        pytest.skip(f"web end-to-end unavailable: {WHY}")
    with lab_of(tmp_path, "w") as make:
        yield make(EXAMPLES / f"{EXAMPLE}.cfg")


def test_web_interface_on_a_lab_pair(pair, tmp_path) -> None:
    cfg, plan, state = pair
    paths = gs.node_paths(state, plan)
    sockets = [paths[r].socket for r in sorted(paths)]
    port = _free_port()
    web = Web(_web_node_file(tmp_path, EXAMPLES / f"{EXAMPLE}.cfg", sockets, port), port, tmp_path)
    call = suggest_call(plan, cfg)
    result: dict = {}
    placing = threading.Thread(target=lambda: result.update(r=sipp.run_calls(
        call.caller, call.callee, dial=call.dial, calls=1, rate=1, duration_ms=HOLD_MS,
        workdir=tmp_path)), daemon=True)
    try:
        web.login(ADMIN, ADMIN_PW)
        assert set(_roles(web).values()) == {"active", "standby"}
        before = _roles(web)
        placing.start()
        # the call on the live dashboard (no reload: server-sent events)
        web.wait(lambda: web.text('#per-alg tr[data-alg="sip"] .calls') == "1", what="SIP call on the dashboard")
        web.shot("dashboard-call")
        if os.environ.get("WEBUI_SCREENSHOT_DOCS") == "1":
            shutil.copy(tmp_path / "dashboard-call.png", ROOT / "docs" / "webui-dashboard.png")
        # ... and in the calls table
        web.go("/calls")
        rows = web.driver.find_elements("css selector", "#sip-calls tr td a")
        assert len(rows) == 1, web.text("#sip-calls")
        call_id = rows[0].text
        web.shot("calls")
        placing.join(HOLD_MS / 1000 + 30)
        r = result["r"]
        assert r.calls_completed == 1 and r.calls_failed == 0, r
        # the ladder of the call, from the active node's journal
        web.go("/calls")
        links = [a for a in web.driver.find_elements("css selector", "#history a") if a.text == call_id]
        assert links, web.text("#history")
        links[0].click()
        web.wait(lambda: web.driver.title.startswith("Call"), what="call page")
        steps = web.text("#steps")
        for label in ("INVITE (CSeq 1)", "200 OK (INVITE)", "ACK", "BYE", "pinhole open media",
                      "pinhole closed"):
            assert label in steps, (label, steps)
        assert web.find("#ladder svg").is_displayed()
        web.shot("ladder")
        # the same ladder on the command line, over the control channel
        active = next(p.socket for p in paths.values() if gs.try_status(p.socket)["role"] == "active")
        out = subprocess.run([sys.executable, "-m", "ops.gwctl", "call", "ladder", "--node", str(active),
                              call_id, "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        lad = json.loads(out.stdout)
        msgs = [s["label"] for s in lad["steps"] if s["kind"] == "message"]
        assert msgs[0] == "INVITE (CSeq 1)" and "200 OK (INVITE)" in msgs and any(m.startswith("BYE") for m in msgs)
        assert any(s["before"] != s["after"] for s in lad["steps"] if s["kind"] == "message"), lad
        # a read-only user is refused a failover
        web.logout()
        web.login(VIEWER, VIEWER_PW)
        web.go("/ops")
        web.find("#failover-confirm").click()
        web.driver.execute_script("document.getElementById('failover-form').submit()")
        web.wait(lambda: web.driver.title.startswith("Error"), what="refusal page")
        assert "read-only" in web.text("#error")
        web.shot("read-only-refused")
        web.go("/")
        assert _roles(web) == before
        # the administrator fails over, with the confirmation; the roles swap
        web.logout()
        web.login(ADMIN, ADMIN_PW)
        web.go("/ops")
        web.find("#failover-confirm").click()
        web.find("#failover").click()
        web.wait(lambda: _alert_accepted(web), what="confirmation dialog")
        web.wait(lambda: "failover done" in web.driver.page_source, what="failover done")
        web.go("/")
        swapped = {n: {"active": "standby", "standby": "active"}[r] for n, r in before.items()}
        web.wait(lambda: _roles(web) == swapped, timeout=30, what="roles swapped on the dashboard")
        web.shot("after-failover")
        web.go("/ops")
        assert "alice (admin)" in web.text("#audit") and "failover" in web.text("#audit")
        # a bad configuration edit: the error at its line, nothing applied
        web.go("/config/edit")
        text = (EXAMPLES / f"{EXAMPLE}.cfg").read_text()
        lines = text.splitlines()
        n = next(i for i, line in enumerate(lines, 1) if line.startswith("set policy"))
        lines[n - 1] = lines[n - 1].replace("permit", "permitt")
        box = web.find("#config-text")
        box.clear()
        web.driver.execute_script("arguments[0].value = arguments[1]", box, "\n".join(lines) + "\n")
        web.find("#check").click()
        web.wait(lambda: web.driver.title.startswith("Check"), what="check result")
        errors = web.text("#check-errors")
        assert f"line {n}," in errors and "permitt" in errors, errors
        assert "not applied" in web.text("#not-applied")
        assert web.find(f"#line-{n}").get_attribute("class") == "bad"
        web.shot("config-error")
    finally:
        web.close()
        if placing.is_alive():
            placing.join(HOLD_MS / 1000 + 30)


def _alert_accepted(web: Web) -> bool:
    from selenium.common.exceptions import NoAlertPresentException
    try:
        web.driver.switch_to.alert.accept()
        return True
    except NoAlertPresentException:
        return False
