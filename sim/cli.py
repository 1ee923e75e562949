"""The ``liqsim`` command line (Typer). Bad input exits with code 2 and one line on stderr."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sim.config import ConfigError, list_scenarios, load_scenario

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="liqsim: the liquidation market for repossessed AI GPUs.")
out_console = Console()
err_console = Console(stderr=True)


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


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}"
                    "/{task.total}"), TimeRemainingColumn(), console=err_console, transient=True,
                    disable=not err_console.is_terminal)


def _fmt_money(x: float) -> str:
    return f"${x / 1e6:,.1f} M"


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
    t.add_row("cascade beyond the first wave", str(s["cascade_size"]))
    t.add_row("credit losses", _fmt_money(s["credit_losses"]))
    t.add_row("realised LGD vs paper LGD", f"{_pct(s['realised_lgd'])} vs {_pct(s['paper_lgd'])}")
    for key, label in (("peak_price_fall", "peak-to-trough fall of price / value"),
                       ("peak_price_fall_raw", "peak-to-trough fall of the raw price")):
        falls = ", ".join(f"{k} {100 * v:.0f} %" for k, v in s[key].items())
        t.add_row(label, falls or "n/a")
    t.add_row("fire-sale discount to fundamental", _pct(s["fire_sale_discount"]))
    t.add_row("salvaged GPUs", f"{s['salvage_units']:,}")
    t.add_row("lender failures", str(s["lender_failures"]))
    t.add_row("DebtRank (max single / realised)",
              f"{s['debtrank']['max_single']:.3f} / {s['debtrank']['realised']:.3f}")
    t.add_row("repo desk", "on" if s["repo_enabled"] else "off")
    return t


@app.command()
def run(
    scenario: Annotated[str | None, typer.Argument(help="Scenario TOML file or shipped name "
                                                        "(default: baseline)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, key.path=value "
                                                                 "(repeatable)")] = None,
    seed: Annotated[int | None, typer.Option(parser=_int_flag(), metavar="N",
                                             help="Random seed")] = None,
    months: Annotated[int | None, typer.Option(parser=_int_flag(), metavar="N",
                                               help="Months to simulate")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory "
                                                  "(default: results/<name>)")] = None,
    figures: Annotated[bool, typer.Option(help="Write PNG figures")] = True,
) -> None:
    """Run one scenario and write results/<name>/."""
    from sim import store
    from sim.runner import run_scenario

    try:
        cfg = load_scenario(scenario, set_ or [], seed=seed, months=months)
        outdir = out if out is not None else Path("results") / cfg.name
        _check_writable(outdir)
    except ConfigError as e:
        _fail(str(e))
    try:  # the model reads some inputs (a network edge list) only when it is built
        with _progress() as prog:
            task = prog.add_task(f"{cfg.name}: months", total=cfg.months)
            model = run_scenario(cfg, on_month=lambda m: prog.update(task, completed=m))
    except ConfigError as e:
        _fail(str(e))
    summary = store.write_run(model, outdir)
    if figures:
        from sim.plots import write_figures
        write_figures(model, outdir)
    out_console.print(_summary_table(summary))
    out_console.print(f"results written to {outdir}/")


def _check_writable(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError(f"--out {outdir}: exists and is not a directory")
    probe = outdir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--out {outdir}: {probe} is not a directory")
    import os
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"--out {outdir}: directory is not writable")


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="Scenario A (TOML file or shipped name)")],
    b: Annotated[str, typer.Argument(help="Scenario B")],
    seeds: Annotated[int, typer.Option(parser=_int_flag(2, 100_000), metavar="N",
                                       help="Paired seeds (2..100000)")] = 20,
    months: Annotated[int | None, typer.Option(parser=_int_flag(), metavar="N",
                                               help="Months to simulate")] = None,
) -> None:
    """Run A and B on the same seeds and print paired differences (B - A) with 95 % CIs."""
    from sim.runner import compare as run_compare

    try:
        ca = load_scenario(a, months=months)
        cb = load_scenario(b, months=months)
    except ConfigError as e:
        _fail(str(e))
    try:  # the models read some inputs (a network edge list) only when they are built
        with _progress() as prog:
            task = prog.add_task("paired runs", total=2 * seeds)
            res = run_compare(ca, cb, seeds, on_run=lambda: prog.advance(task))
    except ConfigError as e:
        _fail(str(e))
    t = Table(title=f"B - A over {seeds} paired seeds, A = {res['a']}, B = {res['b']} "
                    "(95 % t interval)")
    t.add_column("metric", no_wrap=True)
    for col in ("mean A", "mean B", "B - A", "95 % CI"):
        t.add_column(col, justify="right")
    for key, m in res["metrics"].items():
        money = key == "credit_losses"
        f = (lambda x: _fmt_money(x)) if money else (lambda x: f"{x:.3f}")
        t.add_row(key.replace("_", " "), f(m["mean_a"]), f(m["mean_b"]), f(m["diff"]),
                  f"[{f(m['ci_low'])}, {f(m['ci_high'])}]")
    out_console.print(t)


@app.command()
def scenarios() -> None:
    """List the shipped scenarios."""
    for name in list_scenarios():
        out_console.print(name)


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
        err_console.print("liqsim: aborted", markup=False)
        return 130
    except Exception as e:  # noqa: BLE001 - classified below, re-raised if not a usage error
        if type(e).__name__ == "NoArgsIsHelpError":
            return 0
        if _is_usage_error(e):
            err_console.print(_error_line(e.format_message()), markup=False,
                              highlight=False, soft_wrap=True)
            return 2
        if type(e).__name__ == "Abort":
            return 130
        raise
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
