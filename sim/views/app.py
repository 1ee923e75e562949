"""The students' browser app: a Solara page on which a GPU fire sale unfolds month by month.

Four parts, kept apart:

* **the model** -- :class:`AppModel`, a :class:`sim.world.model.LiquidationModel` built from the
  page's controls (keyword arguments), which :func:`app_scenario` turns into a validated
  :class:`sim.core.config.Scenario`;
* **the story** -- :func:`month_story`, what happened this month in plain words, and
  :data:`PANEL_CAPTIONS`, what each panel shows;
* **the components** -- :func:`MonthCounter`, :func:`StoryPanel`, :func:`PanelImage` (one
  per panel of :mod:`sim.views.app_panels`, drawn with the ``draw_*`` functions of
  :mod:`sim.views.animate` and :func:`sim.views.plots.draw_network`, the same drawings as the
  GIF, and redrawn by blitting so that a Step takes milliseconds) and :func:`Controls`;
* **the page** -- :func:`Page`: one model per browser session (two tabs never share one),
  Reset / Play / Step, controls whose values are always shown; any change restarts the run at
  month 0, and choosing a scenario first sets every control to that scenario's values. It is
  a plain Solara page built on the Mesa model (not Mesa's SolaraViz, whose page tabs, thread
  and render-interval controls and "Time: 12.0" read as noise to students).

``liqsim app`` serves this module with Solara's own server (:func:`serve`), offline: the
front-end comes from the ``solara-assets`` package through Solara's local asset proxy and
telemetry is switched off.
"""

from __future__ import annotations

import functools
import html
import math
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

import solara
import solara.lab
from solara.alias import rv

from sim.core.config import (
    ConfigError,
    Scenario,
    build,
    list_scenarios,
    load_scenario,
    one_line,
    short_repr,
)
from sim.core.environment import month_label
from sim.views.app_panels import make_panels, panel_values
from sim.world.model import LiquidationModel

# Set by `liqsim app` for its server only (server_command drops inherited values): the scenario
# the picker starts on, and the directory whose TOML files the page may also load
SCENARIO_ENV = "LIQSIM_APP_SCENARIO"
SCENARIO_DIR_ENV = "LIQSIM_APP_SCENARIO_DIR"
BTC_SHOCK_MONTH = 3  # the month of crypto_winter's shocks, so the two can be compared
SEED_MAX = 2**63 - 1
PICKER_MAX_BORROWERS = 5_000  # drawing every node each month stays well under a second
MAX_DIR_SCENARIOS = 200  # TOML files offered from --scenario-dir (sorted by name)


# =========================================================================== the model
def app_scenario(scenario_name: str = "baseline", seed: int | None = None,
                 ltv: float | None = None, rent_deflation: float | None = None,
                 btc_shock: float = 0.0,
                 buyer_capacity: float = 1.0, correlation_shift: float = 0.0,
                 repo: bool = False) -> Scenario:
    """The scenario the page's controls describe, validated like a TOML file.

    * ``ltv``: loan-to-cost at origination of miners and neo-clouds (``borrowers.*.ltv``);
    * ``rent_deflation``: ``environment.rent_deflation``, the yearly fall of GPU rents;
      (``None``, the default of both, keeps the scenario's own values);
    * ``btc_shock``: an extra one-off BTC fall in month 3, on top of the scenario's shocks;
    * ``buyer_capacity``: multiplies ``buyers.capacity_scale`` (capital and spare MW);
    * ``correlation_shift``: added to the BTC-rent correlation in calm and stress months
      (``environment.rho_calm``, ``rho_stress``), clipped to [-1, 1];
    * ``repo``: switches the repo desk on (``policy.repo.enabled``); off keeps the scenario's
      own setting (on in ``repo_backstop``).
    """
    data = load_scenario(scenario_name, seed=seed).model_dump()
    if ltv is not None:
        for kind in ("miner", "neocloud"):
            data["borrowers"][kind]["ltv"] = float(ltv)
    env = data["environment"]
    if rent_deflation is not None:
        env["rent_deflation"] = float(rent_deflation)
    for key in ("rho_calm", "rho_stress"):
        env[key] = min(1.0, max(-1.0, env[key] + float(correlation_shift)))
    data["buyers"]["capacity_scale"] *= float(buyer_capacity)
    if btc_shock > 0:
        data["shocks"].append({"month": BTC_SHOCK_MONTH, "kind": "btc",
                               "size": float(btc_shock)})
    data["policy"]["repo"]["enabled"] = bool(repo) or data["policy"]["repo"]["enabled"]
    return build(data)


