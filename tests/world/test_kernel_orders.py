"""Phase 5's kernel (sim.world.kernels.orders) against the numpy phase, its oracle: twin models
(the same scenario and seed) step month by month, phase 5 on numpy in one and compiled in the
other, everything else on numpy; right after each phase 5 both are compared bit for bit (every
book array and number, the orders, the month's debt and collateral). Ordinary months, edge
states made just before phase 5 (margin calls everywhere with the debt moved, NaN and -0.0
cash, forced lines, an empty warehouse, repo units to reset) and the switches it covers; the
same for the secured repo desk's kernel, with the desk's own edges (margin unmet and lenders'
and borrowers' defaults on desk loans, repayments and rolls at term, a desk out of room or
short of it, write-offs), and its haircut against RepoDesk.secured_haircuts; and the legacy
desk's kernel on ordinary months and the edges."""

import numpy as np
import pytest

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from agents.repo_desk import RepoDesk, haircut
from sim.core.config import load_scenario
from sim.qa.oracle import model_state, same_bits
from sim.world import phases
from sim.world.kernels import orders as korders

_ORDERS = ("forced", "patient", "patient_price", "floor", "b_units", "b_price")


def _snapshot(m, month, orders, before):
    state = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in model_state(m).items()}
    hand = tuple(None if getattr(month, f) is None else getattr(month, f).copy()
                 for f in ("debt", "coll"))
    out = tuple(getattr(orders, f).copy() for f in _ORDERS)
    shared = (orders.floor is m.salvage_price, orders.forced is orders.patient)
    return (state, hand, out, shared, [repr(e) for e in m.events], repr(m.flows),
            m.lenders.repo_units is before)


def _differences(x, y):
    (sa, ha, oa, ka, ea, fa, _), (sb, hb, ob, kb, eb, fb, resident) = x, y
    bad = [f"state: {k}" for k in sorted(set(sa) | set(sb))
           if k not in sa or k not in sb or not same_bits(sa[k], sb[k])]
    # the desk's numbers left numpy floats by the numpy phase are numpy floats after the kernel
    # too (same_bits compares a float's value only; the model's totals are left out: the
    # compiled phase 4 of the compiled twin leaves them Python floats)
    bad += [f"type: {k}" for k in sorted(set(sa) & set(sb))
            if k.startswith("desk.") and type(sa[k]) is not type(sb[k])]
    bad += [f"month: {f}" for f, p, q in zip(("debt", "coll"), ha, hb, strict=True)
            if (p is None) != (q is None) or (p is not None and not same_bits(p, q))]
    bad += [f"orders: {f}" for f, p, q in zip(_ORDERS, oa, ob, strict=True)
            if not same_bits(p, q)]
    bad += ["sharing"] * (ka != kb) + ["events"] * (ea != eb) + ["flows"] * (fa != fb)
    # the compiled phase writes the lenders' repo units in place (numpy's remove_inventory
    # rebinds them after a repo default)
    bad += ["repo units rebound"] * (not resident)
    return bad


def _make_twins(twin_runner, kernel_name):
    flags, calls, desk_flags = [], [], []

    def observe(run, m, month):
        before = m.lenders.repo_units
        desk, lb = m.desk, m.lenders
        debt_l, mat_l = lb.repo_debt.copy(), desk.maturity_l.copy()
        debt_b, mat_b = desk.b_debt.copy(), desk.b_maturity.copy()
        t = m.env.t
        margin, defaults = desk.margin_received[t], desk.defaults[t]
        orders = run(m, month)
        if m.engine == "compiled":
            nz = np.count_nonzero
            flags.append((m.engine, orders.b_units.sum(), orders.forced.sum(),
                          orders.patient.sum(), orders.offered,
                          bool(nz(orders.forced) or nz(orders.patient) or nz(orders.b_units))))
            # the desk's month: a loan rolled at term (a loan outstanding given a new
            # maturity), margin posted, defaults on its loans, loans repaid
            desk_flags.append((
                bool(((debt_l > 0) & (desk.maturity_l != mat_l)).any()
                     or ((debt_b > 0) & (desk.b_maturity != mat_b)).any()),
                desk.margin_received[t] > margin, desk.defaults[t] > defaults,
                bool(((debt_l > 0) & (lb.repo_debt == 0)).any()
                     or ((debt_b > 0) & (desk.b_debt == 0)).any())))
        else:
            assert orders.offered is None  # the numpy phase does not look
        return _snapshot(m, month, orders, before), orders

    make = twin_runner(phases.orders, observe, _differences,
                       kernel=(korders, kernel_name, calls.append))
    make.flags = flags
    make.calls = calls
    make.desk_flags = desk_flags
    return make


