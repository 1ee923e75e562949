"""Gai & Kapadia (2010) on the model's own funding network (validate checks 2g-2i).

Worked examples by hand on three lenders with external assets 100 each, interbank share
0.25 and capital ratio 0.12 (sim.core.network.funding_book, the model's t0 funding book):

* chain (each lender has one funder: 0 <- 1 <- 2, mean funding degree 2/3): L[0, 1] =
  L[1, 2] = 25; total assets a = (100, 125, 125); outside = a (1 - 0.12) - borrowing =
  (63, 85, 110); equity = 0.12 a = (12, 15, 15). Lender 0 loses its external assets: at zero
  recovery lender 1 loses 25 > 15 and fails, then lender 2 loses 25 > 15 and fails. With
  Eisenberg-Noe recovery (alpha = beta = 1) lender 1 (assets 100, owes 25 + 85 = 110) pays
  100 x 25 / 110 = 22.73 to lender 2, which loses 2.27 < 15 and survives.
* complete (each lender funded by both others, degree 2): L[i, j] = 12.5; a = 125, outside
  = 110 - 25 = 85, equity 15. Lender 0 fails: lenders 1 and 2 each lose 12.5 < 15: no
  contagion.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.core import contagion as cg
from sim.core.network import funding_book
from sim.qa import validate as val
from sim.qa.checks import classic, common, gk_network, time_to_sell

EXT = np.full(3, 100.0)
SHARE = np.full(3, 0.25)
CAP = np.full(3, 0.12)
CHAIN = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # W[i, j]: j funds i
COMPLETE = np.ones((3, 3)) - np.eye(3)


def test_funding_book_by_hand():
    L, out = funding_book(EXT, SHARE, CAP, CHAIN)
    assert L[0, 1] == 25.0 and L[1, 2] == 25.0 and L.sum() == 50.0
    assert out == pytest.approx([63.0, 85.0, 110.0])
    assets = EXT + L.sum(axis=0)
    assert assets - L.sum(axis=1) - out == pytest.approx([12.0, 15.0, 15.0])  # 0.12 x assets
    L, out = funding_book(EXT, SHARE, CAP, COMPLETE)
    assert L == pytest.approx(12.5 * COMPLETE)
    assert out == pytest.approx([85.0, 85.0, 85.0])


def test_one_failure_cascades_at_degree_one_not_at_degree_two():
    chain = gk_network.funding_cascade(EXT, SHARE, CAP, CHAIN, 0, 0.0, 0.0)
    assert chain.tolist() == [True, True, True]
    complete = gk_network.funding_cascade(EXT, SHARE, CAP, COMPLETE, 0, 0.0, 0.0)
    assert complete.tolist() == [True, False, False]


def test_recovery_stops_the_chain_after_one_step():
    # Eisenberg-Noe (alpha = beta = 1): lender 1 pays 100 x 25/110 to lender 2, who survives
    failed = gk_network.funding_cascade(EXT, SHARE, CAP, CHAIN, 0, 1.0, 1.0)
    assert failed.tolist() == [True, True, False]
    L, out = funding_book(EXT, SHARE, CAP, CHAIN)
    liab = np.zeros((4, 4))
    liab[:3, :3], liab[:3, 3] = L, out
    p = cg.rogers_veraart(liab, np.r_[0.0, 100.0, 100.0, 0.0], 1.0, 1.0)
    assert p[:3] == pytest.approx([0.0, 100.0, 110.0])  # lender 2 (no funders) pays its 110


def test_vulnerable_share_by_hand():
    # chain: lenders 1 and 2 hold one claim of 25 against capital 15; lender 0 holds none
    assert gk_network.vulnerable_share(EXT, SHARE, CAP, CHAIN) == pytest.approx(2 / 3)
    assert gk_network.vulnerable_share(EXT, SHARE, CAP, COMPLETE) == 0.0  # 12.5 < 15


def test_rogers_veraart_without_claim_recovery_by_hand():
    # Rogers-Veraart's three banks with beta = 0: bank 0 (assets 10 + 5 + 10 = 25 < 30)
    # defaults and pays alpha e_0 = 4; then bank 1 (5 + 4 < 25) pays 0.4 x 5 = 2 and bank 2
    # (5 + 2 x 20/25 = 6.6 < 10) pays 0.4 x 5 = 2
    p = cg.rogers_veraart(classic.RV_L, classic.RV_E, 0.4, 0.0)
    assert p.tolist() == [4.0, 2.0, 2.0]
    # and the same as the linear-system path with a vanishing beta
    assert p == pytest.approx(cg.rogers_veraart(classic.RV_L, classic.RV_E, 0.4, 1e-15))


def test_model_t0_equity_is_capital_ratio_times_assets():
    from sim.world.model import LiquidationModel

    m = LiquidationModel(common.baseline(months=1))
    lb = m.lenders
    assert lb.equity == pytest.approx(lb.capital_ratio0 * lb.assets, rel=1e-9)


def test_model_lenders_pool_seeds():
    one, two = gk_network.model_lenders(1), gk_network.model_lenders(2)
    assert len(one["external"]) == 20 and len(two["external"]) == 40
    assert np.array_equal(two["external"][:20], one["external"])
    assert (two["external"] > 0).all() and set(two["capital"]) == {0.10, 0.15, 0.30}


def test_check_rows_small_run_and_band_failure(monkeypatch):
    kw = {"seeds": 1, "z_grid": (1.0, 3.0, 10.0), "draws": 20, "ref_draws": 20}
    rows, data = gk_network.check_gk_model(**kw)
    assert [r.id for r in rows] == ["2g", "2h", "2i"]
    assert [r.info for r in rows] == [False, True, True]
    res = data["model_network"]
    assert res["n"] == 20 and res["z"] == [1.0, 3.0, 10.0]
    assert set(res["modes"]) == {"model", "model_zero_recovery", "gk", "gk_model_clearing",
                                 "model_gk_capital"}
    for o in res["modes"].values():
        assert all(0.0 <= p <= 1.0 for p in o["prob"])
        assert all(0.05 <= e <= 1.0 for e in o["extent"] if np.isfinite(e))
    assert "docs/validation.md" in rows[0].source and "issue" not in rows[0].source
    # GK's sheets at z = 3 in a 20-lender system: a window (one failure takes down >= 1 more)
    assert res["modes"]["gk"]["prob"][1] > 0.5
    monkeypatch.setitem(common.BANDS, "gk_model_peak", {"min": 1.01, "top_max": 0.05})
    rows, _ = gk_network.check_gk_model(**kw)
    assert not rows[0].passed


@pytest.mark.slow
def test_model_calibration_has_no_window_and_gk_sheets_do():
    """The measured finding of 2g/2i on a reduced grid (N = 100, 40 networks per z)."""
    lenders = gk_network.model_lenders(5)
    res = gk_network.gk_model_window(lenders, (2.0, 3.0), draws=40)
    assert max(res["modes"]["model"]["prob"]) == 0.0
    assert max(res["modes"]["model_zero_recovery"]["prob"]) == 0.0
    assert min(res["modes"]["gk"]["prob"]) > 0.5


def test_figure_renders(tmp_path):
    rows, data = gk_network.check_gk_model(seeds=1, z_grid=(1.0, 3.0), draws=5, ref_draws=5)
    png = val._fig_gk_model(data)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_likely_bid_floor_30_days_by_hand():
    """Check 6b's mechanism: the 8 brokers (close_days 18, 3 MW, 2,400 H100 each at their
    reservation price) come within 30 days with probability 1 - exp(-30/18) = 0.811 each;
    hyperscalers and tier-2 clouds (close_days 240: 0.118) do not count. Expected capacity
    8 x 0.811 x 2400 = 15,574 units, well above a 5,512-GPU fleet."""
    import math

    f = time_to_sell.likely_bid_floor(5512)
    assert f["buyers"] == 8
    assert f["capacity"] == pytest.approx(8 * 2400 * (1 - math.exp(-30 / 18)), rel=1e-9)
    assert 0.70 < f["min_bid"] < 0.80  # the broker's reservation over V (0.742 today)
    # over 7 days only 1 - exp(-7/18) = 0.32 each: no buyer type is likely, nothing bounds
    assert time_to_sell.likely_bid_floor(5512, days=7.0)["buyers"] == 0
