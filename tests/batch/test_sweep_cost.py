"""What a sweep costs besides its models (issue 19): the pool's workers start with the compiled
kernels loaded (the fork server's preload, ``sim.batch.preload``), and a process validates a
design point once however far apart its replicates come (``sim.batch.sweep.task_scenario``),
without ever serving a kept scenario for another config.

Pool workers are forked from a fork server, so the run functions live in this (importable)
module.
"""

from __future__ import annotations

import copy
import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sim.batch.sweep as sw
import sim.world.kernels
from sim.batch.sweep import RunResult, RunTask, run_sweep, task_scenario
from sim.core.config import build, load_scenario
from sim.core.jit import Kernel
from sim.core.version import liqsim_version
from sim.io.ledger import read_runs


def _kernels() -> list[Kernel]:
    """Every phase kernel: a single run's, and the batched ones (``*_batch``) a sweep's
    stacked runs call (sim.batch.sweep.run_tasks)."""
    out = []
    for m in pkgutil.iter_modules(sim.world.kernels.__path__):
        mod = importlib.import_module(f"sim.world.kernels.{m.name}")
        out += [k for k in vars(mod).values() if isinstance(k, Kernel)]
    return out


def loaded_kernels(task: RunTask) -> RunResult:
    """No model: the share of the phase kernels this process has loaded (compiled or read
    from numba's cache) when the run starts, and whether it knows its liqsim version."""
    kernels = _kernels()
    share = sum(k._compiled is not None for k in kernels) / len(kernels)
    known = float(liqsim_version.cache_info().currsize)
    return RunResult(task.key, "ok", None, {"credit_losses": share, "defaults": known}, 0.0,
                     "test")


SPEC = """name = "warm"
base = "baseline"
months = 2
replicates = 3
metrics = ["credit_losses", "defaults"]

[[axes]]
key = "buyers.adapt"
values = [0.1, 0.2]
"""


@pytest.mark.slow
def test_pool_workers_start_with_every_kernel_loaded(tmp_path, monkeypatch):
    """The fork server ran crypto_winter (sim.batch.preload) before forking the workers:
    every kernel is loaded in each worker before its first run, and the liqsim version is
    known (without the preload, a worker that has run no model has loaded none)."""
    monkeypatch.delenv("LIQSIM_ENGINE", raising=False)
    spec = tmp_path / "warm.toml"
    spec.write_text(SPEC, encoding="utf-8")
    res = run_sweep(spec, out=tmp_path / "out", workers=2, progress=False,
                    runner=loaded_kernels)
    assert (res.done, res.failed) == (6, 0)
    df = read_runs(tmp_path / "out")
    assert df.credit_losses.tolist() == [1.0] * 6 and df.defaults.tolist() == [1.0] * 6


def test_the_preload_warms_every_kernel_in_a_fresh_process():
    """Importing sim.batch.preload in a fresh interpreter loads every phase kernel (none is
    loaded before), without importing scipy.stats (~0.6 s a process)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "import test_sweep_cost as t\n"
            "assert not any(k._compiled is not None for k in t._kernels())\n"
            "import sim.batch.preload as p\n"
            "assert p.WARMED is True\n"
            "assert all(k._compiled is not None for k in t._kernels())\n"
            "assert 'scipy.stats' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "LIQSIM_ENGINE": "compiled"})


# --------------------------------------------------------------------------- validated points
BASE = load_scenario("crypto_winter", months=3).model_dump(mode="json")
SHOCK = {**BASE["shocks"][0], "size": 0.5}


def _task(params: dict, seed: int = 11, base: dict = BASE, param_hash: str = "h") -> RunTask:
    return RunTask(param_hash, seed, 0, 0, params, base, ("credit_losses",), ())


@pytest.fixture
def builds(monkeypatch) -> list[dict]:
    """An empty cache of validated points; each validation's config is recorded."""
    calls: list[dict] = []
    real = sw.build
    monkeypatch.setattr(sw, "build", lambda c: calls.append(c) or real(c))
    monkeypatch.setattr(sw, "_POINTS", sw.OrderedDict())
    monkeypatch.setattr(sw, "_BASE_OF_POINTS", [None])
    return calls


def test_a_point_coming_back_after_other_points_is_not_validated_again(builds):
    """Tasks are replicate-major: a process meets point 1, point 2, ..., then point 1 again
    with its next seed. The second meeting reuses the validated scenario, and each run gets
    exactly a fresh build of its config (its own seed)."""
    p1, p2 = {"buyers.capacity_scale": 0.5}, {"buyers.capacity_scale": 0.7}
    tasks = [_task(p1, 11), _task(p2, 11), _task(p1, 12), _task(p2, 12)]
    got = [task_scenario(t) for t in tasks]
    assert len(builds) == 2
    for t, s in zip(tasks, got, strict=True):
        assert s == build(t.config) and s.seed == t.seed


