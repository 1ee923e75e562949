"""Provenance (issue 7): every results directory carries a manifest; ``liqsim verify`` re-runs it.

The manifest must name the liqsim version, the resolved config, the seed, the platform and the
library versions, and hold the SHA-256 of every output file; it is written last, so a crash
leaves none. ``liqsim verify DIR`` exits 0 when a re-run reproduces every number exactly and 1
with a per-file report when it does not (a number changed by one ulp is caught); unusable
directories exit 2 (tested in tests/entry/test_bad_input.py).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.cli import main
from sim.core.config import load_scenario
from sim.core.seeds import replicate_seeds
from sim.io import store
from sim.qa import provenance
from sim.world.runner import run_scenario

MONTHS = "6"


def _run(tmp_path: Path, *extra: str, name: str = "r") -> Path:
    out = tmp_path / name
    assert main(["run", "--months", MONTHS, "--no-figures", "--out", str(out), *extra]) == 0
    return out


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _rehash(d: Path, name: str) -> None:
    """Record a file's new hash in the manifest (a tampering the hash check cannot see)."""
    m = _manifest(d)
    m["files"][name]["sha256"] = hashlib.sha256((d / name).read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(m))


def _verify(d: Path, capsys, *flags: str) -> tuple[int, dict[str, str], str]:
    capsys.readouterr()
    code = main(["verify", str(d), *flags])
    out = capsys.readouterr().out
    status = {}
    for line in out.splitlines():
        name, sep, rest = line.partition(": ")
        if sep and not name.startswith("note") and name != str(d):
            status[name] = rest
    return code, status, out


# --------------------------------------------------------------------------- the manifest
@pytest.mark.slow
def test_run_writes_a_complete_manifest_last(tmp_path):
    d = _run(tmp_path, "--seed", "11")
    m = _manifest(d)
    assert m["manifest_version"] == 1 and m["seed"] == 11 and m["scenario"] == "baseline"
    assert m["config"] == json.loads((d / "config.json").read_text())
    assert m["config"]["seed"] == 11 and m["config"]["months"] == int(MONTHS)
    assert m["liqsim_version"] == json.loads((d / "summary.json").read_text())["liqsim_version"]
    env = m["environment"]
    assert env["python"] == platform.python_version() == sys.version.split()[0]
    assert env["packages"]["numpy"] == np.__version__
    assert env["packages"]["pandas"] == pd.__version__
    assert env["platform"] == platform.platform()
    assert set(store.RUN_FILES) == set(m["files"])
    for name, entry in m["files"].items():
        data = (d / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    # written last: no output is newer than the manifest, and no temporary is left behind
    newest = max((d / n).stat().st_mtime_ns for n in m["files"])
    assert (d / "manifest.json").stat().st_mtime_ns >= newest
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_every_results_directory_carries_a_manifest(tmp_path):
    """Every directory `liqsim run` writes (with or without figures, any scenario) has one."""
    dirs = [_run(tmp_path, name="plain")]
    out = tmp_path / "figs"
    assert main(["run", "crypto_winter", "--months", "3", "--out", str(out)]) == 0
    dirs.append(out)
    for d in dirs:
        m = provenance.read_manifest(d)
        assert set(store.RUN_FILES) <= set(m["files"]), d
        for name, entry in m["files"].items():
            assert provenance.sha256_file(d / name) == entry["sha256"], (d, name)


@pytest.mark.slow
def test_a_crash_while_writing_leaves_the_previous_run_verifiable(tmp_path, monkeypatch, capsys):
    """A run directory is replaced all or nothing: a crash mid-write leaves the old run, its
    manifest included, byte for byte, so ``verify`` still reproduces it."""
    d = _run(tmp_path)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    model = run_scenario(load_scenario(None, seed=9, months=2))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.nx, "write_graphml", boom)
    with pytest.raises(OSError):
        store.write_run(model, d)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    monkeypatch.undo()
    assert _verify(d, capsys)[0] == 0


