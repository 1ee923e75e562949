"""Analysis of a finished sweep: ``liqsim analyze DIR`` (tables, figures, one HTML report).

Reads the sweep's ledger (``DIR/ledger.sqlite`` through :mod:`sim.io.ledger`) and writes to
``DIR/analysis/`` (or ``--out``):

* ``by_axis.csv``: for every metric along every axis, the mean and a 95 % bootstrap interval
  across seeds. The resampling unit is the replicate (seed): within one replicate the metric
  is first averaged over the other axes, so the interval reflects seed-to-seed variation of
  the paired design. With a single replicate the unit is the design point. Axes with more than
  :data:`MAX_LEVELS` distinct values (Latin hypercube, Sobol) are cut into :data:`N_BINS`
  equal-width bins, labelled by their centre. The values of a list-valued axis (or of an axis
  that mixes types in an older ledger) are labelled by their JSON text.
* ``points.csv``: every design point, mean and interval across its replicates.
* ``paired.csv`` (grid or Latin-hypercube designs with two or more replicates and a two-level
  axis, e.g. the repo desk off/on; a hypercube gives both levels the same draws): per seed, the
  difference level B minus level A of each metric, along each other axis, with its mean and
  bootstrap interval. Both levels run on the same seed, so the difference is a paired one.
* ``phase__<a>__<b>__<metric>.csv`` (grid designs with two or more axes): the two-parameter
  phase diagram of default share, credit losses and peak price fall, one row per value of
  ``a``, one column per value of ``b`` (other axes averaged out).
* ``sobol.csv`` (Saltelli designs): Sobol first-order (S1) and total-order (ST) indices with
  95 % bootstrap confidence half-widths, from ``SALib.analyze.sobol`` with
  ``calc_second_order=False`` on the metric averaged over replicates in design order, design
  points that coincide (an integer axis) sharing their runs (Sobol' 2001; Saltelli et al.
  2010, *Comput. Phys. Commun.* 181:259-270).
* PNG figures of all of the above and ``report.html``: a single self-contained file (figures
  embedded as base64 PNG, tables inline, no external scripts, styles or links). Tables and
  figures of an earlier analysis in the same directory that this one does not make are removed.

The bootstrap is the percentile bootstrap of the mean (Efron & Tibshirani 1993, *An
Introduction to the Bootstrap*, ch. 13) with :data:`N_BOOT` resamples from a fixed seed, so the
same ledger always gives the same intervals; a constant sample gives a zero-width interval.

Derived metrics: ``default_share`` = defaults / borrowers (the ``borrowers`` metric, or the
borrower counts of the sweep's resolved base scenario) and ``max_peak_price_fall`` = the
largest of the ``peak_price_fall.<generation>`` columns.
"""

from __future__ import annotations

import base64
import html
import re
import sqlite3
import textwrap
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from sim.core.config import ConfigError
from sim.core.keys import human_key
from sim.io.atomic import atomic_write_bytes
from sim.io.ledger import LEDGER, RUN_COLUMNS, canonical_json, json_kind, read_meta, read_runs
from sim.views.plots import dollars, new_figure, png_bytes

N_BOOT = 2000
BOOT_SEED = 20251201
CONF = 0.95
MAX_LEVELS = 12
N_BINS = 8
SOBOL_RESAMPLES = 500
DPI = 85
HEATMAPS = ("default_share", "credit_losses", "max_peak_price_fall")
HEATMAP_FALLBACK = {"default_share": "defaults"}
MAX_FIGURE_METRICS = 9
# the losses counted for everyone (metrics.system_loss on; sim.world.losses): summary "losses"
# (sim.world.losses.SUMMARY_KEYS; named here so that the analysis imports no model code)
LOSS_METRICS = tuple(f"losses.{k}" for k in (
    "lenders", "desk", "lolr", "buyers", "borrowers", "outside", "outside_buyers",
    "outside_suppliers", "outside_funders", "outside_other_borrowers", "system_loss",
    "system_loss_at_value",
    "lenders_credit", "lenders_recoveries", "lenders_net", "lenders_other",
    "borrowers_wiped_out", "desk_cash_flows", "desk_mark", "value_destroyed", "btc_value_fall",
    "operating_income", "discount", "holding_costs", "discount_outside", "desk_pnl"))
