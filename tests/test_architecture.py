"""The package's layout rules, read from the source with ``ast`` (nothing is imported): no import cycles between
modules, no private name (``_x``, not a dunder) imported from another module, no module over 400 lines.

Every module of ``advbn_aug/`` and of ``integrations/`` (installed as ``advbn_aug.integrations``) is parsed; every
``import`` / ``from ... import`` statement counts, relative or absolute, at module level or inside a function (also
under ``if TYPE_CHECKING:``). Imports made from strings (``importlib``, the lazy ``__getattr__`` maps) are not seen.
The graph functions are tested on small packages written to ``tmp_path``, so a failure of the three layout tests
is the package's, not the walker's.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# (folder, dotted name it is installed as)
PACKAGES: tuple[tuple[Path, str], ...] = ((REPO / "advbn_aug", "advbn_aug"),
                                          (REPO / "integrations", "advbn_aug.integrations"))
MAX_LINES = 400


@dataclass
class ImportGraph:
    """``modules``: dotted name -> file; ``edges``: module -> the modules of the package it imports; ``private``:
    ``(importer, source, name)`` for each private name imported from another module."""

    modules: dict[str, Path]
    edges: dict[str, set[str]]
    private: list[tuple[str, str, str]] = field(default_factory=list)

    def __repr__(self) -> str:  # pytest prints the fixture of a failing test: keep it short
        return f"ImportGraph({len(self.modules)} modules)"


def _dotted(path: Path, folder: Path, package: str) -> str:
    """Dotted module name of ``path`` inside ``folder`` installed as ``package`` (``x/__init__.py`` -> ``x``)."""
    parts = list(path.relative_to(folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[tuple[str, str | None]]:
    """``(source module, imported name or None)`` pairs of one import statement in ``module``, relative sources
    resolved (``from .x import y`` in ``a.b.c`` -> ``("a.b.x", "y")``)."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    source = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        source = ".".join(anchor + ([node.module] if node.module else []))
    return [(source, alias.name) for alias in node.names]


