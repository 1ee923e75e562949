"""Phase 1 (the environment) batched over a RunStack (issue 19's run axis): one call of
sim.world.kernels.environment.env_batch a month for the stack's runs, each run bit for bit
the run alone (sim.qa.oracle's comparison), with its own draws in its own order; runs that
cannot share the call run their own phase; a run whose shocks raise fails alone."""

from __future__ import annotations

import numpy as np
import pytest
from test_resident import STILL_REBOUND  # tests/world, on the path (pytest prepends it)

from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES, mismatches, model_state, same_bits
from sim.world import phases
from sim.world.kernels import environment as ke
from sim.world.model import LiquidationModel
from sim.world.stack import BATCHED, RunStack

# the oracle's cases, and runs of every switch phase 1 reads that no oracle case has
LEAD = ("environment.lead_time_path=[{generation='H100', points=[[0, 6.0], [4, 2.5], [12, 0.0]]},"
        " {generation='Rubin', points=[[8, 9.0], [20, 1.0]]}]",)
PATHS = ("environment.rent_path=[{generation='H100', points=[[0, 2.0], [10, 1.2], [20, 1.5]],"
         " scope='generation'}, {generation='A100', points=[[0, 1.2], [2, 1.1]]}]",)
SWITCHES = (
    ("asic_2022", "asic_2022", ()),  # hashprice-linked rigs, BTC without a random walk
    ("next_gen_launch", "next_gen_launch", ()),  # launch steps
    ("gpu_backtest_2023", "gpu_backtest_2023", ()),  # a market rent path, a lead time
    ("lead", "baseline", LEAD),
    ("paths", "baseline", PATHS),
    ("lead_no_cap", "baseline", (*LEAD, "buyers.value_cap=false")),
    ("no_cap", "crypto_winter", ("buyers.value_cap=false",)),
    ("life", "crypto_winter", ("buyers.retirement='life'",)),
    ("no_deflation", "crypto_winter", ("environment.rent_deflation=0.0",)),
    ("no_tier2", "crypto_winter", ("buyers.types.tier2.count=0",)),
    ("shocks", "crypto_winter", ('shocks+={month=4, kind="funding", size=0.3}',
                                 'shocks+={month=5, kind="other_loans", size=0.2}',
                                 'shocks+={month=6, kind="buyer_capital", size=0.5}')),
)
FAST = ("crypto_winter", "guarantor_exit+core_periphery")
CASES = [pytest.param(*c, id=c[0], marks=() if c[0] in FAST else pytest.mark.slow)
         for c in (*ORACLE_CASES, *SWITCHES)]
SEEDS = (1, 2, 20251201)


def _alone(cfg) -> LiquidationModel:
    return LiquidationModel(cfg).run()


def _spy(monkeypatch) -> tuple[list, list]:
    """Count env_batch's calls (with how many runs) and the runs' own phase 1 calls."""
    calls, alone_calls = [], []
    real_batch, real_run = ke.env_batch, phases.environment.run
    monkeypatch.setattr(ke, "env_batch", lambda runs, *a: (calls.append(len(runs)),
                                                           real_batch(runs, *a)))
    monkeypatch.setattr(phases.environment, "run", lambda m: (alone_calls.append(1),
                                                              real_run(m))[1])
    return calls, alone_calls


