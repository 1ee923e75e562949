"""liqsim's sweep engine vs Mesa's batch_run: runs/s and peak memory at 1 and 2 workers.

Usage: python experiments/batch_run_compare.py [--runs N] [--months M]
Writes results/bench/batch_run_compare.json (see sim/qa/bench_sweeps.py for what is measured).
A benchmark, not a test: run it once on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sim.io.atomic import write_json
from sim.qa.bench_sweeps import measure

OUT = Path("results/bench/batch_run_compare.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--months", type=int, default=None)
    args = parser.parse_args()
    res = measure(n_runs=args.runs, workers=(1, 2), months=args.months)
    write_json(OUT, res)
    print(json.dumps({k: res[k] for k in ("runs", "same_results", "ratios")}, indent=2))
    for r in res["results"]:
        print(f"{r['engine']:>15} x{r['workers']}: {r['runs_per_s']:6.2f} runs/s, "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB")
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
