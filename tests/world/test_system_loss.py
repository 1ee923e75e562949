"""Issue 15, "Losses counted for everyone" (sim.world.losses, ``metrics.system_loss``): each party's
loss marked to market, the system loss, its identity, the desk's P&L and the paired
comparisons of ``liqsim compare`` and ``liqsim analyze``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.borrower import BorrowerStatus
from agents.repo_desk import RepoDesk
from sim.batch.analyze import LOSS_METRICS, Output, Sweep, _add_paired
from sim.core.config import ConfigError, Repo, load_scenario
from sim.world import losses, metrics
from sim.world.model import LiquidationModel
from sim.world.runner import compare

ON = {"metrics.system_loss": True}


def _model(scenario="crypto_winter", seed=3, months=18, repo=False, **over):
    return LiquidationModel(scenario, seed=seed, months=months,
                            overrides={**ON, "policy.repo.enabled": repo, **over})


def _rhs(r: dict, t=slice(None)) -> np.ndarray:
    return (r["sl_value_destroyed"][t] + r["sl_btc_value_fall"][t] - r["sl_operating_income"][t]
            + r["sl_discount"][t] + r["sl_holding_costs"][t])


def _scale(m) -> float:
    """The money the identity's terms move: the tolerance is 1e-9 of it."""
    return float(np.abs(m.losses0["wealth"]).sum() + np.abs(m.losses0["stock"]).sum()
                 + sum(abs(v) for v in m.flows.values())) + 1.0


# ----------------------------------------------------------------------- off by default
def test_on_by_default_and_off_adds_no_record_and_no_summary_key():
    on = LiquidationModel("crypto_winter", seed=3, months=4).run()
    assert on.cfg.metrics.system_loss and "system_loss" in on.rec
    assert "losses" in metrics.summary(on)
    m = LiquidationModel("crypto_winter", seed=3, months=4,
                         overrides={"metrics.system_loss": False}).run()
    assert not any(k.startswith(("loss_", "sl_")) or k == "system_loss" for k in m.rec)
    assert "losses" not in metrics.summary(m)


def test_bad_switch_is_a_config_error():
    with pytest.raises(ConfigError):
        load_scenario("baseline", {"metrics.system_loss": "yes"})


# ----------------------------------------------------------------------- the desk
def test_desk_pnl_by_hand():
    """Capacity 100: lends 30, buys 2 GPUs at 10, is paid 1.5 of interest, the GPUs are marked
    at 7: P&L = -6 (the GPUs) + 1.5 (interest) = -4.5 = cash flows (-48.5) + mark (30 + 14)."""
    model = LiquidationModel("baseline", seed=1, months=1)
    desk = RepoDesk(model, Repo(enabled=True, capacity=100.0), 1)
    desk.lent, desk.cash = 30.0, 100.0 - 30.0 - 20.0 + 1.5
    desk.holdings[0] = 2
    # the desk's one ledger: its monthly P&L arrays (``flows`` sums them by kind)
    desk.cash_lent[0], desk.cash_bought[0], desk.interest[0] = 30.0, 20.0, 1.5
    assert desk.flows == {"lent": -30.0, "repaid": 0.0, "interest": 1.5, "purchases": -20.0,
                          "sales": 0.0, "funding": 0.0}
    assert desk.pnl(np.array([7.0])) == pytest.approx(-4.5, abs=1e-12)
    assert sum(desk.flows.values()) == pytest.approx(desk.cash - desk.cash0, abs=1e-12)
    # its cost of capital at SOFR 4.8 % on the 50 deployed (30 lent + 20 of GPUs at cost):
    # 50 x 0.048 / 12 = 0.2, so P&L = -4.5 - 0.2 = -4.7
    desk.cost_basis[0] = 20.0
    assert desk.pay_funding(0, 0.048) == pytest.approx(0.2, abs=1e-15)
    assert desk.flows["funding"] == pytest.approx(-0.2, abs=1e-15)
    assert desk.pnl(np.array([7.0])) == pytest.approx(-4.7, abs=1e-12)
    assert sum(desk.flows.values()) == pytest.approx(desk.cash - desk.cash0, abs=1e-12)


