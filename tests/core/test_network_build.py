"""The funding network's Erdos-Renyi draw without networkx (sim.core.network.gnp_directed):
the adjacency matrix networkx's directed G(n, p) gives for the same seed, bit for bit."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from sim.core.config import Scenario
from sim.core.network import funding_weights, gnp_directed


def _networkx(n: int, p: float, seed: int) -> np.ndarray:
    g = nx.gnp_random_graph(n, p, seed=seed, directed=True)
    return nx.to_numpy_array(g, nodelist=range(n), weight=None)


@pytest.mark.parametrize("n", [1, 2, 3, 12, 40])
@pytest.mark.parametrize("p", [0.0, 1e-3, 0.1, 0.25, 0.5, 0.999, 1.0, 1.5])
def test_gnp_directed_is_networkx_gnp_random_graph(n, p):
    for seed in (0, 1, 7, 2**31 - 2, 123456789):
        got = gnp_directed(n, p, seed)
        want = _networkx(n, p, seed)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want) and got.tobytes() == want.tobytes()


def test_funding_weights_draw_as_before():
    """The model's funding weights: one integer seed from the model's stream, then G(n, p)
    with p = z / (n - 1), transposed (W[i, j] > 0 when j funds i), diagonal zero."""
    cfg = Scenario().network
    for s in range(20):
        got = funding_weights(25, cfg, np.random.default_rng(s))
        seed = int(np.random.default_rng(s).integers(2**31 - 1))
        want = _networkx(25, min(1.0, cfg.funding_degree / 24), seed)
        np.fill_diagonal(want, 0.0)
        assert got.tobytes() == want.T.copy().tobytes()
