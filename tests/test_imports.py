"""No import cycles between microscope's modules: every import statement, at module level or inside a
function, read with `ast` (nothing is imported), so a lazy import cannot hide a cycle.

An edge A -> B means running A's import statement runs B's code:
- `import a.b.c` runs a, a.b and a.b.c; `from a.b import c` runs a, a.b, and a.b.c when c is a submodule;
- a module's own enclosing packages are always imported before it, so reaching through them to a
  submodule (`from microscope.site.render import Renderer` in microscope.site.builder) adds no edge to them;
  taking a name their `__init__` defines (`from microscope import __version__`) does;
- imports under `if TYPE_CHECKING:` never run and are left out.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "microscope"


def module_files() -> dict[str, Path]:
    """Dotted module name -> its file; a package is named by its `__init__.py`."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def enclosing_packages(module: str) -> list[str]:
    """microscope.site.builder -> [microscope, microscope.site]."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def import_statements(node: ast.AST):
    """Every Import / ImportFrom under node, at any depth, except those that only type checkers see."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif is_type_checking(child):  # only its else branch ever runs
            yield from import_statements(ast.Module(body=child.orelse, type_ignores=[]))
        else:
            yield from import_statements(child)


def absolute_base(importer: str, statement: ast.ImportFrom, is_package: bool) -> str:
    """The module a `from ... import` names, relative imports resolved against the importer's package."""
    if statement.level == 0:
        return statement.module
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[:len(package) - (statement.level - 1)]
    return ".".join(base + ([statement.module] if statement.module else []))


def imported_modules(importer: str, statement, modules: dict[str, Path]) -> set[str]:
    """The microscope modules whose code this statement runs (see the module's docstring)."""
    own = set(enclosing_packages(importer)) | {importer}
    if isinstance(statement, ast.Import):
        reached = set()
        for alias in statement.names:
            reached |= {*enclosing_packages(alias.name), alias.name}
        return {name for name in reached if name in modules} - own
    base = absolute_base(importer, statement, modules[importer].name == "__init__.py")
    names = {f"{base}.{alias.name}" for alias in statement.names}
    submodules = names & set(modules)
    takes_from_base = len(submodules) < len(names)  # a name the base module itself defines
    reached = (set(enclosing_packages(base)) - own) | submodules
    if base not in own or takes_from_base:
        reached.add(base)
    return {name for name in reached if name in modules} - {importer}


def edges_of(importer: str, source: str, modules: dict[str, Path]) -> dict[str, list[int]]:
    """imported module -> the lines of `source` (the text of `importer`) whose imports run it."""
    found: dict[str, list[int]] = {}
    for statement in import_statements(ast.parse(source)):
        for target in imported_modules(importer, statement, modules):
            found.setdefault(target, []).append(statement.lineno)
    return found


def import_graph() -> dict[str, dict[str, list[str]]]:
    """importer -> imported -> ["file:line", ...] of the statements that make the edge."""
    modules = module_files()
    graph = {}
    for importer, path in modules.items():
        where = path.relative_to(PACKAGE.parent)
        edges = edges_of(importer, path.read_text(encoding="utf-8"), modules)
        graph[importer] = {target: [f"{where}:{line}" for line in lines] for target, lines in edges.items()}
    return graph


def strongly_connected(graph: dict[str, dict]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other (each group of two or more is a cycle)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [group for group in groups if len(group) > 1]


def describe(group: list[str], graph: dict[str, dict[str, list[str]]]) -> str:
    edges = [f"  {a} -> {b}  ({', '.join(graph[a][b])})" for a in group for b in sorted(graph[a]) if b in group]
    return "cycle among " + ", ".join(group) + ":\n" + "\n".join(edges)


def test_the_reader_sees_every_kind_of_import():
    modules = module_files()
    builder = textwrap.dedent("""
        from typing import TYPE_CHECKING
        from microscope import __version__
        from microscope.site.render import Renderer
        from . import pages
        if TYPE_CHECKING:
            from microscope.examples.config import SummarySettings
        else:
            import microscope.store.files

        def later():
            from microscope.views.registry import VIEWS
    """)
    assert edges_of("microscope.site.builder", builder, modules) == {
        "microscope": [3],  # a name its __init__ defines
        "microscope.site.render": [4],  # through its own package: no edge to microscope.site
        "microscope.site.pages": [5],
        "microscope.store": [9], "microscope.store.files": [9],  # the else branch runs; the TYPE_CHECKING one never
        "microscope.views": [12], "microscope.views.registry": [12],  # another package: its __init__ runs first
    }
    package = "from .registry import VIEWS\nfrom . import register\n"
    assert edges_of("microscope.views", package, modules) == {"microscope.views.registry": [1]}  # itself is no edge
    assert edges_of("microscope.views.sae", package, modules) == {"microscope.views.registry": [1],
                                                                  "microscope.views": [2]}


def test_cycles_are_found():
    graph = {"a": {"b": ["x:1"]}, "b": {"c": ["x:2"]}, "c": {"a": ["x:3"]}, "d": {"a": ["x:4"]}, "e": {}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "\n" + "\n".join(describe(group, graph) for group in cycles)


# The house, lowest floor first: a module imports only from its own floor or below, and on the
# features' floors only from its own package. The floors follow the data: the ground floor is the
# vocabulary every part shares (errors, names, jobs, what a user selects, the view contract, the
# store's records); then data in, the models, the network and the web's torch-free pieces; what the
# passes keep of activations; the features; the views that tie features to the pipeline and the
# site; the site; the run; and the entry points.
FLOORS = [
    ["microscope.errors", "microscope.names", "microscope.jobs", "microscope.selection",
     "microscope.settings", "microscope.view", "microscope.store"],
    ["microscope.data", "microscope.models"],
    ["microscope.network", "microscope.web"],
    ["microscope.activations", "microscope.concepts"],  # what activations keep, and what units are
    ["microscope.examples", "microscope.featurevis", "microscope.circuits", "microscope.sae"],
    # atlas icons and caricatures are feature visualizations of other objectives (featurevis below); the
    # in-browser export is the network (with the SAEs' encoders as layers) as ONNX for the "Try an image" page
    ["microscope.atlas", "microscope.caricature", "microscope.inbrowser"],
    ["microscope.views"],
    ["microscope.site"],
    ["microscope.run"],
    ["microscope", "microscope.cli", "microscope.cli_options", "microscope.api"],  # microscope.open_store
]
FEATURES = FLOORS[4]


def floor_of(module: str) -> tuple[int, str]:
    """(floor, the listed package or module it belongs to): the longest listed prefix wins."""
    found = [(len(name), at, name) for at, names in enumerate(FLOORS) for name in names
             if module == name or module.startswith(name + ".")]
    assert found, f"{module} is on no floor of FLOORS: add it"
    _, at, name = max(found)
    return at, name


def test_no_import_runs_upward():
    graph = import_graph()
    wrong = []
    for importer, targets in sorted(graph.items()):
        (at, home) = floor_of(importer)
        for target, where in sorted(targets.items()):
            (to, other) = floor_of(target)
            if target == "microscope":  # runs before any module of the package anyway (__version__)
                continue
            if to > at or (home in FEATURES and other in FEATURES and home != other):
                wrong.append(f"  {importer} -> {target}  ({', '.join(where)})")
    assert not wrong, "imports that run upward or sideways between features:\n" + "\n".join(wrong)


def test_the_top_of_the_package_stays_small():
    """At most ten modules loose at the top: the rest live in packages that name their role."""
    loose = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(loose) <= 10, loose
