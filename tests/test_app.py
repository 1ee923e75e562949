"""The browser app without a browser (Solara's test renderer) and ``liqsim animate``."""

from __future__ import annotations

import inspect
import os
import re
import time

import ipyvuetify as v
import ipywidgets
import numpy as np
import pytest
import solara
from PIL import Image

from sim import app
from sim.animate import month_label
from sim.cli import main
from sim.config import ConfigError, list_scenarios, load_scenario
from sim.model import LiquidationModel


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
# The browser can send any JSON value for any control (tests/test_browser.py sends them from
# a real page); these call the server side directly.
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
    names = app.model_params()["scenario_name"]["values"]
    assert names == offered


HOSTILE = ["/etc/passwd", "/proc/self/environ", "large", "../scenarios/large",
           "experiments/scenarios/large.toml", "baseline\x00", " baseline", "BASELINE",
           "passwd.toml", "{dir}/passwd.toml", "{dir}/huge.toml", "{dir}/broken.toml",
           "{dir}/fifo.toml", "{dir}/notes.txt", "{dir}/sub/deep.toml", "{dir}/../outside.toml",
           "{dir}/./mine.toml", {"a": 1}, ["baseline"], None, 5, True, "x" * 100_000]


@pytest.mark.parametrize("value", HOSTILE, ids=[f"v{i}" for i in range(len(HOSTILE))])
def test_a_scenario_the_page_does_not_offer_is_never_loaded(value, scenario_dir, monkeypatch):
    if isinstance(value, str):
        value = value.replace("{dir}", str(scenario_dir))
    loaded = []
    real = app.load_scenario
    monkeypatch.setattr(app, "load_scenario", lambda s, *a, **k: loaded.append(s) or real(
        s, *a, **k))
    start = time.perf_counter()
    m = app.AppModel(scenario_name=value)
    assert time.perf_counter() - start < 5.0
    assert m.cfg.name == "crypto_winter"  # the scenario the app started on
    # read: shipped scenarios and the directory's own regular TOML files (to list them), no more
    mine = {str(scenario_dir / n) for n in ("mine.toml", "huge.toml", "broken.toml")}
    assert set(loaded) <= set(list_scenarios()) | mine, loaded
    assert "is not one this app offers; showing 'crypto_winter'" in m.notice
    assert "\n" not in m.notice and len(m.notice) < 200


def test_an_offered_file_loads_and_a_shipped_name_too(scenario_dir):
    assert app.AppModel(scenario_name=str(scenario_dir / "mine.toml")).cfg.name == "mine"
    m = app.AppModel(scenario_name="baseline")
    assert m.cfg.name == "baseline" and m.notice == ""


def test_without_a_scenario_dir_no_file_is_offered(scenario_dir, monkeypatch):
    monkeypatch.delenv(app.SCENARIO_DIR_ENV)
    m = app.AppModel(scenario_name=str(scenario_dir / "mine.toml"))
    assert m.cfg.name == "crypto_winter" and "is not one this app offers" in m.notice


@pytest.mark.parametrize(("controls", "notice"), [
    ({"ltv": "abc"}, "Loan-to-value 'abc' is not a number; using the scenario's value"),
    ({"ltv": [0.5]}, "Loan-to-value [0.5] is not a number"),
    ({"ltv": float("nan")}, "Loan-to-value nan is not a number"),
    ({"buyer_capacity": float("inf")}, "Buyer capacity inf is not a number"),
    ({"btc_shock": True}, "Extra BTC crash True is not a number"),
    ({"correlation_shift": {"a": 1}}, "Crypto-rent correlation {'a': 1} is not a number"),
    ({"ltv": 1.5}, "borrowers.miner.ltv = 1.5: Input should be less than or equal to 1; "
                   "using the scenario's own values"),
    ({"buyer_capacity": 1e300}, "buyers.capacity_scale = 1e+300"),
    ({"seed": "\u00b2"}, "seed '\u00b2' is not an integer"),  # isdigit() but not int()
    ({"seed": "1" * 5000}, "is not an integer 0..9223372036854775807; using the scenario's"),
    ({"seed": ["7"]}, "seed ['7'] is not an integer"),
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


def test_sliders_ignore_values_that_are_not_numbers(page):
    """Solara's own sliders raise on 'abc' (int('abc')), and reacton then replaced the page
    with a traceback; these ignore it, and clamp a number to the slider's range."""
    for label, value in (("Loan-to-value at origination", "abc"), ("Play Interval (ms)", "abc"),
                         ("Render Interval (steps)", [1]), ("Buyer capacity (x scenario)",
                                                            None)):
        _control(page, v.Slider, label).v_model = value
    _control(page, v.Slider, "Loan-to-value at origination").v_model = 5.0
    _click(page, "Reset")
    assert "LTV at origination 0.95" in _text(page)  # clamped to the slider's maximum
    assert page.find(v.Alert).widgets == []
    _click(page, "Step")
    assert _month(page) == 1


def test_an_error_on_the_page_is_one_line_with_a_dismiss_button(monkeypatch):
    """The error boundary (app.Layout): a failing part is replaced by one line, no trace."""
    calls = []

    def Broken(model):
        calls.append(model.month)
        raise RuntimeError("first line\nsecond line " + "x" * 500)

    monkeypatch.setattr(app, "COMPONENTS", [app.MonthCounter, Broken])
    _box, rc = solara.render(_InLayout(), handle_error=False)
    alert = rc.find(v.Alert).widget
    text = alert.children[0]
    assert text.startswith("error: RuntimeError: first line second line xxx") and "\n" not in text
    assert len(text) <= 240
    n = len(calls)
    rc.find(v.Btn, children=["Dismiss"]).widget.click()  # drawn again: fails again, once
    assert len(calls) == n + 1 and rc.find(v.Alert).widget.children[0] == text
