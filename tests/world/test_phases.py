"""Issue 18, phases as modules: ``LiquidationModel.step`` is the list of the phase functions of
``sim/world/phases/``, the month's hand-overs are the explicit ``MonthState`` and ``SellOrders``,
and the agents' decision rules (``agents/``) return the intents worked out here by hand."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
from test_mechanisms import tiny  # one neo-cloud, two lenders marking at market, calm

from agents.lender import LenderStatus
from agents.repo_desk import margin_and_term, units_to_seize
from sim.world import phases
from sim.world.model import LiquidationModel
from sim.world.state import MonthState, SellOrders


# ------------------------------------------------------------------ the month's schedule
def test_step_calls_the_phases_in_order_and_hands_over_the_state_objects(monkeypatch):
    """One month of the crypto winter with the buyer of last resort: the phase functions run in
    docs/model.md's order; phase 1's MonthState is the one phases 3, 4, 5 and 7 get, and phase
    5's SellOrders the one phase 6 gets."""
    m = LiquidationModel("crypto_winter", months=3, **{"policy.lolr.enabled": True})
    calls, handed = [], {}

    def spy(module, name):
        real = getattr(module, name)

        def wrapped(model, *args):
            assert model is m
            calls.append(name if name != "run" else module.__name__.rsplit(".", 1)[1])
            out = real(model, *args)
            handed.setdefault(calls[-1], (args, out))
            return out
        monkeypatch.setattr(module, name, wrapped)

    for mod in (phases.environment, phases.borrowers, phases.lenders, phases.defaults,
                phases.orders, phases.market, phases.prices, phases.funding, phases.record):
        spy(mod, "run")
    spy(phases.policies, "lolr_operate")
    spy(phases.policies, "pay_funding")
    spy(phases.market, "sweep_sale_proceeds")
    m.step()
    assert calls == ["environment", "borrowers", "lolr_operate", "lenders", "defaults",
                     "orders", "market", "sweep_sale_proceeds", "prices", "funding",
                     "pay_funding", "record"]
    month = handed["environment"][1]
    assert isinstance(month, MonthState) and month.t == 1 == m.env.t
    for name in ("lenders", "defaults", "orders", "prices"):
        assert handed[name][0] == (month,)
    orders = handed["orders"][1]
    assert isinstance(orders, SellOrders) and handed["market"][0] == (orders,)
    # phase 1 kept last month's value in best use for phase 7; phase 3 left its marks
    np.testing.assert_array_equal(month.prev_fundamental, m.price_hist[0])
    assert month.marks is not None and month.marks.shape == (m.lenders.n, m.n_gen)
    assert month.coll is None  # spent by phase 5: phase 6 moves fleets


FLAT = ("model", "losses", "collect", "config", "numerics", "version", "environment", "finance",
        "market", "contagion", "network", "firesale", "keys", "metrics", "runner", "store",
        "ledger", "datadict", "plots", "animate", "app_panels", "app", "sweep", "analyze", "ema",
        "progress", "provenance", "validate", "bench", "bench_sweeps")


@pytest.mark.parametrize("name", FLAT)
def test_no_second_name_for_a_moved_module(name):
    """One name per concept: every module lives in its layer's sub-package only (the world at
    sim.world.model, the core at sim.core.config, ...), with no shim at the flat sim.<name>."""
    assert importlib.util.find_spec(f"sim.{name}") is None
    import sim
    assert sim.LiquidationModel is LiquidationModel


def test_sell_orders_has_exactly_seven_slots():
    """The sell orders are six named arrays and whether they offer units (None: not known);
    a misspelt field is an error, not a new key."""
    z = np.zeros((1, 1))
    orders = SellOrders(z, z, z, z[0], z, z[0])
    assert [f.name for f in dataclasses.fields(SellOrders)] == [
        "forced", "patient", "patient_price", "floor", "b_units", "b_price", "offered"]
    assert orders.offered is None
    with pytest.raises(AttributeError):
        orders.patient_prices = z  # slots: no attribute outside the seven


