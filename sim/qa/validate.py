"""`liqsim validate`: the model against the results the field knows and the episodes it saw.

Every check returns :class:`sim.qa.checks.common.Check` rows: what was expected (a value or a
band, fixed in :data:`sim.qa.checks.common.BANDS` before measuring), its source, what the model
measured and pass/fail. Bands come from the sourced figures of ``docs/calibration.md`` (quoted
with their tags) or from the paper a classic result is taken from; where a source gives a point
and we add a tolerance, the row says so. A band is never widened to make a check pass: a failing
check is reported as FAIL.

The checks live in :mod:`sim.qa.checks`, one module per family (issue 5):

1. ``classic``: the published three-bank examples of Eisenberg & Noe (2001), Rogers & Veraart
   (2013) and DebtRank (Battiston et al. 2012), the fixed numbers of the sourced figures;
2. ``gai_kapadia``: the Gai & Kapadia (2010) contagion window, with and without the fire-sale
   price (2a-2f, the standalone cascade of ``sim.core.contagion``), and ``gk_network``: the
   same on the model's own funding network, its builder, funding book and clearing at t0 (2g-2i,
   docs/validation.md "Gai-Kapadia on the model's funding network");
3. ``nesting``: the parametric market is exp(-alpha x) (Cifuentes, Shin & Ferrucci 2005), and
   the call auction against buyers laid out on that curve reproduces it within 2 %;
4. ``calibration``: calibration facts of the baseline with no shock: the frontier price of
   compute per year (4a, with ``compute``), used-H100 value at 36 months (4b), the value at a
   launch (4d, information), and the A100 rent over 2023-26 on the GPU backtest (4e);
5. ``asic_2022``: the 2022 crypto-miner episode (``experiments/scenarios/asic_2022.toml``):
   each rig class's price fall (5a), the repossessed collateral's market value at hand-over over
   the exposure at default (5b), the forced-sale discount (5c), no lender failed by its rig book
   alone (5d, an isolating counterfactual), with realised proceeds and the four 2022 settlements
   as information rows;
6. ``time_to_sell``: fire-sale discount against time to sell for a repossessed fleet;
7. ``fire_sale``: the Greenwood, Landier & Thesmar (2015) first-round fire-sale closed form,
   reproduced by the reduced mode of ``sim.core.firesale`` (issue 16), and the aggregate
   vulnerability of Duarte & Eisenbach (2021) of the baseline's lender network at t0
   (information rows: no sourced band).
8. ``backtest``: the GPU backtest 2023-03 -> 2026-03
   (``experiments/scenarios/gpu_backtest_2023.toml``, the H100 rent on its observed path): the
   used-H100 value path against the sourced used prices (issue 16; docs/validation.md, "Rent
   declines and the GPU backtest"); 8a with the H100's delivery lead time (the cap that binds),
   8e the peak against the installed equivalent of the sourced spot price (docs/validation.md,
   "Lead time of new units").

This module is the orchestrator: :data:`STEPS` lists the families in report order,
:func:`run_all` runs them; :func:`write_report` writes ``report.md``, ``results.json`` and the
figures (matplotlib ``Figure`` + Agg canvas, no pyplot) with atomic writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sim.io.atomic import atomic_write_bytes, write_json
from sim.qa.checks.asic_2022 import check_asic
from sim.qa.checks.backtest import BACKTEST, check_backtest
from sim.qa.checks.calibration import check_calibration
from sim.qa.checks.classic import check_classic
from sim.qa.checks.common import ROOT_SEED, Check
from sim.qa.checks.fire_sale import check_fire_sale_closed_form
from sim.qa.checks.gai_kapadia import GK_FULL, GK_QUICK, check_gai_kapadia
from sim.qa.checks.gk_network import check_gk_model
from sim.qa.checks.nesting import check_nesting
from sim.qa.checks.time_to_sell import SALE_DAYS, check_time_to_sell
from sim.views.plots import new_figure, png_bytes

# (label, function(quick) -> (rows, data or None), key in the results); tests may shorten it
STEPS: list[tuple[str, Callable[[bool], tuple], str]] = [
    ("classic three-bank examples", lambda q: (check_classic(), None), "classic"),
    ("Gai-Kapadia window", lambda q: check_gai_kapadia(GK_QUICK if q else GK_FULL),
     "gai_kapadia"),
    ("Gai-Kapadia on the model's funding network", lambda q: check_gk_model(), "gk_model"),
    ("nesting", lambda q: check_nesting(), "nesting"),
    ("calibration facts", lambda q: check_calibration(), "calibration"),
    ("asic_2022 episode", lambda q: check_asic(), "asic_2022"),
    ("time to sell", lambda q: check_time_to_sell(), "time_to_sell"),
    ("fire-sale closed form", lambda q: check_fire_sale_closed_form(), "fire_sale"),
    ("GPU backtest", lambda q: check_backtest(), "backtest"),
]


def run_all(quick: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Run every check; ``quick`` uses the reduced Gai-Kapadia experiment (GK_QUICK)."""
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    rows: list[Check] = []
    data: dict = {}
    for label, fn, key in STEPS:
        say(label)
        r, d = fn(quick)
        rows += r
        if d is not None:
            data[key] = d
    return {"checks": rows, "data": data, "quick": quick, "root_seed": ROOT_SEED,
            "seconds": time.perf_counter() - t0,
            "gk": asdict(GK_QUICK if quick else GK_FULL)}


