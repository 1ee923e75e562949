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


def _text(rc) -> str:
    """The month counter's markdown (rendered to a Vuetify template)."""
    return rc.find(v.VuetifyTemplate, template=_Contains("Month ")).widget.template


def _month(rc) -> int:
    return int(re.search(r"Month (\d+) of", _text(rc)).group(1))


def _images(rc) -> list[bytes]:
    return [bytes(w.value) for w in rc.find(ipywidgets.Image).widgets]


def _click(rc, label: str) -> None:
    rc.find(v.Btn, children=[label]).widget.click()


def _control(rc, cls, label: str):
    return rc.find(cls, label=label).widget


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
    """Every control maps to an AppModel keyword (SolaraViz re-creates the model with them)."""
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
    assert {"Reset", "Step"} <= set(buttons)
    labels = {w.label for w in page.find(v.Slider).widgets}
    assert {"Loan-to-value at origination", "Rent deflation (a year)",
            f"Extra BTC crash in month {app.BTC_SHOCK_MONTH}", "Buyer capacity (x scenario)",
            "Crypto-rent correlation (+/- scenario)"} <= labels
    assert _control(page, v.Select, "Scenario").items == app.model_params()[
        "scenario_name"]["values"]
    _control(page, v.Checkbox, "Repo desk on")
    imgs = _images(page)
    assert len(imgs) == len(app.COMPONENTS) - 1  # every panel but the counter is a figure
    assert all(b.startswith(b"\x89PNG") for b in imgs)
    assert _month(page) == 0


def test_step_advances_the_model_and_redraws(page):
    before = _images(page)
    _click(page, "Step")
    _click(page, "Step")
    assert _month(page) == 2
    after = _images(page)
    assert sum(a != b for a, b in zip(before, after, strict=True)) >= 3


def test_controls_change_the_model_on_reset(page):
    _click(page, "Step")
    _control(page, v.Checkbox, "Repo desk on").v_model = True
    _control(page, v.Slider, "Loan-to-value at origination").v_model = 0.5
    _control(page, v.Select, "Scenario").v_model = "crypto_winter"
    assert "repo desk off" in _text(page)  # nothing changes until Reset
    _click(page, "Reset")
    text = _text(page)
    assert _month(page) == 0
    assert "crypto_winter" in text and "repo desk on" in text
    assert "LTV at origination 0.50" in text
    assert "-60% in month 3" in text  # crypto_winter's own BTC shock


def test_two_sessions_do_not_share_a_model():
    _b1, one = solara.render(_InLayout(), handle_error=False)
    _b2, two = solara.render(_InLayout(), handle_error=False)
    _click(one, "Step")
    assert _month(one) == 1
    assert _month(two) == 0


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