@pytest.mark.parametrize("scenario", ["crypto_winter", "repo_backstop"])
def test_desk_pnl_is_its_cash_flows_plus_its_mark_every_month(scenario):
    m = _model(scenario, seed=11, months=24, repo=True).run()
    r, d = m.rec, m.desk
    assert r["desk_cash_flows"][-1] == pytest.approx(d.cash - d.cash0, abs=1e-3)
    # the desk did something (else the test proves nothing)
    assert d.flows["purchases"] < 0 or d.flows["lent"] < 0
    pnl = r["desk_cash_flows"] + r["desk_mark"]
    # to a tenth of a cent: the two sides sum the same flows of a 2 B$ cash balance in a
    # different order (float64 spacing at 2e9 is 2.4e-7)
    np.testing.assert_allclose(-r["loss_desk"], pnl, rtol=0, atol=1e-3)
    assert r["desk_mark"][-1] == pytest.approx(
        d.lent + float(np.dot(d.holdings, m.price)), abs=1e-6)
    s = metrics.summary(m)["losses"]
    assert s["desk_pnl"] == pytest.approx(-s["desk"]) and s["desk"] == r["loss_desk"][-1]


# ----------------------------------------------------------------------- the identity
FUZZ = [(s, seed, repo) for s, seed in [("baseline", 101), ("crypto_winter", 202),
                                        ("guarantor_exit", 303), ("asic_2022", 404),
                                        ("repo_backstop", 505), ("long_debt", 606),
                                        ("next_gen_launch", 707),
                                        ("correlation_convergence", 808)]
        for repo in (False, True)]


@pytest.mark.parametrize(("scenario", "seed", "repo"), FUZZ)
def test_identity_holds_every_month_on_fuzzed_worlds(scenario, seed, repo):
    rng = np.random.default_rng(seed)
    seed = int(rng.integers(0, 2**31))
    m = _model(scenario, seed=seed, months=int(rng.integers(12, 30)), repo=repo).run()
    r, n = m.rec, m.env.t + 1
    parts = sum(r[f"loss_{p}"][:n] for p in losses.PARTS)
    tol = 1e-9 * _scale(m)
    np.testing.assert_allclose(r["system_loss"][:n], parts, rtol=0, atol=tol)
    np.testing.assert_allclose(r["system_loss"][:n], _rhs(r, slice(0, n)), rtol=0, atol=tol)
    out = sum(r[f"loss_{p}"][:n] for p in losses.OUTSIDE)
    np.testing.assert_allclose(r["loss_outside"][:n], out, rtol=0, atol=tol)
    assert r["system_loss"][0] == 0.0 or abs(r["system_loss"][0]) < tol  # t0: nothing lost
    assert m.invariants() == []


# the secured repo and the buyer of last resort (issue 15 part A): every cash move of the desk
# (loans, repayments, interest, margin, default sales and losses) and of the buyer of last
# resort is counted, so the identity holds with either switch on
SECURED = {"policy.repo.enabled": True, "policy.repo.design": "secured"}
LEGACY = {"policy.repo.enabled": True, "policy.repo.design": "legacy"}
LOLR = {"policy.lolr.enabled": True}
POLICIES = [(s, seed, name, over)
            for s, seed in [("crypto_winter", 212), ("crypto_winter", 919),
                            ("repo_backstop", 515), ("guarantor_exit", 313)]
            for name, over in [("secured", SECURED), ("legacy", LEGACY), ("lolr", LOLR),
                               ("both", {**SECURED, **LOLR})]]


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "seed", "name", "over"), POLICIES)
def test_identity_holds_every_month_with_secured_repo_and_lolr(scenario, seed, name, over):
    shock = {"shocks.0.size": 0.8} if scenario == "crypto_winter" else {}  # a BTC shock of 80 %
    m = _model(scenario, seed=seed, months=36, **shock, **over).run()
    r, n = m.rec, m.env.t + 1
    parts = sum(r[f"loss_{p}"][:n] for p in losses.PARTS)
    tol = 1e-9 * _scale(m)
    np.testing.assert_allclose(r["system_loss"][:n], parts, rtol=0, atol=tol)
    np.testing.assert_allclose(r["system_loss"][:n], _rhs(r, slice(0, n)), rtol=0, atol=tol)
    assert m.invariants() == []
    d = m.desk
    # the desk's P&L is its cash flows plus its mark, and its flows are its cash
    assert r["desk_cash_flows"][n - 1] == pytest.approx(d.cash - d.cash0, abs=1e-3)
    np.testing.assert_allclose(-r["loss_desk"][:n], r["desk_cash_flows"][:n]
                               + r["desk_mark"][:n], rtol=0, atol=1e-3)
    if "policy.lolr.enabled" in over:
        lo = m.lolr
        assert r["loss_lolr"][n - 1] == pytest.approx(
            lo.cfg.capacity - lo.cash - float(np.dot(lo.holdings, m.price)), abs=1e-3)
    else:
        assert not r["loss_lolr"].any()


