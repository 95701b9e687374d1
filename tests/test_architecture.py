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


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports, for every module under ``root``."""
    top = root.name
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    packages = {_module_name(p, root) for p in root.rglob("__init__.py")}
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
                if target.startswith(top) and target != name:
                    graph[name].add(target)
                    parent = target.rpartition(".")[0]  # importing a.b runs a/__init__ first
                    while parent.startswith(top):
                        if parent != name and not name.startswith(parent + "."):
                            graph[name].add(parent)
                        parent = parent.rpartition(".")[0]
    return graph


def test_graph_sees_the_tree():
    graph = import_graph()
    assert "lenshpc.cli" in graph and sum(map(len, graph.values())) > 100
    assert "lenshpc.config" in graph["lenshpc.train.loop"]


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (first module repeated at the end), or None."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        return list(reversed(err.args[1]))
    return None


def test_a_function_level_cycle_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    import pkg.c.name\n")
    (pkg / "c.py").write_text("def g():\n    from pkg import a\n")
    cycle = import_cycle(import_graph(pkg))
    assert cycle is not None and {"pkg.a", "pkg.sub.b", "pkg.c"} <= set(cycle) and cycle[0] == cycle[-1]


def test_no_import_cycle():
    cycle = import_cycle(import_graph())
    assert cycle is None, "import cycle in lenshpc/: " + " -> ".join(cycle or [])