def parse_seed(text) -> int | None:
    """The seed typed in the page: an integer 0..2^63-1, or None (blank: the scenario's seed).

    Raises :class:`ConfigError` for anything else (digits only, ASCII: ``int`` refuses some
    Unicode digits such as '²' that ``isdigit`` accepts; a value that is not a string, as only
    a crafted page sends, too).
    """
    if not isinstance(text, str | int) or isinstance(text, bool):
        raise ConfigError(f"seed {short_repr(text, 40)} is not an integer 0..{SEED_MAX}")
    s = str(text).strip().replace("_", "") if isinstance(text, str) else str(text)
    if not s:
        return None
    if len(s) > 19 or not (s.isascii() and s.isdigit()) or int(s) > SEED_MAX:
        raise ConfigError(f"seed {short_repr(text, 40)} is not an integer 0..{SEED_MAX}")
    return int(s)


def default_scenario() -> str:
    """The scenario the picker starts on: ``$LIQSIM_APP_SCENARIO`` or ``baseline``."""
    return os.environ.get(SCENARIO_ENV) or "baseline"


def scenario_dir() -> Path | None:
    """The directory named by ``liqsim app --scenario-dir`` (``$LIQSIM_APP_SCENARIO_DIR``)."""
    d = os.environ.get(SCENARIO_DIR_ENV)
    return Path(d) if d else None


def _fits(source: str) -> bool:
    """A scenario that loads and is small enough to step and draw interactively."""
    try:
        b = load_scenario(source).borrowers
    except ConfigError:
        return False
    return b.miner.count + b.neocloud.count <= PICKER_MAX_BORROWERS


@functools.cache
def _shipped_choices(limit: int) -> tuple[str, ...]:
    """The shipped scenarios that fit (``_fits`` reads PICKER_MAX_BORROWERS = ``limit``, the
    cache key: shipped files do not change while the server runs)."""
    return tuple(n for n in list_scenarios() if _fits(n))


@functools.lru_cache(maxsize=4 * MAX_DIR_SCENARIOS)
def _file_fits(path: str, _mtime_ns: int, _size: int, _limit: int) -> bool:
    return _fits(path)  # cached by the file's mtime and size: re-read only when it changes


def dir_scenarios(directory: Path) -> list[str]:
    """The TOML files directly in ``directory`` that the page may load, as path strings: regular
    files (a symbolic link only if its target is inside the directory too), at most
    :data:`MAX_DIR_SCENARIOS` of them by name, each small enough to draw (as the shipped ones)."""
    try:
        real = directory.resolve(strict=True)
        names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(".toml"))
    except (OSError, RuntimeError):
        return []
    out = []
    for name in names[:MAX_DIR_SCENARIOS]:
        path = directory / name
        try:
            target = path.resolve(strict=True)
            st = target.stat()
        except (OSError, RuntimeError):
            continue
        if (target.parent == real and stat.S_ISREG(st.st_mode)
                and _file_fits(str(path), st.st_mtime_ns, st.st_size, PICKER_MAX_BORROWERS)):
            out.append(str(path))
    return out


def picker_scenarios() -> list[str]:
    """Shipped scenarios small enough to step and draw interactively.

    Those with more than :data:`PICKER_MAX_BORROWERS` borrowers (``large``, for benchmarks)
    are left out of the picker, and so are scenarios that do not load; ``liqsim app NAME``
    still opens one explicitly.
    """
    return list(_shipped_choices(PICKER_MAX_BORROWERS))


def page_scenarios() -> list[str]:
    """Every scenario the page may load, in the picker's order: the small shipped ones, the
    TOML files of ``--scenario-dir`` (:func:`dir_scenarios`) and the scenario ``liqsim app``
    started on (whatever its size: the person who started the app chose it)."""
    names = picker_scenarios()
    d = scenario_dir()
    if d is not None:
        names += dir_scenarios(d)
    first = default_scenario()
    if first not in names:
        names.append(first)
    return names


def allowed_scenario(value) -> str | None:
    """``value`` if the page may load it (one of :func:`page_scenarios`, compared as the exact
    string), else None. The browser can send any value for the picker, not only the ones it
    lists: a path, ``large``, a table; none of them is read."""
    if not isinstance(value, str) or len(value) > 4096:
        return None
    return value if value in page_scenarios() else None


