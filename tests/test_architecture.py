"""The package's layering rule (docs/architecture.md, "The layering rule"), read from the code.

Every part of ``src/deepm3`` (a top-level module, or a sub-package as a whole) stands on one
layer; it may import its own layer and the layers below, never one above, and no two parts
import each other, however indirectly. A part that ``LAYERS`` does not name yet (a module just
added) stands on the lowest layer its imports allow; what imports it is held to that. Imports
are read with :mod:`ast`, wherever they stand (a function-level import ties two files as much
as a top-level one); those under ``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "deepm3"

# bottom to top; mirrored by the picture in docs/architecture.md
LAYERS: dict[str, tuple[str, ...]] = {
    "ground": ("errors.py", "seeding.py", "metrics.py", "conf/"),
    "tools": ("io.py", "device.py", "config.py", "provenance.py", "trackers.py", "history.py", "cli_args.py"),
    "domain": ("data/", "models/"),
    "runs": (
        "registry.py",
        "bench.py",
        "analysis/",
        "run_dir.py",
        "run/",
        "train.py",
    ),
    "apps": ("recommender.py", "recommend.py", "server/", "phase2/"),
    "commands": ("serve.py", "phase2_job.py"),
}
# pairs on one layer that must stay apart all the same
NEVER = {
    ("data/", "models/"): "data and models meet only in the run layer",
    ("models/", "data/"): "data and models meet only in the run layer",
    ("recommender.py", "server/"): "the Python API knows no HTTP",
    ("recommender.py", "recommend.py"): "the Python API knows no batch CLI",
    ("phase2/", "server/"): "the studies know no serving",
}
# file circles built before the rule had a test; each one is a debt, never a model to copy
KNOWN_CIRCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part(module: str) -> str | None:
    """``deepm3.data.samples`` -> ``data/``; ``deepm3.train`` -> ``train.py``; the package face -> None."""
    parts = module.split(".")
    if len(parts) == 1:
        return None  # deepm3/__init__.py: __version__ and a lazy Recommender, imported by anyone
    return f"{parts[1]}/" if (PACKAGE / parts[1]).is_dir() else f"{parts[1]}.py"


def runtime_imports(tree: ast.AST) -> list[str]:
    """Absolute module names imported anywhere in ``tree`` but under ``if TYPE_CHECKING:``."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def file_graph() -> dict[str, set[str]]:
    """``{module: the deepm3 modules it imports}`` over every file of the package."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in runtime_imports(ast.parse(path.read_text())):
            while imported and imported not in modules:  # `from deepm3.x import name` names a module or a name
                imported = imported.rpartition(".")[0]
            if imported.startswith("deepm3") and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def part_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``{part: the other parts it imports}``; the package face is left out."""
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = part(module)
        if source is not None:
            parts.setdefault(source, set()).update(part(t) for t in targets if part(t) not in (None, source))
    return parts


def layer_of(parts: dict[str, set[str]]) -> dict[str, int]:
    """Each part's layer: as ``LAYERS`` places it, else the highest layer among what it imports."""
    level = {r: i for i, placed in enumerate(LAYERS.values()) for r in placed}

    def infer(name: str, seen: frozenset[str]) -> int:
        if name not in level:
            below = [infer(t, seen | {name}) for t in parts.get(name, ()) if t not in seen]
            level[name] = max(below, default=0)
        return level[name]

    for name in parts:
        infer(name, frozenset())
    return level


def test_layers_name_each_part_once_and_only_parts_that_exist() -> None:
    placed = [r for parts in LAYERS.values() for r in parts]
    assert len(placed) == len(set(placed)), "a part is on two layers"
    gone = sorted(set(placed) - set(part_graph(file_graph())))
    assert not gone, f"LAYERS names parts that no longer exist: {gone}"


def test_no_part_imports_a_layer_above_it_or_a_part_it_must_not() -> None:
    graph = file_graph()
    level = layer_of(part_graph(graph))
    names = list(LAYERS)
    problems = set()
    for module, targets in graph.items():
        source = part(module)
        for target in targets:
            dest = part(target)
            if source is None or dest is None or source == dest:
                continue
            if level[dest] > level[source]:
                problems.add(
                    f"{module} ({source}, {names[level[source]]}) imports {target} ({dest}, {names[level[dest]]})"
                )
            if (source, dest) in NEVER:
                problems.add(f"{module} imports {target}: {NEVER[source, dest]}")
    assert not problems, "imports against the layering rule:\n" + "\n".join(sorted(problems))


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_parts_import_each_other() -> None:
    found = circles(part_graph(file_graph()))
    assert not found, f"parts that import each other: {found}"


def test_no_new_circle_of_files() -> None:
    def path(module: str) -> str:
        relative = "/".join(module.split(".")[1:])
        return f"{relative}/__init__.py".lstrip("/") if (PACKAGE / relative).is_dir() else f"{relative}.py"

    found = {frozenset(path(m) for m in component) for component in circles(file_graph())}
    new = sorted(sorted(c) for c in found - KNOWN_CIRCLES)
    assert not new, f"files that import each other (move what both need below them): {new}"
