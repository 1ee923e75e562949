"""Sweep faults (issue 7): killed workers and coordinator, full disk, unwritable or locked
directories, a lost Dask worker. Nothing may be lost or duplicated, and the sweep finishes.

The pool tests inject a run function (``runner``) that kills its own worker process with
SIGKILL. Pool workers are forked from a fork server, so the function must live in an
importable module (this one) and reads where to keep its "already died once" marker from the
base scenario's ``description``, the one free-text field every run's config carries.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.batch.sweep import RunTask, SweepLock, run_sweep, run_task
from sim.cli import main
from sim.core.config import ConfigError
from sim.io.ledger import Ledger, read_runs

REPO = Path(__file__).resolve().parents[2]
VICTIM = {"policy.repo.enabled": True, "shocks.0.size": 0.7}


def die_once(task: RunTask):
    """Kill the worker the first time the victim point's replicate 0 runs."""
    marker = Path(task.config["description"]) / f"died_{task.param_hash}_{task.seed}"
    if task.params == VICTIM and task.replicate == 0 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task)


def always_die(task: RunTask):
    """Kill the worker every time the victim point's replicate 0 runs (a poison run)."""
    if task.params == VICTIM and task.replicate == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task)


def make_spec(tmp: Path, replicates: int = 2, months: int = 6, name: str = "spec.toml") -> Path:
    (tmp / "base.toml").write_text(
        f'name = "fault_base"\ndescription = "{tmp}"\nmonths = 12\n'
        '[[shocks]]\nmonth = 2\nkind = "btc"\nsize = 0.5\n', encoding="utf-8")
    p = tmp / name
    p.write_text(
        f'name = "faults"\nbase = "base.toml"\nmonths = {months}\nreplicates = {replicates}\n'
        'metrics = ["credit_losses", "defaults", "max_peak_price_fall"]\n'
        'series = ["credit_losses"]\n'
        '[[axes]]\nkey = "policy.repo.enabled"\nvalues = [false, true]\n'
        '[[axes]]\nkey = "shocks.0.size"\nrange = [0.3, 0.7]\nsteps = 2\n', encoding="utf-8")
    return p


def rows(out: Path) -> list[tuple]:
    conn = sqlite3.connect(out / "ledger.sqlite")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return sorted(conn.execute("SELECT param_hash, seed, point, replicate, params, status, "
                                   "error, metrics FROM runs"))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[tuple]]:
    tmp = tmp_path_factory.mktemp("ref")
    spec = make_spec(tmp)
    run_sweep(spec, out=tmp / "out", workers=1, progress=False)
    return tmp, rows(tmp / "out")


def _fresh_markers(tmp: Path) -> None:
    for m in tmp.glob("died_*"):
        m.unlink()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("liqsim: error: "), err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- worker deaths
@pytest.mark.slow
def test_a_worker_killed_mid_run_is_replaced_and_the_run_retried(reference):
    tmp, ref = reference
    out = tmp / "killed_once"
    _fresh_markers(tmp)
    res = run_sweep(make_spec(tmp), out=out, workers=2, progress=False, runner=die_once)
    assert list(tmp.glob("died_*")), "the worker was never killed"
    assert (res.done, res.failed) == (8, 0)
    assert rows(out) == ref


@pytest.mark.slow
def test_a_run_that_kills_its_worker_twice_is_failed_and_the_sweep_finishes(reference):
    tmp, ref = reference
    out = tmp / "poison"
    res = run_sweep(make_spec(tmp), out=out, workers=2, progress=False, runner=always_die)
    assert (res.done, res.failed) == (7, 1)
    df = read_runs(out)
    bad = df[df.status == "failed"].iloc[0]
    assert (bad["policy.repo.enabled"], bad["shocks.0.size"], bad.replicate) == (True, 0.7, 0)
    assert bad.error.startswith("WorkerDied: the worker process running this run died 2 times")
    assert [r for r in rows(out) if r[5] == "ok"] == [r for r in ref if r[:2] != tuple(bad[:2])]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_coordinator_sigkill_leaves_no_orphans_and_resumes(tmp_path):
    # 24-month runs, so that the sweep is still running when it is killed
    spec = make_spec(tmp_path, replicates=4, months=24)
    run_sweep(spec, out=tmp_path / "ref", workers=1, progress=False)
    ref = rows(tmp_path / "ref")
    out = tmp_path / "coord"
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "sweep", str(spec),
                             "--out", str(out), "--workers", "2"], cwd=REPO,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                if len(rows(out)) >= 2:
                    break
            except (sqlite3.Error, AssertionError):
                pass
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15  # workers notice the coordinator is gone and exit
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_members(proc.pid) == []
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    partial = rows(out)
    assert 2 <= len(partial) < 16
    res = run_sweep(spec, out=out, workers=2, progress=False)
    assert (res.skipped, res.done) == (len(partial), 16 - len(partial))
    assert rows(out) == ref


