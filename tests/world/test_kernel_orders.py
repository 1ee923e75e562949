"""Phase 5's kernel (sim.world.kernels.orders) against the numpy phase, its oracle: twin models
(the same scenario and seed) step month by month, phase 5 on numpy in one and compiled in the
other, everything else on numpy; right after each phase 5 both are compared bit for bit (every
book array and number, the orders, the month's debt and collateral). Ordinary months, edge
states made just before phase 5 (margin calls everywhere with the debt moved, NaN and -0.0
cash, forced lines, an empty warehouse, repo units to reset) and the switches it covers."""

import numpy as np
import pytest

from agents.lender import LenderStatus
from sim.qa.oracle import model_state, same_bits
from sim.world import phases
from sim.world.kernels import orders as korders

_ORDERS = ("forced", "patient", "patient_price", "floor", "b_units", "b_price")


def _snapshot(m, month, orders, before):
    state = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in model_state(m).items()}
    hand = tuple(None if getattr(month, f) is None else getattr(month, f).copy()
                 for f in ("debt", "coll"))
    out = tuple(getattr(orders, f).copy() for f in _ORDERS)
    shared = (orders.floor is m.salvage_price, orders.forced is orders.patient,
              m.lenders.repo_units is before)
    return state, hand, out, shared, [repr(e) for e in m.events], repr(m.flows)


def _differences(x, y):
    (sa, ha, oa, ka, ea, fa), (sb, hb, ob, kb, eb, fb) = x, y
    bad = [f"state: {k}" for k in sorted(set(sa) | set(sb))
           if k not in sa or k not in sb or not same_bits(sa[k], sb[k])]
    bad += [f"month: {f}" for f, p, q in zip(("debt", "coll"), ha, hb, strict=True)
            if (p is None) != (q is None) or (p is not None and not same_bits(p, q))]
    bad += [f"orders: {f}" for f, p, q in zip(_ORDERS, oa, ob, strict=True)
            if not same_bits(p, q)]
    bad += ["sharing"] * (ka != kb) + ["events"] * (ea != eb) + ["flows"] * (fa != fb)
    return bad


@pytest.fixture
def twins(twin_runner):
    """``twins(scenario, overrides, seed)`` -> ``month(perturb=None)`` (tests/conftest.py's
    ``twin_runner`` at phase 5). ``twins.flags``: per compiled phase 5, (engine, units offered
    by borrowers, forced units, patient units, ``orders.offered``, whether an order array has
    a nonzero entry); ``twins.calls``: each kernel call's output (debt recomputed, units
    offered)."""
    flags, calls = [], []

    def observe(run, m, month):
        before = m.lenders.repo_units
        orders = run(m, month)
        if m.engine == "compiled":
            nz = np.count_nonzero
            flags.append((m.engine, orders.b_units.sum(), orders.forced.sum(),
                          orders.patient.sum(), orders.offered,
                          bool(nz(orders.forced) or nz(orders.patient) or nz(orders.b_units))))
        else:
            assert orders.offered is None  # the numpy phase does not look
        return _snapshot(m, month, orders, before), orders

    make = twin_runner(phases.orders, observe, _differences,
                       kernel=(korders, "orders_month", calls.append))
    make.flags = flags
    make.calls = calls
    return make


def test_ordinary_months_match_and_exercise_every_branch(twins):
    """36 crypto_winter months at two seeds, compared after each phase 5; between them
    borrowers offer units, lenders hold forced and patient lines and the debt is recomputed
    (the comparison is not vacuous)."""
    for seed in (None, 2):
        month = twins(seed=seed)
        for t in range(36):
            assert month() == [], t
    assert len(twins.calls) == 72
    f = np.array([x[1:4] for x in twins.flags])
    assert (f > 0).sum(axis=0).min() > 0, (f > 0).sum(axis=0)
    assert any(debt for debt, _ in twins.calls)  # the month's debt recomputed under a call
    # the kernel's word on whether the orders offer units (phase 6 skips a month without)
    said, truth = [x[4] for x in twins.flags], [x[5] for x in twins.flags]
    assert said == truth and said == [offered for _, offered in twins.calls]
    assert 0 < sum(truth) < len(truth), sum(truth)  # months with and without orders


@pytest.mark.parametrize("overrides", [("buyers.outside_demand.enabled=false",),
                                       ("borrowers.miner.guarantee_ltv=0",
                                        "borrowers.neocloud.guarantee_ltv=0"),
                                       ("market.mode='parametric'",)],
                         ids=["no_outside_demand", "no_covenant_scaling", "parametric"])
