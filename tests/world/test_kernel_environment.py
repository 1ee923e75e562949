"""Phase 1's kernel (sim.world.kernels.environment) against the numpy code, its oracle: one
month each way from copies of the same state, compared to the bit (every book array and
number, the month's hand-over and the buyers' valuation cache phase 6 reads), on the shipped
scenarios, switches and states the golden cases do not reach (expectations of +-0 and NaN, no
rent trend, hashprice-linked rigs, no value cap, a type without buyers), plus the switches the
kernel leaves to numpy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from test_lead_time import _world  # one generation, one buyer, a binding cap
from test_resident import rebound

from sim.core import numerics as nm
from sim.core.config import load_scenario
from sim.core.jit import kernel
from sim.qa.oracle import mismatches, model_state, same_bits
from sim.world import phases
from sim.world.kernels import environment as ke
from sim.world.model import LiquidationModel


def _numpy_model(scenario: str, months: int, **over) -> LiquidationModel:
    m = LiquidationModel(scenario, months=months + 3, engine="numpy", **over)
    for _ in range(months):
        m.step()
    return m


def _one_month_each_way(m: LiquidationModel, prepare=None):
    """Phase 1 from two deep copies of ``m``, on numpy and on the kernel: (numpy model, its
    MonthState, compiled model, its MonthState)."""
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    if prepare is not None:
        prepare(a)
        prepare(b)
    b.engine = "compiled"
    return a, phases.environment.run(a), b, phases.environment.run(b)


def _assert_same(a, ma, b, mb) -> None:
    sa, sb = model_state(a), model_state(b)
    assert sorted(sa) == sorted(sb)
    bad = [k for k in sa if not same_bits(sa[k], sb[k])]
    assert bad == []
    assert ma.t == mb.t and same_bits(ma.prev_fundamental, mb.prev_fundamental)
    # the valuation cache phase 6's reservation prices read: the same key and values
    ca, cb = a.buyers._by_type_cache, b.buyers._by_type_cache
    assert ca[1] == cb[1]
    assert same_bits(ca[2], cb[2]) and same_bits(ca[3], cb[3])
    assert same_bits(a.buyers.reservation(a.env), b.buyers.reservation(b.env))
    assert type(a.env.btc) is type(b.env.btc) and type(a.env.stress) is type(b.env.stress)


@pytest.mark.parametrize(("scenario", "months", "over"), [
    ("baseline", 0, {}),
    ("baseline", 9, {}),  # the month before Rubin launches (t = 10)
    ("crypto_winter", 2, {}),  # month 3: the btc and rent shocks, stress
    ("crypto_winter", 20, {}),
    ("next_gen_launch", 9, {}),
    ("asic_2022", 4, {}),  # hashprice-linked rigs, BTC without a random walk
    ("crypto_winter", 6, {"buyers.value_cap": False}),
    ("crypto_winter", 6, {"buyers.retirement": "life"}),
    ("crypto_winter", 6, {"buyers.types.tier2.count": 0}),
    ("crypto_winter", 6, {"environment.rent_deflation": 0.0}),  # ln(1 - d) = -0.0
])
def test_kernel_month_is_numpy_month(scenario, months, over):
    _assert_same(*_one_month_each_way(_numpy_model(scenario, months, **over)))


@pytest.mark.parametrize("x0", [
    [0.0, -0.0, 0.0, -0.0, 0.0],  # both engines value one row
    [-0.05, -0.0, 0.0, -0.3, 0.02],  # two rows; +-0 generations take row 0's values
    [np.nan, 0.0, -0.1, 0.0, -0.0],
    [-1.0, -1.0, -1.0, -1.0, -1.0],
])
@pytest.mark.parametrize("deflation", [0.15, 0.0])
def test_kernel_on_any_common_expectation(x0, deflation):
    """Expectations common to all buyers (as ``adapt`` keeps them) with signed zeros, NaN and
    the bound, at the default trend and with none (ln(1 - 0) = -0.0: mu = -0.0 + x keeps the
    sign of x's zero, so a -0 generation is not row 0's)."""
    m = _numpy_model("crypto_winter", 5, **{"environment.rent_deflation": deflation})

    def prepare(model):
        model.buyers.extrap[:] = np.array(x0)[None, :]
    _assert_same(*_one_month_each_way(m, prepare))


def test_kernel_with_a_nan_rent():
    """A NaN rent (never in a run) is valued as numpy values it: NaN terms in every month,
    alive or not, so NaN values; the value in best use takes NaN through np.maximum."""
    m = _numpy_model("baseline", 3)

    def prepare(model):
        model.env.rent[1] = np.nan
    _assert_same(*_one_month_each_way(m, prepare))


@kernel
def _values_by_type(t, rent, launch, hash_linked, hash_on, hashprice, p, x0, m, sqrt_m, cost,
                    rvol, disc, life, integration, cap_on, cap, lead_on, lead, cap0):
    # row 0's growth exp(mu m / 12) at the tests' mu = ln(1 - d) + 0.0 = 0: 1 in every month
    return ke.values_by_type(t, rent, launch, hash_linked, hash_on, hashprice, p, x0, m,
                             sqrt_m, cost, rvol, disc, life, integration, cap_on, cap, lead_on,
                             lead, cap0, np.ones(m.shape[0]),
                             np.empty((rent.shape[0], m.shape[0])), np.full(rent.shape[0], np.nan))


def test_values_by_type_by_hand():
    """One generation, one type, three months, sigma = 0 (the call is max(F - c, 0)), no
    trend: terms (100 - 40) d_m for the two months the unit lives (life 4 - age 2), summed,
    minus the integration cost: 60 x 0.5 + 60 x 0.25 - 5 = 40; capped at 30 with the cap;
    0 before launch; with a lead time the cap of :meth:`BuyerBook.lead_cap` (below). Compiled
    and in Python."""
    p = np.zeros(ke.N_PARAMS)
    p[ke.P_LOG_DECAY], p[ke.P_UTIL], p[ke.P_HOURS] = 0.0, 1.0, 1.0
    m = np.array([1.0, 2.0, 3.0])
    disc = np.array([[0.5, 0.25, 0.125]])

    def args(t, x0):
        return (t, np.array([100.0]), np.array([2], dtype=np.int64), np.zeros(1, bool), False,
                1.0, p, np.array([x0]), m, np.sqrt(m), np.full((1, 3), 40.0), np.zeros(1),
                disc, np.array([4], dtype=np.int64), np.array([5.0]))

    none, cap0 = np.zeros(0), np.zeros((1, 1))
    for f in (_values_by_type, _values_by_type.py):
        v = f(*args(4, 0.0), False, np.zeros(1), False, none, cap0)
        assert v.shape == (1, 1, 1) and v[0, 0, 0] == 40.0
        assert f(*args(4, -0.0), True, np.array([30.0]), False, none, cap0).tolist() == [[[30.0]]]
        # not shipping
        assert f(*args(1, 0.0), False, np.zeros(1), False, none, cap0).tolist() == [[[0.0]]]
        # x0 = 12 ln 2: growth 2^m, F = 200 and 400 in the two live months; row 0 as above
        two = f(*args(4, 12.0 * np.log(2.0)), False, np.zeros(1), False, none, cap0)
        assert two.shape == (2, 1, 1) and two[0, 0, 0] == 40.0
        assert two[1, 0, 0] == pytest.approx(160 * 0.5 + 360 * 0.25 - 5, rel=1e-14)
        # a lead time of 1.5 months: weights 1 and 0.5 on the first two terms (30, 15), plus
        # the new price 20 x 0.5^1.5 = 7.0711: cap 30 + 7.5 + 7.0711 = 44.5711 > 40 (row 0's
        # cap, kept in cap0); at a new price of 1 it is 38.0536 < 40 and binds
        v = f(*args(4, 0.0), True, np.array([20.0]), True, np.array([1.5]), cap0)
        assert v[0, 0, 0] == 40.0 and cap0[0, 0] == pytest.approx(37.5 + 20 * 0.5 ** 1.5)
        v = f(*args(4, 0.0), True, np.array([1.0]), True, np.array([1.5]), cap0)
        assert v[0, 0, 0] == pytest.approx(37.5 + 0.5 ** 1.5, rel=1e-14)


def test_covers_all_but_a_book_without_buyers():
    assert phases.environment.covers(LiquidationModel("crypto_winter", months=1))
    assert phases.environment.covers(LiquidationModel("gpu_backtest_2023", months=1))
    none = {f"buyers.types.{t}.count": 0 for t in ("hyperscaler", "tier2", "broker")}
    assert not phases.environment.covers(LiquidationModel("baseline", months=1, **none))


NO_BUYERS = {f"buyers.types.{t}.count": 0 for t in ("hyperscaler", "tier2", "broker")}
LEAD = {"environment.lead_time_path": [
    {"generation": "H100", "points": [[0, 6.0], [4, 2.5], [12, 0.0]]},
    {"generation": "Rubin", "points": [[8, 9.0], [20, 1.0]]}]}
PATHS = {"environment.rent_path": [
    {"generation": "H100", "points": [[0, 2.0], [10, 1.2], [20, 1.5]], "scope": "generation"},
    {"generation": "A100", "points": [[0, 1.2], [2, 1.1]]}]}  # a market path


@pytest.mark.parametrize(("scenario", "over"), [
    ("gpu_backtest_2023", {}),  # a market rent path and a lead time (H100)
    ("baseline", LEAD),
    ("baseline", PATHS),
    ("baseline", {**LEAD, "buyers.types.hyperscaler.count": 0}),
    ("baseline", {**LEAD, "buyers.value_cap": False}),
])
def test_whole_runs_with_rent_paths_and_lead_times(scenario, over):
    """Runs the golden cases do not cover, on both engines, compared as the oracle compares
    (records, events, summary, every book array)."""
    cfg = load_scenario(scenario, overrides=over, months=24)
    a = LiquidationModel(cfg, engine="numpy").run()
    b = LiquidationModel(cfg, engine="compiled").run()
    assert mismatches(a, b) == []


def test_a_binding_lead_cap_by_hand_on_both_engines():
    """test_lead_time's one-generation world, whose cap binds: the lead time falls from 2
    months at t = 0 to 0 at t = 2, so at t = 1 it is L = 1 and the value in best use is the
    cap 1,000 / 1.01 + 30,000 / 1.01 = 30,693.06931 $ (one month's earnings forgone, the new
    price paid a month later), on the kernel as on numpy, to the bit."""
    over = _world([[0, 2.0], [2, 0.0]])
    a, ma, b, mb = _one_month_each_way(LiquidationModel(
        load_scenario("baseline", overrides=over, months=3), engine="numpy"))
    assert mb.t == 1 and b.fundamental[0] == pytest.approx(30_693.06931, abs=1e-5)
    _assert_same(a, ma, b, mb)


def test_uncompiled_kernel_is_the_compiled_one():
    """``env_month.py`` (the same code run by Python) gives the compiled kernel's bits."""
    m = _numpy_model("crypto_winter", 4)
    _, _, b, _ = _one_month_each_way(m)
    real = ke.env_month
    try:
        ke.env_month = real.py
        _, _, d, _ = _one_month_each_way(m)
    finally:
        ke.env_month = real
    sb, sd = model_state(b), model_state(d)
    assert [k for k in sb if not same_bits(sb[k], sd[k])] == []


