"""Failure paths of the sweep engine and the sweep analysis that the end-to-end tests
(test_sweep.py, test_sweep_faults.py, test_analyze.py) do not reach.

The runs here do not run the model: a module-level run function (``quick``) returns metrics
computed from the run's design point and replicate, ``credit_losses = 1000 * point +
replicate`` and ``defaults = replicate + 1``, so every number in a ledger or a table can be
checked by hand and a sweep takes well under a second. Pool workers are forked from a fork
server, so the run functions live in this (importable) module.

* Local pool (``sim.batch.sweep.run_pool``): workers that die before they start any run stop the
  sweep after three such passes with a one-line error; a run that kills its worker every time
  is failed after MAX_DEATHS = 2 deaths while the others finish, and ``retry_failed`` re-runs
  exactly that run.
* Dask (``sim.batch.sweep._dask_loop``), on a fake client that runs each submitted chunk at once in
  this process: a chunk whose future raises KilledWorker is re-submitted run by run, and a run
  that still fails becomes a failed result carrying the error text; a scheduler that cannot
  be reached, or that goes away, is a one-line error.
* Analysis (``sim.batch.analyze``): ledgers that are SQLite but not a sweep's; what ``build`` writes
  and leaves out for sweeps without a two-level axis, with one replicate, with a Latin
  hypercube, or with a Sobol design whose indices cannot be computed; the default share when
  the borrower counts are swept or unknown.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import sim.batch.sweep
from sim.batch.sweep import RunResult, RunTask, run_dask, run_sweep
from sim.cli import main
from sim.core.config import ConfigError
from sim.io.ledger import SCHEMA, read_runs


def quick(task: RunTask) -> RunResult:
    """A run in no time, with metrics one can compute by hand from (point, replicate)."""
    return RunResult(task.key, "ok", None, {"credit_losses": 1000.0 * task.point + task.replicate,
                                            "defaults": float(task.replicate + 1)}, 0.0, "test")


def kills_point_1_replicate_0(task: RunTask) -> RunResult:
    """Kill the worker process (no clean-up, as the OOM killer would) every time run
    (point 1, replicate 0) starts; every other run is ``quick``."""
    if (task.point, task.replicate) == (1, 0):
        os._exit(3)
    return quick(task)


def dead_on_arrival(started, coordinator: int) -> None:
    """A pool worker initializer that exits at once: the worker never starts a chunk."""
    os._exit(3)


def write_spec(tmp: Path, axes: str, replicates: int = 2, design: str = "grid",
               samples: int | None = None) -> Path:
    p = tmp / "spec.toml"
    p.write_text(f'name = "paths"\nbase = "baseline"\nmonths = 2\nreplicates = {replicates}\n'
                 f'root_seed = 7\ndesign = "{design}"\n'
                 + (f"samples = {samples}\n" if samples else "")
                 + 'metrics = ["credit_losses", "defaults"]\n' + axes, encoding="utf-8")
    return p


def values_axis(key: str, values: list) -> str:
    return f'[[axes]]\nkey = "{key}"\nvalues = {json.dumps(values)}\n'


def range_axis(key: str, low: float, high: float) -> str:
    return f'[[axes]]\nkey = "{key}"\nrange = [{low}, {high}]\n'


SCALE4 = values_axis("buyers.capacity_scale", [0.5, 1.0, 1.5, 2.0])  # 4 points


def n_rows(out: Path) -> int:
    conn = sqlite3.connect(out / "ledger.sqlite")
    try:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        conn.close()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("liqsim: error: "), err
    return err.removeprefix("liqsim: error: ")


# --------------------------------------------------------------------------- local pool
@pytest.mark.slow
def test_workers_that_die_before_any_run_stop_the_sweep_after_three_passes(
        tmp_path, monkeypatch, capsys):
    spec, out = write_spec(tmp_path, SCALE4), tmp_path / "out"
    passes = []
    real_pass = sim.batch.sweep._pool_pass

    def counting_pass(batch, *args):
        passes.append(len(batch))
        return real_pass(batch, *args)

    monkeypatch.setattr(sim.batch.sweep, "_pool_pass", counting_pass)
    monkeypatch.setattr(sim.batch.sweep, "_worker_init", dead_on_arrival)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "2"]) == 2
    assert one_error_line(capsys) == ("worker processes keep dying before they start a run; "
                                      "re-run to resume (finished runs are kept)")
    assert passes == [8, 8, 8]  # 4 points x 2 replicates, nothing started, three times
    assert n_rows(out) == 0
    monkeypatch.undo()
    res = run_sweep(spec, out=out, workers=2, progress=False, runner=quick)
    assert (res.done, res.failed, res.skipped) == (8, 0, 0)


@pytest.mark.slow
def test_a_run_that_always_kills_its_worker_is_failed_and_retry_failed_reruns_it(tmp_path):
    spec, out = write_spec(tmp_path, SCALE4), tmp_path / "out"
    res = run_sweep(spec, out=out, workers=2, progress=False, runner=kills_point_1_replicate_0)
    assert (res.done, res.failed) == (7, 1)
    df = read_runs(out).set_index(["point", "replicate"]).sort_index()
    failed = df[df.status == "failed"]
    assert list(failed.index) == [(1, 0)]
    assert failed.error.iloc[0] == ("WorkerDied: the worker process running this run died 2 "
                                    "times (killed, out of memory, or a crash in native code)")
    assert np.isnan(failed.credit_losses.iloc[0])
    ok = df[df.status == "ok"]  # the runs in flight beside it were retried, not failed
    assert len(ok) == 7 and ok.error.isna().all()
    assert list(ok.credit_losses) == [1000.0 * p + r for p, r in ok.index]

    again = run_sweep(spec, out=out, workers=2, progress=False, runner=quick)
    assert (again.done, again.failed, again.skipped) == (0, 0, 8)  # failed runs are kept
    assert read_runs(out).status.tolist().count("failed") == 1
    retried = run_sweep(spec, out=out, workers=2, progress=False, runner=quick,
                        retry_failed=True)
    assert (retried.done, retried.failed, retried.skipped) == (1, 0, 7)
    df = read_runs(out).set_index(["point", "replicate"])
    assert (df.status == "ok").all() and len(df) == 8
    assert df.loc[(1, 0), "credit_losses"] == 1000.0 and df.loc[(1, 0), "error"] is None


# --------------------------------------------------------------------------- dask
class FakeFuture:
    def __init__(self, value=None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


class FakeClient:
    """Runs each submitted chunk at once, here. A chunk holding a run listed in ``kills``
    fails with KilledWorker (as distributed reports a task whose workers keep dying), as many
    times as listed for that run; ``submitted`` logs (chunk id, points) in order."""

    def __init__(self, workers: int, kills: dict[int, int]) -> None:
        self.workers, self.kills = workers, dict(kills)
        self.submitted: list[tuple[int, list[int]]] = []

    def scheduler_info(self) -> dict:
        return {"workers": {f"tcp://127.0.0.1:{9000 + i}": {} for i in range(self.workers)}}

    def submit(self, fn, chunk_id, chunk, runner, pure=True):
        from distributed import KilledWorker

        assert pure is False  # every submission must run, even of an identical chunk
        self.submitted.append((chunk_id, [t.point for t in chunk]))
        victims = [t.point for t in chunk if self.kills.get(t.point, 0) > 0]
        for p in victims:
            self.kills[p] -= 1
        if victims:
            worker = SimpleNamespace(address="tcp://127.0.0.1:9000")
            return FakeFuture(error=KilledWorker(f"_run_chunk-{chunk_id}", worker, 3))
        return FakeFuture(fn(chunk_id, chunk, runner))


class FakeAsCompleted:
    """distributed.as_completed needs real futures: this yields them in submission order."""

    def __init__(self, futures) -> None:
        self.queue = list(futures)

    def add(self, fut) -> None:
        self.queue.append(fut)

    def __iter__(self):
        while self.queue:
            yield self.queue.pop(0)


def _tasks(n: int) -> list[RunTask]:
    return [RunTask(f"h{i:02d}", 7, i, 0, {}, {}, ("credit_losses",), ()) for i in range(n)]


def test_a_killed_dask_chunk_is_retried_run_by_run_and_a_lethal_run_is_failed(monkeypatch):
    import distributed

    monkeypatch.setattr(distributed, "as_completed", FakeAsCompleted)
    # one worker: 10 runs go out as chunks of MAX_CHUNK = 8 and 2. Run 2 kills every worker
    # it meets; run 5 killed one once (a chunk can die of a neighbour's fault).
    client = FakeClient(workers=1, kills={2: 99, 5: 1})
    got: list[RunResult] = []
    sim.batch.sweep._dask_loop(client, _tasks(10), got.extend, quick)  # a batch at a time
    assert client.submitted == [(0, list(range(8))), (1, [8, 9])] + [(-1, [i]) for i in range(8)]
    assert [r.key[0] for r in got] == ["h08", "h09"] + [f"h{i:02d}" for i in range(8)]
    status = {r.key[0]: r.status for r in got}
    assert status.pop("h02") == "failed" and set(status.values()) == {"ok"}
    bad = next(r for r in got if r.key[0] == "h02")
    # distributed's own message (allowed_failures = 3: the 4th death gives up)
    assert bad.error.startswith("KilledWorker: Attempted to run task '_run_chunk--1' on 4 "
                                "different workers, but all those workers died while running "
                                "it.")
    assert bad.metrics == {} and bad.series is None
    assert next(r for r in got if r.key[0] == "h05").metrics == {"credit_losses": 5000.0,
                                                                 "defaults": 1.0}


def test_a_dask_cluster_that_goes_away_is_one_line(monkeypatch):
    import distributed

    class Gone:
        closed = False

        def __init__(self, address, timeout) -> None:
            self.address = address

        def scheduler_info(self) -> dict:
            raise OSError("Timed out trying to connect to tcp://10.0.0.9:8786 after 10 s")

        def run(self, *args, **kwargs):  # the workers' import check reaches out first
            raise OSError("Timed out trying to connect to tcp://10.0.0.9:8786 after 10 s")

        def close(self) -> None:
            Gone.closed = True

    monkeypatch.setattr(distributed, "Client", Gone)
    with pytest.raises(ConfigError) as e:
        run_dask(_tasks(2), lambda r: None, scheduler="tcp://10.0.0.9:8786", runner=quick)
    assert str(e.value) == ("lost the Dask cluster: OSError: Timed out trying to connect to "
                            "tcp://10.0.0.9:8786 after 10 s; re-run to resume (finished runs "
                            "are kept)")
    assert Gone.closed


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path, capsys):
    """Waits for the client's 10 s connection timeout (about 10.5 s in all)."""
    with socket.socket() as s:  # a port nothing listens on once the socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec, out = write_spec(tmp_path, SCALE4), tmp_path / "out"
    address = f"tcp://127.0.0.1:{port}"
    assert main(["sweep", str(spec), "--out", str(out), "--scheduler", address]) == 2
    assert one_error_line(capsys) == (f"--scheduler {address}: cannot start or reach the Dask "
                                      f"cluster: Timed out trying to connect to {address} after "
                                      "10 s")
    assert n_rows(out) == 0


