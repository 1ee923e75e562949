"""sim.core.firesale: the Greenwood, Landier & Thesmar (2015) closed form against a direct
simulation of the same round, a hand-worked example, and the model's AV rows."""

from __future__ import annotations

import numpy as np
import pytest

from sim.core import firesale as fs


def _draw(rng, n, k, full_l=False):
    M = rng.dirichlet(np.ones(k), n)
    a = rng.lognormal(3.0, 1.0, n)
    b = rng.uniform(1.0, 30.0, n)
    ell = rng.uniform(0.0, 1e-3, k) / a.sum() * 10.0
    L = np.diag(ell) if full_l else ell
    F = rng.uniform(-0.2, 0.05, k)
    return M, a, b, L, F


@pytest.mark.parametrize("seed", range(8))
def test_closed_form_equals_the_simulated_round_on_random_balance_sheets(seed):
    rng = np.random.default_rng(1000 + seed)
    n, k = int(rng.integers(2, 40)), int(rng.integers(1, 12))
    M, a, b, L, F = _draw(rng, n, k, full_l=bool(seed % 2))
    cf, sim = fs.glt_closed_form(M, a, b, L, F), fs.glt_simulate(M, a, b, L, F)
    assert abs(cf["AV"] - sim["AV"]) <= 1e-9 * max(1.0, abs(cf["AV"]))
    for key in ("spillover", "sales", "price_move", "direct", "IV", "S"):
        np.testing.assert_allclose(cf[key], sim[key], rtol=1e-9, atol=1e-12, err_msg=key)
    # systemicness adds up to the aggregate vulnerability (GLT eq. 8)
    assert cf["S"].sum() == pytest.approx(cf["AV"], rel=1e-12, abs=1e-15)
    assert cf["AV"] != 0.0


def test_second_order_terms_are_what_the_closed_form_drops():
    """Selling pro rata to post-shock holdings and marking post-sale positions differs from
    the closed form by terms of relative order |F| (1 + b) (the shock and the sale shrink the
    positions marked): small for a small shock, not zero."""
    rng = np.random.default_rng(7)
    M, a, b, L, _ = _draw(rng, 20, 5)
    F = rng.uniform(-0.01, 0.0, 5)
    cf, nl = fs.glt_closed_form(M, a, b, L, F), fs.glt_simulate(M, a, b, L, F, linear=False)
    gap = abs(nl["AV"] - cf["AV"])
    assert 0.0 < gap <= 2.0 * np.abs(F).max() * (1.0 + b.max()) * abs(cf["AV"])


def test_hand_worked_two_banks_two_assets():
    """Bank 1: a = 100, e = 10 (b = 9), weights (0.5, 0.5); bank 2: a = 50, e = 10 (b = 4),
    weights (0.2, 0.8); L = diag(1e-3, 2e-3) per dollar; F = (-0.1, 0).

    Returns M F = (-0.05, -0.02); B A M F = (9 x 100 x -0.05, 4 x 50 x -0.02) = (-45, -4).
    Net purchases M' B A M F = (0.5 x -45 + 0.2 x -4, 0.5 x -45 + 0.8 x -4) = (-23.3, -25.7).
    Price moves L M' B A M F = (-0.0233, -0.0514).
    M L M' B A M F = (0.5 x -0.0233 + 0.5 x -0.0514, 0.2 x -0.0233 + 0.8 x -0.0514)
                   = (-0.03735, -0.04578); times A: spillover = (-3.735, -2.289) dollars.
    E = 20: AV = -6.024 / 20 = -0.3012; IV = (-0.3735, -0.2289).
    Holdings 1' A M = (60, 90); 1' A M L = (0.06, 0.18); systemicness
    S_1 = (0.5 x 0.06 + 0.5 x 0.18) x -45 / 20 = -0.27,
    S_2 = (0.2 x 0.06 + 0.8 x 0.18) x -4 / 20 = -0.0312; S_1 + S_2 = AV."""
    M = np.array([[0.5, 0.5], [0.2, 0.8]])
    a, b = np.array([100.0, 50.0]), np.array([9.0, 4.0])
    L, F = np.array([1e-3, 2e-3]), np.array([-0.1, 0.0])
    for res in (fs.glt_closed_form(M, a, b, L, F), fs.glt_simulate(M, a, b, L, F)):
        np.testing.assert_allclose(res["sales"], [-23.3, -25.7], rtol=1e-12)
        np.testing.assert_allclose(res["price_move"], [-0.0233, -0.0514], rtol=1e-12)
        np.testing.assert_allclose(res["spillover"], [-3.735, -2.289], rtol=1e-12)
        assert res["AV"] == pytest.approx(-0.3012, rel=1e-12)
        np.testing.assert_allclose(res["IV"], [-0.3735, -0.2289], rtol=1e-12)
        np.testing.assert_allclose(res["S"], [-0.27, -0.0312], rtol=1e-12)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="need M"):
        fs.glt_closed_form(np.ones((2, 2)), np.ones(3), np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        fs.glt_closed_form(np.ones((1, 1)), [1.0], [-1.0], [1.0], [1.0])


def test_validate_rows_for_the_lender_network():
    from sim.qa import validate as val
    from sim.qa.checks import fire_sale

    rows, data = fire_sale.check_fire_sale_closed_form(draws=3)
    by_id = {r.id: r for r in rows}
    assert by_id["7a"].passed and not by_id["7a"].info and data["max_gap"] <= 1e-9
    for cid in ("7b", "7c"):  # information rows: no sourced band, never a fail
        assert by_id[cid].info and by_id[cid].passed
        assert by_id[cid].expected == "information (no sourced band)"
    for key in ("gpu_shock", "loan_shock"):
        r = data[key]
        assert r["AV"] < 0.0 and r["direct"] < 0.0
        assert sum(v["systemicness"] for v in r["by_type"].values()) == pytest.approx(
            r["AV"], rel=1e-12)
    assert data["assets_gap"] < 1.0  # the four classes are the lenders' assets
    assert data["ell"][0] > data["ell"][1] > 0.0 == data["ell"][2] == data["ell"][3]
    report = val.render_report({"checks": rows, "data": {}, "quick": True, "root_seed": 1,
                                "seconds": 0.0, "gk": {"n": 1, "draws": 1}})
    assert "**1 of 1 checks pass** (2 information rows)." in report
    assert report.count("| INFO |") == 2
