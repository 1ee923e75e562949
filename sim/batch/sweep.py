"""Parameter sweeps: a TOML spec, its design, and resumable execution into a SQLite ledger.

A spec (``experiments/sweeps/*.toml``, format in ``docs/sweeps.md``) names a base scenario,
parameter axes and a number of replicate seeds. The design is a full grid, a Latin hypercube
(McKay, Beckman & Conover 1979; ``scipy.stats.qmc.LatinHypercube``) or Saltelli's extension of
the Sobol' sequence (Saltelli 2002; Saltelli et al. 2010; ``SALib.sample.sobol``, first and
total order only). Replicate ``r`` of every point gets the same seed, the ``r``-th child of
``numpy.random.SeedSequence(root_seed)`` (:func:`sim.core.seeds.replicate_seed`, the seeds
``liqsim compare`` uses too), so designs are paired across points and adding replicates never
changes the existing seeds.

Runs execute serially, on a local process pool, or on a Dask distributed cluster; each run
depends only on its config and seed, so the results are identical bit for bit whatever the
backend. Only this (the coordinating) process writes the ledger (:mod:`sim.io.ledger`): the
runs of one batch (a chunk a worker ran) go in one transaction, after their monthly series
went to one Parquet file per batch, written atomically (``series/b_<hash>_<seed>_<n>.parquet``,
read back with :func:`sim.io.ledger.read_series`).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import gc
import hashlib
import io
import itertools
import json
import math
import multiprocessing as mp
import os
import signal
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

# called as sim.world.runner.run_scenario: `runner` names the task runners here
import sim.world.runner
from sim.batch.progress import LineProgress
from sim.core import numerics
from sim.core.config import (
    MAX_TOML_BYTES,
    ConfigError,
    Scenario,
    build,
    format_error,
    load_scenario,
    one_line,
    parse_toml,
    read_regular,
    safe_name,
    set_path,
    short_repr,
)
from sim.core.seeds import replicate_seeds
from sim.core.version import liqsim_version
from sim.io import atomic
from sim.io.ledger import LEDGER, Ledger, canonical_json, json_kind, platform_id
from sim.io.store import MANIFEST, SPEC_COPY, write_sweep_manifest
from sim.world import metrics
from sim.world.model import LiquidationModel
from sim.world.stack import RunStack

SWEEP_DIR = Path(__file__).resolve().parents[2] / "experiments" / "sweeps"
MAX_POINTS = 200_000
MAX_RUNS = 1_000_000
MAX_CHUNK = 8  # runs per task sent to a worker
# runs per batch committed by an in-process (one worker) sweep: each commit waits for its
# fsync (synchronous=FULL), about 7 ms on this machine's disk, which nothing overlaps there
SERIAL_BATCH = 32
IN_FLIGHT_PER_WORKER = 4  # chunks submitted to the local pool at a time, per worker
MAX_DEATHS = 2  # a run that kills its worker this many times is recorded as failed
SEED_EXCLUDED = ("seed",)  # keys an axis may not set (seeds come from root_seed)

Scalar = StrictBool | StrictInt | StrictFloat | str
def _value_problem(v: Any, in_list: bool = False) -> str | None:
    """Why ``v`` cannot be an axis value (None if it can): numbers must be finite; a value is
    a number, boolean, string, or a list of those."""
    if isinstance(v, float) and not math.isfinite(v):
        return f"{short_repr(v)} is not a finite number"
    if isinstance(v, bool | int | float | str):
        return None
    if isinstance(v, list) and not in_list:
        return next((p for p in (_value_problem(x, True) for x in v) if p), None)
    what = ("a table" if isinstance(v, dict) else "a list inside a list" if isinstance(v, list)
            else f"a TOML {type(v).__name__}")
    shown = short_repr(v, 60) if isinstance(v, dict | list) else one_line(v, 60)
    return (f"{shown} is {what}; values are numbers, booleans, strings or "
            "lists of them")


# --------------------------------------------------------------------------- spec
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Axis(_Strict):
    """One swept key: explicit ``values``, or a ``range`` (grid: ``steps`` points, linspace)."""

    key: str = Field(min_length=1)
    values: list[Scalar | list[Scalar]] | None = Field(None, min_length=1, max_length=100_000)
    range: tuple[float, float] | None = None
    steps: int | None = Field(None, ge=2, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        """A non-finite number, a table or a date as a value: one line naming the axis (not
        pydantic's error for every member of the value union)."""
        values = data.get("values") if isinstance(data, dict) else None
        if isinstance(values, list):
            for v in values:
                problem = _value_problem(v)
                if problem:
                    raise ValueError(f"axis '{data.get('key')}': value {problem}")
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Axis:
        if (self.values is None) == (self.range is None):
            raise ValueError(f"axis '{self.key}': give either values = [...] or "
                             "range = [low, high], not both or neither")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"axis '{self.key}': range = {list(self.range)} needs low < high")
        if self.steps is not None and self.range is None:
            raise ValueError(f"axis '{self.key}': steps applies to a range, not to values")
        return self


class SweepSpec(_Strict):
    """A validated sweep spec; :func:`load_spec` also resolves the base and the design."""

    name: str  # checked by safe_name (one path component, at most 200 characters)
    description: str = ""
    base: str = Field(min_length=1)
    months: int | None = Field(None, ge=1, le=600)
    replicates: int = Field(ge=1, le=100_000)
    root_seed: int = Field(20251201, ge=0, le=2**63 - 1)
    design: Literal["grid", "lhs", "sobol"] = "grid"
    samples: int | None = Field(None, ge=1, le=MAX_POINTS)
    metrics: list[str] | None = Field(None, min_length=1)
    series: list[str] = Field(default_factory=list)
    axes: list[Axis] = Field(min_length=1, max_length=64)

    _path: Path = PrivateAttr(default=Path("."))
    _text: str = PrivateAttr(default="")
    _base: dict = PrivateAttr(default_factory=dict)
    _points: list[dict] = PrivateAttr(default_factory=list)
    _problem: dict | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return safe_name(name)  # it names results/sweeps/<name>/: one safe path component

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        keys = [a.key for a in self.axes]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"axes: key '{dup[0]}' appears more than once")
        for k in keys:
            if k.strip() in SEED_EXCLUDED:
                raise ValueError(f"axes: '{k}' cannot be swept; replicate seeds come from "
                                 "root_seed and replicates")
        ranged = [a for a in self.axes if a.range is not None]
        if self.design == "grid":
            if self.samples is not None:
                raise ValueError("samples: only the lhs and sobol designs use it "
                                 "(a grid range takes steps = N)")
            missing = [a.key for a in ranged if a.steps is None]
            if missing:
                raise ValueError(f"axis '{missing[0]}': a grid range needs steps = N (>= 2)")
            return self
        if self.samples is None:
            raise ValueError(f"samples: required by design = '{self.design}'")
        if any(a.steps is not None for a in ranged):
            raise ValueError(f"steps: only the grid design uses it, not '{self.design}'")
        if not ranged:
            raise ValueError(f"design = '{self.design}' needs at least one axis with a range")
        if self.design == "sobol":
            fixed = [a.key for a in self.axes if a.values is not None]
            if fixed:
                raise ValueError(f"axis '{fixed[0]}': the sobol design samples ranges only; "
                                 "use range = [low, high] or run one sweep per value")
            n = self.samples
            if n < 2 or n & (n - 1):
                raise ValueError(f"samples = {n}: Saltelli's Sobol' design needs a power of "
                                 "two (e.g. 64, 128, 256)")
        return self

    # the resolved parts (filled by load_spec)
    @property
    def path(self) -> Path:
        return self._path

    @property
    def base_config(self) -> dict:
        """The base scenario, resolved (defaults + file + months), as a JSON-able dict."""
        return self._base

    @property
    def points(self) -> list[dict]:
        """Parameter points ``{axis key: value}`` in design order (Saltelli order for sobol)."""
        return self._points

    @property
    def problem(self) -> dict | None:
        """The SALib problem dict of a sobol design (names, bounds), else None."""
        return self._problem

    @property
    def seeds(self) -> list[int]:
        """Replicate seeds, :func:`sim.core.seeds.replicate_seeds` of ``root_seed``."""
        return replicate_seeds(self.root_seed, self.replicates)