@pytest.fixture
def twins(twin_runner):
    """``twins(scenario, overrides, seed)`` -> ``month(perturb=None)`` (tests/conftest.py's
    ``twin_runner`` at phase 5). ``twins.flags``: per compiled phase 5, (engine, units offered
    by borrowers, forced units, patient units, ``orders.offered``, whether an order array has
    a nonzero entry); ``twins.calls``: each kernel call's output (debt recomputed, units
    offered)."""
    return _make_twins(twin_runner, "orders_month")


@pytest.fixture
def secured_twins(twin_runner):
    """``twins`` for the secured repo desk's kernel (``orders_secured_month``; its calls'
    output is (debt recomputed, units offered, units seized, numbers touched)), and
    ``desk_flags``: per compiled phase 5, (a loan rolled at term, margin posted, a default on
    a desk loan, a loan repaid)."""
    return _make_twins(twin_runner, "orders_secured_month")


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


def _no_call(monkeypatch, name):
    """Make ``korders.name`` fail if called (the twins wrap only one kernel each)."""
    def fail(*args):
        raise AssertionError(f"{name} called")
    monkeypatch.setattr(korders, name, fail)


@pytest.fixture
def legacy_twins(twin_runner):
    """``twins`` for the legacy repo desk's kernel (``orders_legacy_month``; its calls' output
    is (debt recomputed, units offered, the desk lent))."""
    return _make_twins(twin_runner, "orders_legacy_month")


_LEGACY = ("policy.repo.enabled=true", "policy.repo.design='legacy'")


def test_legacy_desk_months_match(legacy_twins, monkeypatch):
    """The legacy desk's kernel over 36 crypto_winter months at two shocks, compared after
    each phase 5: the desk lends in some months (not vacuous); the other kernels are not
    called."""
    _no_call(monkeypatch, "orders_month")
    _no_call(monkeypatch, "orders_secured_month")
    for seed, shock in ((None, 0.4), (5, 0.8)):
        month = legacy_twins(overrides=(*_LEGACY, f"shocks.0.size={shock}"), seed=seed)
        for t in range(36):
            assert month() == [], t
    assert len(legacy_twins.calls) == 72
    assert sum(lent for _, _, lent in legacy_twins.calls) > 3
    said, truth = [x[4] for x in legacy_twins.flags], [x[5] for x in legacy_twins.flags]
    assert said == truth and said == [c[1] for c in legacy_twins.calls]


@pytest.mark.parametrize(("perturb", "lends"), [("_desk_full", False), ("_desk_short", True),
                                               ("_forced", None), ("_empty", False),
                                               ("_repo_units", None), ("_specials", None),
                                               ("_calls", None)],
                         ids=["desk_full", "desk_short", "forced", "empty", "repo_units",
                              "specials", "calls"])
def test_legacy_edges_match(legacy_twins, perturb, lends):
    """The legacy desk's kernel on the edge states (``lends``: whether the desk must lend,
    pro rata when short of room; never when out of it or with an empty warehouse)."""
    month = legacy_twins(overrides=(*_LEGACY, "shocks.0.size=0.4"), seed=7)
    for t in range(3):
        assert month() == [], t
    assert month(globals()[perturb]) == []
    assert len(legacy_twins.calls) == 4
    if lends is not None:
        assert legacy_twins.calls[-1][2] == lends


_REPO = ("policy.repo.enabled=true",)


def test_secured_desk_months_match_and_exercise_the_desk(secured_twins, monkeypatch):
    """The secured desk's kernel over 40 crypto_winter months with a deep and a middling BTC
    shock (two seeds), compared after each phase 5: between them the desk lends to lenders and
    borrowers, takes margin, rolls loans at term and is repaid (not vacuous); the desk-off
    kernel is not called."""
    _no_call(monkeypatch, "orders_month")
    kinds = set()
    for seed, shock in ((None, 0.8), (7, 0.4)):
        month = secured_twins(overrides=(*_REPO, f"shocks.0.size={shock}"), seed=seed)
        for t in range(40):
            assert month() == [], t
        kinds |= {e[1:3] for e in month.models[1].events}
    assert {("repo_loan", "lender"), ("repo_loan", "borrower")} <= kinds, kinds
    assert len(secured_twins.calls) == 80
    rolled, margin, _, repaid = np.array(secured_twins.desk_flags).sum(axis=0)
    assert rolled and margin and repaid, secured_twins.desk_flags
    said, truth = [x[4] for x in secured_twins.flags], [x[5] for x in secured_twins.flags]
    assert said == truth and said == [c[1] for c in secured_twins.calls]