@pytest.mark.parametrize(("label", "scenario", "overrides"), CASES)
def test_phase_1_batched_is_each_run_alone(monkeypatch, label, scenario, overrides):
    """Every month one env_batch call for all the live runs, no run's own phase 1, and each
    run bit for bit the run alone (the fast cases: 12 months)."""
    months = {"months": 12} if label in FAST else {}
    cfgs = [load_scenario(scenario, list(overrides), seed=s, **months) for s in SEEDS]
    calls, alone_calls = _spy(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert stack.errors == {} and stack.stale() == []
    horizon = cfgs[0].months
    assert calls == [len(cfgs)] * horizon and alone_calls == []
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_the_month_state_holds_each_runs_own_buffer(monkeypatch):
    """The MonthState a batched month hands on is the run's own: its last month's value in
    best use is the buffer the run's phase keeps (m.kernel_inputs["environment"], now a row of
    the batch's stack), holding V_{t-1}; the kernel's shipping and age are the environment's."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=3) for s in (1, 2)]
    models = [LiquidationModel(c) for c in cfgs]
    stack = RunStack(models, exclude=STILL_REBOUND)
    seen = []
    real = phases.environment.run_batch

    def batch(st, runs, contexts):
        before = [models[r].fundamental.copy() for r in runs]
        real(st, runs, contexts)
        seen.append([(c.month, c.month.prev_fundamental.copy(), b)
                     for c, b in zip(contexts, before, strict=True)])

    monkeypatch.setitem(BATCHED, "environment", batch)
    stack.run()
    prev = stack.kernel_inputs["environment"]["prev_out"]
    assert len(seen) == 3
    for month in seen:
        for r, (ms, held, before) in enumerate(month):
            assert ms.prev_fundamental is models[r].kernel_inputs["environment"][5]
            assert ms.prev_fundamental.base is prev
            np.testing.assert_array_equal(held, before)
    for m in models:
        assert np.array_equal(m.env.shipping, m.env.launch <= m.env.t)
        assert np.array_equal(m.env.age, m.env.t - m.env.launch)


def test_runs_that_cannot_share_phase_1_run_it_alone(monkeypatch):
    """Runs whose phase 1 arrays differ in shape (one more broker: the buyers' expectations
    have another row), or runs the kernel does not cover (no buyers), share a stack but not
    the batched call: each runs its own phase 1, with its own bits."""
    no_buyers = [f"buyers.types.{t}.count=0" for t in ("hyperscaler", "tier2", "broker")]
    for first, second in (([], ["buyers.types.broker.count=9"]), (no_buyers, no_buyers)):
        cfgs = [load_scenario("crypto_winter", first, seed=1, months=6),
                load_scenario("crypto_winter", second, seed=2, months=6)]
        calls, alone_calls = _spy(monkeypatch)
        stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
        stack.run()
        monkeypatch.undo()
        assert stack.kernel_inputs["environment"] is None and calls == []
        assert len(alone_calls) == 2 * 6 and stack.errors == {}
        for cfg, m in zip(cfgs, stack.models, strict=True):
            assert mismatches(_alone(cfg), m) == []


def _shock_fails_in_month_4(monkeypatch, victim) -> None:
    """A funding shock's clearing raises in month 4 for the model ``victim`` only."""
    real = phases.funding.run_on

    def run_on(m, *a, **k):
        if m is victim and m.env.t == 4:
            raise RuntimeError("boom")
        return real(m, *a, **k)

    monkeypatch.setattr(phases.funding, "run_on", run_on)


def test_a_run_whose_shock_raises_fails_alone(monkeypatch):
    """A run whose month-4 funding shock raises in the batched phase 1 stops with its error,
    at the month the run alone stops at; the other runs (before and after it in the batch)
    go on, bit for bit the runs alone, and the batched call ran every month."""
    over = ['shocks+={month=4, kind="funding", size=0.3}']
    cfgs = [load_scenario("crypto_winter", over, seed=s, months=8) for s in (1, 2, 3)]
    models = [LiquidationModel(c) for c in cfgs]
    stack = RunStack(models, exclude=STILL_REBOUND)
    _shock_fails_in_month_4(monkeypatch, models[1])
    calls = []
    real_batch = ke.env_batch
    monkeypatch.setattr(ke, "env_batch", lambda runs, *a: (calls.append(len(runs)),
                                                           real_batch(runs, *a)))
    stack.run()
    assert list(stack.errors) == [1] and str(stack.errors[1]) == "boom"
    assert calls == [3] * 4 + [2] * 4
    alone = LiquidationModel(cfgs[1])
    _shock_fails_in_month_4(monkeypatch, alone)
    with pytest.raises(RuntimeError, match="boom"):
        alone.run()
    assert models[1].env.t == alone.env.t == 4
    mine, its = model_state(models[1]), model_state(alone)
    assert mine.keys() == its.keys()
    assert [k for k in its if not same_bits(its[k], mine[k])] == []
    monkeypatch.undo()
    for r in (0, 2):
        assert mismatches(_alone(cfgs[r]), models[r]) == []


def test_the_lead_times_view_the_stacked_buffer():
    """The environment's lead times (``_lead``, a read-only whole view of ``_lead_buf``, which
    the stack moves into its rows) view the run's row, so that the month's lead times the
    environment writes are those its readers see: runs with lead times are bit for bit alone,
    also unbatched."""
    cfgs = [load_scenario("baseline", list(LEAD), seed=s, months=6) for s in (1, 2)]
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND, batched=False)
    for r, m in enumerate(stack.models):
        assert m.env._lead.base is stack.stacks[("env", "_lead_buf")]
        assert not m.env._lead.flags.writeable
        assert m.env._lead_buf is stack.view(("env", "_lead_buf"), r)
    stack.run()
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []
