"""Run the flagship sweeps (experiments/sweeps/flagship_*.toml), analyse them, keep the outputs.

Usage: python experiments/flagship.py [NAME ...] [--workers N] [--raw DIR] [--results DIR]

NAME is a short name (repo, lolr, repo_legacy, ltv_capacity, correlation_leverage, sobol) or
a full spec name; none means all six. Each sweep runs (or resumes) into ``--raw/<spec name>/``
(the ledger and time series: raw data, not committed), then ``liqsim analyze`` writes its
analysis there, and the small outputs (CSV tables and PNG figures under 1 MB, report.html
under 2 MB; see :data:`COPIED`) are copied to ``--results/<spec name>/``. Once the three policy
sweeps (:data:`POLICIES`) are in ``--raw``, the README's key figure and its table are drawn
from them into ``--results/policies/`` (:func:`policy_results`). Wall times go to
``--results/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from sim.batch.analyze import analyze, load, paired_table
from sim.batch.sweep import SWEEP_DIR, run_sweep
from sim.core.config import ConfigError
from sim.io.atomic import atomic_write_bytes, write_json
from sim.io.ledger import LEDGER
from sim.views.plots import new_figure, png_bytes

FLAGSHIPS = ("repo", "lolr", "repo_legacy", "ltv_capacity", "correlation_leverage", "sobol")
COPIED = {"*.csv": 1_000_000, "*.png": 1_000_000, "report.html": 2_000_000}  # name: max bytes
# The README's key figure: each policy on minus none, paired on the same seeds (the three
# sweeps share root_seed and replicates), vs the BTC shock's size. spec: (switch, label, the
# metric that is the policy's own loss, its colour in the figure)
POLICIES = {"flagship_repo": ("policy.repo.enabled", "secured repo", "losses.desk", "#1f77b4"),
            "flagship_lolr": ("policy.lolr.enabled", "buyer of last resort", "losses.lolr",
                              "#2ca02c"),
            "flagship_repo_legacy": ("policy.repo.enabled", "legacy desk", "losses.desk",
                                     "#d62728")}
SHOCK = "shocks.0.size"
# the parties of the decomposition (sim.world.losses.PARTS; the policy's own row is added per
# policy)
PARTIES = {"losses.lenders": "lenders", "losses.buyers": "secondary buyers",
           "losses.borrowers": "borrowers", "losses.outside": "outside sector"}
EXTRA = {"net_credit_losses": "lenders' net credit losses", "defaults": "borrower defaults",
         "losses.operating_income": "operating income (identity term)",
         "losses.discount": "stock discount (identity term)",
         "losses.holding_costs": "holding costs (identity term)"}


def spec_path(name: str) -> Path:
    stem = name if name.startswith("flagship_") else f"flagship_{name}"
    path = SWEEP_DIR / f"{stem}.toml"
    if not path.is_file():
        raise ConfigError(f"no flagship sweep '{name}' (choose from: {', '.join(FLAGSHIPS)})")
    return path


def keep_small(src: Path, dest: Path) -> list[str]:
    """Copy the analysis files under their size cap from src to a fresh dest; return names."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    kept = []
    for pattern, cap in COPIED.items():
        for f in sorted(src.glob(pattern)):
            if f.stat().st_size < cap:
                shutil.copy2(f, dest / f.name)
                kept.append(f.name)
    return kept


def run_one(name: str, workers: int, raw: Path, results: Path) -> dict:
    spec = spec_path(name)
    out = raw / spec.stem
    t0 = time.perf_counter()
    res = run_sweep(spec, out=out, workers=workers, progress=True)
    t_sweep = time.perf_counter() - t0
    analyze(out, out / "analysis")
    t_total = time.perf_counter() - t0
    kept = keep_small(out / "analysis", results / spec.stem)
    print(f"{spec.stem}: {res.describe()}; analysis {t_total - t_sweep:.1f} s; "
          f"{len(kept)} files in {results / spec.stem}/", file=sys.stderr)
    return {"runs": res.total, "ran_now": res.done, "failed": res.failed,
            "resumed_from_ledger": res.skipped, "sweep_seconds": round(t_sweep, 1),
            "analysis_seconds": round(t_total - t_sweep, 1), "files": kept}


def policy_table(raw: Path) -> pd.DataFrame:
    """Paired differences (policy on - none, per seed; mean and 95 % bootstrap interval) of the
    system loss, each party's loss and the extra rows, by policy and BTC shock size, from the
    three policy sweeps' ledgers in ``raw`` (``policy``, ``shock``, ``metric``, ``party``,
    ``n`` paired seeds, ``mean``, ``ci_low``, ``ci_high``, ``mean_none``, ``mean_policy``;
    $ or counts)."""
    frames = []
    for stem, (axis, label, own, _colour) in POLICIES.items():
        t = paired_table(load(raw / stem))
        t = t[(t["axis"] == axis) & (t["by"] == SHOCK)]
        names = {"losses.system_loss": "system loss",
                 "losses.system_loss_at_value": "system loss at value in best use",
                 **PARTIES, own: "the policy itself", **EXTRA}
        t = t[t["metric"].isin(names)].copy()
        t["policy"], t["party"] = label, t["metric"].map(names)
        frames.append(t.rename(columns={"by_value": "shock", "mean_a": "mean_none",
                                        "mean_b": "mean_policy"}))
    cols = ["policy", "shock", "metric", "party", "n", "mean", "ci_low", "ci_high",
            "mean_none", "mean_policy"]
    out = pd.concat(frames, ignore_index=True)[cols]
    return out.astype({"shock": float})


