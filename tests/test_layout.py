"""The code's shape: no import cycle among the project's modules (imports inside functions count),
and no module over 400 lines unless it says why at its top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("interplay", "agents", "environments")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(import_graph(modules())) == []


def test_no_long_module_without_a_reason():
    long = []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_LINES and "Why this module is long" not in text[:3000]:
            long.append(f"{name}: {len(text.splitlines())} lines")
    assert long == []


BACKEND_NAMES = {"transformers", "vllm", "openai"}


def backend_name_comparisons(source: str) -> list[int]:
    """Lines comparing something to a built-in backend's name (``== "vllm"``, ``in {"openai", ...}``):
    behaviour must come from ``BackendCapabilities``, not from names."""
    def names(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in BACKEND_NAMES
        if isinstance(node, (ast.Set, ast.List, ast.Tuple)):
            return any(names(e) for e in node.elts)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("frozenset", "set", "tuple"):
            return any(names(a) for a in node.args)
        return False

    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Compare) and any(names(n) for n in [node.left, *node.comparators])]


def test_the_name_check_finds_comparisons():
    src = 'a = b == "vllm"\nc = x in {"transformers", "openai"}\nd = y in frozenset({"openai"})\ne = f(backend="vllm")\n'
    assert backend_name_comparisons(src) == [1, 2, 3]


def test_no_backend_name_comparison_outside_the_backends():
    found = [f"{name}:{line}" for name, path in modules().items() if not name.startswith("interplay.backends")
             for line in backend_name_comparisons(path.read_text())]
    assert found == []
