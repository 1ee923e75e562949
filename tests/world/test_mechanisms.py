"""Each mechanism on a case small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.borrower import BorrowerStatus
from agents.buyer import BuyerBook
from agents.lender import LenderStatus
from sim.core.config import Scenario, load_scenario
from sim.core.environment import HOURS_PER_MONTH, Environment
from sim.core.finance import LoanBook, largest_remainder, lognormal_call, scheduled_payment
from sim.world import phases
from sim.world.model import LiquidationModel
from sim.world.state import MonthState


def tiny(**over) -> LiquidationModel:
    """One neo-cloud, two lenders marking at market, a few buyers, a flat calm world."""
    data = {
        "months": 24,
        "environment": {"rent_vol": 0.0, "btc_vol_calm": 0.0, "btc_vol_stress": 0.0},
        "borrowers": {"miner": {"count": 0, "fleet_mean": 1, "fleet_mix": [1], "spread": 0.03,
                                "contracted_share": 0, "guarantee_prob": 0},
                      "neocloud": {"count": 1, "fleet_mean": 1000, "fleet_sigma": 0.0,
                                   "fleet_mix": [0, 1], "spread": 0.04,
                                   "contracted_share": 0.0, "guarantee_prob": 0.0}},
        "lenders": {"count": 2, "types": {"abl": {"share": 1, "capital_ratio": 0.2,
                                                  "interbank_share": 0.0, "mark": "market",
                                                  "sale_discount": 0.1}}},
        "network": {"syndicate": 2.0},
    }
    return LiquidationModel(Scenario.model_validate(data), overrides=over)


def tiny_miner() -> LiquidationModel:
    """``tiny`` with one miner instead: 1,000 GPUs, 10 BTC of which half pledged."""
    return tiny(**{"borrowers.miner.count": 1, "borrowers.neocloud.count": 0,
                   "borrowers.miner.fleet_mean": 1000, "borrowers.miner.fleet_sigma": 0.0,
                   "borrowers.miner.fleet_mix": [0, 1], "borrowers.miner.btc_treasury_mean": 10,
                   "borrowers.miner.btc_pledge": 0.5})


# ------------------------------------------------------------------ finance
def test_amortisation_schedule_straight_line_then_balloon():
    """1,000 borrowed at 12 %/yr, 20 %/yr of the original amortised: 10 interest and
    16.67 principal in month 1; the instalment never exceeds what is left."""
    interest, amort = scheduled_payment(np.array([1000.0]), np.array([1000 * 0.2 / 12]),
                                        np.array([0.12]))
    assert interest[0] == pytest.approx(10.0)
    assert amort[0] == pytest.approx(16.6666667)
    _, amort = scheduled_payment(np.array([5.0]), np.array([16.0]), np.array([0.12]))
    assert amort[0] == 5.0


def test_payment_goes_to_interest_first_pari_passu_across_lenders():
    """Two rows of one borrower (60/40), each owed 6 + 20 interest/principal and 4 + 10;
    paying 20 of the 40 due gives each row half of its due: row 0 gets 13 = 6 interest + 7
    principal, row 1 gets 7 = 4 interest + 3 principal; the rest is arrears."""
    book = LoanBook(borrower=np.array([0, 0]), lender=np.array([0, 1]),
                    principal=np.array([600.0, 400.0]), orig_amort=np.array([20.0, 10.0]),
                    rate=np.array([0.12, 0.12]), maturity=np.array([99, 99]),
                    revolver=np.array([False, False]))
    paid = book.pay(np.array([20.0]), np.array([6.0, 4.0]), np.array([20.0, 10.0]))
    np.testing.assert_allclose(paid, [13.0, 7.0])
    np.testing.assert_allclose(book.accrued, [0.0, 0.0])
    np.testing.assert_allclose(book.overdue, [13.0, 7.0])
    np.testing.assert_allclose(book.principal, [593.0, 397.0])
    np.testing.assert_allclose(book.arrears, [13.0, 7.0])


def test_largest_remainder_apportionment():
    """10 units over weights 0.45/0.35/0.2 -> quotas 4.5/3.5/2 -> 4/3/2 + the one left over to
    the largest remainder (0.5, tie broken to the lower row) -> 5/3/2; groups are separate."""
    out = largest_remainder(np.array([10, 7]), np.array([0.45, 0.35, 0.2, 1, 1, 1]),
                            np.array([0, 0, 0, 1, 1, 1]))
    np.testing.assert_array_equal(out, [5, 3, 2, 3, 2, 2])


# ------------------------------------------------------------------ buyers
def _one_gen_book(launch: int, deflation: float, power: float, rent_vol: float,
                  buyers: int = 1):
    """One generation X (1 kW, PUE 1, rent 2 $/h, full use) and one buyer type (10 %/yr,
    integration 500; ``buyers`` of them): revenue 1,460 $/month, power cost 0.73 x power
    $/MWh and no other running cost (no facility charge: it has its own worked example in
    tests/world/test_econ_value.py). Units are retired by economics (the default) at a physical
    life of 72 months from launch; the installed price 1.3 x 30,000 = 39,000 $ caps every
    value (never binding here)."""
    cfg = Scenario.model_validate({
        "environment": {"generations": [{"name": "X", "launch_month": launch,
                                         "list_price": 30000, "kw_per_gpu": 1.0, "rent0": 2.0}],
                        "rent_deflation": deflation, "utilisation": 1.0, "pue": 1.0,
                        "power_price": power, "rent_vol": rent_vol, "facility_cost": 0.0},
        "borrowers": {"miner": {"count": 1, "fleet_mean": 10, "fleet_mix": [1], "spread": 0.03,
                                "contracted_share": 0, "guarantee_prob": 0},
                      "neocloud": {"count": 1, "fleet_mean": 10, "fleet_mix": [1],
                                   "spread": 0.03, "contracted_share": 0, "guarantee_prob": 0}},
        "buyers": {"spot_opex_per_gpu": 0.0, "physical_life_months": 72, "types": {"t": {
            "count": buyers, "hurdle": 0.10, "integration_cost": 500, "capital": 1e6,
            "spare_mw": 1.0, "life_months": 72}}}})
    assert cfg.buyers.retirement == "economic" and cfg.buyers.value_cap
    env = Environment(cfg, np.random.default_rng(0))
    return BuyerBook(cfg, env), env


def test_reservation_price_is_the_discounted_net_rent_annuity():
    """Flat rent 2 $/h, no deflation, full utilisation, no power or running costs: net rent
    1,460 $/month for the remaining 12 months at 10 %/yr, minus 500 integration:
    P = 1460 * sum_{m=1..12} 1.1^(-m/12) - 500."""
    book, env = _one_gen_book(launch=-60, deflation=0.0, power=0.0, rent_vol=0.0)
    net = 2.0 * HOURS_PER_MONTH
    expected = net * sum(1.1 ** (-m / 12) for m in range(1, 13)) - 500
    assert book.reservation(env)[0, 0] == pytest.approx(expected, rel=1e-12)
    # capacity: min(capital / price, MW x 1000 / kW) = min(1e6 / 20000, 1000) = 50
    assert book.capacity(np.array([20000.0]), 1.0)[0] == 50
    assert book.capacity(np.array([100.0]), 1.0)[0] == 1000


def test_buyers_with_different_expectations_are_valued_each_on_their_own():
    """Two buyers of one type, flat rent, no costs, 12 months left at 10 %/yr: a buyer whose
    extrapolation is x values the rent as 1460 exp(x m / 12) a month, so
    P(x) = sum_{m=1..12} 1460 exp(x m / 12) 1.1^(-m/12) - 500. When the two buyers' x differ
    (-0.3 and 0), the per-buyer valuation gives each its own P(x); the by-type shortcut,
    used when every buyer shares one x, gives the same numbers."""
    book, env = _one_gen_book(launch=-60, deflation=0.0, power=0.0, rent_vol=0.0, buyers=2)

    def by_hand(x):
        return sum(1460 * math.exp(x * m / 12) * 1.1 ** (-m / 12) for m in range(1, 13)) - 500

    book.extrap = np.array([[-0.3], [0.0]])
    mixed = book.reservation(env)[:, 0]
    assert mixed == pytest.approx([by_hand(-0.3), by_hand(0.0)], rel=1e-12)
    for i, x in enumerate((-0.3, 0.0)):
        book.extrap = np.full((2, 1), x)
        assert book.reservation(env)[i, 0] == pytest.approx(mixed[i], rel=1e-12)


@pytest.mark.slow
def test_lognormal_call_is_black_scholes_by_hand():
    """F = 100, K = 80, s = 0.25: d1 = (ln 1.25 + 0.03125) / 0.25 = 1.017574, d2 = 0.767574,
    N(d1) = 0.845560, N(d2) = 0.778630, call = 84.5560 - 62.2904 = 22.2656. With s = 0 it is
    max(F - K, 0); with K <= 0 it is F - K (the machine always runs)."""
    assert lognormal_call(100.0, 80.0, 0.25) == pytest.approx(22.265590, abs=1e-6)
    np.testing.assert_allclose(lognormal_call([100.0, 50.0, 100.0], [80.0, 80.0, -5.0], 0.0),
                               [20.0, 0.0, 105.0])
    assert lognormal_call(100.0, 0.0, 0.5) == pytest.approx(100.0)


def test_zero_volatility_valuation_is_the_discounted_positive_margin():
    """Rent halves a year (1,460 x 0.5^(m/12) $/month), power 730 $/month, 24 months left:
    the margin is positive up to month 12 and negative after, where the buyer switches off, so
    P = sum_{m=1..24} max(1460 x 0.5^(m/12) - 730, 0) 1.1^(-m/12) - 500 (the old formula)."""
    book, env = _one_gen_book(launch=-48, deflation=0.5, power=1000.0, rent_vol=0.0)
    expected = sum(max(1460 * 0.5 ** (m / 12) - 730, 0) * 1.1 ** (-m / 12)
                   for m in range(1, 25)) - 500
    assert book.reservation(env)[0, 0] == pytest.approx(expected, rel=1e-12)
    # with rent risk the switched-off months are worth something: strictly more (Jensen)
    risky, env = _one_gen_book(launch=-48, deflation=0.5, power=1000.0, rent_vol=0.05)
    assert risky.reservation(env)[0, 0] > expected + 1.0


def test_one_month_of_running_is_an_at_the_money_call():
    """One month left (launched 71 months ago, life 72), revenue 1,460 = power cost 1,460
    (2,000 $/MWh), monthly rent vol 0.2: at the money, E[max(R - c, 0)] = F (2 N(s/2) - 1)
    = 1460 x (2 x 0.5398278 - 1) = 116.2973, discounted one month at 10 %/yr: 115.3773; less
    the 500 integration cost it is negative, so the price is 0."""
    book, env = _one_gen_book(launch=-71, deflation=0.0, power=2000.0, rent_vol=0.2)
    assert book._pv(env, book._t_disc, book._t_life, np.zeros(1),
                    np.zeros((1, 1)))[0, 0] == pytest.approx(115.3773, abs=1e-4)
    assert book.reservation(env)[0, 0] == 0.0


def _h100_value_by_hand(cfg: Scenario, vol: float) -> float:
    """The baseline H100's value in best use at t0, computed here: for each buyer type k
    (all present), V_k = sum_{m=1}^{96-30} C_m (1 + r_k)^(-m/12) - I_k, with the month's
    running option C_m = F N(d1) - c N(d1 - s) (Black 1976), d1 = (ln(F/c) + s^2/2) / s,
    s = vol sqrt(m) (max(F - c, 0) at s = 0), F = u R0 730 (1 - d)^(m/12) and
    c = kW PUE 730 p / 1000 + spot opex + kW x facility charge; the unit runs up to its
    96-month physical life (launched 30 months before t0); V = min(max_k V_k, 1.3 x list)."""
    e, b = cfg.environment, cfg.buyers
    g = next(x for x in e.generations if x.name == "H100")
    cost = (g.kw_per_gpu * e.pue * 730.0 * e.power_price / 1000.0 + b.spot_opex_per_gpu
            + g.kw_per_gpu * e.facility_cost)
    best = -math.inf
    for t in b.types.values():
        pv = 0.0
        for m in range(1, b.physical_life_months + g.launch_month + 1):
            f = e.utilisation * g.rent0 * 730.0 * (1.0 - e.rent_deflation) ** (m / 12)
            sd = vol * math.sqrt(m)
            if sd == 0.0:
                call = max(f - cost, 0.0)
            else:
                d1 = (math.log(f / cost) + sd * sd / 2.0) / sd
                call = (f * (1.0 + math.erf(d1 / math.sqrt(2.0))) / 2.0
                        - cost * (1.0 + math.erf((d1 - sd) / math.sqrt(2.0))) / 2.0)
            pv += call * (1.0 + t.hurdle) ** (-m / 12)
        best = max(best, pv - t.integration_cost)
    return min(best, e.installed_multiple * g.list_price)


def test_option_value_never_below_zero_volatility_value_and_tiny_for_h100():
    """Jensen: E[max(R - c, 0)] >= max(E[R] - c, 0), so risk never lowers a value. The
    baseline H100 earns 0.85 x 2 $/h x 730 = 1,241 $ a month at t0 against a running cost
    of 437 $ (power 57, spot opex 150, facility 230): the option to switch off matters only
    in its last years, where the 15 %/yr decline brings its revenue near that cost, and
    risk adds 1.15 % to its value (both values computed here, independently of the model).
    With the earlier model's 72-month clock and no facility charge (``buyers.retirement =
    "life"``, ``facility_cost = 0``) the unit is retired while still deep in the money, and
    risk adds less than 1 %."""
    vals, hand = {}, {}
    for vol in (0.0, 0.04):
        cfg = load_scenario("baseline", overrides=[f"environment.rent_vol={vol}"])
        env = Environment(cfg, np.random.default_rng(0))
        vals[vol] = BuyerBook(cfg, env).fundamental(env)
        hand[vol] = _h100_value_by_hand(cfg, vol)
    assert (vals[0.04] >= vals[0.0] - 1e-9).all()
    h100 = [g.name for g in cfg.environment.generations].index("H100")
    for vol in (0.0, 0.04):
        assert vals[vol][h100] == pytest.approx(hand[vol], rel=1e-9)
    assert hand[0.04] / hand[0.0] - 1 == pytest.approx(0.0115, abs=1e-4)
    old = {}
    for vol in (0.0, 0.04):
        cfg = load_scenario("baseline", overrides=[f"environment.rent_vol={vol}",
                                                   "buyers.retirement='life'",
                                                   "environment.facility_cost=0"])
        env = Environment(cfg, np.random.default_rng(0))
        old[vol] = BuyerBook(cfg, env).fundamental(env)
    assert (old[0.04] >= old[0.0] - 1e-9).all()
    assert old[0.04][h100] / old[0.0][h100] - 1 < 0.01


def test_value_in_best_use_ignores_buyer_types_with_no_buyers():
    """asic_2022 keeps the default hyperscaler type with count 0 (8 %/yr): it would value a
    rig above the miners and brokers who exist, but nobody can pay that price. At the 2021
    hashprice every type values a rig above its new price (10,000 $, the rig its own installed
    unit), so the cap (``buyers.value_cap``, on by default; the asic_2022 file keeps the 2022
    market and switches it off) makes all three values 10,000 $ and hides the ordering: it is
    checked without the cap, then with it."""
    cfg = load_scenario("asic_2022", ["buyers.value_cap=false"])
    env = Environment(cfg, np.random.default_rng(0))
    book = BuyerBook(cfg, env)
    by_type = book._pv(env, book._t_disc, book._t_life, book._t_integration,
                       np.zeros((1, 1)))[:, 0]
    names = book.type_names
    assert by_type[names.index("hyperscaler")] > by_type.max(initial=0, where=[
        n != "hyperscaler" for n in names])
    present = max(by_type[names.index("tier2")], by_type[names.index("broker")])
    assert book.fundamental(env)[0] == pytest.approx(present)
    assert book.fundamental(env)[0] == pytest.approx(book.reservation(env).max(axis=0)[0])
    # with the cap: every value capped at the new-unit price, which the present types exceed
    capped = load_scenario("asic_2022", ["buyers.value_cap=true"])
    env = Environment(capped, np.random.default_rng(0))
    book = BuyerBook(capped, env)
    assert env.new_unit_price[0] == 10_000.0 < present
    assert book.fundamental(env)[0] == 10_000.0
    assert book.reservation(env).max(axis=0)[0] == 10_000.0


def test_hashprice_revenue_vol_follows_the_btc_regime_while_the_path_is_fixed():
    """asic_2022: BTC moves by its twelve -11.52 % shocks only (``btc_random_walk = false``),
    yet buyers price rig revenue at 50 %/yr (calm), then 75 %/yr once BTC is 30 % off its peak
    (month 3: 1 - 0.8848^3 = 30.7 %)."""
    cfg = load_scenario("asic_2022")
    env = Environment(cfg, np.random.default_rng(0))
    assert env.revenue_vol()[0] == pytest.approx(0.50 / np.sqrt(12))
    for t in range(1, 4):
        env.step()
        assert env.btc == pytest.approx(60000 * (1 - 0.1152) ** t, rel=1e-12)
    assert env.stress
    assert env.revenue_vol()[0] == pytest.approx(0.75 / np.sqrt(12))


# ------------------------------------------------------------------ borrowers and lenders
def test_waterfall_uses_btc_then_revolver_before_arrears():
    """A miner short of cash sells unpledged BTC first; only then draws the revolver."""
    m = tiny_miner()
    b = m.borrowers
    b.cash[:] = 0.0
    b.fleet[:] = 0  # no revenue at all: the whole debt service is a shortfall
    btc0 = b.btc[0]
    rv = m.loans.revolver
    m.env.step()
    phases.borrowers.run(m)
    assert b.btc[0] == pytest.approx(btc0 * 0.5)  # free coins sold, pledged ones kept
    assert m.loans.principal[rv][0] > 0  # then the revolver
    assert b.cash[0] == pytest.approx(0.0, abs=1e-6)


def test_margin_call_cured_by_cash_or_ending_in_default():
    m = tiny()
    b, lb = m.borrowers, m.lenders
    debt = m.loans.exposure.sum()
    # the market mark falls so that LTV = 0.95 > 0.85: a margin call opens
    m.price_hist[0, 1] = debt / 0.95 / b.fleet[0, 1]
    b.cash[:] = 0.0
    m.env.t = 1
    month = MonthState(m.env.t, m.fundamental)
    phases.lenders.run(m, month)
    assert b.call_months[0] == 1
    assert any(e[1] == "margin_call" for e in m.events)
    # with enough cash the borrower pays down to LTV 0.75 and the call is cured
    b.cash[:] = debt
    cash_before, lender_cash = b.cash[0], lb.cash.sum()
    phases.lenders.run(m, month)
    coll = b.fleet[0, 1] * m.price_hist[0, 1]
    assert m.loans.exposure.sum() == pytest.approx(0.75 * coll, rel=1e-9)
    assert b.call_months[0] == -1
    assert cash_before - b.cash[0] == pytest.approx(lb.cash.sum() - lender_cash)
    # without cash the call stays open past the cure period (3 months) and the loan defaults
    m.price_hist[0, 1] *= 0.5
    b.cash[:] = 0.0
    for _ in range(4):
        phases.lenders.run(m, month)
    assert b.call_months[0] > m.cfg.lenders.cure_months
    phases.defaults.run(m, MonthState(m.env.t, m.fundamental,
                                      m.lenders.marks(m.env, m.price_hist, 0, 3)))
    assert b.status[0] == BorrowerStatus.DEFAULTED


def test_repossession_splits_units_and_books_losses():
    """At default every GPU goes to the facility's lenders in proportion to exposure, cash is
    seized, exposure is written off; later sales recover up to the unrecovered claim."""
    m = tiny()
    b, lb, loans = m.borrowers, m.lenders, m.loans
    units = int(b.fleet[0].sum())
    ead = loans.exposure.copy()
    m._cash0 += 1000.0 - b.cash[0]  # the test sets the cash by hand
    b.cash[:] = 1000.0
    b.arrears_months[:] = m.cfg.lenders.grace_months + 1
    marks = lb.marks(m.env, m.price_hist, 0, 3)
    phases.defaults.run(m, MonthState(m.env.t, m.fundamental, marks))
    assert b.status[0] == BorrowerStatus.DEFAULTED and b.fleet.sum() == 0
    per_lender = np.bincount(loans.lender, weights=ead, minlength=2)
    got = lb.inventory[:, 1]
    assert got.sum() == units
    assert np.all(np.abs(got - units * per_lender / per_lender.sum()) < 1.0)
    assert lb.writeoffs.sum() == pytest.approx(ead.sum())
    assert lb.recoveries.sum() == pytest.approx(1000.0)
    assert lb.claim_pool.sum() == pytest.approx(ead.sum() - 1000.0)
    assert m.invariants() == []
    # selling 10 units at 5,000 recovers 50,000 of the claim
    seller = int(np.argmax(got))  # its forced-order row: lenders' forced rows come first
    rec0 = lb.recoveries.sum()
    phases.market.settle_orders(m, 1, [seller], [10], 5000.0)
    assert lb.recoveries.sum() - rec0 == pytest.approx(50_000.0)
    assert lb.inventory[:, 1].sum() == units - 10


# ------------------------------------------------------------------ behaviours added late
def test_free_btc_is_sold_once_and_pledged_coins_stay_with_the_lenders():
    """After the free half of the treasury is sold, the next shortfall cannot sell the
    pledged half: it goes to the revolver instead."""
    m = tiny_miner()
    b = m.borrowers
    b.cash[:] = 0.0
    b.fleet[:] = 0
    pledged = b.btc_pledged[0]
    rv = m.loans.revolver
    for _ in range(2):
        m.env.step()
        phases.borrowers.run(m)
    assert b.btc[0] == pytest.approx(pledged)
    assert b.btc_pledged[0] == pytest.approx(pledged)
    assert m.loans.principal[rv][0] > 0


def test_guaranteed_capacity_is_relet_at_spot_and_the_guarantor_pays_its_cover():
    """1,000 contracted GPUs at a locked 2.4 $/h: 1,000 x 2.4 x 730 = 1,752,000 a month.
    The tenant walks; the guarantor pays 50 % of the locked rent and the GPUs are re-let at
    spot (2.0 $/h x 0.85 utilisation): 876,000 + 1,241,000 = 2,117,000."""
    m = tiny(**{"borrowers.neocloud.contracted_share": 1.0,
                "borrowers.neocloud.guarantee_prob": 1.0})
    b, env = m.borrowers, m.env
    b.fleet[0] = [0, 1000, 0, 0, 0]
    b.contract_rent[0, 1] = 2.4
    env.rent[1] = 2.0
    b.contract_end[0] = 99
    rev, _ = b.operating(env)
    assert rev[0] == pytest.approx(1000 * 2.4 * 730)
    b.tenant_gone[0] = True
    rev, _ = b.operating(env)
    assert rev[0] == pytest.approx(0.5 * 1000 * 2.4 * 730 + 1000 * 2.0 * 730 * 0.85)


def test_no_loan_is_in_breach_at_t0():
    """No facility is above its own cure threshold at t0. A guaranteed borrower with a raised
    advance rate (``guarantee_ltv`` 0.85 against ``ltv`` 0.75) has its LTV covenants scaled
    by 0.85 / 0.75, so its cure threshold is 0.75 x 0.85 / 0.75 = 0.85; everyone else's is
    ``ltv_cure`` = 0.75."""
    for name in ("baseline", "crypto_winter"):
        m = LiquidationModel(load_scenario(name))
        marks = m.lenders.marks(m.env, m.price_hist, 0, m.cfg.lenders.appraisal_lag)
        _, _, ltv = phases.lenders.facility_ltv(m, marks)
        bt = m.cfg.borrowers
        b = m.borrowers
        cure = np.full(b.n, m.cfg.lenders.ltv_cure)
        for code, t in ((0, bt.miner), (1, bt.neocloud)):
            raised = b.guaranteed & (b.kind == code)
            if t.guarantee_ltv > 0:
                cure[raised] = m.cfg.lenders.ltv_cure * t.guarantee_ltv / t.ltv
        assert (ltv <= cure + 1e-9).all()
        # the raised threshold is used: guaranteed facilities above 0.75 exist at t0
        assert (ltv[~b.guaranteed] <= m.cfg.lenders.ltv_cure + 1e-9).all()
        assert ltv[b.guaranteed].max() > m.cfg.lenders.ltv_cure + 0.05


def test_repo_desk_finances_each_repossessed_gpu_once():
    """The legacy desk (docs/model.md 7.17): one repo loan per repossessed GPU."""
    m = tiny(**{"policy.repo.enabled": True, "policy.repo.design": "legacy"})
    lb = m.lenders
    lb.inventory[0, 1] = 100
    lb.inv_since[0, 1] = 0
    lb.status[0] = LenderStatus.DELEVERAGING  # its inventory is forced
    marks = lb.marks(m.env, m.price_hist, 0, 3)
    m.env.t = 1
    books = phases.orders.run(m, MonthState(m.env.t, m.fundamental, marks))
    debt = lb.repo_debt[0]
    h = m.desk.haircuts(m.price, m.fundamental)[1]
    assert debt == pytest.approx(100 * m.price[1] * (1 - h))
    assert books.forced[0, 1] == 0 and books.patient[0, 1] == 100
    # a financed line asks what the haircut leaves of value, not its (higher) mark
    assert books.patient_price[0, 1] <= max((1 - h) * m.fundamental[1],
                                               books.floor[1]) + 1e-9
    # next month: the same GPUs are not financed again
    books = phases.orders.run(m, MonthState(m.env.t, m.fundamental, marks))
    assert lb.repo_debt[0] == pytest.approx(debt)
    assert books.patient[0, 1] == 100


def test_price_without_any_possible_bidder_moves_with_value_not_to_salvage():
    m = tiny(**{"buyers.capacity_scale": 0.0})
    p0, v0 = m.price.copy(), m.fundamental.copy()
    m.step()
    g = 1
    assert not m.traded[g]
    expected = max(p0[g] * m.fundamental[g] / v0[g], 0.08 * m.env.list_price[g])
    assert m.price[g] == pytest.approx(expected)
    assert m.price[g] > 0.08 * m.env.list_price[g]


def test_borrower_sale_proceeds_pay_arrears_then_principal():
    """500 of arrears (300 interest, 200 principal) and 10 GPUs sold at 2,000: 20,000 of
    proceeds pay the 500 arrears and prepay 19,500 of principal; lenders get all 20,000."""
    m = tiny()
    b, L, lb = m.borrowers, m.loans, m.lenders
    rows = np.flatnonzero(~L.revolver)
    L.accrued[rows] = 300.0 * L.principal[rows] / L.principal[rows].sum()
    L.overdue[rows] = 200.0 * L.principal[rows] / L.principal[rows].sum()
    principal0, lender_cash0 = L.principal.sum(), lb.cash.sum()
    b.cash[:] = 0.0
    m.reset_month()
    m.sale_proceeds = np.zeros(b.n)
    # borrower 0's row follows the lenders'
    phases.market.settle_orders(m, 1, [2 * lb.n], [10], 2000.0)
    phases.market.sweep_sale_proceeds(m)
    assert L.arrears.sum() == pytest.approx(0.0, abs=1e-9)
    assert principal0 - L.principal.sum() == pytest.approx(200.0 + 19_500.0)
    assert lb.cash.sum() - lender_cash0 == pytest.approx(20_000.0)
    assert b.cash[0] == pytest.approx(0.0, abs=1e-9)


def test_cash_above_the_buffer_is_paid_out():
    """A healthy borrower keeps payout_months x (opex + debt service) and pays out the rest."""
    m = tiny()
    b, lb = m.borrowers, m.lenders
    b.cash[:] = 1e9
    lender_cash0 = lb.cash.sum()
    m.env.step()
    phases.borrowers.run(m)
    debt_service = lb.cash.sum() - lender_cash0
    assert b.cash[0] == pytest.approx(6.0 * (b.opex[0] + debt_service))
    assert m.flows["payouts"] < -5e8


def test_sound_lender_repays_outside_funding_with_excess_cash():
    """A normal lender brings its cash down to cash_share x assets by repaying outside
    funding (here 5 M$ of excess against ~10 M$ of outside funding)."""
    m = tiny()
    lb = m.lenders
    extra = 0.5 * lb.outside[0]
    lb.cash[0] += extra
    m._cash0 += extra
    outside0 = lb.outside[0]
    m.env.step()
    phases.funding.pay_lender_costs(m)
    cash_before = lb.cash[0]
    phases.funding.repay_outside(m)
    target = lb.cash_share[0] * lb.assets[0]
    assert lb.cash[0] == pytest.approx(target)
    assert outside0 - lb.outside[0] == pytest.approx(cash_before - target)
    assert outside0 - lb.outside[0] > 0.4 * outside0
    assert m.invariants() == []


def test_month_debt_coll_cache_equals_a_fresh_evaluation_in_a_stressed_run(monkeypatch):
    """Phases 4 and 5 read the month's (debt, collateral) from phase 3's evaluation in the
    month's ``MonthState`` (``phases.lenders.month_debt_coll``) instead of recomputing it. In
    crypto_winter's first 24 months at seed 12 (both phases read the cache in months with and
    without a cash sweep, and called facilities are paid off with pledged coins,
    ``phases.defaults.accelerate``, in months where the cache is read afterwards) the cached
    values must equal, to the bit, a fresh ``phases.lenders.facility_ltv(m, marks)`` for every
    borrower alive when they are read (phase 4 reads the defaulting borrowers before taking
    their GPUs). On the numpy engine, whose phases call ``month_debt_coll`` and ``accelerate``
    (the compiled phases 4 and 5 replay both inside their kernels and are checked against
    these numpy phases bit for bit: tests/world/test_kernel_defaults.py, test_kernel_orders.py)."""
    m = LiquidationModel(load_scenario("crypto_winter", ["seed=12"], months=24), engine="numpy")
    cached = phases.lenders.month_debt_coll
    phase = [None]
    seen = []
    pledged_sold = []  # months a called facility was paid off with pledged coins
    accelerate = phases.defaults.accelerate

    def accelerated(model, month, dscr_default):
        b = model.borrowers
        before, pledged = dscr_default.copy(), b.btc_pledged.copy()
        accelerate(model, month, dscr_default)
        if (b.btc_pledged < pledged)[before & ~dscr_default].any():
            pledged_sold.append(model.env.t)

    def wrap(module):
        run = module.run

        def wrapped(*args):
            phase[0] = module.__name__.rsplit(".", 1)[1]
            return run(*args)
        return wrapped

    def checked(model, month):
        assert month.coll is not None and month.t == model.env.t  # served from the cache
        swept = month.debt is None  # debt moved by a sweep or payoff: recomputed once, then kept
        alive = model.borrowers.alive.copy()
        debt, coll = cached(model, month)
        fresh_debt, fresh_coll = phases.lenders.facility_ltv(model, month.marks)[:2]
        assert debt[alive].tobytes() == fresh_debt[alive].tobytes()
        assert coll[alive].tobytes() == fresh_coll[alive].tobytes()
        seen.append((phase[0], swept))
        read_in.append(model.env.t)
        return debt, coll

    read_in = []
    monkeypatch.setattr(phases.defaults, "run", wrap(phases.defaults))
    monkeypatch.setattr(phases.orders, "run", wrap(phases.orders))
    monkeypatch.setattr(phases.lenders, "month_debt_coll", checked)
    monkeypatch.setattr(phases.defaults, "accelerate", accelerated)
    for _ in range(24):
        m.step()
    defaults = m.rec["defaults_miner"].sum() + m.rec["defaults_neocloud"].sum()
    assert defaults > 0 and defaults == sum(1 for e in m.events if e[1].startswith("default_"))
    # the cache was read after a payoff with pledged coins moved the collateral
    assert set(pledged_sold) & set(read_in)
    # both phases read it, with the debt as phase 3 left it and after a sweep moved it
    assert {("defaults", False), ("defaults", True),
            ("orders", False), ("orders", True)} <= set(seen)
