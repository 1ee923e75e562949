"""``liqsim bench``: speed and scale of liqsim, against Mesa's own example, and the golden record.

The benchmark (all in one process except the scaling runs, medians over repeated runs after
warm-up runs):

1. the baseline scenario: wall time per run and agent-steps per second (borrowers + lenders +
   secondary buyers, times months, over the wall time);
2. Mesa's BoltzmannWealth example (``mesa.examples``) with as many agents and steps, in the same
   process: the reference for agent-steps per second;
3. scaling: the baseline world grown from 100 to 100,000 borrowers, lenders (1 per 100
   borrowers, as in ``experiments/scenarios/large.toml``) and buyers (by type, in proportion to
   the baseline's) growing with it. Each size runs in a fresh subprocess that reports its wall
   time and peak resident memory; the exponent of time against size is the least-squares slope
   of log time on log size over 1,000..100,000 borrowers; the 100,000 point is ``large.toml``;
4. sweeps (``--sweeps``): runs/s of a parameter grid with 1 and 2 workers against Mesa's
   ``batch_run``, measured by ``sim.qa.bench_sweeps.measure``;
5. outputs identical: the golden fingerprints below are recomputed and compared.

Results go to ``results/bench/bench.json`` and ``results/bench/scaling.png``.

A fingerprint of a finished run is the sha256 of every array in ``model.rec``, the agent panel
and the event log, plus the flat numbers of ``metrics.summary``. ``tests/data/golden.json``
holds the fingerprints of the code before it was optimised, so ``tests/qa/test_golden.py`` and
the benchmark check that the optimised code gives the same results bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sim.core.config import load_scenario
from sim.core.version import liqsim_version
from sim.io.atomic import atomic_write_with, write_json
from sim.world import metrics
from sim.world.model import LiquidationModel
from sim.world.runner import run_scenario

GOLDEN_PATH = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden.json"
# (label, scenario, overrides): the shipped scenarios whose code paths the optimisations touch
GOLDEN_CASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("baseline", "baseline", ()),
    ("crypto_winter", "crypto_winter", ()),
    ("repo_backstop", "repo_backstop", ()),
    ("crypto_winter+repo", "crypto_winter", ("policy.repo.enabled=true",)),
    ("crypto_winter+repo_legacy", "crypto_winter",
     ("policy.repo.enabled=true", "policy.repo.design='legacy'")),
    ("crypto_winter+lolr", "crypto_winter", ("policy.lolr.enabled=true",)),
    ("crypto_winter+unlimited", "crypto_winter", ("buyers.unlimited=true",)),
    ("crypto_winter+parametric", "crypto_winter", ("market.mode='parametric'",)),
    ("crypto_winter+no_salvage", "crypto_winter", ("market.unsold_to_salvage=false",)),
    ("crypto_winter+scale_free", "crypto_winter",
     ("network.kind='scale_free'", "contagion.alpha=0.5")),
    ("guarantor_exit+core_periphery", "guarantor_exit", ("network.kind='core_periphery'",)),
)


def _sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _flat_numbers(d: dict, prefix: str = "") -> dict[str, float | int | bool | None]:
    """The numbers of a nested summary dict, keyed by dotted path (strings are left out)."""
    out: dict[str, float | int | bool | None] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_numbers(v, key + "."))
        elif v is None or isinstance(v, bool | int | float):
            out[key] = v
    return out


def fingerprint(model) -> dict:
    """sha256 of every record array (sorted keys), of the panel and events, and the summary."""
    rec = {k: _sha(model.rec[k]) for k in sorted(model.rec)}
    panel = {k: _sha(model.panel[k]) for k in sorted(model.panel)}
    events = hashlib.sha256(repr(model.events).encode()).hexdigest()
    return {"rec": rec, "panel": panel, "events": events,
            "summary": _flat_numbers(metrics.summary(model))}


def golden_fingerprints(cases=GOLDEN_CASES) -> dict[str, dict]:
    """Run every golden case at its default seed and return its fingerprint."""
    return {label: fingerprint(run_scenario(load_scenario(name, list(over))))
            for label, name, over in cases}


def golden_mismatches(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """Which fingerprint entries differ (``case: part.key``); empty when identical."""
    bad = []
    for label, exp in expected.items():
        got = actual.get(label)
        if got is None:
            bad.append(f"{label}: not run")
            continue
        for part in ("rec", "panel", "summary"):
            keys = sorted(set(exp[part]) | set(got[part]))
            bad += [f"{label}: {part}.{k}" for k in keys if exp[part].get(k) != got[part].get(k)]
        if exp["events"] != got["events"]:
            bad.append(f"{label}: events")
    return bad


def write_golden(path: Path = GOLDEN_PATH) -> None:
    """Record the golden fingerprints of the current code (only with a reason to)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, golden_fingerprints())



