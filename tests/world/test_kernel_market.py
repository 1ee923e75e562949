"""The compiled phase 6 (sim.world.kernels.market) against the numpy phase, its oracle: the same
month stepped both ways from copies of one state, across the switches the kernel covers; its
helpers against the functions they repeat (clear_book, outside_bids) on random inputs and on
cases worked by hand (Python's // and sum(), sim.core.jit's floordiv and pysum_terms, are
tested in tests/core/test_jit.py); signed zeros; the month it hands back to numpy."""

import copy
import math
import sys

import numpy as np
import pytest

from sim.core.config import load_scenario
from sim.core.jit import kernel
from sim.core.market import MAX_UNITS, clear_book, outside_bids
from sim.qa.oracle import model_state, same_bits
from sim.world import phases
from sim.world.kernels import market as km
from sim.world.model import LiquidationModel


@kernel
def _clear_k(aq, ap, bq, bp, k):
    a_fill = np.zeros(len(aq), np.int64)
    b_fill = np.zeros(len(bq), np.int64)
    price, volume = km._clear(aq, ap, len(aq), bq, bp, len(bq), k, a_fill, b_fill)
    return price, volume, a_fill, b_fill


@kernel
def _outside_k(top, scrap, depth, supply, scrap_block):
    qty = np.zeros(40, np.int64)
    price = np.zeros(40)
    n = km._outside_bids(top, scrap, depth, supply, scrap_block, qty, price, 0)
    return qty[:n], price[:n]


def _bits(x: float) -> tuple:
    return (math.copysign(1.0, x), x) if x == x else ("nan",)


# ------------------------------------------------------------------ the helpers


def test_clear_by_hand():
    # 10 units of market orders against bids of 4 @ 5, 4 @ 3, 4 @ 1: all 10 trade; the
    # marginal (10th) and the next (11th) bid unit are both the 1.0 bid, so the price is 1.0
    price, volume, af, bf = _clear_k(np.array([10]), np.array([0.0]), np.array([4, 4, 4]),
                                     np.array([5.0, 3.0, 1.0]), 0.5)
    assert (price, volume, af.tolist(), bf.tolist()) == (1.0, 10, [10], [4, 4, 2])
    # three equal bids of 1 unit for 2 units: largest remainder, ties to the lower rows
    price, volume, af, bf = _clear_k(np.array([2]), np.array([1.0]), np.array([1, 1, 1]),
                                     np.array([2.0, 2.0, 2.0]), 0.5)
    # interval [max(1, next bid 2), min(2, no next ask)] = [2, 2]
    assert (price, volume, bf.tolist()) == (2.0, 2, [1, 1, 0])
    # no bid reaches the ask: no trade, NaN, no fills
    price, volume, af, bf = _clear_k(np.array([5]), np.array([3.0]), np.array([5]),
                                     np.array([2.0]), 0.5)
    assert math.isnan(price) and volume == 0 and af.tolist() == [0] and bf.tolist() == [0]


@pytest.mark.parametrize("n_orders", [(3, 5), (8, 30), (40, 25)])  # small and numpy books
def test_clear_is_clear_book(n_orders):
    rng = np.random.default_rng(sum(n_orders))
    na, nb = n_orders
    for trial in range(300):
        levels = rng.choice([0.0, 0.5, 1.0, 1.5, 2.0, 3.0], size=na + nb)  # many ties
        aq = rng.integers(0, 20, na)
        bq = rng.integers(0, 20, nb)
        ap = np.where(rng.random(na) < 0.3, 0.0, levels[:na] * rng.choice([1.0, 1.1], na))
        bp = levels[na:] * rng.choice([1.0, 0.9], nb)
        k = (0.0, 0.5, 1.0, 0.3)[trial % 4]
        want = clear_book(aq.tolist(), ap.tolist(), bq.tolist(), bp.tolist(), k)
        price, volume, af, bf = _clear_k(aq, ap, bq, bp, k)
        assert _bits(price) == _bits(want[0]) and volume == want[1]
        assert af.tolist() == want[2] and bf.tolist() == want[3]


