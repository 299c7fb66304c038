"""The layering of ``src/longrope``, read from the source: no import cycle, and the application layer
(``longrope.runs``) never reaches into the command line (``longrope.cli``); and the package stands alone:
it never imports the repository's packages beside it (``tools``, ``bench``, ``experiments``, ``tests``), which
are not installed.

The graph is built from the AST of every module, imports inside functions included (a lazy import
is still a dependency: it only moves the cost). An edge goes to the module named, or to a module
imported from a package (``from longrope.search import loop``); a package's ``__init__`` is a module
of its own, and the implicit import of a parent package by its children does not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "longrope"


def module_names(src: Path = SRC, package: str = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package __init__)}`` for every module under ``src/package``."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def _imported(node: ast.AST, here: str, is_package: bool, modules: dict) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:  # relative: from . import x / from ..a import b
        base = here.split(".") if is_package else here.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = set()
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.add(sub if sub in modules else target)
    return out


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` (self-imports left out)."""
    modules = module_names(src, package)
    graph = {}
    for name, (path, is_package) in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _imported(node, name, is_package, modules):
                # "import longrope.a.b" names the module; a name that is not a module (a function of
                # longrope.a) was mapped to its module by _imported
                if target in modules and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_the_graph_sees_lazy_imports():
    """The scanner must see what it checks: a known top-level and a known in-function import."""
    graph = import_graph()
    assert "longrope.errors" in graph["longrope.options"]  # top level
    assert "longrope.search.ray_evaluator" in graph["longrope.search.backends"]  # inside make_evaluator
    assert "longrope.options" in graph["longrope.runs.evaluate"]  # inside _lengths


def test_no_import_cycle_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (a factory that needs both sides belongs above them): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_runs_never_import_the_command_line():
    graph = import_graph()
    offending = {
        name: sorted(d for d in deps if d == f"{PACKAGE}.cli" or d.startswith(f"{PACKAGE}.cli."))
        for name, deps in graph.items()
        if name.startswith(f"{PACKAGE}.runs")
    }
    offending = {k: v for k, v in offending.items() if v}
    assert not offending, f"longrope.runs imports longrope.cli (move the shared piece below both): {offending}"


def test_cycles_and_relative_imports_are_found(tmp_path):
    """A planted cycle through a lazy, relative import is reported; a chain is not."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from pkg.c import something\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.d"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    (pkg / "c.py").write_text("")
    assert cycles(import_graph(tmp_path, "pkg")) == []


#: the repository's packages beside src/: a checkout has them, an installed longrope does not
BESIDE = ("tools", "bench", "experiments", "tests")


def imports_from_beside(src: Path = SRC, package: str = PACKAGE) -> list[str]:
    """``"module: imported name"`` for every absolute import of a package of :data:`BESIDE`."""
    found = []
    for name, (path, _) in module_names(src, package).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            else:
                continue
            found += [f"{name}: {t}" for t in targets if t.split(".")[0] in BESIDE]
    return found


def test_the_package_never_imports_the_repositorys_tools():
    found = imports_from_beside()
    assert not found, f"src/ imports what is not installed with it (move the piece into the package): {found}"


def test_an_import_of_the_tools_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg import tools\n")  # a module of its own named tools: fine
    (pkg / "tools.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from tools.train_tiny import run\n")
    (pkg / "b.py").write_text("import bench.report, os\n")
    assert imports_from_beside(tmp_path, "pkg") == ["pkg.a: tools.train_tiny", "pkg.b: bench.report"]
