"""Power and cooling are assets and constraints (issue 14, part C; docs/model.md, "Power and
cooling"): borrowers' sites, cooling types, site sales at default, hosting in place, air-to-
liquid conversion, miners' energy arbitrage, and the MW ledger. Every number below is worked
out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from agents.buyer import BuyerBook
from agents.sites import LENDER, SOLD, ai_rent_per_mw, mw_values, switch_mw
from sim.core.config import SCENARIO_DIR, BuyerType, ConfigError, Scenario, load_scenario
from sim.core.environment import Environment
from sim.world.model import SITE_RECORDS, LiquidationModel

LIQUID = ("B200", "Rubin")  # the recommended liquid-cooled generations (GB200 NVL72, ~120 kW)


def _liquid(cfg: Scenario) -> Scenario:
    """``cfg`` with sites on and B200 and Rubin (where present) liquid-cooled."""
    cfg.sites.enabled = True
    for g in cfg.environment.generations:
        if g.name in LIQUID:
            g.cooling = "liquid"
    return cfg


def _book(liquid_share: float, spare_mw: float = 10.0, capital: float = 1e12,
          count: int = 1) -> tuple[BuyerBook, Environment]:
    """A hand-built buyer book: ``count`` buyers with ``spare_mw`` MW each, of which
    ``liquid_share`` liquid-cooled."""
    cfg = _liquid(Scenario())
    cfg.buyers.types = {"x": BuyerType(count=count, hurdle=0.1, integration_cost=0.0,
                                       capital=capital, spare_mw=spare_mw, life_months=60)}
    env = Environment(cfg, np.random.default_rng(0))
    book = BuyerBook(cfg, env)
    book.enable_sites(liquid_share, cfg.sites.conversion_months)
    return book, env


# ------------------------------------------------------------------ cooling
def test_a_blackwell_unit_cannot_be_installed_in_air_cooled_mw():
    book, env = _book(liquid_share=0.0)  # 10 MW, all air-cooled
    b200 = env.names.index("B200")
    h100 = env.names.index("H100")
    price = np.full(1, 1000.0)
    # B200 (1.67 kW, liquid): no liquid MW, no unit; H100 (1.25 kW, air): 10,000 / 1.25 = 8,000
    assert book.capacity(price, env.kw[b200], liquid=True).tolist() == [0]
    assert book.capacity(price, env.kw[h100], liquid=False).tolist() == [8000]
    # half liquid: 5 MW fit floor(5,000 / 1.67) = 2,994 B200; an H100 uses either: 8,000
    book, env = _book(liquid_share=0.5)
    assert book.capacity(price, env.kw[b200], liquid=True).tolist() == [2994]
    assert book.capacity(price, env.kw[h100], liquid=False).tolist() == [8000]


def test_air_units_draw_air_mw_first_liquid_units_only_liquid():
    book, env = _book(liquid_share=0.5)  # 5 MW air, 5 MW liquid
    # 2,000 H100 x 1.25 kW = 2.5 MW from air: 2.5 air left, 5 liquid
    book.settle(np.array([2000]), 1.0, env.names.index("H100"), 1.25, liquid=False)
    assert book.mw.tolist() == [2.5] and book.mw_liq.tolist() == [5.0]
    # 3,000 more = 3.75 MW: 2.5 from air, 1.25 from liquid
    book.settle(np.array([3000]), 1.0, env.names.index("H100"), 1.25, liquid=False)
    assert book.mw.tolist() == [0.0] and book.mw_liq.tolist() == [3.75]
    # 1,000 B200 x 2.0 kW (a round kW) = 2 MW, liquid only
    book.settle(np.array([1000]), 1.0, env.names.index("B200"), 2.0, liquid=True)
    assert book.mw_liq.tolist() == [1.75]
    assert book.mw_used.tolist() == [8.25]  # 2.5 + 3.75 + 2


def test_a_run_installs_no_liquid_unit_beyond_liquid_mw():
    """In crypto_winter with sites on, buyers' liquid-cooled units never draw more than the
    liquid MW they had: MW in use by B200 and Rubin <= liquid MW ever held."""
    m = LiquidationModel(_liquid(load_scenario("crypto_winter", months=24)))
    kw = m.env.kw
    liq = m.sites.liquid_gen
    for _ in range(24):
        liq_before = m.buyers.mw_liq.copy()
        held_before = m.buyers.holdings.copy()
        m.step()
        added = m.buyers.holdings - held_before
        # units of liquid generations bought this month need at most the liquid MW the buyer
        # had at the start of the month plus sites it bought (all in mw_liq by then)
        need = (added[:, liq] * kw[liq]).sum(axis=1) / 1000.0
        assert (need <= liq_before + m.buyers.mw_liq + 1e-9).all()


# ------------------------------------------------------------------ sites
def test_sites_are_drawn_at_least_as_big_as_the_fleet_and_liquid_where_needed():
    m = LiquidationModel(_liquid(load_scenario("baseline", months=1)))
    s, b = m.sites, m.borrowers
    load = (b.fleet * m.env.kw).sum(axis=1) / 1000.0
    assert ((s.gpu_mw >= 1.1 * load - 1e-12) & (s.gpu_mw <= 1.5 * load + 1e-12)).all()
    assert s.liquid[(b.fleet[:, s.liquid_gen] > 0).any(axis=1)].all()
    # mining halls: hashrate x 0.02 MW per PH/s, miners only
    assert np.array_equal(s.mine_mw, np.where(b.kind == 0, b.hashrate * 0.02, 0.0))


def test_sites_off_keeps_the_model_and_its_records_as_they_were():
    """Sites are on by default; switched off, the model has no site book and no site records,
    and the same run again gives the same records (the switch adds nothing random)."""
    off = {"sites.enabled": False}
    a = LiquidationModel("baseline", months=3, overrides=off).run()
    b = LiquidationModel("baseline", months=3, overrides=off).run()
    assert a.sites is None and not set(SITE_RECORDS) & set(a.rec)
    assert set(a.rec) == set(b.rec)
    assert all(np.array_equal(a.rec[k], b.rec[k]) for k in a.rec)
    # sites on (the default): the site records are added to the same others, and the main
    # random stream is untouched (sites draw from a child stream), so the environment's path
    # is the same
    c = LiquidationModel("baseline", months=3).run()
    assert c.sites is not None and set(SITE_RECORDS) <= set(c.rec)
    assert set(c.rec) - set(SITE_RECORDS) == set(a.rec)
    assert np.array_equal(a.rec["btc"], c.rec["btc"]) and np.array_equal(a.rec["rent"],
                                                                          c.rec["rent"])


def test_a_site_sold_at_default_adds_its_mw_to_its_buyer():
    """Hand-built sale: borrower 0's air-cooled 2 MW site, held by lender 0 since month -3.
    Buyer values per MW (air): 5e6, 3e6, 1e6, ... The best buyer cannot pay 2 x 5e6 = 10 M$
    (capital 9 M$), so the site goes to the second, at 3e6 $/MW x 2 MW = 6 M$."""
    m = LiquidationModel(_liquid(load_scenario("baseline", months=1)))
    s, buyers, lb = m.sites, m.buyers, m.lenders
    s.gpu_mw[0] = 2.0
    s.liquid[0] = False
    s.repossess(np.array([0]), np.array([0]), t=-3)
    assert s.holder[0] == LENDER
    v_air = np.zeros(buyers.n)
    v_air[:3] = [5e6, 3e6, 1e6]
    buyers.capital[0] = 9e6
    buyers.capital[1] = 50e6
    lb.claim_pool[0] = 4e6  # 4 M$ of written-off exposure to recover; 2 M$ surplus
    mw_before, liq_before = buyers.mw.copy(), buyers.mw_liq.copy()
    cash_before, rec_before = lb.cash[0], lb.recoveries[0]
    s._sell(m, np.zeros(buyers.n), v_air)
    assert s.holder[0] == SOLD and s.buyer[0] == 1
    assert buyers.mw[1] == mw_before[1] + 2.0
    assert np.array_equal(np.delete(buyers.mw, 1), np.delete(mw_before, 1))
    assert np.array_equal(buyers.mw_liq, liq_before)
    assert buyers.capital[1] == 44e6
    assert lb.recoveries[0] - rec_before == 4e6 and lb.cash[0] - cash_before == 4e6
    assert s.sold_mw == 2.0 and s.sale_proceeds == 6e6
    # a liquid site goes to liquid MW, capped at the build cost 9.5e6 $/MW
    s.gpu_mw[1], s.liquid[1] = 1.0, True
    s.repossess(np.array([1]), np.array([0]), t=-3)
    v_liq = np.zeros(buyers.n)
    v_liq[2] = 20e6
    buyers.capital[2] = 1e9
    s._sell(m, v_liq, np.zeros(buyers.n))
    assert buyers.mw_liq[2] == liq_before[2] + 1.0 and buyers.capital[2] == 1e9 - 9.5e6


def test_sites_are_sold_in_crypto_winter_and_their_mw_reach_buyers():
    m = LiquidationModel(_liquid(load_scenario("crypto_winter"))).run()
    sold = m.sites.holder == SOLD
    assert sold.any()
    assert m.rec["site_mw_sold"][-1] == pytest.approx(m.sites.gpu_mw[sold].sum(), rel=1e-12)
    events = [e for e in m.events if e[1] == "site_sale"]
    assert len(events) == sold.sum()
    assert sum(e[6] for e in events) == pytest.approx(m.sites.sale_proceeds, rel=1e-12)
    assert m.invariants() == []


# ------------------------------------------------------------------ conservation
SCENARIOS = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_mw_conserved_every_month_with_sites_on(name):
    cfg = _liquid(load_scenario(name))
    cfg.sites.sell_with_fleet = True  # the recommended value; units move with sites too
    m = LiquidationModel(cfg)
    assert m.sites.imbalance(m.buyers) == 0.0
    while m.running and m.env.t < cfg.months:
        m.step()
        assert m.invariants() == [], (name, m.env.t)
        assert abs(m.sites.imbalance(m.buyers)) <= 1e-6 * m.sites.mw0


# ------------------------------------------------------------------ conversion
def test_mw_values_by_cooling_hand_checked():
    # buyer 0: liquid gen P 60,000 vs p 30,000 at 2 kW -> 30,000 x 500 = 15e6 $/MW; air gen
    # P 20,000 vs p 15,000 at 1.25 kW -> 5,000 x 800 = 4e6 $/MW. Buyer 1 values both below p.
    res = np.array([[60_000.0, 20_000.0], [10_000.0, 10_000.0]])
    v_liq, v_air = mw_values(res, np.array([30_000.0, 15_000.0]), np.array([2.0, 1.25]),
                             np.array([True, False]), np.array([True, True]))
    assert v_liq.tolist() == [15e6, 0.0] and v_air.tolist() == [4e6, 0.0]


def test_conversion_rule_hand_checked():
    book, _ = _book(liquid_share=0.0, count=3)  # 10 MW air each
    book.capital = np.array([1e9, 1e9, 5e6])
    # gain 11e6 > 9.5e6: convert min(0.1 x 10, 1e9 / 9.5e6) = 1 MW; 9e6 < cost: nothing;
    # 20e6 but 5 M$ of capital: 5e6 / 9.5e6 = 0.526 MW
    x = book.convert(np.array([11e6, 9e6, 20e6]), 9.5e6, 0.1, 2)
    assert x[:2].tolist() == [1.0, 0.0] and x[2] == pytest.approx(5e6 / 9.5e6, rel=1e-15)
    assert book.capital.tolist() == [1e9 - 9.5e6, 1e9, 0.0]
    assert book.mw[:2].tolist() == [9.0, 10.0]
    assert book.mw_liq.tolist() == [0.0, 0.0, 0.0]
    mw_step = book.cfg.mw_regrowth * book.mw0  # spare MW below mw0 regrows meanwhile
    book.regrow()  # month 1 of 2: still converting
    assert book.mw_liq.tolist() == [0.0, 0.0, 0.0] and book.mw_conv.sum() == pytest.approx(
        1.0 + 5e6 / 9.5e6)
    book.regrow()  # month 2: the converted MW are liquid
    assert book.mw_liq[0] == 1.0 and book.mw_conv.sum() == 0.0
    assert book.mw[0] == pytest.approx(min(9.0 + 2 * mw_step[0], 10.0))


# ------------------------------------------------------------------ arbitrage
def test_switch_rule_hand_checked():
    class S:
        switch_cost_per_mw, switch_payback_months, switch_rate = 9.5e6, 60, 0.1
        host_demand_mw = 1e6

    r_mine = np.array([6_000.0, 400_000.0, 6_000.0, 6_000.0])
    r_let = np.array([0.0, 165_000.0, 165_000.0, 0.0])  # locked rent of MW already let
    mine = np.full(4, 100.0)
    host = np.array([0.0, 50.0, 95.0, 0.0])
    live = np.array([True, True, True, False])
    # r_ai = 165,000 $/MW-month. Miner 0: (165,000 - 6,000) x 60 = 9.54e6 > 9.5e6: lets
    # min(0.1 x 100, 100) = 10 MW to AI; miner 1: hashprice pays 400,000: (400,000 - 165,000)
    # x 60 = 14.1e6 > 9.5e6: takes min(10, 50) = 10 MW back to mining; miner 2 has only
    # 100 - 95 = 5 MW left to let; miner 3 is dead
    dx = switch_mw(r_mine, 165_000.0, r_let, mine, host, live, S)
    assert dx.tolist() == [10.0, -10.0, 5.0, 0.0]
    # r_ai = 164,000: (164,000 - 6,000) x 60 = 9.48e6 < 9.5e6: nobody lets MW to AI
    dx = switch_mw(r_mine, 164_000.0, np.zeros(4), mine, np.zeros(4), live, S)
    assert dx.tolist() == [0.0, 0.0, 0.0, 0.0]
    # tenants take 6 MW a month: miners 0 and 2 wanted 10 + 5 = 15 MW, they get 6 / 15 of it
    S.host_demand_mw = 6.0
    dx = switch_mw(r_mine, 165_000.0, r_let, mine, host, live, S)
    assert dx.tolist() == [4.0, -10.0, 2.0, 0.0]


def test_ai_rent_per_mw_counts_air_generations_only():
    cfg = _liquid(Scenario())
    env = Environment(cfg, np.random.default_rng(0))
    liq = np.array([g.cooling == "liquid" for g in cfg.environment.generations])
    net = (0.85 * env.rent * 730.0 - env.power_cost_per_gpu() - 150.0) * 1000.0 / env.kw
    expect = max(net[i] for i in range(env.n_gen) if env.shipping[i] and not liq[i])
    assert ai_rent_per_mw(env, 150.0, liq) == pytest.approx(expect, rel=1e-12)


def test_miners_switch_and_earn_hosting_income_when_it_pays():
    # a cheap switch (0.5 M$/MW): AI hosting (~0.2 x 800 k$/MW-month) beats mining at once
    cfg = _liquid(load_scenario("baseline", months=3))
    cfg.sites.switch_cost_per_mw = 0.5e6
    cfg.sites.host_demand_mw = 1e6
    m = LiquidationModel(cfg)
    m.step()
    s, b = m.sites, m.borrowers
    live = b.alive & (s.mine_mw > 0)
    # month 1: every living miner lets switch_rate of its mining hall to AI tenants
    rate = cfg.sites.switch_rate
    assert np.allclose(s.host_mw[live], rate * s.mine_mw[live], rtol=1e-12)
    assert np.allclose(b.mining_share[live], 1.0 - rate, rtol=1e-12)
    # the rent is locked at host_share x the month's AI rent per MW; the switch (0.5 M$/MW)
    # is repaid at 0.5e6 / T a month per MW switched
    sc = cfg.sites
    r_ai = sc.host_share * ai_rent_per_mw(m.env, cfg.buyers.spot_opex_per_gpu, s.liquid_gen)
    T = sc.switch_payback_months
    assert np.allclose(b.site_income[live], s.host_mw[live] * (r_ai - 0.5e6 / T), rtol=1e-12)
    assert np.allclose(s.switch_debt[live], s.host_mw[live] * 0.5e6 * (T - 1) / T, rtol=1e-12)
    m.run()
    assert m.invariants() == []
    assert (s.host_mw <= s.mine_mw + 1e-9).all()


def test_hosting_in_place_pays_lenders_and_saves_holding_costs():
    m = LiquidationModel(_liquid(load_scenario("crypto_winter", months=12))).run()
    assert m.rec["hosting_income"][-1] > 0
    off = LiquidationModel(_liquid(load_scenario("crypto_winter", months=12)),
                           overrides={"sites.host_in_place": False}).run()
    assert off.rec["hosting_income"][-1] == 0.0


def test_bad_site_keys_are_config_errors():
    with pytest.raises(ConfigError, match="headroom_max"):
        load_scenario("baseline", {"sites.headroom_min": 1.6, "sites.headroom_max": 1.2})
    with pytest.raises(ConfigError, match="cooling"):
        load_scenario("baseline", {"environment.generations.3.cooling": "water"})


def test_site_series_columns_are_described():
    from sim.io import datadict
    from sim.world import metrics

    m = LiquidationModel(_liquid(load_scenario("crypto_winter", months=12))).run()
    cols = metrics.series(m).columns
    assert set(SITE_RECORDS) <= set(cols)
    for c in cols:
        datadict.describe("series", c, m.env.names)  # KeyError if a column is not described


def test_a_site_sold_with_its_fleet_installs_the_units_that_fit():
    """Hand-built: lender 0 holds 1,000 H100 and 500 B200; borrower 0's air-cooled 1 MW site
    is sold to buyer 1 with the fleet at the price index (H100 10,000 $, B200 20,000 $).
    B200 needs liquid MW: none goes. 1 MW holds floor(1,000 / 1.25) = 800 H100."""
    cfg = _liquid(load_scenario("baseline", months=1))
    cfg.sites.sell_with_fleet = True
    m = LiquidationModel(cfg)
    s, buyers, lb, env = m.sites, m.buyers, m.lenders, m.env
    h100, b200 = env.names.index("H100"), env.names.index("B200")
    lb.inventory[0] = 0
    lb.inventory[0, h100], lb.inventory[0, b200] = 1000, 500
    m.price = m.price.copy()
    m.price[h100], m.price[b200] = 10_000.0, 20_000.0
    s.gpu_mw[0], s.liquid[0] = 1.0, False
    s.repossess(np.array([0]), np.array([0]), t=-3)
    v_air = np.zeros(buyers.n)
    v_air[1] = 2e6
    buyers.capital[1] = 100e6
    res = np.zeros((buyers.n, env.n_gen))
    res[1, h100], res[1, b200] = 12_000.0, 30_000.0
    lb.claim_pool[0] = 1e9
    rec0, held0, mw0 = lb.recoveries[0], buyers.holdings[1].copy(), buyers.mw[1]
    s._sell(m, np.zeros(buyers.n), v_air, res)
    # the site: 2e6 x 1 MW; the fleet: 800 H100 x 10,000 = 8e6
    assert buyers.holdings[1, h100] - held0[h100] == 800 and buyers.holdings[1, b200] == 0
    assert lb.inventory[0, h100] == 200 and lb.inventory[0, b200] == 500
    assert lb.recoveries[0] - rec0 == 2e6 + 8e6
    assert buyers.capital[1] == 100e6 - 10e6
    assert buyers.mw[1] == pytest.approx(mw0 + 1.0 - 1.0, abs=1e-12)  # the site's MW in use
    assert s.fleet_units_sold == 800


def test_site_sales_carry_their_value_in_the_event_table():
    from sim.world import metrics

    m = LiquidationModel(_liquid(load_scenario("crypto_winter", months=24))).run()
    ev = metrics.events(m)
    sales = ev[ev["event"] == "site_sale"]
    assert len(sales) and sales["value"].sum() == pytest.approx(m.sites.sale_proceeds,
                                                               rel=1e-12)
