"""Phase 8's kernel (sim.world.kernels.funding) against the numpy phase: the clearing against
sim.core.contagion on random networks and a two-bank case checked by hand, one funding month
stepped both ways from the same states (sound, partly unpaid costs, runs, estates, failures),
and invalid inputs raising what the numpy clearing raises."""

import copy

import numpy as np
import pytest

from agents.lender import LenderStatus
from sim.core.contagion import rogers_veraart_state
from sim.core.jit import kernel
from sim.qa.oracle import model_state, same_bits
from sim.world.kernels.funding import _clearing
from sim.world.phases import funding


def _clear_py(liab, e, alpha, beta, tol, max_iter):
    return _clearing(liab, e, alpha, beta, tol, max_iter)


clear = kernel(_clear_py)


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_two_banks_by_hand():
    """A owes B 10 and holds 4; B owes nothing. Eisenberg-Noe: A pays all it has, p_A = 4,
    equity_A = 4 - 10 = -6, equity_B = 1 + 4 = 5; with alpha = 0.5 A pays 0.5 x 4 = 2, so
    equity_B = 1 + 2 = 3 (equity_A = e + Pi^T p - Lbar is still -6)."""
    liab = np.array([[0.0, 10.0], [0.0, 0.0]])
    e = np.array([4.0, 1.0])
    p, lbar, equity, solvent, code = clear(liab, e, 1.0, 1.0, 1e-12, 10_000)
    assert code == 0 and not solvent
    assert p.tolist() == [4.0, 0.0] and lbar.tolist() == [10.0, 0.0]
    assert equity.tolist() == [-6.0, 5.0]
    p, _, equity, _, _ = clear(liab, e, 0.5, 0.5, 1e-12, 10_000)
    assert p.tolist() == [2.0, 0.0] and equity.tolist() == [-6.0, 3.0]
    e[0] = 10.0  # A just meets its obligation: solvent, p = Lbar
    p, _, equity, solvent, _ = clear(liab, e, 1.0, 1.0, 1e-12, 10_000)
    assert solvent and p.tolist() == [10.0, 0.0] and equity.tolist() == [0.0, 11.0]


@pytest.mark.parametrize("seed", range(40))
def test_clearing_is_rogers_veraart_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    liab = rng.random((n, n)) * (rng.random((n, n)) < 0.4) * 100.0
    np.fill_diagonal(liab, 0.0)
    e = rng.random(n) * rng.choice([5.0, 50.0, 500.0])
    e[rng.random(n) < 0.2] = 0.0
    alpha, beta = [(1.0, 1.0), (0.5, 0.7), (0.3, 0.0), (1.0, 0.9)][seed % 4]
    p0, lbar0, eq0, solvent0 = rogers_veraart_state(liab, e, alpha, beta)
    p, lbar, eq, solvent, code = clear(liab, e, alpha, beta, 1e-12, 10_000)
    assert code == 0 and solvent == solvent0
    assert _same_bits(p, p0) and _same_bits(lbar, lbar0) and _same_bits(eq, eq0)


def _step_both(m, mutate=None):
    """Funding month on the numpy and the compiled engine from deep copies of m."""
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    if mutate is not None:
        mutate(a)
        mutate(b)
    a.engine, b.engine = "numpy", "compiled"
    funding.run(a)
    funding.run(b)
    sa, sb = model_state(a), model_state(b)
    bad = [k for k in sa if not same_bits(sa[k], sb[k])]
    bad += ["flows"] * (a.flows != b.flows)  # the same floats, added in the same order
    bad += ["events"] * (repr(a.events) != repr(b.events))
    bad += [f"desk.{k}" for k in vars(a.desk) if isinstance(getattr(a.desk, k), np.ndarray)
            and not same_bits(getattr(a.desk, k), getattr(b.desk, k))]
    return bad, b


@pytest.mark.parametrize("months", [1, 4, 9])
def test_funding_month_as_numpy(months, numpy_model):
    bad, _ = _step_both(numpy_model(months))
    assert bad == []


def test_marks_computed_first_when_the_book_row_is_stale(numpy_model):
    """The lenders' cached book marks from another month: the phase fills the table with
    LenderBook.marks before the kernel, the same bits (the table included)."""
    m = numpy_model(6)
    m.lenders._book_key = None
    m.lenders._table[:] = -1.0
    bad, b = _step_both(m)
    assert bad == [] and (b.lenders._table >= 0.0).all()


def test_unpaid_costs_runs_estates_and_failures(numpy_model):
    """Lenders out of cash (costs partly unpaid, capitalised), one failed with cash (its
    estate pays out), two deleveraging (run on), a -0.0 cash: the same bits."""
    def mutate(m):
        lb = m.lenders
        lb.cash[:4] = [-5e6, 0.0, -0.0, 1e3]
        lb.status[5] = LenderStatus.FAILED
        lb.cash[5] = 2e7
        lb.status[[6, 7]] = LenderStatus.DELEVERAGING
        lb.repo_debt[1] = 3e6
        m.interbank[2] *= 40.0  # lender 2 owes far more than it holds: it fails
    bad, b = _step_both(numpy_model(5, "lenders.types.bank.capital_ratio=0.01"), mutate)
    assert bad == []
    names = [ev[1] for ev in b.events if ev[0] == b.env.t]
    assert "lender_failure" in names  # the clearing's default path did run


def test_invalid_clearing_input_raises_as_numpy(numpy_model):
    m = numpy_model(2)
    for engine in ("numpy", "compiled"):
        x = copy.deepcopy(m)
        x.engine = engine
        x.interbank[0, 1] = np.nan
        with pytest.raises(ValueError, match="liabilities must contain only finite values"):
            funding.run(x)