def test_kernel_with_expectations_that_differ_between_buyers():
    """Rows of ``extrap`` that differ (never in a run: ``adapt`` moves them alike): the kernel
    hands no reservation prices over, and BuyerBook.reservation values buyer by buyer."""
    m = _numpy_model("crypto_winter", 5)

    def prepare(model):
        model.buyers.extrap[0] = -0.05
    a, ma, b, mb = _one_month_each_way(m, prepare)
    assert b.buyers._res_cache is None or b.buyers._res_cache[1][0] != b.env.t
    _assert_same(a, ma, b, mb)


def _fresh_reservation(book, env):
    """Reservation prices valued anew (no cache of the book's)."""
    c = copy.deepcopy(book)
    c._res_cache = c._by_type_cache = None
    return c.reservation(env)


def test_reservation_kept_for_its_state_and_handed_out_as_copies():
    """The reservation prices the compiled phase 1 hands to the buyers are theirs at that
    state; each call returns a new array (writing into one leaves the next call's alone), and
    a change of the expectations or the rents in place is valued anew."""
    m = LiquidationModel("crypto_winter", months=12)
    for _ in range(8):
        m.step()
    b, env = m.buyers, m.env
    phases.environment.run(m)
    assert b._res_cache is not None and b._res_cache[1][0] == env.t
    first = b.reservation(env)
    assert same_bits(first, _fresh_reservation(b, env))
    first[:] = -1.0
    second = b.reservation(env)
    assert second is not first and same_bits(second, _fresh_reservation(b, env))
    assert (second > 0).any()
    b.extrap[:] = -0.2  # still common to all buyers, another row
    moved = b.reservation(env)
    assert same_bits(moved, _fresh_reservation(b, env)) and not same_bits(moved, second)
    env.rent *= 0.5
    cheaper = b.reservation(env)
    assert same_bits(cheaper, _fresh_reservation(b, env)) and not same_bits(cheaper, moved)


