"""Memory of a sweep's coordinating process over a long sweep (issue 20): it must stay flat.

Runs one sweep of ``--runs`` runs (default 10,000) that keep a time series (about 3 KB of
Parquet a run) on a local process pool, and samples the coordinator's resident memory (RSS,
psutil) every ``--every`` seconds together with the number of runs committed to the ledger
(read from the ledger itself, a second SQLite connection). Prints the RSS at the first commit
(start), at half the runs (middle) and at the last sample before the last run was committed
(end: the pass still running, its memory not yet released), the peak (the manifest, written
once every run is in, reads the whole ledger), and the growth per 1,000 runs (least squares
over the samples from 5 % of the runs to the last commit); ``--json PATH`` also writes every
sample. A benchmark, not a test: run it by hand, on a quiet machine.

The runs are real model runs (crypto_winter, 3 months, 4 series columns), or with
``--synthetic`` a stand-in that returns at once with a random series of 4 columns x 96
months (3 KB of doubles), which makes the coordinator the bottleneck and measures it alone
(100,000 runs in minutes).

Usage: python experiments/bench_coordinator.py [--runs N] [--workers N] [--synthetic]
       [--every S] [--json PATH]
Before issue 20's fix the coordinator grew by about 3 KB a run (every finished chunk's
results, series bytes included, stayed referenced until the pool pass ended).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from sim.batch.sweep import RunResult, RunTask, run_sweep, run_task

AXIS_VALUES = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]
SERIES = ["credit_losses", "lender_failures", "defaults_miner", "defaults_neocloud"]


def synthetic(task: RunTask) -> RunResult:
    """A run that returns at once: its metrics, and a random series (4 x 96 doubles)."""
    rng = np.random.default_rng(task.seed)
    series = {"month": np.arange(96), **{c: rng.random(96) for c in task.series}}
    return RunResult(task.key, "ok", None, {m: float(rng.random()) for m in task.metrics},
                     0.0, "bench", series)


def write_spec(d: Path, runs: int) -> Path:
    replicates = -(-runs // len(AXIS_VALUES))
    spec = d / "coordinator.toml"
    spec.write_text(f'name = "coordinator"\nbase = "crypto_winter"\nmonths = 3\n'
                    f"replicates = {replicates}\n"
                    'metrics = ["credit_losses", "defaults", "lender_failures"]\n'
                    f"series = {json.dumps(SERIES)}\n"
                    '[[axes]]\nkey = "buyers.capacity_scale"\n'
                    f"values = {json.dumps(AXIS_VALUES)}\n", encoding="utf-8")
    return spec


class Sampler(threading.Thread):
    """(seconds, runs in the ledger, coordinator RSS in MB) every ``every`` seconds."""

    def __init__(self, ledger: Path, every: float) -> None:
        super().__init__(daemon=True)
        self.ledger, self.every = ledger, every
        self.samples: list[tuple[float, int, float]] = []
        self.db: sqlite3.Connection | None = None
        self.stop = threading.Event()
        self.proc = psutil.Process()

    def committed(self) -> int:
        # one connection for the whole sweep: with a new one every sample, the same code read
        # +0.85 MB per 1,000 runs instead of +0.15 (this thread's allocations are the
        # coordinator's RSS too)
        if self.db is None:
            if not self.ledger.exists():
                return 0
            self.db = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True, timeout=1,
                                      check_same_thread=False)
        try:
            return self.db.execute("SELECT count(*) FROM runs").fetchone()[0]
        except sqlite3.Error:
            return -1  # the ledger is being created

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.wait(self.every):
            n = self.committed()
            if n >= 0:
                self.samples.append((time.perf_counter() - t0, n,
                                     self.proc.memory_info().rss / 2**20))
        if self.db is not None:
            self.db.close()


def at(samples, runs: int) -> tuple[int, float]:
    """The first sample with at least ``runs`` committed: (runs, RSS MB)."""
    for _t, n, rss in samples:
        if n >= runs:
            return n, rss
    return samples[-1][1], samples[-1][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="liqsim-coordinator-") as tmp:
        d = Path(tmp)
        out = d / "sweep"
        sampler = Sampler(out / "ledger.sqlite", args.every)
        sampler.start()
        t0 = time.perf_counter()
        res = run_sweep(write_spec(d, args.runs), out=out, workers=args.workers,
                        progress=False, runner=synthetic if args.synthetic else run_task)
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
    samples = [s for s in sampler.samples if s[1] > 0]
    total = res.total
    before_end = [s for s in samples if s[1] < total]  # the pass still running
    end = before_end[-1][1:] if before_end else at(samples, total)
    rows = [("start", *at(samples, 1)), ("middle", *at(samples, total // 2)), ("end", *end)]
    late = [(n, rss) for _t, n, rss in samples if 0.05 * total <= n < total]
    slope = (float(np.polyfit([n for n, _ in late], [r for _, r in late], 1)[0]) * 1000
             if len({n for n, _ in late}) > 1 else float("nan"))
    kind = "synthetic" if args.synthetic else "model"
    print(f"{total:,} {kind} runs with series on {args.workers} workers in {wall:.0f} s "
          f"({res.done} done, {res.failed} failed); coordinator RSS (pid {os.getpid()}):")
    for label, n, rss in rows:
        print(f"  {label:6s} {n:>9,} runs committed  {rss:7.1f} MB")
    print(f"  growth from 5 % of the runs to the end: {slope:+.3f} MB per 1,000 runs; "
          f"peak {max(r for _t, _n, r in samples):.1f} MB; {len(samples)} samples")
    if args.json:
        args.json.write_text(json.dumps({
            "runs": total, "kind": kind, "workers": args.workers, "wall_s": wall,
            "python": sys.version.split()[0],
            "points": {label: {"runs": n, "rss_mb": rss} for label, n, rss in rows},
            "mb_per_1000_runs": slope,
            "samples": [{"s": t, "runs": n, "rss_mb": r} for t, n, r in samples]}, indent=1))


if __name__ == "__main__":
    main()
