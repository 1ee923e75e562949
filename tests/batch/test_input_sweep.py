"""Sweep input that used to be accepted and then broke ``analyze``, ``verify`` or the results
folder (an adversarial review), and the cases it showed must work.

* Axis values are checked as the scenario sees them: a non-finite number, a table, a date or a
  list inside a list is one line naming the axis; a value whose type is not the key's (the
  string ``"0.2"`` for a number, ``1`` for a boolean) is refused, so an axis never mixes types;
  two values that validate to the same scenario (``0.0`` and ``-0.0``, ``3`` and ``3.0``) are
  refused instead of running the same model twice under two parameter hashes.
* A sweep name is one safe path component (``.`` and ``..`` would put the ledger outside
  ``results/sweeps/``).
* A list-valued axis (``borrowers.miner.fleet_mix``) is analysed, its values labelled by their
  JSON text; an old ledger that mixes ``0.5`` and ``"0.5"`` is analysed the same way.
* A Sobol design with an integer axis: rounding makes some of the N*(D+2) design points
  coincide; the sweep runs each once and the analysis gives every design point its runs.
* A finished sweep whose re-run fails before it adds a run keeps its manifest.

Runs use ``quick`` (test_sweep_failure_paths.py): metrics computed from (point, replicate),
so the numbers below can be checked by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_sweep_failure_paths import (
    edit_ledger,
    n_rows,
    one_error_line,
    quick,
    range_axis,
    values_axis,
    write_spec,
)

import sim.batch.sweep
from sim.batch.analyze import sobol_indices
from sim.batch.sweep import RunResult, RunTask, load_spec, run_sweep
from sim.cli import main
from sim.core.config import NAME_RULE, ConfigError
from sim.io.ledger import read_meta, read_runs

AX = "axis 'buyers.capacity_scale': "
MIX = "axis 'borrowers.miner.fleet_mix': "
PLAIN = "; values are numbers, booleans, strings or lists of them"


def _axis(key: str, toml_values: str) -> str:
    return f'[[axes]]\nkey = "{key}"\nvalues = {toml_values}\n'


BAD_VALUES = [
    ("nan", _axis("buyers.capacity_scale", "[1.0, nan]"), AX + "value nan is not a finite number"),
    ("inf", _axis("buyers.capacity_scale", "[inf]"), AX + "value inf is not a finite number"),
    ("minus-inf", _axis("buyers.capacity_scale", "[-inf]"),
     AX + "value -inf is not a finite number"),
    ("table", _axis("buyers.capacity_scale", "[{a = 1}]"),
     AX + "value {'a': 1} is a table" + PLAIN),
    ("date", _axis("buyers.capacity_scale", "[2025-01-01]"),
     AX + "value 2025-01-01 is a TOML date" + PLAIN),
    ("list-in-list", _axis("borrowers.miner.fleet_mix", "[[[1, 0]]]"),
     MIX + "value [1, 0] is a list inside a list" + PLAIN),
    ("nan-in-list", _axis("borrowers.miner.fleet_mix", "[[1, nan]]"),
     MIX + "value nan is not a finite number"),
    ("string-for-number", _axis("buyers.capacity_scale", '[0.5, "0.5"]'),
     AX + "value '0.5' is a string, but the key holds a number (write 0.5)"),
    ("number-for-boolean", _axis("policy.repo.enabled", "[false, 1]"),
     "axis 'policy.repo.enabled': policy.repo.enabled = 1: Input should be a valid boolean"),
    ("string-in-list", _axis("borrowers.miner.fleet_mix", '[[1, "0"]]'),
     MIX + "value [1, '0'] is a list of numbers, strings, but the key holds a list of numbers "
           "(write [1.0, 0.0])"),
    ("zero-and-minus-zero", _axis("environment.utilisation", "[0.0, 0.5, -0.0]"),
     "axis 'environment.utilisation': values 0.0 and -0.0 give the same scenario; "
     "list each value once"),
    ("int-and-float-for-int", _axis("lenders.count", "[3, 4, 3.0]"),
     "axis 'lenders.count': values 3 and 3.0 give the same scenario; list each value once"),
    ("int-and-float-for-float", _axis("buyers.capacity_scale", "[1, 1.0]"),
     AX + "values 1 and 1.0 give the same scenario; list each value once"),
    ("same-list", _axis("borrowers.miner.fleet_mix", "[[1, 0], [1.0, 0.0]]"),
     MIX + "values [1, 0] and [1.0, 0.0] give the same scenario; list each value once"),
]


@pytest.mark.parametrize(("axes", "message"), [c[1:] for c in BAD_VALUES],
                         ids=[c[0] for c in BAD_VALUES])
def test_bad_axis_values_are_one_line_and_exit_2(axes, message, tmp_path, capsys):
    spec, out = write_spec(tmp_path, axes), tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    assert one_error_line(capsys) == f"{spec}: {message}"
    assert not out.exists()  # refused before anything is created


def _named(tmp: Path, name: str) -> Path:
    spec = write_spec(tmp, values_axis("buyers.capacity_scale", [1.0]))
    spec.write_text(spec.read_text().replace('name = "paths"', f"name = {json.dumps(name)}"))
    return spec


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "../up", "a b"])
def test_unsafe_sweep_names_are_refused(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out is results/sweeps/<name>/ under here
    spec = _named(tmp_path, name)
    assert main(["sweep", str(spec), "--workers", "1"]) == 2
    assert one_error_line(capsys) == (f"{spec}: name = {name!r}: not a usable name; the "
                                      f"pattern is {NAME_RULE}")  # config.safe_name's rule
    assert not (tmp_path / "results").exists()


def test_a_safe_name_with_dots_names_its_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_sweep(_named(tmp_path, "v1.2_b-c"), workers=1, progress=False, runner=quick)
    assert res.out == Path("results/sweeps/v1.2_b-c") and n_rows(tmp_path / res.out) == 2


def test_whole_floats_for_an_integer_key_are_stored_as_integers(tmp_path):
    spec = load_spec(write_spec(tmp_path, _axis("lenders.count", "[3, 4.0]")))
    assert [p["lenders.count"] for p in spec.points] == [3, 4]
    assert [type(p["lenders.count"]) for p in spec.points] == [int, int]


# --------------------------------------------------------------------------- analysis
def _analyse(out: Path) -> Path:
    assert main(["analyze", str(out)]) == 0
    return out / "analysis"


@pytest.mark.slow
def test_a_list_valued_axis_is_analysed_by_its_json_text(tmp_path):
    out = tmp_path / "out"
    run_sweep(write_spec(tmp_path, _axis("borrowers.miner.fleet_mix", "[[1, 0], [0, 1]]")),
              out=out, workers=1, progress=False, runner=quick)
    assert read_runs(out)["borrowers.miner.fleet_mix"].tolist() == [[1, 0], [1, 0], [0, 1],
                                                                     [0, 1]]
    dest = _analyse(out)
    t = pd.read_csv(dest / "by_axis.csv")
    cl = t[t.metric == "credit_losses"].set_index("value")["mean"]
    # credit_losses = 1000 * point + replicate: point 0 is [1,0], point 1 is [0,1]; the mean
    # over replicates 0 and 1 adds 0.5
    assert cl.to_dict() == {"[0,1]": 1000.5, "[1,0]": 0.5}
    paired = pd.read_csv(dest / "paired.csv")
    row = paired[paired.metric == "credit_losses"].iloc[0]
    # levels sorted as text: B = "[1,0]" (point 0) minus A = "[0,1]" (point 1), every seed
    assert (row.level_a, row.level_b, row["mean"], row.n) == ("[0,1]", "[1,0]", -1000.0, 2)
    assert (dest / "axis__borrowers.miner.fleet_mix.png").is_file()


@pytest.mark.slow
def test_an_old_ledger_mixing_a_number_and_its_string_is_analysed(tmp_path):
    """Specs now refuse ``[0.5, "0.5"]``; a ledger written before keeps two points, told
    apart by their JSON text (``0.5`` and ``"0.5"``) instead of crashing the sort."""
    out = tmp_path / "out"
    run_sweep(write_spec(tmp_path, values_axis("buyers.capacity_scale", [0.5, 1.0])), out=out,
              workers=1, progress=False, runner=quick)
    edit_ledger(out, "UPDATE runs SET params = ? WHERE point = 1",
          json.dumps({"buyers.capacity_scale": "0.5"}))
    t = pd.read_csv(_analyse(out) / "by_axis.csv")
    cl = t[t.metric == "credit_losses"].set_index("value")["mean"]
    assert cl.to_dict() == {"0.5": 0.5, '"0.5"': 1000.5}


def counts(task: RunTask) -> RunResult:
    """credit_losses = the run's lender count (a step function of the sampled input);
    defaults undefined (NaN) where the count is 3."""
    n = float(task.params["lenders.count"])
    return RunResult(task.key, "ok", None, {"credit_losses": n,
                                            "defaults": float("nan") if n == 3 else 1.0},
                     0.0, "test")


@pytest.mark.slow
def test_sobol_with_an_integer_axis_gives_indices_for_every_design_point(tmp_path):
    axes = range_axis("lenders.count", 3, 6) + range_axis("buyers.capacity_scale", 0.5, 2.0)
    spec_path = write_spec(tmp_path, axes, replicates=1, design="sobol", samples=16)
    out = tmp_path / "out"
    run_sweep(spec_path, out=out, workers=1, progress=False, runner=counts)
    points = read_meta(out)["points"]
    assert len(points) == 16 * 4
    distinct = {json.dumps(p, sort_keys=True) for p in points}
    assert n_rows(out) == len(distinct) < len(points)  # rounding made points coincide
    dest = _analyse(out)
    sobol = pd.read_csv(dest / "sobol.csv").set_index(["metric", "parameter"])
    # by hand: Y of design point i is its rounded count, in design order
    y = np.array([p["lenders.count"] for p in points], dtype=float)
    want = sobol_indices(read_meta(out)["problem"], y).set_index("parameter")
    got = sobol.loc["credit_losses"]
    np.testing.assert_array_equal(got[["S1", "ST"]].to_numpy(), want[["S1", "ST"]].to_numpy())
    # the capacity does not enter Y: its radial rows reproduce the base rows exactly
    assert got.loc["buyers.capacity_scale", "S1"] == 0.0
    assert got.loc["buyers.capacity_scale", "ST"] == 0.0
    report = (dest / "report.html").read_text(encoding="utf-8")
    assert "no successful run" not in report
    threes = int((y == 3).sum())
    assert threes > 0
    assert ("Sobol indices of defaults skipped: the metric is undefined (NaN) at "
            f"{threes} design points.") in report


# --------------------------------------------------------------------------- manifest
def test_a_rerun_that_fails_before_adding_a_run_keeps_the_manifest(tmp_path, monkeypatch,
                                                                    capsys):
    spec, out = write_spec(tmp_path, values_axis("buyers.capacity_scale", [0.5, 1.0])), \
        tmp_path / "out"
    run_sweep(spec, out=out, workers=1, progress=False, runner=quick)
    before = {f: (out / f).read_bytes() for f in ("manifest.json", "spec.toml")}
    spec.write_text(spec.read_text().replace("replicates = 2", "replicates = 3"))

    def unreachable(*args, **kw):
        raise ConfigError("--scheduler tcp://127.0.0.1:1: cannot start or reach the Dask "
                          "cluster: Timed out")

    monkeypatch.setattr(sim.batch.sweep, "run_dask", unreachable)
    argv = ["sweep", str(spec), "--out", str(out), "--scheduler", "tcp://127.0.0.1:1"]
    assert main(argv) == 2
    assert one_error_line(capsys).startswith("--scheduler tcp://127.0.0.1:1: cannot start")
    # nothing was added, so the directory still describes the finished 2-replicate sweep
    assert {f: (out / f).read_bytes() for f in before} == before
    assert len(read_meta(out)["seeds"]) == 2 and n_rows(out) == 4

    res = run_sweep(spec, out=out, workers=1, progress=False, runner=quick)
    assert (res.done, res.skipped) == (2, 4)
    assert len(read_meta(out)["seeds"]) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["seeds"]) == 3


def test_a_sweep_stopped_after_adding_a_run_has_no_manifest(tmp_path):
    spec, out = write_spec(tmp_path, values_axis("buyers.capacity_scale", [0.5, 1.0])), \
        tmp_path / "out"
    run_sweep(spec, out=out, workers=1, progress=False, runner=quick)
    spec.write_text(spec.read_text().replace("replicates = 2", "replicates = 3"))
    calls = []

    def one_then_crash(task: RunTask) -> RunResult:
        calls.append(task.key)
        if len(calls) > 1:
            raise RuntimeError("crash")
        return quick(task)

    with pytest.raises(RuntimeError, match="crash"):
        run_sweep(spec, out=out, workers=1, progress=False, runner=one_then_crash)
    assert n_rows(out) == 5 and not (out / "manifest.json").exists()
    assert len(read_meta(out)["seeds"]) == 3  # the metadata describes the runs it holds


def test_replicates_may_be_raised_but_not_lowered(tmp_path, capsys):
    """Found by interrupting sweeps: a re-run with fewer replicates was accepted and certified,
    though the ledger held runs of the higher replicates (an unbalanced design for analyze)."""
    axes = values_axis("buyers.capacity_scale", [0.5, 1.0])
    out = tmp_path / "out"
    run_sweep(write_spec(tmp_path, axes, replicates=3), out=out, workers=1, progress=False,
              runner=quick)
    assert n_rows(out) == 6
    spec = write_spec(tmp_path, axes, replicates=2)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    assert one_error_line(capsys) == (f"{out} holds this sweep with 3 replicates; a re-run may "
                                      "keep or raise replicates, not lower them to 2: use "
                                      "another --out")
    res = run_sweep(write_spec(tmp_path, axes, replicates=4), out=out, workers=1,
                    progress=False, runner=quick)
    assert (res.done, res.skipped, n_rows(out)) == (2, 6, 8)


def test_a_resume_removes_temporary_files_a_killed_sweep_left(tmp_path):
    """A SIGKILL between writing a temporary file and renaming it left it for good; a resume
    (which holds the directory's lock) deletes them and nothing else."""
    axes = values_axis("buyers.capacity_scale", [0.5, 1.0])
    out = tmp_path / "out"
    spec = write_spec(tmp_path, axes, replicates=1)
    run_sweep(spec, out=out, workers=1, progress=False, runner=quick)
    stale = [out / ".manifest.json.ab12.tmp", out / "series" / ".h_1.parquet.cd34.tmp"]
    for f in stale:
        f.write_bytes(b"half")
    keep = out / "series" / "notes.tmp"  # not a hidden temporary of liqsim's
    keep.write_text("mine")
    run_sweep(spec, out=out, workers=1, progress=False, runner=quick)
    assert not any(f.exists() for f in stale)
    assert keep.read_text() == "mine"
