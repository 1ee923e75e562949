"""The GPU backtest and the re-specified rent checks (issue 16): observed rent paths
(``environment.rent_path``), the frontier price of compute (check 4a), the A100 rent (4e) and
the backtest's used-H100 value path (check 8). Every number is worked by hand in the test."""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.config import ConfigError, load_scenario
from sim.core.environment import Environment, path_rents
from sim.qa import validate as val
from sim.qa.checks import backtest, calibration, compute

BT = "gpu_backtest_2023"
PATH = "environment.rent_path"


# ---------------------------------------------------------------- the rent path
def test_path_rents_is_straight_lines_between_points():
    # 10 -> 2 over 4 months: 2 $/h a month
    assert path_rents([[0, 10.0], [4, 2.0]]).tolist() == [10.0, 8.0, 6.0, 4.0, 2.0]
    # a flat stretch, then a fall: months 2..5
    got = path_rents([[2, 3.0], [3, 3.0], [5, 4.0]])
    assert got.tolist() == pytest.approx([3.0, 3.0, 3.5, 4.0])


def test_backtest_h100_rent_at_given_months():
    """The scenario's points [[0, 10], [9, 10], [19, 2], [31, 1.70], [36, 2.35]]: month 10 is
    10 - 8/10 = 9.2; month 25 is 2 - 0.30 x 6/12 = 1.85; month 33 is 1.70 + 0.65 x 2/5 = 1.96
    (Dec 2025: the calibration's straight-line figure)."""
    cfg = load_scenario(BT)
    env = Environment(cfg, np.random.default_rng(0))
    h = env.names.index("H100")
    rents = {0: env.rent[h]}
    for _ in range(cfg.months):
        env.step()
        rents[env.t] = env.rent[h]
    want = {0: 10.0, 9: 10.0, 10: 9.2, 19: 2.0, 25: 1.85, 31: 1.70, 33: 1.96, 36: 2.35}
    for t, r in want.items():
        assert rents[t] == pytest.approx(r, abs=1e-12), t


def test_after_the_last_point_the_rent_process_carries_on():
    """No noise (rent_vol = 0): one month after the last point the rent is the last value
    times (1 - d)^(1/12) = 2.35 x 0.85^(1/12)."""
    cfg = load_scenario(BT, overrides={"environment.rent_vol": 0.0}, months=37)
    env = Environment(cfg, np.random.default_rng(1))
    for _ in range(37):
        env.step()
    assert env.rent[env.names.index("H100")] == pytest.approx(2.35 * 0.85 ** (1 / 12), rel=1e-12)


def test_a_market_path_moves_every_ai_generation_by_its_ratio():
    """The shipped path is the market factor: A100 (4.10 $/h at t0) moves with the H100,
    month 10: 4.10 x 9.2 / 10 = 3.772; month 36: 4.10 x 2.35 / 10 = 0.9635 (38.3 % a year:
    1 - 0.235^(1/3)). H200 launches in month 21 at 2.59 and is moved from month 22 on:
    month 33 is 2.59 x 1.96 / 1.95. The noise and trend are gone for them over the path."""
    cfg = load_scenario(BT)
    env = Environment(cfg, np.random.default_rng(3))
    a, h2 = env.names.index("A100"), env.names.index("H200")
    got = {}
    for _ in range(cfg.months):
        env.step()
        got[env.t] = env.rent.copy()
    assert got[10][a] == pytest.approx(3.772, rel=1e-12)
    assert got[36][a] == pytest.approx(0.9635, rel=1e-12)
    assert got[21][h2] == 2.59 and got[33][h2] == pytest.approx(2.59 * 1.96 / 1.95, rel=1e-12)
    other = Environment(cfg, np.random.default_rng(4))  # another seed: the same rents
    for _ in range(cfg.months):
        other.step()
    assert np.allclose(other.rent, got[36], rtol=1e-12, atol=0)


def test_a_generation_path_changes_its_generation_only():
    """With scope = "generation" the path replaces one generation's rent; the draws and every
    other rent are as without it (same seed)."""
    cfg = load_scenario(BT)
    own = [{"generation": "H100", "points": cfg.environment.rent_path[0].points,
            "scope": "generation"}]
    over = {PATH: []}
    a = Environment(load_scenario(BT, overrides={PATH: own}), np.random.default_rng(7))
    b = Environment(load_scenario(BT, overrides=over), np.random.default_rng(7))
    h = a.names.index("H100")
    for _ in range(19):  # to month 19, the point 2.0
        a.step()
        b.step()
    others = np.arange(a.n_gen) != h
    assert np.array_equal(a.rent[others], b.rent[others]) and a.btc == b.btc
    assert a.rent[h] == 2.0 != b.rent[h]


