"""actors/nft_lib.py: nft commands through libnftables in this process,
answered as ``subprocess.run`` answers them; other commands still run as
processes; the real library in a namespace of its own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from actors.nft_lib import NftLib

ROOT = Path(__file__).resolve().parents[1]


class FakeLib:
    """The library's C functions as NftLib calls them: what each context ran."""

    def __init__(self) -> None:
        self.ran: list[tuple[int, bytes]] = []
        self.flags: dict[int, int] = {}
        self.next = 100
        self.fail = False

    def nft_ctx_new(self, flags):
        self.next += 1
        return self.next

    def nft_ctx_output_set_flags(self, ctx, flags):
        self.flags[ctx] = flags

    def nft_ctx_buffer_output(self, ctx):
        pass

    nft_ctx_buffer_error = nft_ctx_buffer_output

    def nft_run_cmd_from_buffer(self, ctx, text):
        self.ran.append((ctx, text))
        return -1 if self.fail else 0

    def nft_ctx_get_output_buffer(self, ctx):
        return b'{"nftables": []}' if self.flags.get(ctx) else b"table inet t {}"

    def nft_ctx_get_error_buffer(self, ctx):
        return b"Error: No such file or directory" if self.fail else b""


def test_nft_commands_run_in_the_library_and_answer_as_a_process_would():
    lib = FakeLib()
    nft = NftLib(lib)
    r = nft.run(["nft", "-f", "-"], input="add element inet t flows { 1 }\n", capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "table inet t {}", "")
    assert lib.ran[-1][1] == b"add element inet t flows { 1 }\n"
    text_ctx = lib.ran[-1][0]
    r = nft.run(["nft", "-j", "list", "map", "inet", "t", "flows"], capture_output=True, text=True)
    assert json.loads(r.stdout) == {"nftables": []} and lib.ran[-1] == (lib.ran[-1][0], b"list map inet t flows")
    assert lib.ran[-1][0] != text_ctx and lib.flags[lib.ran[-1][0]] == 1 << 4    # the JSON context
    nft.run(["nft", "delete", "table", "inet", "t"])
    assert lib.ran[-1][1] == b"delete table inet t"
    lib.fail = True
    r = nft.run(["nft", "-f", "-"], input="delete element inet t flows { 9 }\n")
    assert r.returncode == 1 and "No such file" in r.stderr
    assert nft.commands == 4


def test_other_commands_and_flags_run_as_processes(monkeypatch):
    lib = FakeLib()
    nft = NftLib(lib)
    spawned = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: spawned.append(args) or
                        subprocess.CompletedProcess(args, 0, "", ""))
    nft.run(["iptables", "-t", "raw", "-S"])
    nft.run(["nft", "-c", "-f", "-"], input="x")
    nft.run(["nft", "-f", "/etc/nftables.conf"])
    assert spawned == [["iptables", "-t", "raw", "-S"], ["nft", "-c", "-f", "-"],
                       ["nft", "-f", "/etc/nftables.conf"]] and lib.ran == []


_IN_NAMESPACE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from actors.nft_lib import runner
run = runner()
assert run.__self__.__class__.__name__ == "NftLib", run
ok = run(["nft", "-f", "-"], input="table inet voipgw_t {\n  map flows { type ipv4_addr : mark; }\n}\n",
         capture_output=True, text=True)
add = run(["nft", "-f", "-"], input="add element inet voipgw_t flows { 10.1.1.3 : 7 }\n",
          capture_output=True, text=True)
listing = run(["nft", "-j", "list", "map", "inet", "voipgw_t", "flows"], capture_output=True, text=True)
bad = run(["nft", "-f", "-"], input="delete element inet voipgw_t flows { 9.9.9.9 }\n",
          capture_output=True, text=True)
gone = run(["nft", "delete", "table", "inet", "voipgw_t"], capture_output=True, text=True)
print(json.dumps([ok.returncode, add.returncode, json.loads(listing.stdout), bad.returncode, bad.stderr,
                  gone.returncode]))
"""


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs ip (network namespaces)")
def test_the_library_changes_and_lists_a_real_table(tmp_path):
    ns = f"voipgw-nftlib-{tmp_path.name[-8:]}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        pytest.skip("no network namespaces here")
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _IN_NAMESPACE, str(ROOT)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        ok, add, listing, bad, bad_err, gone = json.loads(r.stdout)
        assert (ok, add, bad, gone) == (0, 0, 1, 0)
        (m,) = [x["map"] for x in listing["nftables"] if "map" in x]
        assert m["elem"] == [["10.1.1.3", 7]]
        assert "No such file or directory" in bad_err
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
