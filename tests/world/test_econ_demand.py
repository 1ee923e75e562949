"""Issue 14 part B: the outside demand (out-of-sector and overseas buyers) that replaces the
salvage sink behind ``buyers.outside_demand.enabled`` (docs/model.md, "Outside demand").

Worked examples: the bid ladder and a small call auction cleared by hand, a dump of twice the
units clearing lower on a hand-built world, unlimited buyers paying the value in best use,
expectations that ignore outside-set prices, and the accounting every month of crypto_winter.
"""

from __future__ import annotations

import copy
import math
from functools import partial

import numpy as np
import pytest

from agents.buyer import floor_price
from agents.lender import LenderStatus
from sim.core.config import ConfigError, load_scenario
from sim.core.market import clear_book, outside_bids
from sim.world import metrics, phases
from sim.world.model import LiquidationModel
from sim.world.state import MonthState

ON = {"buyers.outside_demand.enabled": True}


def _p(top, scrap, depth, q):
    """The continuous outside inverse demand p(q) = s + (a - s) exp(-q / D)."""
    return scrap + (top - scrap) * math.exp(-q / depth)


# ------------------------------------------------------------------ the bid ladder
def test_outside_ladder_by_hand():
    # depth 16, 8 steps per depth: right ends floor(2 m) = 2, 4, ..., capped at supply + 1
    qty, price = outside_bids(100.0, 2.0, 16.0, 10)
    assert qty == [2, 2, 2, 2, 2, 1]  # five blocks of 2 units, one to unit 11; no scrap left
    assert price == pytest.approx([2 + 98 * math.exp(-c / 16) for c in (2, 4, 6, 8, 10, 11)],
                                  rel=1e-12)
    assert price[:5] == pytest.approx([88.48467, 78.32247, 69.35437, 61.44000, 54.45564],
                                      abs=1e-4)
    assert outside_bids(100.0, 2.0, 16.0, 10, scrap_block=False) == (qty, price)
    # a large supply: 32 blocks (4 depths), then scrap bids for the rest plus one unit
    qty, price = outside_bids(100.0, 2.0, 16.0, 100)
    assert len(qty) == 33 and sum(qty[:32]) == 64 and qty[32] == 100 + 1 - 64
    assert price[31] == pytest.approx(_p(100, 2, 16, 64)) and price[32] == 2.0
    assert all(a >= b for a, b in zip(price, price[1:], strict=False))
    assert outside_bids(100.0, 2.0, 16.0, 100, scrap_block=False)[0] == qty[:32]
    assert outside_bids(100.0, 2.0, 16.0, 0) == ([], [])
    # a top below the scrap value is raised to it: a flat ladder at scrap
    assert set(outside_bids(1.0, 2.0, 16.0, 10)[1]) == {2.0}


