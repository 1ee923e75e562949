"""Run the flagship sweeps (experiments/sweeps/flagship_*.toml), analyse them, keep the outputs.

Usage: python experiments/flagship.py [NAME ...] [--workers N] [--raw DIR] [--results DIR]

NAME is a short name (repo, ltv_capacity, correlation_leverage, sobol) or a full spec name;
none means all four. Each sweep runs (or resumes) into ``--raw/<spec name>/`` (the ledger and
time series: raw data, not committed), then ``liqsim analyze`` writes its analysis there, and
the small outputs (CSV tables and PNG figures under 1 MB, report.html under 2 MB; see
:data:`COPIED`) are copied to ``--results/<spec name>/``, plus ``key_figure.png`` for the
repo experiment (the README's figure). Wall times go to ``--results/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from sim.analyze import analyze, load, paired_figure, paired_table
from sim.config import ConfigError
from sim.store import atomic_write_bytes, write_json
from sim.sweep import SWEEP_DIR, run_sweep

FLAGSHIPS = ("repo", "ltv_capacity", "correlation_leverage", "sobol")
COPIED = {"*.csv": 1_000_000, "*.png": 1_000_000, "report.html": 2_000_000}  # name: max bytes
# The README's key figure: repo desk on minus off, paired on the same seeds, vs BTC shock size.
KEY_FIGURE = {"flagship_repo": ("policy.repo.enabled", "shocks.0.size",
                                ["credit_losses", "defaults", "lender_failures",
                                 "max_peak_price_fall"])}


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
    if spec.stem in KEY_FIGURE:
        axis, other, metrics = KEY_FIGURE[spec.stem]
        sw = load(out)
        atomic_write_bytes(results / spec.stem / "key_figure.png",
                           paired_figure(sw, paired_table(sw), axis, other, metrics))
        kept.append("key_figure.png")
    print(f"{spec.stem}: {res.describe()}; analysis {t_total - t_sweep:.1f} s; "
          f"{len(kept)} files in {results / spec.stem}/", file=sys.stderr)
    return {"runs": res.total, "ran_now": res.done, "failed": res.failed,
            "resumed_from_ledger": res.skipped, "sweep_seconds": round(t_sweep, 1),
            "analysis_seconds": round(t_total - t_sweep, 1), "files": kept}


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
    except ConfigError as e:
        print(f"flagship: error: {e}", file=sys.stderr)
        return 2
    print(f"all done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