def _resolve_base(spec: SweepSpec) -> Scenario:
    local = spec.path.parent / spec.base
    source = local if local.is_file() else spec.base
    try:
        return load_scenario(source, months=spec.months)
    except ConfigError as e:
        raise ConfigError(f"base: {e}") from None


def _get_path(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _axis_kind(base: dict, axis: Axis) -> str:
    """'int', 'float' or 'other': how values sampled from a range are cast for this key."""
    current = _get_path(base, axis.key)
    if isinstance(current, bool) or not isinstance(current, int | float):
        if axis.range is not None:
            raise ConfigError(f"range needs a numeric key (it holds "
                              f"{short_repr(current, 60)}); use values = [...]")
        return "other"
    return "int" if isinstance(current, int) else "float"


def _cast(x: Any, kind: str) -> Any:
    if kind == "int":
        return int(np.rint(x))
    if kind == "float":
        return float(x)
    return x


def _check_axis(base: dict, axis: Axis, tick: _Ticker | None = None) -> str:
    """Apply the axis's values (or range ends) to the base and validate; return its kind.
    ``tick`` is advanced once per value checked."""
    try:
        if not _has_path(base, axis.key):
            set_path(copy.deepcopy(base), axis.key, 0)  # names a bad step of the path
            raise ConfigError(f"unknown key '{axis.key}'")
        kind = _axis_kind(base, axis)
        if axis.values is None:
            for v in axis.range:
                _resolved(base, axis.key, _cast(v, kind))
                if tick is not None:
                    tick.advance()
        else:
            _check_values(base, axis.key, axis.values, tick)
    except ConfigError as e:
        raise ConfigError(f"axis '{axis.key}': {e}") from None
    return kind


def _resolved(base: dict, key: str, value: Any) -> dict:
    """The base with ``key`` set to ``value``, validated as a scenario, as a JSON-able dict."""
    probe = copy.deepcopy(base)
    set_path(probe, key, value)
    return build(probe).model_dump(mode="json")


def _no_negative_zero(v: Any) -> Any:
    if isinstance(v, float):
        return v + 0.0  # -0.0 + 0.0 == +0.0: the same value, the same JSON
    if isinstance(v, dict):
        return {k: _no_negative_zero(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_no_negative_zero(x) for x in v]
    return v


def _check_values(base: dict, key: str, values: list, tick: _Ticker | None = None) -> None:
    """Every explicit value must validate and have the type the scenario holds at ``key`` (no
    string "0.2" for a number: the scenario would coerce it, the ledger would keep a string;
    so an axis never mixes types), and give a scenario no other value gives (0.0 and -0.0
    would run the same model twice under two parameter hashes)."""
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        config = _resolved(base, key, v)
        held = _get_path(config, key)
        if json_kind(v) != json_kind(held):
            raise ConfigError(f"value {short_repr(v, 60)} is a {json_kind(v)}, but the key "
                              f"holds a {json_kind(held)} "
                              f"(write {one_line(json.dumps(held), 60)})")
        first = seen.setdefault(canonical_json(_no_negative_zero(config)), i)
        if first != i:
            raise ConfigError(f"values {short_repr(values[first], 60)} and "
                              f"{short_repr(v, 60)}"
                              " give the same scenario; list each value once")
        if tick is not None:
            tick.advance()


def _has_path(data: Any, key: str) -> bool:
    try:
        _get_path(data, key)
    except (KeyError, IndexError, ValueError, TypeError):
        return False
    return True


# --------------------------------------------------------------------------- designs
def _design_size(spec: SweepSpec) -> int:
    fixed = math.prod(len(a.values) for a in spec.axes if a.values is not None)
    if spec.design == "grid":
        return fixed * math.prod(a.steps for a in spec.axes if a.range is not None)
    if spec.design == "lhs":
        return fixed * spec.samples
    return spec.samples * (len(spec.axes) + 2)


def _explicit(axis: Axis, kind: str) -> list:
    """An axis's explicit values; an integer given for a float key becomes a float (and a
    whole float for an integer key an integer), so that ``1`` and ``1.0`` are one point (one
    parameter hash) of one type."""
    return [float(v) if kind == "float" and type(v) is int else
            int(v) if kind == "int" and type(v) is float and v.is_integer() else v
            for v in axis.values]


def _grid_values(axis: Axis, kind: str) -> list:
    if axis.values is not None:
        return _explicit(axis, kind)
    out: list = []
    for x in np.linspace(axis.range[0], axis.range[1], axis.steps):
        v = _cast(x, kind)
        if v not in out:  # an integer key can round two grid steps to one value
            out.append(v)
    return out


def _rows_to_points(keys: list[str], rows: Iterable, kinds: dict) -> list[dict]:
    """One point a row; each column cast as :func:`_cast` casts one value (the same numbers),
    but a whole column at a time: 200,000 rows of 64 columns took 5 s value by value."""
    rows = np.asarray(rows, dtype=float).reshape(-1, len(keys))
    columns = []
    for j, k in enumerate(keys):
        col = rows[:, j]
        if kinds[k] == "int":
            columns.append([int(v) for v in np.rint(col).tolist()])
        elif kinds[k] == "float":
            columns.append(col.tolist())
        else:
            columns.append(list(col))
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]


def grid_points(spec: SweepSpec, kinds: dict) -> list[dict]:
    """The Cartesian product of the axes in spec order (the first axis varies slowest)."""
    keys = [a.key for a in spec.axes]
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(_grid_values(a, kinds[a.key]) for a in spec.axes))]


def lhs_points(spec: SweepSpec, kinds: dict) -> list[dict]:
    """Latin hypercube (scipy.stats.qmc, seeded from root_seed) over the range axes, crossed
    with every combination of the explicit-value axes (the same LHS rows for each)."""
    from scipy.stats import qmc

    ranged = [a for a in spec.axes if a.range is not None]
    fixed = [a for a in spec.axes if a.values is not None]
    unit = qmc.LatinHypercube(d=len(ranged), rng=np.random.default_rng(spec.root_seed)
                              ).random(spec.samples)
    rows = qmc.scale(unit, [a.range[0] for a in ranged], [a.range[1] for a in ranged])
    sampled = _rows_to_points([a.key for a in ranged], rows, kinds)
    order = [a.key for a in spec.axes]
    points = []
    for combo in itertools.product(*(_explicit(a, kinds[a.key]) for a in fixed)):
        head = dict(zip([a.key for a in fixed], combo, strict=True))
        for p in sampled:
            merged = {**head, **p}  # once a point (it was merged again for each key)
            points.append({k: merged[k] for k in order})
    return points


