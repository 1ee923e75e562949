"""Phase 3's kernel (sim.world.kernels.lenders) against the numpy phase, its oracle: twin models
(the same scenario and seed) step month by month, phase 3 on numpy in one and compiled in the
other, everything else on numpy; right after each phase 3 both are compared bit for bit (every
book array and number, the month's hand-overs, the events and the outside flows), and the
compiled phase must have written every watched array in place (resident state, issue 19).
Ordinary months, states pushed to the edges (a price crash, NaN, -0.0, a zero BTC price,
everybody defaulted) and no covenant scaling."""


import numpy as np
import pytest

from agents.borrower import BorrowerStatus
from sim.qa.oracle import mismatches, model_state, run_both, same_bits
from sim.world import phases
from sim.world.kernels import lenders as klenders
from sim.world.model import LiquidationModel

# the arrays phase 3 updates in place or (on numpy only) rebinds: the compiled phase must keep
# each of them (the same object after the phase); numpy rebinds the loans' principal, accrued
# and overdue, call_months and dscr_breach as it likes
_WATCHED = (("loans", "principal"), ("loans", "accrued"), ("loans", "overdue"),
            ("loans", "maturity"), ("loans", "orig_amort"), ("loans", "rate"),
            ("borrowers", "cash"), ("borrowers", "btc"), ("borrowers", "call_months"),
            ("borrowers", "dscr_breach"), ("lenders", "cash"))
NO_SCALING = ("borrowers.miner.guarantee_ltv=0", "borrowers.neocloud.guarantee_ltv=0")


def _snapshot(m, month, before):
    """What phase 3 leaves: copies of the state, the rebinding, the month, events, flows."""
    state = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in model_state(m).items()}
    kept = tuple(getattr(getattr(m, o), a) is before[(o, a)] for o, a in _WATCHED)
    hand = tuple(None if getattr(month, f) is None else getattr(month, f).copy()
                 for f in ("marks", "debt", "coll"))
    return state, kept, hand, [repr(e) for e in m.events], repr(m.flows)


def _differences(x, y):
    (sa, _, ha, ea, fa), (sb, kb, hb, eb, fb) = x, y
    bad = [f"state: {k}" for k in sorted(set(sa) | set(sb))
           if k not in sa or k not in sb or not same_bits(sa[k], sb[k])]
    bad += [f"rebinding: {'.'.join(w)}" for w, q in zip(_WATCHED, kb, strict=True) if not q]
    bad += [f"month: {f}" for f, p, q in zip(("marks", "debt", "coll"), ha, hb, strict=True)
            if (p is None) != (q is None) or (p is not None and not same_bits(p, q))]
    bad += ["events"] * (ea != eb) + ["flows"] * (fa != fb)
    return bad


def _observe(run, m, month):
    # the objects themselves, not their ids: a freed array's id can be reused
    before = {(o, a): getattr(getattr(m, o), a) for o, a in _WATCHED}
    run(m, month)
    return _snapshot(m, month, before), None


def _flags(out):
    return dict(calls=out[0], refused=out[1], arrears=out[2], btc=out[3], swept=out[5])


@pytest.fixture
def twins(twin_runner):
    """``twins(scenario, overrides, seed)`` -> ``month(perturb=None)`` (tests/conftest.py's
    ``twin_runner`` at phase 3): steps both twins one month and returns the differences right
    after phase 3. ``perturb(m, month)`` changes both alike just before phase 3 and ends the
    month there. ``twins.flags``: the kernel's flags of each call."""
    flags = []
    make = twin_runner(phases.lenders, _observe, _differences,
                       kernel=(klenders, "lenders_month", lambda out: flags.append(_flags(out))))
    make.flags = flags
    return make


def test_ordinary_months_match_and_exercise_every_branch(twins):
    """24 crypto_winter months at two seeds, each compared right after phase 3; between them
    they open margin calls, sell free BTC, pay arrears (pay()'s two-stage branch), sweep cash
    and refuse rollovers (counted from the kernel's flags: the comparison is not vacuous)."""
    for seed in (None, 3):
        month = twins(seed=seed)
        for t in range(24):
            assert month() == [], t
    seen = {k: sum(bool(f[k]) for f in twins.flags) for k in twins.flags[0]}
    assert len(twins.flags) == 48
    assert all(v > 0 for v in seen.values()), seen


def test_no_covenant_scaling(twins):
    """Without guaranteed advance rates (``cov_scale`` None) the kernel runs at a scale of ones
    and must give the unscaled covenants' bits (the golden cases all scale)."""
    month = twins(overrides=NO_SCALING)
    for t in range(18):
        assert month() == [], t
    assert sum(f["calls"] for f in twins.flags) > 0