MONEY = ("credit_losses", "writeoffs", "recoveries", "unsold_inventory_value", "repo_peak_lent",
         *LOSS_METRICS)
LABELS = {"credit_losses": "credit losses ($)", "default_share": "default share",
          "defaults": "borrower defaults", "lender_failures": "lender failures",
          "max_peak_price_fall": "peak price fall (max over generations)"}


@dataclass
class Sweep:
    """The successful runs of one sweep and what the analysis needs to know about it."""

    runs: pd.DataFrame
    axes: list[str]
    metrics: list[str]
    design: str
    name: str
    n_failed: int
    meta: dict
    unit: str = "replicate"
    notes: list[str] = field(default_factory=list)


@dataclass
class Output:
    """What one analysis wrote: tables (name -> DataFrame) and figures (name -> PNG bytes)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- statistics
def boot_ci(x, n_boot: int = N_BOOT, seed: int = BOOT_SEED, conf: float = CONF
            ) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of the mean; non-finite values are dropped.

    One value (or ``n_boot`` = 0) gives (mean, nan, nan); no value gives three NaNs.
    Deterministic for a given seed.
    """
    a = np.asarray(x, dtype=float)
    a = a[np.isfinite(a)]
    if len(a) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(a) == 1 or n_boot < 1:
        return float(a.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)
    tail = 50.0 * (1.0 - conf)
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(a.mean()), float(min(lo, a.mean())), float(max(hi, a.mean()))


def _ci_row(x) -> dict:
    mean, lo, hi = boot_ci(x)
    return {"n": int(np.isfinite(np.asarray(x, dtype=float)).sum()), "mean": mean,
            "ci_low": lo, "ci_high": hi}


def sobol_indices(problem: dict, y: np.ndarray, seed: int = BOOT_SEED) -> pd.DataFrame:
    """First- and total-order Sobol indices with 95 % intervals (SALib, no second order)."""
    from SALib.analyze import sobol

    res = sobol.analyze(problem, np.asarray(y, dtype=float), calc_second_order=False,
                        num_resamples=SOBOL_RESAMPLES, conf_level=CONF, seed=seed)
    return pd.DataFrame({"parameter": list(problem["names"]), "S1": res["S1"],
                         "S1_conf": res["S1_conf"], "ST": res["ST"], "ST_conf": res["ST_conf"]})


# --------------------------------------------------------------------------- loading
def _axis_keys(meta: dict) -> list[str]:
    axes = meta.get("axes")
    if axes is None:
        axes = (meta.get("spec") or {}).get("axes", [])
    if isinstance(axes, dict):
        return list(axes)
    return [a["key"] if isinstance(a, dict) else str(a) for a in axes]


def _borrower_counts(runs: pd.DataFrame, meta: dict) -> pd.Series | None:
    """Borrowers per run: the ``borrowers`` metric, else the counts in the resolved base
    config (``meta["base"]``) with any swept ``borrowers.<type>.count`` axis applied."""
    if "borrowers" in runs:
        return runs["borrowers"]
    base = (meta.get("base") or {}).get("borrowers")
    if not isinstance(base, dict):
        return None
    total = pd.Series(0.0, index=runs.index)
    for kind, table in base.items():
        if isinstance(table, dict) and "count" in table:
            key = f"borrowers.{kind}.count"
            total += runs[key].astype(float) if key in runs else float(table["count"])
    return total


def _add_derived(runs: pd.DataFrame, metrics: list[str], meta: dict) -> list[str]:
    falls = [c for c in metrics if c.startswith("peak_price_fall.")]
    if falls and "max_peak_price_fall" not in runs:
        runs["max_peak_price_fall"] = runs[falls].max(axis=1)
        metrics = [*metrics, "max_peak_price_fall"]
    counts = _borrower_counts(runs, meta)
    if "defaults" in runs and counts is not None and "default_share" not in runs:
        runs["default_share"] = runs["defaults"] / counts.where(counts > 0)
        metrics = ["default_share", *metrics]
    return metrics


