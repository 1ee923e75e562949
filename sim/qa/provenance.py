"""Provenance of a results directory: ``manifest.json`` and ``liqsim verify``.

Every directory written by :func:`sim.io.store.write_run` carries a ``manifest.json``, written last
(atomically), with the liqsim version, the resolved scenario, its seed, the platform and the
versions of Python and the numeric libraries, the SHA-256 of every output file and, when the run
read a funding edge list, that file's path and SHA-256. The manifests are written by
:mod:`sim.io.store` (:func:`sim.io.store.manifest`,
:func:`sim.io.store.write_sweep_manifest`), beside the outputs; this module reads and
verifies them.

:func:`verify` re-runs the manifest's resolved scenario with its seed into a temporary
directory and compares the numeric outputs exactly (bit for bit, NaN equal to NaN): the
contents of ``series``, ``panel`` and ``events`` parquet tables, ``summary.json`` (except the
``liqsim_version`` entry, reported separately), ``config.json`` and ``network.graphml``. Parquet
files are compared by content, not by bytes, because their footers name the writing library's
version. Figures are only checked against their recorded hash. The manifest's timestamp is never
compared. Each file is reported as reproduced, differs, missing, modified (its bytes no longer
match the manifest's hash) or skipped (a figure).

A sweep directory (:mod:`sim.batch.sweep`) gets a manifest of kind ``"sweep"`` when the sweep
finishes (:func:`sim.io.store.write_sweep_manifest`): the validated spec, the resolved base
config, the root seed and the run seeds, the environment, the SHA-256 of ``spec.toml`` and of every
``series/*.parquet`` file, and a SHA-256 digest of the ledger's ok runs (sorted
``(param_hash, seed, metrics JSON)``; not of ``ledger.sqlite`` itself, whose bytes change with
WAL checkpoints). :func:`verify` on a sweep directory re-runs the ledger's ok runs (all, or an
evenly spaced sample) through :func:`sim.batch.sweep.run_task` and compares each run's metrics to
the ledger and its series to the stored Parquet table, exactly.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sim.batch.sweep import RunTask, run_task
from sim.core import numerics
from sim.core.config import ConfigError, Scenario, build
from sim.core.network import MAX_EDGELIST_BYTES
from sim.core.version import liqsim_version
from sim.io.ledger import LEDGER, decode_json, read_meta, read_ok_runs, read_series
from sim.io.store import (
    MANIFEST,
    MANIFEST_VERSION,
    SPEC_COPY,
    SWEEP,
    environment,
    ok_runs_digest,
    sha256_file,
    write_run,
)
from sim.world.runner import run_scenario

FRAMES = ("series.parquet", "panel.parquet", "events.parquet")
JSONS = ("config.json", "summary.json")
BYTES = ("network.graphml",)
IGNORED_SUMMARY_KEYS = ("liqsim_version",)
OK_STATUSES = ("reproduced", "skipped")


# --------------------------------------------------------------------------- reading
def _bad(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: {what}")


def is_sweep(directory: Path, data: dict) -> bool:
    return data.get("kind") == SWEEP or (directory / LEDGER).is_file()


def _no_manifest(d: Path) -> str:
    if (d / LEDGER).is_file():
        return ("no manifest (a sweep that has not finished, or written before manifests "
                "existed: re-run `liqsim sweep` on it to finish it and write one)")
    return "no manifest (not a liqsim results directory, or written before manifests existed)"


def read_manifest(directory: str | Path) -> dict:
    """Load and check a results or sweep directory's manifest; ConfigError (one line) if
    unusable."""
    d = Path(directory)
    if not d.exists():
        raise ConfigError(f"results directory '{d}' not found")
    if not d.is_dir():
        raise ConfigError(f"'{d}' is not a directory")
    path = d / MANIFEST
    if not path.is_file():
        raise _bad(path, _no_manifest(d))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"corrupt manifest: {' '.join(str(e).split())}") from None
    except OSError as e:
        raise _bad(path, f"cannot read: {e.strerror}") from None
    if not isinstance(data, dict):
        raise _bad(path, "corrupt manifest: expected a JSON object")
    if data.get("manifest_version") != MANIFEST_VERSION:
        raise _bad(path, f"unsupported manifest_version {data.get('manifest_version')!r} "
                         f"(expected {MANIFEST_VERSION})")
    sweep = is_sweep(d, data)
    for key, kind in (("config", dict), ("files", dict), ("seed", int),
                      *((("spec", dict), ("ledger", dict)) if sweep else ())):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise _bad(path, f"corrupt manifest: '{key}' missing or not a {kind.__name__}")
    for name, entry in data["files"].items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not (_sweep_file(name) if sweep else Path(name).name == name)):
            raise _bad(path, f"corrupt manifest: bad entry for file {name!r}")
    if sweep:
        _check_sweep_fields(data, path)
    return data


def _sweep_file(name: str) -> bool:
    """A file a sweep manifest may list: the spec copy or a series table (no other path)."""
    p = Path(name)
    return name == SPEC_COPY or (p.parent == Path("series") and p.suffix == ".parquet")


def _check_sweep_fields(data: dict, path: Path) -> None:
    spec = data["spec"]
    names, series = spec.get("metrics"), spec.get("series", [])
    if not (isinstance(names, list) and isinstance(series, list)
            and all(isinstance(x, str) for x in names + series)):
        raise _bad(path, "corrupt manifest: 'spec' lacks its metrics or series lists")
    if not isinstance(data["ledger"].get("ok_sha256"), str):
        raise _bad(path, "corrupt manifest: 'ledger' lacks the ok runs' digest 'ok_sha256'")
    _build_config(data, path)


def _build_config(data: dict, path: Path) -> Scenario:
    try:
        return build(data["config"])
    except ConfigError as e:
        raise _bad(path, f"config: {e}") from None


def scenario_of(data: dict, path: Path) -> Scenario:
    cfg = _build_config(data, path)
    if cfg.seed != data["seed"]:
        raise _bad(path, f"seed {data['seed']} does not match the config's seed {cfg.seed}")
    return cfg


# --------------------------------------------------------------------------- comparing
def _first_json_diff(a, b, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"key '{where}{k}' only in the {'re-run' if k in b else 'stored file'}"
            d = _first_json_diff(a[k], b[k], f"{where}{k}.")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _first_json_diff(x, y, f"{where}{i}.")
            if d:
                return d
        return None
    if a == b and type(a) is type(b):
        return None
    return f"{where.rstrip('.') or 'value'}: {a!r} stored vs {b!r} re-run"


def _column_mismatch(x: pd.Series, y: pd.Series) -> np.ndarray:
    """Rows where two columns differ exactly (NaN equals NaN)."""
    xa, ya = x.to_numpy(), y.to_numpy()
    if xa.dtype.kind == "f":
        return ~((xa == ya) | (np.isnan(xa) & np.isnan(ya)))
    if xa.dtype.kind in "iub":
        return xa != ya
    return np.array([not (a == b or (a != a and b != b)) for a, b in zip(xa, ya, strict=True)],
                    dtype=bool)


def frame_diff(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    """None if the two tables are identical, else what differs first (one line)."""
    if list(a.columns) != list(b.columns):
        extra = sorted(set(a.columns) ^ set(b.columns))
        return f"columns differ ({extra[:5] if extra else 'order'})"
    if len(a) != len(b):
        return f"{len(a)} rows stored vs {len(b)} re-run"
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype != y.dtype:
            return f"column {col}: dtype {x.dtype} stored vs {y.dtype} re-run"
        bad = np.flatnonzero(_column_mismatch(x, y))
        if len(bad):
            r = int(bad[0])
            return (f"column {col}: {len(bad)} of {len(a)} rows differ, first row {r} "
                    f"({x.iloc[r]!r} stored vs {y.iloc[r]!r} re-run)")
    return None


def _compare(name: str, stored: Path, fresh: Path) -> tuple[str, str]:
    if not fresh.is_file():
        return "differs", "the re-run did not write this file"
    try:
        if name in FRAMES:
            diff = frame_diff(pd.read_parquet(stored), pd.read_parquet(fresh))
        elif name in JSONS:
            a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (stored, fresh))
            if name == "summary.json" and isinstance(a, dict):
                for k in IGNORED_SUMMARY_KEYS:
                    a.pop(k, None)
                    b.pop(k, None)
            diff = _first_json_diff(a, b)
        else:
            diff = None if stored.read_bytes() == fresh.read_bytes() else "bytes differ"
    except Exception as e:  # noqa: BLE001 - an unreadable stored file is a finding, not a crash
        why = " ".join(str(e).split())[:160]
        return "differs", f"cannot read the stored file: {type(e).__name__}: {why}"
    return ("differs", diff) if diff else ("reproduced", "identical")


# --------------------------------------------------------------------------- the report
@dataclass
class FileCheck:
    name: str
    status: str  # reproduced, differs, missing, modified, skipped
    detail: str


@dataclass
class Report:
    directory: Path
    scenario: str
    seed: int
    checks: list[FileCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unit: str = "file"  # what a check is about, in the summary line
    outside: list[str] = field(default_factory=list)  # why exact reproduction is not promised

    @property
    def ok(self) -> bool:
        """Reproduced exactly: every compared file identical and none missing or modified."""
        return (any(c.status == "reproduced" for c in self.checks)
                and all(c.status in OK_STATUSES for c in self.checks))

    def lines(self) -> list[str]:
        out = [f"{c.name}: {c.status} ({c.detail})" for c in self.checks]
        out += [f"note: {n}" for n in self.notes]
        n_bad = sum(c.status not in OK_STATUSES for c in self.checks)
        if self.ok:
            last = "reproduced exactly"
        else:
            last = f"NOT reproduced ({n_bad} {self.unit}(s) differ)"
            if self.outside:
                last += (": made outside the reproducibility guarantee ("
                         + "; ".join(self.outside) + "; see docs/numerics.md)")
            else:
                last += (": the platform is inside the reproducibility guarantee (same "
                         "liqsim and numeric libraries), so it does not explain the difference")
        out.append(f"{self.directory}: {last}")
        return out


def _environment_notes(data: dict) -> list[str]:
    notes = []
    if data.get("liqsim_version") != liqsim_version():
        notes.append(f"written by liqsim {data.get('liqsim_version')}, re-run with "
                     f"{liqsim_version()}")
    then = data.get("environment", {}) if isinstance(data.get("environment"), dict) else {}
    now = environment()
    for pkg, v in now["packages"].items():
        old = (then.get("packages") or {}).get(pkg)
        if old is not None and old != v:
            notes.append(f"{pkg} {old} at the run, {v} now")
    if then.get("python") not in (None, now["python"]):
        notes.append(f"python {then['python']} at the run, {now['python']} now")
    a, b = then.get("numeric_platform"), now["numeric_platform"]
    if isinstance(a, dict):
        moved = [f"{k} {a.get(k)!r} at the run, {b.get(k)!r} now"
                 for k in ("cpu", "simd", "blas", "env") if a.get(k) != b.get(k)]
        if moved:
            notes.append("another CPU setting (" + "; ".join(moved) + "): the results do not "
                         "depend on it (docs/numerics.md)")
    return notes


def _outside(data: dict) -> list[str]:
    """Why the manifest's run is not guaranteed to reproduce here (empty if it is)."""
    then = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    out = numerics.outside_guarantee(then.get("numeric_platform"))
    if data.get("liqsim_version") != liqsim_version():
        out.insert(0, f"liqsim {data.get('liqsim_version')} at the run, {liqsim_version()} here")
    return out


