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

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import solara
from matplotlib.figure import Figure
from mesa.visualization import SolaraViz

from sim.animate import (
    draw_capacity,
    draw_defaults,
    draw_inventory,
    draw_losses,
    draw_prices,
    month_label,
)
from sim.config import ConfigError, Scenario, build, list_scenarios, load_scenario
from sim.model import LiquidationModel
from sim.plots import draw_network, new_figure

SCENARIO_ENV = "LIQSIM_APP_SCENARIO"  # the scenario the picker starts on (set by `liqsim app`)
BTC_SHOCK_MONTH = 3  # the month of crypto_winter's shocks, so the two can be compared
SEED_MAX = 2**63 - 1
PICKER_MAX_BORROWERS = 5_000  # drawing every node each month stays well under a second


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

    Raises :class:`ConfigError` for anything else.
    """
    s = str(text).strip().replace("_", "")
    if not s:
        return None
    if not s.isdigit() or int(s) > SEED_MAX:
        raise ConfigError(f"seed {text!r} is not an integer 0..{SEED_MAX}")
    return int(s)


def default_scenario() -> str:
    """The scenario the picker starts on: ``$LIQSIM_APP_SCENARIO`` or ``baseline``."""
    return os.environ.get(SCENARIO_ENV) or "baseline"


class AppModel(LiquidationModel):
    """A :class:`LiquidationModel` built from the page's controls (SolaraViz passes kwargs).

    A seed that is not an integer falls back to the scenario's seed, and
    :attr:`notice` says so on the page.
    """

    def __init__(self, scenario_name: str = "baseline", seed: str = "",
                 ltv: float | None = None, rent_deflation: float | None = None,
                 btc_shock: float = 0.0,
                 buyer_capacity: float = 1.0, correlation_shift: float = 0.0,
                 repo: bool = False):
        self.notice = ""
        try:
            chosen = parse_seed(seed)
        except ConfigError as e:
            chosen, self.notice = None, f"{e}; using the scenario's seed"
        cfg = app_scenario(scenario_name, chosen, ltv, rent_deflation, btc_shock,
                           buyer_capacity, correlation_shift, repo)
        super().__init__(cfg)


def picker_scenarios() -> list[str]:
    """Shipped scenarios small enough to step and draw interactively.

    Those with more than :data:`PICKER_MAX_BORROWERS` borrowers (``large``, for benchmarks)
    are left out of the picker, and so are scenarios that do not load; ``liqsim app NAME``
    still opens one explicitly.
    """
    def fits(name: str) -> bool:
        try:
            b = load_scenario(name).borrowers
        except ConfigError:
            return False
        return b.miner.count + b.neocloud.count <= PICKER_MAX_BORROWERS

    return [n for n in list_scenarios() if fits(n)]


def model_params(scenario: str | None = None) -> dict:
    """The controls, in SolaraViz's ``model_params`` format."""
    names = picker_scenarios()
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
    if model.notice:
        lines.append(f"⚠ {model.notice}")
    return solara.Markdown("\n\n".join(lines))


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


# =========================================================================== the server
def server_command(host: str = "127.0.0.1", port: int = 8765,
                   scenario: str | None = None) -> tuple[list[str], dict]:
    """The argv and environment that serve :func:`Page` with Solara's server, offline."""
    argv = [sys.executable, "-m", "solara", "run", "sim.app:Page", "--host", host,
            "--port", str(port), "--production", "--no-open", "--no-check-version",
            "--theme-variant", "light", "--log-level", "warning"]
    env = {**os.environ,
           "SOLARA_ASSETS_PROXY": "True",  # serve the front-end from solara-assets, locally
           "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",  # no calls home
           "MPLBACKEND": "Agg",
           # Solara warns that plain-http localhost cookies fall back to samesite=lax: expected
           "PYTHONWARNINGS": "ignore::UserWarning:solara.server.starlette"}
    if scenario is not None:
        env[SCENARIO_ENV] = scenario
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


def serve(host: str, port: int, scenario: str | None = None) -> int:
    """Run the app server until it exits, Ctrl-C or SIGTERM; return its exit code.

    The server process never outlives this one: on Ctrl-C or SIGTERM it is terminated (killed
    after 10 s).
    """
    argv, env = server_command(host, port, scenario)
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
