"""The package's import graph has no cycles, lazy (function-level) imports included.

A cycle that only closes inside a function still breaks: the first call finds a module half
initialised, or a later edit moves the import to the top. The check reads the source (AST), so
it sees every import in a file without running any of them.

What counts as an edge from module ``m``:

- ``import a.b.c``: an edge to ``a.b.c``; ``from a.b.c import x``: to ``a.b.c.x`` where that
  is a module, else to ``a.b.c``, which must have run to its end to have ``x`` (even where it
  is ``m``'s own package); relative imports resolved;
- and to every package above the target whose ``__init__`` the import runs, that is the
  packages above it that are not also above ``m`` (those have run before ``m`` could), and not
  the top-level package, whose ``__init__`` imports nothing;
- imports under ``if TYPE_CHECKING:`` too: they never run, but a cycle that only type hints close
  is still two modules that each need the other to be read.
"""

from __future__ import annotations

import ast
import textwrap
from collections import deque
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "noiseppo"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under the package folder ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth, ``if TYPE_CHECKING:`` blocks included."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (see the module docstring)."""
    modules = _modules(root)
    top = root.name

    def existing(name: str) -> str | None:
        # ``import a.b.c`` where c is a name, not a module: the import runs a.b.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        above = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        targets: set[str] = set()
        reads: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(t for alias in node.names if (t := existing(alias.name)))
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            submodules = {f"{source}.{alias.name}" for alias in node.names} & modules.keys()
            targets.update(submodules)
            if len(submodules) < len(node.names) and (t := existing(source)) is not None:
                targets.add(t)  # names read from ``source`` itself: it must have run to the end
                reads.add(t)
        for target in targets:
            parts = target.split(".")
            runs = {".".join(parts[:i]) for i in range(2, len(parts))} - above  # packages whose __init__ runs
            graph[name].update(t for t in {target, *runs} if t not in (name, top) and (t in reads or t not in above))
    return graph


def _cycle_through(start: str, graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """A shortest cycle through ``start`` inside the strongly connected ``members``."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start} is in no cycle")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per group of nodes that reach each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(min(group), graph, group) for group in groups]


def import_cycles(root: Path) -> list[list[str]]:
    """One cycle per group of modules that import each other, directly or not."""
    return cycles(import_graph(root))


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph with each sub-package (``noiseppo.backends``, everything in it) as one node."""

    def folder(name: str) -> str:
        return ".".join(name.split(".")[:2])

    folders: dict[str, set[str]] = {folder(name): set() for name in graph}
    for name, targets in graph.items():
        folders[folder(name)].update(folder(t) for t in targets if folder(t) != folder(name))
    return folders


def test_src_has_no_import_cycles():
    found = import_cycles(SRC)
    assert not found, "import cycles in src/noiseppo (one per group of modules that import each other):\n" + "\n".join(
        " -> ".join(c) for c in found
    )


def test_the_folders_of_src_import_one_way():
    """The folders (storage/, configs/, sampling/, training/, ...) and the top-level modules import one way."""
    found = cycles(folder_graph(import_graph(SRC)))
    assert not found, "import cycles between the folders of src/noiseppo:\n" + "\n".join(" -> ".join(c) for c in found)


LAYERS = [  # lowest first, as the README's layout table lists them from the bottom up
    {"errors", "names", "images", "dataclass_args", "memory"},
    {"shapes", "storage"},
    {"prompts"},
    {"backends", "rewards"},
    {"configs"},
    {"sampling"},
    {"policy"},
    {"evaluation"},
    {"analysis"},
    {"report"},
    {"training"},
    {"baselines"},
    {"comparison"},
    {"cli"},
]
"""What the folders say: a module imports from its own layer and the layers below, never above
(within a layer, ``test_the_folders_of_src_import_one_way`` keeps the imports one way)."""


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``source -> target`` for every import of a folder graph that runs up ``LAYERS``."""
    layer_of = {part: k for k, layer in enumerate(LAYERS) for part in layer}

    def layer(name: str) -> int:
        part = name.split(".")[1]
        assert part in layer_of, f"place noiseppo.{part} in LAYERS (and the README's layout table)"
        return layer_of[part]

    # the package's own __init__ only holds __version__: below everything
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if "noiseppo" not in (source, target) and layer(target) > layer(source)
    )


def test_each_layer_imports_only_from_the_layers_below():
    found = upward_imports(folder_graph(import_graph(SRC)))
    assert not found, "imports that run up the layers of src/noiseppo:\n" + "\n".join(found)


def reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every node ``start`` imports, directly or through others."""
    seen, queue = set(), deque([start])
    while queue:
        for nxt in graph[queue.popleft()] - seen:
            seen.add(nxt)
            queue.append(nxt)
    return seen


def test_training_never_imports_the_report():
    """The run's page is a callback the CLI gives ``train`` (``TrainCallbacks``): no module of
    training/ imports report/, lazily or through another module."""
    graph = folder_graph(import_graph(SRC))
    assert "noiseppo.report" not in reached(graph, "noiseppo.training")
    assert reached({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == {"b", "c"}


def test_the_layer_check_names_an_import_that_runs_up():
    graph = folder_graph({"noiseppo.policy": {"noiseppo.training.trainer"}, "noiseppo.training.trainer": set()})
    assert upward_imports(graph) == ["noiseppo.policy -> noiseppo.training"]
    assert upward_imports({"noiseppo.training": {"noiseppo.policy"}, "noiseppo.policy": set()}) == []
    with pytest.raises(AssertionError, match="place noiseppo.newfolder in LAYERS"):
        upward_imports({"noiseppo.newfolder": {"noiseppo.policy"}})


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path / "pkg"


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        (  # a function-level import closes the cycle
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "def f():\n    from pkg.b import g\n",
                "pkg/b.py": "from . import a\n",
            },
            ["pkg.a", "pkg.b", "pkg.a"],
        ),
        (  # a package whose __init__ imports a module that imports back through the package
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "def f():\n    import pkg.c\n",
                "pkg/sub/x.py": "",
                "pkg/c.py": "from pkg.sub.x import y\n",
            },
            ["pkg.c", "pkg.sub", "pkg.c"],
        ),
        (  # a relative import two levels up
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "",
                "pkg/sub/x.py": "from ..c import z\n",
                "pkg/c.py": "import pkg.sub.x\n",
            },
            ["pkg.c", "pkg.sub.x", "pkg.c"],
        ),
        (  # a module reading a name from its own package, whose __init__ imports it
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "from pkg.sub.x import f\nHELPER = 1\n",
                "pkg/sub/x.py": "def f():\n    from pkg.sub import HELPER\n",
            },
            ["pkg.sub", "pkg.sub.x", "pkg.sub"],
        ),
    ],
)
def test_the_check_finds_a_planted_cycle(tmp_path, files, cycle):
    assert import_cycles(_package(tmp_path, files)) == [cycle]


def test_the_check_counts_type_hints_and_skips_a_modules_own_package(tmp_path):
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import g\n",
            "pkg/b.py": "from pkg import a\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/x.py": "from pkg.sub import y\n",  # a module's own package has run before it
            "pkg/sub/y.py": "import pkg.sub.x\n",
        },
    )
    assert import_cycles(root) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.sub.x", "pkg.sub.y", "pkg.sub.x"]]
