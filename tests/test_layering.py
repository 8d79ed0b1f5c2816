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


# -- gateway/'s own order ------------------------------------------------------------
# Each unit (a top-level module or a subpackage of gateway/) imports only units of
# a lower tier, or of its own tier listed before it. A new module is placed here
# on purpose (the test names any unit it does not know).
GATEWAY_TIERS = (
    # the vocabulary: errors, events and their wire form, text spans, packets, ports
    ("errors", "construct", "span", "event_wire", "event_payload", "event_steps", "events", "drops",
     "fold", "ports", "pinhole", "packet_layout", "packet_checksum", "packet_types", "packet_rewrite",
     "packet_build", "packet", "ha", "overload", "ladder_types", "ladder_filter", "ladder_protocols",
     "ladder_text", "ladder", "nodefile"),
    # configuration, addresses, policy and NAT
    ("config", "routing", "nat", "policy_rules", "policy_addresses", "policy", "shaping", "running_config"),
    # the protocols: SDP, the ALG contract, then each ALG on its own
    ("sdp", "alg_result", "alg_contract", "sip", "mgcp", "h323"),
    # the per-packet datapath, which hands signalling to the ALGs
    ("datapath",),
    # what composes them: what a new configuration no longer permits, the ALG
    # adapters and the domain state every node folds
    ("rematch", "alg_nat", "alg_replay", "algs", "domain"),
)
# The ALGs know nothing of one another: adding or changing one touches no other.
ALG_PACKAGES = {"sip", "mgcp", "h323"}


def _gateway_units() -> dict[str, Path]:
    units = {}
    for path in sorted((ROOT / "gateway").iterdir()):
        if path.suffix == ".py" and path.stem != "__init__":
            units[path.stem] = path
        elif path.is_dir() and (path / "__init__.py").exists():
            units[path.name] = path
    return units


def _gateway_module_imports(path: Path) -> list[tuple[int, str]]:
    """The gateway modules ``path`` imports (absolute and relative forms;
    ``from gateway.x import y`` names gateway.x.y when y is a module)."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    package = list(rel if path.name == "__init__.py" else rel[:-1])
    if path.name == "__init__.py":
        package = package[:-1]
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("gateway")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("gateway"):
                continue
            for a in node.names:
                sub = ROOT.joinpath(*mod.split("."), a.name)
                out.append((node.lineno, f"{mod}.{a.name}" if sub.with_suffix(".py").exists()
                            or (sub / "__init__.py").exists() else mod))
    return out


def _unit_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "gateway" else None


def test_every_gateway_unit_has_its_place_in_the_tiers():
    placed = [u for tier in GATEWAY_TIERS for u in tier]
    assert len(placed) == len(set(placed)), "a unit is placed twice"
    units = _gateway_units()
    assert sorted(set(units) - set(placed)) == [], "place these in GATEWAY_TIERS"
    assert sorted(set(placed) - set(units)) == [], "these units no longer exist"


def test_gateway_units_import_only_what_is_below_them():
    rank = {u: (t, i) for t, tier in enumerate(GATEWAY_TIERS) for i, u in enumerate(tier)}
    bad = []
    for unit, where in _gateway_units().items():
        files = [where] if where.is_file() else sorted(where.rglob("*.py"))
        for path in files:
            for line, mod in _gateway_module_imports(path):
                other = _unit_of(mod)
                if other is None or other == unit or other not in rank:
                    continue
                if unit in ALG_PACKAGES and other in ALG_PACKAGES:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}: one ALG imports another")
                elif rank[other] >= rank[unit]:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}: {other} is not below {unit} "
                               "(GATEWAY_TIERS)")
    assert not bad, "\n".join(bad)


def test_gateway_modules_import_no_cycle():
    """Within the units too (a package's modules among themselves): no module
    reaches itself through its imports, so each can be read bottom-up."""
    modules = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {name: {m for _l, m in _gateway_module_imports(path) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ re-exporting its modules is not a cycle by itself:
    # only a module importing its own package back (or a longer loop) is.
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)
