"""Shared fixtures of the phase kernels' tests (tests/world/test_kernel_<phase>.py).

:func:`twin_runner` steps twin models (the same scenario and seed) month by month with one
phase on numpy in the first and compiled in the second, everything else on numpy, and returns
what each twin's phase left for the test to compare (phases 3, 4 and 5's tests).
:func:`numpy_model` builds a crypto_winter model and steps it some months on numpy, the state
that phases 8 and 9's tests then step one month both ways from deep copies of.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.config import load_scenario
from sim.world.model import LiquidationModel


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