def _input_notes(data: dict) -> list[str]:
    """A note if the funding edge list the manifest names changed since the run. One larger
    than a run may read (``sim.core.network.MAX_EDGELIST_BYTES``) is refused (ConfigError) before
    it is hashed: the re-run would refuse it anyway, after seconds of hashing."""

    entry = (data.get("inputs") or {}).get("network.edgelist")
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return []
    p = Path(entry["path"])
    if not entry["path"] or not p.is_file():
        return []
    size = p.stat().st_size
    if size > MAX_EDGELIST_BYTES:
        raise ConfigError(f"network.edgelist: '{p}' (named in the manifest) is "
                          f"{size / 2**20:,.0f} MiB; the limit is "
                          f"{MAX_EDGELIST_BYTES // 2**20} MiB, as for a run")
    if entry.get("sha256") not in (None, sha256_file(p)):
        return [f"the funding edge list {p} changed since the run"]
    return []


def verify(directory: str | Path, sample: int | None = None,
           on_run: Callable[[int, int], None] | None = None) -> Report:
    """Re-run a results (or sweep) directory's manifest and compare its outputs exactly.

    ``sample`` and ``on_run`` apply to sweeps only (see :func:`verify_sweep`). Raises
    :class:`ConfigError` when the directory or its manifest cannot be used.
    """

    d = Path(directory)
    data = read_manifest(d)
    if is_sweep(d, data):
        return verify_sweep(d, data, sample, on_run)
    if sample is not None:
        raise ConfigError(f"--sample applies to sweep directories; '{d}' holds a single run")
    cfg = scenario_of(data, d / MANIFEST)
    report = Report(d, cfg.name, cfg.seed, notes=_environment_notes(data) + _input_notes(data),
                    outside=_outside(data))
    with tempfile.TemporaryDirectory(prefix="liqsim-verify-") as tmp:
        write_run(run_scenario(cfg), tmp)
        for name, entry in sorted(data["files"].items()):
            report.checks.append(_check_file(name, entry, d / name, Path(tmp) / name))
    return report


