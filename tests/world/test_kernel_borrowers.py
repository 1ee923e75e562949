"""Phase 2's kernel (sim.world.kernels.borrowers) against the numpy code of the phase, its
oracle: one month of phase 2 from the same state both ways, at several months of a run and
in states pushed to the edges (everyone short, rationed and unsound lenders, NaN, signed
zeros, dead borrowers, balloons, sites), compared array by array, bit for bit."""

import copy
import math

import numpy as np
import pytest

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.world import phases
from sim.world.kernels import borrowers as kb
from sim.world.model import LiquidationModel

BOOKS = ("borrowers", "loans", "lenders", "env")


def _bits(x) -> bytes:
    return np.ascontiguousarray(x).tobytes()


def _diff(a: LiquidationModel, b: LiquidationModel) -> list[str]:
    """Names of the book arrays, numbers, flows and generator states that differ in bits."""
    bad = []
    for book in BOOKS:
        va, vb = vars(getattr(a, book)), vars(getattr(b, book))
        for k, x in va.items():
            y = vb[k]
            if isinstance(x, np.ndarray):
                if x.dtype != y.dtype or x.shape != y.shape or _bits(x) != _bits(y):
                    bad.append(f"{book}.{k}")
            elif isinstance(x, float) and not (x == y and math.copysign(1, x) == math.copysign(
                    1, y) or (x != x and y != y)):
                bad.append(f"{book}.{k}")
    for k, x in a.flows.items():
        if _bits(np.float64(x)) != _bits(np.float64(b.flows[k])):
            bad.append(f"flows.{k}")
    if a.rng.bit_generator.state != b.rng.bit_generator.state:
        bad.append("rng")
    return bad


@pytest.fixture(scope="module")
def worlds() -> dict[int, LiquidationModel]:
    """crypto_winter on the numpy engine after 0, 8, 20 and 40 months."""
    m = LiquidationModel("crypto_winter", engine="numpy")
    out = {0: copy.deepcopy(m)}
    for t in range(1, 41):
        m.step()
        if t in (8, 20, 40):
            out[t] = copy.deepcopy(m)
    return out


def _counted(monkeypatch, name: str) -> list:
    """Wraps the kernel ``kb.<name>`` for the test's duration; each call appends 1 to the
    list returned."""
    calls = []
    real = getattr(kb, name)

    def counted(*args):
        calls.append(1)
        return real(*args)
    monkeypatch.setattr(kb, name, counted)
    return calls


def _phase2_both(m: LiquidationModel, edit=None, monkeypatch=None):
    """Phase 1 on numpy, ``edit`` and phase 2 from copies of ``m``: (numpy, compiled, number
    of kernel calls)."""
    calls = [] if monkeypatch is None else _counted(monkeypatch, "waterfall")
    out = []
    for engine in ("numpy", "compiled"):
        x = copy.deepcopy(m)
        x.engine = "numpy"
        phases.environment.run(x)
        if edit is not None:
            edit(x)
        x.engine = engine
        phases.borrowers.run(x)
        out.append(x)
    return out[0], out[1], len(calls)


@pytest.mark.parametrize("t", [0, 8, 20, 40])
def test_one_month_as_numpy(worlds, t, monkeypatch):
    a, b, calls = _phase2_both(worlds[t], monkeypatch=monkeypatch)
    assert calls == 1
    assert _diff(a, b) == []


def _broke(m):
    """Most short: cash -$20m (unpaid bills; some -0.0), lenders with little cash (rationed
    draws), some lenders unsound, a -0.0 lender cash, free coins for every other borrower."""
    b, lb = m.borrowers, m.lenders
    b.cash[:] = -2e7
    b.cash[1::4] = -0.0
    lb.cash *= 1e-4
    lb.cash[0] = -0.0
    lb.status[1::3] = LenderStatus.DELEVERAGING
    b.btc[::2] += 10.0


def _nan(m):
    """NaN in cash, arrears, a revolver limit and a lender's cash; inf opex cost."""
    b, L, lb = m.borrowers, m.loans, m.lenders
    _broke(m)
    b.cash[3] = np.nan
    L.accrued[7] = np.nan
    m.revolver_limit[5] = np.nan
    lb.cash[2] = np.nan
    b.fixed_opex[9] = np.inf