def policy_figure(table: pd.DataFrame) -> bytes:
    """The README's key figure: (a) the system loss, policy on - none, for the three policies
    with their 95 % intervals; (b-d) who gains and who pays under each (mean differences)."""
    fig = new_figure(11.0, 8.2)
    axes = fig.subplots(2, 2).ravel()
    m = 1e6
    ax = axes[0]
    colours = {label: colour for _axis, label, _own, colour in POLICIES.values()}
    for label, colour in colours.items():
        t = table[(table["policy"] == label) & (table["party"] == "system loss")]
        ax.plot(t["shock"], t["mean"] / m, "o-", color=colour, lw=1.8, ms=3.5, label=label)
        ax.fill_between(t["shock"], t["ci_low"] / m, t["ci_high"] / m, color=colour,
                        alpha=0.18, lw=0)
        t = table[(table["policy"] == label)
                  & (table["party"] == "system loss at value in best use")]
        ax.plot(t["shock"], t["mean"] / m, ":", color=colour, lw=1.6)
    ax.plot([], [], "k:", lw=1.6, label="(dotted: GPUs marked at value in best use)")
    ax.set_title("(a) system loss (GPUs marked at the price index): policy minus none",
                 fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    parties = ["lenders", "the policy itself", "secondary buyers", "borrowers",
               "outside sector"]
    styles = dict(zip(parties, ["#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#7f7f7f"],
                      strict=True))
    for ax, (letter, label) in zip(axes[1:], zip("bcd", colours, strict=True), strict=True):
        sel = table[table["policy"] == label]
        for party in parties:
            t = sel[sel["party"] == party]
            ax.plot(t["shock"], t["mean"] / m, "o-", color=styles[party], lw=1.3, ms=3,
                    label=party)
        t = sel[sel["party"] == "system loss"]
        ax.plot(t["shock"], t["mean"] / m, "k--", lw=2.0, label="system loss (sum)")
        ax.set_title(f"({letter}) {label}: who gains (< 0) and who pays (> 0)", fontsize=10)
        if letter == "b":
            ax.legend(frameon=False, fontsize=7.5, ncol=2)
    for ax in axes:
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.grid(alpha=0.3)
        ax.set_xlabel("BTC shock in month 3 (share of the price lost)", fontsize=9)
        ax.set_ylabel("loss difference, M$ (> 0: more loss)", fontsize=9)
    n = int(table["n"].max())
    fig.suptitle(f"crypto_winter, {n} paired seeds: each policy on minus none, losses marked "
                 "to market at the end of the run\n(positive = the policy adds to that party's "
                 "loss; negative = a saving)", fontsize=11)
    return png_bytes(fig)


def policy_results(raw: Path, results: Path) -> list[str]:
    """Write the policy table and the key figure to ``results/policies/`` when all three
    policy sweeps are in ``raw``; return the file names written (none when one is missing)."""
    if not all((raw / stem / LEDGER).is_file() for stem in POLICIES):
        return []
    table = policy_table(raw)
    dest = results / "policies"
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest / "paired_policy_losses.csv", table.to_csv(index=False).encode())
    atomic_write_bytes(dest / "key_figure.png", policy_figure(table))
    return ["paired_policy_losses.csv", "key_figure.png"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(FLAGSHIPS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--raw", type=Path, default=Path("results/sweeps"))
    parser.add_argument("--results", type=Path, default=Path("results/flagship"))
    args = parser.parse_args(argv)
    timings_path = args.results / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    t0 = time.perf_counter()
    try:
        for name in args.names:
            stem = spec_path(name).stem
            entry = run_one(name, args.workers, args.raw, args.results)
            if entry["ran_now"] == 0 and stem in timings:  # re-analysed only: keep the timing
                entry = {**timings[stem], **{k: entry[k] for k in ("analysis_seconds", "files")}}
            else:
                entry.update(workers=args.workers,
                             load_avg_after=[round(x, 2) for x in os.getloadavg()])
            timings[stem] = entry
            write_json(timings_path, timings)
        kept = policy_results(args.raw, args.results)
        if kept:
            print(f"policies: {', '.join(kept)} in {args.results / 'policies'}/",
                  file=sys.stderr)
    except ConfigError as e:
        print(f"flagship: error: {e}", file=sys.stderr)
        return 2
    print(f"all done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