# ====================================================================== benchmark
TARGETS = {"baseline_median_s": 0.030, "ratio_vs_boltzmann": 2.0, "scaling_exponent": 1.1,
           "large_wall_s": 60.0, "large_peak_rss_mb": 4096.0}
LENDERS_PER_BORROWER = 1 / 100  # experiments/scenarios/large.toml: 1,000 per 100,000
SCALING_SIZES = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
QUICK_SIZES = (100, 300, 1_000)
FIT_RANGE = (1_000, 100_000)
LARGE_SIZE = 100_000


def _timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Wall times (s) of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": len(times)}


def n_agents(cfg) -> int:
    """Agents with a balance sheet: borrowers, lenders and secondary buyers."""
    b = cfg.borrowers
    return (b.miner.count + b.neocloud.count + cfg.lenders.count
            + sum(t.count for t in cfg.buyers.types.values()))


def bench_baseline(repeats: int, warmup: int = 3) -> dict:
    """Median wall time of one baseline run and its agent-steps per second."""
    cfg = load_scenario("baseline")
    out = _stats(_timed(lambda: run_scenario(cfg), repeats, warmup))
    out.update(agents=n_agents(cfg), months=cfg.months,
               agent_steps_per_s=n_agents(cfg) * cfg.months / out["median_s"])
    return out


def boltzmann_run(agents: int, steps: int, seed: int = 1) -> None:
    """Mesa's BoltzmannWealth example, as shipped, on a grid of about one cell per agent."""
    import warnings

    from mesa.examples.basic.boltzmann_wealth_model.model import (
        BoltzmannScenario,
        BoltzmannWealth,
    )

    side = max(1, math.ceil(math.sqrt(agents)))
    with warnings.catch_warnings():  # the example uses Mesa's experimental data recorder
        warnings.simplefilter("ignore")
        model = BoltzmannWealth(BoltzmannScenario(n=agents, width=side, height=side, rng=seed))
        for _ in range(steps):
            model.step()


def bench_boltzmann(agents: int, steps: int, repeats: int, warmup: int = 2) -> dict:
    out = _stats(_timed(lambda: boltzmann_run(agents, steps), repeats, warmup))
    out.update(agents=agents, steps=steps, agent_steps_per_s=agents * steps / out["median_s"])
    return out


def scaled_overrides(n_borrowers: int) -> list[str]:
    """``--set`` overrides growing the baseline world to ``n_borrowers`` borrowers.

    Miners and neo-clouds keep the baseline's mix, buyers of each type grow in proportion to
    the borrowers (at least one each), lenders are one per 100 borrowers (at least two).
    """
    base = load_scenario("baseline")
    b = base.borrowers
    f = n_borrowers / (b.miner.count + b.neocloud.count)
    miners = round(b.miner.count * f)
    out = [f"borrowers.miner.count={miners}", f"borrowers.neocloud.count={n_borrowers - miners}",
           f"lenders.count={max(2, round(n_borrowers * LENDERS_PER_BORROWER))}"]
    out += [f"buyers.types.{name}.count={max(1, round(t.count * f))}"
            for name, t in base.buyers.types.items()]
    return out


def scaled_scenario(n_borrowers: int, months: int | None = None):
    """The scaled baseline; at 100,000 borrowers the shipped ``large`` scenario itself."""
    if n_borrowers == LARGE_SIZE:
        return load_scenario("large", months=months)
    return load_scenario("baseline", scaled_overrides(n_borrowers), months=months)