def load(out_dir: str | Path) -> Sweep:
    """Read a sweep directory; :class:`ConfigError` (one line) when there is nothing to read."""
    d = Path(out_dir)
    if not d.is_dir():
        raise ConfigError(f"{d}: " + ("not a directory" if d.exists() else
                                      "no such sweep directory"))
    if not (d / LEDGER).is_file():
        raise ConfigError(f"{d}: no ledger.sqlite here (not a sweep output directory)")

    try:
        runs, meta = read_runs(d), read_meta(d)
    except ConfigError:
        raise
    except (sqlite3.Error, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{d / LEDGER}: cannot read the ledger: {e}") from None
    if runs.empty:
        raise ConfigError(f"{d / LEDGER}: the ledger holds no runs yet")
    ok = runs[runs["status"] == "ok"].copy()
    if ok.empty:
        raise ConfigError(f"{d / LEDGER}: all {len(runs)} runs failed "
                          "(see their error column); nothing to analyse")
    axes = [a for a in _axis_keys(meta) if a in ok]
    for a in axes:
        ok[a] = _axis_labels(ok[a])
    skip = set(RUN_COLUMNS) | set(axes)
    metrics = [c for c in ok if c not in skip and pd.api.types.is_numeric_dtype(ok[c])
               and not pd.api.types.is_bool_dtype(ok[c])]
    for c in metrics:
        ok[c] = ok[c].astype(float)
    metrics = _add_derived(ok, metrics, meta)
    spec = meta.get("spec") or {}
    unit = "replicate" if "replicate" in ok and ok["replicate"].nunique() >= 2 else "point"
    return Sweep(runs=ok.reset_index(drop=True), axes=axes, metrics=metrics,
                 design=str(meta.get("design", spec.get("design", "grid"))),
                 name=str(spec.get("name", d.name)), n_failed=len(runs) - len(ok), meta=meta,
                 unit=unit)


def _axis_labels(values: pd.Series) -> pd.Series:
    """An axis's values as analysed: unchanged if they are all numbers, all booleans or all
    strings; otherwise (a list-valued key such as ``borrowers.miner.fleet_mix``, or a ledger
    that mixes ``0.2`` and ``"0.2"``, which specs now refuse) each value is labelled by its
    JSON text (``[0.5,0.5]``, ``"0.2"``), so that it can be grouped, sorted and plotted."""
    kinds = {json_kind(v) for v in values}
    if len(kinds) == 1 and kinds <= {"boolean", "number", "string"}:
        return values
    return values.map(canonical_json)


def _levels(values: pd.Series) -> pd.Series:
    """The axis as analysed: its values, or equal-width bin centres if it has many."""
    if values.nunique() <= MAX_LEVELS or not pd.api.types.is_numeric_dtype(values) \
            or pd.api.types.is_bool_dtype(values):
        return values
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi, N_BINS + 1)
    idx = np.clip(np.searchsorted(edges, values.to_numpy(float), side="right") - 1, 0,
                  N_BINS - 1)
    centres = (edges[:-1] + edges[1:]) / 2.0
    return pd.Series(np.round(centres[idx], 10), index=values.index, name=values.name)


def _figure_metrics(sw: Sweep) -> list[str]:
    """The metrics drawn (tables keep all): headline ones first; per-generation falls and
    metrics no run defines (all NaN) are left out."""
    keep = [m for m in sw.metrics if not m.startswith("peak_price_fall") and m != "borrowers"
            and np.isfinite(sw.runs[m].to_numpy(float)).any()]
    keep.sort(key=lambda m: list(LABELS).index(m) if m in LABELS else len(LABELS))
    return keep[:MAX_FIGURE_METRICS]


