"""The browser app without a browser (Solara's test renderer) and ``liqsim animate``."""

from __future__ import annotations

import inspect
import re

import ipyvuetify as v
import ipywidgets
import numpy as np
import pytest
import solara
from PIL import Image

from sim import app
from sim.animate import month_label
from sim.cli import main
from sim.config import ConfigError, load_scenario
from sim.model import LiquidationModel


@solara.component
def _InLayout():
    """The page inside Solara's AppLayout, as the server shows it (the sidebar needs it)."""
    with solara.AppLayout():
        app.Page()


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


def _month12(**controls) -> dict:
    """What the app shows at month 12 of crypto_winter (the tutorial's runs)."""
    m = app.AppModel(scenario_name="crypto_winter", **controls)
    for _ in range(12):
        m.step()
    r, h100 = m.rec, m.env.names.index("H100")
    new_defaults = r["defaults_miner"][:13] + r["defaults_neocloud"][:13]
    forced = r["forced_volume"][:13].sum(axis=1)
    return {"losses": r["credit_losses"][12], "inventory": r["inventory_units"][12],
            "peak_inventory": r["inventory_units"][:13].max(),
            "failed": r["lender_failures"][12], "desk": r["repo_units"][12],
            "defaults": new_defaults.sum(),
            "last_default": np.flatnonzero(new_defaults).max(initial=-1),
            "forced": forced.sum(), "first_forced": np.flatnonzero(forced).min(initial=99),
            "h100": r["price"][12, h100], "h100_value": r["fundamental"][12, h100],
            "h100_floor": m.cfg.buyers.salvage_floor * m.cfg.environment.generations[
                h100].list_price,
            "capacity": r["buyer_capacity_h100"][12]}


def test_the_tutorials_experiments_show_what_it_says():
    """docs/tutorial.md, month 12 of crypto_winter: the directions it describes hold."""
    off, on = _month12(), _month12(repo=True)
    # experiment 1: every default comes before the first forced sale; the H100 then sells at
    # the salvage floor, below its value, while buyers still have capacity; lenders fail
    assert off["last_default"] < off["first_forced"] <= 12
    assert off["h100"] == pytest.approx(off["h100_floor"]) and off["h100"] < off["h100_value"]
    assert off["capacity"] > 0 and off["failed"] > 0
    # experiment 2: the desk buys and holds GPUs, no forced sale, lower overhang and losses,
    # no failed lender, H100 above the floor, about as many defaults
    assert on["desk"] > 0 == off["desk"] and on["forced"] == 0 < off["forced"]
    assert on["peak_inventory"] < off["peak_inventory"] and on["inventory"] < off["inventory"]
    assert on["losses"] < off["losses"] and on["failed"] == 0
    assert on["h100"] > off["h100"]
    assert 0.9 * off["defaults"] <= on["defaults"] <= off["defaults"]
    # experiment 3: buyers change losses and failures, not defaults; x3 keeps the discount
    thin, thick = _month12(buyer_capacity=0.5), _month12(buyer_capacity=3.0)
    assert thin["defaults"] == off["defaults"] == thick["defaults"]
    assert thin["losses"] > off["losses"] > thick["losses"]
    assert thin["failed"] > off["failed"] > thick["failed"]
    assert thick["h100"] == pytest.approx(thick["h100_floor"])
    assert thick["h100"] < thick["h100_value"] and thick["capacity"] > 0
    # try next: a lower loan-to-value means fewer defaults, lower losses, no failed lender
    low = _month12(ltv=0.6)
    assert low["defaults"] < off["defaults"] and low["losses"] < off["losses"]
    assert low["failed"] == 0


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
    m = app.AppModel(scenario_name="crypto_winter")
    assert app.month_story(m)[0].startswith("Month 0 is the starting point")
    for _ in range(12):
        m.step()
    story = " ".join(app.month_story(m, 12))
    ev = [e for e in m.events if e[0] == 12]
    calls = sum(e[1] == "margin_call" for e in ev)
    assert f"{calls} borrowers got a **margin call**" in story
    h100 = m.env.names.index("H100")
    sold = sum(e[5] for e in ev if e[1] == "sale" and e[2] == "lender" and e[4] == h100)
    p, val = m.rec["price"][12, h100], m.rec["fundamental"][12, h100]
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
