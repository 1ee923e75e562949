"""Provenance (issue 7): every results directory carries a manifest; ``liqsim verify`` re-runs it.

The manifest must name the liqsim version, the resolved config, the seed, the platform and the
library versions, and hold the SHA-256 of every output file; it is written last, so a crash
leaves none. ``liqsim verify DIR`` exits 0 when a re-run reproduces every number exactly and 1
with a per-file report when it does not (a number changed by one ulp is caught); unusable
directories exit 2 (tested in tests/test_bad_input.py).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim import provenance, store
from sim.cli import main
from sim.config import load_scenario
from sim.runner import run_scenario

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


def _verify(d: Path, capsys) -> tuple[int, dict[str, str], str]:
    capsys.readouterr()
    code = main(["verify", str(d)])
    out = capsys.readouterr().out
    status = {}
    for line in out.splitlines():
        name, sep, rest = line.partition(": ")
        if sep and not name.startswith("note") and "/" not in name:
            status[name] = rest
    return code, status, out


# --------------------------------------------------------------------------- the manifest
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


def test_a_crash_while_writing_leaves_no_manifest(tmp_path, monkeypatch, capsys):
    """Re-running into a directory removes its old manifest first; a crash leaves none."""
    d = _run(tmp_path)
    model = run_scenario(load_scenario(None, months=2))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.nx, "write_graphml", boom)
    with pytest.raises(OSError):
        store.write_run(model, d)
    assert not (d / "manifest.json").exists()
    assert main(["verify", str(d)]) == 2
    assert "no manifest" in capsys.readouterr().err


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
def test_verify_reproduces_a_run_exactly(tmp_path, capsys):
    d = _run(tmp_path, "--set", "policy.repo.enabled=true", "--seed", "3")
    code, status, out = _verify(d, capsys)
    assert code == 0, out
    assert status == dict.fromkeys(sorted(store.RUN_FILES), "reproduced (identical)")
    assert out.rstrip().endswith("reproduced exactly")


def test_verify_ignores_the_manifest_timestamp(tmp_path, capsys):
    d = _run(tmp_path)
    m = _manifest(d)
    m["created"] = "1999-01-01T00:00:00+00:00"
    (d / "manifest.json").write_text(json.dumps(m))
    assert _verify(d, capsys)[0] == 0


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


def test_verify_catches_a_changed_summary_number(tmp_path, capsys):
    d = _run(tmp_path)
    summary = json.loads((d / "summary.json").read_text())
    summary["credit_losses"] += 1.0
    (d / "summary.json").write_text(json.dumps(summary))
    _rehash(d, "summary.json")
    code, status, _ = _verify(d, capsys)
    assert code == 1
    assert status["summary.json"].startswith("differs (credit_losses:")


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


def test_verify_through_the_console_script(tmp_path):
    from test_cli import _liqsim

    d = _run(tmp_path)
    res = _liqsim("verify", str(d), cwd=tmp_path)
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


def test_figures_hashed_by_write_manifest_are_checked_not_recomputed(tmp_path, capsys):
    """``store.write_manifest(dir, cfg, extra=figures)`` adds figures; verify checks their hash."""
    from sim.plots import write_figures

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