# --------------------------------------------------------------------------- tables
def per_unit(sw: Sweep, by: list[str], metric: str) -> pd.DataFrame:
    """Metric averaged within each (unit, by...) cell: one row per seed, one column per cell."""
    df = sw.runs.assign(**{f"_lv{i}": _levels(sw.runs[a]) for i, a in enumerate(by)})
    cols = [f"_lv{i}" for i in range(len(by))]
    wide = df.groupby([sw.unit, *cols])[metric].mean().unstack(cols)
    return wide


def axis_table(sw: Sweep) -> pd.DataFrame:
    """Mean and bootstrap interval of every metric at every level of every axis."""
    rows = []
    for axis in sw.axes:
        for metric in sw.metrics:
            wide = per_unit(sw, [axis], metric)
            for value in wide.columns:
                rows.append({"axis": axis, "value": value, "metric": metric,
                             **_ci_row(wide[value])})
    return pd.DataFrame(rows)


def points_table(sw: Sweep) -> pd.DataFrame:
    """Every design point: its axis values and each metric's mean and interval over seeds."""
    rows = []
    for point, grp in sw.runs.groupby("point", sort=True):
        base = {"point": point, **{a: grp[a].iloc[0] for a in sw.axes}}
        for metric in sw.metrics:
            rows.append({**base, "metric": metric, **_ci_row(grp[metric])})
    return pd.DataFrame(rows)


def two_level_axes(sw: Sweep) -> list[str]:
    return [a for a in sw.axes if sw.runs[a].nunique() == 2]


def paired_table(sw: Sweep) -> pd.DataFrame:
    """Per-seed paired differences (level B - level A) of every two-level axis, along the others."""
    rows = []
    for axis in two_level_axes(sw):
        a, b = sorted(sw.runs[axis].unique())
        for other in [x for x in sw.axes if x != axis] or [None]:
            for metric in sw.metrics:
                rows.extend(_paired_rows(sw, axis, a, b, other, metric))
    return pd.DataFrame(rows)


def _paired_rows(sw: Sweep, axis: str, a, b, other: str | None, metric: str) -> list[dict]:
    by = [axis] if other is None else [axis, other]
    wide = per_unit(sw, by, metric)
    if other is None:
        pairs = [(None, wide[a], wide[b])]
    else:
        others = sorted(set(wide.columns.get_level_values(1)))
        pairs = [(v, wide[(a, v)], wide[(b, v)]) for v in others]
    rows = []
    for value, xa, xb in pairs:
        diff = (xb - xa).to_numpy(float)
        rows.append({"axis": axis, "level_a": a, "level_b": b, "by": other or "",
                     "by_value": value, "metric": metric, "mean_a": boot_ci(xa, n_boot=0)[0],
                     "mean_b": boot_ci(xb, n_boot=0)[0], **_ci_row(diff)})
    return rows


def phase_tables(sw: Sweep) -> dict[tuple[str, str, str], pd.DataFrame]:
    """Wide tables (rows: values of a, columns: values of b) of the heatmap quantities."""
    out = {}
    for a, b in combinations(sw.axes, 2):
        for want in HEATMAPS:
            metric = want if want in sw.metrics else HEATMAP_FALLBACK.get(want)
            if metric not in sw.metrics:
                continue
            cell = sw.runs.groupby([a, b])[metric].mean()
            out[(a, b, metric)] = cell.unstack(b).sort_index().sort_index(axis=1)
    return out


def sobol_table(sw: Sweep) -> pd.DataFrame:
    """Sobol indices of every non-constant metric, ``Y`` = mean over replicates, design order."""
    problem = sw.meta.get("problem")
    if not problem:
        sw.notes.append("Sobol indices skipped: the ledger has no SALib problem.")
        return pd.DataFrame()
    rows = _design_rows(sw)
    frames = []
    for metric in sw.metrics:
        means = sw.runs.groupby("point")[metric].mean()
        y = means.reindex(rows).to_numpy(float)
        if not np.all(np.isfinite(y)):
            missing = sum(r not in means.index for r in rows)
            why = (f"{missing} design points have no successful run" if missing else
                   f"the metric is undefined (NaN) at {int((~np.isfinite(y)).sum())} design "
                   "points")
            sw.notes.append(f"Sobol indices of {metric} skipped: {why}.")
            continue
        if np.ptp(y) == 0:
            sw.notes.append(f"Sobol indices of {metric} skipped: the metric is constant.")
            continue
        frames.append(sobol_indices(problem, y).assign(metric=metric))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    return df[["metric", "parameter", "S1", "S1_conf", "ST", "ST_conf"]]


