"""The ``liqsim`` command line (Typer). Bad input exits with code 2 and one line on stderr."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sim.batch.progress import LineProgress
from sim.core.config import (
    SCENARIO_DIR,
    ConfigError,
    Scenario,
    did_you_mean,
    list_scenarios,
    load_scenario,
    read_toml,
)
from sim.core.keys import describe_keys
from sim.core.version import liqsim_version

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="liqsim: the liquidation market for repossessed AI GPUs.")
# Messages carry user text (paths, scenario names, file excerpts): never read as rich markup
# (`[/]` in an --out path raised MarkupError) or emoji codes (`:x:` became an emoji)
out_console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False)
GIF_NAME = "cascade.gif"  # liqsim animate's default file, inside the run directory


def _version(value: bool) -> None:
    if value:
        out_console.print(f"liqsim {liqsim_version()}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the liqsim version and exit")] = False) -> None:
    """liqsim: the liquidation market for repossessed AI GPUs."""


_DEFAULTS = Scenario.model_fields
SEED_HELP = (f"Random seed (default: the scenario's; {_DEFAULTS['seed'].default} in the shipped "
             "ones)")
MONTHS_HELP = (f"Months to simulate (default: the scenario's; {_DEFAULTS['months'].default} in "
               "the shipped ones)")
SET_HELP = ("Override, key.path=value (repeatable); key.path+=value appends to a list, e.g. "
            "shocks+='{month=3, kind=\"btc\", size=0.5}'; `liqsim keys` lists the keys")


def _error_line(msg: str) -> str:
    """``liqsim: error: <msg>`` on one line, whatever whitespace the message carries."""
    return "liqsim: error: " + (" ".join(str(msg).split()) or "invalid input")


def _fail(msg: str) -> None:
    err_console.print(_error_line(msg), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _int_flag(lo: int | None = None, hi: int | None = None):
    """A parser for an integer flag whose usage error names the value and the allowed range."""
    def parse(value) -> int:
        if isinstance(value, int):  # a default
            return value
        try:
            n = int(str(value).strip())
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not an integer") from None
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise typer.BadParameter(f"{n} is not in the range {lo if lo is not None else ''}"
                                     f"..{hi if hi is not None else ''}")
        return n
    return parse


def _out_path(value) -> Path:
    """A parser for an ``--out`` path: refuses an empty path (it would silently mean the
    current directory) and one that is not valid UTF-8 (Parquet and the console need it)."""
    if isinstance(value, Path):  # a default
        return value
    text = str(value)
    shown = os.fsencode(text).decode("utf-8", "backslashreplace")
    if not text.strip():
        raise typer.BadParameter("must not be empty (use . for the current directory)")
    if shown != text:
        raise typer.BadParameter(f"{shown} is not a valid UTF-8 path")
    return Path(text)


@contextmanager
def _writing(target: Path):
    """Turn an ``OSError`` (disk full, file too large, permissions) in the block into one line
    naming ``target``."""
    try:
        yield
    except OSError as e:
        _fail(f"cannot write {target}: {e.strerror or e}")


_REPORTED: list[str] = []  # the interruption messages printed (main prints one if none was)


def _interrupted(msg: str, code: int = 130) -> None:
    _REPORTED.append(msg)
    err_console.print(f"liqsim: {'stopped' if code == 143 else 'interrupted'}; {msg}",
                      markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the work in progress is stopped and cleaned up)."""


def _on_sigterm(_signum, _frame) -> None:
    raise _Terminated


