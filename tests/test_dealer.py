"""Dealers (``buyers.types.<name>.role = "dealer"``): a dealer bids the expected resale of a
GPU to the model's end users, net of waiting, carry and handling (agents.buyer
``BuyerBook.dealer_values``; docs/model.md, "Dealers"). Worked examples by hand, the default
bit for bit, bad input, and the direction of the time-to-sell discounts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.config import ConfigError, Scenario, load_scenario
from sim.losses import holder_margin
from sim.model import LiquidationModel
from sim.validate import sell_fleet

DEALER = "buyers.types.broker.role='dealer'"
# a world where a running H100 earns the same net rent C every month until its physical life
# ends: no rent drift, no rent volatility, no value cap (every E_t[P_j(t + n)] is a sum of
# a geometric series)
FLAT = ["environment.rent_deflation=0", "environment.rent_vol=0", "buyers.value_cap=false"]


def _model(*over: str) -> LiquidationModel:
    return LiquidationModel(load_scenario("baseline", list(over), months=2))


def _flat_user_value(c: float, hurdle: float, months: int, integration: float) -> float:
    """sum_{m=1}^{months} c (1 + r)^(-m/12) - I, floored at 0: a user's reservation price
    when the net rent is c a month for ``months`` more months (plain Python)."""
    beta = (1.0 + hurdle) ** (-1.0 / 12.0)
    return max(sum(c * beta ** m for m in range(1, months + 1)) - integration, 0.0)


def _flat_inputs(m: LiquidationModel, gen: str = "H100") -> tuple[int, float, int]:
    env = m.env
    g = env.names.index(gen)
    c = float(holder_margin(m)[g])  # 730 u R - (power + spot opex + facility), > 0 here
    left = m.cfg.buyers.physical_life_months - int(env.age[g])  # months of life left
    assert c > 0 and left > 12
    return g, c, left


def test_dealer_bid_by_hand_one_end_user_always_there():
    """One end-user type that bids in every auction (tier-2 clouds, close_days = 0): the dealer
    resells in the next month's auction (tau = 1), so
    b = (1 + r_d)^(-1/12) (E_t[P_tier2(t + 1)] - h) - I_d, with E_t[P_tier2(t + 1)] the
    tier-2 cloud's value of the unit one month older."""
    m = _model(*FLAT, DEALER, "buyers.types.hyperscaler.count=0",
               "buyers.types.tier2.close_days=0")
    g, c, left = _flat_inputs(m)
    t2, br = m.cfg.buyers.types["tier2"], m.cfg.buyers.types["broker"]
    resale = _flat_user_value(c, t2.hurdle, left - 1, t2.integration_cost)
    h = m.cfg.lenders.holding_cost
    by_hand = (1.30 ** (-1.0 / 12.0)) * (resale - h) - br.integration_cost
    b = m.buyers
    assert b._dealer_setup()[-1] == 1.0  # p = 1
    got = b.dealer_values(m.env, np.zeros(m.env.n_gen))[0, g]
    assert got == pytest.approx(by_hand, rel=1e-12)
    # and it is what every broker bids in the auction
    res = b.reservation(m.env)[:, g]
    assert np.all(res[b.type == "broker"] == got)


def test_first_arrival_of_the_default_end_users():
    """3 hyperscalers and 10 tier-2 clouds, each with close_days 240: the first end user arrives
    at rate 13 / 240 a day, so a month's auction has one with p = 1 - exp(-30 x 13 / 240)
    = 0.80309 (E[tau] = 1.245 months), a hyperscaler with probability 3/13."""
    b = _model(DEALER).buyers
    users, pi, *_rest, p = b._dealer_setup()
    assert [b.type_names[u] for u in users] == ["hyperscaler", "tier2"]
    assert pi == pytest.approx([3 / 13, 10 / 13], rel=1e-14)
    assert p == pytest.approx(1.0 - math.exp(-30.0 * 13.0 / 240.0), rel=1e-14)
    assert p == pytest.approx(0.803088, abs=1e-6)


def test_dealer_bid_by_hand_geometric_wait():
    """The full formula with the default end users (p = 0.803, pi = 3/13, 10/13):
    b = sum_n p (1 - p)^(n - 1) beta_d^n sum_j pi_j P_j(t + n)
        - h sum_n (1 - p)^(n - 1) beta_d^n - I_d, summed by hand over n = 1 .. M."""
    m = _model(*FLAT, DEALER)
    g, c, left = _flat_inputs(m)
    types = m.cfg.buyers.types
    p = 1.0 - math.exp(-30.0 * (3 / 240 + 10 / 240))
    pi = {"hyperscaler": 3 / 13, "tier2": 10 / 13}
    beta_d = 1.30 ** (-1.0 / 12.0)
    h = m.cfg.lenders.holding_cost
    horizon = m.buyers._mmax  # the sums stop at the longest horizon (96 months)
    resale_part = carry = 0.0
    for n in range(1, horizon + 1):
        still = (1.0 - p) ** (n - 1)
        resale = sum(w * _flat_user_value(c, types[j].hurdle, left - n, types[j].integration_cost)
                     for j, w in pi.items())
        resale_part += p * still * beta_d ** n * resale
        carry += h * still * beta_d ** n
    by_hand = resale_part - carry - types["broker"].integration_cost
    got = m.buyers.dealer_values(m.env, np.zeros(m.env.n_gen))[0, g]
    assert got == pytest.approx(by_hand, rel=1e-10)


