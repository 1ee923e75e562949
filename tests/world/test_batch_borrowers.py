"""Phase 2 batched over a RunStack (sim.world.phases.borrowers.run_batch over
sim.world.kernels.borrowers.waterfall_batch): one kernel call a month for the stack's runs,
each run bit for bit the run alone (sim.qa.oracle.mismatches, and its generator's state: the
tenants' walk draws come from each run's own generator in its own order); runs that cannot
share the call run their own phase; a run whose own phase would raise fails alone."""

from __future__ import annotations

import pytest
from test_resident import STILL_REBOUND  # tests/world, on the path (pytest prepends it)

import sim.world.stack as stack_module
from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES, mismatches
from sim.world import phases
from sim.world.kernels import borrowers as kb
from sim.world.model import LiquidationModel
from sim.world.stack import RunStack

FAST = ("crypto_winter", "no_sites")
CASES = [pytest.param(*c, id=c[0], marks=() if c[0] in FAST else pytest.mark.slow)
         for c in (*ORACLE_CASES, ("no_sites", "crypto_winter", ("sites.enabled=false",)),
                   ("more_borrowers", "crypto_winter", ("borrowers.miner.count=9",)))]


def _alone(cfg) -> LiquidationModel:
    return LiquidationModel(cfg).run()


def _spied(monkeypatch) -> tuple[list, list]:
    """Counts the batched kernel's calls (the number of runs of each) and the runs' own
    phase 2 calls."""
    calls, alone_calls = [], []
    real_batch, real_run = kb.waterfall_batch, phases.borrowers.run
    monkeypatch.setattr(kb, "waterfall_batch", lambda runs, *a: (calls.append(len(runs)),
                                                                 real_batch(runs, *a)))
    monkeypatch.setattr(phases.borrowers, "run", lambda m: (alone_calls.append(m.env.t),
                                                            real_run(m)))
    return calls, alone_calls


def _same(cfg, m: LiquidationModel) -> None:
    a = _alone(cfg)
    assert mismatches(a, m) == []
    assert a.rng.bit_generator.state == m.rng.bit_generator.state


@pytest.mark.parametrize(("label", "scenario", "overrides"), CASES)
def test_phase_2_runs_batched_and_gives_each_run_its_bits(monkeypatch, label, scenario,
                                                          overrides):
    """Phase 2 is one batched call a month for all the runs, never a run's own phase, and
    each run is bit for bit the run alone."""
    months = 12 if label in FAST else None
    cfgs = [load_scenario(scenario, list(overrides), seed=s, months=months)
            for s in (1, 2, 3, 20251201)]
    calls, alone_calls = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert stack.errors == {} and stack.stale() == []
    assert calls == [4] * cfgs[0].months and alone_calls == []
    for cfg, m in zip(cfgs, stack.models, strict=True):
        _same(cfg, m)


def test_runs_of_different_book_lengths_share_the_call(monkeypatch):
    """Runs whose loan books differ in length (the seeds draw them) and whose numbers of
    borrowers differ: padded stacks, each run its own corner, one call a month."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=8) for s in (4, 5)]
    cfgs.append(load_scenario("crypto_winter", ["borrowers.miner.count=9"], seed=4, months=8))
    calls, alone_calls = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert len({s[0] for s in stack.shapes[("loans", "borrower")]}) == 3
    assert len({s[0] for s in stack.shapes[("borrowers", "cash")]}) == 2
    assert calls == [3] * 8 and alone_calls == []
    for cfg, m in zip(cfgs, stack.models, strict=True):
        _same(cfg, m)


def test_runs_that_cannot_share_phase_2_run_it_alone(monkeypatch):
    """The borrowers' cash left per run (not stacked): no batched call, each run its own
    phase 2, with its own bits."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=6) for s in (1, 2)]
    calls, alone_calls = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs],
                     exclude=(*STILL_REBOUND, ("borrowers", "cash")))
    stack.run()
    monkeypatch.undo()
    assert stack.kernel_inputs["borrowers"] is None
    assert calls == [] and alone_calls == [t for t in range(1, 7) for _ in range(2)]
    for cfg, m in zip(cfgs, stack.models, strict=True):
        _same(cfg, m)


def _uncovered_in_month_3(monkeypatch, victim: LiquidationModel) -> None:
    """The model ``victim``'s revolvers are not one block in month 3 only (phase 2 takes the
    numpy code then, which rebinds the loan book's arrays, and its kernel after)."""
    real = phases.environment.run
    block = victim.loans.revolver_block

    def environment(m):
        month = real(m)
        if m is victim:
            m.loans.revolver_block = None if m.env.t == 3 else block
        return month

    monkeypatch.setattr(phases.environment, "run", environment)
    # phase 1 run by run, so that the patched phase is the one that runs
    monkeypatch.delitem(stack_module.BATCHED, "environment", raising=False)


def test_a_run_the_kernel_does_not_cover_runs_its_own_phase(monkeypatch):
    """A run whose phase 2 takes the numpy code in one month (its revolvers not one block)
    runs its own phase that month and every later one (the stack's rows of the arrays the
    numpy code rebinds are no longer its), the others one call; all their bits."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=6) for s in (1, 2, 3)]
    models = [LiquidationModel(c) for c in cfgs]
    calls, alone_calls = _spied(monkeypatch)
    _uncovered_in_month_3(monkeypatch, models[1])
    stack = RunStack(models, exclude=STILL_REBOUND)
    stack.run()
    assert calls == [3, 3, 2, 2, 2, 2] and alone_calls == [3, 4, 5, 6]
    alone = LiquidationModel(cfgs[1])
    _uncovered_in_month_3(monkeypatch, alone)
    alone.run()
    monkeypatch.undo()
    assert mismatches(alone, models[1]) == []
    for r in (0, 2):
        _same(cfgs[r], models[r])


def _no_lead(m: LiquidationModel) -> None:
    """No borrower has a lead lender: its first revolver request raises in phase 2."""
    m.lead[:] = -1


def test_a_run_whose_phase_2_raises_fails_alone():
    """A run whose kernel stops where its own phase raises (a revolver request without a
    lead lender) fails with the same error in the same month, its state as the run alone
    leaves it; the other runs go on, bit for bit."""
    cfgs = [load_scenario("crypto_winter", list(ORACLE_CASES[-1][2]), seed=s, months=24)
            for s in (1, 2, 3)]
    models = [LiquidationModel(c) for c in cfgs]
    stack = RunStack(models, exclude=STILL_REBOUND)
    _no_lead(models[1])
    stack.run()
    alone = LiquidationModel(cfgs[1])
    _no_lead(alone)
    with pytest.raises(ValueError, match=kb.NO_LEAD) as err:
        alone.run()
    assert list(stack.errors) == [1] and type(stack.errors[1]) is ValueError
    assert str(stack.errors[1]) == str(err.value)
    assert 0 < models[1].env.t == alone.env.t < 24
    assert mismatches(alone, models[1]) == []
    assert models[1].flows == alone.flows
    for r in (0, 2):
        _same(cfgs[r], models[r])