class _Progress:
    """A rich bar on a terminal; without one, a plain line every few seconds
    (:class:`sim.batch.progress.LineProgress`), so that long commands are never silent in a log."""

    def __init__(self, unit: str):
        self.unit = unit
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                            console=err_console, transient=True) \
            if err_console.is_terminal else None
        self.lines: dict[int, LineProgress] = {}

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif exc[0] is None:
            for line in self.lines.values():
                line.done()

    def add_task(self, description: str, total: int | None = None) -> int:
        if self.bar is not None:
            return self.bar.add_task(description, total=total)
        self.lines[len(self.lines)] = LineProgress(description, total, self.unit)
        return len(self.lines) - 1

    def update(self, task: int, completed: int | None = None, total: int | None = None) -> None:
        if self.bar is not None:
            self.bar.update(task, completed=completed, total=total)
        else:
            self.lines[task].update(completed, total)

    def advance(self, task: int) -> None:
        if self.bar is not None:
            self.bar.advance(task)
        else:
            self.lines[task].update(advance=1)


def _progress(unit: str = "months") -> _Progress:
    return _Progress(unit)


def _fmt_money(x: float) -> str:
    """``$17.4 M``; a negative amount ``−$17.4 M`` (a minus sign before the dollar)."""
    text = f"${abs(x) / 1e6:,.1f} M"
    return f"\u2212{text}" if x < 0 and text != "$0.0 M" else text


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _summary_table(s: dict) -> Table:
    t = Table(title=f"liqsim · {s['scenario']} · seed {s['seed']} · {s['months']} months",
              show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    d = s["defaults_by_type"]
    t.add_row("defaults (miners / neo-clouds)",
              f"{s['defaults']} of {s['borrowers']} ({d['miner']} / {d['neocloud']})")
    if "defaults_by_cause" in s:
        c = s["defaults_by_cause"]
        t.add_row("defaults by cause (payment / LTV / DSCR)",
                  f"{c['payment']} / {c['ltv']} / {c['dscr']}")
    if "defaults_counterfactual" in s:  # metrics.cascade_counterfactual (docs/model.md D.5)
        t.add_row("cascade beyond the no-contagion counterfactual",
                  f"{s['cascade_size']} ({s['defaults_counterfactual']} defaults without "
                  "price and funding channels)")
    else:
        t.add_row("cascade beyond the first wave", str(s["cascade_size"]))
    t.add_row("credit losses at write-off" if "net_credit_losses" in s else "credit losses",
              _fmt_money(s["credit_losses"]))
    if "net_credit_losses" in s:  # metrics.losses_at_writeoff (docs/model.md D.6)
        t.add_row("recoveries after write-off / net credit losses",
                  f"{_fmt_money(s['recoveries'])} / {_fmt_money(s['net_credit_losses'])}")
    t.add_row("realised LGD vs paper LGD", f"{_pct(s['realised_lgd'])} vs {_pct(s['paper_lgd'])}")
    for key, label in (("peak_price_fall", "peak-to-trough fall of price / value"),
                       ("peak_price_fall_raw", "peak-to-trough fall of the raw price")):
        falls = ", ".join(f"{k} {100 * v:.0f} %" for k, v in s[key].items())
        t.add_row(label, falls or "n/a")
    if "outside_units" in s:  # buyers.outside_demand (docs/model.md, "Outside demand")
        t.add_row("fire-sale discount to the value at repossession",
                  _pct(s["fire_sale_discount"]))
        t.add_row("GPUs sold to out-of-sector buyers", f"{s['outside_units']:,}")
    else:
        t.add_row("fire-sale discount to fundamental", _pct(s["fire_sale_discount"]))
        t.add_row("salvaged GPUs", f"{s['salvage_units']:,}")
    t.add_row("lender failures", str(s["lender_failures"]))
    t.add_row("DebtRank (max single / realised)",
              f"{s['debtrank']['max_single']:.3f} / {s['debtrank']['realised']:.3f}")
    t.add_row("repo desk", "on" if s["repo_enabled"] else "off")
    if "losses" in s:  # metrics.system_loss (docs/model.md, "Losses counted for everyone")
        L = s["losses"]
        t.add_row("losses marked to market (\u2212 = a gain): lenders / borrowers / "
                  "secondary buyers / outside",
                  " / ".join(_fmt_money(L[k]) for k in ("lenders", "borrowers", "buyers",
                                                         "outside")))
        if s["repo_enabled"] or L["desk"]:
            t.add_row("repo desk's P&L (after its cost of capital)", _fmt_money(-L["desk"]))
        if L["lolr"]:
            t.add_row("buyer of last resort's P&L (after its cost of capital)",
                      _fmt_money(-L["lolr"]))
        t.add_row("system loss, all parties (GPUs at price / at value in best use)",
                  f"{_fmt_money(L['system_loss'])} / {_fmt_money(L['system_loss_at_value'])}")
    return t


@app.command()
def run(
    scenario: Annotated[str | None, typer.Argument(help="Scenario TOML file or shipped name "
                                                        "(default: baseline)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    seed: Annotated[int | None, typer.Option(parser=_int_flag(), metavar="N",
                                             help=SEED_HELP)] = None,
    months: Annotated[int | None, typer.Option(parser=_int_flag(), metavar="N",
                                               help=MONTHS_HELP)] = None,
    out: Annotated[Path | None, typer.Option(parser=_out_path, metavar="DIR",
                                             help="Output directory, replaced whole "
                                                  "(default: results/<name>)")] = None,
    figures: Annotated[bool, typer.Option(help="Write PNG figures")] = True,
) -> None:
    """Run one scenario and write results/<name>/."""
    # lazy (here and in the other commands): the model, matplotlib, Solara and dask load only
    # for the command that needs them, so `liqsim --help` and a bad argument answer at once
    from sim.io import store
    from sim.views.plots import FIGURES, write_figures
    from sim.world.runner import run_scenario

    also = (*FIGURES, GIF_NAME)  # a run directory may also hold its figures and its GIF
    try:
        cfg = load_scenario(scenario, set_ or [], seed=seed, months=months)
        outdir = out if out is not None else Path("results") / cfg.name
        _check_writable(outdir, replaced=True)
        store.run_dir(outdir, also)  # refuse a directory the run may not replace, before running
    except ConfigError as e:
        _fail(str(e))
    try:  # the model reads some inputs (a network edge list) only when it is built
        with _progress() as prog:
            task = prog.add_task(cfg.name, total=cfg.months)
            model = run_scenario(cfg, on_month=lambda m: prog.update(task, completed=m))
        with _writing(outdir):
            summary = store.write_run(model, outdir, write_figures if figures else None, also)
    except ConfigError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _interrupted(f"{outdir} left as it was")
    out_console.print(_summary_table(summary))
    out_console.print(f"results written to {outdir}/", soft_wrap=True)


def _check_writable(outdir: Path, replaced: bool = False) -> None:
    """Refuse an ``outdir`` that cannot be written, before anything runs. A ``replaced``
    directory (a run's, swapped in whole by ``store.replace_dir``) is written in its parent:
    the new one is built beside it and renamed, so the parent must be writable."""
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError(f"--out {outdir}: exists and is not a directory")
    probe = Path(os.path.realpath(outdir)).parent if replaced else outdir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--out {outdir}: {probe} is not a directory")
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"--out {outdir}: directory is not writable")


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="Scenario A (TOML file or shipped name)")],
    b: Annotated[str, typer.Argument(help="Scenario B")],
    seeds: Annotated[int, typer.Option(parser=_int_flag(2, 100_000), metavar="N",
                                       help="Paired seeds (2..100000)")] = 20,
    months: Annotated[int | None, typer.Option(parser=_int_flag(), metavar="N",
                                               help=MONTHS_HELP)] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override applied to both A and B, key.path=value (repeatable)")] = None,
    csv: Annotated[Path | None, typer.Option(parser=_out_path, metavar="FILE",
                                             help="Also write the table to this CSV file")
                   ] = None,
) -> None:
    """Run A and B on the same seeds and print paired differences (B - A) with 95 % CIs."""
    from sim.world.runner import compare as run_compare  # lazy: loads the model

    try:
        ca = load_scenario(a, set_ or [], months=months)
        cb = load_scenario(b, set_ or [], months=months)
        if csv is not None:
            if csv.is_dir():
                raise ConfigError(f"--csv {csv}: is a directory, expected a file name")
            _check_writable(csv.parent if str(csv.parent) else Path("."))
    except ConfigError as e:
        _fail(str(e))
    try:  # the models read some inputs (a network edge list) only when they are built
        with _progress("runs") as prog:
            task = prog.add_task("compare", total=2 * seeds)
            res = run_compare(ca, cb, seeds, on_run=lambda: prog.advance(task))
    except ConfigError as e:
        _fail(str(e))
    t = Table(title=f"B - A over {seeds} paired seeds, A = {res['a']}, B = {res['b']} "
                    "(95 % t interval)")
    t.add_column("metric", no_wrap=True)
    for col in ("mean A", "mean B", "B - A", "95 % CI"):
        t.add_column(col, justify="right")
    for key, m in res["metrics"].items():
        money = key == "credit_losses" or key.startswith(("loss_", "sl_"))
        f = (lambda x: _fmt_money(x)) if money else (lambda x: f"{x:.3f}")
        t.add_row(key.replace("_", " "), f(m["mean_a"]), f(m["mean_b"]), f(m["diff"]),
                  f"[{f(m['ci_low'])}, {f(m['ci_high'])}]")
    out_console.print(t)
    if csv is not None:
        with _writing(csv):
            _write_compare_csv(csv, res)
        out_console.print(f"table written to {csv}", markup=False, highlight=False)


