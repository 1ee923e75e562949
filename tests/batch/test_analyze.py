"""Tests for ``liqsim analyze`` (sim/batch/analyze.py) on real sweeps run by
``sim.batch.sweep.run_sweep``.

* A small grid sweep (repo desk off/on x 3 BTC shock sizes, 3 paired seeds, 6 months) is run
  once; its analysis must hold the tables, figures and a self-contained report, and the
  numbers in the tables must equal means computed by hand from the ledger.
* The bootstrap: a constant sample gives a zero-width interval; the mean is the plain mean;
  on a large normal sample the interval matches the normal-theory half-width 1.96 s / sqrt(n).
* Sobol: the estimator reproduces the Ishigami function's analytic indices (Ishigami & Homma
  1990; values as in Saltelli et al. 2010 / SALib's test functions: S1 = 0.3139, 0.4424, 0;
  ST = 0.5576, 0.4424, 0.2437); and a sobol sweep whose runs evaluate Ishigami (a test
  runner passed to ``run_sweep``) goes through ledger, replicate averaging and design order to
  exactly the indices of the function evaluated at the design points.
* Bad DIR: missing, a file, no ledger, an empty ledger, a corrupt ledger, only failed runs ->
  one line on stderr and exit code 2.
"""

from __future__ import annotations

import base64
import math
import multiprocessing as mp
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.batch.analyze import boot_ci, sobol_indices
from sim.batch.sweep import RunResult, run_sweep
from sim.cli import main
from sim.io.ledger import Ledger, json_kind, read_meta, read_runs

GRID_SPEC = """
name = "analyze_grid"
base = "crypto_winter"
months = 6
replicates = 3
root_seed = 7
design = "grid"
metrics = ["credit_losses", "defaults", "lender_failures", "max_peak_price_fall"]

[[axes]]
key = "policy.repo.enabled"
values = [false, true]

[[axes]]
key = "shocks.0.size"
values = [0.3, 0.6, 0.9]
"""
ISHIGAMI_KEYS = ("environment.utilisation", "contagion.alpha",
                 "environment.stress_drawdown")
SOBOL_SPEC = """
name = "analyze_sobol"
base = "baseline"
months = 2
replicates = 2
design = "sobol"
samples = {n}
metrics = ["credit_losses"]
""" + "".join(f'\n[[axes]]\nkey = "{k}"\nrange = [0.0, 1.0]\n' for k in ISHIGAMI_KEYS)
ISHIGAMI_S1 = (0.3139, 0.4424, 0.0)
ISHIGAMI_ST = (0.5576, 0.4424, 0.2437)