def sobol_points(spec: SweepSpec, kinds: dict) -> tuple[list[dict], dict]:
    """Saltelli's scheme (SALib ``sample.sobol``, calc_second_order=False): N*(D+2) points."""
    from SALib.sample import sobol

    problem = {"num_vars": len(spec.axes), "names": [a.key for a in spec.axes],
               "bounds": [list(a.range) for a in spec.axes]}
    rows = sobol.sample(problem, spec.samples, calc_second_order=False,
                        seed=spec.root_seed)
    return _rows_to_points(problem["names"], rows, kinds), problem


# --------------------------------------------------------------------------- metrics
def flat_metrics(summary: dict) -> dict[str, float]:
    """Flatten :func:`sim.world.metrics.summary` to ``{"a.b": float}`` and add max_peak_price_fall.

    Nested dicts become dotted keys (``peak_price_fall.H100``, ``debtrank.max_single``);
    strings and booleans are dropped; None (a ratio with a zero denominator) becomes NaN.
    """
    out: dict[str, float] = {}

    def walk(prefix: str, obj: Any) -> None:
        for k, v in obj.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(name + ".", v)
            elif v is None:
                out[name] = float("nan")
            elif isinstance(v, int | float | np.integer | np.floating) and not isinstance(
                    v, bool | np.bool_):
                out[name] = float(v)

    walk("", summary)
    falls = summary.get("peak_price_fall") or {}
    out["max_peak_price_fall"] = float(max(falls.values())) if falls else 0.0
    return out


def _probe(base: dict) -> tuple[list[str], list[str]]:
    """The metric names and series columns a run of the base scenario offers."""
    cfg = build({**base, "months": min(2, base["months"])})
    try:
        model = sim.world.runner.run_scenario(cfg)
    except Exception as e:  # noqa: BLE001 - any failure to build the base is a bad spec
        raise ConfigError(f"base: the model cannot run it: {type(e).__name__}: "
                          f"{one_line(e, 200)}") from None
    names = [k for k in flat_metrics(metrics.summary(model)) if k not in SEED_EXCLUDED]
    for g in (g["name"] for g in base["environment"]["generations"]):
        for key in (f"peak_price_fall.{g}", f"peak_price_fall_raw.{g}"):
            if key not in names:
                names.append(key)
    return names, list(metrics.series(model).columns)


def _check_names(kind: str, asked: list[str], offered: list[str]) -> None:
    unknown = [m for m in asked if m not in offered]
    if unknown:
        raise ConfigError(f"{kind}: unknown name '{unknown[0]}' (choose from: "
                          f"{', '.join(offered)})")
    dup = [m for m in asked if asked.count(m) > 1]
    if dup:
        raise ConfigError(f"{kind}: '{dup[0]}' is listed twice")


# --------------------------------------------------------------------------- loading
def _read_spec(path: Path) -> tuple[dict, str]:
    """The spec's data and its text (copied into the sweep directory), read once: a regular
    file of at most ``MAX_TOML_BYTES``, checked before parsing (sim.core.config.read_regular)."""
    raw = read_regular(path, MAX_TOML_BYTES, f"sweep spec '{path}'")
    data = parse_toml(raw, path)  # one-line errors for malformed TOML, bad encoding
    return data, raw.decode("utf-8")


Report = Callable[[str, int, int | None], None]  # (what is being done, done, total or None)


def _no_report(_what: str, _done: int, _total: int | None) -> None:
    pass


class _Ticker:
    """Counts work done and passes it to a :data:`Report` at most every 0.1 s (and when the
    count reaches the total), so that a stage of 200,000 steps costs no time in reporting."""

    def __init__(self, report: Report, what: str, total: int) -> None:
        self.report, self.what, self.total = report, what, total
        self.done, self.last = 0, time.monotonic()
        report(what, 0, total)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.done >= self.total or now - self.last >= 0.1:
            self.last = now
            self.report(self.what, self.done, self.total)


def load_spec(path: str | Path, report: Report = _no_report) -> SweepSpec:
    """Read, validate and resolve a sweep spec; any problem is a one-line ConfigError.

    ``report(what, done, total)`` hears of each stage as it goes (checking the axes' values,
    probing the base, building the design): a spec at the size limit takes a while.
    """
    report("reading the spec", 0, None)
    p = Path(path)
    if not p.is_file() and not p.suffix and (SWEEP_DIR / f"{p}.toml").is_file():
        p = SWEEP_DIR / f"{p}.toml"  # a shipped spec by name
    data, text = _read_spec(p)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{p}: {format_error(e)}") from None
    spec._path, spec._text = p, text
    try:
        _resolve(spec, report)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    return spec


def _resolve(spec: SweepSpec, report: Report = _no_report) -> None:
    # the size first: it needs only the spec, and checking the values of a design far over
    # the limit (64 axes of 100,000 values) would take hours
    size = _design_size(spec)
    if size > MAX_POINTS or size * spec.replicates > MAX_RUNS:
        raise ConfigError(f"the design has {size:,} points x {spec.replicates} replicates; "
                          f"the limit is {MAX_POINTS:,} points and {MAX_RUNS:,} runs")
    report("resolving the base scenario", 0, None)
    base = _resolve_base(spec).model_dump(mode="json")
    tick = _Ticker(report, "checking the axes' values",
                   sum(2 if a.values is None else len(a.values) for a in spec.axes))
    kinds = {a.key: _check_axis(base, a, tick) for a in spec.axes}
    report("probing the base scenario (a 2-month run)", 0, None)
    offered, columns = _probe(base)
    if spec.metrics is None:
        spec.metrics = offered
    _check_names("metrics", spec.metrics, offered)
    _check_names("series", spec.series, [c for c in columns if c not in ("month", "date")])
    spec._base = base
    report(f"building the {spec.design} design (up to {size:,} points)", 0, None)
    if spec.design == "grid":
        spec._points = grid_points(spec, kinds)
    elif spec.design == "lhs":
        spec._points = lhs_points(spec, kinds)
    else:
        spec._points, spec._problem = sobol_points(spec, kinds)


def base_hash(base: dict) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in base.items() if k != "seed"}).encode()
                          ).hexdigest()[:16]


def param_hash(params: dict, base: dict) -> str:
    """First 16 hex digits of SHA-256 over the canonical JSON of the params and the base."""
    return next(param_hashes([params], base))


def param_hashes(points: Iterable[dict], base: dict) -> Iterator[str]:
    """:func:`param_hash` of each point, with the base encoded and hashed once. The canonical
    JSON of ``{"base": B, "params": P}`` (keys sorted, no spaces) is ``'{"base":' + JSON(B) +
    ',"params":' + JSON(P) + '}'``, so every hash continues the SHA-256 of one prefix: the
    same hashes, without encoding the whole base again for each of 200,000 points."""
    prefix = hashlib.sha256(('{"base":' + canonical_json({k: v for k, v in base.items()
                                                           if k != "seed"})
                             + ',"params":').encode())
    for params in points:
        h = prefix.copy()
        h.update((canonical_json(params) + "}").encode())
        yield h.hexdigest()[:16]


