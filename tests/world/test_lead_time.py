"""Delivery lead time of new units (issue 16, check 8a; ``environment.lead_time_path``).

With a lead time of L months for a new unit, the value cap is the new unit's price paid at
delivery plus the net earnings forgone while waiting (Kydland & Prescott 1982, time to build):

    cap = sum_{m=1..L} e_m d_m + P_new d_L      (L = 0: cap = P_new exactly)

The worked examples below are computed by hand in a world where every month earns the same
e = 1,000 $ (no rent drift, no noise, no running cost) and the buyer's monthly discount
factor is 1 / 1.01 (hurdle 1.01^12 - 1)."""

from __future__ import annotations

import numpy as np
import pytest
from test_econ_value import env_book  # the baseline environment and buyers for overrides

from sim.core.config import ConfigError, load_scenario
from sim.core.environment import Environment, path_lead_times, year_month
from sim.qa.checks import backtest
from sim.world.model import LiquidationModel

PATH = "environment.lead_time_path"
BT = "gpu_backtest_2023"
LIST, MULT = 20_000.0, 1.5
P_NEW = 30_000.0  # 1.5 x 20,000 $ installed
E = 1_000.0  # net earnings a month: utilisation 1 x rent x 730 h, no running cost


def _world(lead_points: list | None, **extra) -> dict:
    over = {
        "environment.generations": [
            {"name": "G", "launch_month": 0, "list_price": LIST, "kw_per_gpu": 1.0,
             "rent0": E / 730.0}],
        "environment.rent_vol": 0.0, "environment.rent_deflation": 0.0,
        "environment.utilisation": 1.0, "environment.power_price": 0.0,
        "environment.facility_cost": 0.0, "environment.installed_multiple": MULT,
        "buyers.spot_opex_per_gpu": 0.0, "buyers.value_cap": True,
        "buyers.types": {"only": {"count": 1, "hurdle": 1.01 ** 12 - 1.0,
                                  "integration_cost": 0.0, "capital": 1e9,
                                  "spare_mw": 100.0, "life_months": 96}},
        "buyers.retirement": "life",
        "buyers.salvage_floor": 0.0, "buyers.outside_demand.scrap": 0.0,
        "borrowers.miner.fleet_mix": [1.0], "borrowers.neocloud.fleet_mix": [1.0],
    }
    if lead_points is not None:
        over[PATH] = [{"generation": "G", "points": lead_points}]
    over.update(extra)
    return over


# ---------------------------------------------------------------- the cap, worked by hand
def test_cap_with_a_two_month_lead_time_worked_by_hand():
    """L = 2: 1,000 / 1.01 + 1,000 / 1.01^2 + 30,000 / 1.01^2
    = 990.09901 + 980.29605 + 29,408.88148 = 31,379.27654 $. The present value of 96 months
    at 1,000 $ is far above it (about 61.5 k$), so the cap binds for the value in best use
    and the reservation price alike."""
    env, book = env_book(_world([[0, 2.0], [2, 0.0]]))
    assert env.lead_time().tolist() == [2.0]
    hand = 990.09901 + 980.29605 + 29_408.88148
    assert hand == pytest.approx(31_379.27654, abs=1e-5)
    assert book.fundamental(env)[0] == pytest.approx(hand, abs=1e-4)
    assert book.reservation(env)[0, 0] == pytest.approx(hand, abs=1e-4)
    earn, new = book.cap_by_type(env, parts=True)
    assert earn[0, 0] == pytest.approx(990.09901 + 980.29605, abs=1e-4)
    assert new[0, 0] == pytest.approx(29_408.88148, abs=1e-4)
    # month 1: L = 1 on the straight line from 2 (month 0) to 0 (month 2):
    # 1,000 / 1.01 + 30,000 / 1.01 = 30,693.06931 $
    env.step()
    assert env.lead_time().tolist() == [1.0]
    assert book.fundamental(env)[0] == pytest.approx(30_693.06931, abs=1e-4)
    # month 2: L = 0, the plain bound, the new-unit price exactly
    env.step()
    assert env.lead_time().tolist() == [0.0]
    assert book.fundamental(env)[0] == P_NEW and book.reservation(env)[0, 0] == P_NEW