def ishigami(u: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    """Ishigami & Homma (1990) on [0, 1]^3 mapped to [-pi, pi]^3 (indices are unchanged)."""
    x = -math.pi + 2 * math.pi * np.asarray(u, dtype=float)
    return np.sin(x[..., 0]) + a * np.sin(x[..., 1]) ** 2 + b * x[..., 2] ** 4 * np.sin(x[..., 0])


def ishigami_runner(task) -> RunResult:
    """A sweep 'run' that evaluates Ishigami at the point plus an offset that depends only on
    the seed: averaging over replicates adds a constant, which leaves the indices unchanged."""
    u = np.array([task.params[k] for k in ISHIGAMI_KEYS])
    y = float(ishigami(u)) + (task.seed % 97) / 10.0
    return RunResult(task.key, "ok", None, {"credit_losses": y}, 0.0, "test")


def failing_runner(task) -> RunResult:
    return RunResult(task.key, "failed", "RuntimeError: boom", {}, 0.0, "test")


def _sweep(tmp: Path, text: str, runner=None) -> Path:
    spec = tmp / "spec.toml"
    spec.write_text(text, encoding="utf-8")
    kwargs = {"runner": runner} if runner is not None else {}
    run_sweep(spec, out=tmp / "out", workers=1, progress=False, **kwargs)
    return tmp / "out"


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """A real small grid sweep and its analysis (run once for the module)."""
    out = _sweep(tmp_path_factory.mktemp("grid"), GRID_SPEC)
    assert main(["analyze", str(out)]) == 0
    return out


# --------------------------------------------------------------------------- bootstrap
def test_json_kind_names_the_kind_sweep_and_analyze_compare():
    # int and float (numpy scalars too) are one kind; a bool is not a number
    assert {json_kind(v) for v in (3, 0.5, np.int64(2), np.float64(1.5))} == {"number"}
    assert [json_kind(v) for v in (True, np.bool_(False), "0.5", None)] == \
        ["boolean", "boolean", "string", "null"]
    assert json_kind([1, "0", 2.5]) == "list of numbers, strings"
    assert json_kind([]) == "list of nothing"
    assert json_kind({"a": 1}) == "dict"


def test_bootstrap_constant_sample_has_zero_width():
    assert boot_ci([3.5] * 12) == (3.5, 3.5, 3.5)


def test_bootstrap_mean_and_determinism():
    x = [1.0, 2.0, 4.0, 9.0]
    mean, lo, hi = boot_ci(x)
    assert mean == pytest.approx(4.0)  # (1 + 2 + 4 + 9) / 4
    assert 1.0 <= lo < mean < hi <= 9.0
    assert boot_ci(x) == (mean, lo, hi)  # seeded: the same interval every time
    assert math.isnan(boot_ci([5.0])[1]) and boot_ci([5.0])[0] == 5.0
    assert boot_ci([1.0, float("nan"), 3.0])[0] == 2.0  # undefined values are dropped


def test_bootstrap_matches_normal_theory_on_a_large_sample():
    x = np.random.default_rng(1).normal(10.0, 2.0, 400)
    mean, lo, hi = boot_ci(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))  # 0.196 for s = 2, n = 400
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
    assert (lo + hi) / 2 == pytest.approx(mean, abs=0.05)


# --------------------------------------------------------------------------- grid sweep
@pytest.mark.slow
def test_analysis_writes_tables_figures_and_report(grid):
    a = grid / "analysis"
    for name in ("by_axis.csv", "points.csv", "paired.csv", "report.html",
                 "axis__policy.repo.enabled.png", "axis__shocks.0.size.png",
                 "paired__policy.repo.enabled__by__shocks.0.size.png",
                 "phase__policy.repo.enabled__shocks.0.size.png"):
        assert (a / name).is_file() and (a / name).stat().st_size > 0, name
    for metric in ("default_share", "credit_losses", "max_peak_price_fall"):
        assert (a / f"phase__policy.repo.enabled__shocks.0.size__{metric}.csv").is_file()
    for png in a.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_axis_table_means_equal_hand_computed_means(grid):
    runs = read_runs(grid)
    table = pd.read_csv(grid / "analysis" / "by_axis.csv")
    table = table[table["axis"] == "shocks.0.size"]
    for value in (0.3, 0.6, 0.9):
        row = table[(table["value"].astype(float) == value)
                    & (table["metric"] == "credit_losses")].iloc[0]
        hand = runs.loc[runs["shocks.0.size"] == value, "credit_losses"].mean()
        assert row["mean"] == pytest.approx(hand, rel=1e-12)
        assert row["n"] == 3  # three seeds
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    share, defaults = (table[table["metric"] == m] for m in ("default_share", "defaults"))
    # crypto_winter has 120 miners + 60 neo-clouds: default share = defaults / 180
    np.testing.assert_allclose(share["mean"].to_numpy(), defaults["mean"].to_numpy() / 180)


@pytest.mark.slow
def test_paired_differences_are_per_seed_differences(grid):
    runs = read_runs(grid)
    table = pd.read_csv(grid / "analysis" / "paired.csv")
    row = table[(table["axis"] == "policy.repo.enabled") & (table["metric"] == "credit_losses")
                & (table["by_value"].astype(float) == 0.9)].iloc[0]
    at = runs[runs["shocks.0.size"] == 0.9].set_index(["seed", "policy.repo.enabled"])
    diffs = [at.loc[(s, True), "credit_losses"] - at.loc[(s, False), "credit_losses"]
             for s in sorted(set(runs["seed"]))]
    assert row["mean"] == pytest.approx(np.mean(diffs), rel=1e-9, abs=1e-6)
    assert row["n"] == 3
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]


