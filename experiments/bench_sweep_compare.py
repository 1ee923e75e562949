"""Sweep throughput of this tree against another git revision, side by side (issue 19).

Usage: python experiments/bench_sweep_compare.py REV [--spec experiments/sweeps/flagship_sobol.toml]
       [--samples 8] [--replicates N] [--workers 1] [--rounds 3]

The spec is copied with ``samples`` (a Sobol or LHS design's base sample count) and optionally
``replicates`` replaced, so that a round takes a minute or two (the flagship Sobol spec at
``--samples 8`` is 8 x 12 points x 4 seeds = 384 runs, each with its cascade counterfactual).
REV is checked out into a temporary detached worktree. Each round runs the sweep once per
tree, in alternating order, each in a fresh process into a fresh directory, after one untimed
warm-up sweep per tree (numba's cache is tied to a source file's path, so the checkout of REV
compiles its kernels at its first sweep: about 40 s of CPU that no round should time)
(``run_sweep(..., progress=False)``; the process's start-up, imports and the pool's start are
outside the timed call, which is the sweep's own ``seconds``). Prints runs per second per tree
(median over rounds) and the ratio this / REV, and writes them to
``results/bench/sweep_compare_<REV>.json``. Both trees' ledgers must hold the same metrics:
the script checks the credit losses of every run agree.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys
sys.path.insert(0, {tree!r})
from sim.batch.sweep import run_sweep
from sim.io.ledger import read_runs
res = run_sweep({spec!r}, out={out!r}, workers={workers}, progress=False)
import sim
assert sim.__file__.startswith({tree!r}), sim.__file__
df = read_runs({out!r})
print(json.dumps({{"runs": res.done + res.failed, "failed": res.failed, "seconds": res.seconds,
                   "losses": sorted(zip(df.param_hash, df.seed.astype(int).tolist(),
                                        df.credit_losses.tolist()))}}))
"""


def _spec_copy(spec: Path, dest: Path, samples: int | None, replicates: int | None) -> Path:
    text = spec.read_text(encoding="utf-8")
    if samples is not None:
        text = re.sub(r"(?m)^samples\s*=.*$", f"samples = {samples}", text)
    if replicates is not None:
        text = re.sub(r"(?m)^replicates\s*=.*$", f"replicates = {replicates}", text)
    out = dest / spec.name
    out.write_text(text, encoding="utf-8")
    return out


def _child(tree: Path, spec: Path, out: Path, workers: int) -> dict:
    code = CHILD.format(tree=str(tree), spec=str(spec), out=str(out), workers=workers)
    got = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True)
    if got.returncode:
        raise SystemExit(f"{tree}: the sweep failed:\n{got.stderr[-2000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev")
    ap.add_argument("--spec", default=str(ROOT / "experiments" / "sweeps" / "flagship_sobol.toml"))
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--replicates", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rates: dict[str, list[float]] = {"this": [], "rev": []}
    losses: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="liqsim-sweep-rev-") as tmp:
        tmp_path = Path(tmp)
        spec = _spec_copy(Path(args.spec), tmp_path, args.samples, args.replicates)
        other = tmp_path / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other),
                        args.rev], check=True, capture_output=True)
        try:
            for label, tree in (("this", ROOT), ("rev", other)):  # untimed: compile or load
                _child(tree, spec, tmp_path / f"{label}_warm", args.workers)
            for i in range(args.rounds):
                order = [("this", ROOT), ("rev", other)]
                for label, tree in (order if i % 2 == 0 else order[::-1]):
                    got = _child(tree, spec, tmp_path / f"{label}_{i}", args.workers)
                    rates[label].append(got["runs"] / got["seconds"])
                    losses.setdefault(label, got["losses"])
                    print(f"round {i + 1}/{args.rounds} {label}: {got['runs']} runs, "
                          f"{got['seconds']:.1f} s, {rates[label][-1]:.2f} runs/s",
                          file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(other)], capture_output=True)
    same = losses["this"] == losses["rev"]
    this, rev = statistics.median(rates["this"]), statistics.median(rates["rev"])
    res = {"rev": args.rev, "spec": Path(args.spec).name, "samples": args.samples,
           "replicates": args.replicates, "workers": args.workers, "rounds": args.rounds,
           "runs": len(losses["this"]), "this_runs_per_s": rates["this"],
           "rev_runs_per_s": rates["rev"], "ratio": this / rev, "same_results": same}
    print(f"this {this:.2f} runs/s, {args.rev} {rev:.2f} runs/s, ratio {this / rev:.2f} "
          f"({args.rounds} rounds, {res['runs']} runs each, {args.workers} worker(s)); "
          f"same credit losses in every run: {same}")
    out = ROOT / "results" / "bench" / f"sweep_compare_{args.rev}.json"
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