# --------------------------------------------------------------------------- analysis input
def _sqlite(d: Path, *statements: str) -> Path:
    d.mkdir()
    conn = sqlite3.connect(d / "ledger.sqlite")
    conn.executescript(";\n".join(statements))
    conn.commit()
    conn.close()
    return d


ONE_RUN = ("INSERT INTO runs VALUES ('h', 7, 0, 0, '{}', 'ok', NULL, '{}', 0.0, 'v', 't', NULL, "
           "NULL)")
DAMAGED = "not a liqsim sweep ledger, or a damaged one"


@pytest.mark.parametrize(("statements", "message"), [
    (["CREATE TABLE other (x)"], "{d}: unreadable ledger: no such table: meta"),
    ([SCHEMA, "INSERT INTO meta VALUES ('axes', 'not json')"],
     "{d}/ledger.sqlite: meta 'axes' is not JSON (Expecting value: line 1 column 1 (char 0)): "
     + DAMAGED),
    ([SCHEMA, "INSERT INTO meta VALUES ('spec', '[1, 2]')", ONE_RUN],
     "{d}/ledger.sqlite: meta 'spec' is not a table: " + DAMAGED),
    ([SCHEMA, "INSERT INTO meta VALUES ('axes', '[\"a\"]')",
      ONE_RUN.replace("'{}', 'ok'", "'\"text\"', 'ok'")],
     "{d}/ledger.sqlite: the params of run (h, 7) is not a table: " + DAMAGED),
], ids=["not-a-ledger", "meta-not-json", "spec-not-a-table", "params-not-a-table"])
def test_sqlite_that_is_not_a_sweep_ledger_is_one_line(tmp_path, capsys, statements, message):
    d = _sqlite(tmp_path / "x", *statements)
    assert main(["analyze", str(d)]) == 2
    assert one_error_line(capsys) == message.format(d=d)
    assert not (d / "analysis").exists()