COMPARE_UNITS = {"credit_losses": "USD", "defaults": "borrowers",
                 "lender_failures": "lenders", "max_peak_price_fall": "fraction"}


def _write_compare_csv(path: Path, res: dict) -> None:
    """One row per metric: A, B, their paired difference B - A and its 95 % t interval, in
    the metric's own unit (dollars, counts, fractions: the unit column says which)."""
    import csv as csv_module
    import io

    from sim.io.atomic import atomic_write_bytes  # lazy: only compare --csv writes a file

    buf = io.StringIO()
    w = csv_module.writer(buf, lineterminator="\n")
    w.writerow(["metric", "unit", "a", "b", "seeds", "mean_a", "mean_b", "diff_b_minus_a",
                "ci95_low", "ci95_high"])
    for key, m in res["metrics"].items():
        unit = "USD" if key.startswith(("loss_", "sl_")) else COMPARE_UNITS.get(key, "")
        w.writerow([key, unit, res["a"], res["b"], len(res["seeds"]),
                    repr(m["mean_a"]), repr(m["mean_b"]), repr(m["diff"]), repr(m["ci_low"]),
                    repr(m["ci_high"])])
    atomic_write_bytes(path, buf.getvalue().encode())


@app.command()
def scenarios() -> None:
    """List the shipped scenarios with their descriptions."""
    t = Table(title=f"shipped scenarios ({SCENARIO_DIR})", show_lines=False)
    t.add_column("name", no_wrap=True)
    t.add_column("description")
    for name in list_scenarios():
        try:
            text = str(read_toml(name).get("description", ""))
        except ConfigError as e:
            text = f"(cannot be read: {e})"
        t.add_row(name, text)
    out_console.print(t)
    out_console.print("run one with: liqsim run NAME", markup=False, highlight=False)


