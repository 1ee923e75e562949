"""Issue 14, part D: lenders with other assets, a DSCR default, guarantees, long debt and a
cascade metric that means what it says. Each test is a case small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core.config import ConfigError, Scenario, load_scenario
from sim.world import phases
from sim.world.model import LiquidationModel


def world(**over) -> LiquidationModel:
    """One neo-cloud of 1,000 H100s on spot rent, one lender type, a flat calm world."""
    data = {
        "months": 24,
        "environment": {"rent_vol": 0.0, "btc_vol_calm": 0.0, "btc_vol_stress": 0.0},
        "borrowers": {"miner": {"count": 0, "fleet_mean": 1, "fleet_mix": [1], "spread": 0.03,
                                "contracted_share": 0, "guarantee_prob": 0},
                      "neocloud": {"count": 1, "fleet_mean": 1000, "fleet_sigma": 0.0,
                                   "fleet_mix": [0, 1], "spread": 0.045,
                                   "contracted_share": 0.0, "guarantee_prob": 0.0,
                                   "term_months": 120},
                      "loan_age_max": 0},
        "lenders": {"count": 2, "types": {"pc": {"share": 1, "capital_ratio": 0.2,
                                                 "interbank_share": 0.0, "mark": "book",
                                                 "sale_discount": 0.1}}},
        "network": {"syndicate": 2.0},
    }
    return LiquidationModel(Scenario.model_validate(data), overrides=over)


# ------------------------------------------------------------------ 1. other assets
def test_other_loans_are_sized_from_the_gpu_share_and_earn_and_lose_by_hand():
    m = world(**{"lenders.types.pc.gpu_share": 0.25, "lenders.types.pc.other_yield": 0.06,
                 "lenders.types.pc.other_loss_calm": 0.012,
                 "lenders.types.pc.other_loss_stress": 0.048})
    lb = m.lenders
    gpu = m.loans.by_lender(m.loans.exposure, lb.n)
    # GPU loans are 25 % of the loan book: other = gpu x 0.75 / 0.25 = 3 x gpu
    np.testing.assert_allclose(lb.other_loans, 3.0 * gpu, rtol=1e-12)
    # cash is cash_share (5 %) of external assets: cash = 0.05 / 0.95 x (gpu + other)
    np.testing.assert_allclose(lb.cash, 0.05 / 0.95 * 4.0 * gpu, rtol=1e-12)
    # the other loans are external assets in the clearing: assets = cash + gpu + other
    np.testing.assert_allclose(lb.assets, lb.cash + 4.0 * gpu, rtol=1e-12)
    b0 = lb.other_loans.copy()
    income, loss = lb.other_loans_month(stress=False)
    np.testing.assert_allclose(income, b0 * 0.06 / 12)  # 0.5 % a month
    np.testing.assert_allclose(loss, b0 * 0.012 / 12)  # 0.1 % a month
    income, loss = lb.other_loans_month(stress=True)
    np.testing.assert_allclose(loss, b0 * (1 - 0.001) * 0.004)  # 4.8 %/yr under stress
    np.testing.assert_allclose(lb.other_losses, b0 * (0.001 + 0.999 * 0.004))


def test_other_loans_keep_the_accounts_and_lower_gpu_losses_share_of_assets():
    over = {f"lenders.types.{t}.{k}": v for t in ("bank", "private_credit", "abl")
            for k, v in (("gpu_share", 0.2), ("other_yield", 0.07),
                         ("other_loss_calm", 0.01), ("other_loss_stress", 0.03))}
    m = LiquidationModel("crypto_winter", months=24, overrides=over)
    # the GPU-only book (gpu_share 1: no other loans), not the default lenders' mixed books
    plain = LiquidationModel("crypto_winter", months=24, overrides={
        f"lenders.types.{t}.gpu_share": 1.0 for t in ("bank", "private_credit", "abl")})
    assert plain.lenders.other_loans.sum() == 0.0
    for _ in range(24):
        m.step()
        plain.step()
        assert m.invariants() == []
    assert m.flows["other_loans"] > 0.0  # interest on other loans enters from outside
    assert m.lenders.other_losses.sum() > 0.0
    # GPU loans are 20 % of the loan book: every t0 balance sheet is 5 x the GPU-only one
    np.testing.assert_allclose(m.assets0, 5.0 * plain.assets0, rtol=1e-9)


def _two_lender_crisis(links: bool) -> LiquidationModel:
    """A owes B 50 (with links) or outside creditors (without); both hold 100 of other loans
    and no GPU loans; equity A 5, B 10. A stress month writes off 1/12 of every other loan."""
    m = world(**{"lenders.types.pc.gpu_share": 0.5, "lenders.types.pc.other_loss_stress": 1.0,
                 "lenders.types.pc.cash_share": 0.0, "environment.sofr": 0.0,
                 "lenders.funding_rate_spread": 0.0, "lenders.holding_cost": 0.0})
    lb = m.lenders
    m.loans.principal[:] = 0.0
    m.loans.accrued[:] = 0.0
    lb.cash[:] = 0.0
    lb.other_loans[:] = 100.0
    m.interbank[:] = 0.0
    if links:
        m.interbank[0, 1] = 50.0  # A (0) owes B (1) 50
        lb.outside[:] = [45.0, 140.0]  # B's claim on A is funded from outside
    else:
        lb.outside[:] = [95.0, 90.0]
    lb.status[:] = LenderStatus.NORMAL
    m.env.stress = True
    return m


def test_interbank_links_pass_a_failing_lenders_loss_to_its_creditor():
    """Eisenberg-Noe / Rogers-Veraart: a lender that cannot pay in full pays its creditors
    pro rata, so with links its loss reaches them. By hand: a stress month writes off
    100/12 = 8.33 of each book. A: assets 91.67 < liabilities 95, fails, pays 91.67/95 =
    96.5 % of what it owes. With links B receives 0.965 x 50 = 48.25 of its 50 claim:
    equity 10 - 8.33 - 1.75 = -0.09 < 0, B fails too (2 failures). Without links B's equity
    is 10 - 8.33 = 1.67 > 0: only A fails (1 failure)."""
    out = {}
    for links in (True, False):
        m = _two_lender_crisis(links)
        phases.funding.run(m)
        out[links] = m.lenders.status.copy()
        if links:
            np.testing.assert_allclose(m.lenders.equity[1], 10 - 100 / 12 - 50 * (1 - (
                100 - 100 / 12) / 95), atol=1e-9)
    assert out[True].tolist() == [LenderStatus.FAILED, LenderStatus.FAILED]
    assert out[False][0] == LenderStatus.FAILED and out[False][1] != LenderStatus.FAILED
    assert (out[True] == LenderStatus.FAILED).sum() >= (out[False] == LenderStatus.FAILED).sum()


def test_gpu_share_must_be_positive():
    with pytest.raises(ConfigError):
        load_scenario("baseline", ["lenders.types.bank.gpu_share=0"])


# ------------------------------------------------------------------ 2. DSCR default
def _dscr_world(months_after_sweep: int, cash_months: float = 6.0) -> LiquidationModel:
    """Fixed opex of 1,300 $/GPU-month puts the neo-cloud's NOI below zero every month, while
    ``cash_months`` of opening cash keep it current on its debt (no arrears) and book marks
    keep its LTV low (no margin call). Six months of cash last past month 9 but never cover
    the debt (so a called facility defaults); twelve cover it (so it is paid off)."""
    return world(**{"borrowers.neocloud.fixed_opex_per_gpu": 1300.0,
                    "borrowers.neocloud.cash_months": cash_months,
                    "borrowers.neocloud.payout_months": 100.0,
                    "lenders.dscr_default_months": months_after_sweep,
                    "lenders.cash_sweep": 0.1})


@pytest.mark.parametrize(("after", "month"), [(2, 6), (5, 9)])
def test_a_dscr_breach_past_the_sweep_defaults_in_the_month_computed_by_hand(after, month):
    """DSCR_t = 0.5 DSCR_{t-1} + 0.5 NOI_t / DS_t from DSCR_0 = 2: with NOI < 0 every month
    DSCR_1 = 1 + 0.5 NOI_1/DS_1 < 1 = dscr_min and it stays below, so month t is breach month
    t. The sweep runs from breach month cure_months + 1 = 4; the default comes when the breach
    count exceeds cure_months + dscr_default_months: month 3 + 2 + 1 = 6 (or 3 + 5 + 1 = 9)."""
    m = _dscr_world(after)
    b, L = m.borrowers, m.loans
    for t in range(1, month + 1):
        m.step()
        if t < month:
            assert b.revenue[0] < b.opex[0]  # NOI < 0, the premise of the hand count
            assert b.dscr_breach[0] == t and b.status[0] != BorrowerStatus.DEFAULTED
            assert b.arrears_months[0] == 0 and b.call_months[0] == -1
            # the premise of a default: cash and coins cannot pay the facility off when called
            assert 0.0 < b.cash[0] + b.btc[0] * m.env.btc < L.by_borrower(L.exposure, b.n)[0]
    assert b.status[0] == BorrowerStatus.DEFAULTED
    ev = [e for e in m.events if e[1].startswith("default")]
    assert ev == [(month, "default_dscr", "neocloud", 0, -1, 0, ev[0][6], ev[0][7])]
    assert not [e for e in m.events if e[1] == "loan_accelerated_repaid"]


@pytest.mark.parametrize(("after", "month"), [(2, 6), (5, 9)])
def test_a_called_facility_the_borrower_can_pay_off_is_repaid_not_defaulted(after, month):
    """The same breach with twelve months of opening cash: in the month of the hand count the
    lender calls the facility, the borrower's cash exceeds all it owes, so it pays the debt off
    (event loan_accelerated_repaid, amount = the debt repaid): no default, no repossession, no
    loss; the breach ends (count 0) and the borrower keeps its 1,000 H100s and runs on. The
    amount is what a twin without the DSCR default (dscr_default_months 0: the same month's
    payments and sweep, no call) still owes at the month's end, and the borrower's cash is
    that much below the twin's."""
    m = _dscr_world(after, cash_months=12.0)
    twin = _dscr_world(0, cash_months=12.0)
    b, L, lb = m.borrowers, m.loans, m.lenders
    for t in range(1, month):
        m.step()
        twin.step()
        assert b.dscr_breach[0] == t and b.arrears_months[0] == 0
    debt = L.by_borrower(L.exposure, b.n)[0]
    cash = b.cash[0]
    assert cash > debt > 0.0  # the premise: it can pay
    m.step()
    twin.step()
    assert b.status[0] != BorrowerStatus.DEFAULTED and b.dscr_breach[0] == 0
    assert L.by_borrower(L.exposure, b.n)[0] == 0.0
    assert b.fleet[0].sum() == 1000 and lb.inventory.sum() == 0
    ev = [e for e in m.events if e[1] in ("loan_accelerated_repaid", "repossession")
          or e[1].startswith("default")]
    assert len(ev) == 1 and ev[0][:6] == (month, "loan_accelerated_repaid", "neocloud", 0, -1, 0)
    owed = twin.loans.by_borrower(twin.loans.exposure, b.n)[0]
    assert 0.0 < owed < debt  # this month's payments and sweep come first
    assert ev[0][6] == pytest.approx(owed, rel=1e-12)
    assert twin.borrowers.cash[0] - b.cash[0] == pytest.approx(owed, rel=1e-9)
    assert m.rec["credit_losses"][month] == 0.0 and m.invariants() == []
    m.step()  # it runs on, out of breach
    assert b.status[0] != BorrowerStatus.DEFAULTED and b.dscr_breach[0] <= 1


