"""The students' browser app: a Mesa SolaraViz page on which a GPU fire sale unfolds month by month.

Three parts, kept apart:

* **the model** -- :class:`AppModel`, a :class:`sim.model.LiquidationModel` built from the
  page's controls. SolaraViz creates the model from keyword arguments (``model_params``), so
  :func:`app_scenario` turns the controls into a validated :class:`sim.config.Scenario`;
* **the components** -- small named functions, one per panel (:func:`MonthCounter`,
  :func:`NetworkPanel`, :func:`PricePanel`, ...), each drawing one matplotlib figure with the
  ``draw_*`` functions of :mod:`sim.animate` (the network with :func:`sim.plots.draw_network`,
  the same drawing as the static figure and the GIF);
* **the page** -- :func:`Page`, which builds one model per browser session (two tabs never
  share a model) and hands it to Mesa's ``SolaraViz`` (Reset, Step and Play come from Mesa).

``liqsim app`` serves this module with Solara's own server (:func:`serve`), offline: the
front-end comes from the ``solara-assets`` package through Solara's local asset proxy and
telemetry is switched off.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import traceback
import types
import urllib.request
from pathlib import Path

import mesa.visualization.solara_viz as mesa_viz
import solara
from matplotlib.figure import Figure
from mesa.visualization import SolaraViz
from solara.alias import rv

from sim.animate import (
    draw_capacity,
    draw_defaults,
    draw_inventory,
    draw_losses,
    draw_prices,
    month_label,
)
from sim.config import (
    ConfigError,
    Scenario,
    _one_line,
    build,
    list_scenarios,
    load_scenario,
    short_repr,
)
from sim.model import LiquidationModel
from sim.plots import draw_network, new_figure

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
    Unicode digits such as '²' that ``isdigit`` accepts).
    """
    s = str(text).strip().replace("_", "")
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
def _file_fits(path: str, _mtime_ns: int, _size: int) -> bool:
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
                and _file_fits(str(path), st.st_mtime_ns, st.st_size)):
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
    lists: a path, ``large``, a table; none of them is loaded."""
    if not isinstance(value, str) or len(value) > 4096:
        return None
    return value if value in page_scenarios() else None


# The controls' labels, for notices
CONTROL_LABELS = {"ltv": "Loan-to-value", "rent_deflation": "Rent deflation",
                  "btc_shock": "Extra BTC crash", "buyer_capacity": "Buyer capacity",
                  "correlation_shift": "Crypto-rent correlation"}


def _is_number(value) -> bool:
    """A finite int or float (not a bool): what a slider sends, if the browser is honest."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


class AppModel(LiquidationModel):
    """A :class:`LiquidationModel` built from the page's controls (SolaraViz passes kwargs).

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
        defaults = {"ltv": None, "rent_deflation": None, "btc_shock": 0.0,
                    "buyer_capacity": 1.0, "correlation_shift": 0.0}
        for key, value in controls.items():
            if value is not None and not _is_number(value):
                controls[key] = defaults[key]
                notices.append(f"{CONTROL_LABELS[key]} {short_repr(value, 40)} is not a "
                               "number; using the scenario's value")
        if not isinstance(repo, bool):
            notices.append(f"Repo desk {short_repr(repo, 40)} is not on or off; off")
            repo = False
        try:
            cfg = app_scenario(name, chosen, repo=repo, **controls)
        except ConfigError as e:
            notices.append(f"{e}; using the scenario's own values")
            cfg = self._fallback(name, chosen, notices)
        self.notice = _one_line("; ".join(notices), 600)
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
            self.notice = _one_line(f"the model stopped in month {month}: "
                                    f"{type(e).__name__}: {e}", 300)
            traceback.print_exc()


def model_params(scenario: str | None = None) -> dict:
    """The controls, in SolaraViz's ``model_params`` format."""
    names = page_scenarios()
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
        "correlation_shift": slider("Crypto-rent correlation (+/- scenario)", 0.0, -0.5, 0.5,
                                    0.05),
        "repo": {"type": "Checkbox", "label": "Repo desk on", "value": False},
    }


def initial_kwargs(params: dict) -> dict:
    """The model's keyword arguments for the controls' starting values."""
    return {k: v["value"] for k, v in params.items()}


# =========================================================================== the components
CHART_MARGINS = {"left": 0.12, "right": 0.97, "bottom": 0.14, "top": 0.9}
NETWORK_MARGINS = {"left": 0.01, "right": 0.99, "bottom": 0.12, "top": 0.95}


def _panel(model, draw, width: float, height: float, margins: dict = CHART_MARGINS):
    """One figure drawn by ``draw(ax, model, month)``, re-encoded only when the month changes.

    Fixed margins instead of constrained layout: it halves the time to draw a frame.
    """
    t = model.month

    def make() -> Figure:
        fig = new_figure(width, height, dpi=90, layout=None)
        fig.subplots_adjust(**margins)
        draw(fig.add_subplot(), model, t)
        return fig

    fig = solara.use_memo(make, [model, t])
    return solara.FigureMatplotlib(fig, format="png", dependencies=[model, t])


def _shock_sizes(cfg: Scenario, kind: str) -> str:
    sizes = [f"-{s.size:.0%} in month {s.month}" for s in cfg.shocks if s.kind == kind]
    return ", ".join(sizes) or "none"


