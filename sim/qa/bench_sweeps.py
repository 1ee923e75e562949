"""liqsim's sweep engine against Mesa's ``batch_run`` on the same model and grid.

:func:`measure` runs one grid (:data:`GRID` over the :data:`BASE` scenario, replicated on
seeds from one root seed) through both engines, at each number of workers, each in a fresh
Python process so that neither inherits the other's imports, caches or memory:

* ``mesa_batch_run``: ``mesa.batchrunner.batch_run(BatchRunModel, GRID, rng=seeds,
  number_processes=w)``. :class:`BatchRunModel` is :class:`sim.world.model.LiquidationModel` built
  from keyword parameters (dotted scenario keys) with a Mesa ``DataCollector`` that records
  the headline metrics when the run ends, which is what ``batch_run`` requires.
* ``liqsim_sweep``: :func:`sim.batch.sweep.run_sweep` on a spec with the same base, grid, months and
  replicates, writing its SQLite ledger as usual.

Reported for each: runs per second (runs / wall time of the call, interpreter start and
imports excluded; they are reported separately as ``process_seconds``), and the peak memory
of the process tree (the process and all its worker processes, sampled with psutil every
:data:`SAMPLE_S` s; ``sampler_cpu_s`` is the CPU time the sampling itself took):
``peak_pss_mb`` sums the proportional set size, which counts a page shared by a parent and its
forked workers once; ``peak_rss_mb`` sums RSS, which counts it in every process (an upper
bound). ``pss_trace_mb`` is the PSS profile over the run (about 20 samples), to see whether
memory stays flat as runs accumulate. The two engines run the same
model on the same seeds, so the credit losses of every run must agree; ``same_results`` says
whether they do.

Used by ``experiments/batch_run_compare.py`` (writes ``results/bench/batch_run_compare.json``)
and reusable by ``liqsim bench``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from mesa.datacollection import DataCollector

from sim.batch.sweep import run_sweep
from sim.core.config import load_scenario
from sim.core.seeds import replicate_seeds
from sim.io.ledger import read_runs
from sim.world import metrics
from sim.world.model import LiquidationModel

BASE = "crypto_winter"
GRID: dict[str, list] = {"policy.repo.enabled": [False, True],
                         "shocks.0.size": [0.0, 0.2, 0.4, 0.6, 0.8]}
ROOT_SEED = 20251201
REPORTED = ("credit_losses", "defaults", "lender_failures")
# One sample reads /proc/<pid>/smaps of every process in the tree: about 18 ms of CPU for a
# parent and two workers on this 2-core machine. At 0.02 s the sampler took about 40 % of a
# core from the engines it measured and cut liqsim's 2-worker speed-up from 1.89x (measured
# with no sampler) to 1.65x; at 0.5 s it takes about 4 % (0.3-0.6 s of an 11-25 s run). The
# runs last 10-30 s, so 20-60 samples still see memory grow or stay flat.
SAMPLE_S = 0.5
ENGINES = ("mesa_batch_run", "liqsim_sweep")


class BatchRunModel(LiquidationModel):
    """``LiquidationModel`` taking keyword parameters, the form ``batch_run`` calls.

    ``BatchRunModel(base="crypto_winter", months=12, rng=seed, **{"shocks.0.size": 0.4})``
    reads the base scenario with each keyword applied as a ``--set`` override and the seed as
    the scenario seed, exactly as a sweep run does.
    """

    def __init__(self, base: str = BASE, months: int | None = None, rng: int | None = None,
                 **params) -> None:
        overrides = [f"{k}={json.dumps(v)}" for k, v in params.items()]
        super().__init__(load_scenario(base, overrides, seed=rng, months=months))
        self.final: dict = {}
        self.datacollector = DataCollector(model_reporters={"final": "final"})

    def step(self) -> None:
        super().step()
        if not self.running:  # the run is over: record the headline metrics once
            # as a sweep does: only what the REPORTED metrics need (no cascade
            # counterfactual, no DebtRank)
            s = metrics.summary(self, keys=REPORTED)
            self.final = {k: s[k] for k in REPORTED}
            self.datacollector.collect(self)


# --------------------------------------------------------------------------- one engine
def _run_batch(workers: int, replicates: int, months: int | None) -> list[dict]:
    from mesa.batchrunner import batch_run

    params = {**GRID, "base": BASE, "months": months}
    seeds = replicate_seeds(ROOT_SEED, replicates)  # the sweep's seeds
    rows = batch_run(BatchRunModel, params, number_processes=workers, rng=seeds,
                     display_progress=False)
    keys = list(GRID)
    return [{"params": {k: r[k] for k in keys}, "seed": int(r["rng"]), **r["final"]}
            for r in rows]


def _spec_text(replicates: int, months: int | None) -> str:
    lines = ['name = "batch_run_compare"', f'base = "{BASE}"', f"replicates = {replicates}",
             f"root_seed = {ROOT_SEED}", 'design = "grid"',
             f"metrics = {json.dumps(list(REPORTED))}"]
    if months is not None:
        lines.append(f"months = {months}")
    for key, values in GRID.items():
        lines += ["", "[[axes]]", f'key = "{key}"', f"values = {json.dumps(values)}"]
    return "\n".join(lines) + "\n"


def _run_sweep(workers: int, replicates: int, months: int | None) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="liqsim-bench-") as tmp:
        spec = Path(tmp) / "grid.toml"
        spec.write_text(_spec_text(replicates, months), encoding="utf-8")
        run_sweep(spec, out=Path(tmp) / "out", workers=workers, progress=False)
        runs = read_runs(Path(tmp) / "out")
    keys = list(GRID)
    return [{"params": {k: r[k] for k in keys}, "seed": int(r["seed"]),
             **{m: r[m] for m in REPORTED}} for r in runs.to_dict("records")]


def child(engine: str, workers: int, replicates: int, months: int | None) -> dict:
    """Run one engine in this process; timing of the call only."""
    run = _run_batch if engine == "mesa_batch_run" else _run_sweep
    t0 = time.perf_counter()
    rows = run(workers, replicates, months)
    seconds = time.perf_counter() - t0
    key = sorted((json.dumps(r["params"], sort_keys=True), r["seed"], r["credit_losses"])
                 for r in rows)
    return {"runs": len(rows), "seconds": seconds, "results": key}


# --------------------------------------------------------------------------- the harness
def _tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over a process and all its descendants.

    PSS (proportional set size, Linux) divides each shared page among the processes that map
    it, so the sum over a parent and its forked workers counts every page once; RSS counts
    shared pages in every process. Where PSS is not available it is reported as RSS.
    """
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.AccessDenied:
            info = p.memory_info()
        except psutil.Error:  # a worker that just exited
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