def test_without_dscr_default_months_the_breach_only_sweeps():
    m = _dscr_world(0)
    for _ in range(9):
        m.step()
    assert m.borrowers.status[0] != BorrowerStatus.DEFAULTED
    assert m.borrowers.dscr_breach[0] == 9
    assert not [e for e in m.events if e[1].startswith("default")]


# ------------------------------------------------------------------ 3. guarantees
def test_a_guarantee_lowers_the_spread_and_raises_the_advance_rate():
    """Guaranteed: rate = SOFR + 4.5 % - 2.25 % = 6.55 %, loan-to-cost 0.85 instead of 0.75;
    the t0 cap on the balance (ltv_cure x collateral) scales by 0.85 / 0.75 with it."""
    base = {"borrowers.neocloud.guarantee_prob": 1.0, "borrowers.neocloud.ltv": 0.75}
    plain = world(**base)
    g = world(**base, **{"borrowers.neocloud.guarantee_spread_cut": 0.0225,
                         "borrowers.neocloud.guarantee_ltv": 0.85})
    assert g.borrowers.guaranteed[0]
    np.testing.assert_allclose(g.loans.rate, 0.043 + 0.0225)
    np.testing.assert_allclose(plain.loans.rate, 0.043 + 0.045)
    debt_g = g.loans.exposure.sum()
    debt_p = plain.loans.exposure.sum()
    np.testing.assert_allclose(debt_g / debt_p, 0.85 / 0.75, rtol=1e-12)
    # the covenant headroom is the same: a guaranteed borrower is not in breach at t0
    g.step()
    assert g.borrowers.call_months[0] == -1


