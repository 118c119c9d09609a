"""The import graph of ``src/visor`` points one way, and every module imports alone.

(a) An import graph read from the source (AST): module-level and function-level imports, absolute and
relative, ``from visor.a import b`` read as ``visor.a.b`` when ``b`` is a submodule, the package
``__init__`` that importing a submodule runs, and string registries (a constant naming a visor module,
as ``import_module`` and lazy registries use). The graph has no cycles, and each module imports only
its own layer or lower (``LAYERS``).

(b) Each module imported alone in a fresh interpreter: this catches import-order crashes that a test
session, where everything is imported already, hides.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "visor"

# The layers, lowest first: a module may import its own layer or a lower one. A module belongs to the
# longest prefix listed; ``visor`` is the top-level package alone (its ``__init__``, the public face), above
# all, so that a new top-level module has no layer until it is given one here.
LAYERS: list[tuple[str, ...]] = [
    ("visor.errors", "visor.config", "visor.version", "visor.io", "visor.types", "visor.ops"),
    ("visor.models",),
    ("visor.data", "visor.features", "visor.faces"),
    ("visor.train", "visor.evaluate", "visor.retrieval", "visor.monitor", "visor.annotator", "visor.api",
     "visor.video"),
    ("visor.serve", "visor.batch", "visor.cli", "visor.benchmark"),
    ("visor", "visor.__main__"),
]

# String references allowed against the layer order, each with its reason: (importer, imported part, reason).
# Only a lazy registry naming where a class lives belongs here, never an import statement.
_TASK_TABLE = ("the task table names each task's predictor and result type as a 'module:attribute' string, "
               "imported only when that task is used; it sits in models so that visor.load reads it")
ALLOWED_UPWARD: list[tuple[str, str, str]] = [
    ("visor.models.tasks", "visor.features", _TASK_TABLE),
    ("visor.models.tasks", "visor.faces", _TASK_TABLE),
    ("visor.models.tasks", "visor.retrieval", _TASK_TABLE),
]

# Modules not imported by (b), each with its reason; they are checked another way.
NOT_IMPORTED_ALONE = {
    "visor.__main__": "importing it runs the command line; `python -m visor --help` is run instead",
}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    where: str  # file:line
    how: str  # "import", "function import", "package __init__", "string"

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported}  ({self.where}, {self.how})"


def discover(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    modules = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve_from(module: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str | None:
    if not node.level:
        return node.module
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The visor module that ``name`` (a module, or a module's attribute) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _is_docstring(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    if not isinstance(parent, ast.Expr):
        return False
    holder = parents.get(parent)
    body = getattr(holder, "body", None)
    return isinstance(body, list) and bool(body) and body[0] is parent


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return True
    return False


def _direct_edges(module: str, modules: dict[str, Path], src: Path) -> Iterator[Edge]:
    path = modules[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    rel = path.relative_to(src.parent).as_posix()
    for node in ast.walk(tree):
        targets: list[str] = []
        how = "function import" if _in_function(node, parents) else "import"
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(module, node, modules)
            if base is None:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and not _is_docstring(node, parents)):
            name = node.value.split(":")[0]
            # a module naming its own package (a logger, a resource folder) or "visor" (the program) is no import
            if name in modules and not module.startswith(name + ".") and name != module:
                targets, how = [name], "string"
        for target in targets:
            owner = _owner(target, modules) if target.split(".")[0] == PACKAGE else None
            if owner is not None and owner != module:
                yield Edge(module, owner, f"{rel}:{node.lineno}", how)


@functools.cache
def import_graph(src: Path = SRC) -> tuple[Edge, ...]:
    """The edges, with the package ``__init__`` each import runs (outside the importer's own packages)."""
    modules = discover(src)
    edges = []
    for module in modules:
        own = {module.rsplit(".", i)[0] for i in range(module.count(".") + 1)}
        for edge in _direct_edges(module, modules, src):
            edges.append(edge)
            parent = edge.imported.rpartition(".")[0]
            while parent and parent not in own:
                how = f"{'string, ' if edge.how == 'string' else ''}package __init__ of {edge.imported}"
                edges.append(Edge(module, parent, edge.where, how))
                parent = parent.rpartition(".")[0]
    return tuple(edges)


def find_cycles(edges: Iterable[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges) per strongly connected component of more than one module (Tarjan)."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.importer, {}).setdefault(e.imported, e)
        graph.setdefault(e.imported, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # iterative, so deep graphs do not hit the recursion limit
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.add(w)
                        if w == node:
                            break
                    if len(component) > 1:
                        components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for component in components:  # short cycles that, together, pass along every edge of the component
        inside = {v: {w: e for w, e in graph[v].items() if w in component} for v in sorted(component)}
        covered: set[tuple[str, str]] = set()
        for v in inside:
            for w, e in inside[v].items():
                if (v, w) in covered:
                    continue
                path = [e, *_shortest_path(inside, w, v)]
                covered.update((p.importer, p.imported) for p in path)
                cycles.append(path)
    return cycles


def _shortest_path(graph: dict[str, dict[str, Edge]], start: str, end: str) -> list[Edge]:
    """The edges of a shortest path from start to end (breadth first); [] when start is end."""
    came: dict[str, Edge] = {}
    frontier, seen = [start], {start}
    while frontier and end not in seen:
        nxt = []
        for v in frontier:
            for w, e in graph[v].items():
                if w not in seen:
                    seen.add(w)
                    came[w] = e
                    nxt.append(w)
        frontier = nxt
    path, v = [], end
    while v != start:
        path.append(came[v])
        v = came[v].importer
    return path[::-1]


def part_of(module: str) -> tuple[str, int]:
    """The entry of ``LAYERS`` that ``module`` belongs to (the longest prefix) and its layer; ("", -1) if none."""
    best, layer = "", -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (module.startswith(prefix + ".") and prefix != PACKAGE)
            if inside and len(prefix) > len(best):
                best, layer = prefix, i
    return best, layer


def layer_of(module: str) -> int:
    return part_of(module)[1]


def _allowed(e: Edge) -> bool:
    return e.how.startswith("string") and any(
        e.importer == importer and (e.imported == part or e.imported.startswith(part + "."))
        for importer, part, _ in ALLOWED_UPWARD)


def upward_edges(edges: Iterable[Edge]) -> list[Edge]:
    return [e for e in edges if layer_of(e.imported) > layer_of(e.importer) and not _allowed(e)]


# --- (a) the graph ---------------------------------------------------------------------------------


def test_the_graph_of_a_known_module():
    """A COCO reader depends on the detection data model, never the other way round."""
    edges = import_graph()
    assert {e.imported for e in edges if e.importer == "visor.data.formats.coco"} == {
        "visor.data.dataset", "visor.data.detection", "visor.errors"}
    from_model = {e.imported for e in edges if e.importer == "visor.data.detection"}
    assert from_model == {"visor.config", "visor.data.dataset", "visor.errors", "visor.types"}


def test_the_reader_on_a_small_package(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from visor import b\n")
    (pkg / "b.py").write_text("X = 1\n")
    (pkg / "a" / "__init__.py").write_text('"""visor.b is named in a docstring only."""\n')
    (pkg / "a" / "x.py").write_text(
        "from . import y\nfrom .y import Y\nfrom .. import b\n\n"
        "def f():\n    import visor.d\n    return 'visor.b:X'\n")
    (pkg / "a" / "y.py").write_text("from visor.a import x\nY = 2\n")
    (pkg / "c.py").write_text("from visor.a.y import Y\n")
    (pkg / "d.py").write_text("")
    edges = import_graph(tmp_path)
    got = {(e.importer, e.imported, e.how) for e in edges}
    assert got == {
        ("visor", "visor.b", "import"),
        ("visor.a.x", "visor.a.y", "import"),
        ("visor.a.x", "visor.b", "import"),
        ("visor.a.x", "visor.d", "function import"),
        ("visor.a.x", "visor.b", "string"),
        ("visor.a.y", "visor.a.x", "import"),
        ("visor.c", "visor.a.y", "import"),
        ("visor.c", "visor.a", "package __init__ of visor.a.y"),
    }
    cycles = find_cycles(edges)
    assert [[(e.importer, e.imported) for e in c] for c in cycles] == [
        [("visor.a.x", "visor.a.y"), ("visor.a.y", "visor.a.x")]]


def _checked_graph() -> list[Edge]:
    """The graph less the allowed string references (a lazy table naming classes above it, see ALLOWED_UPWARD)."""
    return [e for e in import_graph() if not _allowed(e)]


def test_no_import_cycles():
    cycles = find_cycles(_checked_graph())
    text = "\n\n".join("cycle:\n  " + "\n  ".join(str(e) for e in c) for c in cycles)
    if cycles:
        pytest.fail(f"{len(cycles)} import cycle(s):\n{text}", pytrace=False)


def test_no_cycles_between_parts():
    """Parts (the entries of ``LAYERS``: ``visor.data``, ``visor.models``, ...) do not lean on each other both ways,
    even where no two modules do (``evaluate.classifier -> monitor.collect -> evaluate.calibration``)."""
    edges = [Edge(part_of(e.importer)[0], part_of(e.imported)[0], e.where, f"{e.importer} -> {e.imported}, {e.how}")
             for e in _checked_graph() if part_of(e.importer)[0] != part_of(e.imported)[0]]
    cycles = find_cycles(edges)
    text = "\n\n".join("cycle:\n  " + "\n  ".join(str(e) for e in c) for c in cycles)
    if cycles:
        pytest.fail(f"{len(cycles)} cycle(s) between parts:\n{text}", pytrace=False)


def test_imports_follow_the_layers():
    bad = upward_edges(import_graph())
    names = [", ".join(p) for p in LAYERS]
    text = "\n  ".join(f"{e}  [layer {layer_of(e.importer)} imports layer {layer_of(e.imported)}]" for e in bad)
    if bad:
        pytest.fail(f"{len(bad)} import(s) against the layers ({' <- '.join(names)}):\n  {text}", pytrace=False)


def test_every_module_has_a_layer():
    assert [m for m in discover() if layer_of(m) < 0] == []


def test_no_library_module_imports_the_top_level_package():
    bad = [e for e in import_graph() if e.imported == PACKAGE and e.how != "string" and e.importer != "visor.__main__"]
    if bad:
        pytest.fail("import the module that defines the name, not `visor`:\n  " + "\n  ".join(map(str, bad)),
                    pytrace=False)


# --- (b) each module alone, in a fresh interpreter ---------------------------------------------------


def _import_alone(module: str, path: Path | None = None) -> tuple[str, int, str]:
    """``(module, exit code, the end of stderr)`` of ``python -c "import module"`` (``path`` first on sys.path)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    try:
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                              timeout=300, env=env)
    except subprocess.TimeoutExpired:
        return module, -1, "timed out after 300 s"
    return module, proc.returncode, proc.stderr[-2000:]


def test_a_fresh_process_sees_an_import_order_crash(tmp_path):
    """``b`` imports ``a`` first and survives; ``a`` alone meets a half-initialised ``b`` and fails."""
    (tmp_path / "order_a.py").write_text("import order_b\nA = order_b.B + 1\n")
    (tmp_path / "order_b.py").write_text("B = 1\nimport order_a\nC = order_a.A\n")
    assert _import_alone("order_b", tmp_path)[1] == 0
    _, code, err = _import_alone("order_a", tmp_path)
    assert code == 1 and "partially initialized module 'order_a'" in err


def test_every_module_imports_alone_in_a_fresh_process():
    modules = [m for m in discover() if m not in NOT_IMPORTED_ALONE]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_import_alone, modules))
    failed = [f"{m} (exit {rc}):\n{err.strip()}" for m, rc, err in results if rc != 0]
    if failed:
        pytest.fail(f"{len(failed)} of {len(modules)} modules do not import alone:\n\n" + "\n\n".join(failed),
                    pytrace=False)


def test_python_dash_m_visor_runs():
    proc = subprocess.run([sys.executable, "-m", PACKAGE, "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "usage: visor" in proc.stdout


@pytest.mark.parametrize("module", sorted(NOT_IMPORTED_ALONE))
def test_modules_left_out_exist(module):
    assert module in discover()


def test_test_module_names_are_unique():
    """pytest imports test files by base name (the test folders are not packages): two files named alike in
    different folders stop the whole run at collection, so each test (and helper) module name is used once."""
    from collections import Counter

    tests = Path(__file__).resolve().parent
    names = Counter(p.name for p in tests.rglob("*.py") if p.name not in ("conftest.py", "__init__.py"))
    assert [n for n, count in names.items() if count > 1] == []
