"""Phase 4's kernels (sim.world.kernels.defaults) against the numpy phase, their oracle: twin
models (the same scenario and seed) step month by month, phase 4 on numpy in one and compiled
in the other, everything else on numpy; right after each phase 4 both are compared bit for bit
(every book array and number, the month's debt and collateral, the events and the outside
flows), and the compiled phase must have written every watched array in place (resident state,
issue 19). Ordinary months, and states pushed to the edges just before
phase 4: a mass default, void facilities, negative exposure dust, NaN and -0.0 cash, called
facilities paid off with cash or coins (pledged ones too), and the switches phase 4 reads."""

import numpy as np
import pytest

from sim.core.config import load_scenario
from sim.qa.oracle import model_state, same_bits
from sim.world import phases
from sim.world.kernels import defaults as kdefaults
from sim.world.model import LiquidationModel

# arrays phase 4 updates in place or (on numpy only) rebinds: the compiled phase must keep each
# of them (the same object after the phase), and model.new_defaults and model.rep_value
_WATCHED = (("loans", "principal"), ("loans", "accrued"), ("loans", "overdue"),
            ("loans", "active"), ("borrowers", "cash"), ("borrowers", "btc"),
            ("borrowers", "btc_pledged"), ("borrowers", "call_months"),
            ("borrowers", "dscr_breach"), ("borrowers", "fleet"), ("borrowers", "status"),
            ("lenders", "cash"), ("lenders", "inventory"), ("lenders", "claim_pool"))


def _snapshot(m, month, before):
    state = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in model_state(m).items()}
    kept = tuple(getattr(getattr(m, o), a) is before[(o, a)] for o, a in _WATCHED)
    hand = tuple(None if getattr(month, f) is None else getattr(month, f).copy()
                 for f in ("debt", "coll"))
    model_kept = (m.new_defaults is before["new_defaults"]
                  and getattr(m, "rep_value", None) is before["rep_value"])
    return state, kept, hand, [repr(e) for e in m.events], repr(m.flows), model_kept


def _differences(x, y):
    (sa, _, ha, ea, fa, _), (sb, kb, hb, eb, fb, nb) = x, y
    bad = [f"state: {k}" for k in sorted(set(sa) | set(sb))
           if k not in sa or k not in sb or not same_bits(sa[k], sb[k])]
    bad += [f"rebinding: {'.'.join(w)}" for w, q in zip(_WATCHED, kb, strict=True) if not q]
    bad += ["rebinding: new_defaults or rep_value"] * (not nb)
    bad += [f"month: {f}" for f, p, q in zip(("debt", "coll"), ha, hb, strict=True)
            if (p is None) != (q is None) or (p is not None and not same_bits(p, q))]
    bad += ["events"] * (ea != eb) + ["flows"] * (fa != fb)
    return bad


def _observe(run, m, month):
    before = {(o, a): getattr(getattr(m, o), a) for o, a in _WATCHED}
    before["new_defaults"] = m.new_defaults
    before["rep_value"] = getattr(m, "rep_value", None)
    run(m, month)
    return _snapshot(m, month, before), None


@pytest.fixture
def twins(twin_runner):
    """``twins(scenario, overrides, seed)`` -> ``month(perturb=None)`` (tests/conftest.py's
    ``twin_runner`` at phase 4): steps both twins one month and returns the differences right
    after phase 4; ``perturb(m, month)`` changes both alike just before phase 4 and ends the
    month there. ``twins.flags``: per call of the full kernel, (payoffs, coins sold, pledged
    coins sold, arrears paid, defaults)."""
    flags = []
    make = twin_runner(phases.defaults, _observe, _differences,
                       kernel=(kdefaults, "defaults_month",
                               lambda out: flags.append((out[0], out[1], out[3], out[4],
                                                         out[5]))))
    make.flags = flags
    return make


def test_ordinary_months_match_and_exercise_every_branch(twins):
    """36 crypto_winter months at two seeds: between them borrowers default, facilities
    called on a DSCR breach are paid off, with coins sold, pledged ones too (counted from
    the kernel's flags: the comparison is not vacuous; arrears paid first at a payoff:
    :func:`test_payoff_pays_arrears_first`)."""
    for seed in (None, 2):
        month = twins(seed=seed)
        for t in range(36):
            assert month() == [], t
    f = np.array(twins.flags)
    assert len(f) > 10
    assert (f[:, [0, 1, 2, 4]] > 0).sum(axis=0).min() > 0, (f > 0).sum(axis=0)


@pytest.mark.parametrize("overrides", [("lenders.dscr_default_months=0",),
                                       ("sites.enabled=false",),
                                       ("buyers.outside_demand.enabled=false",)],
                         ids=["no_dscr_default", "no_sites", "no_outside_demand"])
@pytest.mark.slow  # 1 s a case; test-fast: the ordinary months and the edges
def test_switches_match(twins, overrides):
    month = twins(overrides=overrides, seed=5)
    for t in range(30):
        assert month() == [], t
    assert sum(x[4] for x in twins.flags) > 0  # somebody defaulted


def _mass(m, month):
    """Every borrower in arrears past the grace period: all default at once."""
    m.borrowers.arrears_months[:] = 99


def _void(m, month):
    """Three borrowers past their cure with nothing owed (void: the call is cured), two of them
    the only ones triggered besides two ordinary defaults."""
    b, L = m.borrowers, m.loans
    b.call_months[[2, 5, 11, 12, 13]] = 99
    for i in (2, 5, 11):
        rows = L.borrower == i
        L.principal[rows] = 0.0
        L.accrued[rows] = -0.0