@pytest.mark.parametrize("points, generation, message", [
    ([[0, 10.0], [0, 5.0]], "H100", "months must increase strictly"),
    ([[0, 10.0, 3.0]], "H100", "expected [month, rent"),
    ([[0.5, 10.0]], "H100", "whole number"),
    ([[0, 0.0]], "H100", "must be > 0"),
    ([[0, 10.0]], "V100", "no such generation"),
    ([[5, 10.0]], "H100", "after month 0"),
    ([[0, True]], "H100", "expected a number"),
])
def test_bad_rent_paths_are_config_errors(points, generation, message):
    with pytest.raises(ConfigError) as e:
        load_scenario(BT, overrides={PATH: [{"generation": generation, "points": points}]})
    text = str(e.value)
    assert message in text and "environment.rent_path.0" in text and "\n" not in text


def test_a_rent_shock_inside_a_market_path_is_refused():
    """The market path sets every AI rent over months 0-36, so a rent shock in month 5 would
    be cancelled silently: a config error. After the path, or with scope = "generation",
    the shock is allowed (and moves rents)."""
    shock = {"month": 5, "kind": "rent", "size": 0.5}
    with pytest.raises(ConfigError, match="shocks.0: a rent shock in month 5, inside"):
        load_scenario(BT, overrides={"shocks": [shock]})
    load_scenario(BT, months=40, overrides={"shocks": [dict(shock, month=38)]})
    cfg = load_scenario(BT)
    own = [{"generation": "H100", "points": cfg.environment.rent_path[0].points,
            "scope": "generation"}]
    load_scenario(BT, overrides={"shocks": [shock], PATH: own})


def test_a_second_path_for_one_generation_and_a_hashprice_path_are_refused():
    two = [{"generation": "H100", "points": [[0, 1.0]]}] * 2
    with pytest.raises(ConfigError, match="second path"):
        load_scenario(BT, overrides={PATH: two})
    markets = [{"generation": "H100", "points": [[0, 1.0]]},
               {"generation": "A100", "points": [[0, 1.0]]}]
    with pytest.raises(ConfigError, match="second market path"):
        load_scenario(BT, overrides={PATH: markets})
    with pytest.raises(ConfigError, match="scope"):
        load_scenario(BT, overrides={PATH: [{"generation": "H100", "points": [[0, 1.0]],
                                             "scope": "world"}]})
    with pytest.raises(ConfigError, match="hashprice"):
        load_scenario("asic_2022", overrides={PATH: [{"generation": "S19",
                                                      "points": [[0, 1.0]]}]})


# ---------------------------------------------------------------- price of compute (4a)
def test_frontier_price_of_compute_two_generations():
    """Old: 2 $/h for 1,000 TFLOPS = 2 $/PFLOP-h. New, from month 12: 3 $/h for 6,000 TFLOPS
    = 0.5 $/PFLOP-h, dearer per hour but cheaper per FLOP. No trend: the frontier falls from
    2 to 0.5 in 12 months, 75 % in the year; over 24 months 50 % a year (1 - 0.25^(1/2))."""
    rent = np.tile([2.0, 3.0], (25, 1))
    c = compute.compute_price_path(rent, np.array([-5, 12]), np.array([1000.0, 6000.0]))
    assert c[:12].tolist() == [2.0] * 12 and c[12:].tolist() == [0.5] * 13
    assert compute.annual_decline(c, 0, 12) == pytest.approx(0.75, abs=1e-12)
    assert compute.annual_decline(c) == pytest.approx(0.5, abs=1e-12)
    # a generation without a compute figure (0) is left out, whatever its rent
    c0 = compute.compute_price_path(rent, np.array([-5, 0]), np.array([1000.0, 0.0]))
    assert c0.tolist() == [2.0] * 25


def test_annual_decline_of_a_constant_rate():
    path = 100.0 * 0.9 ** (np.arange(25) / 12.0)  # 10 % a year
    assert compute.annual_decline(path) == pytest.approx(0.10, abs=1e-12)


