"""The layers of docs/architecture.md, checked on the source: no import cycles in
src/locallama, lazy (function-level) imports included, and every import points down.

An edge A -> B for every ``import locallama.B`` / ``from locallama.B import x`` in A
(``x`` a submodule: an edge to ``B.x``); importing a package's ``__init__`` as a
parent of a submodule is not an edge.  A cycle works only while one of its imports
stays lazy, and it makes the layers in docs/architecture.md untrue.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "locallama").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph[node]):
            if nxt in on_path:
                return path[path.index(nxt):] + [nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "locallama.store.huggingface" in graph["locallama.store.sources"]  # in a function
    assert "locallama.cli.app" in graph["locallama.cli.run"]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _under(module: str, *layers: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


_ABOVE_RUNTIME = ["locallama.server", "locallama.api", "locallama.client", "locallama.cli",
                  "locallama.evals", "locallama.everyday", "locallama.cluster"]
#: (a layer, the layers it must never import, lazily or not)
LAYERS = [
    # the Runtime's vocabulary is the bottom: units only
    ("locallama.runtime.types", ["locallama.runtime.base", "locallama.runtime.local",
                                 "locallama.engine", "locallama.store", "locallama.gguf_info",
                                 "locallama.options", "locallama.settings", *_ABOVE_RUNTIME]),
    ("locallama.units", ["locallama.runtime", "locallama.engine", "locallama.store",
                         "locallama.gguf_info", *_ABOVE_RUNTIME]),
    # the header checks read metadata only: below gguf_info, which applies them
    ("locallama.gguf_check", ["locallama.gguf_info", "locallama.runtime", "locallama.engine",
                              "locallama.store", *_ABOVE_RUNTIME]),
    ("locallama.engine", ["locallama.runtime.base", "locallama.runtime.local",
                          "locallama.store", *_ABOVE_RUNTIME]),
    ("locallama.store", ["locallama.engine", "locallama.runtime.base",
                         "locallama.runtime.local", *_ABOVE_RUNTIME]),
    ("locallama.runtime", _ABOVE_RUNTIME),
    # wire formats are pure translations: no HTTP side, no engine
    ("locallama.api", ["locallama.server", "locallama.client", "locallama.cli",
                       "locallama.evals", "locallama.everyday", "locallama.runtime.local",
                       "locallama.engine"]),
    # the faces reach the engine only through a Runtime
    ("locallama.server", ["locallama.client", "locallama.cli", "locallama.evals",
                          "locallama.everyday", "locallama.engine", "locallama.cluster"]),
    ("locallama.client", ["locallama.server", "locallama.cli", "locallama.evals",
                          "locallama.everyday", "locallama.engine", "locallama.runtime.local"]),
    # serve --ray: the server's app over a ClusterRuntime; llama.cpp only in replicas'
    # LocalRuntimes
    ("locallama.cluster", ["locallama.cli", "locallama.client", "locallama.evals",
                           "locallama.everyday", "locallama.engine"]),
    # consumers of the Runtime, never of llama.cpp directly
    ("locallama.evals", ["locallama.cli", "locallama.server", "locallama.engine"]),
    ("locallama.everyday", ["locallama.cli", "locallama.server", "locallama.engine",
                            "locallama.evals", "locallama.runtime.local"]),
]


@pytest.mark.parametrize(("layer", "forbidden"), LAYERS, ids=[rule[0] for rule in LAYERS])
def test_imports_point_down(layer, forbidden):
    graph = import_graph()
    wrong = sorted(f"{module} imports {target}" for module, targets in graph.items()
                   if _under(module, layer) for target in targets if _under(target, *forbidden))
    assert not wrong, "\n".join(wrong)


def test_a_layer_rule_catches_an_upward_import():
    graph = {"locallama.engine.model": {"locallama.server.app"}}
    layer, forbidden = next(rule for rule in LAYERS if rule[0] == "locallama.engine")
    assert [t for m, ts in graph.items() if _under(m, layer) for t in ts
            if _under(t, *forbidden)] == ["locallama.server.app"]