# --------------------------------------------------------------------------- the directory
@pytest.mark.slow
def test_a_second_sweep_on_the_same_directory_is_refused(reference, capsys):
    tmp, _ = reference
    out = tmp / "locked"
    out.mkdir()
    lock = SweepLock(out)  # as if another sweep were running
    try:
        assert main(["sweep", str(make_spec(tmp)), "--out", str(out), "--workers", "1"]) == 2
        err = _one_error_line(capsys)
        assert f"another sweep (pid {os.getpid()}) is running in this directory" in err
    finally:
        lock.release()
    assert not (out / "ledger.sqlite").exists()  # refused before touching anything


@pytest.mark.slow
def test_the_lock_dies_with_its_holder(reference):
    tmp, ref = reference
    out = tmp / "holder_died"
    out.mkdir()
    code = (f"import sys, time; sys.path.insert(0, {str(REPO)!r}); from pathlib import Path; "
            f"from sim.batch.sweep import SweepLock; SweepLock(Path({str(out)!r})); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="another sweep"):
            run_sweep(make_spec(tmp), out=out, workers=1, progress=False)
        holder.kill()
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    run_sweep(make_spec(tmp), out=out, workers=1, progress=False)
    assert rows(out) == ref


def test_an_output_path_under_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    spec = make_spec(tmp_path)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "afile" / "sub"),
                 "--workers", "1"]) == 2
    assert "cannot create the directory" in _one_error_line(capsys)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "afile"), "--workers", "1"]) == 2
    assert "exists and is not a directory" in _one_error_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_a_read_only_directory_is_a_clear_error(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["sweep", str(make_spec(tmp_path)), "--out", str(ro / "o"),
                     "--workers", "1"]) == 2
        assert "--out" in _one_error_line(capsys)
    finally:
        ro.chmod(0o755)


@pytest.mark.slow
def test_a_full_database_stops_cleanly_and_resumes(reference, monkeypatch, capsys):
    """SQLite's own "database or disk is full" (SQLITE_FULL), provoked by capping the file's
    size with PRAGMA max_page_count once the metadata is written."""
    tmp, ref = reference
    out = tmp / "dbfull"
    spec = make_spec(tmp, replicates=8, name="big.toml")
    real = Ledger.set_meta

    def capped(self, meta):
        real(self, meta)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(Ledger, "set_meta", capped)
    monkeypatch.setattr("sim.batch.sweep.SERIAL_BATCH", 8)  # 4 batches: the disk fills mid-way
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    err = _one_error_line(capsys)
    assert "cannot write results" in err and "full" in err and "re-run to resume" in err
    partial = rows(out)  # consistent: every row complete, integrity_check ok
    assert 0 < len(partial) < 32 and all(r[5] == "ok" and r[7] for r in partial)
    monkeypatch.setattr(Ledger, "set_meta", real)
    res = run_sweep(spec, out=out, workers=1, progress=False)
    assert res.skipped == len(partial) and res.done == 32 - len(partial)
    assert [r for r in rows(out) if r[3] < 2] == ref


