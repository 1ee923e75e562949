"""A sweep's chunk of runs stepped together (sim.batch.sweep.run_tasks over a RunStack): every
result is run_task's for the same task (metrics, series, status, error text), whatever the
runs it shares a stack with; failures stay with their run; runs of other horizons are
grouped apart."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sim.batch.sweep as sw
import sim.world.stack as st
from sim.batch.sweep import RunTask, run_task, run_tasks
from sim.core.config import load_scenario
from sim.world import phases

BASE = load_scenario("crypto_winter", months=8).model_dump(mode="json")
KEEP = ("credit_losses", "defaults", "lender_failures", "max_peak_price_fall")


def _task(params: dict, seed: int, series: tuple[str, ...] = ()) -> RunTask:
    return RunTask(f"h{sorted(params.items())}", seed, 0, 0, params, BASE, KEEP, series)


def _same(a, b) -> bool:
    """Two RunResults agree in everything but their duration."""
    def same_value(x, y):
        return x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))

    if (a.key, a.status, a.error, a.version) != (b.key, b.status, b.error, b.version):
        return False
    if a.metrics.keys() != b.metrics.keys() or not all(
            same_value(a.metrics[k], b.metrics[k]) for k in a.metrics):
        return False
    if (a.series is None) != (b.series is None):
        return False
    return a.series is None or all(np.array_equal(a.series[k], b.series[k], equal_nan=True)
                                   for k in a.series)


def test_stacked_results_are_run_tasks(monkeypatch):
    """Points of a design and seeds in one chunk: each result is the run's alone, and the runs
    did share a stack (phase 7's batched kernel ran with all of them)."""
    tasks = [_task({"shocks.0.size": size, "buyers.adapt": adapt}, seed,
                   series=("credit_losses", "price_H100"))
             for size, adapt in ((0.45, 0.05), (0.78, 0.35)) for seed in (3, 4, 5)]
    alone = [run_task(t) for t in tasks]
    sizes = []
    real = phases.prices.run_batch
    monkeypatch.setattr(phases.prices, "run_batch",
                        lambda stack, runs, c: (sizes.append(len(runs)), real(stack, runs, c)))
    monkeypatch.setitem(st.BATCHED, "prices", phases.prices.run_batch)
    together = run_tasks(tasks)
    assert sizes == [6] * 8
    assert all(r.status == "ok" for r in together)
    assert all(_same(a, b) for a, b in zip(alone, together, strict=True))


def test_failures_stay_with_their_run(monkeypatch):
    """A task that does not build (a value its field refuses) and a run whose month raises are
    failed results with run_task's error text; the other runs of the chunk are unchanged."""
    bad_value = _task({"shocks.0.size": -1.0}, 3)
    victim_seed = 4
    real = phases.lenders.run

    def lenders(m, month):
        if m.cfg.seed == victim_seed and m.env.t == 5:
            raise RuntimeError("month 5 fails")
        real(m, month)

    monkeypatch.setattr(phases.lenders, "run", lenders)
    monkeypatch.delitem(st.BATCHED, "lenders")  # phase 3 run by run: the patched one runs
    tasks = [_task({}, 3), bad_value, _task({}, victim_seed), _task({}, 5)]
    alone = [run_task(t) for t in tasks]
    together = run_tasks(tasks)
    assert [r.status for r in together] == ["ok", "failed", "failed", "ok"]
    assert together[2].error == "RuntimeError: month 5 fails"
    assert all(_same(a, b) for a, b in zip(alone, together, strict=True))


def test_runs_of_other_horizons_are_stacked_apart(monkeypatch):
    """Runs with another horizon cannot share a stack: they are grouped by (engine, months),
    each group its own stack, and every result is still run_task's."""
    stacks = []
    real = sw.RunStack

    def spy(models, *a, **k):
        stacks.append(sorted(m.cfg.months for m in models))
        return real(models, *a, **k)

    monkeypatch.setattr(sw, "RunStack", spy)
    tasks = [_task({}, 3), _task({"months": 5}, 3), _task({}, 4), _task({"months": 5}, 4)]
    together = run_tasks(tasks)
    assert sorted(stacks) == [[5, 5], [8, 8]]
    assert all(_same(run_task(t), r) for t, r in zip(tasks, together, strict=True))


@pytest.mark.parametrize("n", [0, 1])
def test_no_run_or_one(n):
    tasks = [_task({}, 3)][:n]
    assert [r.status for r in run_tasks(tasks)] == ["ok"] * n


def test_runs_are_stacked_by_shape(monkeypatch):
    """Runs with other switches (the repo desk on or off) are stacked apart, so each stack's
    runs can share its batched phases; runs that differ only in numbers share one."""
    stacks = []
    real = sw.RunStack

    def spy(models, *a, **k):
        stacks.append(sorted((m.cfg.policy.repo.enabled, m.cfg.shocks[0].size)
                             for m in models))
        return real(models, *a, **k)

    monkeypatch.setattr(sw, "RunStack", spy)
    tasks = [_task({"policy.repo.enabled": on, "shocks.0.size": size}, seed)
             for on in (False, True) for size in (0.4, 0.6) for seed in (3, 4)]
    together = run_tasks(tasks)
    assert sorted(stacks) == [[(False, 0.4)] * 2 + [(False, 0.6)] * 2,
                              [(True, 0.4)] * 2 + [(True, 0.6)] * 2]
    assert all(_same(run_task(t), r) for t, r in zip(tasks, together, strict=True))
