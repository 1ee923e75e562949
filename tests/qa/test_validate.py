"""Tests for `liqsim validate` (sim/qa/validate.py, sim/qa/checks/): the fast checks 1, 3 and a
reduced 2, the report and the exit codes, and the pieces the suite is built on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse as sp

from sim.cli import main
from sim.core.config import load_scenario
from sim.core.contagion import gai_kapadia_network, threshold_cascade
from sim.core.market import parametric_price
from sim.qa import validate as val
from sim.qa.checks import asic_2022, classic, common, gai_kapadia, nesting
from sim.world.model import LiquidationModel

FAST_STEPS = [s for s in val.STEPS if s[2] in ("classic", "nesting")]


# ---------------------------------------------------------------- check 1: three-bank examples
def test_classic_examples_pass_with_the_published_numbers():
    rows = classic.check_classic()
    assert [r.id for r in rows] == ["1a", "1b", "1c", "1d", "1e"]
    assert all(r.passed for r in rows)
    np.testing.assert_allclose(rows[0].details["measured"], [270 / 11, 290 / 11, 10], atol=1e-9)
    np.testing.assert_allclose(rows[3].details["measured"], [18, 20, 10], atol=1e-9)
    assert rows[4].details["measured"]["a"] == pytest.approx(13 / 14, abs=1e-12)


def test_classic_check_fails_against_a_wrong_expectation(monkeypatch):
    monkeypatch.setitem(common.BANDS, "rv_cost", {"value": [18.0, 21.0, 10.0], "tol": 1e-4})
    rows = {r.id: r for r in classic.check_classic()}
    assert not rows["1d"].passed
    assert rows["1c"].passed


# ---------------------------------------------------------------- check 3: nesting
def test_nesting_parametric_is_the_exponential_and_auction_within_two_percent():
    rows, cur = nesting.check_nesting()
    assert all(r.passed for r in rows)
    x = np.array(cur["x"])
    np.testing.assert_allclose(cur["parametric"], np.exp(-1.0536 * x), rtol=0, atol=1e-12)
    assert parametric_price(1.0, 10, 100, 1.0536) == pytest.approx(0.9, abs=1e-4)
    auc = np.array(cur["auction"])
    # the ladder's price is the curve at most one block (1 % of the stock) to the right
    assert np.all(auc <= np.array(cur["parametric"]) + 1e-12)
    assert np.max(np.abs(auc / np.exp(-1.0536 * x) - 1)) <= 1 - np.exp(-1.0536 * 0.01) + 1e-12


def test_nesting_fails_with_too_few_buyers():
    # 5 buyers: blocks of 20 % of the stock, so the auction misses the curve by up to ~19 %
    cur = nesting.nesting_curves(n_buyers=5)
    rel = np.abs(np.array(cur["auction"]) / np.array(cur["exact"]) - 1)
    assert rel.max() > 0.02


# ---------------------------------------------------------------- check 2: reduced Gai-Kapadia
@pytest.mark.slow
def test_reduced_gai_kapadia_window():
    rows, data = gai_kapadia.check_gai_kapadia(gai_kapadia.GK_QUICK)
    assert all(r.passed for r in rows), [(r.id, r.measured) for r in rows if not r.passed]
    base = data["base"]
    p = dict(zip(base["z"], base["prob"], strict=True))
    assert p[0.5] == 0.0 and p[10.0] == 0.0 and p[3.0] > 0.5
    # standard error sqrt(p (1 - p) / n) <= 0.04 needs n >= 157 draws at p = 0.5
    assert gai_kapadia.GK_QUICK.draws >= 157
    assert max(base["prob_se"]) <= 0.04


def test_gai_kapadia_window_is_reproducible():
    gk = gai_kapadia.GKConfig(n=100, z=(2.0, 4.0), draws=20)
    assert gai_kapadia.gk_window(gk, False) == gai_kapadia.gk_window(gk, False)
    assert gai_kapadia.gk_window(gk, False, seed=1) != gai_kapadia.gk_window(gk, False, seed=2)


def test_sparse_network_has_the_gai_kapadia_balance_sheets():
    n, z = 1000, 4.0
    X, a_ib, a_m, k = gai_kapadia_network(n, z, np.random.default_rng(3), sparse=True)
    assert sp.issparse(X) and X.diagonal().sum() == 0
    assert abs(X.nnz / n - z) < 0.3  # mean degree (SE ~ 0.06)
    rows = np.asarray(X.sum(axis=1)).ravel()
    np.testing.assert_allclose(rows, a_ib, atol=1e-12)
    np.testing.assert_allclose(a_ib[rows > 0], 0.2)
    np.testing.assert_allclose(a_ib + a_m, 1.0)
    np.testing.assert_allclose(k, 0.04)


@pytest.mark.parametrize("alpha", [None, 1.0536])
def test_threshold_cascade_sparse_equals_dense(alpha):
    rng = np.random.default_rng(8)
    for z in (1.5, 3.0, 5.0):
        X, a_ib, a_m, k = gai_kapadia_network(300, z, rng, sparse=True)
        f0 = np.zeros(300, dtype=bool)
        f0[rng.integers(300)] = True
        a = threshold_cascade(X, a_ib, a_m, k, f0, fire_sale_alpha=alpha)
        b = threshold_cascade(X.toarray(), a_ib, a_m, k, f0, fire_sale_alpha=alpha)
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- check 5 building blocks
def test_hashprice_linked_rent_follows_hashprice():
    cfg = load_scenario("asic_2022")
    m = LiquidationModel(cfg).run()
    r = m.rec
    ratio = r["rent"][: cfg.months + 1, 0] / cfg.environment.generations[0].rent0
    np.testing.assert_allclose(ratio, r["hashprice"][: cfg.months + 1] / 383.0, rtol=1e-12)
    assert r["btc"][cfg.months] / r["btc"][0] == pytest.approx(0.23, abs=0.002)  # -77 %
    assert m.invariants() == []


def test_default_generations_are_not_hashprice_linked():
    m = LiquidationModel(load_scenario("baseline", months=2))
    assert not m.env.hash_linked.any()


def _asic_model(**env_overrides) -> LiquidationModel:
    sets = [f"environment.{k}={v}" for k, v in env_overrides.items()]
    return LiquidationModel(load_scenario("asic_2022", sets, months=1))


def test_expected_hashprice_reverts_to_miners_cost_by_hand():
    """E ln H(t+m)/H(t) = ln(c/H)(1 - exp(-ln(1+g) m/12)) (Prat & Walter 2021 free entry):
    at H = 63, c = 44.8, g = 40 %/yr, one year ahead, ln(44.8/63) x (1 - 1/1.4) = -0.0974076."""
    env = _asic_model().env
    env.hashprice = 63.0
    m = np.array([12.0, 24.0, 1200.0])
    got = env.hash_log_growth(m)
    assert got[0] == pytest.approx(np.log(44.8 / 63.0) * (1 - 1 / 1.4), rel=1e-12)
    assert got[0] == pytest.approx(-0.0974076, abs=1e-7)
    assert got[1] == pytest.approx(np.log(44.8 / 63.0) * (1 - 1 / 1.4**2), rel=1e-12)
    assert got[2] == pytest.approx(np.log(44.8 / 63.0), rel=1e-9)  # the long run is the cost
    env.hashprice = 30.0  # below cost: exit lifts hashprice back
    assert (env.hash_log_growth(m) > 0).all()
    assert _asic_model(hashprice_cost=0).env.hash_log_growth(m) is None


def test_rig_at_miners_cost_is_valued_on_flat_revenue_by_hand():
    """With hashprice at miners' cost nobody expects it to move, so each month of the rig is
    Black's call on the same forward u R 730 with log-sd sigma sqrt(m) (buyer.py docstring)."""
    from sim.core.environment import HOURS_PER_MONTH
    from sim.core.finance import lognormal_call

    m = _asic_model()
    env, bb = m.env, m.buyers
    env.hashprice = env.cfg.hashprice_cost
    env.rent[0] = env.rent0[0] * env.hashprice / env.cfg.hashprice0
    got = bb.reservation(env)
    k = int(np.flatnonzero(bb.type == "tier2")[0])
    months = np.arange(1, bb.life[k] - max(env.age[0], 0) + 1, dtype=float)
    fwd = env.cfg.utilisation * env.rent[0] * HOURS_PER_MONTH
    cost = env.power_cost_per_gpu()[0] + bb.cfg.spot_opex_per_gpu
    s = env.revenue_vol()[0] * np.sqrt(months)
    want = (lognormal_call(np.full_like(months, fwd), cost, s)
            * (1 + bb.hurdle[k]) ** (-months / 12)).sum() - bb.integration[k]
    assert got[k, 0] == pytest.approx(want, rel=1e-9)