def test_secured_repo_and_lolr_act_on_crypto_winter():
    """The identity tests above prove something: on crypto_winter at a BTC shock of 0.8 the
    secured desk lends and the buyer of last resort buys (and runs what it holds)."""
    m = _model(seed=212, months=36, **{"shocks.0.size": 0.8}, **SECURED, **LOLR).run()
    d, lo = m.desk, m.lolr
    assert d.cash_lent.sum() > 0 and d.cash_repaid.sum() + d.interest.sum() > 0
    assert lo.cash_bought.sum() > 0 and lo.rent.sum() > 0
    r, n = m.rec, m.env.t + 1
    np.testing.assert_allclose(r["system_loss"][:n], _rhs(r, slice(0, n)), rtol=0,
                               atol=1e-9 * _scale(m))


# ----------------------------------------------- holders' use value and sales out of the sector
def test_holder_margin_by_hand():
    """m_g = max(0, 730 u r_g - (power_g + spot opex + facility_g)), by hand for one month."""
    m = LiquidationModel("baseline", seed=1, months=2)
    env, c, e = m.env, m.cfg, m.cfg.environment
    # kW x PUE x 730 h x $/MWh / 1000 (power), spot opex, kW x $/kW-month (facility)
    cost = (env.kw * e.pue * 730.0 * e.power_price / 1000.0 + c.buyers.spot_opex_per_gpu
            + env.kw * e.facility_cost)
    hand = np.maximum(730.0 * e.utilisation * env.rent - cost, 0.0)
    assert e.facility_cost == 184.0 and (hand > 0).all()  # every generation earns at t0
    np.testing.assert_allclose(losses.holder_margin(m), hand, rtol=1e-12, atol=1e-9)
    # a rent below the running cost earns nothing (the unit is switched off), not a loss
    env.rent[:] = 0.0
    assert (losses.holder_margin(m) == 0.0).all()


def test_buyers_are_credited_what_their_gpus_earn_and_exports_leave_at_their_price():
    """Step by step: secondary buyers' imputed income grows by their holdings x m_g each month
    (it enters their wealth and the operating income), out-of-sector buyers' loss stays 0, and
    the discount of the units sold out is sum_t (units sold out in t) x V_t - what they paid."""
    m = _model("crypto_winter", seed=7, months=24, **{"shocks.0.size": 0.8})
    income = exported = 0.0
    out_prev = (m.salvage_units + m.external_units).copy()
    bought = False
    while m.running and m.env.t < 24:
        m.step()
        held = m.buyers.holdings.sum(axis=0)
        bought |= bool(held.sum() > 0)
        income += float((held * losses.holder_margin(m)).sum())
        out = m.salvage_units + m.external_units
        exported += float(((out - out_prev) * m.fundamental).sum())
        out_prev = out.copy()
        t, r = m.env.t, m.rec
        assert m.losses_state["buyers_income"] == pytest.approx(income, rel=1e-12, abs=1e-6)
        assert r["loss_outside_buyers"][t] == 0.0
        assert r["sl_discount_outside"][t] == pytest.approx(exported - m.flows["salvage"],
                                                           rel=1e-12, abs=1e-3)
    assert bought and income > 0 and exported > 0  # else the test proves nothing
    assert m.flows["salvage"] < exported  # sold out of the sector below their value in use


