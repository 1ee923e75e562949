"""Whole-model tests: accounting every month, determinism, emergence of fire-sale effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mesa.discrete_space import Network

from sim.core.config import list_scenarios, load_scenario
from sim.core.seeds import replicate_seeds
from sim.world import metrics
from sim.world.model import AGENT_VIEWS, LiquidationModel
from sim.world.runner import run_scenario

CASES = [(name, []) for name in list_scenarios()] + [
    ("crypto_winter", ["policy.repo.enabled=true"]),
    ("crypto_winter", ["market.mode='parametric'"]),
    ("crypto_winter", ["market.unsold_to_salvage=false"]),
    ("crypto_winter", ["network.kind='scale_free'", "contagion.alpha=0.5"]),
    ("guarantor_exit", ["network.kind='core_periphery'"]),
]
# the 100,000-borrower world (experiments/scenarios/large.toml) takes seconds: marked slow
PARAMS = [pytest.param(s, o, id=f"{s}{'+' + ','.join(o) if o else ''}",
                       marks=pytest.mark.slow if s == "large" else ()) for s, o in CASES]


@pytest.mark.parametrize(("scenario", "overrides"), PARAMS)
def test_accounting_identities_hold_every_month(scenario, overrides):
    model = LiquidationModel(load_scenario(scenario, overrides))
    units0 = model.gpu_units().copy()
    assert model.invariants() == []
    while model.running:
        model.step()
        assert model.invariants() == [], f"month {model.month}"
        # the same identities, written out: units conserved, prices >= 0, nothing above a bid
        np.testing.assert_array_equal(model.gpu_units(), units0)
        assert (model.price >= 0).all()
        assert model.month_above_reservation <= 1e-9
    # write-offs and recoveries are tallied twice, on the lenders' books and in the model's
    # own totals from the default and sale code paths; the invariant compares the two
    assert model.lenders.writeoffs.sum() == pytest.approx(model.ead_total, rel=1e-9, abs=1e-6)


@pytest.mark.slow
def test_crypto_winter_produces_defaults_fire_sales_and_losses():
    s = metrics.summary(run_scenario(load_scenario("crypto_winter")))
    base = metrics.summary(run_scenario(load_scenario("baseline")))
    assert s["defaults"] > base["defaults"] > 0
    assert s["credit_losses"] > base["credit_losses"] > 0
    assert s["fire_sale_discount"] > 0.2
    # the collateral illusion: marks promised more than the sales realised
    assert s["realised_lgd"] > s["paper_lgd"]


@pytest.mark.slow
def test_same_seed_same_outputs_different_seed_different():
    cfg = load_scenario("crypto_winter", months=36)
    a, b = run_scenario(cfg), run_scenario(cfg)
    pd.testing.assert_frame_equal(metrics.series(a), metrics.series(b))
    pd.testing.assert_frame_equal(metrics.events(a), metrics.events(b))
    pd.testing.assert_frame_equal(metrics.panel(a), metrics.panel(b))
    c = run_scenario(cfg.model_copy(update={"seed": cfg.seed + 1}))
    assert not metrics.series(a).equals(metrics.series(c))


@pytest.mark.slow
def test_legacy_repo_desk_reduces_losses_and_price_collapse_over_20_paired_seeds():
    """The legacy desk (it buys at its floor, docs/model.md 7.17) props the price index, so
    lenders' credit losses fall; the secured repo's effects are in tests/world/test_repo_real.py."""
    off = load_scenario("crypto_winter")
    on = load_scenario("crypto_winter", ["policy.repo.enabled=true",
                                         "policy.repo.design='legacy'"])
    loss_diff, fall_diff = [], []
    for seed in replicate_seeds(7, 20):
        a = metrics.summary(run_scenario(off.model_copy(update={"seed": seed})))
        b = metrics.summary(run_scenario(on.model_copy(update={"seed": seed})))
        loss_diff.append(a["credit_losses"] - b["credit_losses"])
        fall_diff.append(np.mean(list(a["peak_price_fall"].values()))
                         - np.mean(list(b["peak_price_fall"].values())))
    d = np.array(loss_diff)
    half = 2.093 * d.std(ddof=1) / np.sqrt(len(d))  # t(0.975, 19)
    assert d.mean() - half > 0, d  # losses: significantly larger without the desk
    # the (value-adjusted) peak-to-trough price fall: larger on average without the desk; the
    # effect is small and its 95 % interval still includes zero at 20 seeds
    assert np.mean(fall_diff) > 0, fall_diff


@pytest.mark.slow
def test_unlimited_buyers_remove_the_fire_sale_discount():
    """Both worlds sell every repossessed GPU as a forced sale in its repossession month
    (``max_hold_months = 0``): with unlimited buyers a patient lender's ask, at most the value
    in best use, clears the month it is posted, so otherwise a lender is forced only by its
    own capital (none is in crypto_winter) and the discount, a measure of forced sales, is
    undefined (None) in the free world."""
    forced = ["lenders.max_hold_months=0"]
    limited = metrics.summary(run_scenario(load_scenario("crypto_winter", forced)))
    free = metrics.summary(run_scenario(load_scenario("crypto_winter",
                                                      ["buyers.unlimited=true", *forced])))
    assert limited["fire_sale_discount"] > 0.2
    assert free["fire_sale_discount"] == pytest.approx(0.0, abs=0.01)
    assert free["credit_losses"] < limited["credit_losses"]
    # at the defaults the limited world has forced sales at a discount too
    assert metrics.summary(run_scenario(load_scenario("crypto_winter")))[
        "fire_sale_discount"] > 0.2


@pytest.mark.slow
def test_parametric_mode_prices_follow_the_exponential_curve():
    model = LiquidationModel(load_scenario("crypto_winter", ["market.mode='parametric'"]))
    checked = 0
    while model.running:
        model.step()
        for g in np.flatnonzero(model.traded):
            q = model.month_volume[g]
            expected = model.fundamental[g] * np.exp(-1.0536 * q / model.units0[g])
            assert model.price[g] == pytest.approx(expected, rel=1e-12)
            checked += 1
    assert checked > 0


def test_mesa_face_agents_network_and_sets():
    model = LiquidationModel(load_scenario("baseline", months=6))
    kinds = {type(a).__name__ for a in model.agents}
    assert {"Lender", "Miner", "NeoCloud", "SecondaryBuyer", "SalvageBuyer", "RepoDesk"} <= kinds
    assert len(model.grid.G) == len(model.network_agents)
    for a in model.network_agents:
        assert a in model.grid[a.node].agents
    miners = model.agents_by_type[type(model.borrower_agents[0])]
    assert len(miners) > 0
    model.run()
    total = sum(a.gpus for a in model.borrower_agents)
    assert total == model.borrowers.fleet.sum()


def test_agent_views_built_at_first_use_change_nothing():
    """The Mesa views are not built with the model; reading them (or model.agents) builds
    them once; a run with the views built first gives the same bits as one without."""
    from sim.qa.bench import fingerprint

    lazy = LiquidationModel("crypto_winter", months=12)
    assert "_views_made" not in lazy.__dict__
    lazy.run()
    assert "_views_made" not in lazy.__dict__
    eager = LiquidationModel("crypto_winter", months=12)
    n = len(eager.agents)  # builds the views
    assert n == eager.lenders.n + eager.borrowers.n + eager.buyers.n + 2  # + salvage + desk
    assert eager.lender_agents[0] is eager.network_agents[0]
    eager.run()
    assert fingerprint(lazy) == fingerprint(eager)
    assert len(lazy.panel_agents) == lazy.panel["cash"].shape[1]
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = lazy.nonsense


@pytest.mark.parametrize("where", ["network", "last"])
def test_a_failed_build_of_the_views_is_undone_and_the_next_use_builds_them(monkeypatch, where):
    """A build of the views that raises (before the network is made, or at its very end, with
    every agent made and placed, the desk included) propagates its error, leaves no agent,
    view or placed desk behind, and the next use builds the views as a first build does."""
    calls = []

    def fail_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    if where == "network":
        real = Network

        def network(*args, **kwargs):
            fail_once()
            return real(*args, **kwargs)

        monkeypatch.setattr("sim.world.model.Network", network)
    else:  # the build's last assignment raises once

        def set_panel(self, value):
            fail_once()
            self.__dict__["panel_agents"] = value

        monkeypatch.setattr(LiquidationModel, "panel_agents",
                            property(lambda self: self.__dict__["panel_agents"], set_panel),
                            raising=False)
    m = LiquidationModel("baseline", months=6)
    with pytest.raises(RuntimeError, match="boom"):
        _ = m.lender_agents
    assert "_views_made" not in m.__dict__ and not AGENT_VIEWS & m.__dict__.keys()
    assert len(super(LiquidationModel, m).agents) == 1  # the desk, made with the model
    assert m.desk.cell is None
    n = len(m.lender_agents)  # builds them again
    assert len(calls) == 2 and n == m.lenders.n
    fresh = LiquidationModel("baseline", months=6)
    assert len(m.agents) == len(fresh.agents) == (m.lenders.n + m.borrowers.n + m.buyers.n + 2)
    assert [a.name for a in m.network_agents] == [a.name for a in fresh.network_agents]
    assert sorted(m.grid.G.edges) == sorted(fresh.grid.G.edges)
    for a in m.network_agents:
        assert a.cell is m.grid[a.node] and a in a.cell.agents
    assert m.desk.cell is m.grid[m.desk.node] and m.panel_agents[0] is m.lender_agents[0]