# --------------------------------------------------------------------------- runs
# slots: pickling an instance that has a __dict__ turns its inline attributes into a lasting
# dict object (64 bytes a task in Python 3.12), and every task lives until the sweep ends
@dataclass(frozen=True, slots=True)
class RunTask:
    param_hash: str
    seed: int
    point: int
    replicate: int
    params: dict
    base: dict  # shared by every task of a sweep (pickled once per chunk)
    metrics: tuple[str, ...]
    series: tuple[str, ...]

    @property
    def key(self) -> tuple[str, int]:
        return (self.param_hash, self.seed)

    @property
    def config(self) -> dict:
        """The run's scenario dict: the base with the point's values and the run seed. A list
        or table value is copied in, so that a later key inside it (``x`` then ``x.0``) changes the
        config, not the task's params."""
        config = copy.deepcopy(self.base)
        for k, v in self.params.items():
            set_path(config, k, copy.deepcopy(v) if isinstance(v, list | dict) else v)
        config["seed"] = self.seed
        return config


@dataclass
class RunResult:
    key: tuple[str, int]
    status: str
    error: str | None
    metrics: dict
    duration: float
    version: str
    # the monthly series the spec keeps: column name -> values (``month`` first); the
    # coordinator writes a batch's series into one Parquet file
    series: dict[str, np.ndarray] | None = None
    platform: dict | None = None  # sim.core.numerics.platform_info() of the process that ran it


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {one_line(e, 500)}"


POINT_CACHE = 1024  # validated points a process keeps (about 36 KiB each)
# this process's validated points (task_scenario): the JSON of the base they were built on,
# and, by the JSON of each point's (key, value) pairs, its scenario, least recently used first
_BASE_OF_POINTS: list = [None]
_POINTS: OrderedDict[str, Scenario] = OrderedDict()


def task_scenario(task: RunTask) -> Scenario:
    """The run's validated scenario. A point's runs differ only in their seed, so each process
    validates a point once (0.5-0.8 ms: copying the base, setting the point's values,
    validating) and gives each replicate a copy with its seed, a value the seed field accepts
    (:func:`sim.core.seeds.replicate_seed` gives 32-bit words); pydantic's ``model_copy`` does
    not validate again. Tasks are replicate-major (:func:`build_tasks`), so a point comes back
    to a process only after the whole design's other points: the last :data:`POINT_CACHE`
    points are kept. A point is found by the exact JSON of its base and of its values in
    order (types included: 12 and 12.0 differ), made again for every run (~0.07 ms) and never
    by the hash alone, so a kept scenario is only ever served for the config it was built
    from, even if a caller edits a base or a point in place; a base or point that is not JSON
    is built every time."""
    try:
        base, key = json.dumps(task.base), json.dumps(list(task.params.items()))
    except (TypeError, ValueError):  # not JSON (a test's hand-made task): build it
        return build(task.config).model_copy(update={"seed": task.seed})
    if _BASE_OF_POINTS[0] != base:  # another sweep's base: nothing kept applies
        _POINTS.clear()
        _BASE_OF_POINTS[0] = base
    scenario = _POINTS.get(key)
    if scenario is None:
        scenario = build(task.config)
        _POINTS[key] = scenario
        if len(_POINTS) > POINT_CACHE:
            _POINTS.popitem(last=False)
    else:
        _POINTS.move_to_end(key)
    return scenario.model_copy(update={"seed": task.seed})


def _measured(task: RunTask, model: LiquidationModel) -> tuple[dict, dict | None]:
    """A finished run's kept metrics and series. The costly parts of the summary (the
    cascade counterfactual, about a run's cost; DebtRank) only if a kept metric needs them."""
    flat = flat_metrics(metrics.summary(model, keys=task.metrics))
    values = {k: flat.get(k, float("nan")) for k in task.metrics}
    series = None
    if task.series:
        frame = metrics.series(model)
        series = {c: frame[c].to_numpy() for c in ("month", *task.series)}
    return values, series


def _result(task: RunTask, seconds: float, values: dict | None = None,
            series: dict | None = None, error: BaseException | None = None) -> RunResult:
    if error is not None:
        return RunResult(task.key, "failed", _error_text(error), {}, seconds, liqsim_version(),
                         None, numerics.platform_info())
    return RunResult(task.key, "ok", None, values or {}, seconds, liqsim_version(), series,
                     numerics.platform_info())


def run_task(task: RunTask) -> RunResult:
    """Build and run one model; any exception becomes a failed result with its error text."""
    t0 = time.perf_counter()
    try:
        model = sim.world.runner.run_scenario(task_scenario(task))
        values, series = _measured(task, model)
    except Exception as e:  # noqa: BLE001 - a failing run is recorded, the sweep goes on
        return _result(task, time.perf_counter() - t0, error=e)
    return _result(task, time.perf_counter() - t0, values, series)


def run_tasks(tasks: list[RunTask]) -> list[RunResult]:
    """The results of ``tasks``, each :func:`run_task`'s, with the runs of one engine and
    shape (:func:`_shape`: switches, sizes, horizon) stepped together as a
    :class:`sim.world.stack.RunStack` (the run axis: a batched
    phase runs once a month for all of them; each run's bits are its own, so a run's result
    does not depend on the runs it shares a stack with, nor on the chunking, nor on the number
    of workers). A run that fails to build, or whose month raises, is a failed result with
    :func:`run_task`'s error text, and the others go on. Runs whose arrays cannot share a
    stack run one by one. A run's ``duration`` is its own build and summary plus its share
    of its stack's months (the stack's time over its runs)."""
    out: list[RunResult | None] = [None] * len(tasks)
    groups: dict[tuple, list[tuple[int, LiquidationModel, float]]] = {}
    for i, task in enumerate(tasks):
        t0 = time.perf_counter()
        try:
            model = LiquidationModel(task_scenario(task))
        except Exception as e:  # noqa: BLE001 - as run_task
            out[i] = _result(task, time.perf_counter() - t0, error=e)
            continue
        groups.setdefault((model.engine, _shape(task, model.cfg)), []).append(
            (i, model, time.perf_counter() - t0))
    for group in groups.values():
        t0 = time.perf_counter()
        errors = _run_together([model for _, model, _ in group])
        share = (time.perf_counter() - t0) / len(group)
        for (i, model, own), error in zip(group, errors, strict=True):
            t1 = time.perf_counter()
            values = series = None
            if error is None:
                try:
                    values, series = _measured(tasks[i], model)
                except Exception as e:  # noqa: BLE001 - as run_task
                    error = e
            out[i] = _result(tasks[i], own + share + time.perf_counter() - t1, values, series,
                             error)
    return out  # type: ignore[return-value]


_SHAPES: OrderedDict[str, tuple] = OrderedDict()  # a point's shape, by its param_hash