def test_hand_computed_auction_with_outside_demand():
    """6 forced units (market orders) against one secondary buyer (2 units at 120) and the
    outside ladder (top 100, scrap 2, depth 16). Bid units in price order: 120, 120, 88.48,
    88.48, 78.32, 78.32 | 69.35, ...: the 6th unit (the marginal bid) is the second outside
    block at p(4) = 78.3225, the 7th (the first unfilled) the third block at p(6) = 69.3544,
    so the clearing interval is [69.3544, 78.3225] and k = 0.5 gives 73.8384. The secondary
    buyer is filled in full, the first two outside blocks too."""
    o_qty, o_price = outside_bids(100.0, 2.0, 16.0, 6)
    assert o_qty == [2, 2, 2, 1]  # right ends 2, 4, 6, 7 (one unit beyond the supply)
    price, volume, fills, bid_fills, overhang, best = clear_book(
        [6], [0.0], [2, *o_qty], [120.0, *o_price], 0.5)
    lo, hi = _p(100, 2, 16, 6), _p(100, 2, 16, 4)
    assert volume == 6 and fills == [6] and overhang == 0 and best == 120.0
    assert price == pytest.approx(0.5 * (lo + hi), rel=1e-12)
    assert price == pytest.approx(73.8384, abs=1e-4)
    assert bid_fills == [2, 2, 2, 0, 0]
    assert o_price[3] == pytest.approx(_p(100, 2, 16, 7))
    # twice the dump (12 units): the marginal bid is the 5th block p(10) = 54.4556, the
    # first unfilled the 6th, p(12) = 48.2919: the price is 51.3738, lower
    o_qty, o_price = outside_bids(100.0, 2.0, 16.0, 12)
    price2, volume2, _, bid_fills2, _, _ = clear_book([12], [0.0], [2, *o_qty],
                                                      [120.0, *o_price], 0.5)
    assert volume2 == 12 and bid_fills2[0] == 2 and sum(bid_fills2[1:]) == 10
    assert price2 == pytest.approx(0.5 * (_p(100, 2, 16, 10) + _p(100, 2, 16, 12)), rel=1e-12)
    assert price2 == pytest.approx(51.3738, abs=1e-4)
    assert price2 < price


def test_bigger_dumps_clear_lower_on_the_order_book():
    """Monotone: for dumps of 1..400 units against the same buyers and outside demand the
    clearing price never rises, and doubling the dump lowers it while it is above scrap."""
    prices = []
    for q in range(1, 401):
        o_qty, o_price = outside_bids(1000.0, 20.0, 40.0, q)
        prices.append(clear_book([q], [0.0], [5, 3, *o_qty], [1500.0, 1200.0, *o_price],
                                 0.5)[0])
    assert all(a >= b for a, b in zip(prices, prices[1:], strict=False))
    for q in (10, 20, 40, 80):
        assert prices[2 * q - 1] < prices[q - 1]
    assert prices[-1] == pytest.approx(20.0, rel=0.05)  # ten depths out: the scrap value


# ------------------------------------------------------------------ a hand-built world
@pytest.fixture(scope="module")
def world():
    """The baseline after one month with the outside demand, H100 as the generation sold."""
    m = LiquidationModel("baseline", months=6, overrides=ON)
    m.step()
    return m


# the chip-price valuation the dump's hand numbers were worked out on (the defaults before
# issue 14 flipped them): chip list prices, no facility charge, rents -30 %/yr with a 15 %
# launch step, no value cap, the life clock, no sites
CHIP = {"environment.installed_multiple": 1.0, "environment.facility_cost": 0.0,
        "environment.rent_deflation": 0.30, "environment.step_down": 0.15,
        "buyers.value_cap": False, "buyers.retirement": "life", "sites.enabled": False}


@pytest.fixture(scope="module")
def chip_world():
    """``world`` on the chip-price valuation (CHIP)."""
    m = LiquidationModel("baseline", months=6, overrides={**ON, **CHIP})
    m.step()
    return m


def _dump(world, units: int, **buyers):
    """Lender 0 deleverages with ``units`` H100 repossessed this month (nothing else held):
    its forced market orders meet this month's buyers and the outside demand. Returns the
    model after phases 5 and 6, and the generation."""
    m = copy.deepcopy(world)  # the same participation draws for every dump
    for key, value in buyers.items():
        setattr(m.buyers, key, value)
    m.buyers.extrap[:] = 0.0
    g = m.env.names.index("H100")
    lb = m.lenders
    lb.inventory[:] = 0
    lb.repo_units[:] = 0
    lb.inv_since[:] = -1
    new = np.zeros_like(lb.inventory)
    new[0, g] = units
    lb.add_inventory(new, m.env.t)
    m.rep_value[:] = 0.0
    phases.defaults.note_repossession(m, new)
    lb.status[0] = LenderStatus.DELEVERAGING
    marks = lb.marks(m.env, m.price_hist, m.env.t - 1, m.cfg.lenders.appraisal_lag)
    phases.market.run(m, phases.orders.run(m, MonthState(m.env.t, m.fundamental, marks)))
    return m, g


