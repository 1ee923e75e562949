"""The browser app without a browser (Solara's test renderer) and ``liqsim animate``."""

from __future__ import annotations

import functools
import inspect
import os
import re
import time
from collections import Counter

import ipyvuetify as v
import ipywidgets
import numpy as np
import pytest
import solara
from PIL import Image

from agents.borrower import DEFAULTED
from sim import app, metrics
from sim.animate import month_label
from sim.cli import main
from sim.config import ConfigError, list_scenarios, load_scenario
from sim.model import LiquidationModel
from sim.runner import run_scenario


@solara.component
def _InLayout():
    """The page as the server shows it: Solara wraps a module's Page in the module's Layout
    (app.Layout: the AppLayout, which the sidebar needs, and the error boundary)."""
    return app.Layout(children=[app.Page()])


@pytest.fixture
def page():
    _box, rc = solara.render(_InLayout(), handle_error=False)
    return rc


class _Contains:
    """Matches a widget attribute (in ``rc.find``) whose text contains ``part``."""

    def __init__(self, part: str):
        self.part = part

    def __eq__(self, other) -> bool:
        return isinstance(other, str) and self.part in other

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    __hash__ = None


def _html(rc, css: str) -> str:
    return rc.find(solara.widgets.HTML, attributes={"class": css}).widget.unsafe_innerHTML


def _text(rc) -> str:
    """The month counter (HTML)."""
    return _html(rc, "liqsim-counter")


def _month(rc) -> int:
    return int(re.search(r"Month (\d+) of", _text(rc)).group(1))


def _images(rc) -> list[bytes]:
    return [bytes(w.value) for w in rc.find(ipywidgets.Image).widgets]


def _click(rc, label: str) -> None:
    rc.find(v.Btn, children=[label]).widget.click()


def _control(rc, cls, label: str):
    """A control by the start of its label (sliders show their value after it)."""
    return rc.find(cls, label=_Starts(label)).widget


class _Starts(_Contains):
    def __eq__(self, other) -> bool:
        return isinstance(other, str) and other.startswith(self.part)


# --------------------------------------------------------------------------- the model
def test_app_scenario_defaults_equal_the_scenario():
    """At the controls' starting values, the app builds exactly the shipped scenario."""
    names = app.picker_scenarios()
    assert {"baseline", "crypto_winter", "repo_backstop"} <= set(names)
    for name in names:
        params = app.model_params(name)
        assert app.AppModel(**app.initial_kwargs(params)).cfg == load_scenario(name)


def test_picker_leaves_out_scenarios_too_large_to_draw(monkeypatch):
    monkeypatch.setattr(app, "PICKER_MAX_BORROWERS", 179)  # the baseline has 180 borrowers
    assert "baseline" not in app.picker_scenarios()
    names = app.model_params("baseline")["scenario_name"]["values"]
    assert names[-1] == "baseline"  # named explicitly (`liqsim app baseline`): still offered
    monkeypatch.setattr(app, "PICKER_MAX_BORROWERS", 180)
    assert "baseline" in app.picker_scenarios()


def test_controls_left_unset_keep_the_scenarios_own_values():
    """Without a control value the app runs the scenario as shipped: asic_2022's rent drift
    (0.2857) and LTV stay, where fixed defaults (0.30, 0.75) used to overwrite them."""
    for name in ("asic_2022", "crypto_winter"):
        assert app.app_scenario(name).model_dump() == load_scenario(name).model_dump()
    assert app.AppModel("asic_2022").cfg.environment.rent_deflation == 0.2857


def test_controls_set_the_scenario_keys():
    cfg = app.app_scenario("crypto_winter", seed=7, ltv=0.6, rent_deflation=0.45,
                           btc_shock=0.5, buyer_capacity=2.0, correlation_shift=0.3, repo=True)
    base = load_scenario("crypto_winter")
    assert cfg.seed == 7
    assert cfg.borrowers.miner.ltv == cfg.borrowers.neocloud.ltv == 0.6
    assert cfg.environment.rent_deflation == 0.45
    assert cfg.buyers.capacity_scale == 2.0 * base.buyers.capacity_scale
    assert cfg.environment.rho_calm == pytest.approx(base.environment.rho_calm + 0.3)
    assert cfg.environment.rho_stress == 1.0  # 0.8 + 0.3, clipped
    assert cfg.policy.repo.enabled
    btc = [(s.month, s.size) for s in cfg.shocks if s.kind == "btc"]
    assert btc == [(3, 0.6), (app.BTC_SHOCK_MONTH, 0.5)]  # the scenario's own shock is kept


def test_repo_switch_off_keeps_the_scenarios_setting():
    assert app.app_scenario("repo_backstop", repo=False).policy.repo.enabled
    assert not app.app_scenario("baseline", repo=False).policy.repo.enabled
    assert app.app_scenario("baseline", repo=True).policy.repo.enabled


def test_ltv_slider_reaches_the_borrowers():
    m = app.AppModel(ltv=0.55)
    assert np.all(m.borrowers.ltv0 == 0.55)
    assert isinstance(m, LiquidationModel)


def test_bad_seed_falls_back_with_a_notice():
    m = app.AppModel(seed="abc")
    assert m.cfg.seed == load_scenario("baseline").seed
    assert "seed 'abc' is not an integer" in m.notice
    assert app.AppModel(seed=" 42 ").cfg.seed == 42
    assert app.parse_seed("") is None
    with pytest.raises(ConfigError):
        app.parse_seed(str(2**63))


def test_bad_control_values_are_config_errors():
    with pytest.raises(ConfigError):
        app.app_scenario("baseline", ltv=1.5)  # borrowers.*.ltv must be <= 1
    with pytest.raises(ConfigError):
        app.app_scenario("no_such_scenario")


def test_model_params_are_accepted_by_the_model():
    """Every control maps to an AppModel keyword (the page re-creates the model with them)."""
    params = app.model_params("crypto_winter")
    assert params["scenario_name"]["value"] == "crypto_winter"
    assert set(app.initial_kwargs(params)) == set(
        inspect.signature(app.AppModel.__init__).parameters) - {"self"}


