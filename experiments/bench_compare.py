"""Time one scenario's run on this tree against another git revision, side by side.

Usage: python experiments/bench_compare.py REV [--scenario baseline] [--rounds 12] [--runs 5]

REV is checked out into a temporary detached worktree. Each round starts one fresh process
per tree (in alternating order), which runs the scenario twice untimed (imports, numba's
cache, first-call costs) and then ``--runs`` times timed; the per-run wall times of all rounds
are pooled per tree. Alternating fresh processes spreads a busy machine's load over both
trees alike. Prints the median per tree, the ratio of medians (this tree / REV) with a
bootstrap 95 % interval over runs, and the CPU time ratio, and writes them as JSON to
``results/bench/compare_<REV>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys, time
sys.path.insert(0, {tree!r})
try:
    from sim.core.config import load_scenario
    from sim.world.runner import run_scenario
except ImportError:  # a tree from before the layer sub-packages (issue 18)
    from sim.config import load_scenario
    from sim.runner import run_scenario
cfg = load_scenario({scenario!r})
for _ in range(2):
    run_scenario(cfg)
wall, cpu = [], []
for _ in range({runs}):
    t0, c0 = time.perf_counter(), time.process_time()
    run_scenario(cfg)
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
import sim
assert sim.__file__.startswith({tree!r}), sim.__file__
print(json.dumps({{"wall": wall, "cpu": cpu}}))
"""


def _child(tree: Path, scenario: str, runs: int) -> dict:
    code = CHILD.format(tree=str(tree), scenario=scenario, runs=runs)
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ratio_ci(a: list[float], b: list[float], n: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    a_, b_ = np.asarray(a), np.asarray(b)
    r = [np.median(rng.choice(a_, a_.size)) / np.median(rng.choice(b_, b_.size))
         for _ in range(n)]
    return float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev")
    ap.add_argument("--scenario", default="baseline")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="liqsim-rev-") as tmp:
        other = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other),
                        args.rev], check=True, capture_output=True)
        try:
            times = {"this": {"wall": [], "cpu": []}, "rev": {"wall": [], "cpu": []}}
            for i in range(args.rounds):
                order = [("this", ROOT), ("rev", other)]
                for label, tree in (order if i % 2 == 0 else order[::-1]):
                    got = _child(tree, args.scenario, args.runs)
                    times[label]["wall"] += got["wall"]
                    times[label]["cpu"] += got["cpu"]
                print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(other)], capture_output=True)
    res = {"rev": args.rev, "scenario": args.scenario, "rounds": args.rounds,
           "runs_per_round": args.runs}
    for kind in ("wall", "cpu"):
        a, b = times["this"][kind], times["rev"][kind]
        lo, hi = _ratio_ci(a, b)
        res[kind] = {"this_median_ms": 1e3 * statistics.median(a),
                     "rev_median_ms": 1e3 * statistics.median(b),
                     "ratio": statistics.median(a) / statistics.median(b),
                     "ratio_ci95": [lo, hi], "n": len(a)}
        print(f"{kind}: this {res[kind]['this_median_ms']:.1f} ms, {args.rev} "
              f"{res[kind]['rev_median_ms']:.1f} ms, ratio {res[kind]['ratio']:.3f} "
              f"(95 % CI {lo:.3f}-{hi:.3f}, {len(a)} runs each)")
    out = ROOT / "results" / "bench" / f"compare_{args.rev}.json"
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
