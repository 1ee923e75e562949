"""Median wall time of one baseline run (60 months), after warm-up.

Usage: python experiments/bench_run.py [--repeats N]. Prints ``median N ms``. A benchmark, not a
test: the budget (100 ms on a 2-core machine) is checked by reading its output.
"""

from __future__ import annotations

import argparse
import statistics
import time

from sim.config import load_scenario
from sim.runner import run_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    cfg = load_scenario("baseline")
    for _ in range(3):  # warm-up: imports, caches
        run_scenario(cfg)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run_scenario(cfg)
        times.append(time.perf_counter() - t0)
    print(f"median {1000 * statistics.median(times):.0f} ms "
          f"(min {1000 * min(times):.0f}, max {1000 * max(times):.0f}, n={args.repeats})")


if __name__ == "__main__":
    main()