def test_outside_bids_is_outside_bids():
    rng = np.random.default_rng(3)
    cases = [(900.0, 50.0, 0.4, 7, True), (900.0, 950.0, 3.0, 2, True),  # top < scrap
             (1e4, 200.0, 250.0, 40, False), (1e4, 200.0, 25.0, 0, True)]
    cases += [(float(rng.uniform(0, 2e4)), float(rng.uniform(0, 500)),
               float(rng.uniform(0.05, 400)), int(rng.integers(1, 500)), bool(rng.random() < 0.5))
              for _ in range(300)]
    for top, scrap, depth, supply, block in cases:
        qty, price = _outside_k(top, scrap, depth, supply, block)
        want_q, want_p = outside_bids(top, scrap, depth, supply, block)
        assert qty.tolist() == want_q and price.tolist() == want_p


# ------------------------------------------------------------------ the phase


def _captured(monkeypatch, scenario, overrides, months, seed=None):
    """(model, orders) copied just before every month's phase 6, on the numpy engine."""
    got = []
    real = phases.market.run

    def spy(m, orders):
        got.append(copy.deepcopy((m, orders)))
        real(m, orders)

    monkeypatch.setattr(phases.market, "run", spy)
    LiquidationModel(load_scenario(scenario, list(overrides), seed=seed, months=months),
                     engine="numpy").run()
    monkeypatch.setattr(phases.market, "run", real)
    return got


def _both(m0, orders0):
    """Phase 6 from copies of one state on each engine; the models and the kernel's calls."""
    out, calls = [], []
    for engine in ("numpy", "compiled"):
        m, orders = copy.deepcopy((m0, orders0))
        m.engine = engine
        n = len(calls)
        real = km.market_month

        def count(*args, _real=real):
            calls.append(1)
            return _real(*args)

        km.market_month = count
        try:
            phases.market.run(m, orders)
        finally:
            km.market_month = real
        out.append((m, len(calls) - n))
    (a, na), (b, nb) = out
    assert na == 0
    return a, b, nb


def _differences(a, b) -> list[str]:
    sa, sb = model_state(a), model_state(b)
    bad = [k for k in sorted(set(sa) | set(sb)) if k not in sa or k not in sb
           or not same_bits(sa[k], sb[k]) or type(sa[k]) is not type(sb[k])]
    if a.events != b.events:
        bad.append("events")
    if a.flows != b.flows:
        bad.append("flows")
    return bad


# (overrides of crypto_winter, events that must occur in the 24 months at seed 5)
SWITCHES = [
    ((), {"buyer", "lender", "miner", "neocloud"}),
    (("buyers.outside_demand.enabled=false",), {"buyer", "salvage", "lender"}),
    (("sites.enabled=false", "market.k=1.0"), {"buyer", "lender"}),
    (("buyers.outside_demand.enabled=false", "policy.repo.enabled=true",
      "policy.repo.design='legacy'"), {"repo_desk", "salvage"}),
    (("policy.repo.enabled=true",), {"buyer", "lender"}),
    (("buyers.unlimited=true", "market.k=0.0"), {"buyer"}),
    (("buyers.outside_demand.enabled=false", "market.unsold_to_salvage=false"), {"buyer"}),
    (("policy.lolr.enabled=true", "policy.lolr.hold_months=2"), {"lolr", "salvage"}),
    (("policy.lolr.enabled=true", "policy.lolr.hold_months=3", "sites.enabled=false",
      "buyers.outside_demand.enabled=false", "policy.repo.enabled=true",
      "policy.repo.design='legacy'"), {"lolr", "repo_desk", "neocloud"}),
    (("shocks.0.size=0.95", "shocks.1.size=0.6", "borrowers.miner.cash_months=0.1",
      "borrowers.neocloud.cash_months=0.1"), {"lender", "miner"}),
    (("market.mode='parametric'",), {"lender", "miner", "neocloud"}),
    (("market.mode='parametric'", "market.alpha=3.0", "buyers.outside_demand.enabled=false",
      "policy.repo.enabled=true", "policy.repo.design='legacy'", "policy.lolr.enabled=true"),
     {"lender", "miner", "neocloud"}),
]


# test-fast: crypto_winter's defaults (about 1 s a case); every switch under make test
@pytest.mark.parametrize(("overrides", "agents"), [
    pytest.param(o, a, id="+".join(o) or "crypto_winter", marks=() if not o else pytest.mark.slow)
    for o, a in SWITCHES])