@pytest.mark.slow
def test_edge_list_input_is_hashed_in_the_manifest(tmp_path, capsys):
    edges = tmp_path / "edges.txt"
    edges.write_text("0 1 2\n1 2\n2 0 0.5\n")
    d = _run(tmp_path, "--set", "network.kind=edgelist", "--set", f"network.edgelist={edges}")
    entry = _manifest(d)["inputs"]["network.edgelist"]
    assert entry == {"path": str(edges.resolve()),
                     "sha256": hashlib.sha256(edges.read_bytes()).hexdigest()}
    assert _verify(d, capsys)[0] == 0
    edges.write_text("0 1 2\n1 2\n2 0 0.5\n1 0\n")  # since the run, lender 1 funds lender 0
    code, status, out = _verify(d, capsys)
    assert code == 1, out
    assert "changed since the run" in out
    assert status["network.graphml"].startswith("differs")


# --------------------------------------------------------------------------- verify
@pytest.mark.slow
def test_verify_reproduces_a_run_exactly(tmp_path, capsys):
    d = _run(tmp_path, "--set", "policy.repo.enabled=true", "--seed", "3")
    code, status, out = _verify(d, capsys)
    assert code == 0, out
    assert status == dict.fromkeys(sorted(store.RUN_FILES), "reproduced (identical)")
    assert out.rstrip().endswith("reproduced exactly")


@pytest.mark.slow
def test_verify_ignores_the_manifest_timestamp(tmp_path, capsys):
    d = _run(tmp_path)
    m = _manifest(d)
    m["created"] = "1999-01-01T00:00:00+00:00"
    (d / "manifest.json").write_text(json.dumps(m))
    assert _verify(d, capsys)[0] == 0


@pytest.mark.slow
def test_verify_catches_one_ulp_in_a_parquet_table(tmp_path, capsys):
    d = _run(tmp_path)
    series = pd.read_parquet(d / "series.parquet")
    row = 4
    series.loc[row, "price_H100"] = np.nextafter(series.loc[row, "price_H100"], np.inf)
    series.to_parquet(d / "series.parquet", index=False)
    _rehash(d, "series.parquet")
    code, status, out = _verify(d, capsys)
    assert code == 1
    assert status["series.parquet"].startswith(
        f"differs (column price_H100: 1 of {int(MONTHS) + 1} rows differ, first row {row}")
    assert status["panel.parquet"] == "reproduced (identical)"
    assert "NOT reproduced (1 file(s) differ)" in out


@pytest.mark.slow
def test_verify_catches_a_changed_summary_number(tmp_path, capsys):
    d = _run(tmp_path)
    summary = json.loads((d / "summary.json").read_text())
    summary["credit_losses"] += 1.0
    (d / "summary.json").write_text(json.dumps(summary))
    _rehash(d, "summary.json")
    code, status, _ = _verify(d, capsys)
    assert code == 1
    assert status["summary.json"].startswith("differs (credit_losses:")


@pytest.mark.slow
def test_verify_reports_modified_and_missing_files(tmp_path, capsys):
    d = _run(tmp_path)
    with (d / "events.parquet").open("ab") as fh:
        fh.write(b"\0")  # bytes changed, manifest not updated
    (d / "panel.parquet").unlink()
    code, status, _ = _verify(d, capsys)
    assert code == 1
    assert status["events.parquet"].startswith("modified")
    assert status["panel.parquet"].startswith("missing")
    assert status["series.parquet"] == "reproduced (identical)"


@pytest.mark.slow
def test_verify_reruns_the_manifest_config(tmp_path, capsys):
    """The manifest is the recipe: outputs of another config (here 1 month shorter) differ."""
    d = _run(tmp_path)
    m = _manifest(d)
    m["config"]["months"] = int(MONTHS) - 1
    (d / "manifest.json").write_text(json.dumps(m))
    code, status, _ = _verify(d, capsys)
    assert code == 1
    assert status["series.parquet"] == f"differs ({int(MONTHS) + 1} rows stored vs " \
                                       f"{int(MONTHS)} re-run)"
    assert status["config.json"].startswith("differs (months: 6 stored vs 5 re-run)")


