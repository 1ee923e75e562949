"""sim.io.ledger.read_series: one run's monthly series from a sweep directory, out of the batch
file its ledger row names (written by sim.batch.sweep.series_table), or out of the run's own
file in a ledger written before batch files; a named file missing or not a batch file is one
line. Ledgers and files are made by hand (no model runs)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from sim.batch.sweep import series_table
from sim.core.config import ConfigError
from sim.io.ledger import Ledger, read_series


def _row(param_hash: str, seed: int, series_file: str | None) -> dict:
    return {"param_hash": param_hash, "seed": seed, "point": 0, "replicate": 0, "params": {},
            "status": "ok", "error": None, "metrics": {}, "duration": 0.0, "version": "t",
            "finished_at": "t", "platform": None, "series_file": series_file}


def _series(base: float) -> dict[str, np.ndarray]:
    return {"month": np.arange(3), "credit_losses": base + np.arange(3.0)}


def _ledger(out, rows: list[dict]) -> None:
    (out / "series").mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out)
    ledger.record_batch(rows, {})
    ledger.close()


def test_a_runs_rows_out_of_its_batch_file(tmp_path):
    """Three runs in one batch file: two seeds of one point and one seed of another point
    (the same seed): each run gets exactly its own three months."""
    keys = [("aaaa", 1, 10.0), ("aaaa", 2, 20.0), ("bbbb", 1, 30.0)]
    rows = [_row(h, s, "b_aaaa_1_3.parquet") for h, s, _ in keys]
    _ledger(tmp_path, rows)
    (tmp_path / "series" / "b_aaaa_1_3.parquet").write_bytes(
        series_table([(row, _series(base)) for row, (_, _, base) in zip(rows, keys,
                                                                        strict=True)]))
    for h, s, base in keys:
        got = read_series(tmp_path, h, s)
        assert list(got.columns) == ["month", "credit_losses"]
        assert got["month"].tolist() == [0, 1, 2]
        assert got["credit_losses"].tolist() == [base, base + 1.0, base + 2.0]
    assert read_series(tmp_path, "aaaa", 3) is None  # no such run


def test_a_ledger_from_before_batch_files_reads_each_runs_own_file(tmp_path):
    """No series_file column at all (an old ledger), or a NULL in it: the run's own
    ``series/<param_hash>_<seed>.parquet``; a run without one has no series (None)."""
    _ledger(tmp_path, [_row("aaaa", 1, None), _row("aaaa", 2, None)])
    pd.DataFrame(_series(5.0)).to_parquet(tmp_path / "series" / "aaaa_1.parquet", index=False)
    assert read_series(tmp_path, "aaaa", 1)["credit_losses"].tolist() == [5.0, 6.0, 7.0]
    assert read_series(tmp_path, "aaaa", 2) is None
    conn = sqlite3.connect(tmp_path / "ledger.sqlite")
    conn.execute("ALTER TABLE runs DROP COLUMN series_file")
    conn.commit()
    conn.close()
    assert read_series(tmp_path, "aaaa", 1)["credit_losses"].tolist() == [5.0, 6.0, 7.0]
    assert read_series(tmp_path, "aaaa", 2) is None


def test_a_named_file_missing_or_not_a_batch_file_is_one_line(tmp_path):
    _ledger(tmp_path, [_row("aaaa", 1, "b_aaaa_1_1.parquet")])
    with pytest.raises(ConfigError, match=r"b_aaaa_1_1\.parquet: the series file of run "
                                          r"\(aaaa, 1\) is missing"):
        read_series(tmp_path, "aaaa", 1)
    pd.DataFrame(_series(0.0)).to_parquet(tmp_path / "series" / "b_aaaa_1_1.parquet")
    with pytest.raises(ConfigError, match="not a batch series file"):
        read_series(tmp_path, "aaaa", 1)
    (tmp_path / "series" / "b_aaaa_1_1.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="unreadable series file"):
        read_series(tmp_path, "aaaa", 1)
