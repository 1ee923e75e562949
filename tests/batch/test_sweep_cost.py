"""What a sweep costs besides its models (issue 19): the pool's workers start with the compiled
kernels loaded (the fork server's preload, ``sim.batch.preload``).

Pool workers are forked from a fork server, so the run functions live in this (importable)
module.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import sim.world.kernels
from sim.batch.sweep import RunResult, RunTask, run_sweep
from sim.core.jit import Kernel
from sim.io.ledger import read_runs


def _kernels() -> list[Kernel]:
    out = []
    for m in pkgutil.iter_modules(sim.world.kernels.__path__):
        mod = importlib.import_module(f"sim.world.kernels.{m.name}")
        out += [k for k in vars(mod).values() if isinstance(k, Kernel)]
    return out


def loaded_kernels(task: RunTask) -> RunResult:
    """No model: the share of the phase kernels this process has loaded (compiled or read
    from numba's cache) when the run starts."""
    kernels = _kernels()
    share = sum(k._compiled is not None for k in kernels) / len(kernels)
    return RunResult(task.key, "ok", None, {"credit_losses": share, "defaults": 0.0}, 0.0,
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
    every kernel is loaded in each worker before its first run (without the preload, a
    worker that has run no model has loaded none)."""
    monkeypatch.delenv("LIQSIM_ENGINE", raising=False)
    spec = tmp_path / "warm.toml"
    spec.write_text(SPEC, encoding="utf-8")
    res = run_sweep(spec, out=tmp_path / "out", workers=2, progress=False,
                    runner=loaded_kernels)
    assert (res.done, res.failed) == (6, 0)
    assert read_runs(tmp_path / "out").credit_losses.tolist() == [1.0] * 6


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
