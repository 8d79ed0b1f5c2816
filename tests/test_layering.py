"""The import graph keeps the layering of ARCHITECTURE.md:

    ops/ -> actors/ -> journal/ -> gateway/

gateway/ imports no other package of the project (and none of the I/O libraries);
nothing imports ops/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "journal", "actors", "ops")
# What each package may import of the project.
ALLOWED = {
    "gateway": {"gateway"},
    "journal": {"journal", "gateway"},
    "actors": {"actors", "journal", "gateway"},
    "ops": {"ops", "actors", "journal", "gateway"},
}
# gateway/ is sans-I/O: no sockets, threads, clocks, actors, transports or codecs.
GATEWAY_FORBIDDEN = {"socket", "threading", "time", "pykka", "zmq", "msgpack",
                     "netfilterqueue", "asyncio", "subprocess", "selectors", "scapy"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, path


@pytest.mark.parametrize("pkg,path", list(_modules()), ids=lambda v: str(v))
def test_imports_point_down(pkg, path):
    bad = []
    for line, mod in _imports(path):
        top = mod.split(".")[0]
        if top in PACKAGES and top not in ALLOWED[pkg]:
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
        if pkg == "gateway" and top in GATEWAY_FORBIDDEN:
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} (gateway/ is sans-I/O)")
    assert not bad, "\n".join(bad)



def test_console_scripts_are_declared():
    """`.venv/bin/gatewayd` and `.venv/bin/gwctl` exist after set-up (README)."""
    import tomllib
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"gatewayd": "ops.gatewayd:main", "gwctl": "ops.gwctl:main"}
    import importlib
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