def _fig_gk(gk: dict) -> bytes:
    fig = new_figure(7.5, 4.2, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    for key, label, c in (("base", "no fire sale", "C0"), ("fire_sale", "fire sale", "C3")):
        r = gk[key]
        ax.errorbar(r["z"], r["prob"], yerr=r["prob_se"], color=c, marker="o", ms=3,
                    label=f"P(contagion), {label}")
        ax.plot(r["z"], r["extent"], color=c, ls="--", marker="x", ms=4,
                label=f"extent | contagion, {label}")
    ax.set_xlabel("mean degree z")
    ax.set_ylabel("probability / share of banks failed")
    ax.set_title("Gai & Kapadia (2010) contagion window")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=7, loc="center right")
    return png_bytes(fig)


def _fig_gk_model(d: dict) -> bytes:
    res, ref = d["model_network"], d["standalone"]
    fig = new_figure(7.5, 4.2, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    for key, label, c in (("gk", "GK's sheets, zero recovery (2g)", "C0"),
                          ("model_gk_capital", "model's sheets, 4 % capital, zero recovery",
                           "C2"),
                          ("model", "model's sheets and clearing (2i)", "C3")):
        o = res["modes"][key]
        ax.errorbar(res["z"], o["prob"], yerr=o["prob_se"], color=c, marker="o", ms=3,
                    label=label)
    ax.plot(ref["z"], ref["prob"], color="k", ls=":", marker="x", ms=4,
            label=f"standalone GK cascade, N = {res['n']} (2h)")
    ax.set_xlabel("mean funding degree z (funders per lender)")
    ax.set_ylabel("P(contagion: >= 5 % of lenders fail)")
    ax.set_title(f"Gai & Kapadia on the model's funding network, N = {res['n']}")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=7, loc="upper right")
    return png_bytes(fig)