# ------------------------------------------------------------------ MonthState: phase 3's cache
def test_phase_3_fills_the_month_state_and_phases_4_and_5_reuse_it():
    """Phase 3 values the collateral once: month.coll is the fleet at the lead lender's mark
    (1,000 GPUs x last month's price index; no BTC), month.debt the facility's exposure.
    ``month_debt_coll`` then serves exactly these arrays; a month phase 3 has not evaluated
    is evaluated afresh to the same numbers."""
    m = tiny()
    m.env.step()
    month = MonthState(m.env.t, m.fundamental)
    phases.lenders.run(m, month)
    g = 1
    assert month.coll[0] == pytest.approx(1000 * m.price_hist[0, g], rel=1e-15)
    assert month.debt[0] == m.loans.exposure.sum()
    debt, coll = phases.lenders.month_debt_coll(m, month)
    assert debt is month.debt and coll is month.coll
    fresh = MonthState(m.env.t, m.fundamental, month.marks)
    d2, c2 = phases.lenders.month_debt_coll(m, fresh)
    assert d2.tobytes() == debt.tobytes() and c2.tobytes() == coll.tobytes()
    # a prepayment moves the debt: the cache is told (debt None) and recomputes it once
    month.debt = None
    d3, _ = phases.lenders.month_debt_coll(m, month)
    assert month.debt is d3 and d3.tobytes() == debt.tobytes()
    # phase 5 spends the evaluation
    phases.orders.borrower_orders(m, month, m.salvage_price)
    assert month.coll is None


# ------------------------------------------------------------------ the repo desk's rules
def test_margin_and_term_by_hand():
    """Four owners: a 100 $ loan against 80 $ of allowed collateral owes a 20 $ call and pays
    it from 30 $; one repaying at term owes all 100 $ and has 200 $; one owing a 50 $ call with
    10 $ defaults; an owner without a loan owes nothing."""
    has = np.array([True, True, True, False])
    debt = np.array([100.0, 100.0, 100.0, 0.0])
    allowed = np.array([80.0, 120.0, 50.0, 0.0])
    repay = np.array([False, True, False, False])
    cash = np.array([30.0, 200.0, 10.0, 0.0])
    call, pay, ok = margin_and_term(has, debt, allowed, repay, cash)
    assert call.tolist() == [20.0, 0.0, 50.0, 0.0]
    assert pay.tolist() == [20.0, 100.0, 50.0, 0.0]
    assert ok.tolist() == [True, True, False, True]


def test_units_to_seize_by_hand():
    """Fleets worth 10 x 100 = 1,000 $ and 4 x 100 + 6 x 50 = 700 $: a 250 $ debt takes
    ceil(0.25 x 10) = 3 units; a 1,000 $ debt more than the fleet takes all of it; an owner
    in good standing loses nothing."""
    fleet = np.array([[10, 0], [4, 6], [5, 5]])
    price = np.array([100.0, 50.0])
    seized = units_to_seize(fleet, np.array([250.0, 1000.0, 10.0]), price,
                            np.array([True, True, False]))
    assert seized.tolist() == [[3, 0], [4, 6], [0, 0]]
    assert seized.dtype == np.int64


@pytest.fixture
def desk():
    m = LiquidationModel(months=2, **{"policy.repo.enabled": True,
                                      "policy.repo.design": "secured"})
    return m.desk


def test_desk_pledges_and_rations_pro_rata_to_its_room(desk):
    """Room 1,000 $ (its cash) against 2,000 $ wanted: every line pledges half its units; a
    200 $ room rations loans of 300 $ and 100 $ to 150 $ and 50 $."""
    desk.cash = 1000.0
    assert desk.room == 1000.0
    moved = desk.pledge(np.array([[10, 0], [0, 20]]), np.array([100.0, 50.0]))
    assert moved.tolist() == [[5, 0], [0, 10]]
    assert desk.pledge(np.zeros((2, 2), dtype=np.int64), np.array([100.0, 50.0])) is None
    assert desk.ration(np.array([300.0, 100.0])).tolist() == [300.0, 100.0]
    desk.cash = 200.0
    assert desk.ration(np.array([300.0, 100.0])).tolist() == [150.0, 50.0]
    assert desk.ration(np.zeros(2)) is None


