"""What a run axis could save inside the kernels (issue 19): each phase kernel called from
Python once per run, as the model calls it (numba's dispatch included), against the same
kernel called R times inside one compiled loop over R stacked copies of its inputs (no
dispatch, no Python between runs).

Usage: python experiments/run_axis_ceiling.py [--scenario crypto_winter] [--runs 64]
                                              [--month 30] [--out results/bench]

The inputs are captured from a live run at ``--month`` (or the kernel's last call before it),
so each kernel works on a real state. What it measures is an upper bound of the run axis's
saving *inside* the kernels' calls: a batched engine also removes the Python around the
kernels (measured separately by ``liqsim bench``) but cannot go below the compiled loop's
time, which is the kernels' own work. Each kernel's per-run time is scaled by its number of
calls in one run of the scenario. Writes ``run_axis_ceiling_<scenario>.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections import Counter
from pathlib import Path

import numba
import numpy as np
import psutil

from sim.core import jit
from sim.core.config import load_scenario
from sim.world.model import LiquidationModel


def capture(scenario: str, month: int) -> tuple[dict, Counter]:
    """Each kernel's arguments at its last call up to ``month`` (deep copies), and the number
    of calls of each kernel in one whole run."""
    cfg = load_scenario(scenario, [])
    LiquidationModel(cfg).run()  # compile or load every kernel first
    captured: dict = {}
    calls: Counter = Counter()
    original = jit.Kernel.__call__
    model: list[LiquidationModel] = []

    def spy(self, *args):
        if model:
            calls[self.__name__] += 1
            if model[0].env.t <= month:
                captured[self.__name__] = (model[0].env.t, copy.deepcopy(args), self)
        return original(self, *args)

    jit.Kernel.__call__ = spy
    try:
        m = LiquidationModel(cfg)
        model.append(m)
        m.run()
    finally:
        jit.Kernel.__call__ = original
    return captured, calls


def per_run_times(kernel: jit.Kernel, args: tuple, runs: int, calls: int = 400,
                  rounds: int = 6) -> tuple[float, float]:
    """Seconds per run: called from Python (a fresh copy of the inputs each call), and in one
    compiled loop over ``runs`` stacked copies."""
    f = kernel.compiled()
    f(*copy.deepcopy(args))
    copies = [copy.deepcopy(args) for _ in range(calls)]
    t0 = time.process_time()
    for c in copies:
        f(*c)
    python = (time.process_time() - t0) / calls
    names = [f"a{i}" for i in range(len(args))]
    call = ", ".join(f"{n}[r]" if isinstance(a, np.ndarray) else n
                     for n, a in zip(names, args, strict=True))
    namespace = {"k": f}
    exec(f"def drive(R, {', '.join(names)}):\n    for r in range(R):\n        k({call})\n",
         namespace)
    drive = numba.njit(namespace["drive"])
    stacked = [np.ascontiguousarray(np.stack([a] * runs)) if isinstance(a, np.ndarray) else a
               for a in args]
    drive(1, *copy.deepcopy(stacked))  # compile the loop
    states = [copy.deepcopy(stacked) for _ in range(rounds)]
    t0 = time.process_time()
    for s in states:
        drive(runs, *s)
    batched = (time.process_time() - t0) / (rounds * runs)
    return python, batched


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="crypto_winter")
    p.add_argument("--runs", type=int, default=64)
    p.add_argument("--month", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    a = p.parse_args()
    captured, calls = capture(a.scenario, a.month)
    rows, total_py, total_batched = [], 0.0, 0.0
    for name, (t, args, k) in sorted(captured.items()):
        python, batched = per_run_times(k, args, a.runs)
        total_py += python * calls[name]
        total_batched += batched * calls[name]
        rows.append({"kernel": name, "month": t, "arguments": len(args),
                     "calls_per_run": calls[name], "python_call_us": round(python * 1e6, 2),
                     "compiled_loop_us_per_run": round(batched * 1e6, 2),
                     "ratio": round(python / batched, 2)})
        print(f"{name:16s} month {t:3d}, {len(args):3d} args, {calls[name]:3d} calls a run: "
              f"{python * 1e6:7.2f} us from Python, {batched * 1e6:7.2f} us in a loop over "
              f"R = {a.runs} ({python / batched:4.2f}x)")
    out = {"scenario": a.scenario, "runs": a.runs, "month": a.month,
           "load_average": [round(x, 2) for x in psutil.getloadavg()],
           "kernels": rows, "per_run_ms_python": round(total_py * 1e3, 3),
           "per_run_ms_compiled_loop": round(total_batched * 1e3, 3)}
    print(f"a run's kernel calls: {total_py * 1e3:.2f} ms from Python, "
          f"{total_batched * 1e3:.2f} ms in a compiled loop (load {out['load_average']})")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"run_axis_ceiling_{a.scenario}.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