def test_an_unguaranteed_borrower_keeps_its_terms():
    g = world(**{"borrowers.neocloud.guarantee_prob": 0.0,
                 "borrowers.neocloud.guarantee_spread_cut": 0.0225,
                 "borrowers.neocloud.guarantee_ltv": 0.85})
    plain = world()
    np.testing.assert_array_equal(g.loans.rate, plain.loans.rate)
    np.testing.assert_array_equal(g.loans.principal, plain.loans.principal)


# ------------------------------------------------------------------ 4. long debt
def test_long_debt_scenario_runs_long_loans():
    cfg = load_scenario("long_debt")
    assert cfg.borrowers.neocloud.term_months == 84 and cfg.borrowers.miner.term_months == 60
    m = LiquidationModel(cfg, months=3)
    term = m.loans.term & m.loans.active
    # loans are 0-24 months old at t0: 36-84 (neo-clouds) or 36-60 (miners) months remain
    assert m.loans.maturity[term].min() >= 36 and m.loans.maturity[term].max() <= 84


# ------------------------------------------------------------------ 5. metrics
TWO = {"borrowers.miner.count": 1, "borrowers.miner.fleet_mean": 2000,
       "borrowers.miner.fleet_sigma": 0.0, "borrowers.miner.fleet_mix": [0, 1],
       "borrowers.miner.fixed_opex_per_gpu": 5000.0, "borrowers.miner.cash_months": 0.0,
       "borrowers.miner.revolver_share": 0.0, "borrowers.miner.term_months": 120,
       "borrowers.neocloud.cash_months": 1.0, "borrowers.neocloud.payout_months": 1.0,
       "lenders.types.pc.mark": "market", "lenders.max_hold_months": 0,
       "buyers.capacity_scale": 0.001, "market.unsold_to_salvage": False, "months": 10,
       "metrics.cascade_counterfactual": True}