def test_month_by_month(monkeypatch, overrides, agents):
    """Every month of a run: phase 6 on the compiled engine leaves what numpy leaves (every
    array and number of the model and its books, their types, the events and the flows)."""
    states = _captured(monkeypatch, "crypto_winter", overrides, months=24, seed=5)
    seen, kernel_months = set(), 0
    for m0, orders0 in states:
        a, b, calls = _both(m0, orders0)
        # the kernel runs when some order offers units (else nothing is offered: numpy's
        # ask_book gives None and the phase stops before it, on both engines)
        offered = any(x.any() for x in (orders0.forced, orders0.patient, orders0.b_units,
                                        m0.desk.holdings))
        offered |= m0.lolr is not None and m0.lolr.holdings.any()
        assert calls == offered
        kernel_months += calls
        assert _differences(a, b) == [], f"month {a.env.t}"
        seen |= {e[2] for e in a.events[len(m0.events):]}
    assert agents <= seen and kernel_months > 0


def test_signed_zeros(monkeypatch):
    """-0.0 in the books before a month with sales: numpy's x + 0.0 turns it to +0.0 for
    the borrowers and lenders that sold nothing, and the kernel must too."""
    states = _captured(monkeypatch, "crypto_winter", (), months=12, seed=11)
    checked = 0
    for m0, orders0 in states:
        if not orders0.b_units.any():
            continue
        m0.borrowers.cash[orders0.b_units.sum(axis=1) == 0] = -0.0
        m0.lenders.cash[:] = np.where(m0.lenders.cash == 0.0, -0.0, m0.lenders.cash)
        m0.buyers.capital[0] = -0.0
        a, b, calls = _both(m0, orders0)
        assert calls == 1 and _differences(a, b) == []
        if a.sale_proceeds.any():  # a borrower sold: every borrower's cash got + proceeds
            zeros = a.borrowers.cash[orders0.b_units.sum(axis=1) == 0]
            assert not np.signbit(zeros[zeros == 0.0]).any()  # -0.0 + 0.0 = +0.0
            checked += 1
    assert checked > 0


def test_book_too_large_goes_to_numpy(monkeypatch):
    """A generation whose bids could reach MAX_UNITS units ((buyers + desk) x supply + supply
    + 1 > MAX_UNITS): the kernel changes nothing and the phase runs numpy, with numpy's
    result (here clear_book needs no check: the buyers' bids are far below the supply)."""
    states = _captured(monkeypatch, "crypto_winter", (), months=3, seed=11)
    m0, orders0 = states[-1]
    g = int(np.flatnonzero(m0.env.shipping)[0])
    orders0.patient[0, g] += MAX_UNITS // (m0.buyers.n + 2) + 1
    m, orders = copy.deepcopy((m0, orders0))
    m.engine = "compiled"
    before = copy.deepcopy(m)
    assert phases.market.run_compiled(m, orders) is False
    assert _differences(before, m) == []
    a, b, calls = _both(m0, orders0)
    assert calls == 1 and _differences(a, b) == []
    assert a.month_volume[g] > 0


def test_per_run_inputs_are_made_once_and_never_written(monkeypatch):
    """The generations newest first, the floor bid of a desk without one, the integer
    parameters and the liquid-cooled generations are made once a run
    (``m.kernel_inputs["market"]``): every month's kernel call gets the same arrays, the
    month written into the parameters, and the kernel leaves them as made; a changed
    ``m.liquid`` (a new list, or the same list edited) makes them anew."""
    seen = []
    real = km.market_month

    def spy(*args):
        # newest_first, the desk's floor bids, the integer parameters (and the month in
        # them), the liquid-cooled generations
        seen.append((args[2], args[21], args[0], int(args[0][km.IP_T]), args[5],
                     args[5].tolist()))
        return real(*args)

    monkeypatch.setattr(km, "market_month", spy)
    m = LiquidationModel("crypto_winter", months=36)
    for _ in range(24):
        m.step()
    assert len(seen) > 5
    newest, no_bid, ip, _, liquid, _ = seen[0]
    assert all(x[0] is newest and x[1] is no_bid and x[2] is ip and x[4] is liquid
               for x in seen)
    months = [x[3] for x in seen]
    assert months == sorted(set(months)) and months[-1] <= m.env.t  # the month of each call
    assert newest.tolist() == m.newest_first and newest.dtype == np.int64
    assert no_bid.shape == (m.n_gen,) and not no_bid.any()
    assert ip[1:].tolist() == [m.outside_on, m.cfg.market.unsold_to_salvage, m.buyers.unlimited,
                               m.buyers.sites, m.desk.enabled, m.desk.secured,
                               sys.version_info >= (3, 12), m.lolr is not None,
                               m.cfg.policy.lolr.hold_months, m.cfg.market.mode == "parametric"]
    assert all(x[5] == m.liquid for x in seen) and liquid.dtype == np.bool_
    n = len(seen)
    m.liquid[0] = not m.liquid[0]  # edited in place: seen, and the kernel gets the new flags
    while len(seen) == n and m.running:
        m.step()
    assert len(seen) > n and seen[-1][4] is not liquid and seen[-1][5] == m.liquid