def _check_file(name: str, entry: dict, stored: Path, fresh: Path) -> FileCheck:
    if not stored.is_file():
        return FileCheck(name, "missing", "listed in the manifest but not in the directory")
    if sha256_file(stored) != entry["sha256"]:
        return FileCheck(name, "modified", "its SHA-256 no longer matches the manifest")
    if name not in FRAMES + JSONS + BYTES:
        return FileCheck(name, "skipped", "not a numeric output; hash matches the manifest")
    status, detail = _compare(name, stored, fresh)
    return FileCheck(name, status, detail)



def spaced(items: list, n: int | None) -> list:
    """``n`` items evenly spaced over ``items`` (the first always included); all if n is None."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def _metrics_diff(stored: dict, fresh: dict) -> str | None:
    """The first metric (in name order) whose stored and re-run values differ, exactly: equal
    JSON text (shortest round-trip repr; NaN equals NaN, -0.0 differs from 0.0)."""
    for k in sorted(stored.keys() | fresh.keys()):
        if k not in stored or k not in fresh:
            return f"metric {k} only in the {'re-run' if k in fresh else 'ledger'}"
        if json.dumps(stored[k]) != json.dumps(fresh[k]):
            return f"metric {k}: {stored[k]!r} in the ledger vs {fresh[k]!r} re-run"
    return None


def _series_diff(d: Path, h: str, seed: int, fresh: dict | None) -> str | None:
    """The first difference between a run's stored series (:func:`read_series`) and the
    re-run's, or None."""
    if fresh is None:
        return None
    label = f"series of run {h}_{seed}"
    try:
        stored = read_series(d, h, seed)
    except ConfigError as e:  # a missing or unreadable stored file is a finding, not a crash
        return f"{label}: {e}"
    if stored is None:
        return f"{label} is missing"
    diff = frame_diff(stored, pd.DataFrame(fresh))
    return f"{label}: {diff}" if diff else None