# The controls' labels, for notices
CONTROL_LABELS = {"ltv": "Loan-to-value", "rent_deflation": "Rent deflation",
                  "btc_shock": "Extra BTC crash", "buyer_capacity": "Buyer capacity",
                  "correlation_shift": "Correlation shift"}
CONTROL_DEFAULTS = {"ltv": None, "rent_deflation": None, "btc_shock": 0.0,
                    "buyer_capacity": 1.0, "correlation_shift": 0.0}


def _is_number(value) -> bool:
    """A finite int or float (not a bool): what a slider sends, if the browser is honest."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


class AppModel(LiquidationModel):
    """A :class:`LiquidationModel` built from the page's controls (the page passes kwargs).

    The values come from the browser and are not trusted: a scenario the page does not offer
    (:func:`allowed_scenario`) gives the starting scenario, a seed that is not an integer the
    scenario's seed, a control that is not a finite number or that the scenario refuses its
    default; :attr:`notice` says so on the page, in one line. The constructor never raises for
    what the page sends, so the page never shows a traceback.
    """

    def __init__(self, scenario_name: str = "baseline", seed: str = "",
                 ltv: float | None = None, rent_deflation: float | None = None,
                 btc_shock: float = 0.0,
                 buyer_capacity: float = 1.0, correlation_shift: float = 0.0,
                 repo: bool = False):
        notices = []
        name = allowed_scenario(scenario_name)
        if name is None:
            name = default_scenario()
            notices.append(f"scenario {short_repr(scenario_name, 60)} is not one this app "
                           f"offers; showing {short_repr(name, 60)}")
        try:
            chosen = parse_seed(seed)
        except ConfigError as e:
            chosen = None
            notices.append(f"{e}; using the scenario's seed")
        controls = {"ltv": ltv, "rent_deflation": rent_deflation, "btc_shock": btc_shock,
                    "buyer_capacity": buyer_capacity, "correlation_shift": correlation_shift}
        for key, value in controls.items():
            if _is_number(value) or (value is None and CONTROL_DEFAULTS[key] is None):
                continue
            controls[key] = CONTROL_DEFAULTS[key]
            notices.append(f"{CONTROL_LABELS[key]} {short_repr(value, 40)} is not a "
                           "number; using the scenario's value")
        if not isinstance(repo, bool):
            notices.append(f"Repo desk {short_repr(repo, 40)} is not on or off; off")
            repo = False
        try:
            cfg = app_scenario(name, chosen, repo=repo, **controls)
        except (ConfigError, ArithmeticError, ValueError) as e:
            notices.append(f"{e}; using the scenario's own values")
            cfg = self._fallback(name, chosen, notices)
        self.notice = one_line("; ".join(notices), 600)
        super().__init__(cfg)

    @staticmethod
    def _fallback(name: str, seed: int | None, notices: list[str]) -> Scenario:
        """The scenario as it is; if it no longer loads (a --scenario-dir file edited since it
        was listed), the starting scenario, then the baseline."""
        for source in dict.fromkeys((name, default_scenario(), "baseline")):
            try:
                return app_scenario(source, seed)
            except ConfigError as e:
                notices.append(str(e))
        raise ConfigError("no scenario loads")  # the shipped baseline always does

    def step(self) -> None:
        """One month; an error stops the model with a one-line notice on the page (the full
        traceback goes to the server's log), instead of a traceback in the page."""
        month = self.month + 1
        try:
            super().step()
        except Exception as e:  # noqa: BLE001 - shown as one line, logged in full
            self.running = False
            self.notice = one_line(f"the model stopped in month {month}: "
                                    f"{type(e).__name__}: {e}", 300)
            traceback.print_exc()


def model_params(scenario: str | None = None, names: list[str] | None = None) -> dict:
    """The controls (type, label, value, bounds), their values those of ``scenario``;
    ``names``: the picker's scenarios (default :func:`page_scenarios`, what the page may
    load). ``scenario`` is read: the page passes only names :func:`allowed_scenario` allows."""
    names = list(names) if names is not None else page_scenarios()
    first = scenario or default_scenario()
    if first not in names:
        names.append(first)  # a TOML file given to `liqsim app`
    base = load_scenario(first)

    def slider(label, value, lo, hi, step):
        return {"type": "SliderFloat", "label": label, "value": value, "min": lo, "max": hi,
                "step": step}

    return {
        "scenario_name": {"type": "Select", "label": "Scenario", "value": first,
                          "values": names},
        "seed": {"type": "InputText", "label": "Seed (blank = scenario's)",
                 "value": str(base.seed)},
        "ltv": slider("Loan-to-value at origination", base.borrowers.miner.ltv, 0.30, 0.95,
                      0.05),
        "rent_deflation": slider("Rent deflation (a year)", base.environment.rent_deflation,
                                 0.0, 0.7, 0.05),
        "btc_shock": slider(f"Extra BTC crash in month {BTC_SHOCK_MONTH}", 0.0, 0.0, 0.9, 0.05),
        "buyer_capacity": slider("Buyer capacity (x scenario)", 1.0, 0.1, 5.0, 0.1),
        "correlation_shift": slider("Correlation shift", 0.0, -0.5, 0.5,
                                    0.05),
        "repo": {"type": "Checkbox", "label": "Repo desk on", "value": False},
    }


def initial_kwargs(params: dict) -> dict:
    """The model's keyword arguments for the controls' starting values."""
    return {k: v["value"] for k, v in params.items()}


# =========================================================================== the story
def _money(x: float) -> str:
    a = abs(x)
    text = f"${a / 1e9:,.2f} bn" if a >= 1e9 else f"${a / 1e6:,.1f} M" if a >= 1e5 else \
        f"${a:,.0f}"
    return ("\u2212" if x < 0 and a >= 0.5 else "") + text


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def month_story(model, t: int | None = None) -> list[str]:
    """What happened in month ``t`` (default: the model's month), in plain words: who
    defaulted, what was sold at what discount to its value in best use, who failed."""
    t = model.month if t is None else t
    if t == 0:
        return [f"Month 0 is the starting point ({month_label(0, model.cfg.start)}): every "
                "borrower is current on its loans. Press **Step** to simulate one month, "
                "**Play** to run on."]
    ev = [e for e in model.events if e[0] == t]
    lines = []
    defaults = [e for e in ev if e[1].startswith("default_")]
    if defaults:
        miners = sum(e[2] == "miner" for e in defaults)
        missed = sum(e[1] == "default_payment" for e in defaults)
        lines.append(f"**{_plural(len(defaults), 'borrower')} defaulted** ("
                     f"{_plural(miners, 'miner')}, {_plural(len(defaults) - miners, 'neo-cloud')})"
                     f": {missed} could not pay, {len(defaults) - missed} broke a loan covenant "
                     "and could not cure it. Their lenders repossess the GPUs.")
    calls = sum(e[1] == "margin_call" for e in ev)
    if calls:
        lines.append(f"{_plural(calls, 'borrower')} got a **margin call**: the GPUs behind the "
                     "loan are worth too little for it.")
    names, price, value = model.env.names, model.rec["price"][t], model.rec["fundamental"][t]
    for g, name in enumerate(names):
        forced = [e for e in ev if e[1] == "sale" and e[2] == "lender" and e[4] == g]
        units = sum(e[5] for e in forced)
        if not units:
            continue
        p, v = price[g], value[g]
        gap = (f", {1 - p / v:.0%} below its value in best use ({_money(v)})" if v > 0 and p < v
               else f" (value in best use {_money(v)})")
        salvage = int(model.rec["salvage"][t, g])
        # who takes the units no secondary buyer or desk takes: the outside demand (other
        # sectors, overseas; docs/model.md "Outside demand") at the month's one clearing
        # price, or without it the salvage sink at its floor (§7.13)
        outside = model.cfg.buyers.outside_demand.enabled
        to_salvage = ("" if not salvage else
                      f"; {salvage:,} went to outside buyers (other sectors, overseas)"
                      if outside else f"; {salvage:,} went to the salvage buyer at the floor price")
        lines.append(f"Lenders **sold {units:,} repossessed {name}** at {_money(p)} each{gap}"
                     f"{to_salvage}.")
    repo = [e for e in ev if e[1] == "repo_loan" and e[2] == "lender"]
    if repo:
        lines.append(f"The **repo desk lent {_money(sum(e[6] for e in repo))}** to "
                     f"{_plural(len(repo), 'lender')} against their repossessed GPUs, so they "
                     "need not sell them now.")
    repo_b = [e for e in ev if e[1] == "repo_loan" and e[2] == "borrower"]
    if repo_b:
        lines.append(f"The **repo desk lent {_money(sum(e[6] for e in repo_b))}** to "
                     f"{_plural(len(repo_b), 'borrower')} against their fleets, to meet what "
                     "they owe this month.")
    calls = [e for e in ev if e[1] == "repo_default"]
    if calls:
        lines.append(f"**{_plural(len(calls), 'repo borrower')} could not meet a margin call** "
                     "or repay; the desk took and sold the pledged GPUs.")
    failed = [e for e in ev if e[1] == "lender_failure"]
    if failed:
        who = ", ".join(model.lender_agents[e[3]].name for e in failed)
        lines.append(f"**{_plural(len(failed), 'lender')} failed** ({who}): losses used up "
                     "its capital; its own creditors lose part of what it owed them.")
    weak = sum(e[1] == "deleveraging" for e in ev)
    if weak:
        lines.append(f"{_plural(weak, 'lender')} started **deleveraging** (capital too thin): "
                     "it sells and lends less.")
    if not lines:
        lines.append("A quiet month: no default, no forced sale, no failure.")
    return lines


# what each panel shows, in plain words (shown under it)
PANEL_CAPTIONS = {
    "network": "Who lends to whom. Squares are lenders, triangles miners, circles neo-clouds, "
               "diamonds secondary buyers; colour is the state this month (green healthy, "
               "orange in trouble, red defaulted, black failed). Blue arrows: lenders funding "
               "other lenders, the path by which one failure hurts others.",
    "prices": "What a used GPU sells for (solid) against what it is worth to the buyer who "
              "can use it best (dashed). A solid line below its dashed one is a fire sale.",
    "defaults": "Borrowers that have defaulted so far, and lenders that have failed.",
    "losses": "Lenders' losses so far: loans written off, the credit loss (what was written "
              "off less the cash seized at the default; it never falls) and what they got back "
              "later by selling the repossessed GPUs.",
    "inventory": "Repossessed GPUs lenders still hold (waiting to be sold), and those the repo "
                 "desk holds.",
    "capacity": "How many more GPUs the secondary buyers could take, limited by their money "
                "and their spare powered data-centre space. When it runs out, prices fall.",
}
# the losses panel without metrics.losses_at_writeoff: credit losses are write-offs less all
# recoveries, seized cash included (docs/model.md D.6), and fall when a later sale recovers
LOSSES_NET_CAPTION = ("Lenders' losses so far: loans written off, what they got back by selling "
                      "GPUs and seizing cash, and the difference, the credit loss.")


def panel_caption(name: str, model) -> str:
    """What the panel ``name`` shows, for this model's definition of credit losses."""
    if name == "losses" and not model.cfg.metrics.losses_at_writeoff:
        return LOSSES_NET_CAPTION
    return PANEL_CAPTIONS[name]


PANEL_TITLES = {"network": "The lending network", "prices": "Prices", "defaults": "Defaults",
                "losses": "Credit losses", "inventory": "Repossessed GPUs",
                "capacity": "Buyers' room"}


# =========================================================================== the components
def _html(lines: list[str], bullets: bool = False) -> str:
    """Our few Markdown-like lines as HTML (``## `` heading, ``**bold**``), escaped first.

    Solara's Markdown component loads KaTeX for formulas from a CDN path that the offline
    asset package does not hold (404s in the browser console); these lines need no formulas.
    """
    out = []
    for line in lines:
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(line, quote=False))
        if text.startswith("## "):
            out.append(f"<h2 style='margin: 0.2em 0'>{text[3:]}</h2>")
        else:
            out.append(f"<li>{text}</li>" if bullets else f"<p style='margin: 0.3em 0'>{text}</p>")
    return f"<ul>{''.join(out)}</ul>" if bullets else "".join(out)


