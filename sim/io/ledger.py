"""The sweep ledger: one SQLite database (WAL journal) per sweep directory.

``runs`` holds one row per (parameter hash, seed): parameters, seed, metrics, status, error
text, duration, package version, the numeric platform it ran on (an id into
``platforms``, which holds each distinct :func:`sim.core.numerics.platform_info` once) and
the file under ``series/`` that holds its monthly series, if the sweep keeps any. The runs of
one batch (the chunk a worker ran) are committed in one transaction, after their series file
is on disk, so a crash (even SIGKILL) loses at most the batches that were still computing or
committing, and a re-run skips what is already there. ``meta`` holds the validated spec, the
design points and the seeds.

Only the sweep's coordinating process writes; readers (``liqsim analyze``) may read at any
time thanks to WAL (https://www.sqlite.org/wal.html).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.core.config import ConfigError

LEDGER = "ledger.sqlite"
RUN_COLUMNS = ("param_hash", "seed", "point", "replicate", "params", "status", "error",
               "metrics", "duration", "version", "finished_at", "platform", "series_file")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    param_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    point INTEGER NOT NULL,
    replicate INTEGER NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    metrics TEXT,
    duration REAL,
    version TEXT,
    finished_at TEXT,
    platform TEXT,
    series_file TEXT,
    PRIMARY KEY (param_hash, seed)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS platforms (id TEXT PRIMARY KEY, info TEXT NOT NULL);
"""


def platform_id(info: dict) -> str:
    """A short, stable id of one platform record (the ledger stores each record once)."""
    import hashlib

    return hashlib.sha256(canonical_json(info).encode()).hexdigest()[:16]


def canonical_json(obj: Any) -> str:
    """Canonical JSON (NaN allowed: a metric a run does not define is stored as NaN)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def json_kind(v: Any) -> str:
    """A value's JSON kind: 'boolean', 'number' (int and float alike, numpy scalars too),
    'string', 'null', 'list of <kinds>' (``[1, "0"]`` is a 'list of numbers, strings'; an
    empty list a 'list of nothing'), or the Python type's name for anything else."""
    if isinstance(v, bool | np.bool_):
        return "boolean"
    if isinstance(v, int | float | np.integer | np.floating):
        return "number"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "list of " + (", ".join(sorted({json_kind(x) + "s" for x in v})) or "nothing")
    return type(v).__name__


# the meta values that must be JSON tables (objects) or lists for the ledger to be a sweep's
META_SHAPES = {"spec": dict, "base": dict, "axes": list, "points": list, "seeds": list}