@pytest.mark.slow
def test_resuming_or_verifying_a_damaged_ledger_is_one_line_or_a_finding(tmp_path, capsys):
    """A sweep re-run on a ledger whose meta was damaged stops with one line (it was an
    AttributeError traceback); ``liqsim verify`` reports a run whose stored metrics are not a
    table as differing (it was a traceback too) and exits 1."""
    spec = write_spec(tmp_path, values_axis("buyers.capacity_scale", [0.5, 1.0]), replicates=1)
    out = tmp_path / "out"
    run_sweep(spec, out=out, workers=1, progress=False)  # the real model: verify re-runs it
    first = n_rows(out)
    edit_ledger(out, "UPDATE meta SET value = '[1, 2]' WHERE key = 'spec'")
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    assert one_error_line(capsys) == f"{out}/ledger.sqlite: meta 'spec' is not a table: {DAMAGED}"
    assert n_rows(out) == first == 2  # nothing written, nothing lost
    edit_ledger(out, "UPDATE runs SET metrics = '7' WHERE point = 0")
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"differs (point 0, replicate 0: its stored metrics is not a table: {DAMAGED})" in text
    assert (f"ledger.sqlite meta: modified ({out}/ledger.sqlite: meta 'spec' is not a table: "
            f"{DAMAGED})") in text
    assert "NOT reproduced" in text