@pytest.mark.slow  # 1 s a case; test-fast: the ordinary months and the edges
def test_switches_match(twins, overrides):
    month = twins(overrides=overrides, seed=5)
    for t in range(30):
        assert month() == [], t
    assert len(twins.calls) == 30
    assert all(x[4] == x[5] for x in twins.flags)  # SellOrders.offered


def test_repo_desk_falls_back_to_numpy(twins):
    month = twins(overrides=("policy.repo.enabled=true",), seed=5)
    for t in range(12):
        assert month() == [], t
    assert twins.calls == []


def _calls(m, month):
    """Margin calls open everywhere, with the debt moved since phase 3 (month.debt None),
    odd covenant scales and collateral values (the cure's product order shows)."""
    b = m.borrowers
    b.call_months[b.alive] = 0
    month.debt = None
    rng = np.random.default_rng(11)
    b.cov_scale = rng.uniform(0.5, 1.5, b.n)
    month.coll = month.coll * rng.uniform(0.1, 1.0, b.n)


def _specials(m, month):
    b = m.borrowers
    b.call_months[::2] = 0
    b.cash[1] = np.nan
    b.cash[2] = -0.0
    b.cash[3] = 0.0
    b.cash[4] = -1e9
    b.fleet[5] = 0
    b.cash[5] = -1e9


def _forced(m, month):
    """Inventory on every line, some lenders failing, some lines held past the limit."""
    lb = m.lenders
    lb.inventory[:] += 3
    lb.inv_since[:] = m.env.t - (np.arange(lb.inventory.size).reshape(lb.inventory.shape) % 30)
    lb.status[::3] = LenderStatus.FAILED


def _empty(m, month):
    m.lenders.inventory[:] = 0
    m.lenders.inv_since[:] = -1


def _repo_units(m, month):
    """Repo units left on lines of lenders with and without repo debt (the reset)."""
    lb = m.lenders
    lb.inventory[:] += 4
    lb.repo_units[:] = 2
    lb.repo_debt[::2] = 1e6
    lb.status[1::2] = LenderStatus.FAILED


@pytest.mark.parametrize("perturb", [_calls, _specials, _forced, _empty, _repo_units],
                         ids=lambda f: f.__name__.strip("_"))
# test-fast: every edge at month 1 (months 9 and 21 under make test)
@pytest.mark.parametrize("months", [0, *(pytest.param(n, marks=pytest.mark.slow)
                                     for n in (8, 20))])
def test_edges_match(twins, perturb, months):
    month = twins(seed=7)
    for t in range(months):
        assert month() == [], t
    n = len(twins.calls)
    assert month(perturb) == []
    assert len(twins.calls) == n + 1
    assert all(x[4] == x[5] for x in twins.flags)  # SellOrders.offered


def test_voluntary_sale_by_hand():
    """One borrower needing half its fleet's value at the ask offers ceil(half) of each
    generation: 3 units of 5 and 2 of 3 (units x ask summed over generations, by hand)."""
    nb, g = 1, 2
    b_units, b_price = np.empty((nb, g), np.int64), np.empty(g)
    out = korders.orders_month(
        False, 0.0, np.zeros(g), np.array([1.0, 1.0]), np.zeros((1, g)), np.zeros(1),
        np.array([100.0, 200.0]), np.zeros((1, g), np.int64), np.full((1, g), -1),
        np.zeros((1, g), np.int64), np.zeros(1), np.zeros(1, np.int64), 5, 6,
        np.zeros(1, np.int64), np.ones(1, bool), np.array([550.0]), np.zeros(1),
        np.array([1e4]), np.zeros(1, np.int64), np.full(1, -1), np.zeros(1),
        np.array([[5, 3]]), np.zeros(1), True, np.zeros(1), 0.5, np.ones(1), 0.0,
        np.empty((1, g)), np.empty((1, g), np.int64), np.empty((1, g), np.int64),
        b_units, b_price, np.empty(1))
    # fleet value at the ask: 5 x 100 + 3 x 200 = 1100; need 550 (arrears, no cash): half
    assert out == (False, True)  # no debt recomputed; the borrower offers units
    assert b_price.tolist() == [100.0, 200.0]
    assert b_units.tolist() == [[3, 2]]
