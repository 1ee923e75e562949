"""Sweeps on a real Dask cluster (a scheduler and worker processes on 127.0.0.1) whose
workers differ: a worker without liqsim, workers on different CPU settings, and a worker on
a platform outside the reproducibility guarantee."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from sim.batch.sweep import run_sweep
from sim.cli import main
from sim.io.ledger import read_platforms

pytestmark = pytest.mark.slow  # every test here takes over a second or so

ROOT = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).parent / "dask")
SPEC = """name = "mixed"
base = "baseline"
months = 8
design = "grid"
replicates = 2
root_seed = 11
metrics = ["credit_losses", "defaults"]
[[axes]]
key = "policy.repo.enabled"
values = [false, true]
"""
BLOCK_SIM = """import sys
class _NoLiqsim:  # a worker started where liqsim is not installed
    def find_spec(self, name, path=None, target=None):
        if name == "sim" or name.startswith("sim."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoLiqsim())
"""
OTHER_NUMPY = """import sim.core.numerics as nm  # a worker whose numpy is another release
info = dict(nm.platform_info())
info["packages"] = dict(info["packages"], numpy="1.0.0")
nm._platform_cache = info
"""


@contextmanager
def cluster(tmp: Path, workers: list[tuple[dict, str | None]]):
    """A scheduler and one single-threaded worker per (extra environment, preload source)."""
    sched = tmp / "scheduler.json"
    procs = []

    def start(args, env=None):
        p = subprocess.Popen([DASK, *args], cwd=ROOT, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
               "127.0.0.1:0", "--scheduler-file", str(sched)])
        for i, (extra, preload) in enumerate(workers):
            args = ["worker", "--scheduler-file", str(sched), "--nworkers", "1", "--nthreads",
                    "1", "--dashboard-address", "127.0.0.1:0", "--no-nanny"]
            if preload is not None:
                path = tmp / f"preload_{i}.py"
                path.write_text(preload, encoding="utf-8")
                args += ["--preload", str(path)]
            start(args, env={**os.environ, **extra})
        deadline = time.monotonic() + 90
        while not sched.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        from distributed import Client

        with Client(scheduler_file=str(sched), timeout="30s") as c:
            c.wait_for_workers(len(workers), timeout=90)
        yield json.loads(sched.read_text())["address"]
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "mixed.toml"
    p.write_text(SPEC, encoding="utf-8")
    return p


def _rows(out: Path) -> list:
    import sqlite3

    con = sqlite3.connect(out / "ledger.sqlite")
    try:
        return con.execute("SELECT param_hash, seed, status, metrics FROM runs "
                           "ORDER BY param_hash, seed").fetchall()
    finally:
        con.close()


def test_a_worker_without_liqsim_fails_the_sweep_at_once_with_one_line(tmp_path, spec, capsys):
    with cluster(tmp_path, [({}, None), ({}, BLOCK_SIM)]) as address:
        t0 = time.monotonic()
        code = main(["sweep", str(spec), "--scheduler", address, "--out", str(tmp_path / "o")])
        took = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "Dask worker tcp://127.0.0.1:" in err[0]
    assert "cannot import liqsim: no module named 'sim' there" in err[0]
    assert took < 60
    assert not (tmp_path / "o" / "ledger.sqlite").exists() or _rows(tmp_path / "o") == []


def test_workers_on_different_cpu_settings_give_the_serial_results(tmp_path, spec, capsys):
    """One worker with numpy's full dispatch and OpenBLAS's SkylakeX kernel, one as an AVX2
    machine with the Haswell kernel and glibc's libm without FMA: the ledger equals the
    serial sweep's, each row names its platform, and nothing is outside the guarantee."""
    serial = tmp_path / "serial"
    run_sweep(spec, out=serial, workers=1, progress=False)
    old_cpu = {"NPY_DISABLE_CPU_FEATURES": "AVX512_ICL X86_V4", "OPENBLAS_CORETYPE": "Haswell",
               "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA"}
    probe = subprocess.run([sys.executable, "-c", "import numpy"], env={**os.environ,
                           **old_cpu}, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this machine cannot imitate an AVX2 CPU: " + probe.stderr.decode()[-200:])
    out = tmp_path / "dask"
    with cluster(tmp_path, [({"OPENBLAS_CORETYPE": "SkylakeX"}, None), (old_cpu, None)]) as a:
        res = run_sweep(spec, out=out, scheduler=a, progress=False)
    assert res.done == 4 and res.warnings == []
    assert "warning" not in capsys.readouterr().err
    assert _rows(out) == _rows(serial)
    platforms = read_platforms(out)
    assert sum(n for _, n in platforms.values()) == 4
    envs = [info["env"] for info, _ in platforms.values()]
    assert any(e.get("NPY_DISABLE_CPU_FEATURES") for e in envs)  # both workers ran runs
    assert any(not e.get("NPY_DISABLE_CPU_FEATURES") for e in envs)


def test_a_worker_outside_the_guarantee_is_warned_about_once(tmp_path, spec, capsys):
    out = tmp_path / "o"
    with cluster(tmp_path, [({}, OTHER_NUMPY)]) as address:
        res = run_sweep(spec, out=out, scheduler=address, progress=False)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning")]
    assert res.done == 4 and len(err) == 1 and res.warnings == err
    assert "numpy 1.0.0 on the worker" in err[0] and "reproducibility guarantee" in err[0]
    ((info, n),) = read_platforms(out).values()
    assert n == 4 and info["packages"]["numpy"] == "1.0.0"