def test_month_label():
    assert month_label(0) == "Dec 2025"
    assert month_label(1) == "Jan 2026"
    assert month_label(13) == "Jan 2027"


@functools.cache
def _month12(**controls) -> dict:
    """What the app shows in months 0 to 12 of crypto_winter (the tutorial's runs), month by
    month, with the events behind it. Cached: the tutorial's tests share the runs."""
    m = app.AppModel(scenario_name="crypto_winter", **controls)
    desk_cost, desk_holdings = [0.0], [m.desk.holdings.copy()]
    for _ in range(12):
        m.step()
        desk_cost.append(float(m.desk.cost_basis.sum()))
        desk_holdings.append(m.desk.holdings.copy())
    r = {k: v[:13] for k, v in m.rec.items()}
    nl, nb, kind = m.lenders.n, m.borrowers.n, m.borrowers.kind
    orange = m.panel["state"][:13, nl:nl + nb] == 1  # borrowers under a call or in arrears
    units, amount = Counter(), Counter()  # by (month, event, agent, generation)
    for t, name, agent, _i, gen, n, value, _p in m.events:
        units[t, name, agent, gen] += n
        amount[t, name, agent, gen] += value
    new_defaults = r["defaults_miner"] + r["defaults_neocloud"]
    forced = r["forced_volume"].sum(axis=1)
    return {"g": {name: i for i, name in enumerate(m.env.names)},
            "floor": m.cfg.buyers.salvage_floor * np.array(
                [g.list_price for g in m.cfg.environment.generations]),
            "launch": m.env.launch, "step_down": m.cfg.environment.step_down,
            "close_days": {k: b.close_days for k, b in m.cfg.buyers.types.items()},
            "miners": r["defaults_miner"], "neoclouds": r["defaults_neocloud"],
            "defaults": int(new_defaults.sum()),
            "defaulted": frozenset(np.flatnonzero(m.borrowers.status == DEFAULTED).tolist()),
            "last_default": int(np.flatnonzero(new_defaults).max(initial=-1)),
            "payment_defaults": sum(1 for e in m.events if e[1] == "default_payment"),
            "repo_loans": [(e[0], e[3], e[6]) for e in m.events if e[1] == "repo_loan"],
            "orange": orange.sum(axis=1), "orange_miners": (orange & (kind == 0)).sum(axis=1),
            "orange_neoclouds": (orange & (kind == 1)).sum(axis=1),
            "losses": r["credit_losses"], "recoveries": r["recoveries"],
            "inventory": r["inventory_units"], "failed": r["lender_failures"],
            "deleveraging": r["lenders_deleveraging"], "capacity": r["buyer_capacity_h100"],
            "forced": forced, "first_forced": int(np.flatnonzero(forced).min(initial=99)),
            "forced_by_gen": r["forced_volume"], "volume": r["volume"], "salvage": r["salvage"],
            "price": r["price"], "value": r["fundamental"],
            "desk": r["repo_units"], "desk_lent": r["repo_lent"], "desk_cost": desk_cost,
            "desk_holdings": np.array(desk_holdings), "units": units, "amount": amount}


def _about(x: float, step: float, value: float) -> bool:
    """The text's "about ``value``": ``x`` rounds to it at ``step`` (e.g. $1,135M, 49,700)."""
    return round(x / step) * step == value


def _first_below(run: dict, gen: str) -> int | None:
    """The first month the price index of ``gen`` is below its value in best use."""
    g = run["g"][gen]
    below = np.flatnonzero(run["price"][:, g] < run["value"][:, g] * (1 - 1e-9))
    return int(below[0]) if len(below) else None


def _sold(run: dict, month: int, gen: str, *sellers: str) -> int:
    return sum(run["units"][month, "sale", s, run["g"][gen]] for s in sellers)