# ---------------------------------------------------------------- the backtest (8, 4e)
@pytest.mark.slow
def test_backtest_value_path_and_rows():
    rows, d = backtest.check_backtest()
    ids = [r.id for r in rows]
    assert ids == ["8a", "8b", "8c", "8d", "8e"] and rows[3].info and rows[4].info
    v = np.array(d["value"])
    # 2023: the rent (10 $/h) puts the present value far above the new-unit price, so the
    # value is the cap: with the H100's lead time (environment.lead_time_path) the new-unit
    # price 1.3 x 27,500 = 35,750 $ paid at delivery plus the earnings forgone while waiting
    # (tests/world/test_lead_time.py works the cap by hand)
    assert d["new_unit_price"] == 35_750.0
    assert d["peak_2023"] == pytest.approx(d["cap"]["cap"][d["peak_month"]], rel=1e-12)
    assert d["peak_2023"] > 35_750.0 and rows[0].passed == (d["peak_2023"] >= 40_000.0)
    # the value follows the rent: it falls to the trough month (31, 1.70 $/h) and recovers
    assert int(v.argmin()) == 31 and v[36] > v[31]
    assert d["value_seed_spread"] == 0.0  # the H100's value depends on its rent path only
    # 8c: the mean of value / new-unit price over months 24..35, recomputed here
    assert d["year3_months"] == list(range(24, 36))
    assert d["year3_ratio"] == pytest.approx(v[24:36].mean() / 35_750.0, rel=1e-12)
    assert rows[2].passed == (0.40 <= d["year3_ratio"] <= 0.50)
    assert d["range_2026"] == [v[34:37].min(), v[34:37].max()]
    assert d["dates"][0] == "2023-03" and d["dates"][34] == "2026-01"


@pytest.mark.slow
def test_4e_is_information_and_the_a100_moves_with_the_h100_path():
    """Under the market factor the A100's decline is the H100 path's, 1 - (2.35 / 10)^(1/3)
    = 38.28 % a year on every seed, and it ends at 4.10 x 0.235 = 0.9635 $/h: an input, so
    4e is an information row, never a pass."""
    d = backtest.backtest_facts()
    assert d["a100_decline"] == pytest.approx(1.0 - 0.235 ** (1.0 / 3.0), rel=1e-9)
    assert d["a100_decline_seeds"] == [d["a100_decline_seeds"][0]] * backtest.BACKTEST_SEEDS
    assert d["a100_rent"][-1] == pytest.approx(0.9635, rel=1e-12)
    rows, _f = calibration.check_calibration(n_seeds=2)
    row = next(r for r in rows if r.id == "4e")
    assert row.info and row.expected.startswith("information")
    assert "38.3 %" in row.measured and "-20 %" in row.measured


def test_the_2023_peak_is_the_lead_time_cap_worked_independently():
    """Month 8 (Nov 2023) of the backtest, the hyperscaler (hurdle 8 %): lead time 44 weeks
    = 10.15 months (Omdia), rent 10 $/h, utilisation 0.85, expected drift ln(0.85) a year,
    sigma 0.04 a month, running cost c. The cap is sum_{m=1}^{11} w_m C_m 1.08^(-m/12) +
    35,750 x 1.08^(-10.15/12), w_m = min(1, max(0, 10.15 - m + 1)) and C_m the Black call
    F N(d1) - c N(d1 - s), F = 0.85 x 10 x 730 x 0.85^(m/12), s = 0.04 sqrt(m), written out
    here with math.erf (not the model's code): 52,157.80 + 33,496.94 = 85,654.74 $."""
    from math import erf, log, sqrt

    from agents.buyer import running_cost

    cfg = load_scenario(BT)
    env = Environment(cfg, np.random.default_rng(0))
    for _ in range(8):
        env.step()
    h = env.names.index("H100")
    assert env.lead_time()[h] == pytest.approx(10.15, abs=1e-12) and env.rent[h] == 10.0
    c = float(running_cost(cfg.buyers, env)[h])

    def ncdf(x):
        return 0.5 * (1.0 + erf(x / sqrt(2.0)))

    earn = 0.0
    for m in range(1, 12):
        w = min(1.0, max(0.0, 10.15 - m + 1))
        f = 0.85 * 10.0 * 730.0 * 0.85 ** (m / 12.0)
        sd = 0.04 * sqrt(m)
        d1 = (log(f / c) + 0.5 * sd * sd) / sd
        earn += w * (f * ncdf(d1) - c * ncdf(d1 - sd)) * 1.08 ** (-m / 12.0)
    new = 35_750.0 * 1.08 ** (-10.15 / 12.0)
    assert new == pytest.approx(33_496.94, abs=0.01)
    assert earn == pytest.approx(52_157.80, abs=0.01)
    _rows, d = backtest.check_backtest()
    assert d["peak_month"] == 8 and d["peak_2023"] == pytest.approx(earn + new, rel=1e-9)


def test_report_has_the_month_by_month_backtest_table():
    rows, d = backtest.check_backtest()
    result = {"checks": rows, "data": {"backtest": d}, "quick": True, "root_seed": 1,
              "seconds": 0.0, "gk": {"n": 1, "draws": 1}}
    text = val.render_report(result)
    assert "## GPU backtest, month by month" in text
    # month 0: 9.23 months of lead time; the value is its cap (tests/world/test_lead_time.py)
    assert "| 2023-03 | 0 | 10.00 | 9.23 | 81,569 | 81,569 |" in text
    assert "| 2024-09 | 18 | 2.80 | 0.00 | 35,750 | 35,750 |" in text
    assert "| 2026-03 | 36 | 2.35 |" in text