def _check_run(d: Path, row: tuple, data: dict) -> FileCheck:
    """Re-run one ok run of the ledger in-process and compare it exactly."""

    h, seed, point, rep, params, mets = row
    spec = data["spec"]
    label, where = f"run {h}_{seed}", f"point {point}, replicate {rep}"
    try:  # a damaged row is a finding, not a crash
        params = decode_json(params, "its stored params", dict)
        mets = decode_json(mets, "its stored metrics", dict)
    except ConfigError as e:
        return FileCheck(label, "differs", f"{where}: {e}")
    task = RunTask(h, seed, point, rep, params, data["config"],
                   tuple(spec["metrics"]), tuple(spec.get("series", [])))
    res = run_task(task)
    if res.status != "ok":
        return FileCheck(label, "differs", f"{where}: the re-run failed: {res.error}")
    diff = (_metrics_diff(mets, res.metrics)
            or _series_diff(d, h, seed, res.series))
    if diff:
        return FileCheck(label, "differs", f"{where}: {diff}")
    what = "metrics and series" if res.series is not None else "metrics"
    return FileCheck(label, "reproduced", f"{where}: {len(res.metrics)} {what} identical")


def _meta_check(d: Path, data: dict) -> FileCheck:
    """The ledger's meta table (what a resume and ``liqsim analyze`` read: the spec, the seeds
    and the base config) against the manifest's copies; the digest covers only the runs."""

    label = f"{LEDGER} meta"
    try:
        meta = read_meta(d)
    except ConfigError as e:
        return FileCheck(label, "modified", str(e))
    if (meta.get("spec"), meta.get("seeds"), meta.get("base")) != (
            data["spec"], data["seeds"], data["config"]):
        return FileCheck(label, "modified", "its spec, seeds or base config differ from the "
                                            "manifest's")
    return FileCheck(label, "skipped", "the spec, seeds and base config match the manifest")