def test_a_fractional_month_of_waiting_counts_pro_rata():
    """L = 2.5: the third month's earnings count half, and the new price is discounted
    2.5 months (1.01^2.5 = 1.0201 x 1.0049876 = 1.0251877): 990.09901 + 980.29605
    + 0.5 x 970.59015 + 30,000 / 1.0251877 = 1,970.39506 + 485.29507 + 29,262.93080
    = 31,718.62093 $."""
    env, book = env_book(_world([[0, 2.5]]))
    assert 30_000.0 / 1.01 ** 2.5 == pytest.approx(29_262.93080, abs=1e-5)
    assert book.fundamental(env)[0] == pytest.approx(31_718.62093, abs=1e-4)


def test_without_a_lead_time_the_cap_is_the_new_unit_price_bit_for_bit():
    env, book = env_book(_world(None))
    assert not env.has_lead_time and not book._lead_on and book._cap is env.new_unit_price
    assert env.lead_time().tolist() == [0.0]
    assert book.fundamental(env)[0] == P_NEW
    # the cap can fail: without it the value is the uncapped present value (~61.5 k$)
    env, book = env_book(_world(None, **{"buyers.value_cap": False}))
    assert book.fundamental(env)[0] > 2.0 * P_NEW
    # and a lead time does nothing when the cap is off
    env2, book2 = env_book(_world([[0, 2.0]], **{"buyers.value_cap": False}))
    assert book2.fundamental(env2)[0] == book.fundamental(env)[0]
    assert book2.cap_by_type(env2) is None


def test_a_zero_lead_time_path_runs_bit_for_bit_as_none():
    """A path whose lead time is 0 throughout takes the lead-cap code and gives the plain
    cap exactly (sum of nothing + P_new x 1): a 12-month baseline run is identical."""
    over = {PATH: [{"generation": "H100", "points": [[0, 0.0], [12, 0.0]]}]}
    a = LiquidationModel(load_scenario("baseline", months=12)).run()
    b = LiquidationModel(load_scenario("baseline", overrides=over, months=12)).run()
    assert b.buyers._lead_on and not a.buyers._lead_on
    for key in ("fundamental", "price"):
        assert np.array_equal(a.rec[key], b.rec[key]), key


def test_path_lead_times_is_straight_lines_between_points():
    assert path_lead_times([[0, 9.0], [3, 0.0]]).tolist() == [9.0, 6.0, 3.0, 0.0]


def test_lead_time_is_zero_before_the_path_and_holds_its_last_value_after():
    over = {PATH: [{"generation": "H100", "points": [[2, 4.0], [4, 2.0]]}]}
    env = Environment(load_scenario("baseline", overrides=over), np.random.default_rng(0))
    h = env.names.index("H100")
    seen = []
    for _ in range(6):
        seen.append(env.lead_time()[h])
        assert (np.delete(env.lead_time(), h) == 0.0).all()
        env.step()
    # 0 before month 2; 4 -> 2 on the path; after month 4 the last value holds (a path that
    # should end in no wait ends with a 0 point, as the backtest's does)
    assert seen == [0.0, 0.0, 4.0, 3.0, 2.0, 2.0]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("points, generation, message", [
    ([[0, -1.0]], "H100", "must be >= 0"),
    ([[0, 61.0]], "H100", "<= 60 months"),
    ([[0, 3.0], [0, 2.0]], "H100", "months must increase strictly"),
    ([[3, 3.0], [1, 2.0]], "H100", "months must increase strictly"),
    ([[0, 3.0, 1.0]], "H100", "expected [month, months of lead time]"),
    ([[0.5, 3.0]], "H100", "whole number"),
    ([[0, 3.0]], "V100", "no such generation"),
    ([[0, True]], "H100", "expected a number"),
])
def test_bad_lead_time_paths_are_config_errors(points, generation, message):
    with pytest.raises(ConfigError) as e:
        load_scenario("baseline", overrides={PATH: [{"generation": generation,
                                                    "points": points}]})
    text = str(e.value)
    assert message in text and "environment.lead_time_path.0" in text and "\n" not in text


def test_a_second_path_for_one_generation_is_refused():
    two = [{"generation": "H100", "points": [[0, 1.0]]}] * 2
    with pytest.raises(ConfigError, match="second path"):
        load_scenario("baseline", overrides={PATH: two})