@pytest.mark.slow
def test_phase_table_has_the_grid_shape_and_cell_means(grid):
    runs = read_runs(grid)
    t = pd.read_csv(grid / "analysis" / "phase__policy.repo.enabled__shocks.0.size__"
                    "credit_losses.csv")
    assert t.shape == (2, 1 + 3)  # the row label column + one column per shock size
    cell = t.set_index("policy.repo.enabled").loc[True, "0.6"]
    hand = runs.loc[runs["policy.repo.enabled"] & (runs["shocks.0.size"] == 0.6),
                    "credit_losses"].mean()
    assert cell == pytest.approx(hand, rel=1e-12)


@pytest.mark.slow
def test_analysis_is_deterministic(grid, tmp_path):
    assert main(["analyze", str(grid), "--out", str(tmp_path / "again")]) == 0
    for name in ("by_axis.csv", "paired.csv", "points.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (grid / "analysis" / name).read_bytes()


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.refs += [(tag, k, v or "") for k, v in attrs if k in ("src", "href", "srcset")]


@pytest.mark.slow
def test_report_is_self_contained(grid):
    text = (grid / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    parser = _Refs()
    parser.feed(text)
    assert not parser.tags & {"script", "link", "iframe", "object", "embed"}
    imgs = [v for tag, k, v in parser.refs if tag == "img"]
    assert len(imgs) == len(list((grid / "analysis").glob("*.png")))
    assert all(v.startswith("data:image/png;base64,") for v in imgs)
    assert all(base64.b64decode(v.split(",", 1)[1])[:4] == b"\x89PNG" for v in imgs)
    assert [r for r in parser.refs if r[0] != "img"] == []


@pytest.mark.browser
@pytest.mark.slow
def test_report_opens_without_network(grid, chromium_launch):
    """Headless Chromium, every non-local request aborted: all figures still render."""
    from playwright.sync_api import sync_playwright

    remote = []

    def block(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch)
        try:
            page = browser.new_page()
            page.route("**/*", block)
            page.goto((grid / "analysis" / "report.html").as_uri())
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            title = page.title()
        finally:
            browser.close()
    assert remote == []
    assert widths and all(w > 100 for w in widths)
    assert "analyze_grid" in title


# --------------------------------------------------------------------------- Sobol
@pytest.mark.slow
def test_sobol_indices_of_ishigami_match_the_analytic_values():
    from SALib.sample import sobol

    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[0.0, 1.0]] * 3}
    u = sobol.sample(problem, 1024, calc_second_order=False, seed=7)
    t = sobol_indices(problem, ishigami(u))
    np.testing.assert_allclose(t["S1"], ISHIGAMI_S1, atol=0.04)
    np.testing.assert_allclose(t["ST"], ISHIGAMI_ST, atol=0.04)
    assert (t["S1_conf"] > 0).all() and (t["ST_conf"] < 0.15).all()


@pytest.mark.slow
def test_sobol_sweep_goes_through_ledger_and_design_order(tmp_path):
    out = _sweep(tmp_path, SOBOL_SPEC.format(n=128), runner=ishigami_runner)
    assert main(["analyze", str(out)]) == 0
    table = pd.read_csv(out / "analysis" / "sobol.csv")
    meta = read_meta(out)
    u = np.array([[p[k] for k in ISHIGAMI_KEYS] for p in meta["points"]])
    expected = sobol_indices(meta["problem"], ishigami(u))
    assert list(table["parameter"]) == list(ISHIGAMI_KEYS)
    np.testing.assert_allclose(table[["S1", "ST"]], expected[["S1", "ST"]], atol=1e-9)
    # (with N = 128 the estimates themselves are still rough; the analytic values are checked
    # at N = 1024 in the test above, through the same sobol_indices)
    assert (out / "analysis" / "sobol__credit_losses.png").is_file()