def _dead(m):
    """Every seventh borrower defaulted (its rows closed), some tenants gone, guarantees."""
    b, L = m.borrowers, m.loans
    dead = np.zeros(b.n, bool)
    dead[::7] = True
    b.status[dead] = BorrowerStatus.DEFAULTED
    L.active &= ~dead[L.borrower]
    b.tenant_gone[::3] = True
    b.guaranteed[::2] = True
    b.call_months[::5] = 2


def _balloons(m):
    """Every term loan matures now (the balloon), half the revolvers drawn, rich borrowers."""
    b, L = m.borrowers, m.loans
    L.maturity[L.term] = m.env.t
    rows = L.revolver_rows[::2]
    L.principal[rows] = m.revolver_limit[L.borrower[rows]] * 0.5
    b.cash *= 3.0


def _rich(m):
    """Nobody short, no revolver drawn: no coins sold, no draw, nothing to repay."""
    b, L = m.borrowers, m.loans
    b.cash += 1e12
    L.principal[L.revolver_rows] = 0.0


def _sites(m):
    """Half the mining halls let to AI tenants (sites.arbitrage's two arrays)."""
    b = m.borrowers
    rng = np.random.default_rng(5)
    b.mining_share = rng.random(b.n)
    b.site_income = rng.random(b.n) * 1e5
    b.site_income[::6] = -0.0