def _child(n_borrowers: int, months: int, repeats: int) -> dict:
    """One scaling point, run inside a fresh process (see :func:`bench_scaling`)."""
    cfg = scaled_scenario(n_borrowers, months)
    builds, runs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model = LiquidationModel(cfg)
        t1 = time.perf_counter()
        while model.running:
            model.step()
        builds.append(t1 - t0)
        runs.append(time.perf_counter() - t1)
        del model
    walls = [a + b for a, b in zip(builds, runs, strict=True)]
    i = sorted(range(repeats), key=walls.__getitem__)[repeats // 2]  # the median run
    return {"borrowers": n_borrowers, "agents": n_agents(cfg), "months": cfg.months,
            "repeats": repeats, "wall_s": walls[i], "build_s": builds[i], "steps_s": runs[i],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def run_point(n_borrowers: int, months: int, repeats: int = 1) -> dict:
    """Run one scaling point in a fresh Python process and return what it reports.

    A point whose run fails (e.g. a world the configuration refuses) is reported as
    ``{"borrowers": n, "error": "<last line of its stderr>"}``.
    """
    cmd = [sys.executable, "-m", "sim.qa.bench", "--child", str(n_borrowers), str(months),
           str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"borrowers": n_borrowers, "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_exponent(sizes, times) -> float | None:
    """Least-squares slope of log(time) on log(size) (None with fewer than two points)."""
    if len(sizes) < 2:
        return None
    slope, _ = np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float)), 1)
    return float(slope)


def bench_scaling(sizes, months: int, log: Callable[[str], None] = lambda _: None) -> dict:
    points = []
    for n in sizes:
        log(f"scaling: {n:,} borrowers")
        points.append(run_point(n, months, repeats=3 if n <= 3_000 else 1))
    fit = [p for p in points
           if FIT_RANGE[0] <= p["borrowers"] <= FIT_RANGE[1] and "error" not in p]
    return {"months": months, "points": points, "fit_range": list(FIT_RANGE),
            "exponent": fit_exponent([p["borrowers"] for p in fit],
                                     [p["wall_s"] for p in fit]),
            "exponent_steps_only": fit_exponent([p["borrowers"] for p in fit],
                                                [p["steps_s"] for p in fit])}


def bench_sweeps(n_runs: int) -> dict:
    """Sweep runs/s against Mesa's batch_run (:func:`sim.qa.bench_sweeps.measure`)."""
    # lazy: only --sweeps needs sim.batch.sweep and psutil, and the scaling children import
    # this module
    from sim.qa import bench_sweeps

    return bench_sweeps.measure(n_runs=n_runs, workers=(1, 2))


