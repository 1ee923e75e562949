"""Sweeps at the size limits (issue 20): progress from the first seconds, and the same hashes.

A spec at the limit (200,000 points; or 64 axes) used to stay silent for minutes before its
first run: hashing the points encoded the whole base scenario again for each of them. The
stages before the first run now report as they go (``sim.batch.sweep._stages``, a line on a
terminal), and the hashing encodes the base once. These tests record the reports of a real
``run_sweep`` on such specs and stop it at its first run.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.batch.sweep
from sim.batch.sweep import param_hash, param_hashes, run_sweep
from sim.core.config import ConfigError, load_scenario
from sim.io.ledger import canonical_json


class _FirstRun(Exception):
    """Raised by the runner: the stages before the first run are over."""


def _stop(_task):
    raise _FirstRun


@pytest.fixture
def reports(monkeypatch):
    """Every report of the stages, as (seconds since the first, what, done, total)."""
    seen: list[tuple[float, str, int, int | None]] = []

    @contextlib.contextmanager
    def recording(_enabled: bool):
        yield lambda what, done, total: seen.append((time.perf_counter(), what, done, total))

    monkeypatch.setattr(sim.batch.sweep, "_stages", recording)
    return seen


def _prepare(spec_path, out, seen) -> float:
    """Run the sweep up to its first run; return the seconds that took."""
    start = time.perf_counter()
    with pytest.raises(_FirstRun):
        run_sweep(spec_path, out=out, workers=1, progress=True, runner=_stop)
    end = time.perf_counter()
    assert seen, "no stage was reported"
    times = [start, *(t for t, *_ in seen), end]
    gaps = np.diff(times)
    assert gaps[0] < 3.0, f"the first report came after {gaps[0]:.1f} s"
    assert gaps.max() < 10.0, f"{gaps.max():.1f} s without a report"  # a busy CI machine
    return end - start


GRID_200K = """name = "grid200k"
base = "baseline"
months = 2
replicates = 1
[[axes]]
key = "buyers.capacity_scale"
range = [0.5, 5.0]
steps = 400
[[axes]]
key = "environment.rent_deflation"
range = [0.1, 0.6]
steps = 500
"""


@pytest.mark.slow
def test_a_200000_point_spec_reports_every_stage_as_it_goes(tmp_path, reports):
    spec = tmp_path / "grid200k.toml"
    spec.write_text(GRID_200K, encoding="utf-8")
    _prepare(spec, tmp_path / "out", reports)
    stages = list(dict.fromkeys(what for _t, what, _d, _n in reports))
    assert stages[:4] == ["reading the spec", "resolving the base scenario",
                          "checking the axes' values", "probing the base scenario (a 2-month run)"]
    assert "building the grid design (up to 200,000 points)" in stages
    hashing = [(d, n) for _t, what, d, n in reports if what == "hashing the design's points"]
    assert hashing[-1] == (200_000, 200_000) and len(hashing) > 2  # counted as it went


def _float_keys(n: int) -> list[tuple[str, float]]:
    """``n`` float keys of the baseline with a positive value, and their values."""
    base = load_scenario("baseline").model_dump()
    keys = []
    for section in ("environment", "lenders", "buyers", "market", "contagion"):
        keys += [(f"{section}.{k}", v) for k, v in base[section].items()
                 if isinstance(v, float) and v > 0]
    for kind in ("miner", "neocloud"):
        keys += [(f"borrowers.{kind}.{k}", v) for k, v in base["borrowers"][kind].items()
                 if isinstance(v, float) and v > 0 and k != "ltv"]
    assert len(keys) >= n
    return keys[:n]


def _valid(key: str, value: float) -> bool:
    try:
        load_scenario("baseline", [f"{key}={value!r}"])
    except ConfigError:
        return False
    return True


def _axes64() -> str:
    """A sobol design over 64 float keys of the baseline, each -10 % .. +10 % (at most 1);
    a key at its lower bound ranges up from it by 10 % (e.g. a multiple at its minimum of 1:
    1 .. 1.1), an upper end the key's bounds refuse is the baseline value."""
    axes = ""
    for k, v in _float_keys(64):
        lo, hi = v * 0.9, (min(v * 1.1, 1.0) if v <= 1.0 else v * 1.1)
        if not _valid(k, lo):  # at its lower bound: up from it
            lo, hi = v, v * 1.1
        hi = hi if _valid(k, hi) else v
        assert lo < hi, k
        axes += f'[[axes]]\nkey = "{k}"\nrange = [{lo!r}, {hi!r}]\n'
    return ('name = "axes64"\nbase = "baseline"\nmonths = 2\nreplicates = 1\n'
            'design = "sobol"\nsamples = 256\n' + axes)