def _design_rows(sw: Sweep) -> list[int]:
    """For each design point, the ledger ``point`` whose runs are its runs.

    Points that coincide (an integer axis rounds two Saltelli samples to the same count, or a
    radial row equals its base row) share a parameter hash, so the sweep runs them once,
    under the index of the first one (``sim.batch.sweep.build_tasks``); every later copy takes that
    point's output. The estimator still sees all N*(D+2) evaluations of the model in design
    order: with an integer key the model is a step function of the sampled input, and
    Saltelli et al. (2010) only need its values at the sample points.
    """
    points = sw.meta.get("points") or []
    if not points:
        return list(range(int(sw.runs["point"].max()) + 1))
    first: dict[str, int] = {}
    return [first.setdefault(canonical_json(p), i) for i, p in enumerate(points)]


# --------------------------------------------------------------------------- figures
def _panels(n: int, width: float = 4.0, height: float = 3.0, ncols: int = 3):
    ncols = min(ncols, max(n, 1))
    nrows = -(-max(n, 1) // ncols)
    fig = new_figure(width * ncols, height * nrows + 0.5, dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def _is_numeric(values) -> bool:
    return all(isinstance(v, int | float | np.integer | np.floating)
               and not isinstance(v, bool | np.bool_) for v in values)


def _label(ax, metric: str) -> None:
    """Panel title; dollar tick labels ($12k, $1.5M) for money metrics."""
    ax.set_title(LABELS.get(metric, metric), fontsize=10)
    if metric in MONEY:
        ax.yaxis.set_major_formatter(FuncFormatter(dollars))


def _band(ax, x, mean, lo, hi, colour="#1f77b4", label=None) -> None:
    """Mean with its interval: a line and a band for numeric x, error bars otherwise."""
    x = list(x)
    if _is_numeric(x):
        ax.plot(x, mean, "o-", color=colour, lw=1.6, ms=3.5, label=label)
        ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
    else:
        pos = np.arange(len(x))
        err = np.vstack([np.asarray(mean) - np.asarray(lo), np.asarray(hi) - np.asarray(mean)])
        ax.errorbar(pos, mean, yerr=np.nan_to_num(err), fmt="o", color=colour, capsize=4,
                    label=label)
        ax.set_xticks(pos, [str(v) for v in x])


def axis_figure(sw: Sweep, table: pd.DataFrame, axis: str) -> bytes:
    metrics = _figure_metrics(sw)
    fig, axes = _panels(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        t = table[(table["axis"] == axis) & (table["metric"] == metric)]
        _band(ax, t["value"], t["mean"], t["ci_low"], t["ci_high"])
        _label(ax, metric)
        ax.set_xlabel(_human(sw, axis))
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sw.name}: metrics along {_human(sw, axis)} (mean, {CONF:.0%} bootstrap "
                 "interval "
                 f"across {_unit_label(sw)})", fontsize=11)
    return png_bytes(fig, DPI)


def _human(sw: Sweep, key: str) -> str:
    """The axis' human name (``shocks.0.size`` -> ``BTC shock in month 3``), key after it."""
    label = human_key(key, sw.meta.get("base") if isinstance(sw.meta, dict) else None)
    # wrapped: a long meaning under a small panel would squeeze the axes to nothing
    return key if label == key else textwrap.fill(f"{label} [{key}]", 48)


def _unit_label(sw: Sweep) -> str:
    return "seeds" if sw.unit == "replicate" else "design points"


def paired_figure(sw: Sweep, table: pd.DataFrame, axis: str, other: str | None,
                  metrics: list[str] | None = None) -> bytes:
    """Per-seed paired difference along ``other``, one panel per metric (default: all drawn)."""
    metrics = metrics or _figure_metrics(sw)
    two = len(metrics) in (2, 4)
    fig, axes = _panels(len(metrics), width=4.6 if two else 4.0, ncols=2 if two else 3)
    sel = table[(table["axis"] == axis) & (table["by"] == (other or ""))]
    a, b = sel["level_a"].iloc[0], sel["level_b"].iloc[0]
    for ax, metric in zip(axes, metrics, strict=True):
        t = sel[sel["metric"] == metric]
        x = t["by_value"] if other else [f"{_human(sw, axis)}: {b} - {a}"]
        _band(ax, x, t["mean"], t["ci_low"], t["ci_high"], colour="#d62728")
        ax.axhline(0.0, color="0.3", lw=0.8)
        _label(ax, metric)
        ax.set_ylabel(f"difference ({b} - {a})", fontsize=9)
        ax.set_xlabel(_human(sw, other) if other else "")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sw.name}: {_human(sw, axis)} = {b} minus {a}, paired on the same seeds\n"
                 f"(mean difference and {CONF:.0%} bootstrap interval across seeds)",
                 fontsize=11)
    return png_bytes(fig, DPI)