@app.command()
def keys(
    prefix: Annotated[str | None, typer.Argument(help="Only keys starting with this, e.g. "
                                                      "'policy.repo' or 'lenders'")] = None,
) -> None:
    """List every config key with its default, bounds, unit and meaning."""
    rows = describe_keys(prefix)
    if not rows:
        hint = did_you_mean(prefix, {r.key: 0 for r in describe_keys()})
        _fail(f"no config key starts with '{prefix}'{hint}")
    t = Table(title="config keys (set with --set key=value or in a scenario TOML)")
    for col in ("key", "default", "allowed", "unit", "meaning"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r.key, r.default, r.bounds, r.unit, r.meaning)
    out_console.print(t)


@app.command()
def verify(
    directory: Annotated[Path, typer.Argument(
        help="A results or sweep directory (with manifest.json)")],
    sample: Annotated[int | None, typer.Option(
        parser=_int_flag(1), metavar="N",
        help="Sweeps: re-run N of the ledger's ok runs, evenly spaced (default: all)")] = None,
) -> None:
    """Re-run a results or sweep directory from its manifest: exit 0 if reproduced exactly,
    1 if not."""
    from sim.qa.provenance import verify as run_verify  # lazy: loads the model and sim.batch.sweep

    try:
        with _progress("runs") as prog:
            task = prog.add_task("verify", total=None)
            report = run_verify(directory, sample=sample, on_run=lambda i, n: prog.update(
                task, completed=i, total=n))
    except ConfigError as e:
        _fail(str(e))
    for line in report.lines():
        out_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def analyze(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A sweep output directory")],
    out: Annotated[Path | None, typer.Option(parser=_out_path, metavar="PATH",
                                             help="Where to write (default: DIR/analysis)")
                   ] = None,
) -> None:
    """Tables (CSV), figures (PNG) and a self-contained report.html of a finished sweep."""
    from sim.batch.analyze import analyze as run_analysis  # lazy: matplotlib, SALib, the model

    try:
        if out is not None:
            _check_writable(out)
        with _writing(out if out is not None else directory / "analysis"):
            paths = run_analysis(directory, out)
    except ConfigError as e:
        _fail(str(e))
    out_console.print(f"{len(paths)} files written to {paths[-1].parent}/ "
                      f"(open {paths[-1].name})", soft_wrap=True)