def test_the_tutorials_experiments_show_what_it_says():
    """docs/tutorial.md, experiment 1: crypto_winter at its own seed, month by month."""
    off = _month12()
    g, price, value, floor = off["g"], off["price"], off["value"], off["floor"]
    a100, h100, h200, b200, rubin = (g[n] for n in ("A100", "H100", "H200", "B200", "Rubin"))
    # orange borrowers (margin calls), miners and neo-clouds alike
    assert off["orange"][3] == 1 and off["orange"][4] == 25 and off["orange"][6] == 69
    assert off["orange_miners"][4] > 0 and off["orange_neoclouds"][4] > 0
    # red: 1 miner in month 6, then 13 + 8, 12 + 2, 19 + 3; covenant defaults only
    assert off["miners"].tolist() == [0] * 6 + [1, 13, 12, 19, 0, 0, 0]
    assert off["neoclouds"].tolist() == [0] * 7 + [8, 2, 3, 0, 0, 0]
    assert off["defaults"] == 58 and off["payment_defaults"] == 0
    # the overhang
    inv = off["inventory"]
    assert _about(inv[6], 10, 340) and _about(inv[7], 100, 49_700)
    assert inv[9] == inv[10] == inv.max() and _about(inv.max(), 100, 111_500)
    assert _about(inv[12], 100, 98_300)
    # prices below value, the newest generation on the market first: B200 from month 3 (sold
    # by borrowers; no lender holds GPUs yet), below also in months without a B200 sale
    assert _first_below(off, "B200") == 3 and (price[3:, b200] < value[3:, b200]).all()
    assert off["volume"][3, b200] == _sold(off, 3, "B200", "miner", "neocloud") > 0
    assert inv[3] == 0 and off["volume"][4, b200] == 0
    assert _about(price[3, b200], 1000, 35_000) and _about(value[3, b200], 1000, 41_000)
    assert _about(price[6, b200], 100, 19_700) and _about(value[6, b200], 100, 33_900)
    assert off["close_days"]["hyperscaler"] == off["close_days"]["tier2"] == 240
    assert round(1 - np.exp(-30 / 240), 2) == 0.12
    # the H200 from month 7, sold by lenders and borrowers
    assert _first_below(off, "H200") == 7 and _about(off["volume"][7, h200], 100, 11_500)
    assert _sold(off, 7, "H200", "lender") > 0 < _sold(off, 7, "H200", "miner", "neocloud")
    assert _about(price[7, h200], 100, 11_300) and _about(value[7, h200], 100, 12_500)
    # the H100 follows its value: no H100 trades before month 12
    assert _first_below(off, "H100") is None and off["volume"][:12, h100].sum() == 0
    assert price[:, h100] == pytest.approx(value[:, h100])
    # the A100 on its salvage floor from month 1
    assert floor[a100] == 1200 and value[0, a100] > floor[a100]
    assert (price[1:, a100] == floor[a100]).all() and (value[1:, a100] == floor[a100]).all()
    # month 10: Rubin ships, older rents step down 15 %, values fall by a third to a half
    assert off["launch"][rubin] == 10 and off["step_down"] == 0.15
    assert price[9, rubin] == 0 < price[10, rubin]
    for gen in (h100, h200, b200):
        assert 0.30 <= 1 - value[10, gen] / value[9, gen] <= 0.52
    assert _about(value[9, h100], 100, 5_600) and _about(value[10, h100], 100, 2_700)
    assert _about(value[9, b200], 100, 29_200) and _about(value[10, b200], 100, 20_100)
    # month 12: the first forced sales, 9,759 GPUs; the H100 at the floor, which is its value
    assert off["first_forced"] == 12 and off["forced"][12] == 9_759
    assert floor[h100] == 2_200 and price[12, h100] == value[12, h100] == floor[h100]
    vol, salvage = off["volume"][12], off["salvage"][12]
    assert salvage[h100] == vol[h100] > 0 and salvage[a100] == vol[a100]
    assert salvage.sum() == salvage[h100] + salvage[a100]
    assert 0.62 <= salvage.sum() / vol.sum() <= 0.70  # about two thirds
    assert off["forced_by_gen"][12, b200] == vol[b200] > 0
    assert off["forced_by_gen"][12, h200] == vol[h200] > 0
    assert _about(price[12, b200], 100, 7_800) and _about(value[12, b200], 100, 17_900)
    assert _about(price[12, h200], 100, 2_500) and _about(value[12, h200], 100, 5_000)
    # buyers' remaining capacity: about 87,000 to month 6, 75,000 in month 7, 68,000 at 12
    cap = off["capacity"]
    assert all(_about(c, 1000, 87_000) for c in cap[:7])
    assert _about(cap[7], 1000, 75_000) and _about(cap[12], 1000, 68_000) and cap.min() > 0
    # month 12: 58 defaults (45 + 13), $1,135M, no lender failed or deleveraging
    assert off["miners"].sum() == 45 and off["neoclouds"].sum() == 13
    assert _about(off["losses"][12], 1e6, 1_135e6)
    assert not off["failed"].any() and not off["deleveraging"].any()
    losses = off["losses"]
    assert losses[9] == losses[10] == losses.max() and _about(losses.max(), 1e6, 1_183e6)
    assert losses[12] < losses[11] < losses[10] and off["recoveries"][12] > off["recoveries"][10]


def test_the_tutorials_other_realisation_and_60_months():
    """docs/tutorial.md: "Another realisation" (seed 5) and the 60-month LGDs."""
    s5 = _month12(seed="5")
    h100 = s5["g"]["H100"]
    assert s5["miners"].sum() == 78 and s5["neoclouds"].sum() == 24
    assert _about(s5["losses"][12], 1e6, 1_867e6)
    assert s5["failed"].tolist() == [0] * 7 + [1, 2, 7, 7, 7, 7]
    for t in (8, 9):
        assert s5["price"][t, h100] == s5["floor"][h100] and s5["salvage"][t, h100] > 0
        assert 4_400 <= round(s5["value"][t, h100], -2) <= 4_500
    s = metrics.summary(run_scenario(load_scenario("crypto_winter")))
    assert s["months"] == 60 and s["seed"] == 20251201
    assert round(s["realised_lgd"], 2) == 0.49 and round(s["paper_lgd"], 2) == 0.05