def test_default_is_user_and_bit_for_bit():
    """role defaults to "user"; spelling it out changes no bit of a run."""
    assert all(t.role == "user" for t in Scenario().buyers.types.values())
    a = LiquidationModel(load_scenario("baseline", months=6)).run()
    b = LiquidationModel(load_scenario("baseline", ["buyers.types.broker.role='user'"],
                                       months=6)).run()
    for key in ("price", "fundamental"):
        assert np.array_equal(a.rec[key], b.rec[key])
    assert np.array_equal(a.buyers.holdings, b.buyers.holdings)


def test_dealers_are_no_use_in_the_value_in_best_use():
    """The value in best use is the highest END USER's value: with a steep rent decline the
    broker as a user is the best use of an H100 (its low integration cost), as a dealer it is
    not, and V is then the best user type's value."""
    over = ("environment.rent_deflation=0.6",)
    user, dealer = _model(*over), _model(*over, DEALER)
    g = user.env.names.index("H100")
    v_user = user.buyers.values_by_type(user.env, np.zeros(user.env.n_gen))[0][:, g]
    broker = user.buyers.type_names.index("broker")
    assert v_user[broker] > v_user[:broker].max()  # the broker is the best use as a user
    assert user.fundamental[g] == v_user[broker]
    assert dealer.fundamental[g] == v_user[:broker].max()  # users only


@pytest.mark.parametrize("bad", ["buyers.types.broker.role='trader'",
                                 "buyers.types.broker.role=1"])
def test_bad_role_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="role"):
        load_scenario("baseline", [bad])


def test_dealers_without_end_users_are_a_config_error():
    with pytest.raises(ConfigError, match="no type with role = 'user'"):
        load_scenario("baseline", [DEALER, "buyers.types.hyperscaler.count=0",
                                   "buyers.types.tier2.count=0"])
    with pytest.raises(ConfigError, match="resell"):
        load_scenario("baseline", [DEALER, "buyers.types.hyperscaler.role='dealer'",
                                   "buyers.types.tier2.role='dealer'"])


def test_dealer_bid_below_user_bid_when_value_falls_fast():
    """A dealer's bid rests on the value path a month or two ahead, a user's on its own long
    rent stream at its 30 % hurdle. For the A100 (short life left, its value falls fast on
    the expected path) the dealer bids less than the same broker as a user, and a forced
    30-day sale of an A100 fleet fetches less; for the H100 at t0 the end users' lower
    hurdles outweigh the fall and the dealer bids more (docs/validation.md, "Dealers and
    the 30-day sale")."""
    user, dealer = _model(), _model(DEALER)
    a100, h100 = user.env.names.index("A100"), user.env.names.index("H100")
    br = user.buyers.type == "broker"
    r_user = user.buyers.reservation(user.env)[br][0]
    r_dealer = dealer.buyers.reservation(dealer.env)[br][0]
    assert r_dealer[a100] < r_user[a100]
    assert r_dealer[h100] > r_user[h100]
    assert np.array_equal(user.fundamental, dealer.fundamental)  # brokers are not the best use
    # the expected value path falls: the hyperscalers' value a month ahead is below today's,
    # by more for the A100 (-5 %) than for the H100 (-3 %)
    b, env = dealer.buyers, dealer.env
    users, _pi, shifted, life, integ = b._dealer_setup()[:5]
    ahead = b._pv(env, shifted, life, integ, np.zeros((1, env.n_gen)))
    gens = [a100, h100]
    ahead = ahead.reshape(len(users), b._mmax, env.n_gen)[0, 0, gens] / dealer.fundamental[gens]
    assert ahead[0] < 0.95 < ahead[1] < 1.0
    d_user = 1.0 - sell_fleet(5512, 30, gen="A100", draws=100)[0]
    d_dealer = 1.0 - sell_fleet(5512, 30, gen="A100", draws=100, overrides=(DEALER,))[0]
    assert d_dealer > d_user + 0.05