@pytest.mark.slow
def test_a_64_axis_spec_reports_every_stage_as_it_goes(tmp_path, reports):
    spec = tmp_path / "axes64.toml"
    spec.write_text(_axes64(), encoding="utf-8")
    _prepare(spec, tmp_path / "out", reports)
    stages = list(dict.fromkeys(what for _t, what, _d, _n in reports))
    assert "building the sobol design (up to 16,896 points)" in stages  # 256 x (64 + 2)
    checking = [(d, n) for _t, what, d, n in reports if what == "checking the axes' values"]
    assert checking[-1] == (128, 128)  # two range ends an axis


def test_a_design_over_the_limit_is_refused_before_its_values_are_checked(tmp_path,
                                                                          monkeypatch):
    """64 axes of 100 values each (10^128 points) are refused at once: the values (a
    scenario built and validated for each of 6,400) used to be checked first."""
    axes = "".join(f'[[axes]]\nkey = "{k}"\nvalues = {[v * (1 + i / 1000) for i in range(100)]}\n'
                   for k, v in _float_keys(64))
    spec = tmp_path / "huge.toml"
    spec.write_text('name = "huge"\nbase = "baseline"\nreplicates = 1\n' + axes,
                    encoding="utf-8")
    checked = []
    monkeypatch.setattr(sim.batch.sweep, "_check_axis", lambda *a: checked.append(a) or "float")
    start = time.perf_counter()
    with pytest.raises(sim.batch.sweep.ConfigError, match="the limit is 200,000 points"):
        sim.batch.sweep.load_spec(spec)
    assert checked == [] and time.perf_counter() - start < 5.0


# --------------------------------------------------------------------------- the hashes
def _reference_hash(params: dict, base: dict) -> str:
    """param_hash as first written: the canonical JSON of the whole body, hashed."""
    body = {"base": {k: v for k, v in base.items() if k != "seed"}, "params": params}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


_scalars = (st.booleans() | st.integers(-2**63, 2**63) | st.text(max_size=8)
            | st.floats(allow_nan=False, allow_infinity=False))
_values = _scalars | st.lists(_scalars, max_size=3)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(min_size=1, max_size=12), _values, max_size=4),
                min_size=1, max_size=5))
def test_bulk_hashes_equal_the_hash_of_the_whole_body(points):
    base = load_scenario("crypto_winter").model_dump(mode="json")
    expected = [_reference_hash(p, base) for p in points]
    assert list(param_hashes(points, base)) == expected
    assert [param_hash(p, base) for p in points] == expected


@pytest.mark.slow
def test_hashing_200000_points_takes_seconds_not_minutes():
    base = load_scenario("baseline").model_dump(mode="json")
    points = [{"buyers.capacity_scale": 0.5 + i * 1e-5, "environment.rent_deflation": 0.3}
              for i in range(200_000)]
    start = time.perf_counter()
    hashes = list(param_hashes(points, base))
    elapsed = time.perf_counter() - start
    assert len(set(hashes)) == 200_000 and hashes[7] == _reference_hash(points[7], base)
    assert elapsed < 15.0, f"{elapsed:.1f} s"
    assert math.isfinite(elapsed)