def test_a_dump_of_twice_the_units_clears_lower(chip_world):
    """H100 in month 1 of the baseline on the chip-price valuation (CHIP): V = 15,742 $,
    outside top 0.65 V = 10,232 $, depth
    0.05 x 230,515 = 11,526 units. The brokers who can close this month bid 9,057 $ for
    7,200 units in all (their power limit), so a dump of 2,000 to 8,000 units clears at their
    reservation (a flat step of the demand curve: news, not pinned), and larger dumps go down
    the outside ladder: the price never rises with the dump, and it falls to 7,205 $ at
    16,000 units and 2,233 $ at 32,000."""
    world = chip_world
    prices, values = {}, {}
    for q in (1_000, 2_000, 4_000, 8_000, 16_000, 32_000):
        m, g = _dump(world, q)
        assert m.traded[g] and m.month_forced[g] == q
        prices[q], values[q] = m.clearing[g], m.fundamental[g]
        assert m.month_salvage[g] > 0  # outside buyers took units
        # the fire-sale discount against the value at repossession (this month's value)
        assert m.forced_rep_value - world.forced_rep_value == pytest.approx(q * m.fundamental[g])
        if q in (2_000, 4_000, 8_000):
            assert m.clearing[g] == pytest.approx(9_056.666, abs=1e-2)  # a broker's bid
            assert not m.month_pinned[g]
        if q >= 16_000:
            assert m.month_pinned[g]
    p = [prices[q] for q in sorted(prices)]
    assert p == sorted(p, reverse=True)  # monotone
    assert prices[32_000] < prices[16_000] < prices[8_000] < prices[1_000]
    assert prices[1_000] < values[1_000]  # thin buyers: below the value in best use
    assert min(p) >= floor_price(world.cfg.buyers, world.env)[1]  # never below scrap


@pytest.mark.slow
def test_a_dump_clears_lower_under_the_default_valuation_too(world):
    """The same dumps on the default (installed-unit) valuation: the brokers who can close
    this month bid more, for more units, so small dumps all clear at their bid (one flat step,
    no outside units); past that step each doubling goes down the outside ladder. Never a
    higher price for a bigger dump, never above the value in best use or below scrap."""
    prices = {}
    for q in (1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000):
        m, g = _dump(world, q)
        assert m.traded[g] and m.month_forced[g] == q
        prices[q] = m.clearing[g]
        assert m.clearing[g] < m.fundamental[g]  # thin buyers
        assert m.clearing[g] >= floor_price(world.cfg.buyers, world.env)[g] * (1 - 1e-12)
        if m.month_salvage[g] == 0:
            assert m.clearing[g] == prices[1_000]  # all inside the brokers' step
    p = [prices[q] for q in sorted(prices)]
    assert p == sorted(p, reverse=True)
    beyond = [q for q in sorted(prices) if prices[q] < prices[1_000]]
    assert beyond and beyond[-1] == 64_000 and len(beyond) >= 2
    for q in beyond[:-1]:  # every doubling past the brokers' step clears strictly lower
        assert prices[2 * q] < prices[q]


def test_unlimited_buyers_pay_the_value_in_best_use(world):
    for q in (4_000, 32_000):
        m, g = _dump(world, q, unlimited=True)
        assert m.clearing[g] == pytest.approx(m.fundamental[g], rel=1e-12)
        assert m.month_salvage[g] == 0 and not m.month_pinned[g]
        sold = m.forced_value - world.forced_value
        rep = m.forced_rep_value - world.forced_rep_value
        assert 1.0 - sold / rep == pytest.approx(0.0, abs=1e-12)  # no fire-sale discount