def _shock_sizes(cfg: Scenario, kind: str) -> str:
    sizes = [f"-{s.size:.0%} in month {s.month}" for s in cfg.shocks if s.kind == kind]
    return ", ".join(sizes) or "none"


@solara.component
def MonthCounter(model, t: int):
    """Month, calendar date, headline numbers and the settings of the run."""
    rec = model.rec
    defaults = int(rec["defaults_miner"][: t + 1].sum() + rec["defaults_neocloud"][: t + 1].sum())
    c = model.cfg
    lines = [f"## Month {t} of {c.months} ({month_label(t, c.start)})",
             f"**{c.name}** · seed {c.seed} · repo desk "
             f"{'on' if c.policy.repo.enabled else 'off'}",
             f"borrower defaults **{defaults}** · credit losses "
             f"**${rec['credit_losses'][t] / 1e6:,.0f}M** · lenders failed "
             f"**{int(rec['lender_failures'][t])}**",
             f"LTV at origination {c.borrowers.miner.ltv:.2f} · rent deflation "
             f"{c.environment.rent_deflation:.0%}/yr · BTC shocks "
             f"{_shock_sizes(c, 'btc')} · buyer capacity x{c.buyers.capacity_scale:.2g} · "
             f"correlation {c.environment.rho_calm:.2f} calm / "
             f"{c.environment.rho_stress:.2f} stress"]
    with solara.Column(gap="0px") as column:
        solara.HTML(unsafe_innerHTML=_html(lines), classes=["liqsim-counter"])
        if model.notice:  # plain text (it may quote what the browser sent), never HTML
            solara.Warning(model.notice, dense=True)
    return column