def phase_figure(sw: Sweep, tables: dict, a: str, b: str) -> bytes:
    keys = [k for k in tables if k[0] == a and k[1] == b]
    fig, axes = _panels(len(keys), width=4.6, height=3.8)
    for ax, key in zip(axes, keys, strict=True):
        t = tables[key]
        im = ax.imshow(t.to_numpy(float), origin="lower", aspect="auto", cmap="magma_r",
                       interpolation="nearest")
        ax.set_xticks(range(t.shape[1]), [f"{v:g}" if _is_numeric([v]) else str(v)
                                          for v in t.columns], rotation=45, fontsize=8)
        ax.set_yticks(range(t.shape[0]), [f"{v:g}" if _is_numeric([v]) else str(v)
                                          for v in t.index], fontsize=8)
        ax.set_xlabel(_human(sw, b))
        ax.set_ylabel(_human(sw, a))
        ax.set_title(LABELS.get(key[2], key[2]), fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.9,
                     format=FuncFormatter(dollars) if key[2] in MONEY else None)
    fig.suptitle(f"{sw.name}: phase diagram {_human(sw, a)} x {_human(sw, b)} (mean over "
                 "seeds)", fontsize=11)
    return png_bytes(fig, DPI)


def sobol_figure(sw: Sweep, table: pd.DataFrame, metric: str) -> bytes:
    t = table[table["metric"] == metric]
    fig = new_figure(max(6.0, 0.75 * len(t) + 2.0), 4.2, dpi=DPI)
    ax = fig.subplots()
    pos = np.arange(len(t))
    ax.bar(pos - 0.2, t["S1"], 0.4, yerr=t["S1_conf"], capsize=3, color="#1f77b4",
           label="first order S1")
    ax.bar(pos + 0.2, t["ST"], 0.4, yerr=t["ST_conf"], capsize=3, color="#ff7f0e",
           label="total order ST")
    ax.set_xticks(pos, list(t["parameter"]), rotation=35, ha="right", fontsize=8)
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_ylabel("Sobol index")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"{sw.name}: Sobol indices of {LABELS.get(metric, metric)} "
                 f"({CONF:.0%} bootstrap intervals)", fontsize=11)
    return png_bytes(fig, DPI)


# --------------------------------------------------------------------------- pipeline
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def build(sw: Sweep) -> Output:
    """All tables and figures of one sweep (nothing written yet)."""
    out = Output()
    out.tables["by_axis"] = axis_table(sw)
    out.tables["points"] = points_table(sw)
    for axis in sw.axes:
        name = f"axis__{_safe(axis)}"
        out.figures[name] = axis_figure(sw, out.tables["by_axis"], axis)
        out.captions[name] = f"Metrics along {axis}."
    if sw.design in ("grid", "lhs") and sw.unit == "replicate" and two_level_axes(sw):
        _add_paired(sw, out)
    if sw.design == "grid" and len(sw.axes) >= 2:
        _add_phase(sw, out)
    if sw.design == "sobol":
        _add_sobol(sw, out)
    return out