@pytest.mark.parametrize("over", [{}, LEGACY, LOLR], ids=["none", "legacy", "lolr"])
def test_system_loss_at_value_is_every_part_marked_at_value_in_best_use(over):
    """Independently: every party's wealth with the GPUs marked at V instead of p (at t0 and
    at t) gives the record system_loss_at_value, every month."""
    m = _model("crypto_winter", seed=5, months=20, **{"shocks.0.size": 0.8}, **over)

    def at_value() -> float:  # every party's wealth with its GPUs at the value in best use
        return float(losses.wealth(m, m.fundamental)[: len(losses.PARTS)].sum())

    w0 = at_value()
    while m.running and m.env.t < 20:
        m.step()
        t = m.env.t
        assert m.rec["system_loss_at_value"][t] == pytest.approx(w0 - at_value(), rel=1e-9,
                                                                abs=1e-9 * _scale(m))
    # a fire sale marks the stock below its value in use: the two measures differ
    assert m.rec["system_loss_at_value"][20] != pytest.approx(m.rec["system_loss"][20])


def test_identity_sees_money_that_vanishes():
    """Take 1 M$ from a borrower without any payment: the parts lose it, the economics (the
    right-hand side) does not, so the identity fails by exactly 1 M$."""
    m = _model(months=6).run()
    before = losses.identity(m)
    assert before["system_loss"] == pytest.approx(before["rhs"], abs=1e-9 * _scale(m))
    m.borrowers.cash[0] -= 1e6
    after = losses.identity(m)
    assert after["system_loss"] - before["system_loss"] == pytest.approx(1e6, abs=1e-3)
    assert after["rhs"] == before["rhs"]


def test_a_payment_between_parties_moves_the_parts_not_the_total():
    """A buyer pays a lender 5 M$ (for nothing): buyers lose 5 M$, lenders gain 5 M$, the system
    loss does not move."""
    m = _model(months=6).run()
    assert not m.buyers.unlimited
    before = losses.identity(m)
    m.buyers.capital[0] -= 5e6
    m.lenders.cash[0] += 5e6
    after = losses.identity(m)
    d = after["parts"] - before["parts"]
    assert d[losses.PARTS.index("buyers")] == pytest.approx(5e6, abs=1e-3)
    assert d[losses.PARTS.index("lenders")] == pytest.approx(-5e6, abs=1e-3)
    assert after["system_loss"] == pytest.approx(before["system_loss"], abs=1e-3)


def test_a_trade_at_any_price_is_a_transfer():
    """A lender sells a repossessed GPU to a buyer at twice the price index: the buyer loses
    the premium, the lender gains it; the units and the total are unchanged."""
    m = _model(seed=5, months=24).run()
    lb, g = m.lenders, None
    held = np.argwhere(lb.inventory > 0)
    if not len(held):
        pytest.skip("no inventory left in this world")
    i, g = (int(x) for x in held[0])
    before = losses.identity(m)
    q = 2.0 * float(m.price[g])
    lb.inventory[i, g] -= 1
    m.buyers.holdings[0, g] += 1
    m.buyers.capital[0] -= q
    lb.cash[i] += q
    after = losses.identity(m)
    d = after["parts"] - before["parts"]
    assert d[losses.PARTS.index("buyers")] == pytest.approx(q - m.price[g], abs=1e-3)
    assert d[losses.PARTS.index("lenders")] == pytest.approx(-(q - m.price[g]), abs=1e-3)
    assert after["system_loss"] == pytest.approx(before["system_loss"], abs=1e-3)


def test_borrowers_wiped_out_is_t0_equity_of_the_defaulted():
    m = _model(seed=9, months=30).run()
    b = m.borrowers
    dead = b.status == BorrowerStatus.DEFAULTED
    assert dead.any()
    r = m.rec
    assert r["loss_borrowers_wiped_out"][-1] == pytest.approx(
        float(m.losses0["equity"][dead].sum()))
    assert (m.losses0["equity"] >= 0).all()
    # the t0 value in best use is the t0 price, so t0 equity at V is the t0 mark: loss 0 at t0
    assert r["loss_borrowers"][0] == pytest.approx(0.0, abs=1e-6)