def _shape(task: RunTask, cfg: Scenario) -> tuple:
    """The run's shape: every switch, size and name of its scenario (each bool, int and string
    value, by its path; the horizon among them, the seed not), the key :func:`run_tasks`
    groups stacks by, so that the runs of a stack can share every batched phase (their
    numbers, the floats, may differ). The same for every run of a point: kept by
    ``param_hash``, the last :data:`POINT_CACHE` points."""
    shape = _SHAPES.get(task.param_hash)
    if shape is not None:
        _SHAPES.move_to_end(task.param_hash)
        return shape
    out: list = []

    def walk(path: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{path}.{k}", x)
        elif isinstance(v, list | tuple):
            out.append((path, len(v)))
            for k, x in enumerate(v):
                walk(f"{path}.{k}", x)
        elif isinstance(v, bool | int | str) and path != ".seed":
            out.append((path, v))

    walk("", cfg.model_dump(mode="python"))
    shape = tuple(out)
    _SHAPES[task.param_hash] = shape
    if len(_SHAPES) > POINT_CACHE:
        _SHAPES.popitem(last=False)
    return shape


def _run_together(models: list[LiquidationModel]) -> list[BaseException | None]:
    """Run ``models`` to their horizon, as one RunStack when they are several and can share
    one, else one by one (``model.run()``, as :func:`run_task`); each run's exception or None."""
    if len(models) > 1:
        try:
            stack = RunStack(models)
        except ValueError:  # arrays of another dtype or rank: not one shape
            stack = None
        if stack is not None:
            stack.run()
            return [stack.errors.get(r) for r in range(len(models))]
    errors: list[BaseException | None] = []
    for model in models:
        try:
            model.run()
            errors.append(None)
        except Exception as e:  # noqa: BLE001 - as run_task
            errors.append(e)
    return errors


_STARTED = None  # in a pool worker: the queue on which it announces each chunk it starts


_FROZEN = False  # whether this process has moved what it held into gc's permanent generation


def collect_garbage() -> None:
    """Free the batch's finished models now. A model is freed only by Python's cyclic garbage
    collector (its parts refer to each other), whose full collections are rare, so a sweep's
    memory grew with the runs (316 -> 335 MB over 400 in-process runs; issue 19's "memory
    flat"). The first call collects and then freezes what is alive (``gc.freeze``: modules,
    kernels, the coordinator's state) so that later collections skip it: about 2.5 ms each
    after that (29 ms of CPU over 400 in-process runs, 0.3 % of the sweep), against about
    90 ms for a full collection in a process that never froze. Called after each batch
    (:func:`run_serial`) and each chunk a pool or Dask worker runs (:func:`_run_chunk`)."""
    global _FROZEN
    gc.collect()
    if not _FROZEN:
        gc.freeze()
        _FROZEN = True


def _run_chunk(chunk_id: int, tasks: list[RunTask], runner: Callable = run_task
               ) -> list[RunResult]:
    if _STARTED is not None:
        _STARTED.put(chunk_id)
    results = run_tasks(tasks) if runner is run_task else [runner(t) for t in tasks]
    collect_garbage()
    return results


def _worker_init(started, coordinator: int) -> None:
    """Pool worker: announce chunks, leave Ctrl-C to the coordinator, exit if it dies."""
    global _STARTED
    _STARTED = started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ppid = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != ppid or not _alive(coordinator):
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _chunks(tasks: list, size: int, workers: int = 1) -> list[list]:
    """Cut ``tasks`` into chunks of at most ``size`` runs, in order. With several workers the
    chunks shrink towards the end (guided self-scheduling, Polychronopoulos & Kuck 1987,
    IEEE Trans. Computers 36(12)): each is at most the remaining runs / (4 x workers), so the
    workers finish close together instead of one idling while another runs a last full chunk."""
    out, i, n = [], 0, len(tasks)
    while i < n:
        step = size if workers <= 1 else max(1, min(size, (n - i) // (4 * workers)))
        out.append(tasks[i: i + step])
        i += step
    return out


def _died(task: RunTask, times: int) -> RunResult:
    return RunResult(task.key, "failed", "WorkerDied: the worker process running this run died "
                     f"{times} times (killed, out of memory, or a crash in native code)",
                     {}, 0.0, liqsim_version())


Sink = Callable[[list[RunResult]], None]  # commits one batch of results


def run_serial(tasks: list[RunTask], sink: Sink, runner: Callable = run_task) -> None:
    """In this process, committed batch by batch (:data:`SERIAL_BATCH` runs: a commit's wait
    for the disk, ~0.9 ms a run in batches of 8, ~0.3 ms in batches of 32, is not overlapped by
    other workers here); if anything stops it (Ctrl-C, an error outside a run), the finished
    runs of the batch are committed first. After each batch its models are freed
    (:func:`collect_garbage`)."""
    for chunk in _chunks(tasks, SERIAL_BATCH):
        done: list[RunResult] = []
        try:
            if runner is run_task:  # stacked (run_tasks): the batch's runs end together
                done = run_tasks(chunk)
            else:
                for t in chunk:
                    done.append(runner(t))
        except BaseException:
            if done:
                sink(done)
            raise
        sink(done)
        collect_garbage()


def _mp_context():
    try:
        ctx = mp.get_context("forkserver")
    except ValueError:  # no forkserver on this platform
        return mp.get_context("spawn")
    # sim.batch.preload runs one model in the fork server: the workers start with the
    # compiled kernels loaded instead of each loading them at its first run (~0.6 s of CPU)
    ctx.set_forkserver_preload(["sim.batch.sweep", "sim.world.runner", "sim.world.metrics",
                                "sim.batch.preload"])
    return ctx


def _warm_forkserver() -> None:
    """Start the fork server now, so that its preload (about 1.2 s of imports: Mesa, pandas,
    networkx; then one model run that loads the compiled kernels, :mod:`sim.batch.preload`)
    overlaps the reading of the spec and the ledger instead of delaying the first run. Where
    there is no fork server, the pool falls back to spawn and nothing is started."""
    ctx = _mp_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        # started with Ctrl-C ignored (inherited through exec): a Ctrl-C or `timeout -s INT`
        # reaches the whole process group, and the fork server, which ignores SIGINT only
        # after its ~1 s of imports, printed a KeyboardInterrupt traceback; the coordinator
        # handles the interruption and stops the pool
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            forkserver.ensure_running()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)


def _stop(pool: ProcessPoolExecutor, hard: bool) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())  # private, read only
    pool.shutdown(wait=not hard, cancel_futures=True)
    if hard:  # Ctrl-C or a write error: do not wait for the chunks still computing
        for proc in procs:
            if proc.is_alive():
                proc.terminate()


def _pool_pass(batch: list[RunTask], workers: int, size: int, sink: Sink, runner: Callable
               ) -> tuple[list[RunTask], list[RunTask]]:
    """Run ``batch`` on a fresh pool: (the runs not finished, and of those the runs in flight
    when a worker died); both empty when the pass completes.

    The coordinator's memory stays flat however many runs the pass has: at most
    ``IN_FLIGHT_PER_WORKER`` chunks a worker are submitted at a time (submitting all of them
    at once kept a future per chunk, and, when committing fell behind the workers, their
    finished results, series bytes included, until the pass ended), a chunk's future is
    dropped as soon as its results are committed, and which chunks were started and finished
    is kept in two bytearrays (one byte a chunk), not in sets of run keys.
    """
    _warm_forkserver()  # already running after run_sweep's call: then a no-op
    ctx = _mp_context()
    started = ctx.SimpleQueue()
    chunks = _chunks(batch, size, workers)
    n_workers = min(workers, len(chunks))
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx,
                               initializer=_worker_init, initargs=(started, os.getpid()))
    futures: dict = {}  # future -> chunk index: submitted, results not yet committed
    handled = bytearray(len(chunks))  # 1: the chunk's results are committed
    begun = bytearray(len(chunks))  # 1: a worker has started the chunk
    submitted = 0

    def submit() -> None:  # keep each worker's queue full, and no more
        nonlocal submitted
        while submitted < len(chunks) and len(futures) < IN_FLIGHT_PER_WORKER * n_workers:
            futures[pool.submit(_run_chunk, submitted, chunks[submitted], runner)] = submitted
            submitted += 1

    def drain() -> None:  # keep the pipe from filling up, and learn what is in flight
        while not started.empty():
            begun[started.get()] = 1

    def take(fut) -> None:
        i = futures.pop(fut)
        sink(fut.result())
        handled[i] = 1

    hard = True
    try:
        submit()
        while futures:
            done, _ = wait(set(futures), return_when=FIRST_COMPLETED)
            drain()
            for fut in done:
                take(fut)
            del done
            submit()
        hard = False
        return [], []
    except BrokenProcessPool:
        hard = False
        for fut in list(futures):  # keep what finished before the break
            if fut.done() and fut.exception() is None:
                take(fut)
        drain()
        left = [i for i in range(len(chunks)) if not handled[i]]
        return ([t for i in left for t in chunks[i]],
                [t for i in left if begun[i] for t in chunks[i]])
    finally:
        _stop(pool, hard)


