"""The package's import graph has no cycle (docs/architecture.md: data flows one way).

Every module under ``lenshpc/`` is parsed with :mod:`ast` (nothing is imported, so the test is fast and does not
need TensorFlow); an edge ``a -> b`` is any ``import lenshpc.b`` / ``from lenshpc.b import x`` in ``a``, at module
level or inside a function. ``from lenshpc.pkg import name`` where ``name`` is a submodule counts as an import of
that submodule, and importing ``lenshpc.pkg.mod`` runs ``lenshpc/pkg/__init__.py`` first, so it is an edge to the
package too.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "lenshpc"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the lenshpc modules it imports, for every module under ``lenshpc/``."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    packages = {_module_name(p) for p in ROOT.rglob("__init__.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if name in packages else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                while target and target not in files:  # `import lenshpc.a.b.attr` → the module part
                    target = target.rpartition(".")[0]
                if target.startswith("lenshpc") and target != name:
                    graph[name].add(target)
                    parent = target.rpartition(".")[0]  # importing a.b runs a/__init__ first
                    while parent.startswith("lenshpc"):
                        if parent != name and not name.startswith(parent + "."):
                            graph[name].add(parent)
                        parent = parent.rpartition(".")[0]
    return graph


def test_graph_sees_the_tree():
    graph = import_graph()
    assert "lenshpc.cli" in graph and sum(map(len, graph.values())) > 100
    assert "lenshpc.config" in graph["lenshpc.train.loop"]


def test_no_import_cycle():
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as err:
        raise AssertionError("import cycle in lenshpc/: " + " -> ".join(reversed(err.args[1]))) from None