@app.command()
def validate(
    out: Annotated[Path, typer.Option(parser=_out_path, metavar="DIR", help="Output directory")
                   ] = Path("results/validation"),
    quick: Annotated[bool, typer.Option(help="Reduced Gai-Kapadia experiment (N = 200, "
                                             "fewer degrees and draws)")] = False,
) -> None:
    """Validation suite: classic models and observed episodes; exit 1 if any check fails."""
    from sim.qa import validate as val  # lazy: loads the model and matplotlib

    try:
        _check_writable(out)
    except ConfigError as e:
        _fail(str(e))
    result = val.run_all(quick=quick, progress=lambda m: err_console.print(
        f"validate: {m}", markup=False, highlight=False))
    with _writing(out):
        path = val.write_report(result, out)
    t = Table(title=f"liqsim validate ({'quick' if quick else 'full'})")
    for col in ("check", "measured", "result"):
        t.add_column(col)
    for c in result["checks"]:
        t.add_row(f"{c.id} {c.name}", c.measured,
                  "INFO" if c.info else ("PASS" if c.passed else "FAIL"))
    out_console.print(t)
    out_console.print(f"report written to {path}", highlight=False, soft_wrap=True)
    if not all(c.passed for c in result["checks"]):
        raise typer.Exit(1)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="Small sizes and few repeats (a smoke run)")] = False,
    sweeps: Annotated[bool, typer.Option(help="Also time sweeps against Mesa batch_run")] = False,
    repeats: Annotated[int, typer.Option(parser=_int_flag(1, 1000), metavar="N",
                                         help="Timed baseline runs (1..1000)")] = 20,
    max_borrowers: Annotated[int, typer.Option(parser=_int_flag(100, 100_000), metavar="N",
                                               help="Largest scaling size (100..100000)")
                             ] = 100_000,
    out: Annotated[Path, typer.Option(parser=_out_path, metavar="DIR", help="Output directory")
                   ] = Path("results/bench"),
) -> None:
    """Time liqsim against Mesa's BoltzmannWealth, its scaling, and check golden outputs."""
    from sim.qa.bench import run_bench  # lazy: loads the model

    try:
        _check_writable(out)
    except ConfigError as e:
        _fail(str(e))
    with _writing(out):
        res = run_bench(out, quick=quick, sweeps=sweeps, repeats=repeats,
                        max_borrowers=max_borrowers,
                        log=lambda m: err_console.print(f"bench: {m}", markup=False))
    b, s = res["baseline"], res["scaling"]
    t = Table(title="liqsim bench (medians after warm-up)", show_header=False)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("baseline run", f"{1000 * b['median_s']:.1f} ms")
    t.add_row("agent-steps/s (liqsim / Boltzmann)",
              f"{b['agent_steps_per_s']:,.0f} / {res['boltzmann']['agent_steps_per_s']:,.0f}"
              f" = {res['ratio_vs_boltzmann']:.2f}x")
    exp = s["exponent"]
    t.add_row("time exponent over 1k..100k borrowers", "n/a" if exp is None else f"{exp:.2f}")
    for p in s["points"]:
        t.add_row(f"{p['borrowers']:,} borrowers", f"failed: {p['error']}" if "error" in p
                  else f"{p['wall_s']:.2f} s, {p['peak_rss_mb']:,.0f} MB ({p['months']} months)")
    t.add_row("outputs identical to golden", str(res["verdicts"]["outputs_identical"]))
    if "sweeps" in res:
        t.add_row("sweeps", "skipped" if "skipped" in res["sweeps"] else "measured")
    out_console.print(t)
    out_console.print(f"results written to {out}/", soft_wrap=True)