def test_row_one_growth_kept_between_months_follows_the_expectations():
    """The kernel keeps row 1's growth exp(mu m / 12) between months and computes it again
    only when mu's bits change: expectations set in place between months (moved, kept,
    back to an earlier value, to +0 and -0, which take row 0's values) give numpy's
    months to the bit, month by month."""
    cfg = load_scenario("crypto_winter", months=9)
    a = LiquidationModel(cfg, engine="numpy")
    b = LiquidationModel(cfg, engine="compiled")
    shape = np.linspace(1.0, 2.0, a.n_gen)
    for x in (None, -0.05, None, -0.05, -0.2, 0.0, -0.0, -0.05, None):
        for model in (a, b):
            if x is not None:
                model.buyers.extrap[:] = x * shape
            model.step()
        sa, sb = model_state(a), model_state(b)
        assert [k for k in sa if not same_bits(sa[k], sb[k])] == [], (a.env.t, x)
        if x is not None and x < 0:  # the mu the kernel kept: this month's
            ship = b.env.shipping
            kept = b.kernel_inputs["environment"][4][ship]
            assert kept.tolist() == (nm.log1p(-cfg.environment.rent_deflation)
                                     + x * shape[ship]).tolist()


def test_without_buyers_the_compiled_month_is_numpys_in_place():
    """A book without buyers (not covered: the numpy code on the compiled engine, writing in
    place): the same bits as the numpy engine's month, in the model's own array and a
    buffer of last month's value that phase 1 keeps month after month."""
    m = _numpy_model("baseline", 3, **NO_BUYERS)
    a, ma, b, mb = _one_month_each_way(m)
    fund, prev = b.fundamental, mb.prev_fundamental
    assert "environment" not in b.kernel_inputs  # not the kernel
    assert same_bits(a.fundamental, fund) and same_bits(ma.prev_fundamental, prev)
    assert same_bits(prev, m.fundamental) and ma.t == mb.t == 4
    a.step()
    b.step()
    mb = phases.environment.run(b)
    ma = phases.environment.run(a)
    assert b.fundamental is fund and mb.prev_fundamental is prev
    assert same_bits(a.fundamental, fund) and same_bits(ma.prev_fundamental, prev)


@pytest.mark.parametrize(("scenario", "over"), [
    ("gpu_backtest_2023", ()),
    ("baseline", tuple(f"{k}={v}" for k, v in NO_BUYERS.items())),
])
def test_runs_beyond_the_oracle_cases_rebind_none_of_phase_1s_arrays(scenario, over):
    """On the compiled engine phase 1 writes its arrays in place (issue 19's resident state,
    tests/world/test_resident.py's check) also in runs no oracle case is like: a market rent
    path and a lead time (the backtest), a book without buyers (the numpy code, not
    covered): the environment's arrays (``lead_time``'s too), the value in best use and
    the month's last-month value."""
    mine = {("model", "fundamental"), ("month", "prev_fundamental")}
    r = rebound(scenario, (*over, "months=24"))
    assert sorted(k for k in r if k[0] == "env" or k in mine) == []