def test_value_at_repossession_is_units_weighted(world):
    m = copy.deepcopy(world)
    lb = m.lenders
    lb.inventory[:] = 0
    m.rep_value[:] = 0.0
    g = 1
    new = np.zeros_like(lb.inventory)
    new[2, g] = 10
    m.fundamental = np.full(m.n_gen, 100.0)
    lb.add_inventory(new, m.env.t)
    phases.defaults.note_repossession(m, new)
    assert m.rep_value[2, g] == 100.0 and m.rep_value[0, g] == 0.0
    new[2, g] = 30
    m.fundamental = np.full(m.n_gen, 40.0)
    lb.add_inventory(new, m.env.t)
    phases.defaults.note_repossession(m, new)
    assert m.rep_value[2, g] == pytest.approx((10 * 100 + 30 * 40) / 40)  # 55


# ------------------------------------------------------------------ expectations
def test_outside_set_prices_are_not_news(world):
    m = copy.deepcopy(world)
    m.buyers.extrap[:] = 0.0
    n = m.n_gen
    m.news_price, m.news_value = np.full(n, 100.0), np.full(n, 1000.0)
    m.news_t = np.full(n, m.env.t - 2.0)
    m.price, m.fundamental = np.full(n, 90.0), np.full(n, 1000.0)
    moved = np.ones(n, dtype=bool)
    m.month_pinned = np.ones(n, dtype=bool)  # every price set by the outside demand
    phases.prices.adapt_on_news(m, moved)
    assert (m.buyers.extrap == 0.0).all() and (m.news_price == 100.0).all()
    m.month_pinned[:] = False  # set by secondary buyers: news, over the 2 months since
    phases.prices.adapt_on_news(m, moved)
    lam = m.cfg.buyers.adapt  # 0.2
    x = lam * max(12.0 * math.log(0.9) / 2.0, -1.0)  # 0.2 x -0.6322 = -0.12644
    assert m.buyers.extrap == pytest.approx(np.full_like(m.buyers.extrap, x), rel=1e-12)
    assert x == pytest.approx(-0.12644, abs=1e-5)
    assert (m.news_price == 90.0).all() and (m.news_t == m.env.t).all()


def test_pinned_rule():
    pinned = phases.market.pinned
    # the marginal (lowest filled) bid is an outside step (row > n_k = 2): pinned
    assert pinned([0, 3, 4], [5, 2, 3], [9.0, 5.0, 4.0], [5, 1, 0], 2, 0.5)
    # outside took units at 9.5 above a secondary buyer's marginal bid at 9 with room left:
    # the price is the secondary buyer's, news
    assert not pinned([0, 3, 4], [9, 2, 3], [9.0, 9.5, 4.0], [5, 2, 0], 2, 0.5)
    # secondary buyers take everything and still have room above the outside bids: news
    assert not pinned([0, 3], [9, 2], [9.0, 5.0], [5, 0], 2, 0.5)
    # buyers exhausted: the first unfilled bid is outside's (the k-rule's lower end)
    assert pinned([0, 3], [5, 2], [9.0, 5.0], [5, 0], 2, 0.5)
    assert not pinned([0, 3], [5, 2], [9.0, 5.0], [5, 0], 2, 1.0)  # k = 1: p = marginal bid


# ------------------------------------------------------------------ the whole model
@pytest.mark.slow
def test_crypto_winter_accounts_every_month_with_outside_demand():
    model = LiquidationModel(load_scenario("crypto_winter"), overrides=ON)
    units0 = model.gpu_units().copy()
    assert model.invariants() == []
    while model.running:
        model.step()
        assert model.invariants() == [], f"month {model.month}"
        np.testing.assert_array_equal(model.gpu_units(), units0)
        floor = floor_price(model.cfg.buyers, model.env)
        ship = model.env.shipping & model.traded
        assert (model.clearing[ship] >= floor[ship] * (1 - 1e-12)).all()
    s = metrics.summary(model)
    assert s["outside_units"] == s["salvage_units"] == int(model.rec["salvage"].sum()) > 0
    r, t = model.rec, model.month
    assert s["fire_sale_discount"] == pytest.approx(
        1.0 - r["forced_value"][t] / r["forced_repossession_value"][t])
    assert 0.0 < s["fire_sale_discount"] < 1.0
    assert s["fire_sale_discount_at_sale"] == pytest.approx(
        1.0 - r["forced_value"][t] / r["forced_fundamental"][t])