def _fig_nesting(cur: dict) -> bytes:
    fig = new_figure(6.5, 4.0, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(cur["x"], cur["exact"], color="k", lw=1, label="exp(-alpha x)")
    ax.plot(cur["x"], cur["parametric"], color="C0", ls="--", label="parametric mode")
    ax.plot(cur["x"], cur["auction"], color="C3", marker=".", ls="none",
            label=f"call auction, {cur['n_buyers']} buyers on the curve")
    ax.set_xlabel("fraction of the stock sold x")
    ax.set_ylabel("price / value")
    ax.set_title(f"Nesting: alpha = {cur['alpha']}")
    ax.legend(fontsize=8)
    return png_bytes(fig)


def _fig_sale(ts: dict) -> bytes:
    fig = new_figure(6.5, 4.0, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    days = list(SALE_DAYS)
    for n, d in ts["sweep"].items():
        ax.plot(days, [1 - d[str(x)] for x in days], marker="o", label=f"model, {int(n):,} GPUs")
    ax.plot([180, 90, 30, 7], [1.0, 0.85, 0.65, 0.45], color="k", ls=":", marker="s",
            label="vendor data (C, 2026)")
    ax.set_xscale("log")
    ax.set_xticks(days, [str(d) for d in days])
    ax.set_xlabel("days to sell")
    ax.set_ylabel("proceeds / value in best use")
    ax.set_title("Repossessed H100 fleet: proceeds vs time to sell")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=7)
    return png_bytes(fig)


FIGURES = {"gk_window.png": ("gai_kapadia", _fig_gk),
           "gk_model_network.png": ("gk_model", _fig_gk_model),
           "nesting.png": ("nesting", _fig_nesting),
           "fire_sale_time.png": ("time_to_sell", _fig_sale)}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _result(c: Check) -> str:
    return "INFO" if c.info else ("PASS" if c.passed else "**FAIL**")


def _backtest_table(bt: dict | None) -> list[str]:
    """The GPU backtest's month-by-month path (check 8), as report lines."""
    if not bt:
        return []
    lines = ["", "## GPU backtest, month by month", "",
             f"`{BACKTEST}`: the H100's observed rent (straight lines between the dated "
             "points), its value in best use (the same on every seed), the auction price index "
             f"(mean of {bt['n_seeds']} seeds) and the value over the new-unit price "
             f"({bt['new_unit_price']:,.0f} $); the value cap is the new-unit price paid at "
             "delivery after the lead time plus the net earnings forgone while waiting "
             "(the best type's, at x = 0). Checks 8a-8c and 8e above.", "",
             "| date | month | H100 rent $/h | lead time, months | value cap $ | "
             "value in best use $ | price index $ | value / new |",
             "|---|---|---|---|---|---|---|---|"]
    cap = bt.get("cap") or {"lead": [0.0] * len(bt["dates"]),
                            "cap": [bt["new_unit_price"]] * len(bt["dates"])}
    for t, date in enumerate(bt["dates"]):
        v = bt["value"][t]
        lines.append(f"| {date} | {t} | {bt['rent'][t]:.2f} | {cap['lead'][t]:.2f} | "
                     f"{cap['cap'][t]:,.0f} | {v:,.0f} | "
                     f"{bt['price_index'][t]:,.0f} | {v / bt['new_unit_price']:.2f} |")
    return lines


def render_report(result: dict) -> str:
    """The Markdown report: one table row per check, then the figures."""
    rows = result["checks"]
    n_fail = sum(not c.passed for c in rows)
    n_info = sum(c.info for c in rows)
    mode = "quick (reduced Gai-Kapadia)" if result["quick"] else "full"
    gk = result["gk"]
    lines = [
        "# liqsim validation report", "",
        f"Mode: {mode}. Gai-Kapadia: N = {gk['n']}, {gk['draws']} draws per z. Root seed "
        f"{result['root_seed']}. Wall time {result['seconds']:.1f} s. "
        f"**{len(rows) - n_info - n_fail} of {len(rows) - n_info} checks pass**"
        + (f" ({n_info} information rows)." if n_info else "."), "",
        "| check | expected | source | measured | result |",
        "|---|---|---|---|---|",
    ]
    for c in rows:
        lines.append(f"| {c.id} {_cell(c.name)} | {_cell(c.expected)} | {_cell(c.source)} | "
                     f"{_cell(c.measured)} | {_result(c)} |")
    lines += _backtest_table(result["data"].get("backtest"))
    lines += ["", "## Figures", ""]
    for name, (key, _fn) in FIGURES.items():
        if key in result["data"]:
            lines.append(f"![{name}]({name})")
            lines.append("")
    lines += ["Raw numbers: [results.json](results.json). Bands and checks: `sim/qa/checks/`; "
              "method and sources: `docs/validation.md`.", ""]
    return "\n".join(lines)


def _finite(obj):
    """JSON-safe copy: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(result: dict, outdir: str | Path) -> Path:
    """Write report.md, results.json and the figures into ``outdir`` (atomic writes)."""
    out = Path(outdir)
    for name, (key, fn) in FIGURES.items():
        if key in result["data"]:
            atomic_write_bytes(out / name, fn(result["data"][key]))
    payload = {k: v for k, v in result.items() if k != "checks"}
    payload["checks"] = [asdict(c) for c in result["checks"]]
    payload["all_passed"] = all(c.passed for c in result["checks"])
    write_json(out / "results.json", _finite(payload))
    path = out / "report.md"
    atomic_write_bytes(path, render_report(result).encode("utf-8"))
    return path