def test_reversion_raises_a_rig_below_cost_and_lowers_one_above():
    """Against buyers who expect difficulty to erode hashprice forever (hashprice_cost = 0,
    drift ln(1 - rent_deflation)): below cost, exit restores margins (worth more); far above
    cost, entry erodes the margin faster than the constant drift does (worth less)."""
    on, off = _asic_model(), _asic_model(hashprice_cost=0)
    for model in (on, off):  # H = 42 < 44.8; reservation prices, above the salvage floor
        model.env.hashprice = 42.0
        model.env.rent[0] = model.env.rent0[0] * 42.0 / 383.0
    res_on, res_off = on.buyers.reservation(on.env)[:, 0], off.buyers.reservation(off.env)[:, 0]
    assert (res_on >= res_off).all() and res_on.max() > 1.2 * res_off.max() > 0
    fresh_on, fresh_off = _asic_model(), _asic_model(hashprice_cost=0)  # H = 383 at t0
    assert fresh_on.buyers.fundamental(fresh_on.env)[0] < \
        fresh_off.buyers.fundamental(fresh_off.env)[0]


def test_asic_episode_measures_index_and_auction_prices_separately():
    # lenders with rig loans only (gpu_share 1, asic_2022 before the 2022 lenders got their
    # other assets): failed and deleveraging lenders sell rigs, so every path is exercised
    a = asic_2022.asic_episode(tuple(f"lenders.types.{t}.gpu_share=1.0"
                               for t in ("bank", "private_credit", "abl")))
    assert a["index"][0] == pytest.approx(a["price"][0])  # no forced seller at t0
    assert a["auction_price_fall"] >= a["price_fall"]  # forced sales clear below the index
    assert 0.0 < a["distressed_discount"] < 1.0
    assert a["invariants"] == []
    # the recovery's decomposition: lenders start with no inventory, so every repossessed rig
    # was sold by a lender or is still held; the salvage sink only buys at the floor
    sold = sum(x["units"] for x in a["lender_sales"])
    assert a["repossessed_units"] == sold + a["unsold_units"] > 0
    floor = 0.08 * 10_000.0  # salvage_floor x the S19's list price
    assert all(x["price"] == floor for x in a["lender_sales"] if x["to_salvage"])
    assert all(0 <= x["to_salvage"] <= x["units"] for x in a["lender_sales"])
    assert 0.0 < a["recovery"] < a["collateral_at_index"]  # sold below the index, as in 5c