def _add_paired(sw: Sweep, out: Output) -> None:
    table = paired_table(sw)
    out.tables["paired"] = table
    # the paired differences of the system loss and of each party's loss, when the ledger
    # has them (a sweep run with metrics.system_loss; older ledgers have none)
    parts = [m for m in LOSS_METRICS if m in sw.metrics]
    if parts and len(table):
        order = {m: i for i, m in enumerate(parts)}
        losses = table[table["metric"].isin(parts)].copy()
        losses["_order"] = losses["metric"].map(order)
        out.tables["paired_losses"] = (losses.sort_values(["axis", "_order"], kind="stable")
                                       .drop(columns="_order").reset_index(drop=True))
        out.captions["paired_losses"] = (
            "Paired difference (second level minus first) of the system loss and of each "
            "party's loss (positive = a loss; sim.world.losses), with 95 % bootstrap intervals.")
    for axis in two_level_axes(sw):
        for other in [x for x in sw.axes if x != axis] or [None]:
            name = f"paired__{_safe(axis)}__by__{_safe(other or 'none')}"
            out.figures[name] = paired_figure(sw, table, axis, other)
            out.captions[name] = (f"Paired difference of {axis} along {other or 'nothing'}: "
                                  "per seed, the second level minus the first.")


def _add_phase(sw: Sweep, out: Output) -> None:
    tables = phase_tables(sw)
    for (a, b, metric), t in tables.items():
        out.tables[f"phase__{_safe(a)}__{_safe(b)}__{metric}"] = t.rename_axis(
            index=a, columns=b).reset_index()
    for a, b in combinations(sw.axes, 2):
        if any(k[:2] == (a, b) for k in tables):
            name = f"phase__{_safe(a)}__{_safe(b)}"
            out.figures[name] = phase_figure(sw, tables, a, b)
            out.captions[name] = f"Phase diagram: {a} (rows) x {b} (columns)."


def _add_sobol(sw: Sweep, out: Output) -> None:
    table = sobol_table(sw)
    if table.empty:
        return
    out.tables["sobol"] = table
    for metric in _figure_metrics(sw):
        if metric in set(table["metric"]):
            name = f"sobol__{metric}"
            out.figures[name] = sobol_figure(sw, table, metric)
            out.captions[name] = f"Sobol first- and total-order indices of {metric}."


def metric_unit(metric: str) -> str:
    """The unit a metric is in, in the CSVs, the report and the figures alike: ``$`` (the
    figures' $12k / $1.5M ticks), ``fraction`` (0.25 = 25 %), ``GPUs`` or ``count``."""
    if metric in MONEY:
        return "$"
    if any(k in metric for k in ("fall", "share", "discount", "lgd", "debtrank")):
        return "fraction"
    return "GPUs" if "units" in metric else "count"


