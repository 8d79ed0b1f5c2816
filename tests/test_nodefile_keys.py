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
