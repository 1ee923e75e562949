"""The optimised code reproduces the outputs recorded before optimisation, bit for bit.

``tests/data/golden.json`` was written by ``python -m sim.qa.bench --write-golden`` on the code as
it was before the speed work (commit 9bb3a57), and re-recorded once, deliberately, when the
model itself changed (search friction, the shut-down option in valuations, step_down 0.15; the
speed work was still bit-for-bit against the first record): a sha256 of every ``model.rec``
array, of the agent panel and of the event log, plus every number of ``metrics.summary``, for
the shipped scenarios and variants in ``sim.qa.bench.GOLDEN_CASES`` at their default seeds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.core import numerics as nm
from sim.core.config import load_scenario
from sim.qa.bench import GOLDEN_CASES, GOLDEN_PATH, fingerprint, golden_mismatches
from sim.world.runner import run_scenario

GOLDEN = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("label", "scenario", "overrides"), GOLDEN_CASES,
                         ids=[c[0] for c in GOLDEN_CASES])
def test_outputs_identical_to_golden(label, scenario, overrides):
    model = run_scenario(load_scenario(scenario, list(overrides)))
    assert golden_mismatches({label: GOLDEN[label]}, {label: fingerprint(model)}) == []


def test_fingerprint_sees_a_one_bit_change():
    model = run_scenario(load_scenario("baseline", months=6))
    before = fingerprint(model)
    model.rec["price"][3, 1] = np.nextafter(model.rec["price"][3, 1], np.inf)
    after = fingerprint(model)
    bad = golden_mismatches({"x": before}, {"x": after})
    assert bad[0] == "x: rec.price"  # and the summary numbers computed from the price
    assert all(b.startswith("x: summary.") for b in bad[1:])


def test_golden_covers_the_required_cases():
    labels = set(GOLDEN)
    assert {"baseline", "crypto_winter", "repo_backstop", "crypto_winter+repo",
            "crypto_winter+unlimited"} <= labels
    assert labels == {c[0] for c in GOLDEN_CASES}


def _reference_syndicates(n_borrowers, n_lenders, cfg, rng):
    """sim.core.network.syndicates as first written (full n_borrowers x n_lenders draws)."""
    from sim.core.network import preferential_attachment

    k = np.minimum(1 + rng.poisson(max(cfg.syndicate - 1.0, 0.0), n_borrowers), n_lenders)
    n_core = max(1, int(round(cfg.core_share * n_lenders)))
    if cfg.kind == "scale_free":
        chosen = preferential_attachment(k, n_lenders, rng)
    else:
        w = np.ones(n_lenders)
        if cfg.kind == "core_periphery":
            w[:n_core] = 4.0 * max(n_lenders - n_core, 1) / n_core
        keys = nm.log(w)[None, :] + nm.gumbel(rng, (n_borrowers, n_lenders))
        chosen = np.argsort(-keys, axis=1, kind="stable")
    mask = np.arange(n_lenders)[None, :] < k[:, None]
    raw = np.where(mask, nm.exponential(rng, (n_borrowers, n_lenders)), 0.0)
    raw = -np.sort(-raw, axis=1)
    shares = (raw / raw.sum(axis=1, keepdims=True))[mask]
    return np.repeat(np.arange(n_borrowers), k), chosen[mask], shares


@pytest.mark.parametrize(("kind", "n_b", "n_l", "syndicate"), [
    ("erdos_renyi", 2000, 300, 3.0), ("core_periphery", 1200, 400, 2.0),
    ("erdos_renyi", 4100, 130, 8.0), ("erdos_renyi", 50, 7, 30.0), ("scale_free", 400, 60, 2.0)])
def test_syndicates_match_the_full_matrix_draw(kind, n_b, n_l, syndicate):
    """Syndicates at any size are the same, to the bit, as the original full-matrix algorithm
    (so a blocked or partial implementation must keep the random stream and the row sums)."""
    from sim.core.config import NetworkCfg
    from sim.core.network import syndicates

    cfg = NetworkCfg(kind=kind, syndicate=syndicate)
    r0, r1 = np.random.default_rng(5), np.random.default_rng(5)
    ref, got = _reference_syndicates(n_b, n_l, cfg, r0), syndicates(n_b, n_l, cfg, r1)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(a, b)
    assert r0.random() == r1.random()  # the generator is left in the same state


def test_auction_without_empty_orders_has_the_same_outcome():
    """The model drops zero-quantity orders before each auction (``clear_book`` skips the
    input checks, as ``validate=False`` does here):
    on random books with many empty orders, ties and market orders, the price, volume, fills
    and overhang are the same as on the full book."""
    from sim.core.market import call_auction

    rng = np.random.default_rng(3)
    for _ in range(300):
        na, nb = rng.integers(1, 40, size=2)
        aq = rng.integers(0, 6, na) * (rng.random(na) < 0.4)
        bq = rng.integers(0, 9, nb) * (rng.random(nb) < 0.5)
        ap = rng.choice([0.0, 10.0, 20.0, 30.0, 45.5], na)
        bp = rng.choice([5.0, 20.0, 30.0, 50.0], nb)
        k = float(rng.choice([0.0, 0.5, 1.0]))
        full = call_auction(aq, ap, bq, bp, k=k)
        a, b = aq.nonzero()[0], bq.nonzero()[0]
        part = call_auction(aq[a], ap[a], bq[b], bp[b], k=k, validate=False)
        assert part.volume == full.volume
        np.testing.assert_array_equal(part.price, full.price)  # nan == nan here
        np.testing.assert_array_equal(part.ask_fills, full.ask_fills[a])
        np.testing.assert_array_equal(part.bid_fills, full.bid_fills[b])
        assert full.ask_fills.sum() == full.ask_fills[a].sum()
        assert part.unfilled_market_units == full.unfilled_market_units
        np.testing.assert_array_equal(part.best_bid, full.best_bid)