@pytest.mark.parametrize("overrides", [("policy.repo.borrowers=false",),
                                       ("buyers.outside_demand.enabled=false",),
                                       ("policy.repo.capacity=2e7", "policy.repo.term_months=1",
                                        "policy.repo.vol_window=2")],
                         ids=["no_borrower_loans", "no_outside_demand", "small_desk"])
@pytest.mark.slow  # 1-2 s a case
def test_secured_switches_match(secured_twins, overrides):
    month = secured_twins(overrides=(*_REPO, "shocks.0.size=0.6", *overrides), seed=5)
    for t in range(30):
        assert month() == [], t
    assert len(secured_twins.calls) == 30
    assert all(x[4] == x[5] for x in secured_twins.flags)  # SellOrders.offered


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


def _desk_loans(m):
    """Repo loans on every lender with inventory (units pledged) and on every living
    borrower, maturing over the next months (some this month)."""
    lb, desk, b, t = m.lenders, m.desk, m.borrowers, m.env.t
    lb.inventory[:] += 4
    lb.inv_since[lb.inv_since < 0] = t
    lb.repo_units[:] = np.minimum(lb.inventory, 3)
    lb.repo_debt[:] = np.linspace(1e5, 3e7, lb.n)
    desk.maturity_l[:] = t + np.arange(lb.n) % 3 - 1
    desk.b_debt[:] = np.where(b.alive, np.linspace(1e4, 5e6, b.n), 0.0)
    desk.b_maturity[:] = t + np.arange(b.n) % 3 - 1
    desk.lent = float(lb.repo_debt.sum() + desk.b_debt.sum())


def _desk_margin_and_defaults(m, month):
    """Loans everywhere, half the owners without cash: margin calls met and unmet, term
    repayments and rolls, lenders' and borrowers' defaults (units seized)."""
    _desk_loans(m)
    lb, b = m.lenders, m.borrowers
    lb.repo_debt[::2] *= 20.0  # far above what the pledged units support: calls
    lb.cash[::2] = 0.0
    b.cash[::2] = 0.0
    m.desk.b_debt[1::4] *= 50.0


def _desk_term(m, month):
    """Every loan at term with ample cash: repaid where no line is forced, else rolled."""
    _desk_loans(m)
    lb, b, t = m.lenders, m.borrowers, m.env.t
    m.desk.maturity_l[:] = t
    m.desk.b_maturity[:] = t
    lb.cash[:] = 1e10
    b.cash[::2] = 1e10
    lb.status[::3] = LenderStatus.DELEVERAGING


def _desk_full(m, month):
    """The desk out of room (no cash, and its owners have none to repay it with): no new
    loan, but margin, term and defaults still run."""
    _desk_loans(m)
    m.desk.cash = 0.0
    m.lenders.cash[:] = 0.0
    m.borrowers.cash[:] = 0.0
    m.lenders.status[:] = LenderStatus.DELEVERAGING  # every line forced: loans wanted


def _desk_short(m, month):
    """The desk's room short of what is wanted (no loan outstanding, every line forced):
    units pledged pro rata."""
    lb = m.lenders
    lb.inventory[:] += 4
    lb.inv_since[lb.inv_since < 0] = m.env.t
    lb.status[:] = LenderStatus.DELEVERAGING
    lb.repo_units[:] = 0
    lb.repo_debt[:] = 0.0
    m.desk.b_debt[:] = 0.0
    m.desk.cash = 3e6
    m.borrowers.call_months[::2] = 0


def _desk_dead(m, month):
    """Desk loans to borrowers that have defaulted on their facilities (written off), NaN and
    -0.0 cash on owners with loans, a fleet worth nothing."""
    _desk_loans(m)
    b, lb = m.borrowers, m.lenders
    b.status[1:6] = BorrowerStatus.DEFAULTED
    m.desk.b_debt[1:6] = 1e6
    b.cash[7] = np.nan
    b.cash[8] = -0.0
    lb.cash[1] = -0.0
    lb.cash[2] = np.nan
    b.fleet[9] = 0
    b.cash[9] = 0.0