def test_desk_ledger_by_hand(desk):
    """Lend 500, get 200 back (50 of it margin), 10 of interest, capitalise 5: the desk holds
    305 of loans and its cash moved by -500 + 200 + 10 = -290, which its one ledger (flows)
    adds up to. A default on 300 $ against 2 units worth 400 $ and on 40 $ with nothing left:
    the units cost 300 x 200 / 400 = 150 $ each, the 40 $ is lost; selling one at 120 $
    realises 150 - 120 = 30 $ more of loss (secured desk)."""
    cash0, t = desk.cash, 1
    desk.lend(500.0, t)
    desk.receive_repayment(200.0, t, margin=50.0)
    desk.receive_interest(10.0, t)
    desk.capitalise(5.0)
    assert desk.lent == 305.0 and desk.interest_capitalised == 5.0
    assert desk.cash - cash0 == pytest.approx(-290.0)
    assert sum(desk.flows.values()) == pytest.approx(desk.cash - cash0)
    assert (desk.cash_lent[t], desk.cash_repaid[t], desk.margin_received[t],
            desk.interest[t]) == (500.0, 200.0, 50.0, 10.0)
    n_gen = len(desk.holdings)
    seized = np.zeros((2, n_gen), dtype=np.int64)
    seized[0, 0] = 2
    price = np.full(n_gen, 100.0)
    price[0] = 200.0
    desk.foreclose(seized, np.array([300.0, 40.0]), price, t)
    assert desk.lent == pytest.approx(305.0 - 340.0)
    assert desk.holdings[0] == 2 and desk.cost_basis[0] == pytest.approx(300.0)
    assert desk.default_loss[t] == pytest.approx(40.0) and desk.defaults[t] == 2
    desk.sell(0, 1, 120.0, t)
    assert desk.holdings[0] == 1 and desk.cost_basis[0] == pytest.approx(150.0)
    assert desk.cash_sold[t] == 120.0
    assert desk.default_loss[t] == pytest.approx(40.0 + 30.0)


# ------------------------------------------------------------------ borrowers' and lenders' rules
def test_borrower_covenant_flags_by_hand():
    """LTV 0.9 > 0.85 opens a call unless one is open; a call paid down to LTV 0.75 is cured
    (-1), one left at 0.8 counts a month more; a DSCR of 0.9 < 1.0 adds a breach month."""
    b = tiny().borrowers
    b.call_months[:] = -1
    assert b.new_margin_calls(np.array([0.9]), 0.85).tolist() == [True]
    assert b.new_margin_calls(np.array([0.85]), 0.85).tolist() == [False]
    b.call_months[:] = 0
    assert b.new_margin_calls(np.array([0.9]), 0.85).tolist() == [False]
    b.call_months[:] = 2
    open_call = np.array([True])
    assert b.call_months_after(open_call, np.array([0.75]), 0.75).tolist() == [-1]
    assert b.call_months_after(open_call, np.array([0.8]), 0.75).tolist() == [3]
    b.dscr[:], b.dscr_breach[:] = 0.9, 4
    assert b.dscr_breach_after(1.0).tolist() == [5]
    b.dscr[:] = 1.2
    assert b.dscr_breach_after(1.0).tolist() == [0]


def test_default_triggers_by_hand():
    """Grace 1 month, cure 3, DSCR default after 2 more: arrears of 2 months are a payment
    default; a call open 4 months a covenant default; a breach of 6 > 3 + 2 months, with
    neither, a DSCR default (only when dscr_default_months > 0)."""
    b = tiny().borrowers
    b.arrears_months[:], b.call_months[:], b.dscr_breach[:] = 2, -1, 0
    late, trig, dscr = b.default_triggers(1, 3, 0)
    assert late.tolist() == trig.tolist() == [True] and dscr is None
    b.arrears_months[:], b.call_months[:] = 0, 4
    late, trig, _ = b.default_triggers(1, 3, 0)
    assert late.tolist() == [False] and trig.tolist() == [True]
    b.call_months[:], b.dscr_breach[:] = -1, 6
    late, trig, dscr = b.default_triggers(1, 3, 2)
    assert trig.tolist() == [False] and dscr.tolist() == [True]
    b.dscr_breach[:] = 5
    assert b.default_triggers(1, 3, 2)[2].tolist() == [False]