def test_the_tutorials_repo_desk_experiment():
    """docs/tutorial.md, experiment 2: the repo desk on, at the scenario's seed and at seed 5."""
    off, on = _month12(), _month12(repo=True)
    g, units, price, value = on["g"], on["units"], on["price"], on["value"]
    h100, h200, b200 = g["H100"], g["H200"], g["B200"]

    def bought(t, gen):
        return units[t, "purchase", "repo_desk", g[gen]]

    # the floor bid: 43 B200s in month 6, about 8,200 in month 7, and in month 9 about
    # 23,300 H100s, 11,500 H200s and 10,400 B200s; about 57,300 GPUs held, cost about $608M
    assert on["desk"][:6].sum() == 0 and on["desk"][6] == 43 == on["desk_holdings"][6, b200]
    assert bought(6, "B200") == 43 and _about(bought(7, "B200"), 100, 8_200)
    assert _about(bought(9, "H100"), 100, 23_300) and _about(bought(9, "H200"), 100, 11_500)
    assert _about(bought(9, "B200"), 100, 10_400)
    assert _about(on["desk"][9], 100, 57_300) and _about(on["desk_cost"][9], 1e6, 608e6)
    lenders_sold = sum(n for k, n in units.items() if k[1:3] == ("sale", "lender") and k[0] <= 9)
    desk_bought = sum(n for k, n in units.items() if k[1:3] == ("purchase", "repo_desk")
                      and k[0] <= 9)
    assert desk_bought > 0.5 * lenders_sold  # much of what the lenders sell
    # its repo lending: about $7.7M to three lenders in month 12, repaid within the month,
    # against the 2,869 GPUs of the first lots, which are then sold as patient sales
    loans = on["repo_loans"]
    assert {t for t, _i, _a in loans} == {12} and len({i for _t, i, _a in loans}) == 3
    assert _about(sum(a for _t, _i, a in loans), 1e5, 7.7e6)
    assert on["desk_lent"].max() == 0 and on["forced"].sum() == 0
    assert sum(n for k, n in units.items() if k[:3] == (12, "sale", "lender")) == 2_869
    # the overhang: peak about 53,100 in months 9 to 11, about 50,200 at month 12
    inv = on["inventory"]
    assert inv[9] == inv[10] == inv[11] == inv.max() and _about(inv.max(), 100, 53_100)
    assert _about(inv[12], 100, 50_200)
    # losses about $469M, 56 defaults, recoveries about $1,136M vs $472M, no failure
    assert _about(on["losses"][12], 1e6, 469e6) and on["defaults"] == 56
    assert on["defaulted"] < off["defaulted"]
    assert _about(on["recoveries"][12], 1e6, 1_136e6)
    assert _about(off["recoveries"][12], 1e6, 472e6)
    assert not on["failed"].any()
    # month 12: B200 about $13,700, H200 about $3,900; the H100 on the floor, where the desk
    # sells its 23,260 H100s of month 9 (bought at about $3,550) to the salvage buyer
    assert _about(price[12, b200], 100, 13_700) and _about(price[12, h200], 100, 3_900)
    assert value[12, b200] == off["value"][12, b200]
    assert price[12, h100] == value[12, h100] == on["floor"][h100]
    assert bought(9, "H100") == units[12, "sale", "repo_desk", h100] == 23_260
    assert on["desk_holdings"][9:12, h100].tolist() == [23_260] * 3
    assert on["desk_holdings"][12, h100] == 0
    assert on["salvage"][12, h100] >= 23_260
    paid = on["amount"][9, "purchase", "repo_desk", h100] / bought(9, "H100")
    assert _about(paid, 10, 3_550)
    held = on["desk_holdings"][12]
    assert _about(held.sum(), 1000, 35_000) and held.sum() == held[h200] + held[b200]
    # months 7 to 9: a few hundred H100s sold by borrowers in month 7, then below value
    assert 100 <= on["volume"][7, h100] == _sold(on, 7, "H100", "miner", "neocloud") < 1000
    assert _about(price[7, h100], 100, 6_000) and _about(value[7, h100], 100, 7_100)
    assert on["volume"][8, h100] == 0
    assert _about(price[8, h100], 100, 3_700) and _about(value[8, h100], 100, 6_300)
    assert _about(price[9, h100], 10, 3_550) and _about(value[9, h100], 100, 5_600)
    # think about it: seed 5, two failed lenders instead of seven, the first two in months
    # 7 and 8 either way; losses about $878M instead of about $1,867M
    s5, s5_on = _month12(seed="5"), _month12(seed="5", repo=True)
    assert s5_on["failed"][12] == 2 and s5["failed"][12] == 7
    assert s5_on["failed"][:9].tolist() == s5["failed"][:9].tolist() == [0] * 7 + [1, 2]
    assert _about(s5_on["losses"][12], 1e6, 878e6)


def test_the_tutorials_buyer_experiment_and_try_next():
    """docs/tutorial.md, experiment 3 (buyer capacity x0.5, x1, x3) and "Try next"."""
    off = _month12()
    thin, thick = _month12(buyer_capacity=0.5), _month12(buyer_capacity=3.0)
    g, floor = off["g"], off["floor"]
    h100, b200 = g["H100"], g["B200"]
    # the same 58 borrowers default, all before the first forced sale in month 12
    for run in (thin, off, thick):
        assert run["defaults"] == 58 and run["defaulted"] == off["defaulted"]
        assert run["last_default"] == 9 and run["first_forced"] == 12
        assert not run["failed"].any()
        # the H100 at $2,200, its value, in every row
        assert run["price"][12, h100] == run["value"][12, h100] == floor[h100] == 2_200
    assert _about(thin["losses"][12], 1e6, 1_196e6) and _about(thick["losses"][12], 1e6, 908e6)
    assert round(thin["losses"][12] / off["losses"][12] - 1, 2) == 0.05
    assert round(1 - thick["losses"][12] / off["losses"][12], 1) == 0.2
    # two lenders deleveraging from month 12 with half the buyers, none otherwise
    assert thin["deleveraging"].tolist() == [0] * 12 + [2]
    assert not off["deleveraging"].any() and not thick["deleveraging"].any()
    # the B200 at month 12: its floor with x0.5, $7,768 with x1 and x3, value $17,878; for
    # the B200 tripling the buyers changes nothing of its price path
    assert thin["price"][12, b200] == floor[b200] == 2_800
    assert round(off["price"][12, b200]) == round(thick["price"][12, b200]) == 7_768
    for run in (thin, off, thick):
        assert round(run["value"][12, b200]) == 17_878
    assert thick["forced_by_gen"][12, b200] == thick["volume"][12, b200] > 0
    assert np.array_equal(thick["price"][:, b200], off["price"][:, b200])
    assert _about(thick["capacity"][12], 1000, 224_000)
    # x3, months 10 and 11: the H100 on the floor below its value; 8,400 H100s salvaged in 11
    assert (thick["price"][10:12, h100] == floor[h100]).all()
    assert _about(thick["value"][10, h100], 100, 2_700)
    assert _about(thick["value"][11, h100], 100, 2_600)
    assert _about(thick["salvage"][11, h100], 100, 8_400)
    # try next: LTV 0.60
    low = _month12(ltv=0.6)
    assert low["miners"].sum() == 27 and low["neoclouds"].sum() == 6
    assert _about(low["losses"][12], 1e6, 478e6) and not low["failed"].any()
    # no search friction for hyperscalers and tier-2 clouds (the command line of the text)
    cfg = load_scenario("crypto_winter", ["buyers.types.hyperscaler.close_days=0",
                                          "buyers.types.tier2.close_days=0"], months=12)
    fast = metrics.summary(run_scenario(cfg))
    assert fast["defaults"] == 45 and fast["lender_failures"] == 0
    assert _about(fast["credit_losses"], 1e6, 344e6)
    assert off["losses"][12] - fast["credit_losses"] > 2 * (off["losses"][12]
                                                            - thick["losses"][12])
    # rent deflation 0.6: values reach the floor, the older generations first; 17 defaults
    steep = _month12(rent_deflation=0.6)
    at_floor = {name: np.flatnonzero(steep["value"][:, i] == floor[i]).min(initial=99)
                for name, i in g.items()}
    assert at_floor == {"A100": 0, "H100": 3, "H200": 6, "B200": 10, "Rubin": 99}
    assert steep["defaults"] == 17
    # ... because the GPUs are worth less at month 0 and the loans start smaller
    newer = [g["H100"], g["H200"], g["B200"]]
    assert (steep["value"][0, newer] < off["value"][0, newer]).all()
    debt0 = [app.AppModel("crypto_winter", rent_deflation=d).loans.principal.sum()
             for d in (0.6, None)]
    assert debt0[0] < debt0[1]