def _void_only(m, month):
    b, L = m.borrowers, m.loans
    b.arrears_months[:] = 0
    b.call_months[:] = -1
    b.dscr_breach[:] = 0
    b.call_months[4] = 99
    L.principal[L.borrower == 4] = 0.0
    L.accrued[L.borrower == 4] = 0.0


def _specials(m, month):
    """NaN and -0.0 cash on defaulting borrowers, negative exposure dust on a row (the
    largest remainder's weight cleaning), odd fleets."""
    b, L = m.borrowers, m.loans
    b.arrears_months[[1, 3, 7, 8]] = 99
    b.cash[1] = np.nan
    b.cash[3] = -0.0
    b.cash[7] = -1e6
    rows = (L.borrower == 8).nonzero()[0]
    L.principal[rows[-1]] = -1e-10
    L.accrued[rows[-1]] = 0.0
    L.active[rows] = True
    b.fleet[8] += 7


def _ties(m, month):
    """Facilities whose rows owe the same: every generation's fleet odd, so the last unit of
    each goes by the largest remainder's tie rule (the lower row)."""
    b, L = m.borrowers, m.loans
    for i in b.alive.nonzero()[0][:3]:
        rows = (L.borrower == i).nonzero()[0]
        L.active[rows] = True
        L.principal[rows] = 1e6
        L.accrued[rows] = 0.0
        b.fleet[i] = 2 * (b.fleet[i] // 2) + 1
        b.arrears_months[i] = 99


def _payoffs(m, month):
    """DSCR breaches past their sweep everywhere: the rich pay off (some with cash, some
    selling coins, pledged ones too), the rest default."""
    b = m.borrowers
    b.dscr_breach[:] = 99
    b.cash[::3] += 1e9
    b.btc[1::3] += 1e5
    b.btc_pledged[1::3] = b.btc[1::3]
    b.cash[1::3] = 0.0


@pytest.mark.parametrize("perturb", [_mass, _void, _void_only, _specials, _ties,
                                     _payoffs],
                         ids=lambda f: f.__name__.strip("_"))
# test-fast: every edge at month 2 (months 9 and 21 under make test)
@pytest.mark.parametrize("months", [1, *(pytest.param(n, marks=pytest.mark.slow)
                                     for n in (8, 20))])
def test_edges_match(twins, perturb, months):
    """An edge state made just before phase 4 of month 2, 9 or 21 (ordinary months before)."""
    month = twins(seed=7)
    for t in range(months):
        assert month() == [], t
    n = len(twins.flags)
    assert month(perturb) == []
    if perturb is not _void_only:
        assert len(twins.flags) == n + 1  # the full kernel ran


def test_payoff_pays_arrears_first(twins):
    """Payoffs by borrowers with unpaid interest: the prepayment's first stage runs (flag),
    where numpy rebinds the loan book's accrued and overdue (the compiled phase writes them
    in place)."""
    def perturb(m, month):
        _payoffs(m, month)
        m.loans.accrued[m.loans.active] += 1.0
    month = twins(seed=7)
    for _ in range(3):
        month()
    assert month(perturb) == []
    assert twins.flags[-1][0] > 0 and twins.flags[-1][3]


def test_ties_go_to_the_lower_row(twins):
    """k rows of equal exposure share k + 1 units: a quota of 1 + 1/k each, one unit left
    over, which goes to the lowest row, by hand: 2 units to the first row, 1 to the others."""
    def perturb(m, month):
        b, L = m.borrowers, m.loans
        b.arrears_months[:] = 0
        b.call_months[:] = -1
        b.dscr_breach[:] = 0
        rows = (L.borrower == 6).nonzero()[0]
        L.active[rows] = True
        L.principal[rows] = 1e6
        L.accrued[rows] = 0.0
        b.fleet[6] = 0
        b.fleet[6, 0] = len(rows) + 1
        b.arrears_months[6] = 99
    month = twins(seed=7)
    month()
    assert month(perturb) == []
    a, b = month.models
    rows = (b.loans.borrower == 6).nonzero()[0]
    rep = [e for e in b.events if e[1] == "repossession" and e[0] == b.env.t]
    assert len(rows) >= 2
    assert [(e[3], e[4], e[5]) for e in rep] == [
        (int(b.loans.lender[r]), 0, 2 if r == rows[0] else 1) for r in rows]


def test_void_only_defaults_nobody(twins):
    """One borrower past its cure owing nothing: its call is cured (call_months -1), nobody
    defaults, no event; by hand."""
    month = twins(seed=7)
    month()
    assert month(_void_only) == []
    a, b = month.models
    assert b.borrowers.call_months[4] == -1
    assert not any(e[1].startswith("default") and e[0] == b.env.t for e in b.events)


def test_quiet_month_is_one_cheap_call(monkeypatch):
    """Nobody triggered: the full kernel is not called (any_trigger alone)."""
    m = LiquidationModel(load_scenario("baseline", [], months=3), engine="compiled")
    calls = []
    real = kdefaults.defaults_month
    monkeypatch.setattr(kdefaults, "defaults_month", lambda *a: calls.append(1) or real(*a))
    m.run()
    assert calls == []
    assert int(m.new_defaults.sum()) == 0
