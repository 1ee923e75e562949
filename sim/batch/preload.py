"""The sweep's fork server imports this module (:func:`sim.batch.sweep._mp_context`'s preload):
importing it runs one crypto_winter model, and a stack of two (the batched kernels a sweep's
stacked runs call, :func:`sim.batch.sweep.run_tasks`), so that numba loads the phase kernels
(:mod:`sim.world.kernels`) from its disk cache once, in the fork server, and every pool worker
forked from it starts with them loaded. It also reads the liqsim version and the numeric
platform that every run's result carries (:func:`sim.core.version.liqsim_version`, cached per
process, asks git through setuptools-scm: ~0.1 s of CPU and ~0.3 s of wall time at a worker's
first run; :func:`sim.core.numerics.platform_info`).

A worker used to load them at its first run: about 0.6 s of CPU (numba's import and a dozen
kernels read from the cache), some 20 runs' worth, paid again by every worker of every pool
pass while the sweep's clock runs. The fork server imports this while the coordinator reads the
spec and probes its base, before any run. A full crypto_winter run calls every kernel (the
market and defaults kernels run only in months with sales or defaults) with the argument types
the shipped scenarios share; two months of it with each repo desk (secured and legacy: the
policy sweeps' other arm) load phase 5's desk kernels. A kernel a base needs with other types
is loaded by the worker that first calls it, as before.

Nothing is warmed on the numpy engine (``LIQSIM_ENGINE=numpy``: the workers never call a
kernel), and any failure is ignored: the workers then load the kernels themselves.
"""

from __future__ import annotations

from sim.core import numerics
from sim.core.config import load_scenario
from sim.core.version import liqsim_version
from sim.world.model import LiquidationModel
from sim.world.stack import RunStack

WARM_SCENARIO = "crypto_winter"
# the repo desk's designs, run WARM_DESK_MONTHS months each: phase 5 has a kernel per design
WARM_DESKS = (("policy.repo.enabled=true",),
              ("policy.repo.enabled=true", "policy.repo.design='legacy'"))
WARM_DESK_MONTHS = 2


def warm() -> bool:
    """Run :data:`WARM_SCENARIO` to its end on the compiled engine, alone and as a stack of
    two runs (sweeps step a chunk's runs together, :func:`sim.batch.sweep.run_tasks`: the
    batched kernels), then a few months of it with each repo desk (:data:`WARM_DESKS`); True
    if they ran."""
    try:
        model = LiquidationModel(WARM_SCENARIO)
        if model.engine != "compiled":
            return False
        model.run()
        RunStack([LiquidationModel(WARM_SCENARIO, seed=s) for s in (1, 2)]).run()
        for over in WARM_DESKS:
            LiquidationModel(load_scenario(WARM_SCENARIO, list(over),
                                           months=WARM_DESK_MONTHS)).run()
    except Exception:  # noqa: BLE001 - a failed warm-up costs the workers time, nothing else
        return False
    return True


WARMED = warm()
VERSION = liqsim_version()  # cached: the workers inherit it
PLATFORM = numerics.platform_info()