# --------------------------------------------------------------------------- the page
def test_page_renders_controls_and_panels(page):
    buttons = [b.children[0] for b in page.find(v.Btn).widgets]
    assert {"Reset", "Play", "Step"} <= set(buttons)
    labels = {w.label for w in page.find(v.Slider).widgets}
    # every slider shows its value in its label, without touching it
    assert labels == {"Loan-to-value at origination: 0.75", "Rent deflation (a year): 30%",
                      f"Extra BTC crash in month {app.BTC_SHOCK_MONTH}: 0%",
                      "Buyer capacity (x scenario): 1.0",
                      "Correlation shift: +0.00"}
    assert _control(page, v.Select, "Scenario").items == app.model_params()[
        "scenario_name"]["values"]
    _control(page, v.Checkbox, "Repo desk on")
    imgs = _images(page)
    assert len(imgs) == len(app.PANEL_NAMES) == 6
    assert all(b.startswith(b"\xff\xd8") for b in imgs)  # JPEG
    assert _month(page) == 0
    assert "Month 0 is the starting point" in _html(page, "liqsim-story")


def test_no_mesa_chrome(page):
    """No SolaraViz page tabs, thread or interval controls, or 'Time: 12.0'."""
    texts = " ".join(str(getattr(w, "label", "")) + str(getattr(w, "children", ""))
                     for w in page.find(ipywidgets.Widget).widgets)
    for noise in ("Use Threads", "Render Interval", "Play Interval", "Time:", "PAGE 0",
                  "Information"):
        assert noise not in texts


def test_step_advances_the_model_and_redraws(page):
    before = _images(page)
    _click(page, "Step")
    _click(page, "Step")
    assert _month(page) == 2
    after = _images(page)
    assert sum(a != b for a, b in zip(before, after, strict=True)) >= 3


def test_a_control_restarts_the_run_with_its_value(page):
    _click(page, "Step")
    assert _month(page) == 1
    _control(page, v.Checkbox, "Repo desk on").v_model = True
    assert _month(page) == 0 and "repo desk on" in _text(page)
    _control(page, v.Slider, "Loan-to-value at origination").v_model = 0.5
    assert "LTV at origination 0.50" in _text(page) and "repo desk on" in _text(page)
    assert _control(page, v.Slider, "Loan-to-value").label == \
        "Loan-to-value at origination: 0.50"
    _click(page, "Step")
    _click(page, "Reset")
    assert _month(page) == 0 and "LTV at origination 0.50" in _text(page)


def test_switching_scenario_resets_every_control(page):
    _control(page, v.Checkbox, "Repo desk on").v_model = True
    _control(page, v.Slider, "Loan-to-value at origination").v_model = 0.5
    _control(page, v.Slider, "Buyer capacity").v_model = 3.0
    _control(page, v.Select, "Scenario").v_model = "asic_2022"
    asic = load_scenario("asic_2022")
    text = _text(page)
    assert "asic_2022" in text and "repo desk off" in text
    assert f"LTV at origination {asic.borrowers.miner.ltv:.2f}" in text
    assert _control(page, v.Checkbox, "Repo desk on").v_model is False
    assert _control(page, v.Slider, "Loan-to-value").v_model == asic.borrowers.miner.ltv
    assert _control(page, v.Slider, "Buyer capacity").v_model == 1.0
    assert _control(page, v.Slider, "Rent deflation").label == \
        f"Rent deflation (a year): {asic.environment.rent_deflation:.0%}"
    assert _control(page, v.TextField, "Seed").v_model == str(asic.seed)
    assert "2022 crypto-miner episode" in " ".join(
        str(w.children) for w in page.find(v.Html).widgets)  # the scenario's description


def test_a_slider_snapping_the_scenarios_value_changes_nothing(page):
    """The browser snaps asic_2022's rent deflation 0.2857 to the slider's 0.05 grid (0.30)
    and reports it; that is not the user's change and must not alter the scenario."""
    _control(page, v.Select, "Scenario").v_model = "asic_2022"
    slider = _control(page, v.Slider, "Rent deflation")
    assert slider.v_model == 0.2857
    slider.v_model = 0.30  # what the browser sends back
    assert "rent deflation 29%/yr" in _text(page)
    assert _control(page, v.Slider, "Rent deflation").label == "Rent deflation (a year): 29%"
    _control(page, v.Slider, "Rent deflation").v_model = 0.35  # a real change
    assert "rent deflation 35%/yr" in _text(page)


def test_step_costs_under_0_2_s_of_cpu(page):
    """A Step (model month + the page's update, all six panels redrawn) in Solara's test
    renderer: the server's share of what a student waits for."""
    import time

    _click(page, "Step")  # the first full draws happen at month 0 and the first months
    costs = []
    for _ in range(10):
        t0 = time.process_time()
        _click(page, "Step")
        costs.append(time.process_time() - t0)
    assert _month(page) == 11
    assert float(np.median(costs)) < 0.2, costs


def test_two_sessions_do_not_share_a_model():
    _b1, one = solara.render(_InLayout(), handle_error=False)
    _b2, two = solara.render(_InLayout(), handle_error=False)
    _click(one, "Step")
    assert _month(one) == 1
    assert _month(two) == 0


def test_month_story_in_plain_words():
    """crypto_winter at seed 5, month 9: defaults, margin calls, fire sales below value and
    five lender failures, each told from the month's events."""
    m = app.AppModel(scenario_name="crypto_winter", seed="5")
    assert app.month_story(m)[0].startswith("Month 0 is the starting point")
    for _ in range(9):
        m.step()
    story = " ".join(app.month_story(m, 9))
    ev = [e for e in m.events if e[0] == 9]
    calls = sum(e[1] == "margin_call" for e in ev)
    assert f"{calls} borrowers got a **margin call**" in story
    h100 = m.env.names.index("H100")
    sold = sum(e[5] for e in ev if e[1] == "sale" and e[2] == "lender" and e[4] == h100)
    p, val = m.rec["price"][9, h100], m.rec["fundamental"][9, h100]
    assert sold > 0 and p < val
    assert f"Lenders **sold {sold:,} repossessed H100** at ${p:,.0f} each, {1 - p / val:.0%} " \
           f"below its value in best use" in story
    failed = [m.lender_agents[e[3]].name for e in ev if e[1] == "lender_failure"]
    assert failed and f"**{len(failed)} lenders failed** ({', '.join(failed)})" in story
    quiet = app.AppModel(scenario_name="baseline")
    quiet.step()
    assert any("margin call" in x or "quiet month" in x for x in app.month_story(quiet, 1))