def test_switch_off_adds_no_keys():
    off = {"buyers.outside_demand.enabled": False}  # the salvage sink (the earlier market)
    m = LiquidationModel("baseline", months=2, overrides=off).run()
    s = metrics.summary(m)
    assert "outside_units" not in s and "fire_sale_discount_at_sale" not in s
    assert "forced_repossession_value" not in m.rec and "outside_pinned" not in m.rec
    on = LiquidationModel("baseline", months=2).run()  # on by default: the keys are there
    assert "outside_units" in metrics.summary(on) and "outside_pinned" in on.rec


@pytest.mark.parametrize("bad", ["buyers.outside_demand.depth=0",
                                 "buyers.outside_demand.top=1.5",
                                 "buyers.outside_demand.scrap=-0.1",
                                 "buyers.outside_demand.enabled=1"])
def test_bad_outside_demand_input_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        load_scenario("baseline", [bad])


def test_spreading_a_sale_over_months_gets_more():
    """The outside schedule is fresh every month (outside buyers absorb a flow): 3,000 units
    sold in one auction clear between p(3,000) and p(3,001) (the marginal and the first
    unfilled step); sold 1,000 a month over three months, each month clears between p(1,000)
    and p(1,001), higher (top 1,000, scrap 20, depth 1,000: p(q) = 20 + 980 e^(-q/1000))."""
    def auction(q):
        o_qty, o_price = outside_bids(1000.0, 20.0, 1000.0, q)
        return clear_book([q], [0.0], o_qty, o_price, 0.5)[0]

    once, spread = auction(3000), auction(1000)
    p = partial(_p, 1000, 20, 1000)
    assert once == pytest.approx(0.5 * (p(3000) + p(3001)), rel=1e-12)  # 68.76
    assert spread == pytest.approx(0.5 * (p(1000) + p(1001)), rel=1e-12)  # 380.34
    assert once == pytest.approx(68.76, abs=0.01) and spread == pytest.approx(380.34, abs=0.01)
    assert 3 * 1000 * spread > 3000 * once  # more proceeds for the same units


VARIANTS = [("baseline", []), ("next_gen_launch", []), ("asic_2022", []),
            ("crypto_winter", ["policy.repo.enabled=true"]),
            ("crypto_winter", ["market.mode='parametric'"]),
            ("crypto_winter", ["market.unsold_to_salvage=false"]),
            ("crypto_winter", ["buyers.unlimited=true"])]


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "overrides"), VARIANTS,
                         ids=[f"{s}{'+' + ','.join(o) if o else ''}" for s, o in VARIANTS])
def test_accounting_with_outside_demand(scenario, overrides):
    model = LiquidationModel(load_scenario(scenario, [*overrides,
                                                      "buyers.outside_demand.enabled=true"]))
    while model.running:
        model.step()
        assert model.invariants() == [], f"month {model.month}"
    if "buyers.unlimited=true" in overrides:
        # unlimited buyers: every auction cleared at the value in best use, the secondary
        # buyers' where they value a unit above scrap (news), else the scrap value (pinned)
        r = model.rec
        traded = r["volume"] > 0
        assert (traded & ~r["outside_pinned"]).any() and (traded & r["outside_pinned"]).any()
        np.testing.assert_allclose(r["price"][traded], r["fundamental"][traded], rtol=1e-12)
        assert metrics.summary(model)["fire_sale_discount"] in (None, pytest.approx(0.0))