@pytest.mark.slow
def test_verify_compares_the_ledger_meta_with_the_manifest(tmp_path, capsys):
    """The manifest's digest covers the ok runs only; the meta a resume and analyze read (spec,
    seeds, base config) is checked against the manifest's copies."""
    spec = write_spec(tmp_path, values_axis("buyers.capacity_scale", [0.5, 1.0]), replicates=1)
    out = tmp_path / "out"
    run_sweep(spec, out=out, workers=1, progress=False)
    assert main(["verify", str(out)]) == 0
    assert ("ledger.sqlite meta: skipped (the spec, seeds and base config match the manifest)"
            in capsys.readouterr().out)
    edit_ledger(out, "UPDATE meta SET value = '[1, 2]' WHERE key = 'seeds'")
    assert main(["verify", str(out)]) == 1
    assert ("ledger.sqlite meta: modified (its spec, seeds or base config differ from the "
            "manifest's)") in capsys.readouterr().out


# --------------------------------------------------------------------------- analysis output
def _analysed(tmp: Path, axes: str, dest: str = "analysis", **kw) -> tuple[Path, set[str]]:
    out = tmp / "out"
    run_sweep(write_spec(tmp, axes, **kw), out=out, workers=1, progress=False, runner=quick)
    assert main(["analyze", str(out), "--out", str(out / dest)]) == 0
    return out, {p.name for p in (out / dest).iterdir()}


def edit_ledger(out: Path, sql: str, *args) -> None:
    conn = sqlite3.connect(out / "ledger.sqlite")
    conn.execute(sql, args)
    conn.commit()
    conn.close()


@pytest.mark.slow
def test_one_axis_without_two_levels_gives_no_paired_or_phase_and_counts_swept_borrowers(
        tmp_path):
    out, files = _analysed(tmp_path, values_axis("borrowers.miner.count", [40, 80, 120]))
    assert files == {"by_axis.csv", "points.csv", "axis__borrowers.miner.count.png",
                     "report.html"}
    table = pd.read_csv(out / "analysis" / "by_axis.csv")
    share = table[table.metric == "default_share"].set_index("value")["mean"]
    # defaults = replicate + 1, averaged over replicates 0 and 1: 1.5; baseline has 60
    # neo-clouds (sim/core/config.py), so over 40 + 60 borrowers 1.5 / 100 = 0.015, then 1.5 / 140
    # and 1.5 / 180
    np.testing.assert_allclose(share.loc[[40, 80, 120]], [0.015, 1.5 / 140, 1.5 / 180])