def test_a_kept_point_is_never_served_for_another_config(builds):
    """The cache is keyed by the exact JSON of the base and of the point's values, not by the
    parameter hash: the same hash with other values, the same values on another base, a value
    of another type (12 vs 12.0) or the same keys in another order are validated
    afresh and give their own config's scenario."""
    other_base = {**BASE, "months": 4}
    cases = [
        _task({"buyers.capacity_scale": 0.5}),
        _task({"buyers.capacity_scale": 0.6}),  # same hash "h", other value
        _task({"buyers.capacity_scale": 0.6}, base=other_base),
        _task({"lenders.count": 12}),
        _task({"lenders.count": 12.0}),
        _task({"buyers.capacity_scale": 1}),
        _task({"buyers.capacity_scale": 1.0}),
        _task({"shocks.0": SHOCK, "shocks.0.size": 0.3}),
        _task({"shocks.0.size": 0.3, "shocks.0": SHOCK}),
    ]
    for t in cases:
        assert task_scenario(t) == build(t.config)
    assert len(builds) == len(cases)  # each validated by task_scenario
    assert task_scenario(cases[-1]).shocks[0].size == 0.5  # the later key won
    assert task_scenario(cases[-2]).shocks[0].size == 0.3
    assert len(builds) == len(cases)  # both found


def test_the_cache_keeps_the_last_points_and_another_base_empties_it(builds, monkeypatch):
    monkeypatch.setattr(sw, "POINT_CACHE", 2)
    a, b, c = ({"buyers.capacity_scale": x} for x in (0.5, 0.6, 0.7))
    for p in (a, b, a, c):  # c evicts b, the least recently used
        task_scenario(_task(p))
    assert len(builds) == 3 and len(sw._POINTS) == 2
    task_scenario(_task(a))
    assert len(builds) == 3
    task_scenario(_task(b))
    assert len(builds) == 4
    task_scenario(_task(a, base={**BASE, "months": 4}))
    assert len(builds) == 5 and len(sw._POINTS) == 1
    task_scenario(_task(a, base=copy.deepcopy(BASE)))  # an equal base in another object
    assert len(builds) == 6 and len(sw._POINTS) == 1  # the other base's points are gone
    task_scenario(_task(a, base=copy.deepcopy(BASE)))
    assert len(builds) == 6


def test_a_base_edited_in_place_is_seen(builds):
    """The base's JSON is made for every run: a caller that edits a base object in place
    (here months 3 -> 4) gets the edited config's scenario, not the kept one."""
    base = copy.deepcopy(BASE)
    p = {"buyers.capacity_scale": 0.5}
    assert task_scenario(_task(p, base=base)).months == 3
    base["months"] = 4
    assert task_scenario(_task(p, base=base)).months == 4 and len(builds) == 2


def test_a_task_that_is_not_json_is_built_every_time(builds):
    t = _task({"buyers.capacity_scale": np.float32(0.5)})
    assert task_scenario(t) == build(t.config)
    task_scenario(t)
    assert len(builds) == 2 and not sw._POINTS


# --------------------------------------------------------------------------- serial batches
def quick(task: RunTask) -> RunResult:
    return RunResult(task.key, "ok", None, {"credit_losses": float(task.point),
                                            "defaults": float(task.replicate)}, 0.0, "test")


def test_an_in_process_sweep_commits_32_runs_at_a_time(tmp_path, monkeypatch):
    """One worker: 40 runs are two commits (32 + 8), every run once, in task order."""
    from sim.io.ledger import Ledger

    sizes: list[int] = []
    real = Ledger.record_batch
    monkeypatch.setattr(Ledger, "record_batch",
                        lambda self, rows, platforms: sizes.append(len(rows))
                        or real(self, rows, platforms))
    spec = tmp_path / "warm.toml"
    spec.write_text(SPEC.replace("replicates = 3", "replicates = 4")
                    .replace("values = [0.1, 0.2]", "values = [0.0, 0.05, 0.1, 0.15, 0.2, "
                                                    "0.25, 0.3, 0.35, 0.4, 0.45]"),
                    encoding="utf-8")
    res = run_sweep(spec, out=tmp_path / "out", workers=1, progress=False, runner=quick)
    assert (res.done, res.failed) == (40, 0) and sw.SERIAL_BATCH == 32
    assert sizes == [32, 8]
    df = read_runs(tmp_path / "out")
    assert sorted(zip(df.point, df.replicate, strict=True)) == [(p, r) for p in range(10)
                                                               for r in range(4)]