def test_validate_reports_the_dealer_sale_as_information():
    """Check 6d: an information row (never a pass or fail) whose source is a place in the
    repository, with the brokers' bid as users (0.742 V) and as dealers (above it: the end
    users arrive within 1.2 months on average, so the resale is near their value)."""
    from sim.validate import dealer_sale_row
    row, data = dealer_sale_row(5512)
    assert row.id == "6d" and row.info and row.passed
    assert row.source.startswith("docs/validation.md, \"Dealers and the 30-day sale\"")
    bids = data["broker_bid_over_v"]
    assert bids["user"] == pytest.approx(0.7415, abs=1e-4)
    assert bids["dealer"] > bids["user"]
    assert data["discount"]["7"] > data["discount"]["30"] > data["discount"]["180"]


def test_auction_resale_by_hand_one_end_user_always_there():
    """``dealer_resale = "auction"``, p = 1: each month the dealer can sell to a tier-2 cloud
    at W + k (P(t + n) - W); with W_M = 0 and k = 0.5, by hand backwards,
    W_{n-1} = beta_d (W_n + k max(0, P(t + n) - W_n) - h), b = W_0 - I_d."""
    m = _model(*FLAT, DEALER, "buyers.types.hyperscaler.count=0",
               "buyers.types.tier2.close_days=0", "buyers.dealer_resale='auction'")
    g, c, left = _flat_inputs(m)
    t2, br = m.cfg.buyers.types["tier2"], m.cfg.buyers.types["broker"]
    beta, h, k = 1.30 ** (-1.0 / 12.0), m.cfg.lenders.holding_cost, m.cfg.market.k
    assert k == 0.5
    w = 0.0
    for n in range(m.buyers._mmax, 0, -1):
        value = _flat_user_value(c, t2.hurdle, left - n, t2.integration_cost)
        w = beta * (w + k * max(0.0, value - w) - h)
    got = m.buyers.dealer_values(m.env, np.zeros(m.env.n_gen))[0, g]
    assert got == pytest.approx(w - br.integration_cost, rel=1e-12)
    # the end user keeps half the surplus: the dealer bids less than at the end user's ask
    ask = _model(*FLAT, DEALER, "buyers.types.hyperscaler.count=0",
                 "buyers.types.tier2.close_days=0").buyers
    assert got < ask.dealer_values(m.env, np.zeros(m.env.n_gen))[0, g]


def test_auction_resale_with_k_one_is_the_ask():
    """k = 1 gives the dealer the whole surplus: the backward recursion is the closed form."""
    ask = _model(DEALER, "market.k=1")
    auction = _model(DEALER, "market.k=1", "buyers.dealer_resale='auction'")
    x = np.zeros(ask.env.n_gen)
    a = ask.buyers.dealer_values(ask.env, x)
    b = auction.buyers.dealer_values(auction.env, x)
    assert np.allclose(a, b, rtol=1e-12, atol=1e-9) and a.max() > 10_000


def test_bad_dealer_resale_is_a_config_error():
    with pytest.raises(ConfigError, match="dealer_resale"):
        load_scenario("baseline", ["buyers.dealer_resale='haggle'"])


def test_each_dealer_bids_under_its_own_expectations():
    """When buyers' expectation rows differ, every dealer's row is ``dealer_values`` at its
    own row x_k; users' rows are their own valuations as before."""
    d, u = _model(DEALER), _model()
    b, env = d.buyers, d.env
    x = np.zeros_like(b.extrap)
    x[b.type == "broker"] = np.linspace(-0.4, 0.0, 8)[:, None]
    b.extrap = x
    u.buyers.extrap = x.copy()
    res = b.reservation(env)
    for k in np.flatnonzero(b.type == "broker"):
        assert np.array_equal(res[k], b.dealer_values(env, x[k])[0])
    users = b.type != "broker"
    assert np.array_equal(res[users], u.buyers.reservation(u.env)[users])
    assert res[b.type == "broker"][0, 1] < res[b.type == "broker"][-1, 1]  # gloomier, lower


def test_a_world_without_buyers_is_scrap_with_a_dealer_type():
    """All counts 0 (allowed): a dealer type with no buyer needs no end user; with no end
    user its resale is worth 0 (an empty sum, not 0 / 0), and the value in best use is the
    scrap floor, as without the role."""
    zero = ["buyers.types.hyperscaler.count=0", "buyers.types.tier2.count=0",
            "buyers.types.broker.count=0"]
    a, b = _model(*zero), _model(*zero, DEALER)
    assert np.array_equal(a.fundamental, b.fundamental)
    assert b.buyers.reservation(b.env).shape == (0, b.env.n_gen)
    v0, vx = b.buyers.values_by_type(b.env, np.zeros(b.env.n_gen))
    assert np.isfinite(v0).all() and np.isfinite(vx).all()  # no resale rate 0 / 0
