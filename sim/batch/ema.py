"""EMA Workbench: liqsim as a function model (``ema_workbench.Model(function=...)``).

:func:`model` runs one scenario with keyword parameters and returns the headline metrics as
a dict of floats, the form EMA Workbench calls a Python function model in. Parameter names are
config keys with ``__`` for ``.`` (EMA Workbench 3 wants Python identifiers:
``shocks__0__size``, ``policy__repo__enabled``; ``liqsim keys`` lists the keys) plus
``scenario``, ``seed`` and ``months``::

    from ema_workbench import (BooleanParameter, RealParameter, SequentialEvaluator,
                               perform_experiments)
    import sim.batch.ema

    m = sim.batch.ema.ema_model(scenario="crypto_winter", months=24,
                          uncertainties=[RealParameter("shocks__0__size", 0.0, 0.8)],
                          levers=[BooleanParameter("policy__repo__enabled")])
    experiments, outcomes = perform_experiments(m, scenarios=50, policies=2)

EMA Workbench is an optional dependency (``pip install -e '.[ema]'``): this module imports
it only in :func:`ema_model`. See docs/sweeps.md, "EMA Workbench".
"""

from __future__ import annotations

from typing import Any

from sim.core.config import resolve
from sim.world.metrics import summary
from sim.world.model import LiquidationModel

# the outcomes model() returns: summary.json's headline numbers (None becomes NaN)
OUTCOMES = ("credit_losses", "defaults", "lender_failures", "cascade_size",
            "max_peak_price_fall", "fire_sale_discount", "realised_lgd", "salvage_units",
            "repo_peak_lent")


def _plain(v: Any) -> Any:
    """numpy scalars (what EMA samples) as Python numbers and booleans."""
    return v.item() if hasattr(v, "item") and callable(v.item) else v


def model(scenario: str = "baseline", seed: int | None = None, months: int | None = None,
          **params: Any) -> dict[str, float]:
    """Run ``scenario`` with ``params`` (config keys -> values) and return :data:`OUTCOMES`.

    ``seed`` and ``months`` default to the scenario's. Raises
    :class:`~sim.core.config.ConfigError` (one line) for a bad key or value.
    """
    cfg = resolve(scenario, {k: _plain(v) for k, v in params.items()},
                  None if seed is None else int(_plain(seed)),
                  None if months is None else int(_plain(months)))
    s = summary(LiquidationModel(cfg).run())
    falls = s["peak_price_fall"].values()
    values = {**s, "max_peak_price_fall": max(falls) if falls else 0.0}
    return {k: float("nan") if values[k] is None else float(values[k]) for k in OUTCOMES}


def ema_model(name: str = "liqsim", scenario: str = "baseline", seed: int | None = None,
              months: int | None = None, uncertainties=(), levers=(),
              outcomes: tuple[str, ...] = OUTCOMES):
    """An ``ema_workbench.Model`` around :func:`model`: ``scenario``, ``seed`` and ``months``
    as constants, the given uncertainties and levers (EMA parameters named by config keys),
    and a ``ScalarOutcome`` per outcome."""
    from ema_workbench import Constant, Model, ScalarOutcome

    m = Model(name, function=model)
    m.constants = [Constant("scenario", scenario)] + [
        Constant(k, v) for k, v in (("seed", seed), ("months", months)) if v is not None]
    m.uncertainties = list(uncertainties)
    m.levers = list(levers)
    m.outcomes = [ScalarOutcome(o) for o in outcomes]
    return m
