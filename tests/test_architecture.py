"""The package's import graph keeps its shape (DESIGN.md): imports run downward through the
layers, and no module imports itself back through others. Read from the source with `ast`, lazy
imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import ananke

ROOT = Path(ananke.__file__).parent

# Lowest first. A module may import its own layer and the ones below, never one above.
LAYERS = [
    ("ground", {"ananke.errors", "ananke.threads", "ananke.compat", "ananke.types", "ananke.config",
                "ananke.outline"}),
    ("constraints", {"ananke.constraints", "ananke.prompting", "ananke.attempts", "ananke.grammars"}),
    ("engines", {"ananke.engines", "ananke.wire"}),
    ("backends", {"ananke.backends", "ananke.responses"}),
    ("server", {"ananke.server"}),
    ("front", {"ananke.client", "ananke.cli", "ananke.bench", "ananke", "ananke.__main__"}),
]  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = _module_name(path)
        targets = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ananke"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("ananke"))
    return graph


def _layer(module: str) -> int:
    best, depth = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "ananke" and module.startswith(prefix + "."))
            if matches and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def test_every_module_has_a_layer():
    for module in _imports():
        _layer(module)


def test_imports_run_downward_only():
    upward = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for module, targets in _imports().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert not upward, "\n".join(sorted(upward))


def test_engines_never_import_backends():
    offenders = [m for m, t in _imports().items() if m.startswith("ananke.engines") and any(
        x.startswith("ananke.backends") for x in t)]  # fmt: skip
    assert not offenders


def test_no_import_cycles():
    graph = _imports()
    modules = set(graph)

    def resolve(target: str) -> str | None:  # `from ananke.x import y`: y may be a module or a name
        return target if target in modules else None

    edges = {m: {r for t in ts if (r := resolve(t)) and r != m} for m, ts in graph.items()}
    # a package's __init__ re-exporting its own modules is not a cycle through the package
    for module in edges:
        edges[module] = {t for t in edges[module] if not module.startswith(t + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