def test_payouts_and_voluntary_sales_by_hand():
    """Cash 1,000,000 with 6 x (10,000 opex + 20,000 debt service) = 180,000 kept pays out
    820,000 (none under a margin call). A borrower needing 250,000 $ with 1,000 GPUs asked at
    1,000 $ offers ceil(0.25 x 1,000) = 250 of them; one needing more than its fleet offers
    all; no need, no units."""
    b = tiny().borrowers
    b.cash[:], b.opex[:], b.payout_months[:] = 1e6, 10_000.0, 6.0
    b.call_months[:] = -1
    alive = b.alive
    assert b.payouts(alive, np.array([20_000.0])).tolist() == [820_000.0]
    b.call_months[:] = 0
    assert b.payouts(alive, np.array([20_000.0])).tolist() == [0.0]
    ask = np.full(b.fleet.shape[1], 1000.0)
    assert b.fleet[0].sum() == 1000
    assert b.voluntary_sales(np.array([250_000.0]), ask)[0].sum() == 250
    assert (b.voluntary_sales(np.array([5e6]), ask) == b.fleet).all()
    assert not b.voluntary_sales(np.zeros(1), ask).any()


def test_revolver_request_and_repayment_by_hand():
    """Short 300 with 200 of room asks 200 (if the lead lender is NORMAL; 0 if not). Cash
    100,000 and opex 10,000 leave 70,000 above three months of opex: a revolver of 50,000
    principal with 5,000 overdue is repaid 45,000; one of 100,000 is repaid 70,000; cash
    below three months of opex repays nothing."""
    b = tiny().borrowers
    assert b.revolver_request(np.array([300.0]), np.array([200.0]),
                              np.array([True])).tolist() == [200.0]
    assert b.revolver_request(np.array([300.0]), np.array([200.0]),
                              np.array([False])).tolist() == [0.0]
    b.cash[:], b.opex[:] = 100_000.0, 10_000.0
    assert b.revolver_repayment(np.array([50_000.0]), np.array([5_000.0])).tolist() == [45_000.0]
    rows = np.array([0, 0])
    got = b.revolver_repayment(np.array([100_000.0, 50_000.0]), np.zeros(2), rows)
    assert got.tolist() == [70_000.0, 50_000.0]
    b.cash[:] = 20_000.0
    assert b.revolver_repayment(np.array([50_000.0]), np.zeros(1)).tolist() == [0.0]


def test_lender_forced_lines_patient_asks_and_rollover_by_hand():
    """max_hold_months 6 (the default): a line held 6 months is forced, one held 5 is not; a
    deleveraging lender's every line is forced; an empty line never. A patient ask is
    max(mark x 0.9, floor), capped at the value in best use when given; a loan rolls only
    at LTV <= refi, DSCR >= min, no arrears, with a NORMAL lender."""
    m = tiny()
    lb = m.lenders
    lb.inventory[:] = 0
    lb.inv_since[:] = -1
    lb.inventory[0, 1], lb.inv_since[0, 1] = 10, 0
    assert lb.forced_lines(6, 6)[0, 1] and not lb.forced_lines(5, 6)[0, 1]
    lb.inventory[1, 2], lb.inv_since[1, 2] = 4, 5
    lb.status[1] = LenderStatus.DELEVERAGING
    forced = lb.forced_lines(5, 6)
    assert forced[1, 2] and not forced[1, 1] and forced.sum() == 1
    n_gen = lb.inventory.shape[1]
    marks = np.full((2, n_gen), 1000.0)
    floor = np.full(n_gen, 200.0)
    floor[0] = 950.0
    ask = lb.patient_asks(marks, floor)
    assert ask[0, 1] == pytest.approx(900.0) and ask[0, 0] == 950.0
    cap = np.full(n_gen, 500.0)
    ask = lb.patient_asks(marks, floor, cap)
    assert ask[0, 1] == 500.0 and ask[0, 0] == 950.0  # never below the floor
    ok = lb.rolls_over(np.array([0, 0, 0, 1]), np.array([0.8, 0.81, 0.5, 0.5]), 0.8,
                       np.array([1.0, 1.0, 0.9, 1.5]), 1.0, np.array([0, 0, 0, 0]))
    assert ok.tolist() == [True, False, False, False]  # lender 1 is deleveraging


