"""Shared fixtures: a headless Chromium for the browser tests, installed on first use.

Playwright cannot download its own browsers here (no internet), so the browser tests drive
Debian's ``chromium`` package at ``/usr/bin/chromium``. If it is missing, the session fixture
installs it once with ``apt-get`` (the test machine runs as root). Under CI (``CI=true``) a
browser that is missing and cannot be installed fails the run; elsewhere the browser tests are
skipped with the reason.

A test that asks for Chromium (:func:`chromium_path`, :func:`chromium_launch`) is marked
``browser`` here, so ``make test-fast`` (``-m "not slow and not browser"``) leaves it out even if
its module forgets the mark. The golden cases are marked ``slow`` here too, all but ``baseline``
(which ``make test-fast`` keeps as its bit-for-bit check), so that ``tests/qa/test_golden.py``
itself stays as it was recorded with.

For the phase kernels' tests (tests/world/test_kernel_<phase>.py): :func:`twin_runner` steps
twin models with one phase on numpy in the first and compiled in the second (phases 3, 4 and
5's tests), :func:`numpy_model` a crypto_winter model some months on numpy (phases 8 and 9's).
They are here, not in a tests/world/conftest.py: a second module named ``conftest`` would
shadow this one for ``import conftest`` (tests/views/test_browser.py patches its Chromium).

Before any test, :func:`compiled_kernels` compiles (or loads from the cache) the compiled
engine's kernels for every oracle case: a fresh checkout's first compile takes about 40 s of
CPU with the GIL held, and tests that time a subprocess (a sweep interrupted 0.7 s after it
starts) must find the kernels in the cache, not compile them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES
from sim.world.model import LiquidationModel

CHROMIUM = Path("/usr/bin/chromium")
APT_TIMEOUT = 900  # seconds, for apt-get update + install together


def _apt(*args: str, timeout: float) -> str | None:
    """Run ``apt-get args``; return None on success, else a one-line reason."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        r = subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True,
                           timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"apt-get {args[0]}: {e}"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"apt-get {args[0]} exited {r.returncode}: {tail[0]}"
    return None


def ensure_chromium() -> str | None:
    """Make sure Debian's chromium is installed; return None when it is, else why not."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and apt-get is not available to install it"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return f"{CHROMIUM} is missing; installing it needs root (apt-get install chromium)"
    why = _apt("update", timeout=APT_TIMEOUT / 3) or _apt(
        "install", "-y", "--no-install-recommends", "chromium", timeout=APT_TIMEOUT)
    if why is None and not CHROMIUM.exists():
        why = f"apt-get install chromium finished but {CHROMIUM} does not exist"
    return why


def require_chromium() -> str:
    """Path of a usable Chromium, installed if need be; else fail under ``CI=true``, or skip."""
    why = ensure_chromium()
    if why is not None:
        msg = f"headless Chromium unavailable: {why}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return str(CHROMIUM)


GOLDEN_TEST = "test_golden.py::test_outputs_identical_to_golden["
GOLDEN_FAST = "baseline"  # the golden case test-fast keeps


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if {"chromium_path", "chromium_launch"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
        if GOLDEN_TEST in item.nodeid and not item.nodeid.endswith(f"[{GOLDEN_FAST}]"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of Debian's Chromium, installed once per session (see :func:`require_chromium`)."""
    return require_chromium()


@pytest.fixture(scope="session")
def chromium_launch(chromium_path) -> dict:
    """Keyword arguments for Playwright's ``chromium.launch`` (Debian's headless Chromium)."""
    # lazy: sim.views.app imports solara and matplotlib (about 1 s of CPU), which a run of
    # tests that never starts a browser (tests/core, tests/world, ...) need not pay
    from sim.views.app import HEADLESS_CHROMIUM_ARGS
    return {"executable_path": chromium_path, "args": list(HEADLESS_CHROMIUM_ARGS),
            "headless": True}


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Run each oracle case (``sim.qa.oracle.ORACLE_CASES``) for 24 months on the compiled
    engine once per session, so every kernel is compiled for the argument types the tests
    use and cached on disk before the first test (once cached: about 0.8 s of CPU at load 7,
    loading numba and the kernels included, 0.25 s of it the runs)."""
    for _, scenario, overrides in ORACLE_CASES:
        cfg = load_scenario(scenario, list(overrides))
        LiquidationModel(cfg, months=min(cfg.months, 24), engine="compiled").run()


# ------------------------------------------------------------------ the kernel tests' twins
class _Stop(Exception):
    """Ends a perturbed month right after the phase under test (the later phases need not
    survive the edge state)."""


@pytest.fixture
def twin_runner(monkeypatch):
    """``twin_runner(phase, observe, differences, kernel=None)`` -> ``make``.

    ``phase`` is the phase module whose ``run(m, month)`` is wrapped (for the test's
    duration). In each twin's month the wrapper calls ``perturb(m, month)`` if a perturbation
    was given, then ``observe(real_run, m, month)`` under ``np.errstate(all="ignore")`` (the
    edge states divide by zero on numpy), which runs the phase and returns ``(snapshot,
    value)``: ``value`` is what the wrapper returns to the month, ``snapshot`` what it keeps
    for ``differences(numpy_snapshot, compiled_snapshot)``. Afterwards the twin's later
    phases run on numpy, and a perturbed month ends right there. ``kernel=(module, name,
    on_call)`` wraps ``module.name`` so that ``on_call(output)`` sees each call's output.

    ``make(scenario="crypto_winter", overrides=(), seed=None)`` builds the twins and returns
    ``month(perturb=None)``: one month of both twins, the list of differences
    (``month.models``: the numpy and the compiled twin)."""

    def setup(phase, observe, differences, kernel=None):
        real_run = phase.run
        snaps = {}
        current = {"perturb": None}

        def run(m, month):
            perturb = current["perturb"]
            if perturb is not None:
                perturb(m, month)
            with np.errstate(all="ignore"):
                snaps[m.engine], value = observe(real_run, m, month)
            m.engine = "numpy"  # the later phases on numpy in both twins
            if perturb is not None:
                raise _Stop
            return value

        monkeypatch.setattr(phase, "run", run)
        if kernel is not None:
            module, name, on_call = kernel
            real_kernel = getattr(module, name)

            def wrapped(*args):
                out = real_kernel(*args)
                on_call(out)
                return out
            monkeypatch.setattr(module, name, wrapped)

        def make(scenario="crypto_winter", overrides=(), seed=None):
            cfg = load_scenario(scenario, list(overrides), seed=seed)
            a, b = LiquidationModel(cfg, engine="numpy"), LiquidationModel(cfg, engine="numpy")

            def month(perturb=None):
                current["perturb"] = perturb
                for m, engine in ((a, "numpy"), (b, "compiled")):
                    m.engine = engine
                    try:
                        m.step()
                    except _Stop:
                        pass
                return differences(snaps.pop("numpy"), snaps.pop("compiled"))
            month.models = (a, b)
            return month
        return make
    return setup


@pytest.fixture
def numpy_model():
    """``numpy_model(months, *overrides)``: a crypto_winter model (with ``overrides``) stepped
    ``months`` months on the numpy engine."""

    def build(months, *overrides):
        m = LiquidationModel(load_scenario("crypto_winter", list(overrides)), engine="numpy")
        for _ in range(months):
            m.step()
        return m
    return build