@pytest.mark.parametrize("perturb", [_desk_margin_and_defaults, _desk_term, _desk_full,
                                     _desk_short, _desk_dead, _calls, _specials, _forced,
                                     _empty, _repo_units],
                         ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("months", [3, pytest.param(20, marks=pytest.mark.slow)])
def test_secured_edges_match(secured_twins, perturb, months):
    month = secured_twins(overrides=(*_REPO, "shocks.0.size=0.4"), seed=7)
    for t in range(months):
        assert month() == [], t
    n = len(secured_twins.calls)
    assert month(perturb) == []
    assert len(secured_twins.calls) == n + 1


def test_secured_edges_reach_the_desk(secured_twins):
    """The desk's edge states do what they are for: defaults on desk loans with units seized
    (the lenders' repo units cut, in place), rolls and repayments at term, no loan from a desk
    out of room, loans pro rata from a short one, write-offs."""
    flags = secured_twins.desk_flags
    cases = {}
    for perturb in (_desk_margin_and_defaults, _desk_term, _desk_full, _desk_short,
                    _desk_dead):
        month = secured_twins(overrides=(*_REPO, "shocks.0.size=0.4"), seed=7)
        for _ in range(3):
            month()
        k = len(flags)
        assert month(perturb) == []
        b = month.models[1]
        cases[perturb.__name__] = (flags[k], secured_twins.calls[-1], b.events)
    (rolled, margin, default, _), (_, _, seized, _), ev = cases["_desk_margin_and_defaults"]
    kinds = [e[1:3] for e in ev if e[0] == ev[-1][0]]
    assert margin and default and seized
    assert ("repo_default", "lender") in kinds and ("repo_default", "borrower") in kinds
    (rolled, _, _, repaid), _, _ = cases["_desk_term"]
    assert rolled and repaid
    _, _, ev = cases["_desk_full"]
    t = ev[-1][0]
    assert not [e for e in ev if e[0] == t and e[1] == "repo_loan"]
    _, _, ev = cases["_desk_short"]
    assert [e for e in ev if e[0] == ev[-1][0] and e[1:3] == ("repo_loan", "lender")]
    _, _, ev = cases["_desk_dead"]
    dead = [e[3] for e in ev if e[0] == ev[-1][0] and e[1:3] == ("repo_default", "borrower")]
    assert {1, 2, 3, 4, 5} <= set(dead), dead


def test_secured_haircuts_in_numpy_order():
    """The kernel's haircut (np.std along axis 0, ddof 1) gives RepoDesk.secured_haircuts'
    bits on random price histories, one generation (numpy reduces a single column
    pairwise) and several, short and long windows, zero and NaN prices."""
    rng = np.random.default_rng(3)
    cfg = load_scenario("crypto_winter", list(_REPO)).policy.repo
    for trial in range(300):
        g = 1 + trial % 4
        months = int(rng.integers(1, 40))
        hist = rng.lognormal(0.0, 0.3, (months, g)) * 10.0 ** rng.integers(-3, 6)
        if trial % 7 == 0:
            hist[rng.integers(0, months)] = 0.0
        if trial % 11 == 0:
            hist[rng.integers(0, months), 0] = np.nan
        window = int(rng.integers(2, 30))
        c = cfg.model_copy(update={"vol_window": window})
        desk = type("D", (), {"cfg": c})()
        t = int(rng.integers(-1, months))
        with np.errstate(all="ignore"):
            want = RepoDesk.secured_haircuts(desk, hist, t)
            got = np.empty(g)
            korders._secured_haircuts(hist, t, window, c.sigma, c.z, np.sqrt(c.liq_months),
                                      c.liq_addon, got)
        assert got.tobytes() == want.tobytes(), (trial, got, want)


def test_legacy_haircut_in_numpy_order():
    """The legacy kernel's haircut gives agents.repo_desk.haircut's bits, np.clip's signed
    zero and NaN included (clip keeps -0.0 where maximum(x, 0.0) would give +0.0)."""
    rng = np.random.default_rng(5)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1.0, 1e-300])
    for trial in range(200):
        g = 1 + trial % 5
        price = rng.choice(np.concatenate((special, rng.lognormal(8, 1, 10))), g)
        ref = rng.choice(np.concatenate((special, rng.lognormal(8, 1, 10))), g)
        h0 = (-0.0, 0.0, 0.2, 1.0)[trial % 4]
        kappa = (0.0, 0.5, 3.0, -0.0)[trial // 4 % 4]
        with np.errstate(all="ignore"):
            want = haircut(price, ref, h0, kappa)
            got = np.empty(g)
            korders._legacy_haircut(price, ref, h0, kappa, got)
        assert got.tobytes() == want.tobytes(), (trial, price, ref, got, want)
    # h0 = kappa = -0.0: -0.0 + -0.0 x max(0, 1 - 2) = -0.0, which clip keeps (the case
    # the random draws reach only by chance)
    got = np.empty(1)
    korders._legacy_haircut(np.array([2.0]), np.array([1.0]), -0.0, -0.0, got)
    assert str(got[0]) == "-0.0"


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