def run_pool(tasks: list[RunTask], workers: int, sink: Sink, runner: Callable = run_task
             ) -> None:
    """Local process pool. A worker that dies breaks the pool: it is rebuilt, the runs that
    were in flight are re-run one at a time, and one that kills its worker again is failed."""
    deaths: dict[tuple, int] = {}
    todo = list(tasks)
    idle_breaks = 0
    while todo:
        suspects = [t for t in todo if t.key in deaths]
        if suspects:
            batch, n, size = suspects[:1], 1, 1
        else:
            batch, n, size = todo, workers, MAX_CHUNK
        unfinished, in_flight = _pool_pass(batch, n, size, sink, runner)
        failed = set()
        for t in in_flight:
            deaths[t.key] = deaths.get(t.key, 0) + 1
            if deaths[t.key] >= MAX_DEATHS:
                sink([_died(t, deaths[t.key])])
                failed.add(t.key)
        left = [t for t in unfinished if t.key not in failed]
        n_finished = len(batch) - len(left)
        idle_breaks = idle_breaks + 1 if left and not n_finished and not in_flight else 0
        if idle_breaks >= 3:
            raise ConfigError("worker processes keep dying before they start a run; "
                              "re-run to resume (finished runs are kept)")
        if batch is todo:
            todo = left
        elif not left:  # the suspect finished (or was failed): the others stay in order
            todo = [t for t in todo if t is not batch[0]]


def run_dask(tasks: list[RunTask], sink: Sink, scheduler: str | None = None,
             n_local: int | None = None, runner: Callable = run_task) -> None:
    """Dask distributed: an existing cluster (``scheduler``) or a LocalCluster of ``n_local``
    single-threaded worker processes on 127.0.0.1. Dask re-runs the tasks of a lost worker;
    a chunk that keeps killing workers (KilledWorker) is retried run by run, then failed."""
    import logging

    from distributed import Client, LocalCluster

    cluster = None
    try:
        if n_local is not None:
            cluster = LocalCluster(n_workers=n_local, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster if cluster is not None else scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        if cluster is not None:
            cluster.close()
        where = f"--scheduler {scheduler}" if scheduler else "--dask-local"
        raise ConfigError(f"{where}: cannot start or reach the Dask cluster: "
                          f"{one_line(e, 200)}") from None
    try:
        _check_workers(client)
        _dask_loop(client, tasks, sink, runner)
    except (OSError, TimeoutError) as e:  # the scheduler went away
        raise ConfigError(f"lost the Dask cluster: {_error_text(e)}; re-run to resume "
                          "(finished runs are kept)") from None
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _check_workers(client) -> None:
    """Every worker of the cluster can import liqsim's sweep module, or ConfigError (one line
    naming the worker and the missing module) before any run is submitted: a worker that
    cannot unpickle a task would otherwise fail it over and over while the coordinator waits.
    The probe is ``exec`` (a builtin, so it reaches a worker without liqsim)."""
    answers = client.run(exec, "import sim.batch.sweep, sim.world.runner", on_error="return")
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            missing = getattr(answer, "name", None)
            what = f"no module named '{missing}' there" if missing else _error_text(answer)
            raise ConfigError(f"Dask worker {worker} cannot import liqsim: {what}; install "
                              "liqsim on every worker (pip install -e .), or start the worker "
                              "from the repository")


def _dask_loop(client, tasks: list[RunTask], sink: Sink, runner: Callable) -> None:
    from distributed import as_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    chunks = _chunks(tasks, MAX_CHUNK, workers)
    futures = {client.submit(_run_chunk, i, c, runner, pure=False): c
               for i, c in enumerate(chunks)}
    ac = as_completed(list(futures))
    for fut in ac:
        chunk = futures.pop(fut)  # dropped once taken: the coordinator's memory stays flat
        try:
            results = fut.result()
        except Exception as e:  # noqa: BLE001 - KilledWorker and friends
            if len(chunk) > 1:
                for t in chunk:
                    single = client.submit(_run_chunk, -1, [t], runner, pure=False)
                    futures[single] = [t]
                    ac.add(single)
                continue
            results = [RunResult(chunk[0].key, "failed", _error_text(e), {}, 0.0,
                                 liqsim_version())]
        sink(results)


# --------------------------------------------------------------------------- directory
class SweepLock:
    """An exclusive ``fcntl.flock`` on DIR/sweep.lock, released when the process dies."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / "sweep.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise ConfigError(f"{out_dir}: another sweep (pid {holder}) is running in this "
                              "directory; wait for it or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        os.close(self.fd)  # closing the descriptor releases the lock


def _prepare_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a directory")
    single = [n for n in ("summary.json", "series.parquet", "config.json")
              if (out_dir / n).is_file()]
    if single:
        raise ConfigError(f"--out {out_dir}: holds a single run's outputs ({single[0]}, "
                          "written by liqsim run); a sweep needs a directory of its own")
    try:
        (out_dir / "series").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: cannot create the directory: "
                          f"{e.strerror or one_line(e)}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_dir}: directory is not writable")


def sweep_meta(spec: SweepSpec) -> dict:
    return {"spec": spec.model_dump(mode="json"), "design": spec.design,
            "axes": [a.key for a in spec.axes], "points": spec.points,
            "problem": spec.problem, "seeds": spec.seeds, "base": spec.base_config,
            "base_hash": base_hash(spec.base_config)}


def _check_same_sweep(out_dir: Path, old: dict, new: dict) -> None:
    """Refuse to mix two different sweeps in one ledger (only replicates may change)."""
    if not old:
        return
    a = {k: v for k, v in old.get("spec", {}).items() if k not in ("replicates", "description")}
    b = {k: v for k, v in new["spec"].items() if k not in ("replicates", "description")}
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if old.get("base_hash") != new["base_hash"]:
        changed.append("the base scenario's resolved config")
    if changed:
        raise ConfigError(f"{out_dir} holds a different sweep (changed: {', '.join(changed)}); "
                          "only replicates may change between runs: use another --out")
    held = old.get("spec", {}).get("replicates", 0)
    if new["spec"]["replicates"] < held:
        # the ledger may hold runs of the higher replicates: the manifest, analyze and verify
        # would then describe a design the ledger does not match
        raise ConfigError(f"{out_dir} holds this sweep with {held} replicates; a re-run may keep "
                          f"or raise replicates, not lower them to {new['spec']['replicates']}: "
                          "use another --out")


# --------------------------------------------------------------------------- driver
@dataclass
class SweepResult:
    out: Path
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_error: str | None = None
    backend: str = ""
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        text = (f"{self.total} runs: {self.done} done, {self.skipped} already in the ledger, "
                f"{self.failed} failed ({self.backend}, {self.seconds:.1f} s, {rate:.1f} runs/s)"
                f"; ledger: {self.out / LEDGER}")
        if self.first_error:
            text += f"\nfirst failure: {self.first_error}"
        return text


def build_tasks(spec: SweepSpec, report: Report = _no_report) -> list[RunTask]:
    """One task per distinct (param_hash, seed), replicate-major (every point gets its first
    replicate before any gets a second, so an interrupted sweep covers the whole design).
    ``report`` hears of the hashing of the points and the making of the tasks."""
    points, base = spec.points, spec.base_config
    tick = _Ticker(report, "hashing the design's points", len(points))
    first: dict[str, int] = {}
    for i, h in enumerate(param_hashes(points, base)):
        first.setdefault(h, i)
        tick.advance()
    metric_names, series = tuple(spec.metrics), tuple(spec.series)
    seeds = spec.seeds
    tick = _Ticker(report, "listing the runs", len(seeds) * len(first))
    tasks = []
    for r, seed in enumerate(seeds):
        tasks.extend(RunTask(h, seed, i, r, points[i], base, metric_names, series)
                     for h, i in first.items())
        tick.advance(len(first))
    return tasks


@contextlib.contextmanager
def _stages(enabled: bool):
    """A one-line display on stderr (a terminal only, as the run bar) of what the sweep is
    doing before its first run, from reading the spec on: a spec at the size limit (200,000
    points, or 64 axes) takes minutes to check, design and hash. Yields the :data:`Report`
    that updates it; the line disappears when the block ends, an error line included."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
                   disable=not (enabled and console.is_terminal))
    with bar:
        current = {"what": None, "task": None}

        def report(what: str, done: int, total: int | None) -> None:
            if what != current["what"]:  # a new stage: a new task (its total may be None)
                if current["task"] is not None:
                    bar.remove_task(current["task"])
                current["what"] = what
                current["task"] = bar.add_task(f"sweep: {what}", total=total, completed=done)
            else:
                bar.update(current["task"], completed=done)

        yield report