def test_summary_has_every_part_and_the_lenders_split():
    m = _model(months=12).run()
    s = metrics.summary(m)
    lo = s["losses"]
    assert set(lo) == set(losses.SUMMARY_KEYS)
    assert lo["lenders_credit"] == s["credit_losses"]
    assert lo["lenders_net"] == pytest.approx(s["net_credit_losses"])
    assert lo["system_loss"] == pytest.approx(sum(lo[p] for p in losses.PARTS), abs=1e-3)
    series = metrics.series(m)
    assert "system_loss" in series and series["system_loss"].iloc[-1] == lo["system_loss"]


# ----------------------------------------------------------------------- compare / analyze
@pytest.mark.slow
def test_compare_reports_the_paired_losses_only_when_both_count_them():
    a = load_scenario("crypto_winter", {**ON}, months=8)
    b = load_scenario("crypto_winter", {**ON, "policy.repo.enabled": True}, months=8)
    res = compare(a, b, 2)
    m = res["metrics"]
    assert "loss_system_loss" in m and "loss_desk" in m and "loss_outside_buyers" in m
    xs = []
    for s in res["seeds"]:
        sa = metrics.summary(LiquidationModel(a.model_copy(update={"seed": s})).run())
        sb = metrics.summary(LiquidationModel(b.model_copy(update={"seed": s})).run())
        xs.append(sb["losses"]["system_loss"] - sa["losses"]["system_loss"])
    assert m["loss_system_loss"]["diff"] == pytest.approx(np.mean(xs), rel=1e-9, abs=1e-6)
    assert m["loss_system_loss"]["ci_low"] <= m["loss_system_loss"]["diff"]
    off = compare(load_scenario("crypto_winter", {"metrics.system_loss": False}, months=8), b, 2)
    assert not any(k.startswith("loss_") for k in off["metrics"])


def _sweep(with_losses: bool) -> Sweep:
    rows = []
    for seed in range(4):
        for repo in (False, True):
            row = {"replicate": seed, "seed": seed, "policy.repo.enabled": repo,
                   "credit_losses": 10.0 * seed + (3.0 if repo else 0.0)}
            if with_losses:
                row["losses.system_loss"] = 100.0 + seed - (7.0 if repo else 0.0)
                row["losses.desk"] = 2.0 * seed if repo else 0.0
            rows.append(row)
    runs = pd.DataFrame(rows)
    mets = [c for c in runs.columns if c.startswith(("credit", "losses."))]
    return Sweep(runs=runs, axes=["policy.repo.enabled"], metrics=mets, design="grid",
                 name="t", n_failed=0, meta={})


@pytest.mark.slow
def test_analyze_paired_losses_table_and_older_ledgers():
    out = Output()
    _add_paired(_sweep(True), out)
    t = out.tables["paired_losses"]
    assert list(t["metric"]) == ["losses.desk", "losses.system_loss"]  # LOSS_METRICS' order
    sl = t[t["metric"] == "losses.system_loss"].iloc[0]
    assert sl["mean"] == pytest.approx(-7.0)  # the same -7 on every seed
    desk = t[t["metric"] == "losses.desk"].iloc[0]
    assert desk["mean"] == pytest.approx(3.0)  # 2 x mean(0, 1, 2, 3)
    assert set(t["metric"]) <= set(LOSS_METRICS)
    old = Output()
    _add_paired(_sweep(False), old)
    assert "paired_losses" not in old.tables and "paired" in old.tables


def test_analyze_names_every_summary_loss_key():
    """sim.batch.analyze lists the summary's loss keys itself (it imports no model code): the list
    must be sim.world.losses.SUMMARY_KEYS, in order, or a new record drops out of paired_losses."""
    assert LOSS_METRICS == tuple(f"losses.{k}" for k in losses.SUMMARY_KEYS)