def decode_json(text: str | None, where: str, shape: type | None = None) -> Any:
    """One stored JSON value; ConfigError (one line) if it is not JSON or not of ``shape``."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where} is not JSON ({e}): not a liqsim sweep ledger, or a "
                          "damaged one") from None
    if shape is not None and not isinstance(value, shape):
        kind = "a table" if shape is dict else "a list"
        raise ConfigError(f"{where} is not {kind}: not a liqsim sweep ledger, or a damaged one")
    return value


def _decode_meta(rows, path: Path) -> dict:
    return {k: decode_json(v, f"{path}: meta '{k}'", META_SHAPES.get(k)) for k, v in rows}


class Ledger:
    """Write access to ``DIR/ledger.sqlite``; use only from the sweep's coordinating process."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LEDGER
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # a committed run survives a power cut
        self.conn.executescript(SCHEMA)
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
        if "platform" not in columns:  # a ledger written before runs recorded their platform
            self.conn.execute("ALTER TABLE runs ADD COLUMN platform TEXT")
        if "series_file" not in columns:  # written when each run had its own series file
            self.conn.execute("ALTER TABLE runs ADD COLUMN series_file TEXT")

    def close(self) -> None:
        self.conn.close()

    def _transaction(self, statements: list[tuple[str, tuple]]) -> None:
        """Run the statements in one transaction: all of them are committed, or none."""
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                cur.execute(sql, args)
            cur.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def record(self, row: dict, platform: dict | None = None) -> None:
        """Commit one finished run (replacing a failed attempt at the same key), and the
        platform record its ``platform`` id names if given (stored once per id)."""
        self.record_batch([row], {} if platform is None else {row["platform"]: platform})

    def record_batch(self, rows: list[dict], platforms: dict[str, dict]) -> None:
        """Commit finished runs in one transaction (all or none; each replaces a failed
        attempt at its key) with the platform records ``platforms`` (id -> record) they
        name that are not stored yet."""
        sql = (f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})")
        statements = [("INSERT OR IGNORE INTO platforms (id, info) VALUES (?, ?)",
                       (pid, canonical_json(info))) for pid, info in platforms.items()]
        statements += [(sql, tuple(canonical_json(row[c]) if c in ("params", "metrics")
                                   else row.get(c) for c in RUN_COLUMNS)) for row in rows]
        self._transaction(statements)

    def keys(self, status: str) -> set[tuple[str, int]]:
        rows = self.conn.execute("SELECT param_hash, seed FROM runs WHERE status = ?", (status,))
        return {(h, int(s)) for h, s in rows}

    def series_files(self) -> set[str]:
        """The series files the committed runs name."""
        rows = self.conn.execute("SELECT DISTINCT series_file FROM runs "
                                 "WHERE series_file IS NOT NULL")
        return {name for (name,) in rows}

    def get_meta(self) -> dict:
        return _decode_meta(self.conn.execute("SELECT key, value FROM meta"), self.path)

    def set_meta(self, meta: dict) -> None:
        self._transaction([("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            (k, canonical_json(v))) for k, v in meta.items()])


def _connect_ro(out_dir: str | Path) -> sqlite3.Connection:
    path = Path(out_dir) / LEDGER
    if not path.is_file():
        raise ConfigError(f"{out_dir}: no sweep ledger ({LEDGER}) in this directory")
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        raise ConfigError(f"{path}: cannot open the ledger: {e}") from None


def _fetch(out_dir: str | Path, sql: str) -> list[tuple]:
    """All rows of one read-only query; ConfigError (one line) if the ledger is unreadable."""
    conn = _connect_ro(out_dir)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{out_dir}: unreadable ledger: {e}") from None
    finally:
        conn.close()


def read_meta(out_dir: str | Path) -> dict:
    """The sweep's metadata: spec, design, axes, points (design order), problem, seeds."""
    return _decode_meta(_fetch(out_dir, "SELECT key, value FROM meta"), Path(out_dir) / LEDGER)


def read_platforms(out_dir: str | Path) -> dict[str, tuple[dict, int]]:
    """The numeric platforms a sweep's runs ran on: id -> (platform record, number of runs);
    runs of a ledger written before platforms were recorded count under id ``None``."""
    conn = _connect_ro(out_dir)
    try:
        has = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        if "platform" not in has:
            (n,) = conn.execute("SELECT COUNT(*) FROM runs").fetchone()
            return {None: ({}, int(n))} if n else {}
        counts = conn.execute("SELECT platform, COUNT(*) FROM runs GROUP BY platform").fetchall()
        info = dict(conn.execute("SELECT id, info FROM platforms").fetchall())
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{out_dir}: unreadable ledger: {e}") from None
    finally:
        conn.close()
    where = Path(out_dir) / LEDGER
    return {pid: (decode_json(info[pid], f"{where}: platform {pid}", dict)
                  if pid in info else {}, int(n)) for pid, n in counts}


def read_ok_runs(out_dir: str | Path) -> list[tuple[str, int, int, int, str, str]]:
    """The ok runs exactly as stored: ``(param_hash, seed, point, replicate, params JSON,
    metrics JSON)``, ordered by point then replicate (``liqsim verify`` re-runs them)."""
    rows = _fetch(out_dir, "SELECT param_hash, seed, point, replicate, params, metrics FROM runs"
                           " WHERE status = 'ok' ORDER BY point, replicate, param_hash, seed")
    return [(h, int(s), int(p), int(r), params, mets) for h, s, p, r, params, mets in rows]


def read_runs(out_dir: str | Path) -> pd.DataFrame:
    """All runs of a sweep, one row per (param_hash, seed), ordered by point then replicate.

    Columns: param_hash, seed, point, replicate, status, error, duration, then one column per
    axis key (named as the key) and one per metric (NaN for failed runs or undefined metrics).
    """
    meta = read_meta(out_dir)
    axes, metric_names = meta.get("axes", []), meta.get("spec", {}).get("metrics", [])
    rows = _fetch(out_dir, "SELECT param_hash, seed, point, replicate, status, error, duration,"
                           " params, metrics FROM runs ORDER BY point, replicate")
    records = []
    where = Path(out_dir) / LEDGER
    for h, seed, point, rep, status, error, duration, params, mets in rows:
        p = decode_json(params, f"{where}: the params of run ({h}, {seed})", dict)
        m = decode_json(mets, f"{where}: the metrics of run ({h}, {seed})", dict) if mets else {}
        rec = {"param_hash": h, "seed": int(seed), "point": int(point), "replicate": int(rep),
               "status": status, "error": error, "duration": duration}
        rec.update({k: p.get(k) for k in axes})
        rec.update({k: float(m.get(k, np.nan)) for k in metric_names})
        records.append(rec)
    columns = ["param_hash", "seed", "point", "replicate", "status", "error", "duration",
               *axes, *metric_names]
    return pd.DataFrame.from_records(records, columns=columns)


def read_series(out_dir: str | Path, param_hash: str, seed: int) -> pd.DataFrame | None:
    """The monthly series one run of a sweep stored (columns ``month`` and the spec's
    series, one row per month), or None if the sweep kept none for it. A run's rows are in
    the batch file its ledger row names (``series/<file>``, with ``param_hash`` and ``seed``
    columns); for a ledger row that names none (written before batch files), the run's own
    file ``series/<param_hash>_<seed>.parquet`` if it exists. ConfigError (one line) if a
    named file is missing or unreadable."""
    conn = _connect_ro(out_dir)
    try:
        has = any(row[1] == "series_file" for row in conn.execute("PRAGMA table_info(runs)"))
        found = conn.execute("SELECT series_file FROM runs WHERE param_hash = ? AND seed = ?",
                             (param_hash, int(seed))).fetchone() if has else None
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{out_dir}: unreadable ledger: {e}") from None
    finally:
        conn.close()
    name = found[0] if found else None
    series = Path(out_dir) / "series"
    path = series / name if name else series / f"{param_hash}_{int(seed)}.parquet"
    if not path.is_file():
        if name:
            raise ConfigError(f"{path}: the series file of run ({param_hash}, {seed}) is "
                              "missing")
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds; one line for all
        raise ConfigError(f"{path}: unreadable series file: {type(e).__name__}: "
                          f"{' '.join(str(e).split())}") from None
    if name:
        if not {"param_hash", "seed"} <= set(frame.columns):
            raise ConfigError(f"{path}: not a batch series file (no param_hash and seed "
                              "columns)")
        frame = frame[(frame["param_hash"] == param_hash) & (frame["seed"] == int(seed))]
        frame = frame.drop(columns=["param_hash", "seed"])
    return frame.reset_index(drop=True)
