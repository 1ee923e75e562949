"""Sweeps (issue 3): spec validation, designs, seeds, backends, failures and resume.

Every ledger comparison is on the stored text of the rows (params and metrics JSON, status,
error), i.e. bit for bit; duration and finished_at differ between runs by nature.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sim.batch.sweep import (
    MAX_CHUNK,
    SERIAL_BATCH,
    RunResult,
    flat_metrics,
    load_spec,
    param_hash,
    run_serial,
    run_sweep,
)
from sim.cli import main
from sim.core.config import ConfigError
from sim.core.seeds import replicate_seeds
from sim.io.ledger import read_meta, read_runs
from sim.world import phases

REPO = Path(__file__).resolve().parents[2]
AXES = """
[[axes]]
key = "policy.repo.enabled"
values = [false, true]

[[axes]]
key = "shocks.0.size"
range = [0.3, 0.7]
steps = 2
"""


def spec_text(name: str = "t", months: int = 6, replicates: int = 2, axes: str = AXES,
              extra: str = "") -> str:
    return (f'name = "{name}"\nbase = "crypto_winter"\nmonths = {months}\n'
            f"replicates = {replicates}\nroot_seed = 7\n"
            'metrics = ["credit_losses", "defaults", "max_peak_price_fall", "realised_lgd"]\n'
            f"{extra}\n{axes}")


def write_spec(tmp: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def ledger_rows(out: Path) -> list[tuple]:
    conn = sqlite3.connect(out / "ledger.sqlite")
    try:
        return sorted(conn.execute("SELECT param_hash, seed, point, replicate, params, status, "
                                   "error, metrics FROM runs"))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> tuple[Path, Path]:
    """The reference: the 2x2x2 spec run in-process."""
    tmp = tmp_path_factory.mktemp("serial")
    spec = write_spec(tmp, spec_text(extra='series = ["credit_losses", "price_H100"]'))
    res = run_sweep(spec, out=tmp / "out", workers=1, progress=False)
    assert (res.total, res.done, res.failed, res.skipped) == (8, 8, 0, 0)
    return spec, tmp / "out"


# --------------------------------------------------------------------------- metrics, seeds
def test_flat_metrics_flattens_and_adds_the_max_fall():
    s = {"scenario": "x", "repo_enabled": True, "credit_losses": 5.0, "defaults": 3,
         "defaults_by_type": {"miner": 2, "neocloud": 1}, "realised_lgd": None,
         "peak_price_fall": {"H100": 0.25, "B200": 0.5}, "debtrank": {"max_single": 0.1}}
    flat = flat_metrics(s)
    assert flat.pop("realised_lgd") != flat.get("realised_lgd")  # NaN
    assert flat == {"credit_losses": 5.0, "defaults": 3.0, "defaults_by_type.miner": 2.0,
                    "defaults_by_type.neocloud": 1.0, "peak_price_fall.H100": 0.25,
                    "peak_price_fall.B200": 0.5, "debtrank.max_single": 0.1,
                    "max_peak_price_fall": 0.5}


@pytest.mark.slow
def test_adding_replicates_keeps_existing_seeds_and_results(serial, tmp_path):
    spec3 = write_spec(tmp_path, spec_text(replicates=3, extra='series = ["credit_losses", '
                                           '"price_H100"]'))
    out = tmp_path / "out"
    first = run_sweep(spec3, out=out, workers=1, progress=False)
    assert first.done == 12
    _, ref_out = serial
    ref = ledger_rows(ref_out)
    assert [r for r in ledger_rows(out) if r[3] < 2] == ref  # replicates 0, 1 unchanged
    assert read_meta(out)["seeds"][:2] == read_meta(ref_out)["seeds"]


@pytest.mark.slow
def test_more_replicates_in_the_same_directory_runs_only_the_new_ones(tmp_path):
    out = tmp_path / "out"
    axes = '[[axes]]\nkey = "policy.repo.enabled"\nvalues = [false, true]\n'
    r1 = run_sweep(write_spec(tmp_path, spec_text(replicates=1, axes=axes), "a.toml"),
                   out=out, workers=1, progress=False)
    before = ledger_rows(out)
    r2 = run_sweep(write_spec(tmp_path, spec_text(replicates=2, axes=axes), "b.toml"),
                   out=out, workers=1, progress=False)
    assert (r1.done, r2.done, r2.skipped) == (2, 2, 2)
    after = ledger_rows(out)
    assert len(after) == 4 and set(before) <= set(after)


# --------------------------------------------------------------------------- designs
def test_grid_points_and_integer_rounding(tmp_path):
    axes = AXES + '[[axes]]\nkey = "lenders.count"\nrange = [10, 12]\nsteps = 5\n'
    spec = load_spec(write_spec(tmp_path, spec_text(axes=axes)))
    # 2 x 2 x 3: linspace(10, 12, 5) rounds to 10, 10, 11, 12, 12 -> three distinct counts
    assert len(spec.points) == 12
    assert [p["lenders.count"] for p in spec.points[:3]] == [10, 11, 12]
    assert all(type(p["lenders.count"]) is int for p in spec.points)
    assert spec.points[0] == {"policy.repo.enabled": False, "shocks.0.size": 0.3,
                              "lenders.count": 10}
    assert spec.points[-1]["policy.repo.enabled"] is True  # the first axis varies slowest


def test_lhs_points_are_stratified_and_crossed_with_values(tmp_path):
    axes = ('[[axes]]\nkey = "policy.repo.enabled"\nvalues = [false, true]\n'
            '[[axes]]\nkey = "shocks.0.size"\nrange = [0.2, 0.6]\n'
            '[[axes]]\nkey = "lenders.count"\nrange = [10, 40]\n')
    spec = load_spec(write_spec(tmp_path, spec_text(axes=axes, extra='design = "lhs"\n'
                                                    "samples = 10")))
    assert len(spec.points) == 20
    off = [p for p in spec.points if not p["policy.repo.enabled"]]
    on = [p for p in spec.points if p["policy.repo.enabled"]]
    assert [{**p, "policy.repo.enabled": True} for p in off] == on  # same LHS rows, paired
    sizes = np.array([p["shocks.0.size"] for p in off])
    # Latin hypercube: exactly one of the 10 samples in each tenth of the range
    assert sorted(np.floor((sizes - 0.2) / 0.04).astype(int)) == list(range(10))
    assert all(type(p["lenders.count"]) is int and 10 <= p["lenders.count"] <= 40 for p in off)
    again = load_spec(write_spec(tmp_path, spec_text(axes=axes, extra='design = "lhs"\n'
                                                     "samples = 10"), "b.toml"))
    assert again.points == spec.points  # seeded from root_seed


def test_sobol_saltelli_design_has_n_times_d_plus_2_points(tmp_path):
    axes = ('[[axes]]\nkey = "shocks.0.size"\nrange = [0.2, 0.6]\n'
            '[[axes]]\nkey = "lenders.ltv_max"\nrange = [0.8, 0.95]\n'
            '[[axes]]\nkey = "buyers.capacity_scale"\nrange = [0.5, 2.0]\n')
    spec = load_spec(write_spec(tmp_path, spec_text(axes=axes, extra='design = "sobol"\n'
                                                    "samples = 16")))
    assert len(spec.points) == 16 * (3 + 2)
    problem = {k: spec.problem[k] for k in ("num_vars", "names", "bounds")}
    assert problem == {"num_vars": 3, "names": ["shocks.0.size", "lenders.ltv_max",
                                                "buyers.capacity_scale"],
                       "bounds": [[0.2, 0.6], [0.8, 0.95], [0.5, 2.0]]}
    x = np.array([[p[k] for k in spec.problem["names"]] for p in spec.points])
    assert (x.min(axis=0) >= [0.2, 0.8, 0.5]).all() and (x.max(axis=0) <= [0.6, 0.95, 2]).all()
    # Saltelli blocks of D+2 rows: A, AB_1..AB_D, B; AB_i is A with column i taken from B
    a, b = x[0::5], x[4::5]
    for i in range(3):
        ab = x[1 + i::5]
        assert np.array_equal(ab[:, i], b[:, i])
        assert np.array_equal(np.delete(ab, i, axis=1), np.delete(a, i, axis=1))


def test_param_hash_depends_on_params_and_base(tmp_path):
    spec = load_spec(write_spec(tmp_path, spec_text()))
    hashes = {param_hash(p, spec.base_config) for p in spec.points}
    assert len(hashes) == 4 and all(len(h) == 16 for h in hashes)
    other = {**spec.base_config, "months": 7}
    assert param_hash(spec.points[0], other) != param_hash(spec.points[0], spec.base_config)
    reseeded = {**spec.base_config, "seed": 1}  # the run seed is not part of the point
    assert param_hash(spec.points[0], reseeded) == param_hash(spec.points[0], spec.base_config)


# --------------------------------------------------------------------------- backends
@pytest.mark.slow
def test_ledger_reads_back_and_series_are_written(serial):
    _, out = serial
    df = read_runs(out)
    assert list(df.columns) == ["param_hash", "seed", "point", "replicate", "status", "error",
                                "duration", "policy.repo.enabled", "shocks.0.size",
                                "credit_losses", "defaults", "max_peak_price_fall",
                                "realised_lgd"]
    assert len(df) == 8 and (df.status == "ok").all()
    assert sorted(set(df.seed)) == sorted(replicate_seeds(7, 2))
    meta = read_meta(out)
    assert meta["axes"] == ["policy.repo.enabled", "shocks.0.size"] and meta["problem"] is None
    assert (out / "spec.toml").is_file()
    conn = sqlite3.connect(out / "ledger.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    import pandas as pd

    from sim.io.ledger import read_series
    row = df.iloc[0]
    s = read_series(out, row.param_hash, row.seed)
    assert list(s.columns) == ["month", "credit_losses", "price_H100"] and len(s) == 7
    assert s["month"].tolist() == list(range(7))
    # one Parquet file per batch (all 8 runs: SERIAL_BATCH = 32 in process): every run's rows in it
    files = sorted((out / "series").glob("*.parquet"))
    assert len(files) == 1 and files[0].name.startswith("b_")
    batch = pd.read_parquet(files[0])
    assert len(batch) == 8 * 7 and batch.groupby(["param_hash", "seed"]).size().eq(7).all()
    assert not list((out / "series").glob(".*.tmp"))
    # the ledger's metrics are the model's: re-run one point by hand
    from sim.batch.sweep import build_tasks
    from sim.core.config import build
    from sim.world import metrics
    from sim.world.runner import run_scenario

    task = build_tasks(load_spec(serial[0]))[0]
    model = run_scenario(build(task.config))
    stored = df[(df.param_hash == task.param_hash) & (df.seed == task.seed)].iloc[0]
    assert stored.credit_losses == metrics.summary(model)["credit_losses"]
    assert s.credit_losses.iloc[-1] == pytest.approx(model.rec["credit_losses"][6])


@pytest.mark.slow
def test_process_pool_equals_serial_bit_for_bit(serial, tmp_path):
    spec, ref = serial
    res = run_sweep(spec, out=tmp_path / "pool", workers=2, progress=False)
    assert (res.done, res.failed) == (8, 0)
    assert ledger_rows(tmp_path / "pool") == ledger_rows(ref)


@pytest.mark.slow
def test_dask_local_cluster_equals_serial(serial, tmp_path):
    spec, ref = serial
    res = run_sweep(spec, out=tmp_path / "dask", dask_local=2, progress=False)
    assert (res.done, res.failed) == (8, 0)
    assert ledger_rows(tmp_path / "dask") == ledger_rows(ref)


# --------------------------------------------------------------------------- failures
@pytest.mark.slow
def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    # each value is valid against the base, but ltv_cure 0.82 > ltv_max 0.80 is not
    axes = ('[[axes]]\nkey = "lenders.ltv_max"\nvalues = [0.85, 0.80]\n'
            '[[axes]]\nkey = "lenders.ltv_cure"\nvalues = [0.75, 0.82]\n')
    out = tmp_path / "out"
    res = run_sweep(write_spec(tmp_path, spec_text(axes=axes)), out=out, workers=1,
                    progress=False)
    assert (res.total, res.done, res.failed) == (8, 6, 2)
    df = read_runs(out)
    bad = df[df.status == "failed"]
    assert set(zip(bad["lenders.ltv_max"], bad["lenders.ltv_cure"], strict=True)) == {(0.8, 0.82)}
    assert bad.error.str.startswith("ConfigError: lenders.ltv_cure = 0.82 must be <=").all()
    assert bad.credit_losses.isna().all() and df[df.status == "ok"].credit_losses.notna().all()
    again = run_sweep(write_spec(tmp_path, spec_text(axes=axes)), out=out, workers=1,
                      progress=False)
    assert (again.done, again.skipped) == (0, 8)  # failed runs are not retried by default
    retried = run_sweep(write_spec(tmp_path, spec_text(axes=axes)), out=out, workers=1,
                        progress=False, retry_failed=True)
    assert (retried.done, retried.failed, retried.skipped) == (0, 2, 6)
    assert len(ledger_rows(out)) == 8


@pytest.mark.slow
def test_an_exception_inside_a_run_is_recorded(tmp_path, monkeypatch):
    """A run whose month raises (phase 5, run by run also in a sweep's stacked runs) is a
    failed result with its error; the other runs of its stack are done."""
    real = phases.orders.run

    def flaky(m, month):
        if m.cfg.policy.repo.enabled and m.cfg.shocks[0].size > 0.5 and m.env.t == 2:
            raise FloatingPointError("boom\nsecond line")
        return real(m, month)

    monkeypatch.setattr(phases.orders, "run", flaky)
    res = run_sweep(write_spec(tmp_path, spec_text()), out=tmp_path / "o", workers=1,
                    progress=False)
    assert (res.done, res.failed) == (6, 2)
    assert res.first_error == "FloatingPointError: boom second line"


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_uninterrupted_ledger(tmp_path):
    # 24-month runs, so that the sweep is still running when it is killed: 96 runs, three
    # in-process batches (SERIAL_BATCH = 32), killed once the first is committed
    spec = write_spec(tmp_path, spec_text(months=24, replicates=24))
    ref = tmp_path / "ref"
    run_sweep(spec, out=ref, workers=1, progress=False)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "sweep", str(spec), "--out",
                             str(out), "--workers", "1"], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        n = 0
        while time.monotonic() < deadline and n < 3:
            time.sleep(0.05)
            if (out / "ledger.sqlite").exists():
                try:
                    n = len(ledger_rows(out))
                except sqlite3.Error:
                    n = 0
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    partial = ledger_rows(out)
    assert 3 <= len(partial) < 96
    res = run_sweep(spec, out=out, workers=1, progress=False)
    assert res.skipped == len(partial) and res.done == 96 - len(partial)
    assert ledger_rows(out) == ledger_rows(ref)  # each key once, metrics as uninterrupted
    conn = sqlite3.connect(out / "ledger.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# --------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_sweep_runs_and_resumes(tmp_path, capsys):
    spec = write_spec(tmp_path, spec_text(replicates=1))
    argv = ["sweep", str(spec), "--out", str(tmp_path / "o"), "--workers", "1"]
    assert main(argv) == 0
    assert "4 runs: 4 done, 0 already in the ledger, 0 failed" in capsys.readouterr().out
    assert main(argv) == 0
    assert "4 runs: 0 done, 4 already in the ledger" in capsys.readouterr().out


@pytest.mark.slow
def test_a_changed_spec_in_the_same_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["sweep", str(write_spec(tmp_path, spec_text(replicates=1))), "--out", str(out),
                 "--workers", "1"]) == 0
    capsys.readouterr()
    changed = write_spec(tmp_path, spec_text(replicates=1, months=7), "b.toml")
    assert main(["sweep", str(changed), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liqsim: error:") and "holds a different sweep (changed: months" in err
    assert len(err.splitlines()) == 1


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _spec_case(body: str):
    return lambda t: write_spec(t, body, "bad.toml")


BASE = 'name = "b"\nbase = "crypto_winter"\nmonths = 6\nreplicates = 2\n'
VAL_AXIS = '[[axes]]\nkey = "policy.repo.enabled"\nvalues = [false, true]\n'
RANGE_AXIS = '[[axes]]\nkey = "shocks.0.size"\nrange = [0.2, 0.6]\n'

BAD_SPECS = [
    ("missing-file", lambda t: t / "nope.toml", ["nope.toml", "not found"]),
    ("directory", lambda t: t, ["is a directory"]),
    ("over-size-limit", lambda t: _sparse(t / "big.toml", 2 * 2**30),
     ["sweep spec '", "big.toml' is 2,048 MiB; the limit is 1 MiB"]),
    ("fifo", lambda t: _fifo(t / "fifo.toml"),
     ["sweep spec '", "fifo.toml' is a FIFO (named pipe), not a regular file"]),
    ("dotted-key-200000-parts", _spec_case(".".join(["a"] * 200_000) + " = 1\n"),
     ["bad.toml: line 1: a dotted key of more than 32 parts (the limit)"]),
    ("malformed-toml", _spec_case("name = \n[["), ["malformed TOML"]),
    ("unknown-top-key", _spec_case(BASE + "bogus = 1\n" + VAL_AXIS), ["unknown key 'bogus'"]),
    ("missing-replicates", _spec_case('name = "b"\nbase = "baseline"\n' + VAL_AXIS),
     ["missing key 'replicates'"]),
    ("zero-replicates", _spec_case(BASE.replace("replicates = 2", "replicates = 0") + VAL_AXIS),
     ["replicates = 0"]),
    ("bad-name", _spec_case(BASE.replace('"b"', '"a b"') + VAL_AXIS), ["name = 'a b'"]),
    ("no-axes", _spec_case(BASE + "axes = []\n"), ["axes"]),
    ("empty-axis", _spec_case(BASE + '[[axes]]\nkey = "lenders.count"\nvalues = []\n'),
     ["axes.0.values", "at least 1"]),
    ("values-and-range", _spec_case(BASE + VAL_AXIS.replace("]\n", "]\nrange = [0, 1]\n", 1)),
     ["either values", "not both"]),
    ("neither", _spec_case(BASE + '[[axes]]\nkey = "lenders.count"\n'), ["either values"]),
    ("range-three-items", _spec_case(BASE + '[[axes]]\nkey = "lenders.count"\n'
                                     "range = [1, 2, 3]\nsteps = 2\n"), ["axes.0.range"]),
    ("range-reversed", _spec_case(BASE + '[[axes]]\nkey = "shocks.0.size"\nrange = [0.6, 0.2]\n'
                                  "steps = 2\n"), ["needs low < high"]),
    ("grid-range-no-steps", _spec_case(BASE + RANGE_AXIS), ["needs steps"]),
    ("unknown-key", _spec_case(BASE + '[[axes]]\nkey = "lenders.bogus"\nvalues = [1]\n'),
     ["axis 'lenders.bogus'", "unknown key 'lenders.bogus'"]),
    ("unknown-section", _spec_case(BASE + '[[axes]]\nkey = "nope.x"\nvalues = [1]\n'),
     ["unknown key 'nope"]),
    ("list-index-out-of-range", _spec_case(BASE + '[[axes]]\nkey = "shocks.9.size"\n'
                                           "values = [0.1]\n"), ["index out of range"]),
    ("invalid-value", _spec_case(BASE + '[[axes]]\nkey = "shocks.0.size"\nvalues = [1.5]\n'),
     ["axis 'shocks.0.size': shocks.0.size = 1.5", "less than or equal to 1"]),
    ("wrong-type-value", _spec_case(BASE + '[[axes]]\nkey = "lenders.count"\nvalues = ["x"]\n'),
     ["lenders.count", "valid integer"]),
    ("range-on-bool", _spec_case(BASE + '[[axes]]\nkey = "policy.repo.enabled"\n'
                                 "range = [0, 1]\nsteps = 2\n"), ["range needs a numeric key"]),
    ("duplicate-axis", _spec_case(BASE + VAL_AXIS + VAL_AXIS), ["more than once"]),
    ("seed-axis", _spec_case(BASE + '[[axes]]\nkey = "seed"\nvalues = [1, 2]\n'),
     ["'seed' cannot be swept"]),
    ("bad-design", _spec_case(BASE + 'design = "random"\n' + VAL_AXIS), ["design = 'random'"]),
    ("lhs-without-samples", _spec_case(BASE + 'design = "lhs"\n' + RANGE_AXIS),
     ["samples: required"]),
    ("lhs-values-only", _spec_case(BASE + 'design = "lhs"\nsamples = 4\n' + VAL_AXIS),
     ["needs at least one axis with a range"]),
    ("sobol-explicit-values", _spec_case(BASE + 'design = "sobol"\nsamples = 8\n' + RANGE_AXIS
                                         + VAL_AXIS), ["sobol design samples ranges only"]),
    ("sobol-not-power-of-two", _spec_case(BASE + 'design = "sobol"\nsamples = 100\n'
                                          + RANGE_AXIS), ["power of two"]),
    ("grid-with-samples", _spec_case(BASE + "samples = 8\n" + VAL_AXIS),
     ["only the lhs and sobol designs"]),
    ("unknown-metric", _spec_case(BASE + 'metrics = ["losses"]\n' + VAL_AXIS),
     ["metrics: unknown name 'losses'", "credit_losses"]),
    ("unknown-series", _spec_case(BASE + 'series = ["nope"]\n' + VAL_AXIS),
     ["series: unknown name 'nope'"]),
    ("base-not-found", _spec_case(BASE.replace("crypto_winter", "nowhere") + VAL_AXIS),
     ["base: scenario 'nowhere' not found"]),
    ("months-zero", _spec_case(BASE.replace("months = 6", "months = 0") + VAL_AXIS),
     ["months = 0"]),
    ("too-many-runs", _spec_case(BASE.replace("replicates = 2", "replicates = 100000")
                                 + '[[axes]]\nkey = "shocks.0.size"\nrange = [0.1, 0.9]\n'
                                 "steps = 1000\n"), ["the limit is"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("argv_for", "fragments"), [c[1:] for c in BAD_SPECS],
                         ids=[c[0] for c in BAD_SPECS])
def test_bad_specs_exit_2_with_one_line(argv_for, fragments, tmp_path, capsys):
    spec = argv_for(tmp_path)
    code = main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("liqsim: error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--workers", "0"], "not in the range"),
    (["--dask-local", "2", "--scheduler", "tcp://127.0.0.1:1"], "cannot be used together"),
    (["--workers", "2", "--dask-local", "2"], "--workers applies to the local process pool"),
    (["--scheduler", " "], "empty address"),
])
def test_bad_sweep_flags_exit_2(flags, fragment, tmp_path, capsys):
    spec = write_spec(tmp_path, spec_text(replicates=1))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_load_spec_resolves_a_base_path_relative_to_the_spec(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mybase.toml").write_text('name = "mine"\nmonths = 9\n')
    axes = '[[axes]]\nkey = "policy.repo.enabled"\nvalues = [false, true]\n'
    spec = load_spec(write_spec(tmp_path / "sub", spec_text(axes=axes).replace(
        'base = "crypto_winter"\nmonths = 6\n', 'base = "mybase.toml"\n')))
    assert spec.base_config["name"] == "mine" and spec.base_config["months"] == 9
    with pytest.raises(ConfigError, match="shocks.0"):  # mybase has no shocks
        load_spec(write_spec(tmp_path / "sub", spec_text().replace(
            'base = "crypto_winter"', 'base = "mybase.toml"'), "x.toml"))


def test_shipped_tiny_spec_is_valid():
    spec = load_spec(REPO / "experiments" / "sweeps" / "tiny.toml")
    assert len(spec.points) == 4 and spec.replicates == 3


def test_an_integer_value_for_a_float_key_is_the_same_point_as_its_float(tmp_path):
    axes = '[[axes]]\nkey = "buyers.capacity_scale"\nvalues = [1, 2.0]\n'
    spec = load_spec(write_spec(tmp_path, spec_text(axes=axes)))
    assert [type(p["buyers.capacity_scale"]) for p in spec.points] == [float, float]
    same = load_spec(write_spec(tmp_path, spec_text(axes=axes.replace("[1, ", "[1.0, ")), "b"))
    assert [param_hash(p, spec.base_config) for p in spec.points] == [
        param_hash(p, same.base_config) for p in same.points]


def test_guided_chunks_cover_every_run_once_in_order_and_shrink_towards_the_end():
    """Guided self-scheduling (sim.batch.sweep._chunks): 200 runs on 2 workers start with full
    chunks of 8 and end with single runs, so no worker idles while the other runs a last
    full chunk; one worker keeps fixed chunks."""
    from sim.batch.sweep import _chunks

    tasks = list(range(200))
    chunks = _chunks(tasks, MAX_CHUNK, 2)
    assert [t for c in chunks for t in c] == tasks
    sizes = [len(c) for c in chunks]
    assert sizes[0] == 8 and sizes[-1] == 1
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))
    done = 0
    for n in sizes:  # never more than the remaining runs / (4 x workers), except the floor 1
        assert n <= max(1, (200 - done) // 8)
        done += n
    assert [len(c) for c in _chunks(list(range(20)), 8, 1)] == [8, 8, 4]


@pytest.mark.slow
def test_runner_and_worker_preload_do_not_import_scipy_stats():
    # scipy.stats costs ~0.6 s a process: only compare() imports it, when it is called
    code = ("import sys, sim.world.runner, sim.batch.sweep, sim.world.metrics\n"
            "assert 'scipy.stats' not in sys.modules, 'scipy.stats imported at import time'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_ledger_from_before_platforms_gains_the_column_and_keeps_its_runs(tmp_path):
    """A ledger written before runs recorded their platform is resumed: the column is added,
    the old row keeps a NULL platform, and new rows name theirs."""
    import sqlite3

    from sim.core.numerics import platform_info
    from sim.io.ledger import Ledger, platform_id, read_platforms

    con = sqlite3.connect(tmp_path / "ledger.sqlite")
    con.executescript("""CREATE TABLE runs (param_hash TEXT NOT NULL, seed INTEGER NOT NULL,
        point INTEGER NOT NULL, replicate INTEGER NOT NULL, params TEXT NOT NULL,
        status TEXT NOT NULL, error TEXT, metrics TEXT, duration REAL, version TEXT,
        finished_at TEXT, PRIMARY KEY (param_hash, seed));
        INSERT INTO runs VALUES ('old', 1, 0, 0, '{}', 'ok', NULL, '{}', 0.1, 'v', 't');""")
    con.commit()
    con.close()
    ledger = Ledger(tmp_path)
    info = platform_info()
    row = {"param_hash": "new", "seed": 2, "point": 1, "replicate": 0, "params": {},
           "status": "ok", "error": None, "metrics": {}, "duration": 0.1, "version": "v",
           "finished_at": "t", "platform": platform_id(info)}
    ledger.record(row, info)
    ledger.record({**row, "seed": 3}, None)  # the record is stored once
    ledger.close()
    got = read_platforms(tmp_path)
    assert got == {None: ({}, 1), platform_id(info): (info, 2)}


def test_a_point_is_validated_once_and_its_replicates_get_their_seeds(monkeypatch):
    """run_task builds (validates) a point's scenario once per process; each replicate runs on
    a copy with its own seed and gives exactly what a fresh build of its config gives."""
    import sim.batch.sweep as sw
    from sim.batch.sweep import RunTask, run_task, task_scenario
    from sim.core.config import build, load_scenario
    from sim.world import metrics
    from sim.world.runner import run_scenario

    base = load_scenario("baseline", months=4).model_dump()
    calls = []
    real = sw.build
    monkeypatch.setattr(sw, "build", lambda c: calls.append(1) or real(c))
    monkeypatch.setattr(sw, "_POINTS", sw.OrderedDict())
    tasks = [RunTask("p1", s, 0, r, {"buyers.capacity_scale": 0.5}, base,
                     ("credit_losses", "defaults"), ()) for r, s in enumerate([11, 12, 13])]
    results = [run_task(t) for t in tasks]
    assert len(calls) == 1 and all(r.status == "ok" for r in results)
    for t, r in zip(tasks, results, strict=True):
        assert task_scenario(t).seed == t.seed
        s = metrics.summary(run_scenario(build(t.config)))
        assert r.metrics == {"credit_losses": s["credit_losses"], "defaults": s["defaults"]}
    other = RunTask("p2", 11, 1, 0, {"buyers.capacity_scale": 0.7}, base, ("defaults",), ())
    run_task(other)
    assert len(calls) == 2  # a new point is validated


def test_the_counterfactual_runs_only_for_a_metric_that_needs_it(monkeypatch):
    """crypto_winter measures its cascade against a same-seed counterfactual run (as costly as
    the run). A sweep keeping neither cascade metric skips it (and DebtRank, if it keeps no
    debtrank metric), and its other metrics are the ones the full summary gives; one keeping
    cascade_size runs it."""
    import sim.world.metrics as wm
    from sim.batch.sweep import RunTask, run_task
    from sim.core.config import load_scenario
    from sim.world.model import LiquidationModel

    base = load_scenario("crypto_winter", months=6).model_dump()
    assert base["metrics"]["cascade_counterfactual"]
    ran = []
    real = wm.cascade
    monkeypatch.setattr(wm, "cascade", lambda m: ran.append(1) or real(m))
    keep = ("credit_losses", "defaults", "lender_failures", "max_peak_price_fall")
    lean = run_task(RunTask("p", 5, 0, 0, {}, base, keep, ()))
    assert lean.status == "ok" and ran == []
    full = run_task(RunTask("p", 5, 0, 0, {}, base, (*keep, "cascade_size"), ()))
    assert full.status == "ok" and ran == [1]
    assert {k: full.metrics[k] for k in keep} == lean.metrics
    m = LiquidationModel(load_scenario("crypto_winter", months=6)).run()
    s = wm.summary(m, keys=keep)
    assert "cascade_size" not in s and "defaults_counterfactual" not in s
    assert "debtrank" not in s and ran == [1]  # neither part was computed
    every = wm.summary(m)
    assert set(every) - set(s) == {"cascade_size", "defaults_counterfactual", "debtrank"}
    assert all(s[k] == every[k] for k in s if k != "liqsim_version")
    assert wm.summary(m, keys=["debtrank.max_single"])["debtrank"] == every["debtrank"]


def test_in_process_runs_are_committed_in_batches_and_a_stop_commits_the_finished_ones(
        monkeypatch):
    """run_serial hands the sink one batch of SERIAL_BATCH results at a time (8 here; 32 by
    default), in order; a Ctrl-C (or any error outside a run) in the middle of a batch first
    commits the runs of the batch that finished, then goes on up."""
    assert SERIAL_BATCH == 32
    monkeypatch.setattr("sim.batch.sweep.SERIAL_BATCH", 8)
    batches = []
    run_serial(list(range(19)), batches.append,
               runner=lambda t: RunResult(t, "ok", None, {}, 0.0, "v"))
    assert [[r.key for r in b] for b in batches] == [list(range(8)), list(range(8, 16)),
                                                      [16, 17, 18]]

    def stopped_at_11(t):
        if t == 11:
            raise KeyboardInterrupt
        return RunResult(t, "ok", None, {}, 0.0, "v")

    batches.clear()
    with pytest.raises(KeyboardInterrupt):
        run_serial(list(range(19)), batches.append, runner=stopped_at_11)
    assert [[r.key for r in b] for b in batches] == [list(range(8)), [8, 9, 10]]
    batches.clear()
    with pytest.raises(KeyboardInterrupt):  # at a batch's first run: nothing more to commit
        run_serial(list(range(11, 19)), batches.append, runner=stopped_at_11)
    assert [[r.key for r in b] for b in batches] == []


class _Cyclic:
    """A run's leftover that only the cyclic garbage collector frees (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


def test_each_batch_frees_its_finished_models(monkeypatch):
    """A finished model is freed only by the cyclic collector; with automatic collection off,
    run_serial still frees each batch's leftovers once the batch is committed (without
    collect_garbage every one of them would still be alive at the end)."""
    import gc
    import weakref

    monkeypatch.setattr("sim.batch.sweep.SERIAL_BATCH", 4)
    refs, alive_at_commit = [], []

    def runner(t):
        obj = _Cyclic()
        refs.append(weakref.ref(obj))
        return RunResult(t, "ok", None, {}, 0.0, "v")

    def sink(batch):  # the previous batches' leftovers are gone when the next one commits
        alive_at_commit.append(sum(r() is not None for r in refs[:-len(batch)]))

    was = gc.isenabled()
    gc.disable()
    try:
        run_serial(list(range(12)), sink, runner=runner)
        assert sum(r() is not None for r in refs) == 0
    finally:
        if was:
            gc.enable()
    assert len(refs) == 12 and alive_at_commit == [0, 0, 0]