def _progress_bar(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- runs/s" if speed is None else f"{speed:.1f} runs/s")

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("[red]{task.fields[failed]} failed"), Rate(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    disable=not (enabled and console.is_terminal))


class _Writer:
    """Commits each batch of results as it arrives: its series file first (atomic), then its
    ledger rows in one transaction."""

    def __init__(self, out_dir: Path, ledger: Ledger, tasks: list[RunTask], result: SweepResult,
                 advance: Callable[[], None], adopt: Callable[[], None]) -> None:
        self.out_dir, self.ledger, self.result, self.advance = out_dir, ledger, result, advance
        self.series_dir = os.fspath(out_dir / "series")
        self.tasks = {t.key: t for t in tasks}
        self.adopt: Callable[[], None] | None = adopt
        self.platforms: dict[str, dict] = {}  # ids of the platform records already seen
        self.warned = False

    def first(self) -> None:
        """Once, before the first commit: the directory becomes this spec's (_open_ledger)."""
        if self.adopt is not None:
            try:
                self.adopt()
            except (OSError, sqlite3.Error) as e:
                raise ConfigError(f"{self.out_dir}: cannot write the ledger: "
                                  f"{_error_text(e)}") from None
            self.adopt = None

    def _check_platform(self, info: dict) -> None:
        """Warn once per sweep if a run comes from a platform outside the guarantee."""
        line = None if self.warned else _platform_warning(info)
        if line is not None:
            self.warned = True
            self.result.warnings.append(line)
            print(line, file=sys.stderr, flush=True)

    def __call__(self, results: list[RunResult]) -> None:
        if not results:
            return
        self.first()
        finished_at = datetime.now(UTC).isoformat()
        rows, new_platforms, kept = [], {}, []
        for res in results:
            t = self.tasks[res.key]
            row = {"param_hash": t.param_hash, "seed": t.seed, "point": t.point,
                   "replicate": t.replicate, "params": t.params, "status": res.status,
                   "error": res.error, "metrics": res.metrics, "duration": res.duration,
                   "version": res.version, "finished_at": finished_at, "platform": None,
                   "series_file": None}
            if res.platform is not None:
                row["platform"] = pid = platform_id(res.platform)
                if pid not in self.platforms:
                    self.platforms[pid] = new_platforms[pid] = res.platform
                    self._check_platform(res.platform)
            if res.series is not None:
                kept.append((row, res.series))
            rows.append(row)
        try:
            if kept:
                # a str path: pathlib interns every part it parses, and Python 3.12 keeps
                # interned strings forever (~110 bytes a batch)
                first = kept[0][0]
                name = f"b_{first['param_hash']}_{first['seed']}_{len(kept)}.parquet"
                atomic.atomic_write_bytes(os.path.join(self.series_dir, name),
                                          series_table(kept))
                for row, _ in kept:
                    row["series_file"] = name
            self.ledger.record_batch(rows, new_platforms)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"{self.out_dir}: cannot write results ({_error_text(e)}); every "
                              "run committed so far is kept: fix the disk or permissions and "
                              "re-run to resume") from None
        for res in results:
            if res.status == "ok":
                self.result.done += 1
            else:
                self.result.failed += 1
                self.result.first_error = self.result.first_error or res.error
            self.advance()