def test_events_from_the_kernel_arrays(monkeypatch):
    """The event tuples built from the kernel's two arrays (codes, rows, generations and
    units in one, prices in the other) are those the numpy phase logs: the same run on each
    engine logs the same market events, sales by lenders and borrowers and purchases among
    them (the list is what the run's hash covers)."""
    logs = []
    for engine in ("numpy", "compiled"):
        m = LiquidationModel("crypto_winter", months=36, engine=engine)
        m.run()
        logs.append([e for e in m.events if e[1] in ("sale", "purchase")])
    assert logs[0] == logs[1]
    assert [repr(e) for e in logs[0]] == [repr(e) for e in logs[1]]  # int / float types too
    kinds = {(e[1], e[2]) for e in logs[1]}
    assert {("sale", "lender"), ("purchase", "buyer")} <= kinds, kinds
    assert kinds & {("sale", "miner"), ("sale", "neocloud")}, kinds


def _held(m) -> dict[tuple[str, str], np.ndarray]:
    """The numpy arrays of the model and of the books phase 6 moves, by (owner, name)."""
    return {(o, k): v for o, obj in (("model", m), ("buyers", m.buyers),
                                     ("lenders", m.lenders), ("borrowers", m.borrowers),
                                     ("desk", m.desk), ("loans", m.loans))
            for k, v in vars(obj).items() if isinstance(v, np.ndarray)}


def test_a_month_left_to_numpy_stays_resident(monkeypatch):
    """The month of ``test_book_too_large_goes_to_numpy`` on the compiled engine: the numpy
    code runs (numpy's result, checked there), and what it rebinds (the buyers' capital and
    MW as they settle their fills) is copied back into the model's own arrays, which stay."""
    states = _captured(monkeypatch, "crypto_winter", (), months=3, seed=11)
    m, orders = states[-1]
    g = int(np.flatnonzero(m.env.shipping)[0])
    orders.patient[0, g] += MAX_UNITS // (m.buyers.n + 2) + 1
    m.engine = "compiled"
    before = _held(m)
    capital = m.buyers.capital.copy()
    phases.market.run(m, orders)
    assert not np.array_equal(m.buyers.capital, capital)  # buyers bought: numpy rebound it
    assert sorted(k for k, v in _held(m).items() if before.get(k) is not v) == []


def test_sweep_of_sale_proceeds_in_place(monkeypatch):
    """The compiled sweep of the borrowers' sale proceeds (arrears first, then principal)
    leaves the numbers numpy's leaves, in the loan book's own arrays: every month of 12 with
    a borrower's sale, and among them months whose sweep pays arrears."""
    states = _captured(monkeypatch, "crypto_winter", (), months=12, seed=11)
    swept = arrears = 0
    for m0, orders0 in states:
        a, b, _ = _both(m0, orders0)
        if not a.sale_proceeds.any():
            continue
        before, owed = _held(b), b.loans.arrears.sum()
        phases.market.sweep_sale_proceeds(a)
        phases.market.sweep_sale_proceeds(b)
        assert _differences(a, b) == [], f"month {a.env.t}"
        assert sorted(k for k, v in _held(b).items() if before.get(k) is not v) == []
        swept += 1
        arrears += b.loans.arrears.sum() < owed
    assert swept > 0 and arrears > 0
