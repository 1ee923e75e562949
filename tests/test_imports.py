"""The import graph of sim/ and agents/: no cycles, and no hidden imports.

pyproject.toml's import contracts (``lint-imports``, run by ``make test``) keep the modules of
each package acyclic and the layers apart; they cannot see a cycle that crosses the two
packages (``sim.world.model -> agents.lender -> sim.world.metrics -> sim.world.model``), which this
test does.
Imports inside functions are edges too (grimp reads every import statement); imports under
``if TYPE_CHECKING:`` are not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sim", "agents")


def _graph() -> nx.DiGraph:
    g = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    out = nx.DiGraph()
    out.add_nodes_from(g.modules)
    out.add_edges_from((m, i) for m in g.modules for i in g.find_modules_directly_imported_by(m))
    return out


def test_the_import_graph_is_acyclic():
    graph = _graph()
    assert len(graph) > 30  # the graph was built (grimp found the packages)
    cycles = []
    for scc in nx.strongly_connected_components(graph):
        if len(scc) > 1:
            edges = nx.find_cycle(graph.subgraph(scc))
            cycles.append(" -> ".join([e[0] for e in edges] + [edges[0][0]]))
    assert not cycles, ("import cycles (move the piece both sides need down to the lower "
                        "module): " + "; ".join(cycles))


def _local_project_imports(path: Path):
    """(line, statement, comment) of each import of sim/agents inside a function of ``path``."""
    text = path.read_text()
    lines = text.splitlines()
    found = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                names = ([a.name for a in child.names] if isinstance(child, ast.Import)
                         else ["." if child.level else (child.module or "")])
                if any(n == "." or n.split(".")[0] in PACKAGES for n in names):
                    # the comment on the statement's lines or above it in its block of imports
                    top = child.lineno - 1
                    while top > 0 and lines[top - 1].strip().startswith(("#", "from ", "import ")):
                        top -= 1
                    around = lines[top:child.end_lineno]
                    found.append((child.lineno, ast.unparse(child), " ".join(around)))
            visit(child, inside)

    visit(ast.parse(text), False)
    return found


def test_function_local_imports_are_deliberately_lazy():
    """An import of the project's own modules inside a function hides a cycle or costs
    start-up time for nothing, unless it keeps a heavy module out of a path that does not
    need it: then it says so, with ``lazy`` in a comment on or above it."""
    unexplained = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, stmt, around in _local_project_imports(path):
                if "# lazy" not in around:
                    unexplained.append(f"{path.relative_to(ROOT)}:{line}: {stmt}")
    assert not unexplained, ("function-local imports of sim/agents without a '# lazy: why' "
                             "comment (move them to the top of the module):\n"
                             + "\n".join(unexplained))