def test_lender_funding_rules_by_hand():
    """cash_share x assets is the liquidity target: a sound lender with 150 $ of cash against
    a 100 $ target repays min(50, outside) of outside funding, a deleveraging one nothing.
    Equity 5 on assets 100 (ratio 0.05) under a floor of 0.08 starts deleveraging; a
    deleveraging lender at 0.10 >= 1.2 x 0.08 heals, at 0.09 it does not."""
    lb = tiny().lenders
    lb.status[:] = LenderStatus.NORMAL
    lb.cash_share[:], lb.assets[:] = 0.1, 1000.0
    lb.cash[:], lb.outside[:] = 150.0, [80.0, 20.0]
    assert lb.outside_repayment().tolist() == [50.0, 20.0]
    lb.status[1] = LenderStatus.DELEVERAGING
    assert lb.outside_repayment().tolist() == [50.0, 0.0]
    lb.assets[:] = 100.0
    lb.equity[:] = [5.0, 10.0]
    ratio, floor = lb.capital_ratio(), np.array([0.08, 0.08])
    assert ratio.tolist() == [0.05, 0.1]
    assert lb.starts_deleveraging(ratio, floor).tolist() == [True, False]
    assert lb.heals(ratio, floor).tolist() == [False, True]
    assert not lb.heals(np.array([0.05, 0.09]), floor).any()


def test_free_btc_sale_by_hand():
    """10 BTC, half pledged, at 50,000 $: a 100,000 $ need sells 2 coins; a 1 M$ need sells
    only the 5 free ones."""
    b = tiny(**{"borrowers.miner.count": 1, "borrowers.neocloud.count": 0,
                "borrowers.miner.fleet_mean": 1000, "borrowers.miner.fleet_sigma": 0.0,
                "borrowers.miner.fleet_mix": [0, 1], "borrowers.miner.btc_treasury_mean": 10,
                "borrowers.miner.btc_pledge": 0.5}).borrowers
    b.btc[:], b.btc_pledged[:] = 10.0, 5.0
    assert b.free_btc_sale(np.array([100_000.0]), 50_000.0).tolist() == [2.0]
    assert b.free_btc_sale(np.array([1e6]), 50_000.0).tolist() == [5.0]


def test_arrears_months_and_smoothed_dscr_by_hand():
    """Arrears of 1.50 $ count a month (> 1 $), 0.50 $ reset the count; a DSCR of 2.0 with NOI
    30,000 over 20,000 of scheduled debt service becomes 0.5 x 2.0 + 0.5 x 1.5 = 1.75, and a
    ratio of 50 is clipped to 10 (1.75 -> 5.875)."""
    b = tiny().borrowers
    b.arrears_months[:] = 2
    b.count_arrears(np.array([1.5]))
    assert b.arrears_months.tolist() == [3]
    b.count_arrears(np.array([0.5]))
    assert b.arrears_months.tolist() == [0]
    b.dscr[:] = 2.0
    b.update_dscr(np.array([30_000.0]), np.array([20_000.0]))
    assert b.dscr.tolist() == [1.75]
    b.update_dscr(np.array([1e6]), np.array([20_000.0]))
    assert b.dscr.tolist() == [5.875]
