"""The import graph of sim/ and agents/: no cycles.

pyproject.toml's import contracts (``lint-imports``, run by ``make test``) keep the modules of
each package acyclic and the layers apart; they cannot see a cycle that crosses the two
packages (``sim.model -> agents.lender -> sim.metrics -> sim.model``), which this test does.
Imports inside functions are edges too (grimp reads every import statement); imports under
``if TYPE_CHECKING:`` are not (they never run).
"""

from __future__ import annotations

import grimp
import networkx as nx

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