@solara.component
def StoryPanel(model, t: int):
    """This month in plain words."""
    with solara.Card(f"What happened in {month_label(t, model.cfg.start)}"):
        solara.HTML(unsafe_innerHTML=_html(month_story(model, t), bullets=True),
                    classes=["liqsim-story"])


@solara.component
def PanelImage(name: str, panels: dict, model, t: int):
    """One panel's picture (sim.views.app_panels: redrawn by blitting), its title and caption."""
    data = solara.use_memo(lambda: panels[name].image(model, t), [model, t])
    with solara.Card(PANEL_TITLES[name], style={"max-width": "700px"}):
        solara.Image(data, format="jpeg")
        values = panel_values(name, model, t)
        lines = ([f"**{month_label(t, model.cfg.start)}: {values}**"] if values else []) + [
            panel_caption(name, model)]
        solara.HTML(unsafe_innerHTML=_html(lines), classes=["liqsim-caption"],
                    style="font-size: 0.9em; color: #333")


# =========================================================================== the controls
def _label(label: str, value, fmt: str) -> str:
    """A control's label with its value, so it is visible without touching the slider."""
    return f"{label}: {format(value, fmt)}"


SLIDER_FORMATS = {"ltv": ".2f", "rent_deflation": ".0%", "btc_shock": ".0%",
                  "buyer_capacity": ".1f", "correlation_shift": "+.2f"}


