"""The house rules of docs/architecture.md, checked on the source: no cross-package private imports, no
import circles at import time."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"tools": "sepsis_sdk.tools", "graphs": "sepsis_sdk.graphs", "training": "sepsis_sdk.training",
          "microbench": "sepsis_sdk.microbench"}  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for folder in ("sepsis_sdk", *MAPPED):
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[0] in MAPPED:
                parts = MAPPED[parts[0]].split(".") + parts[1:]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(tree: ast.AST, *, top_level_only: bool) -> list[str]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))  # type: ignore[attr-defined]
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out.extend(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return [m for m in out if m.startswith("sepsis_sdk")]


def test_no_module_imports_another_packages_private_module():
    bad = []
    modules = _modules()
    for me, path in modules.items():
        for mod in _imports(ast.parse(path.read_text()), top_level_only=False):
            segs = mod.split(".")
            first = next(
                (i for i, s in enumerate(segs) if s.startswith("_") and not s.startswith("__")), None
            )
            if first is None or (first == len(segs) - 1 and not mod.endswith(segs[-1])):
                continue
            owner = ".".join(segs[:first])
            if owner in modules and modules[owner].name != "__init__.py":  # a private name of a module:
                owner = owner.rpartition(".")[0]  # its package may use it
            if owner and not (me == owner or me.startswith(owner + ".")) and owner != "sepsis_sdk":
                bad.append(f"{me} imports {mod}")
    assert sorted(set(bad)) == []


def test_no_import_circles_at_import_time():
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for me, path in mods.items():
        deps = set()
        for mod in _imports(ast.parse(path.read_text()), top_level_only=True):
            while mod and mod not in mods:  # "pkg.mod.Name" -> "pkg.mod"
                mod = mod.rpartition(".")[0]
            if mod and mod != me and not me.startswith(mod + "."):  # a package's own __init__ is loaded first
                deps.add(mod)
        graph[me] = deps
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    # package __init__ files that re-export their own submodules form no real circle: filter those
    real = [
        c
        for c in circles
        if not all(any(o.startswith(m + ".") or m.startswith(o + ".") for o in c if o != m) for m in c)
    ]
    assert real == []
