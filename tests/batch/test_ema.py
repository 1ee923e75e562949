"""sim.batch.ema: the EMA Workbench function model, and a small EMA experiment when ema_workbench is
installed (``pip install -e '.[ema]'``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sim
from sim.batch import ema
from sim.core.config import ConfigError


def test_function_model_returns_the_headline_metrics():
    out = ema.model(scenario="crypto_winter", seed=7, months=6,
                    **{"policy.repo.enabled": np.True_, "shocks.0.size": np.float64(0.4)})
    ref = sim.run("crypto_winter", seed=7, months=6,
                  overrides={"policy.repo.enabled": True, "shocks.0.size": 0.4}).summary
    assert set(out) == set(ema.OUTCOMES)
    assert out["credit_losses"] == ref["credit_losses"]
    assert out["defaults"] == ref["defaults"]
    assert out["max_peak_price_fall"] == max(ref["peak_price_fall"].values())
    assert all(isinstance(v, float) for v in out.values())
    with pytest.raises(ConfigError, match="unknown key 'shocks.0.sise'"):
        ema.model(scenario="crypto_winter", months=1, **{"shocks.0.sise": 0.1})


def test_a_small_ema_experiment():
    pytest.importorskip("ema_workbench")
    from ema_workbench import (
        BooleanParameter,
        RealParameter,
        SequentialEvaluator,
        perform_experiments,
    )

    m = ema.ema_model(scenario="crypto_winter", seed=3, months=6,
                      uncertainties=[RealParameter("shocks__0__size", 0.0, 0.8)],
                      levers=[BooleanParameter("policy__repo__enabled")],
                      outcomes=("credit_losses", "defaults"))
    experiments, outcomes = perform_experiments(m, scenarios=2, policies=2,
                                                evaluator=SequentialEvaluator(m))
    assert len(experiments) == 4 and outcomes["credit_losses"].shape == (4,)
    assert sorted(experiments["policy__repo__enabled"].tolist()) == [False, False, True, True]
    for i, row in experiments.iterrows():
        ref = sim.run("crypto_winter", seed=3, months=6, overrides={
            "shocks.0.size": float(row["shocks__0__size"]),
            "policy.repo.enabled": bool(row["policy__repo__enabled"])}).summary
        assert outcomes["credit_losses"][i] == ref["credit_losses"]
        assert outcomes["defaults"][i] == ref["defaults"]
    assert not any(math.isnan(x) for x in outcomes["credit_losses"])