@solara.component
def Controls(params: dict, values: dict, on_change):
    """The scenario picker and the controls; each change restarts the run at month 0.

    What the browser sends is not trusted (a crafted page can send any JSON value for any
    control): a slider ignores a value that is not a finite number and clamps one outside its
    range (a widget handler that raises cannot be caught by a component above it, and a string
    in ``values`` would break the label's format); the picker, seed and checkbox pass theirs on
    to :func:`Page`, which loads only what :func:`allowed_scenario` allows, and to
    :class:`AppModel`, which turns the rest into one-line notices.
    """
    desc = solara.use_memo(lambda: _descriptions(params["scenario_name"]["values"]),
                           [tuple(params["scenario_name"]["values"])])
    for key, spec in params.items():
        def set_value(value, key=key, spec=spec):
            if spec["type"] == "SliderFloat":
                if not _is_number(value):
                    return  # only a crafted page sends it
                value = min(spec["max"], max(spec["min"], value))
                if _snapped_echo(spec, values[key], value):
                    return  # the slider moved the scenario's value onto its grid, not the user
            on_change(key, value)

        kind, label, value = spec["type"], spec["label"], values[key]
        if kind == "Select":
            solara.Select(label, value=value, values=spec["values"], on_value=set_value)
            solara.Text(desc.get(value, "") if isinstance(value, str) else "",
                        style={"font-size": "0.85em"})
        elif kind == "InputText":
            solara.InputText(label, value=value if isinstance(value, str) else short_repr(
                value, 40), on_value=set_value)
        elif kind == "Checkbox":
            solara.Checkbox(label=label, value=value is True, on_value=set_value)
        else:
            SliderFloat(_label(label, value, SLIDER_FORMATS.get(key, ".2f")),
                        value=value, min=spec["min"], max=spec["max"],
                        step=spec["step"], on_value=set_value, thumb_label=False)


@solara.component
def SliderFloat(label: str, value: float = 0.0, min: float = 0.0, max: float = 1.0,
                step: float = 0.1, on_value=None, thumb_label=True, disabled: bool = False):
    """Solara's ``SliderFloat``, whose handler ignores a value that is not a finite number and
    clamps one outside [min, max]: Solara's ``float(value)`` raised on ``'abc'``, which only a
    crafted page sends, and the exception of a widget's handler cannot be caught by a
    component above it (the page became a traceback)."""
    reactive_value = solara.use_reactive(value, on_value)

    def set_value(new) -> None:
        if _is_number(new):
            reactive_value.set(float(min if new < min else max if new > max else new))

    return rv.Slider(v_model=reactive_value.value, on_v_model=set_value, label=label,
                     min=min, max=max, step=step, thumb_label=thumb_label, dense=False,
                     hide_details=True, disabled=disabled)


