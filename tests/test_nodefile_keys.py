import os

import pytest

from gateway.nodefile import NodeFileError, parse_node_file
from ops.gwctl import main as gwctl

GOOD = """
node = "gw-a"
config = "gw.cfg"
journal = "j/a"
queue = 3
[interfaces]
ethernet1 = "eth1"
[ha]
bind = "tcp://127.0.0.1:7800"
peer = "tcp://127.0.0.1:7801"
key = "keys/gw-a.key_secret"
peer_key = "keys/gw-b.key"
"""


def test_node_file_paths_are_relative_to_it(tmp_path):
    s = parse_node_file(GOOD, str(tmp_path / "node.toml"))
    assert s.node == "gw-a" and s.queue == 3 and s.interfaces == {"ethernet1": "eth1"}
    assert s.journal == str(tmp_path / "j" / "a")
    assert s.ha.key == str(tmp_path / "keys" / "gw-a.key_secret") and s.ha.curve


@pytest.mark.parametrize("text,needle", [
    ("node = 1", "'node' is required"),
    (GOOD.replace('queue = 3', 'queue = 70000'), "NFQUEUE number"),
    ('colour = "red"\n' + GOOD, "unknown key(s) colour"),
    (GOOD.replace('key = "keys/gw-a.key_secret"\n', ''), "needs 'key' and 'peer_key'"),
    (GOOD.replace('tcp://127.0.0.1:7801', '127.0.0.1'), "ZeroMQ endpoint"),
    ("node = [", "not valid TOML"),
])
def test_node_file_errors_say_what_and_where(text, needle):
    with pytest.raises(NodeFileError) as e:
        parse_node_file(text, "/etc/n.toml")
    assert needle in str(e.value) and "/etc/n.toml" in str(e.value)


def test_gwctl_keys_creates_pair_and_refuses_overwrite(tmp_path, capsys):
    assert gwctl(["keys", str(tmp_path), "--name", "gw-a"]) == 0
    assert (tmp_path / "gw-a.key").exists()
    assert os.stat(tmp_path / "gw-a.key_secret").st_mode & 0o777 == 0o600
    assert gwctl(["keys", str(tmp_path), "--name", "gw-a"]) == 1
    assert gwctl(["keys", str(tmp_path), "--name", "gw-a", "--force"]) == 0


def test_node_file_control_group_must_be_a_name():
    with pytest.raises(NodeFileError) as e:
        parse_node_file(GOOD.replace("queue = 3", "queue = 3\ncontrol_group = 5"), "/etc/n.toml")
    assert "control_group" in str(e.value)


def test_gwctl_keys_never_writes_the_secret_readable_by_others(tmp_path, monkeypatch):
    # The secret key must not exist with a wider mode, even for a moment.
    import zmq.auth
    real = zmq.auth.create_certificates
    seen = []

    def spy(*a, **kw):
        pub, sec = real(*a, **kw)
        seen.append(os.stat(sec).st_mode & 0o777)
        return pub, sec
    monkeypatch.setattr(zmq.auth, "create_certificates", spy)
    assert gwctl(["keys", str(tmp_path), "--name", "gw-a"]) == 0
    assert seen and seen[0] & 0o077 == 0


def test_gwctl_keys_unwritable_dir_is_a_message(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert gwctl(["keys", str(tmp_path / "file" / "keys"), "--name", "gw-a"]) == 1
    err = capsys.readouterr().err
    assert "gwctl keys:" in err and "Traceback" not in err


def test_metrics_endpoint_is_off_unless_set(tmp_path):
    assert parse_node_file(GOOD, str(tmp_path / "n.toml")).metrics is None
    s = parse_node_file(GOOD + '[metrics]\nlisten = "127.0.0.1:9478"\n', str(tmp_path / "n.toml"))
    assert (s.metrics.host, s.metrics.port) == ("127.0.0.1", 9478)
    s = parse_node_file(GOOD + '[metrics]\nlisten = "[::1]:9100"\n', str(tmp_path / "n.toml"))
    assert (s.metrics.host, s.metrics.port) == ("::1", 9100)


@pytest.mark.parametrize("value,needle", [
    ('"localhost:9478"', "'localhost' is not an IPv4 or IPv6 address"),
    ('"127.0.0.1:0"', "port 0 is not 1..65535"),
    ('"127.0.0.1:99999"', "port 99999 is not 1..65535"),
    ('"127.0.0.1"', "want ADDRESS:PORT"),
    ('"::1:9478"', "want ADDRESS:PORT"),
    ('"[127.0.0.1]:9478"', "brackets are for IPv6"),
    ('9478', "want a string"),
])
def test_metrics_listen_errors_name_file_line_and_value(value, needle):
    text = GOOD + f"[metrics]\n# where Prometheus scrapes\nlisten = {value}\n"
    line = text.splitlines().index(f"listen = {value}") + 1
    with pytest.raises(NodeFileError) as e:
        parse_node_file(text, "/etc/n.toml")
    msg = str(e.value)
    assert msg.startswith(f"/etc/n.toml:{line}: [metrics] listen = ") and needle in msg
    assert "e.g. \"127.0.0.1:9478\"" in msg


def test_metrics_unknown_key_is_named():
    with pytest.raises(NodeFileError) as e:
        parse_node_file(GOOD + '[metrics]\nport = 9478\n', "/etc/n.toml")
    assert "unknown key(s) in [metrics]: port" in str(e.value)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.integers(), st.none(), st.lists(st.integers(), max_size=3)))
def test_metrics_listen_parses_or_says_why(value):
    from gateway.nodefile import parse_listen
    try:
        m = parse_listen(value)
    except ValueError as exc:
        assert str(exc)
        return
    assert 1 <= m.port <= 65535 and parse_listen(f"[{m.host}]:{m.port}" if ":" in m.host
                                                  else f"{m.host}:{m.port}") == m