# ---------------------------------------------------------------- the backtest's path
def test_backtest_lead_time_path_is_the_sources_in_months():
    """Weeks to months at 12/52: 40 weeks = 9.23, 44 (the midpoint of 36-52) = 10.15,
    39 = 9.00, 10 (the midpoint of 8-12) = 2.31; 3-4 months = 3.5. Months from 2023-03:
    Nov 2023 = 8, Dec 2023 = 9, Feb 2024 = 11, Apr 2024 = 13, Aug 2024 = 17."""
    cfg = load_scenario(BT)
    (p,) = cfg.environment.lead_time_path
    assert p.generation == "H100"
    weeks = [40, 44, 39]
    assert [round(w * 12 / 52, 2) for w in weeks] == [9.23, 10.15, 9.0]
    assert round(10 * 12 / 52, 2) == 2.31
    assert p.points == [[0, 9.23], [8, 10.15], [9, 9.0], [11, 3.5], [13, 2.31], [17, 0.0]]
    assert cfg.start == "2023-03"
    assert [year_month(m, cfg.start) for m in (8, 9, 11, 13, 17)] == [
        "2023-11", "2023-12", "2024-02", "2024-04", "2024-08"]


def test_check_8a_reads_the_scenarios_lead_time(monkeypatch):
    """The 8a row reports the cap the scenario's path gives; with the path removed (the
    scenario read through a patched loader) the same check reports the plain cap, 35.75 k$,
    and fails (one seed each: the H100's value does not depend on the draws)."""
    facts = backtest.backtest_facts.__wrapped__
    monkeypatch.setattr(backtest, "backtest_facts", lambda: facts(1))
    rows, d = backtest.check_backtest()
    cap = d["cap"]
    t = d["peak_month"]
    assert t == 8 and cap["lead"][t] == pytest.approx(10.15, abs=1e-12)
    assert d["peak_2023"] == pytest.approx(cap["earn"][t] + cap["new_term"][t], rel=1e-12)
    assert cap["value"] == d["value"]  # the cap path's best value is the value recorded
    assert "10.15 months" in rows[0].measured and "the cap binds" in rows[0].measured
    assert rows[0].passed and rows[4].id == "8e" and rows[4].info
    # 8e: 40 k$ + 0.3 x 27.5 k$ = 48.25 k$ installed
    assert d["spot_installed"] == pytest.approx(48_250.0, abs=1e-6)
    assert f"{d['peak_2023'] / 48_250.0 - 1.0:+.1%}" in rows[4].measured

    real = backtest.load_scenario
    monkeypatch.setattr(backtest, "load_scenario",
                        lambda name, **kw: real(name, overrides={PATH: []}, **kw))
    rows, d = backtest.check_backtest()
    assert d["peak_2023"] == 35_750.0 and max(d["cap"]["lead"]) == 0.0
    assert "no lead time" in rows[0].measured and not rows[0].passed


# ---------------------------------------------------------------- the bound in a run
def test_no_value_above_the_lead_time_cap_in_the_backtest():
    """Every month of the backtest: the value in best use <= the highest type's cap,
    every reservation <= its type's cap at the buyers' common expectation row, the price
    index <= the highest of them; where the lead time is 0 (from Aug 2024) the plain bound
    value <= new-unit price; and the lead time does lift values above it in 2023."""
    cfg = load_scenario(BT)
    m = LiquidationModel(cfg)
    tol = 1.0 + 1e-12
    above = 0
    while True:
        env, b = m.env, m.buyers
        top = np.maximum.reduce(b.cap_by_type(env), axis=0)
        assert (m.fundamental <= top * tol).all(), env.t
        x = b.extrap
        assert (x == x[0]).all()
        res_cap = b.cap_by_type(env, x[0])[b.type_idx]
        assert (b.reservation(env) <= res_cap * tol).all(), env.t
        assert (m.price <= np.maximum(top, res_cap.max(axis=0)) * tol).all(), env.t
        plain = env.lead_time() == 0.0
        assert (m.fundamental[plain] <= env.new_unit_price[plain]).all(), env.t
        above += int((m.fundamental > env.new_unit_price).any())
        if env.t >= cfg.months:
            break
        m.step()
    assert above == 17  # months 0-16: the H100 is worth more than a new unit