def scaling_figure(scaling: dict):
    """Wall time and peak memory against the number of borrowers (log-log)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    pts = [p for p in scaling["points"] if "error" not in p]
    n = np.array([p["borrowers"] for p in pts], float)
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    ax_t, ax_m = fig.subplots(1, 2)
    ax_t.loglog(n, [p["wall_s"] for p in pts], "o-", label="build + run")
    ax_t.loglog(n, [p["steps_s"] for p in pts], "s--", label="monthly steps only")
    if scaling["exponent"] is not None:
        lo = n >= FIT_RANGE[0]
        ref = np.array([p["wall_s"] for p in pts])[lo][0] * (n[lo] / n[lo][0]) ** 1.1
        ax_t.loglog(n[lo], ref, ":", color="grey", label="size^1.1 (target bound)")
        ax_t.set_title(f"wall time, {scaling['months']} months: exponent "
                       f"{scaling['exponent']:.2f}")
    ax_t.set_xlabel("borrowers (lenders and buyers in proportion)")
    ax_t.set_ylabel("seconds")
    ax_t.legend(fontsize=8)
    ax_m.loglog(n, [p["peak_rss_mb"] for p in pts], "o-", color="tab:red")
    ax_m.axhline(TARGETS["large_peak_rss_mb"], ls=":", color="grey", label="4 GB target")
    ax_m.set_yticks([t for t in (250, 500, 1000, 2000, 4000, 8000)
                     if t <= 2 * max(p["peak_rss_mb"] for p in pts)])
    ax_m.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax_m.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax_m.set_xlabel("borrowers")
    ax_m.set_ylabel("peak resident memory (MB)")
    ax_m.set_title("peak memory of the process")
    ax_m.legend(fontsize=8)
    return fig


def _machine() -> dict:
    import platform

    import mesa

    return {"cpus": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "python": platform.python_version(), "numpy": np.__version__,
            "mesa": mesa.__version__, "platform": platform.platform()}


def _verdicts(res: dict) -> dict[str, bool | None]:
    large = next((p for p in res["scaling"]["points"]
                  if p["borrowers"] == LARGE_SIZE and "error" not in p), None)
    exp = res["scaling"]["exponent"]
    return {
        "baseline_median_le_30ms": res["baseline"]["median_s"] <= TARGETS["baseline_median_s"],
        "agent_steps_ge_2x_boltzmann": res["ratio_vs_boltzmann"] >= TARGETS["ratio_vs_boltzmann"],
        "scaling_exponent_le_1.1": None if exp is None else exp <= TARGETS["scaling_exponent"],
        "large_under_60s": None if large is None else large["wall_s"] < TARGETS["large_wall_s"],
        "large_under_4GB": (None if large is None
                            else large["peak_rss_mb"] < TARGETS["large_peak_rss_mb"]),
        "outputs_identical": not res["outputs_identical"]["mismatches"],
    }


def run_bench(out_dir: Path = Path("results/bench"), quick: bool = False, sweeps: bool = False,
              repeats: int = 20, max_borrowers: int = LARGE_SIZE,
              log: Callable[[str], None] = lambda _: None) -> dict:
    """Run the whole benchmark, write ``bench.json`` and ``scaling.png``; return the results."""
    res: dict = {"liqsim_version": liqsim_version(), "quick": quick, "targets": TARGETS,
                 "machine": _machine()}
    log("baseline scenario")
    res["baseline"] = bench_baseline(repeats=repeats, warmup=1 if quick else 3)
    log("Mesa BoltzmannWealth")
    res["boltzmann"] = bench_boltzmann(res["baseline"]["agents"], res["baseline"]["months"],
                                       repeats=max(1 if quick else 3, repeats // 3),
                                       warmup=1 if quick else 2)
    res["ratio_vs_boltzmann"] = (res["baseline"]["agent_steps_per_s"]
                                 / res["boltzmann"]["agent_steps_per_s"])
    sizes = [n for n in (QUICK_SIZES if quick else SCALING_SIZES) if n <= max_borrowers]
    res["scaling"] = bench_scaling(sizes, months=12 if quick else 60, log=log)
    log("golden outputs")
    cases = GOLDEN_CASES[:1] if quick else GOLDEN_CASES
    expected = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))
    res["outputs_identical"] = {
        "cases": [c[0] for c in cases],
        "mismatches": golden_mismatches({c[0]: expected[c[0]] for c in cases},
                                        golden_fingerprints(cases))}
    if sweeps:
        log("sweeps")
        res["sweeps"] = bench_sweeps(n_runs=20 if quick else 200)
    res["verdicts"] = _verdicts(res)
    res["machine"]["load_avg_end"] = list(os.getloadavg())
    write_json(out_dir / "bench.json", res)
    write_figure(res, out_dir)
    return res


def write_figure(res: dict, out_dir: Path) -> None:
    """``scaling.png`` from the results of :func:`run_bench` (also from a saved bench.json)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = scaling_figure(res["scaling"])
    FigureCanvasAgg(fig)
    atomic_write_with(out_dir / "scaling.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))


if __name__ == "__main__":  # pragma: no cover - maintenance and child-process entry points
    if sys.argv[1:2] == ["--child"]:
        n, months, reps = (int(x) for x in sys.argv[2:5])
        print(json.dumps(_child(n, months, reps)))
    elif sys.argv[1:] == ["--write-golden"]:
        write_golden()
        print(f"wrote {GOLDEN_PATH}")
    else:
        print(json.dumps(golden_mismatches(json.loads(GOLDEN_PATH.read_text()),
                                           golden_fingerprints()), indent=1))
