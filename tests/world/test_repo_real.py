"""A real repo market and a buyer of last resort (issue 15; docs/model.md, "A secured repo and
a buyer of last resort"): variation margin and repo defaults worked out by hand, the same-month
rule, a financed fleet that keeps earning, the buyer of last resort's floor, space and holding
limit, and the accounting every month of crypto_winter with each switch on."""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.config import ConfigError, Scenario
from sim.world import phases
from sim.world.model import LiquidationModel

SECURED = {"policy.repo.enabled": True, "policy.repo.design": "secured"}
LEGACY = {"policy.repo.enabled": True, "policy.repo.design": "legacy"}
WINTER = {"shocks.0.size": 0.8}  # crypto_winter with an 80 % BTC shock


def _secured_model() -> LiquidationModel:
    """A baseline model with the secured desk, before its first month (no repo yet)."""
    m = LiquidationModel(overrides=SECURED, rng=3)
    assert m.desk.lent == 0.0 and not m.lenders.repo_debt.any()
    return m


def _pledge(m: LiquidationModel, units: int = 100, debt: float = 750_000.0,
            cash: float = 1_000_000.0) -> None:
    """Lender 0 holds ``units`` GPUs of generation 0, all pledged for ``debt`` (lent at
    (1 - 0.25) x 10,000 $ = 7,500 $ a unit), due in month 5, and ``cash``."""
    lb, desk = m.lenders, m.desk
    lb.inventory[:] = 0
    lb.repo_units[:] = 0
    lb.inventory[0, 0] = units
    lb.repo_units[0, 0] = units
    lb.repo_debt[0] = debt
    lb.cash[0] = cash
    desk.lent = debt
    desk.cash -= debt
    desk.maturity_l[0] = 5


def _lend_price(m: LiquidationModel, price: float, h: float = 0.25) -> np.ndarray:
    p = np.full(m.n_gen, price)
    m.price = p
    return (1.0 - h) * p


def test_margin_call_posted_by_hand():
    m = _secured_model()
    _pledge(m)
    cash0 = m.desk.cash
    # the price falls from 10,000 to 8,000 $: the loan may be at most 100 x 0.75 x 8,000 =
    # 600,000 $, so the call is 750,000 - 600,000 = 150,000 $, posted from 1,000,000 $
    phases.orders.secured_lenders(m, _lend_price(m, 8_000.0))
    lb, desk = m.lenders, m.desk
    assert lb.cash[0] == pytest.approx(850_000.0)
    assert lb.repo_debt[0] == pytest.approx(600_000.0)
    assert desk.cash - cash0 == pytest.approx(150_000.0)
    assert desk.margin_received[0] == pytest.approx(150_000.0)
    assert desk.cash_repaid[0] == pytest.approx(150_000.0)
    assert desk.lent == pytest.approx(600_000.0)
    # the collateral stays with its owner, still pledged; no default
    assert lb.inventory[0, 0] == 100 and lb.repo_units[0, 0] == 100
    assert desk.holdings.sum() == 0 and desk.defaults[0] == 0
    # a price that does not fall asks for nothing more
    phases.orders.secured_lenders(m, _lend_price(m, 8_000.0))
    assert lb.cash[0] == pytest.approx(850_000.0)


def test_repo_default_desk_sells_loss_by_hand():
    m = _secured_model()
    _pledge(m, cash=100_000.0)  # short of the 150,000 $ call
    lb, desk = m.lenders, m.desk
    lb.claim_pool[0] = 1_000_000.0  # written-off exposure the GPUs may still recover
    rec0, recovered0 = lb.recoveries[0], m.recovered_total
    phases.orders.secured_lenders(m, _lend_price(m, 8_000.0))
    # the desk takes the 100 units for the 750,000 $ debt: that is their cost to it, and the
    # lender's recovery; the lender's cash is untouched (it had the loan's cash already)
    assert lb.inventory[0, 0] == 0 and lb.repo_debt[0] == 0.0 and lb.repo_units[0, 0] == 0
    assert lb.cash[0] == 100_000.0
    assert desk.holdings[0] == 100 and desk.cost_basis[0] == pytest.approx(750_000.0)
    assert desk.lent == pytest.approx(0.0) and desk.defaults[0] == 1
    assert lb.recoveries[0] - rec0 == pytest.approx(750_000.0)
    assert m.recovered_total - recovered0 == pytest.approx(750_000.0)
    assert desk.margin_received[0] == 0.0
    # the desk sells the 100 units at 7,000 $: 700,000 $ in, a loss of 50,000 $
    cash0 = desk.cash
    row = 2 * m.lenders.n + m.borrowers.n  # the desk's row in the book of asks
    phases.market.settle_orders(m, 0, [row], [100], 7_000.0)
    assert desk.cash - cash0 == pytest.approx(700_000.0)
    assert desk.default_loss[0] == pytest.approx(50_000.0)
    assert desk.holdings[0] == 0 and desk.cost_basis[0] == pytest.approx(0.0)
    assert desk.cash_sold[0] == pytest.approx(700_000.0)