@app.command(name="app")
def app_(
    scenario: Annotated[str | None, typer.Argument(help="Scenario the page starts on "
                                                        "(default: baseline)")] = None,
    port: Annotated[int, typer.Option(parser=_int_flag(1, 65535), metavar="N",
                                      help="Port (1..65535)")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to listen on: a name or an IPv4 or "
                                           "IPv6 address")] = "127.0.0.1",
    scenario_dir: Annotated[Path | None, typer.Option(
        parser=_out_path, metavar="DIR",
        help="Also offer the TOML files in DIR (the page loads nothing else but the shipped "
             "scenarios and SCENARIO)")] = None,
) -> None:
    """Serve the fire-sale app (Solara, on the Mesa model) at http://HOST:PORT, offline."""
    try:
        load_scenario(scenario)
        if scenario_dir is not None:
            _check_scenario_dir(scenario_dir)
    except ConfigError as e:
        _fail(str(e))
    from sim.views.app import (  # lazy: Solara, after the arguments are checked
        check_port,
        serve,
        url,
    )

    try:
        check_port(host, port)
    except ConfigError as e:
        _fail(str(e))
    err_console.print(f"liqsim app: {url(host, port)}  (Ctrl-C to stop)", markup=False)
    raise typer.Exit(serve(host, port, scenario, scenario_dir))


def _check_scenario_dir(d: Path) -> None:
    if not d.exists():
        raise ConfigError(f"--scenario-dir {d}: not found")
    if not d.is_dir():
        raise ConfigError(f"--scenario-dir {d}: not a directory")
    if not os.access(d, os.R_OK | os.X_OK):
        raise ConfigError(f"--scenario-dir {d}: cannot be read")