@pytest.mark.slow
def test_no_space_for_a_series_file_stops_cleanly_and_resumes(reference, monkeypatch, capsys):
    import sim.batch.sweep
    import sim.io.atomic

    tmp, ref = reference
    out = tmp / "enospc"
    real = sim.io.atomic.atomic_write_bytes
    calls = []

    def full_disk(path, data):
        if str(path).endswith(".parquet"):  # the sweep passes a str (no pathlib per run)
            calls.append(path)
            if len(calls) >= 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(sim.io.atomic, "atomic_write_bytes", full_disk)
    monkeypatch.setattr(sim.batch.sweep, "SERIAL_BATCH", 2)  # 4 batches of 2 runs
    assert main(["sweep", str(make_spec(tmp)), "--out", str(out), "--workers", "1"]) == 2
    err = _one_error_line(capsys)
    assert "No space left on device" in err
    # the third batch's rows are not committed without its series file; the first two are
    assert len(rows(out)) == 4 and len(list((out / "series").glob("b_*.parquet"))) == 2
    monkeypatch.setattr(sim.io.atomic, "atomic_write_bytes", real)
    res = run_sweep(make_spec(tmp), out=out, workers=1, progress=False)
    assert (res.skipped, res.done) == (4, 4)
    assert rows(out) == ref
    assert len(list((out / "series").glob("*.parquet"))) == 4


@pytest.mark.slow
def test_a_batch_file_whose_rows_never_committed_is_removed_and_rerun(reference, monkeypatch,
                                                                      capsys):
    """The coordinator dies between a batch's series file and its ledger transaction (here:
    the transaction fails): the file is on disk, no row names it. The next run deletes it and
    runs the batch again; the ledger matches the reference, and its ``series_file`` column
    names every file on disk. The re-run cuts the batch into two of 2 runs, files of other
    names, so the orphan is gone only if the resume deleted it (a re-run of the same batch
    would replace it by its name)."""
    import sim.batch.sweep
    from sim.io.ledger import Ledger, read_series

    tmp, ref = reference
    out = tmp / "orphan"
    real = Ledger.record_batch
    calls = []

    def fail_second(self, rows_, platforms):
        calls.append(len(rows_))
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        real(self, rows_, platforms)

    def named() -> list[str]:
        conn = sqlite3.connect(out / "ledger.sqlite")
        try:
            return [f for (f,) in conn.execute("SELECT series_file FROM runs")]
        finally:
            conn.close()

    monkeypatch.setattr(Ledger, "record_batch", fail_second)
    monkeypatch.setattr(sim.batch.sweep, "SERIAL_BATCH", 4)  # 2 batches of 4 runs
    assert main(["sweep", str(make_spec(tmp)), "--out", str(out), "--workers", "1"]) == 2
    assert "disk I/O error" in _one_error_line(capsys)
    files = sorted(p.name for p in (out / "series").glob("b_*.parquet"))
    assert len(files) == 2 and len(rows(out)) == 4
    kept = named()
    assert len(set(kept)) == 1 and kept[0].endswith("_4.parquet")  # 4 rows, one file
    orphan = [f for f in files if f != kept[0]]
    assert len(orphan) == 1 and orphan[0].endswith("_4.parquet")
    monkeypatch.setattr(Ledger, "record_batch", real)
    monkeypatch.setattr(sim.batch.sweep, "SERIAL_BATCH", 2)  # the orphan's runs: 2 batches of 2
    res = run_sweep(make_spec(tmp), out=out, workers=1, progress=False)
    assert (res.skipped, res.done) == (4, 4)
    assert rows(out) == ref
    now = sorted(p.name for p in (out / "series").glob("*.parquet"))
    assert orphan[0] not in now and kept[0] in now
    assert now == sorted(set(named())) and len(now) == 3
    for h, seed, *_ in rows(out):
        assert read_series(out, h, seed)["month"].tolist() == list(range(7))  # months = 6


# --------------------------------------------------------------------------- dask
@pytest.mark.slow
def test_a_dask_worker_killed_mid_run_is_replaced_and_the_ledger_matches(reference):
    """The victim run SIGKILLs its Dask worker once; the nanny restarts the worker, the
    scheduler reschedules the lost task, and the ledger equals the serial one."""
    tmp, ref = reference
    out = tmp / "dask_killed"
    _fresh_markers(tmp)
    res = run_sweep(make_spec(tmp), out=out, dask_local=2, progress=False, runner=die_once)
    assert list(tmp.glob("died_*")), "the worker was never killed"
    assert (res.done, res.failed) == (8, 0)
    assert rows(out) == ref
