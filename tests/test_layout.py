"""The package's layout: subpackages by layer, imports only downwards, no import cycles.

Every import counts, at module level, inside functions and under ``TYPE_CHECKING``
alike: a lazy import still ties two modules together. The layers, bottom up, are
:data:`LAYERS`; a module may import its own subpackage (without a cycle) and any
lower layer, never a higher one or a sibling of its own layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE = Path(__file__).resolve().parents[1] / "swtpm_extcap"

#: bottom up; the root's vocabulary modules first, the command line last
LAYERS: tuple[tuple[str, ...], ...] = (
    ("swtpm_extcap", "errors", "names", "places"),  # the package face and shared vocabulary
    ("swtpmlog", "tpm"),  # the log format; TPM 2.0 numbers and structures (pure)
    ("pcr",),  # the PCR (and policy) replay and its reports (pure)
    ("pcapng",),  # parser events -> frames (with the replay's notes) -> pcapng (pure)
    ("remote",),  # SSH connection, [[remote]] settings, discovery on a host
    ("sources",),  # where log bytes come from: a local file, tail -F, an SSH host
    ("interfaces",),  # which logs are interfaces: settings file, local, demo, remote VMs
    ("extcap", "commands", "wireshark"),  # the edges: Wireshark's protocol, the commands, install
    ("cli",),
    ("__main__",),
)
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("swtpm_extcap", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (a package's face counts as a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                if f"{mod}.{alias.name}" in known:
                    out.add(f"{mod}.{alias.name}")
                elif mod in known:
                    out.add(mod)
    out.discard(name)
    return {m for m in out if not name.startswith(m + ".")}


def unit(module: str) -> str:
    """The layer unit of a module: its subpackage, or the root module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_every_module_belongs_to_a_declared_layer() -> None:
    unknown = sorted({unit(m) for m in GRAPH} - set(LAYER_OF))
    assert unknown == [], f"add {unknown} to LAYERS (tests/test_layout.py) where they belong"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_imports_point_only_downwards() -> None:
    """A module imports its own subpackage or a lower layer: never up, never sideways."""
    wrong = []
    for module, targets in sorted(GRAPH.items()):
        here = unit(module)
        for target in sorted(targets):
            there = unit(target)
            if there == here or LAYER_OF[there] < LAYER_OF[here]:
                continue
            wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_pure_core_imports_nothing_of_the_edges() -> None:
    """The parser, the framer and the replay open no file, socket or process: no
    module of theirs imports os, subprocess, socket, asyncio or threading."""
    edge_modules = {"subprocess", "socket", "asyncio", "threading", "select", "signal", "fcntl"}
    found = []
    for module, path in sorted(modules().items()):
        if unit(module) not in ("swtpmlog", "tpm", "pcapng", "pcr"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{module}: {n}" for n in names if n.split(".")[0] in edge_modules]
    assert found == []


def test_modules_stay_short() -> None:
    """~450 lines a module (one job each); the parser's hot loops may take more."""
    allowed = {"swtpm_extcap.swtpmlog.parser": 600}
    long = {m: n for m, p in modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > allowed.get(m, 460)}
    assert long == {}