@app.command()
def animate(
    scenario: Annotated[str | None, typer.Argument(help="Scenario TOML file or shipped name "
                                                        "(default: baseline)")] = None,
    out: Annotated[Path | None, typer.Option(parser=_out_path, metavar="PATH",
                                             help="GIF to write (default: "
                                                  "results/<name>/cascade.gif)")] = None,
    seed: Annotated[int | None, typer.Option(parser=_int_flag(), metavar="N",
                                             help=SEED_HELP)] = None,
    months: Annotated[int | None, typer.Option(parser=_int_flag(), metavar="N",
                                               help=MONTHS_HELP + " (one frame each)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    fps: Annotated[int, typer.Option(parser=_int_flag(1, 30), metavar="N",
                                     help="Frames (months) per second (1..30)")] = 3,
) -> None:
    """Write a GIF of the cascade: network and price paths, one frame per month."""
    # lazy: matplotlib and the model
    from sim.views.animate import animate as run_animate
    from sim.views.animate import check_gif_path

    try:
        cfg = load_scenario(scenario, set_ or [], seed=seed, months=months)
        path = check_gif_path(out if out is not None else Path("results") / cfg.name
                              / GIF_NAME)
        _check_writable(path.parent)
        with _progress() as prog, _writing(path):
            task = prog.add_task(cfg.name, total=cfg.months)
            run_animate(cfg, path, fps=fps, on_month=lambda m: prog.update(task, completed=m))
    except ConfigError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _interrupted(f"no GIF written to {path}")
    out_console.print(f"{cfg.months} frames (one per month) written to {path}", soft_wrap=True)


@app.command()
def sweep(
    spec: Annotated[str, typer.Argument(help="Sweep spec TOML (see experiments/sweeps/)")],
    workers: Annotated[int | None, typer.Option(parser=_int_flag(1, 1024), metavar="N",
                                                help="Local worker processes (default: all "
                                                     "cores; 1 = in-process)")] = None,
    scheduler: Annotated[str | None, typer.Option(metavar="ADDRESS", help="Run on an existing "
                                                  "Dask cluster, e.g. tcp://host:8786")] = None,
    dask_local: Annotated[int | None, typer.Option(parser=_int_flag(1, 256), metavar="N",
                                                   help="Start a local Dask cluster of N "
                                                        "workers")] = None,
    out: Annotated[Path | None, typer.Option(parser=_out_path, metavar="DIR",
                                             help="Sweep directory "
                                                  "(default: results/sweeps/<name>)")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Re-run the runs the ledger records as "
                                                    "failed")] = False,
) -> None:
    """Run (or resume) a parameter sweep into a SQLite ledger; see docs/sweeps.md."""
    from sim.batch.sweep import run_sweep  # lazy: loads the model

    previous = signal.signal(signal.SIGTERM, _on_sigterm)  # stop the pool, release the lock
    try:
        res = run_sweep(spec, out=out, workers=workers, scheduler=scheduler,
                        dask_local=dask_local, retry_failed=retry_failed)
    except ConfigError as e:
        _fail(str(e))
    except _Terminated:
        _interrupted("terminated; every finished run is in the ledger, re-run the same command "
                     "to resume", code=143)
    except KeyboardInterrupt:
        _interrupted("every finished run is in the ledger, re-run the same command to resume")
    finally:
        signal.signal(signal.SIGTERM, previous)
    out_console.print(res.describe(), markup=False, highlight=False, soft_wrap=True)


def _is_usage_error(e: BaseException) -> bool:
    """Typer's (vendored click) usage errors, recognised without importing private modules."""
    return any(c.__name__ == "UsageError" for c in type(e).__mro__)


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors become one line and exit code 2, never a traceback."""
    try:
        # With standalone_mode=False, Typer returns the code of a typer.Exit instead of raising.
        rv = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err_console.print("liqsim: interrupted", markup=False)
        return 130
    except Exception as e:  # noqa: BLE001 - classified below, re-raised if not a usage error
        if type(e).__name__ == "NoArgsIsHelpError":
            return 0
        if _is_usage_error(e):
            err_console.print(_error_line(e.format_message()), markup=False,
                              highlight=False, soft_wrap=True)
            return 2
        if type(e).__name__ == "Abort":  # Ctrl-C while a command loads (Click's Abort)
            err_console.print("liqsim: interrupted", markup=False)
            return 130
        raise
    if rv == 130 and not _REPORTED:
        # Typer's own answer to a Ctrl-C that no command handled (e.g. while one loads)
        err_console.print("liqsim: interrupted", markup=False)
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
