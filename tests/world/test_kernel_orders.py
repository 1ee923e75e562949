"""Phase 5's kernel (sim.world.kernels.orders) against the numpy phase, its oracle: twin models
(the same scenario and seed) step month by month, phase 5 on numpy in one and compiled in the
other, everything else on numpy; right after each phase 5 both are compared bit for bit (every
book array and number, the orders, the month's debt and collateral). Ordinary months, edge
states made just before phase 5 (margin calls everywhere with the debt moved, NaN and -0.0
cash, forced lines, an empty warehouse, repo units to reset) and the switches it covers."""

import numpy as np
import pytest

from agents.lender import LenderStatus
from sim.core.config import load_scenario
from sim.qa.oracle import model_state, same_bits
from sim.world import phases
from sim.world.kernels import orders as korders
from sim.world.model import LiquidationModel

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


class _Stop(Exception):
    """Ends a perturbed month right after phase 5."""


@pytest.fixture
def twins(monkeypatch):
    """``twins(scenario, overrides, seed)`` -> ``month(perturb=None)`` (as in
    test_kernel_defaults, at phase 5). ``twins.flags``: per kernel call, (engine, units
    offered by borrowers, forced units, patient units, ``orders.offered``, whether an order
    array has a nonzero entry); ``twins.calls``: the kernel's returns (debt recomputed,
    units offered)."""
    real_run = phases.orders.run
    flags = []
    snaps = {}
    current = {"perturb": None}

    def run(m, month):
        if current["perturb"] is not None:
            current["perturb"](m, month)
        before = m.lenders.repo_units
        with np.errstate(all="ignore"):
            orders = real_run(m, month)
        snaps[m.engine] = _snapshot(m, month, orders, before)
        if m.engine == "compiled":
            nz = np.count_nonzero
            flags.append((m.engine, orders.b_units.sum(), orders.forced.sum(),
                          orders.patient.sum(), orders.offered,
                          bool(nz(orders.forced) or nz(orders.patient) or nz(orders.b_units))))
        else:
            assert orders.offered is None  # the numpy phase does not look
        m.engine = "numpy"
        if current["perturb"] is not None:
            raise _Stop
        return orders

    calls = []
    real_kernel = korders.orders_month

    def kernel(*args):
        out = real_kernel(*args)
        calls.append(out)
        return out

    monkeypatch.setattr(phases.orders, "run", run)
    monkeypatch.setattr(korders, "orders_month", kernel)

    def make(scenario="crypto_winter", overrides=(), seed=None):
        cfg = load_scenario(scenario, list(overrides), seed=seed)
        a, b = LiquidationModel(cfg, engine="numpy"), LiquidationModel(cfg, engine="numpy")

        def month(perturb=None):
            current["perturb"] = perturb
            for m, engine in ((a, "numpy"), (b, "compiled")):
                m.engine = engine
                try:
                    m.step()
                except _Stop:
                    pass
            return _differences(snaps.pop("numpy"), snaps.pop("compiled"))
        return month

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
@pytest.mark.parametrize("months", [0, 8, 20])
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