def _measured(engine: str, workers: int, replicates: int, months: int | None) -> dict:
    """One engine in a fresh interpreter: wall time, runs/s and the sampled peak tree RSS."""
    cmd = [sys.executable, "-m", "sim.qa.bench_sweeps", engine, str(workers), str(replicates),
           "none" if months is None else str(months)]
    # the child's output goes to files, not pipes: this loop reads nothing until the child
    # ends, and a child writing more than a pipe holds (64 KiB: the results of some 2,000
    # runs) would wait for it forever
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, text=True)
        ps, trace = psutil.Process(proc.pid), []
        cpu0 = time.process_time()
        while proc.poll() is None:
            try:
                trace.append(_tree_memory(ps))
            except psutil.Error:
                break
            time.sleep(SAMPLE_S)
        sampler_cpu = time.process_time() - cpu0
        proc.wait()
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} with {workers} workers failed: {err.strip()[-500:]}")
    res = json.loads(out.strip().splitlines()[-1])
    mb = [rss / 2**20 for rss, _ in trace] or [0.0]
    pss_mb = [pss / 2**20 for _, pss in trace] or [0.0]
    return {"engine": engine, "workers": workers, "runs": res["runs"],
            "seconds": round(res["seconds"], 3), "runs_per_s": round(res["runs"] /
                                                                     res["seconds"], 2),
            "process_seconds": round(time.perf_counter() - t0, 3),
            "sampler_cpu_s": round(sampler_cpu, 3),
            "peak_rss_mb": round(max(mb), 1), "peak_pss_mb": round(max(pss_mb), 1),
            "pss_trace_mb": [round(pss_mb[i], 1)
                             for i in range(0, len(pss_mb), max(1, len(pss_mb) // 20))],
            "_results": res["results"]}


def measure(n_runs: int = 200, workers: tuple[int, ...] = (1, 2), months: int | None = None
            ) -> dict:
    """Both engines on the same grid of about ``n_runs`` runs at each number of workers."""
    n_points = 1
    for values in GRID.values():
        n_points *= len(values)
    replicates = max(1, n_runs // n_points)
    load_before = [round(x, 2) for x in psutil.getloadavg()]
    rows = [_measured(e, w, replicates, months) for w in workers for e in ENGINES]
    reference = rows[0].pop("_results")
    same = all(r.pop("_results") == reference for r in rows[1:])
    by = {(r["engine"], r["workers"]): r["runs_per_s"] for r in rows}
    ratios = {f"{e}_speedup_{w}_vs_{workers[0]}_workers": round(by[(e, w)] / by[(e, workers[0])],
                                                                  2)
              for e in ENGINES for w in workers[1:]}
    ratios.update({f"liqsim_over_batch_run_{w}_workers": round(
        by[("liqsim_sweep", w)] / by[("mesa_batch_run", w)], 2) for w in workers})
    return {"base": BASE, "grid": GRID, "replicates": replicates,
            "runs": n_points * replicates, "months": months, "root_seed": ROOT_SEED,
            "cpu_count": psutil.cpu_count(), "load_avg_before": load_before,
            "same_results": same, "results": rows, "ratios": ratios}


if __name__ == "__main__":  # the child process of _measured
    eng, w, r, m = sys.argv[1:5]
    print(json.dumps(child(eng, int(w), int(r), None if m == "none" else int(m))))
