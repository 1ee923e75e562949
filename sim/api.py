"""``sim.run``: one scenario, run and tabulated, for Python users (see ``sim/__init__.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.core.config import Scenario, resolve
from sim.world import metrics
from sim.world.model import LiquidationModel


@dataclass(frozen=True)
class RunResult:
    """What one run produced: the tables ``liqsim run`` writes, in memory.

    * ``summary``: headline metrics (``summary.json``);
    * ``series``: one row per month, 0 = t0 (``series.parquet``);
    * ``events``: the event log (``events.parquet``);
    * ``panel``: one row per agent per month (``panel.parquet``);
    * ``config``: the resolved :class:`~sim.core.config.Scenario` (``config.json``);
    * ``model``: the finished :class:`~sim.world.model.LiquidationModel`.
    """

    summary: dict
    series: pd.DataFrame
    events: pd.DataFrame
    panel: pd.DataFrame
    config: Scenario
    model: LiquidationModel


def run(scenario: Scenario | str | Path | None = None, *, seed: int | None = None,
        months: int | None = None,
        overrides: Mapping[str, Any] | Iterable[str] | None = None) -> RunResult:
    """Run one scenario and return its summary, series, events and panel.

    ``scenario``: a shipped name (``"crypto_winter"``), a TOML path, a
    :class:`~sim.core.config.Scenario`, or None for the baseline; ``seed`` and ``months`` override
    the scenario's; ``overrides`` maps config keys to typed values (``{"policy.repo.enabled":
    True, "lenders.count": 30}``) or is a list of ``"key=value"`` strings read as
    ``liqsim run --set`` reads them. Raises :class:`~sim.core.config.ConfigError` (one line) for
    bad input. Nothing is written to disk (``liqsim run`` does that).

    >>> res = run("crypto_winter", seed=7, months=24, overrides={"policy.repo.enabled": True})
    >>> res.summary["seed"], len(res.series)
    (7, 25)
    """
    cfg = resolve(scenario, overrides, seed, months)
    model = LiquidationModel(cfg).run()
    return RunResult(summary=metrics.summary(model), series=metrics.series(model),
                     events=metrics.events(model), panel=metrics.panel(model), config=cfg,
                     model=model)