def _with_units(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``unit`` column after its ``metric`` column, if it holds the metric's
    values (not the dimensionless Sobol indices of ``sobol.csv``)."""
    if ("metric" not in table.columns or "unit" in table.columns
            or not STAT_COLUMNS & set(table.columns)):
        return table
    out = table.copy()
    out.insert(list(out.columns).index("metric") + 1, "unit",
               [metric_unit(str(m)) for m in out["metric"]])
    return out


# the names of the files :func:`write` makes (besides report.html)
OWN_FILES = re.compile(r"(by_axis|points|paired|paired_losses|sobol)\.csv"
                       r"|(axis|paired|phase|sobol)__.+\.(csv|png)")


def write(sw: Sweep, out: Output, dest: Path) -> list[Path]:
    """Write every table (CSV), figure (PNG) and ``report.html`` atomically; return the paths.

    Tables and figures an earlier analysis left in ``dest`` that this one does not make (a
    ``sobol.csv`` whose indices are now skipped, say) are removed, so that the directory holds
    what the report describes; other files are left alone.
    """
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in out.tables.items():
        path = dest / f"{name}.csv"
        atomic_write_bytes(path, _with_units(table).to_csv(index=False).encode())
        paths.append(path)
    for name, png in out.figures.items():
        path = dest / f"{name}.png"
        atomic_write_bytes(path, png)
        paths.append(path)
    path = dest / "report.html"
    atomic_write_bytes(path, report_html(sw, out).encode("utf-8"))
    paths.append(path)
    for stale in sorted(set(dest.iterdir()) - set(paths)):
        if OWN_FILES.fullmatch(stale.name) and stale.is_file():
            stale.unlink()
    return paths


def analyze(out_dir: str | Path, dest: str | Path | None = None) -> list[Path]:
    """``liqsim analyze``: read ``out_dir``'s ledger, write the analysis to ``dest``."""
    sw = load(out_dir)
    target = Path(dest) if dest is not None else Path(out_dir) / "analysis"
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {target}: exists and is not a directory")
    return write(sw, build(sw), target)


# --------------------------------------------------------------------------- report
CSS = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;font-size:0.8em;margin:0.5em 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#f3f3f3}
img{max-width:100%}.note{color:#555;font-size:0.9em}"""
INLINE_ROWS = 200


STAT_COLUMNS = {"mean", "ci_low", "ci_high", "mean_a", "mean_b", "diff", "std"}


def _html_table(df: pd.DataFrame) -> str:
    """The table as HTML; money in the figures' form ($680M, not 6.804e+08)."""
    if len(df) > INLINE_ROWS:
        return (f"<p class='note'>{len(df)} rows: too long to show here; the CSV next to this "
                "report has them all.</p>")
    df = _with_units(df)
    if "unit" in df.columns and (df["unit"] == "$").any():
        df = df.astype(object)
        money = (df["unit"] == "$").to_numpy()
        for col in STAT_COLUMNS & set(df.columns):  # the statistics, not the axis values
            df.loc[money, col] = [dollars(x) if pd.notna(x) else "" for x in df.loc[money, col]]
    return df.to_html(index=False, border=0, na_rep="", escape=True,
                      float_format=lambda x: f"{x:.4g}",
                      formatters={c: _fmt_cell for c in df.columns if df[c].dtype == object})


def _fmt_cell(x) -> str:
    if isinstance(x, float | np.floating) and not isinstance(x, bool):
        return "" if np.isnan(x) else f"{x:.4g}"
    return str(x)


def _overview(sw: Sweep) -> str:
    spec = sw.meta.get("spec") or {}
    rows = [("sweep", sw.name), ("base scenario", spec.get("base", "")),
            ("design", sw.design), ("axes", ", ".join(sw.axes)),
            ("design points", sw.runs["point"].nunique()),
            ("replicate seeds", sw.runs["replicate"].nunique() if "replicate" in sw.runs else 1),
            ("successful runs", len(sw.runs)), ("failed runs", sw.n_failed),
            ("interval", f"{CONF:.0%} percentile bootstrap, {N_BOOT} resamples, across "
                         f"{_unit_label(sw)}")]
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


def report_html(sw: Sweep, out: Output) -> str:
    """One self-contained HTML page: overview, figures (base64 PNG) and tables inline."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>liqsim sweep "
             f"{html.escape(sw.name)}</title><style>{CSS}</style></head><body>",
             f"<h1>liqsim sweep analysis: {html.escape(sw.name)}</h1>", _overview(sw)]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in sw.notes]
    parts.append("<h2>Figures</h2>")
    for name, png in out.figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,"
                     f"{data}'><figcaption>{html.escape(out.captions.get(name, name))}"
                     "</figcaption></figure>")
    parts.append("<h2>Tables</h2>")
    for name, table in out.tables.items():
        parts.append(f"<h3>{html.escape(name)}.csv</h3>{_html_table(table)}")
    parts.append("</body></html>")
    return "\n".join(parts)