# ---------------------------------------------------------------- the command
@pytest.mark.slow
def test_validate_quick_writes_report_and_exit_code_matches(tmp_path, capsys):
    out = tmp_path / "v"
    code = main(["validate", "--quick", "--out", str(out)])
    report = (out / "report.md").read_text()
    res = json.loads((out / "results.json").read_text())
    assert "| check | expected | source | measured | result |" in report
    for cid in ("1a", "1e", "2a", "2f", "3a", "3b", "4a", "4b", "5a", "5b", "5c", "6a", "6c"):
        assert f"| {cid} " in report
    # 5b's measured cell carries the recovery's decomposition (_recovery_text)
    (row5b,) = [line for line in report.splitlines() if line.startswith("| 5b ")]
    for part in ("lenders failed", "rigs repossessed", "of the exposure at the index when taken",
                 "lender sales: ", "unsold at the end"):
        assert part in row5b, part
    ids = [c["id"] for c in res["checks"]]
    assert ids[ids.index("5a"):ids.index("5a") + 3] == ["5a", "5b", "5c"]
    for fig in ("gk_window.png", "nesting.png", "fire_sale_time.png"):
        assert (out / fig).stat().st_size > 1000
        assert f"]({fig})" in report
    assert res["quick"] is True and res["gk"]["n"] == 200
    assert code == (0 if res["all_passed"] else 1)
    assert all(c["passed"] for c in res["checks"] if c["id"][0] in "13")
    assert "report written to" in capsys.readouterr().out


@pytest.mark.slow
def test_validate_exit_zero_when_all_pass_and_one_when_a_band_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(val, "STEPS", FAST_STEPS)
    assert main(["validate", "--quick", "--out", str(tmp_path / "ok")]) == 0
    monkeypatch.setitem(common.BANDS, "nest_auction", {"tol": 1e-6})
    assert main(["validate", "--quick", "--out", str(tmp_path / "bad")]) == 1
    res = json.loads((tmp_path / "bad" / "results.json").read_text())
    assert [c["id"] for c in res["checks"] if not c["passed"]] == ["3b"]
    assert "**FAIL**" in (tmp_path / "bad" / "report.md").read_text()


def test_validate_bad_out_is_one_line_exit_two(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["validate", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("liqsim: error:")