def test_term_repaid_or_rolled():
    m = _secured_model()
    _pledge(m)
    m.env.t = 5  # the loan's term ends; the line is not forced (status normal, just held)
    m.lenders.inv_since[0, 0] = 5
    # no call: 100 x 7,500 = 750,000 $ allowed
    phases.orders.secured_lenders(m, _lend_price(m, 10_000.0))
    assert m.lenders.repo_debt[0] == 0.0 and m.lenders.cash[0] == pytest.approx(250_000.0)
    assert m.desk.cash_repaid[5] == pytest.approx(750_000.0)
    m2 = _secured_model()
    _pledge(m2, cash=10_000.0)  # cannot repay: it rolls for another term (3 months)
    m2.env.t = 5
    m2.lenders.inv_since[0, 0] = 5
    phases.orders.secured_lenders(m2, _lend_price(m2, 10_000.0))
    assert m2.lenders.repo_debt[0] == 750_000.0 and m2.desk.maturity_l[0] == 8


def _run(overrides: dict, seed: int = 2, check=None) -> LiquidationModel:
    m = LiquidationModel("crypto_winter", rng=seed, overrides={**WINTER, **overrides})
    while m.running and m.env.t < m.cfg.months:
        m.step()
        assert m.invariants() == [], (m.env.t, m.invariants())
        if check is not None:
            check(m)
    return m


def _desk_books(m: LiquidationModel) -> None:
    """Loans add up; the desk's cash is its opening cash plus its cash flows; no negatives."""
    d, t = m.desk, m.env.t
    assert d.lent == pytest.approx(m.lenders.repo_debt.sum() + d.b_debt.sum(), rel=1e-9,
                                   abs=1e-3)
    flows = np.cumsum(d.cash_repaid + d.interest + d.cash_sold - d.cash_lent - d.cash_bought
                      - d.funding)
    cap = d.cfg.capacity if d.enabled else 0.0
    # its cost of capital: (SOFR + 0 spread) / 12 on loans + GPUs at cost, paid at month end
    # (nothing is lent or bought between that payment and the record)
    rate = m.cfg.environment.sofr / 12.0
    assert d.funding[t] == pytest.approx((d.loans[t] + d.holdings_cost[t]) * rate, rel=1e-12,
                                         abs=1e-9)
    if m.lolr is not None:
        lo = m.lolr
        assert lo.funding[t] == pytest.approx(lo.holdings_cost[t] * rate, rel=1e-12, abs=1e-9)
    assert d.cash_balance[t] - cap == pytest.approx(flows[t], rel=1e-9, abs=1e-3)
    assert d.pnl()[t] == pytest.approx(flows[t] + d.loans[t] + d.mark[t], rel=1e-9, abs=1e-3)
    assert d.mark[t] == pytest.approx(float((d.holdings * m.price).sum()))
    assert (d.holdings >= 0).all() and d.lent >= -1e-6


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    {}, LEGACY, SECURED, {"policy.lolr.enabled": True},
    {**SECURED, "policy.lolr.enabled": True},
    {**SECURED, "policy.repo.borrowers": False}], ids=["none", "legacy", "secured", "lolr",
                                                      "secured+lolr", "secured-lenders-only"])
def test_invariants_every_month(overrides):
    m = _run(overrides, check=_desk_books)
    units = m.gpu_units()
    assert np.array_equal(units, m.units0)


def test_repo_defaults_in_a_run_keep_the_books():
    """A thin haircut (z x 0.02 x 1 + 0) and a 95 % BTC shock: borrowers default on their repo
    loans; units and cash are conserved, the desk's books hold every month and every default
    is logged."""
    o = {**SECURED, "policy.repo.sigma": 0.02, "policy.repo.liq_addon": 0.0,
         "shocks.0.size": 0.95}
    m = _run(o, seed=6, check=_desk_books)
    d = m.desk
    ev = [e for e in m.events if e[1] == "repo_default"]
    assert d.defaults.sum() == len(ev) > 0
    assert d.default_loss.sum() > 0.0
    # the desk sold what it took: the loss is realised, nothing is left at cost but unsold units
    assert d.holdings_cost[-1] == pytest.approx(float(d.cost_basis.sum()))


@pytest.mark.slow
def test_same_month_rule_and_no_bids_when_secured():
    sec = _run(SECURED)
    ev = sec.events
    loans = {e[0] for e in ev if e[1] == "repo_loan"}
    assert loans, "the secured desk lent nothing: the rule below would be vacuous"
    assert not [e for e in ev if e[1] == "purchase" and e[2] == "repo_desk"]
    assert sec.desk.cash_bought.sum() == 0.0
    # the legacy desk does buy its own collateral the month it lends (what the rule forbids)
    leg = _run(LEGACY)
    lent = {e[0] for e in leg.events if e[1] == "repo_loan"}
    bought = {e[0] for e in leg.events if e[1] == "purchase" and e[2] == "repo_desk"}
    assert lent & bought


