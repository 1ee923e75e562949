"""Median wall time of one baseline run (60 months), after warm-up: the first figure of
``liqsim bench``, alone (``make bench``). The full benchmark is ``liqsim bench``.

Usage: python experiments/bench_run.py [--repeats N]. Prints ``median N ms``. A benchmark, not a
test: the target (30 ms on a 2-core machine, docs/performance.md) is checked by reading it.
"""

from __future__ import annotations

import argparse

from sim.qa.bench import bench_baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    r = bench_baseline(repeats=max(1, args.repeats))
    print(f"median {1000 * r['median_s']:.0f} ms (min {1000 * r['min_s']:.0f}, "
          f"max {1000 * r['max_s']:.0f}, n={r['repeats']}); "
          f"{r['agent_steps_per_s']:,.0f} agent-steps/s")


if __name__ == "__main__":
    main()