def test_panels_by_blitting_show_what_a_full_draw_shows():
    """Every month of a run, each panel's lines and legend after an update equal those a
    fresh draw_* call gives (only the axes' headroom may differ)."""
    from sim.app_panels import DPI, PANELS, STATIC_LEGENDS, make_panels
    from sim.plots import new_figure

    m = app.AppModel(scenario_name="crypto_winter")
    panels = make_panels()
    full = dict.fromkeys(panels, 0)
    for t in range(25):
        if t:
            m.step()
        for name, p in panels.items():
            p.image(m, t)
            _draw, _update, w, h, margins = PANELS[name]
            fig = new_figure(w, h, dpi=DPI, layout=None)
            fig.subplots_adjust(**margins)
            ref = fig.add_subplot()
            p.draw(ref, m, t)
            for a, b in zip(p.ax.lines, ref.lines, strict=True):
                np.testing.assert_array_equal(a.get_xdata(), b.get_xdata())
                np.testing.assert_array_equal(a.get_ydata(), b.get_ydata())
            if name != "network":
                # the app's legends are static (the month's numbers are beside the panel)
                assert [x.get_text() for x in p.ax.get_legend().get_texts()] == \
                    STATIC_LEGENDS[p.draw](m), (name, t)
                lo, hi = p.ax.get_ylim()
                for line in p.ax.lines:  # every point inside the (grown) limits
                    y = np.asarray(line.get_ydata(), float)
                    assert (y[np.isfinite(y)] >= lo).all() and (y[np.isfinite(y)] <= hi).all()
            else:
                coll = {c.get_gid(): c for c in p.ax.collections}
                for c in ref.collections:
                    if c.get_gid() in ("lender", "miner", "neocloud", "buyer"):
                        np.testing.assert_array_equal(coll[c.get_gid()].get_facecolors(),
                                                      c.get_facecolors())
                        np.testing.assert_allclose(coll[c.get_gid()].get_sizes(),
                                                   c.get_sizes())
                    if c.get_gid() in ("loans", "loans_defaulted"):
                        assert len(coll[c.get_gid()].get_segments()) == len(c.get_segments())
            full[name] = p.full_draws
    # only month 0 and the launch of Rubin (month 10, a new line in the price panel) need
    # a full draw; all other months are blitted
    assert full == {"network": 1, "prices": 2, "defaults": 1, "losses": 1, "inventory": 1,
                    "capacity": 1}


def test_panel_values_beside_the_static_legends():
    from sim.app_panels import panel_values

    m = app.AppModel(scenario_name="crypto_winter")
    for _ in range(12):
        m.step()
    r = m.rec
    miners, neo = int(r["defaults_miner"][:13].sum()), int(r["defaults_neocloud"][:13].sum())
    assert panel_values("defaults", m, 12) == (f"miners {miners:,} · neo-clouds {neo:,} · "
                                               f"lenders failed {int(r['lender_failures'][12])}")
    assert panel_values("losses", m, 12).endswith(
        f"credit losses ${r['credit_losses'][12] / 1e6:,.0f}M")
    assert panel_values("capacity", app.AppModel(scenario_name="asic_2022"), 0).startswith(
        "S19 units buyers can still take: ")


def test_capacity_panel_names_the_scenarios_generation():
    from matplotlib.figure import Figure

    from sim.animate import draw_capacity

    for scenario, gen in (("asic_2022", "S19"), ("crypto_winter", "H100")):
        m = app.AppModel(scenario_name=scenario)
        ax = Figure().add_subplot()
        draw_capacity(ax, m, 0)
        assert ax.get_legend().get_texts()[0].get_text().startswith(
            f"{gen} units buyers can still take")