def _snapped_echo(spec: dict, current: float, value: float) -> bool:
    """True if ``value`` is only ``current`` snapped to the slider's step: the browser's
    slider does that to a scenario value off its grid (asic_2022's rent deflation 0.2857 with
    a step of 0.05 became 0.30) and reports it as a change."""
    step, lo = spec["step"], spec["min"]
    snapped = lo + round((float(current) - lo) / step) * step
    return abs(float(value) - snapped) < 1e-9 and abs(float(current) - snapped) > 1e-9


def _descriptions(names) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = load_scenario(n).description
        except ConfigError:
            out[n] = ""
    return out


PLAY_SECONDS = 0.3  # between two months while playing


# =========================================================================== the page
@solara.component
def Page():
    """The app: controls and Reset / Play / Step in the sidebar; the month's story and six
    panels in the main area. One model per browser session (two tabs never share one); any
    change of a control restarts the run at month 0 with the new settings, and choosing a
    scenario first sets every control to that scenario's values."""
    first = solara.use_memo(default_scenario, [])
    params = solara.use_reactive(solara.use_memo(lambda: model_params(first), []))
    values = solara.use_reactive(solara.use_memo(lambda: initial_kwargs(params.value), []))
    model = solara.use_reactive(solara.use_memo(lambda: AppModel(**values.value), []))
    month = solara.use_reactive(0)
    playing = solara.use_reactive(False)
    panels = solara.use_memo(make_panels, [])

    def restart(new_values: dict, sent: dict | None = None) -> None:
        """Run ``new_values`` from month 0; ``sent``: what the browser sent instead, for the
        model to refuse with a notice (a scenario the page does not offer)."""
        playing.set(False)
        values.set(new_values)
        model.set(AppModel(**{**new_values, **(sent or {})}))
        month.set(0)

    def on_change(key: str, value) -> None:
        if key == "scenario_name" and value != values.value["scenario_name"]:
            # only what the server offers is read; anything else (a path, `large`, a table)
            # shows the starting scenario, with a one-line notice from AppModel
            allowed = allowed_scenario(value)
            fresh = model_params(allowed or first,
                                 names=params.value["scenario_name"]["values"])
            params.set(fresh)
            restart(initial_kwargs(fresh),  # every control to the new scenario's values
                    None if allowed else {"scenario_name": value})
        else:
            restart({**values.value, key: value})

    def step() -> None:
        m = model.value
        if m.running:
            m.step()
            month.set(m.month)
        if not m.running:
            playing.set(False)

    def play_loop() -> None:
        while playing.value and model.value.running:
            time.sleep(PLAY_SECONDS)
            if playing.value:
                step()

    solara.lab.use_task(play_loop, dependencies=[playing.value], prefer_threaded=True)

    m = model.value  # the month is read by the components that show it: a Step re-renders them
    with solara.AppBar():
        solara.AppBarTitle("liqsim: the GPU fire-sale market")
    with solara.Sidebar(), solara.Column():
        with solara.Card("Run"), solara.Row(justify="space-between"):
            solara.Button("Reset", color="primary", on_click=lambda: restart(values.value))
            solara.Button("Pause" if playing.value else "Play", color="primary",
                          on_click=lambda: playing.set(not playing.value),
                          disabled=not m.running)
            solara.Button("Step", color="primary", on_click=step,
                          disabled=playing.value or not m.running)
        with solara.Card("Scenario and settings"):
            Controls(params.value, values.value, on_change)
    MainArea(m, month, panels)


PANEL_NAMES = tuple(PANEL_CAPTIONS)


@solara.component
def MainArea(model, month, panels: dict):
    """The counter, the story and the panels: the one component that reads the month, so a
    Step re-renders only this part of the page (not the sidebar and its controls)."""
    t = month.value
    with solara.Column():
        MonthCounter(model, t)
        StoryPanel(model, t)
        with solara.ColumnsResponsive(12, large=6):
            for name in PANEL_NAMES:
                PanelImage(name, panels, model, t)


@solara.component
def Layout(children=()):
    """Solara's page layout (``solara run sim.views.app:Page`` wraps the module's ``Page`` in its
    ``Layout``): the app layout around :func:`ErrorBoundary` around the page."""
    return solara.AppLayout(children=[ErrorBoundary(children=list(children))])


