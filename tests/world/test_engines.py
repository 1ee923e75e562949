"""The compiled engine gives the numpy engine's bits (sim.qa.oracle): every golden case and the
edge cases (mass defaults, failing lenders, one month, repo defaults), at several seeds; and
the engine switch itself."""

import inspect

import numpy as np
import pytest

from sim.core.config import ConfigError
from sim.qa.oracle import ORACLE_CASES, mismatches, run_both
from sim.world.kernels import borrowers as kborrowers
from sim.world.model import LiquidationModel

IDS = [c[0] for c in ORACLE_CASES]
# in `make test-fast` (under 30 s): the two most common worlds and the repo desk at its
# edges; `make test` runs every case
FAST = ("baseline", "crypto_winter", "repo_defaults")
CASES = [pytest.param(*c, id=c[0], marks=() if c[0] in FAST else pytest.mark.slow)
         for c in ORACLE_CASES]


@pytest.mark.parametrize(("label", "scenario", "overrides"), CASES)
def test_compiled_is_numpy_bit_for_bit(label, scenario, overrides):
    assert mismatches(*run_both(scenario, overrides)) == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 20251201])
@pytest.mark.parametrize(("label", "scenario", "overrides"), ORACLE_CASES, ids=IDS)
def test_compiled_is_numpy_on_more_seeds(label, scenario, overrides, seed):
    assert mismatches(*run_both(scenario, overrides, seed=seed)) == []


def test_oracle_sees_one_bit_of_state():
    """A one-ulp change in a book array that no record holds is caught, with its name."""
    a, b = run_both("baseline", months=3)
    assert mismatches(a, b) == []
    b.borrowers.cash[5] = np.nextafter(b.borrowers.cash[5], np.inf)
    assert mismatches(a, b) == ["state: borrowers.cash"]
    b.borrowers.cash[5] = a.borrowers.cash[5]
    b.lenders.cash[0] = -0.0 if a.lenders.cash[0] == 0.0 else a.lenders.cash[0] * (1 + 2e-16)
    assert mismatches(a, b) == ["state: lenders.cash"]


def test_oracle_sees_one_ulp_from_a_kernel_mid_run(monkeypatch):
    """The compiled side itself one ulp off: phase 2's kernel leaves one borrower's cash one
    ulp up in month 2 of 3 (the numpy twin runs its phase untouched). The compiled run is
    caught differing (in month 2's panel row: by the end the borrower's cash agrees again),
    and the kernel did run each month (the engine is not numpy in disguise)."""
    real = kborrowers.waterfall
    cash = list(inspect.signature(real.py).parameters).index("cash")
    calls = []

    def one_ulp_off(*args):
        out = real(*args)
        calls.append(1)
        if len(calls) == 2:
            args[cash][5] = np.nextafter(args[cash][5], np.inf)
        return out

    monkeypatch.setattr(kborrowers, "waterfall", one_ulp_off)
    a, b = run_both("baseline", months=3)
    assert len(calls) == 3
    assert mismatches(a, b) == ["fingerprint: panel.cash"]


def test_engine_switch(monkeypatch):
    assert LiquidationModel("baseline", months=1).engine == "compiled"
    assert LiquidationModel("baseline", months=1, engine="numpy").engine == "numpy"
    monkeypatch.setenv("LIQSIM_ENGINE", "numpy")
    assert LiquidationModel("baseline", months=1).engine == "numpy"
    monkeypatch.setenv("LIQSIM_ENGINE", "fast")
    with pytest.raises(ConfigError, match="LIQSIM_ENGINE = 'fast': expected one of "
                                          "compiled, numpy"):
        LiquidationModel("baseline", months=1)
    with pytest.raises(ConfigError, match="engine = 'jax'"):
        LiquidationModel("baseline", months=1, engine="jax")