def _owner(dotted: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``dotted`` that is a known module (``a.b.f`` -> ``a.b``), ``None`` if none is."""
    while dotted not in modules:
        if "." not in dotted:
            return None
        dotted = dotted.rpartition(".")[0]
    return dotted


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def import_graph(packages: Iterable[tuple[Path, str]]) -> ImportGraph:
    """Parse every ``*.py`` under each ``(folder, dotted name)`` and return their import graph (edges only between
    the parsed modules; third-party imports are dropped)."""
    packages = list(packages)
    modules = {_dotted(p, folder, name): p for folder, name in packages for p in sorted(folder.rglob("*.py"))}
    roots = {name.split(".")[0] for _, name in packages}
    graph = ImportGraph(modules, {m: set() for m in modules})
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for source, name in _imported(node, module, is_package):
                if source.split(".")[0] not in roots:
                    continue
                if name is not None and f"{source}.{name}" in modules:  # `from pkg import submodule`
                    target: str | None = f"{source}.{name}"
                else:
                    target = _owner(source, modules)
                    if name is not None and _is_private(name) and target != module:
                        graph.private.append((module, source, name))
                if target is not None and target != module:
                    graph.edges[module].add(target)
    return graph


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each sorted), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the depth is at most the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def long_modules(modules: dict[str, Path], limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """``(module, lines)`` of the modules with more than ``limit`` lines, longest first."""
    lengths = ((m, len(p.read_text().splitlines())) for m, p in modules.items())
    return sorted(((m, n) for m, n in lengths if n > limit), key=lambda mn: (-mn[1], mn[0]))


def _describe_cycle(cycle: Sequence[str], edges: dict[str, set[str]]) -> str:
    inside = set(cycle)
    links = [f"{a} -> {b}" for a in cycle for b in sorted(edges[a] & inside)]
    return f"{', '.join(cycle)} (imports: {'; '.join(links)})"


# ------------------------------------------------------------------------------------------ the package's layout
@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return import_graph(PACKAGES)


def test_the_walker_sees_the_whole_package(graph):
    """Guards the three layout tests against passing on an empty or partial walk."""
    assert {"advbn_aug", "advbn_aug.policy", "advbn_aug.split.fx", "advbn_aug.integrations.timm.task"} <= set(
        graph.modules)
    assert "advbn_aug.integrations.timm.task" in graph.edges["advbn_aug.integrations.timm.launcher"]
    assert "advbn_aug.split.base" in graph.edges["advbn_aug.split.fx"]


def test_no_import_cycles(graph):
    cycles = import_cycles(graph.edges)
    assert not cycles, "import cycles (move the shared piece into a module both can import):\n" + "\n".join(
        _describe_cycle(c, graph.edges) for c in cycles)


def test_no_private_names_imported_across_modules(graph):
    lines = [f"{importer} imports {name} from {source}" for importer, source, name in graph.private]
    assert not lines, "private names imported from another module (make them public or move them):\n" + "\n".join(
        lines)


def test_no_module_over_400_lines(graph):
    long = long_modules(graph.modules)
    assert not long, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(
        f"{m}: {n} lines" for m, n in long)


# The dependency direction drawn in docs/architecture.md: each group may import only the groups listed here (a group
# is a top-level module or subpackage of advbn_aug; "integrations" is advbn_aug.integrations).
LAYERS: dict[str, set[str]] = {
    "_extras": set(), "config": set(), "losses": set(), "device": set(), "datasets": set(),
    "split": set(),
    "models": {"datasets"},
    "image": {"config"},
    "feature": {"config", "losses", "split"},
    "policy": {"config", "losses", "feature", "image"},
    "eval": {"_extras", "config", "device", "datasets", "models", "feature"},
    "visualise": {"_extras", "config", "datasets", "split", "feature", "eval"},
    "integrations": {"config", "policy", "feature", "eval"},
    "recipe": {"__init__", "_extras", "config", "device", "datasets", "models", "split", "image", "feature",
               "policy", "eval", "visualise"},
    "cli": {"config", "device", "datasets", "image", "feature", "eval", "visualise", "recipe"},
}


def _group(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def layer_violations(edges: dict[str, set[str]], layers: dict[str, set[str]]) -> list[str]:
    """``"a imports b"`` for each import from a group to a group that ``layers`` does not allow it (groups missing
    from ``layers`` are reported too, so a new subpackage must be placed)."""
    out = []
    for importer, targets in sorted(edges.items()):
        g = _group(importer)
        for target in sorted(targets):
            t = _group(target)
            if g != t and g != "__init__" and t not in layers.get(g, set()):
                out.append(f"{importer} ({g}) imports {target} ({t})")
    return out


def test_imports_follow_the_layers(graph):
    """Imports point down the layers of docs/architecture.md: feature/ never imports eval/, recipe/ or cli/, nothing
    imports cli/ or recipe/ except the layers above them, and so on."""
    assert set(LAYERS) >= {_group(m) for m in graph.modules} - {"__init__"}, "place the new group in LAYERS"
    bad = layer_violations(graph.edges, LAYERS)
    assert not bad, "imports against the layer order (docs/architecture.md):\n" + "\n".join(bad)


def test_layer_check_catches_an_upward_import():
    edges = {"advbn_aug.feature.advbn": {"advbn_aug.recipe.core.runner", "advbn_aug.split.base"}}
    assert layer_violations(edges, LAYERS) == [
        "advbn_aug.feature.advbn (feature) imports advbn_aug.recipe.core.runner (recipe)"]


# ------------------------------------------------------------------------------------------ the walker itself
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_graph_resolves_relative_absolute_and_local_imports(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from pkg.a import run\nfrom . import sub\n",
        "pkg/a.py": "import os\nimport pkg.sub.d\n\ndef run():\n    from .c import value\n    return value\n",
        "pkg/c.py": "value = 1\n__version__ = '0'\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/d.py": "from ..c import __version__, value\nfrom pkg.c import value as v\n"
                        "from numpy import _private\n",
        "ext/__init__.py": "",
        "ext/e.py": "from pkg.ext import f\nfrom .f import g\n",
        "ext/f.py": "g = 0\n",
    })
    graph = import_graph([(tmp_path / "pkg", "pkg"), (tmp_path / "ext", "pkg.ext")])
    assert set(graph.modules) == {"pkg", "pkg.a", "pkg.c", "pkg.sub", "pkg.sub.d", "pkg.ext", "pkg.ext.e",
                                  "pkg.ext.f"}
    assert graph.edges == {
        "pkg": {"pkg.a", "pkg.sub"},  # `from . import sub` is the subpackage, not a name of pkg
        "pkg.a": {"pkg.sub.d", "pkg.c"},  # absolute `import a.b.c`; a function-local relative import
        "pkg.c": set(),
        "pkg.sub": set(),
        "pkg.sub.d": {"pkg.c"},  # `..` from a module of a subpackage; third-party imports dropped
        "pkg.ext": set(),
        "pkg.ext.e": {"pkg.ext.f"},  # the second folder under its installed name
        "pkg.ext.f": set(),
    }
    assert graph.private == []  # dunders and other packages' private names are not ours to police
    assert import_cycles(graph.edges) == []


def test_graph_finds_a_planted_cycle_and_private_import(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import helper\n\ndef _own():\n    pass\n",
        "pkg/b.py": "def helper():\n    from . import c\n",  # the cycle closes through a function-local import
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import _own\n",
        "pkg/d.py": "from .a import helper, _own as own\n",
        "pkg/e.py": "import pkg.a\n",
    })
    graph = import_graph([(tmp_path / "pkg", "pkg")])
    assert import_cycles(graph.edges) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert sorted(graph.private) == [("pkg.c", "pkg.a", "_own"), ("pkg.d", "pkg.a", "_own")]
    message = _describe_cycle(["pkg.a", "pkg.b", "pkg.c"], graph.edges)
    assert "pkg.a -> pkg.b" in message and "pkg.b -> pkg.c" in message and "pkg.c -> pkg.a" in message


def test_cycles_of_two_separate_groups_are_reported_apart():
    edges = {"a": {"b"}, "b": {"a", "c"}, "c": set(), "x": {"y"}, "y": {"z"}, "z": {"x"}}
    assert import_cycles(edges) == [["a", "b"], ["x", "y", "z"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_long_modules_counts_lines(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/ok.py": "x = 1\n" * MAX_LINES,
                      "pkg/big.py": "x = 1\n" * (MAX_LINES + 1), "pkg/bigger.py": "x = 1\n" * (MAX_LINES + 5)})
    graph = import_graph([(tmp_path / "pkg", "pkg")])
    assert long_modules(graph.modules) == [("pkg.bigger", MAX_LINES + 5), ("pkg.big", MAX_LINES + 1)]