@solara.component
def ErrorBoundary(children=()):
    """An exception in a component of the page is shown as one line with a button to dismiss
    it, instead of Solara's traceback replacing the page; the traceback goes to the server's
    log. While the line is shown the part below is not drawn (drawing a failing part again
    would fail again); Dismiss draws it afresh (a new model at month 0).

    It sits inside the app layout (an error boundary around Solara's AppLayout itself loops).
    What the page's controls send cannot raise in their handlers (:func:`Controls`,
    :class:`AppModel` never raises for page input and its ``step`` turns an error into a
    notice), where a component above could not catch it.
    """
    error, clear = solara.use_exception()
    solara.use_effect(lambda: _log_error(error), [error])
    if error is None:
        return solara.Column(children=list(children), gap="0px")
    with solara.Row(style={"align-items": "center"}) as row:
        solara.Error(error_line(error), dense=True)
        solara.Button("Dismiss", on_click=clear, text=True)
    return row


def error_line(error: BaseException) -> str:
    """An exception as the page shows it: one line, its type and at most 200 characters."""
    return one_line(f"error: {type(error).__name__}: {error}", 240)


def _log_error(error: BaseException | None) -> None:
    if error is not None:
        traceback.print_exception(error, file=sys.stderr)


# =========================================================================== the server
def server_command(host: str = "127.0.0.1", port: int = 8765, scenario: str | None = None,
                   scenario_dir: str | Path | None = None) -> tuple[list[str], dict]:
    """The argv and environment that serve :func:`Page` with Solara's server, offline.

    The page may load only what these name (:func:`page_scenarios`): the variables are set
    from the arguments alone, never inherited from the caller's environment.
    """
    argv = [sys.executable, "-m", "solara", "run", "sim.views.app:Page", "--host", host,
            "--port", str(port), "--production", "--no-open", "--no-check-version",
            "--theme-variant", "light", "--log-level", "warning"]
    inherited = {k: v for k, v in os.environ.items() if k not in (SCENARIO_ENV, SCENARIO_DIR_ENV)}
    env = {**inherited,
           "SOLARA_ASSETS_PROXY": "True",  # serve the front-end from solara-assets, locally
           "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",  # no calls home
           "MPLBACKEND": "Agg",
           # Solara warns that plain-http localhost cookies fall back to samesite=lax: expected
           "PYTHONWARNINGS": "ignore::UserWarning:solara.server.starlette"}
    if scenario is not None:
        env[SCENARIO_ENV] = scenario
    if scenario_dir is not None:
        env[SCENARIO_DIR_ENV] = str(Path(scenario_dir).resolve())
    return argv, env


def check_port(host: str, port: int) -> None:
    """Raise :class:`ConfigError` unless ``host:port`` can be listened on.

    ``host`` is a name or an IPv4 or IPv6 address (``::1``, without brackets); it is resolved
    first, and the probe listens with the address family it resolves to.
    """
    if not host.strip():
        raise ConfigError("--host must not be empty (use 0.0.0.0 to listen on every "
                          "interface)")
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"--host {host}: cannot resolve host {host}") from None
    try:
        with socket.create_server(addr[:2], family=family):
            pass
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({why})") from None


# Debian's headless Chromium, offline (the browser test and experiments/app_screenshots.py)
HEADLESS_CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                          "--no-first-run", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync")


def url(host: str, port: int) -> str:
    """The app's address, ``http://HOST:PORT/``, with an IPv6 literal in brackets (RFC 3986)."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _on_sigterm(_signum, _frame):
    raise KeyboardInterrupt


def serve(host: str, port: int, scenario: str | None = None,
          scenario_dir: str | Path | None = None) -> int:
    """Run the app server until it exits, Ctrl-C or SIGTERM; return its exit code.

    The server process never outlives this one: on Ctrl-C or SIGTERM it is terminated (killed
    after 10 s).
    """
    argv, env = server_command(host, port, scenario, scenario_dir)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    proc = subprocess.Popen(argv, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_server(proc)


def stop_server(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate a server process if it still runs; kill it after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (for tests and scripts)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, url: str, timeout: float = 90.0, log=None) -> None:
    """Wait until the server ``proc`` answers ``url`` with HTTP 200; RuntimeError if it exits
    first (with the tail of ``log``, an open text file it writes to, if given) or does not
    answer within ``timeout`` seconds (imports are slow on a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = ""
            if log is not None:
                log.seek(0)
                tail = f": {log.read()[-2000:]}"
            raise RuntimeError(f"app server exited with {proc.returncode}{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"app server did not answer {url} within {timeout:.0f} s")