# --------------------------------------------------------------------------- bad input
def _empty_ledger(t: Path) -> Path:
    (t / "empty").mkdir()
    Ledger(t / "empty").close()  # the tables exist, no run and no meta yet
    return t / "empty"


def _corrupt(t: Path) -> Path:
    (t / "corrupt").mkdir()
    (t / "corrupt" / "ledger.sqlite").write_bytes(b"not a database at all" * 100)
    return t / "corrupt"


def _all_failed(t: Path) -> Path:
    return _sweep(t, GRID_SPEC.replace("replicates = 3", "replicates = 1"), failing_runner)


def _file(t: Path) -> Path:
    (t / "file.txt").write_text("x")
    return t / "file.txt"


BAD_DIRS = [
    ("missing", lambda t: t / "nope", ["no such sweep directory"]),
    ("a-file", _file, ["not a directory"]),
    ("no-ledger", lambda t: t, ["no ledger.sqlite"]),
    ("empty-ledger", _empty_ledger, ["no runs"]),
    ("corrupt-ledger", _corrupt, ["ledger"]),
    ("all-failed", _all_failed, ["all 6 runs failed"]),
]


@pytest.mark.parametrize(("make", "fragments"), [c[1:] for c in BAD_DIRS],
                         ids=[c[0] for c in BAD_DIRS])
def test_bad_dir_is_one_line_and_exit_2(tmp_path, capsys, make, fragments):
    d = make(tmp_path)
    capsys.readouterr()
    assert main(["analyze", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("liqsim: error:"), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err


@pytest.mark.slow
def test_out_that_is_a_file_is_refused(grid, tmp_path, capsys):
    target = _file(tmp_path)
    assert main(["analyze", str(grid), "--out", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- batch_run model
def test_batch_run_model_equals_a_sweep_run():
    """The Mesa batch_run adapter runs the very model a sweep runs (same config and seed)."""
    from mesa.batchrunner import batch_run

    from sim.core.config import load_scenario
    from sim.qa.bench_sweeps import BatchRunModel
    from sim.world.metrics import summary
    from sim.world.runner import run_scenario

    start = mp.get_start_method(allow_none=True)
    try:  # batch_run forces the 'spawn' start method for the whole process
        rows = batch_run(BatchRunModel, {"base": "crypto_winter", "months": 4,
                                         "shocks.0.size": [0.5, 0.8]},
                         number_processes=1, rng=[11], display_progress=False)
    finally:
        mp.set_start_method(start, force=True)
    assert len(rows) == 2
    for r in rows:
        cfg = load_scenario("crypto_winter", [f"shocks.0.size={r['shocks.0.size']}"], seed=11,
                            months=4)
        assert r["final"]["credit_losses"] == summary(run_scenario(cfg))["credit_losses"]


@pytest.mark.slow
def test_tables_and_report_say_the_units_of_the_figures(grid):
    """Each metric row carries its unit; the report writes money as the figures' ticks do
    ($432M), not 4.324e+08."""
    from sim.batch.analyze import metric_unit
    from sim.views.plots import dollars

    table = pd.read_csv(grid / "analysis" / "by_axis.csv")
    assert list(table.columns[:4]) == ["axis", "value", "metric", "unit"]
    units = dict(zip(table["metric"], table["unit"], strict=False))
    assert units["credit_losses"] == "$" and units["default_share"] == "fraction"
    assert units["max_peak_price_fall"] == "fraction" and units["defaults"] == "count"
    assert metric_unit("salvage_units") == "GPUs"
    report = (grid / "analysis" / "report.html").read_text(encoding="utf-8")
    row = table[table["metric"] == "credit_losses"].iloc[0]
    assert f"<td>{dollars(row['mean'])}</td>" in report
    assert f"{row['mean']:.4g}" not in report