def test_whole_run_without_scaling_matches():
    """The oracle's whole-run comparison on a case it does not hold: no covenant scaling."""
    a, b = run_both("crypto_winter", NO_SCALING, months=24)
    assert a.borrowers.cov_scale is None
    assert mismatches(a, b) == []


def _crash(m, month):
    """Last month's price index at 30 %: marks fall, margin calls open everywhere."""
    m.price_hist[m.env.t - 1] *= 0.3


def _specials(m, month):
    """NaN cash, -0.0 arrears and principal, a tiny DSCR, no opex, all on a few borrowers."""
    b, L = m.borrowers, m.loans
    b.cash[[1, 7]] = np.nan
    b.cash[3] = -0.0
    b.opex[4] = 0.0
    b.dscr[[5, 6, 9]] = -10.0
    b.dscr_breach[[5, 6]] = 99
    rows = (L.borrower == 2).nonzero()[0]
    L.accrued[rows] = -0.0
    L.overdue[rows] = -0.0
    L.principal[rows[:1]] = -0.0
    m.price_hist[m.env.t - 1] *= 0.5


def _no_btc_price(m, month):
    """A BTC price of 0 with margin calls open: need / price is inf (or NaN for 0 / 0)."""
    m.env.btc = 0.0
    m.price_hist[m.env.t - 1] *= 0.4


def _all_defaulted(m, month):
    m.borrowers.status[:] = BorrowerStatus.DEFAULTED


def _book_marks_fresh(m, month):
    """The lenders' marks already taken this month (at this month's prices): phase 3 then
    keeps the table's book row (LenderBook.marks' cache; in a run phase 3 always refills it)."""
    m.lenders.marks(m.env, m.price_hist, m.env.t, m.cfg.lenders.appraisal_lag)
    m.lenders._table[0] *= 0.5  # a kept row must stay as it is: the kernel must not refill it


@pytest.mark.parametrize("perturb", [_crash, _specials, _no_btc_price, _all_defaulted,
                                     _book_marks_fresh],
                         ids=lambda f: f.__name__.strip("_"))
# test-fast: every edge at month 1 (months 6 and 15 under make test)
@pytest.mark.parametrize("months", [0, *(pytest.param(n, marks=pytest.mark.slow)
                                     for n in (5, 14))])
def test_edges_match(twins, perturb, months):
    """An edge state made just before phase 3 of month 1, 6 or 15 (ordinary months before)."""
    month = twins(seed=7)
    for t in range(months):
        assert month() == [], t
    n = len(twins.flags)
    assert month(perturb) == []
    assert len(twins.flags) == n + 1  # the kernel ran


_RESIDENT = (("borrowers", "call_months"), ("borrowers", "dscr_breach"), ("loans", "principal"),
             ("loans", "accrued"), ("loans", "overdue"))


def test_compiled_phase_writes_in_place():
    """Resident state (issue 19): over a compiled crypto_winter run, phase 3 never rebinds
    the arrays numpy rebinds (the loans' principal, accrued and overdue, call_months,
    dscr_breach), and the month's marks, collateral and debt (when not None) are the same
    three arrays every month (:func:`sim.world.phases.lenders.hand_over_arrays`), none of
    them sharing memory with a book array. The run moves each array (not vacuous)."""
    real, seen, moved = phases.lenders.run, [], dict.fromkeys(_RESIDENT, False)

    def watched(m, month):
        old = {k: getattr(getattr(m, k[0]), k[1]) for k in _RESIDENT}
        copies = {k: v.copy() for k, v in old.items()}
        real(m, month)
        for k in _RESIDENT:
            assert getattr(getattr(m, k[0]), k[1]) is old[k], k
            moved[k] |= not np.array_equal(old[k], copies[k])
        seen.append((month.marks, month.coll, month.debt))
    phases.lenders.run = watched
    try:
        m = LiquidationModel("crypto_winter")
        m.run()
    finally:
        phases.lenders.run = real
    marks, coll, debt = phases.lenders.hand_over_arrays(m)
    assert all(a is marks and c is coll and (d is None or d is debt) for a, c, d in seen)
    assert any(d is None for _, _, d in seen) and any(d is debt for _, _, d in seen)
    books = [v for book in (m.borrowers, m.lenders, m.loans) for v in vars(book).values()
             if isinstance(v, np.ndarray)]
    assert not any(np.shares_memory(x, y) for x in (marks, coll, debt) for y in books)
    assert all(moved.values()), moved
