"""Provenance of a results directory: ``manifest.json`` and ``liqsim verify``.

Every directory written by :func:`sim.store.write_run` carries a ``manifest.json``, written last
(atomically), with the liqsim version, the resolved scenario, its seed, the platform and the
versions of Python and the numeric libraries, the SHA-256 of every output file and, when the run
read a funding edge list, that file's path and SHA-256.

:func:`verify` re-runs the manifest's resolved scenario with its seed into a temporary
directory and compares the numeric outputs exactly (bit for bit, NaN equal to NaN): the
contents of ``series``, ``panel`` and ``events`` parquet tables, ``summary.json`` (except the
``liqsim_version`` entry, reported separately), ``config.json`` and ``network.graphml``. Parquet
files are compared by content, not by bytes, because their footers name the writing library's
version. Figures are only checked against their recorded hash. The manifest's timestamp is never
compared. Each file is reported as reproduced, differs, missing, modified (its bytes no longer
match the manifest's hash) or skipped (a figure).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from sim.config import ConfigError, Scenario, build

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
PACKAGES = ("numpy", "pandas", "pyarrow", "networkx", "mesa", "scipy", "pydantic")
FRAMES = ("series.parquet", "panel.parquet", "events.parquet")
JSONS = ("config.json", "summary.json")
BYTES = ("network.graphml",)
IGNORED_SUMMARY_KEYS = ("liqsim_version",)
OK_STATUSES = ("reproduced", "skipped")


# --------------------------------------------------------------------------- writing
def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict:
    """Where a run happened: platform, Python and the numeric libraries' versions."""
    return {"platform": platform.platform(), "machine": platform.machine(),
            "python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "packages": {p: _package_version(p) for p in PACKAGES}}


def _output_files(outdir: Path, names) -> dict[str, dict]:
    """SHA-256 and size of each named output file that exists."""
    files = {}
    for name in sorted(set(names)):
        p = outdir / name
        if p.is_file():
            files[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return files


def _inputs(cfg: Scenario) -> dict:
    if cfg.network.kind != "edgelist" or not cfg.network.edgelist:
        return {}
    p = Path(cfg.network.edgelist)
    return {"network.edgelist": {"path": str(p.resolve()),
                                 "sha256": sha256_file(p) if p.is_file() else None}}


def manifest(outdir: str | Path, cfg: Scenario, names) -> dict:
    """The manifest of a results directory whose output files ``names`` are all written."""
    from sim.metrics import liqsim_version

    return {
        "manifest_version": MANIFEST_VERSION,
        "liqsim_version": liqsim_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenario": cfg.name,
        "seed": int(cfg.seed),
        "config": cfg.model_dump(mode="json"),
        "environment": environment(),
        "inputs": _inputs(cfg),
        "files": _output_files(Path(outdir), names),
    }


# --------------------------------------------------------------------------- reading
def _bad(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: {what}")


def read_manifest(directory: str | Path) -> dict:
    """Load and check a results directory's manifest; ConfigError (one line) if unusable."""
    d = Path(directory)
    if not d.exists():
        raise ConfigError(f"results directory '{d}' not found")
    if not d.is_dir():
        raise ConfigError(f"'{d}' is not a directory")
    path = d / MANIFEST
    if not path.is_file():
        raise _bad(path, "no manifest (not a liqsim results directory, or written before "
                         "manifests existed)")
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
    for key, kind in (("config", dict), ("files", dict), ("seed", int)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise _bad(path, f"corrupt manifest: '{key}' missing or not a {kind.__name__}")
    for name, entry in data["files"].items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or Path(name).name != name):
            raise _bad(path, f"corrupt manifest: bad entry for file {name!r}")
    return data


def scenario_of(data: dict, path: Path) -> Scenario:
    try:
        cfg = build(data["config"])
    except ConfigError as e:
        raise _bad(path, f"config: {e}") from None
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

    @property
    def ok(self) -> bool:
        """Reproduced exactly: every compared file identical and none missing or modified."""
        return (any(c.status == "reproduced" for c in self.checks)
                and all(c.status in OK_STATUSES for c in self.checks))

    def lines(self) -> list[str]:
        out = [f"{c.name}: {c.status} ({c.detail})" for c in self.checks]
        out += [f"note: {n}" for n in self.notes]
        n_bad = sum(c.status not in OK_STATUSES for c in self.checks)
        out.append(f"{self.directory}: " + ("reproduced exactly" if self.ok else
                                            f"NOT reproduced ({n_bad} file(s) differ)"))
        return out


def _environment_notes(data: dict) -> list[str]:
    from sim.metrics import liqsim_version

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
    return notes


def _input_notes(data: dict) -> list[str]:
    entry = (data.get("inputs") or {}).get("network.edgelist")
    if not isinstance(entry, dict) or not entry.get("path"):
        return []
    p = Path(entry["path"])
    if p.is_file() and entry.get("sha256") not in (None, sha256_file(p)):
        return [f"the funding edge list {p} changed since the run"]
    return []


def verify(directory: str | Path) -> Report:
    """Re-run a results directory's manifest and compare its outputs exactly.

    Raises :class:`ConfigError` when the directory or its manifest cannot be used.
    """
    from sim.runner import run_scenario
    from sim.store import write_run

    d = Path(directory)
    data = read_manifest(d)
    cfg = scenario_of(data, d / MANIFEST)
    report = Report(d, cfg.name, cfg.seed, notes=_environment_notes(data) + _input_notes(data))
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