def _many_gens(m):
    """13 generations (the shipped scenarios have at most 5): fleet rows of 8 or more terms,
    which numpy sums pairwise with 8 accumulators (the kernel through psum), random rents,
    power costs and fleets, some -0.0 rents; half the contracts lapse this month."""
    b, env = m.borrowers, m.env
    rng = np.random.default_rng(13)
    g = 13
    env.rent = rng.random(g) * 2000.0
    env.rent[3] = -0.0
    env._power_cost = rng.random(g) * 300.0
    b.fleet = rng.integers(0, 5000, (b.n, g))
    b.contract_rent = rng.random((b.n, g)) * 2500.0
    b.contract_rent[::4, 5] = -0.0
    b.contract_end[::2] = env.t


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # _nan: inf x 0 GPUs
@pytest.mark.parametrize("edit", [_broke, _nan, _dead, _balloons, _rich, _sites, _many_gens],
                         ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("t", [0, 20])
def test_edge_states_as_numpy(worlds, t, edit, monkeypatch):
    a, b, calls = _phase2_both(worlds[t], edit, monkeypatch)
    assert calls == 1
    assert _diff(a, b) == []


def test_broke_state_takes_every_branch(worlds):
    """The _broke month sells coins, draws revolvers rationed by lenders' cash (some lenders
    unsound) and repays none: a check that the edge test above covers those branches."""
    a, _, _ = _phase2_both(worlds[0], _broke)
    assert a.flows["btc_sales"] > 0.0
    drawn = a.loans.principal[a.loans.revolver_rows]
    before = worlds[0].loans.principal[worlds[0].loans.revolver_rows]
    assert (drawn > before).any()
    unsound = a.lenders.status[a.lead] != LenderStatus.NORMAL
    assert unsound.any() and (drawn[unsound] == before[unsound]).all()
    # rationed: no lender lends more than the cash it had (1e-4 of its t0 cash)
    assert (drawn - before).sum() <= np.maximum(worlds[0].lenders.cash * 1e-4, 0.0).sum()


def test_other_revolver_layout_runs_numpy(worlds, monkeypatch):
    """A book whose revolvers are not one block (revolver_block None) runs the numpy code on
    the compiled engine: no kernel call, the same bits."""
    def unblock(m):
        m.loans.revolver_block = None
    a, b, calls = _phase2_both(worlds[8], unblock, monkeypatch)
    assert calls == 0
    assert _diff(a, b) == []


def _prepay_both(m: LiquidationModel, amount: np.ndarray, monkeypatch):
    """phases.borrowers.prepay of ``amount`` from copies of ``m``, numpy then compiled; the
    compiled engine writes the loan book's arrays in place (resident state, issue 19)."""
    calls = _counted(monkeypatch, "prepay")
    out = []
    for engine in ("numpy", "compiled"):
        x = copy.deepcopy(m)
        x.engine = engine
        before = [getattr(x.loans, k) for k in ("principal", "accrued", "overdue")]
        phases.borrowers.prepay(x, amount.copy())
        out.append(x)
    assert len(calls) == 1
    assert all(getattr(x.loans, k) is v
               for k, v in zip(("principal", "accrued", "overdue"), before, strict=True))
    return out


def _amounts(m: LiquidationModel) -> dict[str, np.ndarray]:
    """Prepayments as the phases make them and at the edges."""
    n = m.borrowers.n
    rng = np.random.default_rng(11)
    cash = np.maximum(m.borrowers.cash, 0.0)
    some = np.where(rng.random(n) < 0.3, cash * rng.random(n), 0.0)
    odd = some.copy()
    odd[::9] = np.nan
    odd[1::9] = -0.0
    odd[2::9] = -5e5
    odd[3::9] = np.inf
    L = m.loans
    owes = np.bincount(L.borrower, weights=L.accrued + L.overdue, minlength=n) > 0
    # negative amounts only where nothing is owed: the first stage is skipped
    negative = np.where(owes, 0.0, np.where(rng.random(n) < 0.5, -1e5, 0.0))
    return {"zero": np.zeros(n), "signed_zero": np.full(n, -0.0), "some": some,
            "all_cash": cash, "huge": np.full(n, 1e15), "odd": odd, "negative": negative}


def _in_arrears(m: LiquidationModel) -> LiquidationModel:
    """A copy of ``m`` in which every third borrower's rows owe interest and principal."""
    m = copy.deepcopy(m)
    L = m.loans
    late = (L.borrower % 3 == 0) & L.active
    L.accrued = np.where(late, L.principal * 0.01, L.accrued)
    L.overdue = np.where(late, L.principal * 0.05, L.overdue)
    return m


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf x 0, nan compares
@pytest.mark.parametrize("kind", ["zero", "signed_zero", "some", "all_cash", "huge", "odd",
                                  "negative"])
@pytest.mark.parametrize("arrears", [False, True], ids=["current", "arrears"])
# test-fast: month 0 (months 20 and 40 under make test)
@pytest.mark.parametrize("t", [0, *(pytest.param(t, marks=pytest.mark.slow)
                                for t in (20, 40))])
def test_prepay_as_numpy(worlds, t, arrears, kind, monkeypatch):
    m = _in_arrears(worlds[t]) if arrears else worlds[t]
    a, b = _prepay_both(m, _amounts(m)[kind], monkeypatch)
    assert _diff(a, b) == []


def test_prepay_in_arrears_pays_arrears_first(worlds, monkeypatch):
    """A borrower whose rows owe 100 $ of interest and 50 $ of principal and pays 120 $: its
    rows get 120/150 of what each is owed, interest first, nothing is prepaid, the cash moves
    from it to the lenders (numbers by hand, on both engines)."""
    m = copy.deepcopy(worlds[0])
    L = m.loans
    L.accrued[:] = 0.0
    L.overdue[:] = 0.0
    rows = (L.borrower == 4).nonzero()[0]
    L.accrued[rows[0]] = 100.0
    L.overdue[rows[0]] = 50.0
    amount = np.zeros(m.borrowers.n)
    amount[4] = 120.0
    a, b = _prepay_both(m, amount, monkeypatch)
    for x in (a, b):
        assert x.loans.accrued[rows[0]] == 0.0  # 120 x (100 + 50) / 150 = 120: 100 interest
        assert x.loans.overdue[rows[0]] == 30.0  # ... and 20 of principal
        assert x.loans.principal[rows[0]] == m.loans.principal[rows[0]] - 20.0
        assert x.borrowers.cash[4] == m.borrowers.cash[4] - 120.0
    assert _diff(a, b) == []