def _sweep_file_checks(d: Path, data: dict, rows: list) -> tuple[list[FileCheck], str]:
    """The ledger digest and the file hashes: one line for the ledger and the spec copy, one
    per series file only when it is missing or modified."""
    checks = [FileCheck(LEDGER, "modified", "its ok runs no longer match the manifest's digest")
              if ok_runs_digest(rows) != data["ledger"]["ok_sha256"] else
              FileCheck(LEDGER, "skipped", f"{len(rows)} ok runs match the manifest's digest"),
              _meta_check(d, data)]
    n_series = 0
    for name, entry in sorted(data["files"].items()):
        check = _check_file(name, entry, d / name, d / name)
        if name == SPEC_COPY or check.status != "skipped":
            checks.append(check)
        n_series += name != SPEC_COPY and check.status == "skipped"
    return checks, f"{n_series} series file(s) match their hashes in the manifest"


def verify_sweep(d: Path, data: dict, sample: int | None = None,
                 on_run: Callable[[int, int], None] | None = None) -> Report:
    """Re-run a sweep's ok runs (all, or ``sample`` of them evenly spaced in point/replicate
    order) through :func:`sim.batch.sweep.run_task` and compare metrics and series exactly.

    ``on_run(done, total)`` is called after each re-run (a progress bar).
    """

    rows = read_ok_runs(d)
    checks, note = _sweep_file_checks(d, data, rows)
    chosen = spaced(rows, sample)
    notes = [*_environment_notes(data), note,
             f"re-ran {len(chosen)} of the ledger's {len(rows)} ok runs"]
    report = Report(d, str(data.get("sweep")), data["seed"], checks, notes, unit="check",
                    outside=_outside(data))
    for i, row in enumerate(chosen, 1):
        report.checks.append(_check_run(d, row, data))
        if on_run is not None:
            on_run(i, len(chosen))
    return report