@pytest.mark.slow
def test_verify_through_the_console_script(tmp_path):
    script = Path(sys.executable).with_name("liqsim")  # the installed console script
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "sim.cli"]
    d = _run(tmp_path)
    res = subprocess.run([*cmd, "verify", str(d)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "reproduced exactly" in res.stdout and "Traceback" not in res.stderr


# --------------------------------------------------------------------------- exact comparison
def test_frame_diff_is_exact_and_nan_aware():
    a = pd.DataFrame({"x": [1.0, np.nan, 3.0], "s": ["a", "b", "c"], "n": [1, 2, 3]})
    assert provenance.frame_diff(a, a.copy()) is None  # NaN equals NaN
    b = a.copy()
    b.loc[2, "x"] = np.nextafter(3.0, 4.0)
    assert provenance.frame_diff(a, b).startswith("column x: 1 of 3 rows differ, first row 2")
    c = a.copy()
    c.loc[0, "s"] = "z"
    assert provenance.frame_diff(a, c).startswith("column s: 1 of 3 rows differ, first row 0")
    assert "dtype" in provenance.frame_diff(a, a.astype({"n": float}))
    assert "columns differ" in provenance.frame_diff(a, a.drop(columns="n"))
    assert provenance.frame_diff(a, a.iloc[:2]) == "3 rows stored vs 2 re-run"


@pytest.mark.slow
def test_figures_hashed_by_write_manifest_are_checked_not_recomputed(tmp_path, capsys):
    """``store.write_manifest(dir, cfg, extra=figures)`` adds figures; verify checks their hash."""
    from sim.views.plots import write_figures

    d = tmp_path / "f"
    model = run_scenario(load_scenario(None, months=3))
    store.write_run(model, d)
    figures = write_figures(model, d)
    store.write_manifest(d, model.cfg, extra=figures)
    assert {p.name for p in figures} <= set(_manifest(d)["files"])
    code, status, _ = _verify(d, capsys)
    assert code == 0
    assert status[figures[0].name].startswith("skipped")
    figures[0].write_bytes(b"not a png")
    code, status, _ = _verify(d, capsys)
    assert code == 1 and status[figures[0].name].startswith("modified")


# --------------------------------------------------------------------------- sweeps
SWEEP_SPEC = """name = "prov"
base = "crypto_winter"
months = 6
replicates = {replicates}
root_seed = 7
metrics = ["credit_losses", "defaults", "max_peak_price_fall", "realised_lgd"]
series = ["credit_losses", "price_H100"]

[[axes]]
key = "policy.repo.enabled"
values = [false, true]
"""


def _sweep(tmp: Path, out: Path, replicates: int = 2) -> Path:
    from sim.batch.sweep import run_sweep

    spec = tmp / "prov.toml"
    spec.write_text(SWEEP_SPEC.format(replicates=replicates), encoding="utf-8")
    res = run_sweep(spec, out=out, workers=1, progress=False)
    assert res.failed == 0 and res.done + res.skipped == 2 * replicates
    return out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A finished tiny sweep (months 6, 2 points x 2 seeds, in-process): read it, never edit."""
    tmp = tmp_path_factory.mktemp("sweep")
    return _sweep(tmp, tmp / "out")


def _copy(src: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, tmp_path / "copy"))


def _ok_rows(d: Path) -> list[tuple]:
    import sqlite3

    conn = sqlite3.connect(d / "ledger.sqlite")
    try:
        return conn.execute("SELECT param_hash, seed, point, replicate, metrics FROM runs "
                            "WHERE status = 'ok' ORDER BY point, replicate").fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_a_finished_sweep_carries_a_manifest(sweep_dir):
    from sim.io.ledger import read_meta

    m = _manifest(sweep_dir)
    meta = read_meta(sweep_dir)
    assert m["manifest_version"] == 1 and m["kind"] == "sweep" and m["sweep"] == "prov"
    assert m["seed"] == 7 and m["seeds"] == replicate_seeds(7, 2)
    assert m["seeds"] == meta["seeds"] and m["spec"] == meta["spec"]
    assert m["spec"]["metrics"] == ["credit_losses", "defaults", "max_peak_price_fall",
                                    "realised_lgd"]
    assert m["config"] == meta["base"] and m["config"]["months"] == 6
    assert m["environment"]["python"] == platform.python_version()
    assert m["environment"]["packages"]["numpy"] == np.__version__
    # hashes: the spec copy and the series table (one batch: the 4 runs), never the ledger's
    series = sorted((sweep_dir / "series").glob("*.parquet"))
    assert len(series) == 1 and len(pd.read_parquet(series[0]).groupby(["param_hash",
                                                                        "seed"])) == 4
    assert set(m["files"]) == {"spec.toml", *(f"series/{p.name}" for p in series)}
    for name, entry in m["files"].items():
        data = (sweep_dir / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    # the ledger digest: sorted (param_hash, seed, metrics JSON) of the ok rows, by hand
    triples = sorted([h, s, mets] for h, s, _p, _r, mets in _ok_rows(sweep_dir))
    digest = hashlib.sha256(json.dumps(triples, separators=(",", ":")).encode()).hexdigest()
    assert m["ledger"] == {"ok_runs": 4, "ok_sha256": digest}
    newest = max(p.stat().st_mtime_ns for p in series)
    assert (sweep_dir / "manifest.json").stat().st_mtime_ns >= newest


@pytest.mark.slow
def test_a_resumed_sweep_rewrites_its_manifest(sweep_dir, tmp_path):
    """More replicates in the same directory: the manifest names all 6 runs and their seeds."""
    d = _copy(sweep_dir, tmp_path)
    _sweep(tmp_path, d, replicates=3)
    m = _manifest(d)
    assert len(m["seeds"]) == 3 and m["seeds"][:2] == _manifest(sweep_dir)["seeds"]
    # the spec copy, the first batch's series file (4 runs) and the new batch's (2 runs)
    assert m["ledger"]["ok_runs"] == 6 and len(m["files"]) == 1 + 2


@pytest.mark.slow
def test_verify_reproduces_a_sweep_exactly(sweep_dir, tmp_path, capsys):
    d = _copy(sweep_dir, tmp_path)
    code, status, out = _verify(d, capsys)
    assert code == 0, out
    runs = {k: v for k, v in status.items() if k.startswith("run ")}
    assert len(runs) == 4
    assert all(v.endswith("4 metrics and series identical)") and v.startswith("reproduced")
               for v in runs.values())
    assert status["ledger.sqlite"].startswith("skipped (4 ok runs match")
    assert out.rstrip().endswith("reproduced exactly")
    # --sample 1: only the first run (point 0, replicate 0) is re-run
    code, status, out = _verify(d, capsys, "--sample", "1")
    h, s = _ok_rows(d)[0][:2]
    assert code == 0 and [k for k in status if k.startswith("run ")] == [f"run {h}_{s}"]
    assert "re-ran 1 of the ledger's 4 ok runs" in out


@pytest.mark.slow
def test_verify_names_the_run_and_metric_changed_in_the_ledger(sweep_dir, tmp_path, capsys):
    import sqlite3

    d = _copy(sweep_dir, tmp_path)
    h, s, point, rep, mets = _ok_rows(d)[2]
    metrics = json.loads(mets)
    metrics["credit_losses"] = float(np.nextafter(metrics["credit_losses"], np.inf))  # 1 ulp
    conn = sqlite3.connect(d / "ledger.sqlite")
    with conn:
        conn.execute("UPDATE runs SET metrics = ? WHERE param_hash = ? AND seed = ?",
                     (json.dumps(metrics, sort_keys=True, separators=(",", ":")), h, s))
    conn.close()
    code, status, out = _verify(d, capsys)
    assert code == 1, out
    assert status[f"run {h}_{s}"].startswith(
        f"differs (point {point}, replicate {rep}: metric credit_losses: "
        f"{metrics['credit_losses']!r} in the ledger vs ")
    assert sum(v.startswith("reproduced") for v in status.values()) == 3
    assert status["ledger.sqlite"].startswith("modified")
    assert "NOT reproduced (2 check(s) differ)" in out


@pytest.mark.slow
def test_verify_catches_one_ulp_in_a_sweep_series(sweep_dir, tmp_path, capsys):
    d = _copy(sweep_dir, tmp_path)
    h, s = _ok_rows(d)[1][:2]
    (path,) = (d / "series").glob("b_*.parquet")  # the batch file holding the 4 runs
    name = f"series/{path.name}"
    frame = pd.read_parquet(path)
    row = frame.index[(frame.param_hash == h) & (frame.seed == s)][3]  # the run's month 3
    frame.loc[row, "price_H100"] = np.nextafter(frame.loc[row, "price_H100"], -np.inf)
    frame.to_parquet(path, index=False)
    code, status, _ = _verify(d, capsys)
    assert code == 1 and status[name].startswith("modified")  # the hash check
    _rehash(d, name)  # a tampering the hash check cannot see: the re-run still catches it
    code, status, _ = _verify(d, capsys)
    assert code == 1 and name not in status
    assert "column price_H100: 1 of 7 rows differ, first row 3" in status[f"run {h}_{s}"]


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda d: (d / "manifest.json").unlink(), "no manifest (a sweep that has not finished"),
    (lambda d: (d / "manifest.json").write_text('{"kind": "sweep",'), "corrupt manifest"),
    (lambda d: [p.unlink() for p in d.glob("ledger.sqlite*")], "no sweep ledger"),
])
def test_unusable_sweep_directories_exit_2(sweep_dir, tmp_path, capsys, damage, fragment):
    d = _copy(sweep_dir, tmp_path)
    damage(d)
    capsys.readouterr()
    assert main(["verify", str(d)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_sample_is_refused_for_a_single_run(tmp_path, capsys):
    d = _run(tmp_path)
    assert main(["verify", str(d), "--sample", "2"]) == 2
    assert "--sample applies to sweep directories" in capsys.readouterr().err


# ------------------------------------------------------------------ the numeric platform
@pytest.mark.slow
def test_the_manifest_records_the_numeric_platform(tmp_path):
    env = _manifest(_run(tmp_path))["environment"]
    plat = env["numeric_platform"]
    assert plat["system"] == platform.system() and plat["machine"] == platform.machine()
    assert plat["packages"]["numpy"] == np.__version__
    assert set(plat["packages"]) == {"numpy", "networkx", "numba", "llvmlite"}
    assert isinstance(plat["simd"], list) and "blas" in plat and "cpu" in plat
    assert env["packages"]["numba"] == plat["packages"]["numba"]


def _shift_summary(d: Path) -> None:
    summary = json.loads((d / "summary.json").read_text())
    summary["credit_losses"] = np.nextafter(summary["credit_losses"], np.inf)
    (d / "summary.json").write_text(json.dumps(summary))
    _rehash(d, "summary.json")


@pytest.mark.slow
def test_verify_names_a_platform_outside_the_guarantee_in_one_line(tmp_path, capsys):
    """A directory made with another numpy on another OS that does not reproduce: the last
    line says why exactly reproduction was not promised, not a bare 'differs'."""
    d = _run(tmp_path)
    _shift_summary(d)
    m = _manifest(d)
    plat = m["environment"]["numeric_platform"]
    plat["packages"]["numpy"], plat["system"], plat["machine"] = "2.4.1", "Darwin", "arm64"
    (d / "manifest.json").write_text(json.dumps(m))
    code, _, out = _verify(d, capsys)
    last = out.strip().splitlines()[-1]
    assert code == 1
    assert last == (f"{d}: NOT reproduced (1 file(s) differ): made outside the "
                    "reproducibility guarantee (Darwin arm64 at the run (the guarantee covers "
                    f"x86-64 Linux); numpy 2.4.1 at the run, {np.__version__} here; see "
                    "docs/numerics.md)")


@pytest.mark.slow
def test_verify_inside_the_guarantee_says_the_platform_does_not_explain_it(tmp_path, capsys):
    d = _run(tmp_path)
    _shift_summary(d)
    m = _manifest(d)  # another CPU: inside the guarantee
    m["environment"]["numeric_platform"]["simd"] = []
    m["environment"]["numeric_platform"]["cpu"] = "an old Xeon"
    (d / "manifest.json").write_text(json.dumps(m))
    code, _, out = _verify(d, capsys)
    assert code == 1
    assert out.strip().splitlines()[-1].endswith(
        "NOT reproduced (1 file(s) differ): the platform is inside the reproducibility "
        "guarantee (same liqsim and numeric libraries), so it does not explain the difference")


@pytest.mark.slow
def test_a_manifest_without_a_platform_record_is_reported_as_unknown(tmp_path, capsys):
    d = _run(tmp_path)
    _shift_summary(d)
    m = _manifest(d)
    del m["environment"]["numeric_platform"]  # written before platforms were recorded
    (d / "manifest.json").write_text(json.dumps(m))
    _, _, out = _verify(d, capsys)
    assert "(the run's numeric platform is not recorded; see docs/numerics.md)" in out