def test_cascade_counts_the_contagious_default_of_a_two_borrower_world():
    """Borrower 0 (a miner: 5,000 $/GPU-month of opex, no cash, no revolver) misses its first
    payment and defaults in month 2 (arrears > 1 month of grace) whatever the market does.
    Its 2,000 H100s are dumped at once into buyers with 0.1 % of their capacity and no
    salvage bid: the H100 price falls to the few bids left, the lender (marking at market)
    calls borrower 1's margin in month 3, and borrower 1, with one month of cash, cannot cure
    it: it defaults in month 3 + 3 = 6. In the counterfactual (unlimited buyers: the price
    follows value) borrower 1 is never called: its default is the one contagious default."""
    from sim.world import metrics

    m = world(**TWO).run()
    ev = [(e[0], e[1], e[3]) for e in m.events if e[1].startswith("default")]
    assert ev == [(2, "default_payment", 0), (6, "default_covenant", 1)]
    s = metrics.summary(m)
    assert s["defaults"] == 2
    assert s["defaults_counterfactual"] == 1  # the miner only
    assert s["cascade_size"] == 1
    cf = LiquidationModel(metrics.counterfactual_scenario(m.cfg), months=10).run()
    assert cf.borrowers.status.tolist() == [BorrowerStatus.DEFAULTED, BorrowerStatus.HEALTHY]


def test_no_price_channel_no_cascade_though_defaults_come_in_two_waves():
    """With unlimited buyers already, borrower 1 defaults by itself (opex 1,300 $/GPU-month
    leaves it no NOI) in a later month: the first-wave count calls that a cascade of 1; the
    counterfactual metric gives 0."""
    from sim.world import metrics

    m = world(**{**TWO, "buyers.unlimited": True, "months": 12,
                 "borrowers.neocloud.fixed_opex_per_gpu": 1300.0}).run()
    months = sorted({e[0] for e in m.events if e[1].startswith("default")})
    assert len(months) == 2  # two waves
    s = metrics.summary(m)
    assert s["defaults"] == 2 and s["cascade_size"] == 0 and s["defaults_counterfactual"] == 2


def test_cascade_of_a_model_that_has_not_run_is_zero():
    from sim.world import metrics

    s = metrics.summary(world(**TWO))
    assert s["cascade_size"] == 0 and s["defaults_counterfactual"] == 0


def test_cascade_switch_off_keeps_the_first_wave_count():
    from sim.world import metrics

    m = world(**{**TWO, "metrics.cascade_counterfactual": False}).run()
    s = metrics.summary(m)
    assert "defaults_counterfactual" not in s and s["cascade_size"] == 1  # 2 - first wave 1


@pytest.mark.slow
def test_credit_losses_at_writeoff_never_fall_and_later_recoveries_are_apart():
    from sim.world import metrics

    m = LiquidationModel("crypto_winter", overrides={"metrics.losses_at_writeoff": True}).run()
    plain = LiquidationModel("crypto_winter",
                             overrides={"metrics.losses_at_writeoff": False}).run()
    r, p = m.rec, plain.rec
    assert (np.diff(r["credit_losses"]) >= 0).all() and (np.diff(r["recoveries"]) >= 0).all()
    assert (np.diff(p["credit_losses"]) < 0).any()  # the old, net series does fall
    # net = at write-off - later recoveries = write-offs - all recoveries (the old series)
    np.testing.assert_allclose(r["credit_losses"] - r["recoveries"], p["credit_losses"],
                               rtol=1e-9, atol=1e-3)
    s = metrics.summary(m)
    np.testing.assert_allclose(s["net_credit_losses"], s["credit_losses"] - s["recoveries"],
                               rtol=1e-12)
    np.testing.assert_allclose(s["net_credit_losses"], metrics.summary(plain)["credit_losses"],
                               rtol=1e-12)