def MonthCounter(model):
    """Month, calendar date and headline numbers."""
    rec, t = model.rec, model.month
    defaults = int(rec["defaults_miner"][: t + 1].sum() + rec["defaults_neocloud"][: t + 1].sum())
    lines = [f"## Month {t} of {model.cfg.months} ({month_label(t)})",
             f"**{model.cfg.name}** · seed {model.cfg.seed} · repo desk "
             f"{'on' if model.cfg.policy.repo.enabled else 'off'}",
             f"borrower defaults **{defaults}** · credit losses "
             f"**${rec['credit_losses'][t] / 1e6:,.0f}M** · lenders failed "
             f"**{int(rec['lender_failures'][t])}**"]
    c = model.cfg
    lines.append(f"LTV at origination {c.borrowers.miner.ltv:.2f} · rent deflation "
                 f"{c.environment.rent_deflation:.0%}/yr · BTC shocks "
                 f"{_shock_sizes(c, 'btc')} · buyer capacity x{c.buyers.capacity_scale:.2g} · "
                 f"correlation {c.environment.rho_calm:.2f} calm / "
                 f"{c.environment.rho_stress:.2f} stress")
    with solara.Column() as column:
        solara.Markdown("\n\n".join(lines))
        if model.notice:  # plain text (it may quote what the browser sent), never Markdown
            solara.Warning(model.notice, dense=True)
    return column


def NetworkPanel(model):
    """The lending and funding network, nodes coloured by state."""
    return _panel(model, draw_network, 6.4, 5.4, NETWORK_MARGINS)


def PricePanel(model):
    """GPU price index per generation against its value in best use."""
    return _panel(model, draw_prices, 6.0, 3.8)


def DefaultsPanel(model):
    """Cumulative defaults by agent type."""
    return _panel(model, draw_defaults, 6.0, 3.4)


def LossesPanel(model):
    """Cumulative credit losses."""
    return _panel(model, draw_losses, 6.0, 3.4)


def InventoryPanel(model):
    """Lenders' repossessed inventory (the overhang)."""
    return _panel(model, draw_inventory, 6.0, 3.4)


def CapacityPanel(model):
    """Secondary buyers' remaining capacity."""
    return _panel(model, draw_capacity, 6.0, 3.4)


COMPONENTS = [MonthCounter, NetworkPanel, PricePanel, DefaultsPanel, LossesPanel,
              InventoryPanel, CapacityPanel]


# =========================================================================== the page
@solara.component
def Page():
    """One SolaraViz page; the model is created per browser session (per kernel)."""
    params = solara.use_memo(model_params, [])
    model = solara.use_memo(lambda: AppModel(**initial_kwargs(params)), [])
    return SolaraViz(model, components=COMPONENTS, model_params=params,
                     name="liqsim: the GPU fire-sale market", play_interval=300)


@solara.component
def Layout(children=()):
    """Solara's page layout (Solara wraps a module's ``Page`` in its ``Layout``): the app
    layout around :func:`ErrorBoundary` around the page."""
    return solara.AppLayout(children=[ErrorBoundary(children=list(children))])


@solara.component
def ErrorBoundary(children=()):
    """An exception in a component or event handler of the page is shown as one line with a
    button to dismiss it, instead of Solara's traceback replacing the page; the traceback
    goes to the server's log. While the line is shown the part below is not drawn (drawing a
    failing part again would fail again); Dismiss draws it afresh.

    It sits inside the app layout (an error boundary around Solara's AppLayout itself loops).
    The sidebar (Reset, Step, the controls) is drawn by the app layout, outside it: what the
    page sends there cannot raise (:class:`AppModel` never does for page input, its ``step``
    turns an error into a notice, and the sliders ignore values that are not numbers).
    """
    error, clear = solara.use_exception()
    solara.use_effect(lambda: _log_error(error), [error])
    if error is None:
        return solara.Column(children=list(children), gap="0px")
    with solara.Row(style={"align-items": "center"}) as row:
        solara.Error(error_line(error), dense=True)
        solara.Button("Dismiss", on_click=clear, text=True)
    return row


def _slider(cast: type):
    """A slider like Solara's ``SliderInt``/``SliderFloat`` whose handler ignores a value that
    is not a finite number and clamps one outside [min, max]: Solara's cast (``int(value)``)
    raises on what only a crafted page sends (``'abc'``), and the exception of a widget's
    handler cannot be caught by a component above it (reacton keeps re-raising it)."""

    @solara.component
    def Slider(label: str, value=0, min=0, max=10, step=1, on_value=None,
               thumb_label=True, disabled: bool = False):
        reactive_value = solara.use_reactive(value, on_value)
        lo, hi = min, max

        def set_value(new) -> None:
            if _is_number(new):
                reactive_value.set(cast(lo if new < lo else hi if new > hi else new))

        return rv.Slider(v_model=reactive_value.value, on_v_model=set_value, label=label,
                         min=lo, max=hi, step=step, thumb_label=thumb_label, dense=False,
                         hide_details=True, disabled=disabled)

    Slider.__name__ = Slider.__qualname__ = f"Slider{cast.__name__.title()}"
    return Slider


SliderInt, SliderFloat = _slider(int), _slider(float)


class _SolaraForMesa(types.ModuleType):
    """``solara`` as Mesa's SolaraViz module sees it: the same, but with the sliders above
    (its Play Interval, Render Interval and parameter sliders)."""

    SliderInt = SliderInt
    SliderFloat = SliderFloat

    def __getattr__(self, name: str):
        return getattr(solara, name)


def _install_sliders() -> None:
    """Point Mesa's SolaraViz module at :class:`_SolaraForMesa` (only that module: the name
    ``solara`` in its globals, looked up when its components render)."""
    if not isinstance(mesa_viz.solara, _SolaraForMesa):
        mesa_viz.solara = _SolaraForMesa("solara")


_install_sliders()


def error_line(error: BaseException) -> str:
    """An exception as the page shows it: one line, its type and at most 200 characters."""
    return _one_line(f"error: {type(error).__name__}: {error}", 240)


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
    argv = [sys.executable, "-m", "solara", "run", "sim.app:Page", "--host", host,
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
