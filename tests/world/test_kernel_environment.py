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

from sim.core.jit import kernel
from sim.qa.oracle import _same, _state
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
    sa, sb = _state(a), _state(b)
    assert sorted(sa) == sorted(sb)
    bad = [k for k in sa if not _same(sa[k], sb[k])]
    assert bad == []
    assert ma.t == mb.t and _same(ma.prev_fundamental, mb.prev_fundamental)
    # the valuation cache phase 6's reservation prices read: the same key and values
    ca, cb = a.buyers._by_type_cache, b.buyers._by_type_cache
    assert ca[1] == cb[1]
    assert _same(ca[2], cb[2]) and _same(ca[3], cb[3])
    assert _same(a.buyers.reservation(a.env), b.buyers.reservation(b.env))
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
                    rvol, disc, life, integration, cap_on, cap):
    return ke.values_by_type(t, rent, launch, hash_linked, hash_on, hashprice, p, x0, m,
                             sqrt_m, cost, rvol, disc, life, integration, cap_on, cap)


def test_values_by_type_by_hand():
    """One generation, one type, three months, sigma = 0 (the call is max(F - c, 0)), no
    trend: terms (100 - 40) d_m for the two months the unit lives (life 4 - age 2), summed,
    minus the integration cost: 60 x 0.5 + 60 x 0.25 - 5 = 40; capped at 30 with the cap;
    0 before launch. Compiled and in Python."""
    p = np.zeros(ke.N_PARAMS)
    p[ke.P_LOG_DECAY], p[ke.P_UTIL], p[ke.P_HOURS] = 0.0, 1.0, 1.0
    m = np.array([1.0, 2.0, 3.0])
    disc = np.array([[0.5, 0.25, 0.125]])

    def args(t, x0):
        return (t, np.array([100.0]), np.array([2], dtype=np.int64), np.zeros(1, bool), False,
                1.0, p, np.array([x0]), m, np.sqrt(m), np.full((1, 3), 40.0), np.zeros(1),
                disc, np.array([4], dtype=np.int64), np.array([5.0]))

    for f in (_values_by_type, _values_by_type.py):
        v = f(*args(4, 0.0), False, np.zeros(1))
        assert v.shape == (1, 1, 1) and v[0, 0, 0] == 40.0
        assert f(*args(4, -0.0), True, np.array([30.0])).tolist() == [[[30.0]]]
        assert f(*args(1, 0.0), False, np.zeros(1)).tolist() == [[[0.0]]]  # not shipping
        # x0 = 12 ln 2: growth 2^m, F = 200 and 400 in the two live months; row 0 as above
        two = f(*args(4, 12.0 * np.log(2.0)), False, np.zeros(1))
        assert two.shape == (2, 1, 1) and two[0, 0, 0] == 40.0
        assert two[1, 0, 0] == pytest.approx(160 * 0.5 + 360 * 0.25 - 5, rel=1e-14)


def test_covers_leaves_rent_paths_lead_times_and_no_buyers_to_numpy():
    assert phases.environment.covers(LiquidationModel("crypto_winter", months=1))
    assert not phases.environment.covers(LiquidationModel("gpu_backtest_2023", months=1))
    lead = {"environment.lead_time_path": [{"generation": "H100", "points": [[0, 6], [6, 0]]}]}
    assert not phases.environment.covers(LiquidationModel("baseline", months=1, **lead))
    none = {f"buyers.types.{t}.count": 0 for t in ("hyperscaler", "tier2", "broker")}
    assert not phases.environment.covers(LiquidationModel("baseline", months=1, **none))


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
    sb, sd = _state(b), _state(d)
    assert [k for k in sb if not _same(sb[k], sd[k])] == []