# --------------------------------------------------------------------------- the GIF
def test_animate_writes_one_frame_per_month(tmp_path, capsys):
    out = tmp_path / "cascade.gif"
    assert main(["animate", "crypto_winter", "--months", "4", "--seed", "3",
                 "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == 4
        assert im.size[0] > 400
    assert "4 frames" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["cascade.gif"]  # no temporary left


@pytest.mark.parametrize("argv, message", [
    (["animate", "nope"], "scenario 'nope' not found"),
    (["animate", "--months", "0"], "months = 0"),
    (["animate", "--set", "lenders.count=x"], "lenders.count"),
    (["animate", "--out", "cascade.png"], "--out cascade.png: must end in .gif"),
    (["animate", "--out", "."], "--out .: must end in .gif"),
    (["animate", "--fps", "0"], "0 is not in the range 1..30"),
    (["app", "--port", "70000"], "70000 is not in the range 1..65535"),
    (["app", "nope"], "scenario 'nope' not found"),
    (["app", "--scenario-dir", "nope"], "--scenario-dir nope: not found"),
    (["app", "--scenario-dir", "/etc/hostname"], "--scenario-dir /etc/hostname: not a directory"),
])
def test_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("liqsim: error:") and message in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_wait_until_up_names_a_server_that_exits_or_never_answers(tmp_path):
    """The helper the browser test and experiments/app_screenshots.py start the app with."""
    import subprocess
    import sys

    from sim.app import free_port, wait_until_up

    url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    with (tmp_path / "log").open("w+") as log:
        proc = subprocess.Popen([sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
                                stdout=log, stderr=subprocess.STDOUT)
        proc.wait()
        with pytest.raises(RuntimeError, match=r"^app server exited with 3: boom"):
            wait_until_up(proc, url, timeout=5, log=log)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(RuntimeError, match=r"did not answer .* within 1 s$"):
            wait_until_up(proc, url, timeout=1)
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- hostile values
# The browser can send any JSON value for any control, not only what the page lists (issue 20;
# tests/test_browser.py sends them from a real page); these call the server side directly.
@pytest.fixture
def scenario_dir(tmp_path, monkeypatch):
    """A --scenario-dir holding one usable scenario and several that must not be offered."""
    d = tmp_path / "scenarios"
    d.mkdir()
    (d / "mine.toml").write_text('name = "mine"\nmonths = 6\n', encoding="utf-8")
    (d / "huge.toml").write_text("[borrowers.miner]\ncount = 20000\n", encoding="utf-8")
    (d / "broken.toml").write_text("months = \n", encoding="utf-8")
    (d / "passwd.toml").symlink_to("/etc/passwd")  # a link out of the directory
    (d / "notes.txt").write_text('name = "notes"\n', encoding="utf-8")
    os.mkfifo(d / "fifo.toml")
    (d / "sub").mkdir()
    (d / "sub" / "deep.toml").write_text('name = "deep"\n', encoding="utf-8")
    (tmp_path / "outside.toml").write_text('name = "outside"\n', encoding="utf-8")
    monkeypatch.setenv(app.SCENARIO_DIR_ENV, str(d))
    monkeypatch.setenv(app.SCENARIO_ENV, "crypto_winter")
    return d


def test_the_page_offers_shipped_small_scenarios_the_dirs_files_and_the_start(scenario_dir):
    offered = app.page_scenarios()
    assert offered == [*app.picker_scenarios(), str(scenario_dir / "mine.toml")]
    assert "crypto_winter" in offered and "large" not in offered
    assert app.model_params()["scenario_name"]["values"] == offered


HOSTILE = ["/etc/passwd", "/proc/self/environ", "large", "..", "../scenarios/large",
           "experiments/scenarios/large.toml", "baseline\x00", " baseline", "BASELINE",
           "passwd.toml", "{dir}/passwd.toml", "{dir}/huge.toml", "{dir}/broken.toml",
           "{dir}/fifo.toml", "{dir}/notes.txt", "{dir}/sub/deep.toml", "{dir}/../outside.toml",
           "{dir}/./mine.toml", "{dir}/", {"a": 1}, ["baseline"], None, 5, True,
           "x" * 100_000, "/etc/passwd" + "/" * 100_000]


def _recording_loads(monkeypatch) -> list:
    loaded = []
    real = app.load_scenario
    monkeypatch.setattr(app, "load_scenario", lambda s, *a, **k: loaded.append(s) or real(
        s, *a, **k))
    return loaded


def _only_offered_read(loaded, scenario_dir) -> bool:
    """Read: shipped scenarios and the directory's own regular TOML files (to list them)."""
    mine = {str(scenario_dir / n) for n in ("mine.toml", "huge.toml", "broken.toml")}
    return set(loaded) <= set(list_scenarios()) | mine


@pytest.mark.parametrize("value", HOSTILE, ids=[f"v{i}" for i in range(len(HOSTILE))])
def test_a_scenario_the_page_does_not_offer_is_never_loaded(value, scenario_dir, monkeypatch):
    if isinstance(value, str):
        value = value.replace("{dir}", str(scenario_dir))
    loaded = _recording_loads(monkeypatch)
    start = time.perf_counter()
    m = app.AppModel(scenario_name=value)
    assert time.perf_counter() - start < 5.0
    assert m.cfg.name == "crypto_winter"  # the scenario the app started on
    assert _only_offered_read(loaded, scenario_dir), loaded
    assert "is not one this app offers; showing 'crypto_winter'" in m.notice
    assert "\n" not in m.notice and len(m.notice) < 200
    assert app.allowed_scenario(value) is None


@pytest.mark.parametrize("value", ["/etc/passwd", "/proc/self/environ", "large", "..",
                                   {"a": 1}, "x" * 100_000])
def test_the_pages_picker_refuses_a_crafted_value_with_one_line(value, scenario_dir,
                                                                monkeypatch):
    """Through the page (Solara's test renderer), as the browser would send it: nothing is
    read, the starting scenario is shown with every control reset, and one line says why."""
    _b, page = solara.render(_InLayout(), handle_error=False)
    _control(page, v.Slider, "Loan-to-value at origination").v_model = 0.5
    loaded = _recording_loads(monkeypatch)
    _control(page, v.Select, "Scenario").v_model = value
    assert _only_offered_read(loaded, scenario_dir), loaded
    text = _text(page)
    assert "crypto_winter" in text and _month(page) == 0
    assert "LTV at origination 0.75" in text  # the controls are the start scenario's again
    notices = [w.children[0] for w in page.find(v.Alert).widgets]
    assert len(notices) == 1 and "is not one this app offers" in notices[0]
    assert "\n" not in notices[0] and len(notices[0]) < 200
    assert "root:" not in text and "PATH=" not in text and "Traceback" not in text
    _click(page, "Step")
    assert _month(page) == 1
    _control(page, v.Select, "Scenario").v_model = str(scenario_dir / "mine.toml")  # offered
    assert "mine" in _text(page) and page.find(v.Alert).widgets == []


def test_an_offered_file_loads_and_a_shipped_name_too(scenario_dir):
    assert app.AppModel(scenario_name=str(scenario_dir / "mine.toml")).cfg.name == "mine"
    m = app.AppModel(scenario_name="baseline")
    assert m.cfg.name == "baseline" and m.notice == ""


def test_without_a_scenario_dir_no_file_is_offered(scenario_dir, monkeypatch):
    monkeypatch.delenv(app.SCENARIO_DIR_ENV)
    m = app.AppModel(scenario_name=str(scenario_dir / "mine.toml"))
    assert m.cfg.name == "crypto_winter" and "is not one this app offers" in m.notice


def test_the_scenario_the_app_started_on_is_offered_whatever_its_size(monkeypatch):
    monkeypatch.setenv(app.SCENARIO_ENV, "large")  # `liqsim app large`: its starter chose it
    assert "large" in app.page_scenarios() and app.allowed_scenario("large") == "large"
    monkeypatch.delenv(app.SCENARIO_ENV)
    assert app.allowed_scenario("large") is None


@pytest.mark.parametrize(("controls", "notice"), [
    ({"ltv": "abc"}, "Loan-to-value 'abc' is not a number; using the scenario's value"),
    ({"ltv": [0.5]}, "Loan-to-value [0.5] is not a number"),
    ({"ltv": float("nan")}, "Loan-to-value nan is not a number"),
    ({"buyer_capacity": float("inf")}, "Buyer capacity inf is not a number"),
    ({"btc_shock": True}, "Extra BTC crash True is not a number"),
    ({"btc_shock": None}, "Extra BTC crash None is not a number"),
    ({"correlation_shift": {"a": 1}}, "Correlation shift {'a': 1} is not a number"),
    ({"ltv": 1.5}, "using the scenario's own values"),
    ({"buyer_capacity": 1e300}, "using the scenario's own values"),
    ({"seed": "\u00b2"}, "seed '\u00b2' is not an integer"),  # isdigit() but not int()
    ({"seed": "1" * 5000}, "is not an integer 0..9223372036854775807; using the scenario's"),
    ({"seed": ["7"]}, "seed ['7'] is not an integer"),
    ({"seed": {"a": "b"}}, "seed {'a': 'b'} is not an integer"),
    ({"repo": "yes"}, "Repo desk 'yes' is not on or off; off"),
])
def test_hostile_control_values_fall_back_with_one_line(controls, notice):
    m = app.AppModel(**controls)
    assert notice in m.notice, m.notice
    assert "\n" not in m.notice and len(m.notice) < 400
    assert m.cfg.name == "baseline"


def test_a_model_error_stops_the_model_with_one_line(monkeypatch, capsys):
    m = app.AppModel()
    m.step()

    def boom(*_args):
        raise ZeroDivisionError("x\ny")

    monkeypatch.setattr(LiquidationModel, "_phase_market", boom)
    m.step()
    assert not m.running
    assert m.notice == "the model stopped in month 2: ZeroDivisionError: x y"
    assert "Traceback" in capsys.readouterr().err  # the server's log has it whole


def test_the_server_gets_only_the_scenario_variables_it_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv(app.SCENARIO_ENV, "large")
    monkeypatch.setenv(app.SCENARIO_DIR_ENV, "/")
    _argv, env = app.server_command()
    assert app.SCENARIO_ENV not in env and app.SCENARIO_DIR_ENV not in env
    _argv, env = app.server_command(scenario="baseline", scenario_dir=tmp_path)
    assert env[app.SCENARIO_ENV] == "baseline"
    assert env[app.SCENARIO_DIR_ENV] == str(tmp_path.resolve())


def test_liqsim_app_passes_its_scenario_dir_to_the_server(monkeypatch, tmp_path):
    served = []
    monkeypatch.setattr(app, "check_port", lambda *_a: None)
    monkeypatch.setattr(app, "serve", lambda *args: served.append(args) or 0)
    assert main(["app", "crypto_winter", "--scenario-dir", str(tmp_path)]) == 0
    assert served == [("127.0.0.1", 8765, "crypto_winter", tmp_path)]


def test_sliders_ignore_values_that_are_not_numbers(page):
    """A crafted page can send a slider 'abc', a list or None: ignored (a string in the
    values broke the label's format and the page became a traceback); a number is clamped to
    the slider's range."""
    for label, value in (("Loan-to-value at origination", "abc"), ("Rent deflation", [1]),
                         ("Buyer capacity (x scenario)", None),
                         ("Correlation shift", float("nan"))):
        _control(page, v.Slider, label).v_model = value
    assert page.find(v.Alert).widgets == []
    _control(page, v.Slider, "Loan-to-value at origination").v_model = 5.0
    assert "LTV at origination 0.95" in _text(page)  # clamped to the slider's maximum
    _control(page, v.Slider, "Buyer capacity").v_model = -1e300
    assert "buyer capacity x0.1" in _text(page)
    assert page.find(v.Alert).widgets == []
    _click(page, "Step")
    assert _month(page) == 1


def test_hostile_seed_and_checkbox_are_one_line_notices(page):
    seed = _control(page, v.TextField, "Seed")
    seed.v_model = ["7"]
    seed.fire_event("focusout", None)  # the seed is sent on blur or Enter
    notices = [w.children[0] for w in page.find(v.Alert).widgets]
    assert len(notices) == 1 and "seed \"['7']\" is not an integer" in notices[0], notices
    seed.v_model = "\u00b2"
    seed.fire_event("focusout", None)
    assert "seed '\u00b2' is not an integer" in page.find(v.Alert).widget.children[0]
    _control(page, v.Checkbox, "Repo desk on").v_model = "yes"
    notices = [w.children[0] for w in page.find(v.Alert).widgets]
    assert "Repo desk 'yes' is not on or off; off" in notices[0] and "\n" not in notices[0]
    assert "repo desk off" in _text(page)


def test_a_notice_is_plain_text_not_html(monkeypatch):
    monkeypatch.setenv(app.SCENARIO_ENV, "baseline")
    _b, page = solara.render(_InLayout(), handle_error=False)
    _control(page, v.Select, "Scenario").v_model = "<img src=x onerror=alert(1)> **b**"
    assert "<img" not in _text(page)
    assert "'<img src=x onerror=alert(1)> **b**'" in page.find(v.Alert).widget.children[0]


def test_an_error_on_the_page_is_one_line_with_a_dismiss_button(monkeypatch, capsys):
    """The error boundary (app.Layout): a failing part is replaced by one line, no trace."""
    calls = []

    def Broken(model, t):
        calls.append(t)
        raise RuntimeError("first line\nsecond line " + "x" * 500)

    monkeypatch.setattr(app, "StoryPanel", Broken)
    _box, rc = solara.render(_InLayout(), handle_error=False)
    alert = rc.find(v.Alert).widget
    text = alert.children[0]
    assert text.startswith("error: RuntimeError: first line second line xxx") and "\n" not in text
    assert len(text) <= 240
    n = len(calls)
    rc.find(v.Btn, children=["Dismiss"]).widget.click()  # drawn again: fails again, once
    assert len(calls) == n + 1 and rc.find(v.Alert).widget.children[0] == text
    assert "Traceback" in capsys.readouterr().err  # the server's log has it whole