@pytest.mark.slow
def test_one_replicate_gives_no_paired_table_and_unknown_borrowers_no_default_share(tmp_path):
    axes = values_axis("policy.repo.enabled", [False, True]) + SCALE4
    out, files = _analysed(tmp_path, axes, replicates=1)
    phase = "phase__policy.repo.enabled__buyers.capacity_scale"
    assert files == {"by_axis.csv", "points.csv", "report.html",
                     "axis__policy.repo.enabled.png", "axis__buyers.capacity_scale.png",
                     f"{phase}.png", f"{phase}__default_share.csv",
                     f"{phase}__credit_losses.csv"}  # no paired.csv: one seed, no pairs
    report = (out / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "across design points" in report  # the interval's unit is the point

    # a ledger whose meta has no resolved base: the borrower counts are unknown, so there is
    # no default share and the phase diagram falls back to the raw default count
    edit_ledger(out, "DELETE FROM meta WHERE key = 'base'")
    assert main(["analyze", str(out), "--out", str(out / "nobase")]) == 0
    nobase = {p.name for p in (out / "nobase").iterdir()}
    assert nobase == files - {f"{phase}__default_share.csv"} | {f"{phase}__defaults.csv"}
    assert "default_share" not in set(pd.read_csv(out / "nobase" / "by_axis.csv").metric)
    cells = pd.read_csv(out / "nobase" / f"{phase}__defaults.csv")
    assert cells.drop(columns="policy.repo.enabled").to_numpy().tolist() == [[1.0] * 4] * 2


@pytest.mark.slow
def test_a_latin_hypercube_gets_paired_differences_but_no_phase_diagram(tmp_path):
    axes = values_axis("policy.repo.enabled", [False, True]) + range_axis(
        "buyers.capacity_scale", 0.5, 2.0)
    out, files = _analysed(tmp_path, axes, design="lhs", samples=3)
    assert files == {"by_axis.csv", "points.csv", "paired.csv", "report.html",
                     "axis__policy.repo.enabled.png", "axis__buyers.capacity_scale.png",
                     "paired__policy.repo.enabled__by__buyers.capacity_scale.png"}
    paired = pd.read_csv(out / "analysis" / "paired.csv")
    cl = paired[paired.metric == "credit_losses"]
    # points 0-2 are repo off, 3-5 on with the same hypercube rows: each pair differs by 3000
    assert len(cl) == 3 and np.allclose(cl["mean"], 3000.0) and (cl["n"] == 2).all()


@pytest.mark.slow
def test_sobol_indices_are_skipped_with_a_note_when_they_cannot_be_computed(tmp_path):
    axes = range_axis("buyers.capacity_scale", 0.5, 2.0) + range_axis(
        "environment.utilisation", 0.5, 0.9)
    out, files = _analysed(tmp_path, axes, design="sobol", samples=8, replicates=1)
    sobol = pd.read_csv(out / "analysis" / "sobol.csv")
    assert set(sobol.metric) == {"credit_losses"}  # 8 x (2 + 2) = 32 points
    assert list(sobol.parameter) == ["buyers.capacity_scale", "environment.utilisation"]
    assert "sobol__credit_losses.png" in files and "paired.csv" not in files
    assert not any(f.startswith("phase__") for f in files)
    report = (out / "analysis" / "report.html").read_text(encoding="utf-8")
    for metric in ("defaults", "default_share"):  # 1 in every run: constant
        assert f"Sobol indices of {metric} skipped: the metric is constant." in report

    # every run of point 5 failed: no index can be computed. The copy carries the analysis
    # above; the new one must not leave its sobol.csv and figure beside a report that says
    # the indices were skipped
    holed = tmp_path / "holed"
    shutil.copytree(out, holed)
    edit_ledger(holed, "UPDATE runs SET status = 'failed', metrics = NULL WHERE point = 5")
    (holed / "analysis" / "mine.csv").write_text("a user's file\n")
    assert main(["analyze", str(holed)]) == 0
    report = (holed / "analysis" / "report.html").read_text(encoding="utf-8")
    for metric in ("credit_losses", "defaults", "default_share"):
        assert (f"Sobol indices of {metric} skipped: 1 design points have no successful run."
                in report)
    assert {p.name for p in (holed / "analysis").iterdir()} == {
        "by_axis.csv", "points.csv", "report.html", "mine.csv",
        "axis__buyers.capacity_scale.png", "axis__environment.utilisation.png"}

    edit_ledger(out, "DELETE FROM meta WHERE key = 'problem'")
    assert main(["analyze", str(out), "--out", str(out / "noproblem")]) == 0
    report = (out / "noproblem" / "report.html").read_text(encoding="utf-8")
    assert "Sobol indices skipped: the ledger has no SALib problem." in report
    assert not any(p.name.startswith("sobol") for p in (out / "noproblem").iterdir())