def test_financed_fleet_keeps_earning():
    m = _secured_model()
    h = np.full(m.n_gen, 0.25)  # the desk's haircut
    b = m.borrowers
    alive = b.alive
    fac = m.loans.by_borrower(m.loans.exposure, b.n)
    room = 0.75 * (b.fleet * m.price).sum(axis=1) - fac
    i = int(np.argmax(np.where(alive, room, -np.inf)))
    assert room[i] > 1_000.0
    rev0, _ = b.operating(m.env)
    rev0, fleet0 = rev0.copy(), b.fleet.copy()
    b.cash[i] = 0.0
    gross = np.zeros(b.n)
    gross[i] = 1_000.0  # short 1,000 $ of arrears with no cash: it borrows 1,000 $
    need = phases.orders.secured_borrowers(m, gross, alive, h)
    assert need[i] == pytest.approx(0.0)
    assert m.desk.b_debt[i] == pytest.approx(1_000.0) and b.cash[i] == pytest.approx(1_000.0)
    assert m.desk.b_maturity[i] == 3
    # the fleet stays with the borrower and earns the same rent
    assert np.array_equal(b.fleet, fleet0)
    rev1, _ = b.operating(m.env)
    assert rev1[i] == rev0[i] > 0.0
    # a month later the interest (SOFR + 3 %) / 12 is paid from its cash
    m.env.t = 1
    b.cash[i] = 500.0
    phases.orders.secured_borrowers(m, np.zeros(b.n), alive, h)
    rate = m.cfg.environment.sofr + 0.03
    assert m.desk.interest[1] == pytest.approx(1_000.0 * rate / 12.0)
    assert b.cash[i] == pytest.approx(500.0 - 1_000.0 * rate / 12.0)


@pytest.mark.slow
def test_lolr_floor_space_and_holding_limit(monkeypatch):
    o = {"policy.lolr.enabled": True, "policy.lolr.mw": 2.0, "policy.lolr.hosting_mw": 1.0,
         "policy.lolr.hosting_per_kw_month": 100.0, "policy.lolr.hold_months": 4,
         "policy.lolr.floor_share": 0.6}
    seen, hosted = [], []

    def check(m):
        lo, t = m.lolr, m.env.t
        # never more kW than its own MW plus the hosted MW
        assert lo.kw_used[t] <= 3_000.0 + 1e-9
        assert float((lo.holdings * m.env.kw).sum()) <= 3_000.0 + 1e-9
        # costs: power and spot opex on all it runs, the facility charge (184 $/kW-month) on
        # its own 2 MW, hosting (100 $/kW-month) on the kW beyond (by hand)
        if lo.kw_used[t] > 0:
            run = m.env.power_cost_per_gpu() + m.cfg.buyers.spot_opex_per_gpu
            per_gpu = float((lo.holdings_at_operate * run).sum())
            kw = lo.kw_used[t]
            assert m.env.cfg.facility_cost == 184.0
            assert lo.costs[t] == pytest.approx(per_gpu + min(kw, 2_000.0) * 184.0
                                                + max(kw - 2_000.0, 0.0) * 100.0)
            hosted.append(kw > 2_000.0)
        seen.append(lo.holdings.copy())

    op = phases.policies.lolr_operate

    def spy(model):  # the holdings the month's rent and costs are paid on
        model.lolr.holdings_at_operate = model.lolr.holdings.copy()
        return op(model)

    monkeypatch.setattr(phases.policies, "lolr_operate", spy)
    m = _run(o, check=check)
    buys = [e for e in m.events if e[1] == "purchase" and e[2] == "lolr"]
    sales = [e for e in m.events if e[1] == "sale" and e[2] == "lolr"]
    assert buys and sales
    for t, _, _, _, g, _u, _amount, price in buys:
        # a fill at the uniform price never exceeds its bid: 0.6 x the value in best use
        assert price <= 0.6 * m.rec["fundamental"][t][g] * (1 + 1e-12)
    first = {}
    for e in buys:
        first.setdefault(e[4], e[0])
    for t, _, _, _, g, *_ in sales:
        assert t - first[g] >= 4  # never sells before its holding limit
    # space binds: at some month it holds within one unit's kW of its 3 MW
    kw_max = max(float((h * m.env.kw).sum()) for h in seen)
    assert kw_max > 3_000.0 - m.env.kw.max()
    assert m.lolr.rent.sum() > 0.0 and any(hosted)  # the hosting contract was used


def test_secured_is_the_default_design():
    """policy.repo.enabled switches on the secured repo; the legacy desk is asked for by name."""
    assert LiquidationModel(overrides={"policy.repo.enabled": True}).desk.secured
    assert not LiquidationModel(overrides=LEGACY).desk.secured


def test_bad_input():
    with pytest.raises(ConfigError):
        LiquidationModel(overrides={"policy.repo.design": "public"})
    with pytest.raises(ConfigError):
        LiquidationModel(overrides={"policy.lolr.floor_share": 1.5})
    with pytest.raises(ConfigError):
        LiquidationModel(overrides={"policy.repo.term_months": 0})
    assert Scenario().policy.repo.design == "secured" and not Scenario().policy.repo.enabled
    assert not Scenario().policy.lolr.enabled