def series_table(kept: list[tuple[dict, dict[str, np.ndarray]]]) -> bytes:
    """One Parquet file (bytes) of the series of a batch's runs: ``param_hash`` and ``seed``
    columns, then each run's columns, the runs one after the other. A run's name in the file
    is its ledger key, so a file left by a batch that never reached the ledger (the process
    was killed between the two writes) is never read: the ledger names only committed files,
    and the re-run writes the batch again (a file of the same name is replaced)."""
    import pyarrow as pa  # lazy: only sweeps that keep series write Parquet
    import pyarrow.parquet as pq

    lengths = [len(next(iter(series.values()))) for _, series in kept]
    columns = {"param_hash": pa.array(np.repeat([row["param_hash"] for row, _ in kept],
                                                lengths)),
               "seed": pa.array(np.repeat(np.array([row["seed"] for row, _ in kept],
                                                   dtype=np.int64), lengths))}
    for name in kept[0][1]:
        columns[name] = pa.array(np.concatenate([series[name] for _, series in kept]))
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def _platform_warning(info: dict) -> str | None:
    """One line if runs made on platform ``info`` are not guaranteed to match this process's
    (a mixed cluster: results then depend on which worker ran a run)."""
    why = numerics.outside_guarantee(info)
    if not why:
        return None
    return ("warning: a worker runs outside the reproducibility guarantee of this process ("
            + "; ".join(why).replace("at the run", "on the worker")
            + "): its runs may differ in the last digits from the same runs elsewhere; each "
              "ledger row records its platform (docs/numerics.md)")


def _backend(workers: int | None, scheduler: str | None, dask_local: int | None) -> str:
    if scheduler is not None and dask_local is not None:
        raise ConfigError("--scheduler and --dask-local cannot be used together")
    if workers is not None and (scheduler is not None or dask_local is not None):
        raise ConfigError("--workers applies to the local process pool; with Dask the "
                          "cluster's workers are used")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    if scheduler is not None:
        if not scheduler.strip():
            raise ConfigError("--scheduler: empty address (expected e.g. tcp://host:8786)")
        return "dask"
    return "dask-local" if dask_local is not None else "pool"


def run_sweep(spec_path: str | Path, out: str | Path | None = None, workers: int | None = None,
              scheduler: str | None = None, dask_local: int | None = None,
              progress: bool = True, retry_failed: bool = False,
              runner: Callable = run_task) -> SweepResult:
    """Run (or resume) a sweep into ``out`` (default ``results/sweeps/<name>/``).

    ``runner`` (a module-level ``RunTask -> RunResult``, importable by the workers) is for
    tests; the default is :func:`run_task`.
    """
    backend = _backend(workers, scheduler, dask_local)
    n_workers = workers or os.cpu_count() or 1
    # before load_spec, whose first call (imports) takes about 0.6 s that the preload overlaps
    if backend == "pool" and n_workers > 1:
        _warm_forkserver()
    with _stages(progress) as report:
        spec = load_spec(spec_path, report)
    out_dir = Path(out) if out is not None else Path("results") / "sweeps" / spec.name
    _prepare_dir(out_dir)
    try:
        lock = SweepLock(out_dir)
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: cannot create sweep.lock: "
                          f"{e.strerror or one_line(e)}") from None
    try:
        result = _run_locked(spec, out_dir, backend, n_workers, scheduler, dask_local, progress,
                             retry_failed, runner)
        _write_manifest(spec, out_dir)
        return result
    finally:
        lock.release()


def _write_manifest(spec: SweepSpec, out_dir: Path) -> None:
    """Last, once every run is in the ledger: DIR/manifest.json (sim/io/store.py)."""
    try:
        write_sweep_manifest(out_dir, spec)
    except OSError as e:
        raise ConfigError(f"{out_dir}: cannot write manifest.json ({_error_text(e)}); every "
                          "run is in the ledger: re-run to write it") from None


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Delete the temporary files (``.<name>.*.tmp``, sim.io.atomic's writes) that a killed
    sweep left between writing and renaming; the caller holds the directory's lock, so no live
    sweep is writing them."""
    for d in (out_dir, out_dir / "series"):
        for f in d.glob(".*.tmp"):
            if f.is_file() and not f.is_symlink():
                f.unlink(missing_ok=True)


def _remove_orphan_series(out_dir: Path, ledger: Ledger) -> None:
    """Delete the batch series files (``series/b_*.parquet``) that no ledger row names: a
    killed sweep wrote them and died before committing their batch, whose runs will be run
    and written again. The caller holds the directory's lock."""
    named = ledger.series_files()
    for f in (out_dir / "series").glob("b_*.parquet"):
        if f.name not in named and f.is_file() and not f.is_symlink():
            f.unlink(missing_ok=True)


def _open_ledger(spec: SweepSpec, out_dir: Path) -> tuple[Ledger, Callable[[], None]]:
    """The ledger, checked to hold this sweep (or none), and the function that makes the
    directory this spec's: it removes manifest.json (which vouches only for a finished
    sweep), stores the metadata and copies the spec. The caller runs it just before the first
    new run is committed, or at once if nothing is left to run, so that a sweep failing before
    it adds a run (an unreachable --scheduler, say) leaves the directory as it was."""
    meta = sweep_meta(spec)
    try:
        ledger = Ledger(out_dir)
        _check_same_sweep(out_dir, ledger.get_meta(), meta)
        _remove_stale_temporaries(out_dir)
        _remove_orphan_series(out_dir, ledger)
    except (OSError, sqlite3.Error) as e:
        raise ConfigError(f"{out_dir}: cannot write the ledger: {_error_text(e)}") from None

    def adopt() -> None:
        (out_dir / MANIFEST).unlink(missing_ok=True)
        ledger.set_meta(meta)
        atomic.atomic_write_bytes(out_dir / SPEC_COPY, spec._text.encode())

    return ledger, adopt


def _run_locked(spec: SweepSpec, out_dir: Path, backend: str, n_workers: int,
                scheduler: str | None, dask_local: int | None, progress: bool,
                retry_failed: bool, runner: Callable) -> SweepResult:
    with _stages(progress) as report:
        report("reading the ledger", 0, None)
        ledger, adopt = _open_ledger(spec, out_dir)
    try:
        with _stages(progress) as report:
            all_tasks = build_tasks(spec, report)
            report("skipping the runs already in the ledger", 0, None)
            skip = ledger.keys("ok") | (set() if retry_failed else ledger.keys("failed"))
            tasks = [t for t in all_tasks if t.key not in skip]
        label = {"pool": f"process pool x{n_workers}" if n_workers > 1 else "in-process",
                 "dask": f"dask {scheduler}", "dask-local": f"dask LocalCluster x{dask_local}"}
        result = SweepResult(out_dir, len(all_tasks), skipped=len(all_tasks) - len(tasks),
                             backend=label[backend])
        t0 = time.perf_counter()
        with _progress_bar(progress) as bar:
            task_id = bar.add_task(spec.name, total=len(all_tasks), completed=result.skipped,
                                   failed=0)
            # without a terminal the bar is off: plain lines every few seconds instead
            lines = LineProgress(f"sweep {spec.name}", len(all_tasks), "runs") if (
                progress and bar.disable) else None

            def advance() -> None:
                bar.update(task_id, advance=1, failed=result.failed)
                if lines is not None:
                    lines.update(result.skipped + result.done + result.failed)

            sink = _Writer(out_dir, ledger, tasks, result, advance, adopt)
            if not tasks:  # everything is in the ledger already
                sink.first()
            elif backend != "pool":
                run_dask(tasks, sink, scheduler=scheduler, n_local=dask_local, runner=runner)
            elif n_workers == 1:
                run_serial(tasks, sink, runner)
            else:
                run_pool(tasks, n_workers, sink, runner)
            if lines is not None:
                lines.done()
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        ledger.close()

