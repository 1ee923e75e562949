"""R runs' state in stacked arrays (sim.world.stack.RunStack): every run of a stack is bit for
bit the run alone (sim.qa.oracle.mismatches: records, panel, events, summary, every array and
number of the model and its books), its arrays stay views of the stacks' rows for the whole
run, and a failing run stops alone."""

from __future__ import annotations

import numpy as np
import pytest
from test_resident import STILL_REBOUND  # tests/world, on the path (pytest prepends it)

from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES, mismatches
from sim.world import phases
from sim.world import stack as stack_module
from sim.world.kernels import prices as kprices
from sim.world.model import LiquidationModel
from sim.world.stack import RunStack, arrays

FAST = ("baseline", "crypto_winter", "repo_defaults")
CASES = [pytest.param(*c, id=c[0], marks=() if c[0] in FAST else pytest.mark.slow)
         for c in ORACLE_CASES]


def _alone(cfg) -> LiquidationModel:
    return LiquidationModel(cfg).run()


def _stacked_only(cfgs) -> RunStack:
    return RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)


def _stacked(cfgs) -> RunStack:
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    return stack


@pytest.mark.parametrize(("label", "scenario", "overrides"), CASES)
def test_each_run_of_a_stack_is_the_run_alone(label, scenario, overrides):
    cfgs = [load_scenario(scenario, list(overrides), seed=s) for s in (1, 2, 20251201)]
    stack = _stacked(cfgs)
    assert stack.errors == {}
    assert stack.stale() == []
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_points_of_a_sobol_design_share_a_stack():
    """Runs of one shape at different parameter points (four of the flagship Sobol spec's
    axes), with loan books of different lengths: padded stacks, each run its own corner."""
    points = [("shocks.0.size=0.45", "shocks.1.size=0.12", "environment.rent_deflation=0.11",
               "buyers.adapt=0.05"),
              ("shocks.0.size=0.78", "shocks.1.size=0.28", "environment.rent_deflation=0.24",
               "buyers.adapt=0.35"),
              ("shocks.0.size=0.6", "shocks.1.size=0.2", "environment.rent_deflation=0.17",
               "buyers.adapt=0.2")]
    cfgs = [load_scenario("crypto_winter", list(p), seed=s) for p in points for s in (4, 5)]
    stack = _stacked(cfgs)
    lengths = {shape[0] for shape in stack.shapes[("loans", "borrower")]}
    assert len(lengths) > 1  # the seeds draw loan books of different lengths
    assert stack.stale() == []
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_the_stacks_hold_the_runs_state():
    """Row r of a stack is run r's array, written in place by its months: the corner of the row
    equals the model's array at the end, the padding is untouched (zeros), and the model's
    array is a view of the stack, not a copy."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=12) for s in (1, 2)]
    stack = _stacked(cfgs)
    key = ("borrowers", "cash")
    assert key in stack.stacks
    for r, m in enumerate(stack.models):
        a = arrays(m)[key]
        assert a.base is stack.stacks[key]
        assert np.array_equal(stack.stacks[key][r, :a.shape[0]], a)
    loans = stack.stacks[("loans", "borrower")]
    for r, shape in enumerate(stack.shapes[("loans", "borrower")]):
        assert not loans[r, shape[0]:].any()
    # a run that had moved on from its stacked row is seen
    m = stack.models[1]
    m.borrowers.cash = m.borrowers.cash.copy()
    assert stack.stale() == [(1, "borrowers.cash")]


def test_one_array_under_two_names_stays_one():
    """An array held under two names (the buyers' capacity cost and the environment's new-unit
    price are one object) is stacked once and both names view the same row."""
    stack = RunStack([LiquidationModel("crypto_winter", seed=s, months=2) for s in (1, 2)],
                     exclude=STILL_REBOUND)
    assert stack.aliases == {("env", "new_unit_price"): ("buyers", "_cap")}
    for m in stack.models:
        assert m.env.new_unit_price is m.buyers._cap


def _fails_in_month_4(monkeypatch, victim) -> None:
    """Phase 3 raises in month 4 for the model ``victim`` only (phase 3 run by each run's
    own phase, not batched: a run's own phase is where a stack catches a run's error)."""
    monkeypatch.delitem(stack_module.BATCHED, "lenders", raising=False)
    real = phases.lenders.run

    def lenders(m, month):
        if m is victim and m.env.t == 4:
            raise RuntimeError("boom")
        real(m, month)

    monkeypatch.setattr(phases.lenders, "run", lenders)


def _mesa(m: LiquidationModel) -> tuple:
    gen = m._default_schedule
    return (m.steps, m.time, gen._execution_count, [e.time for e in m._event_list._events])


def test_a_failing_run_stops_alone(monkeypatch):
    """A run whose month raises (in a phase, mid-month) is stopped with its error and Mesa's
    state as a lone run's ``model.run()`` leaves it; the other runs are unchanged."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=10) for s in (1, 2, 3)]
    models = [LiquidationModel(c) for c in cfgs]
    stack = RunStack(models, exclude=STILL_REBOUND)
    _fails_in_month_4(monkeypatch, models[1])
    stack.run()
    assert list(stack.errors) == [1] and str(stack.errors[1]) == "boom"
    assert models[1].env.t == 4 and models[0].env.t == models[2].env.t == 10
    alone = LiquidationModel(cfgs[1])
    _fails_in_month_4(monkeypatch, alone)
    with pytest.raises(RuntimeError, match="boom"):
        alone.run()
    assert _mesa(models[1]) == _mesa(alone)
    monkeypatch.undo()
    for r in (0, 2):
        assert mismatches(_alone(cfgs[r]), models[r]) == []
        assert _mesa(models[r]) == _mesa(_alone(cfgs[r]))


def test_a_run_with_its_own_schedule_is_stepped_alone(monkeypatch):
    """A run whose step is replaced (not Mesa's plain step schedule) goes through
    ``model.step()``, which the stack does not bypass; a failure there is its error too."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=6) for s in (1, 2)]
    models = [LiquidationModel(c) for c in cfgs]
    stack = RunStack(models, exclude=STILL_REBOUND)
    calls = []
    real = models[0].step

    def counted():
        calls.append(models[0].env.t)
        real()

    monkeypatch.setattr(models[0], "step", counted)
    stack.run()
    assert calls == [0, 1, 2, 3, 4, 5] and stack.errors == {}
    assert mismatches(_alone(cfgs[1]), models[1]) == []


def test_runs_of_another_shape_are_refused():
    a = LiquidationModel("crypto_winter", seed=1, months=3)
    with pytest.raises(ValueError, match="horizon"):
        RunStack([a, LiquidationModel("crypto_winter", seed=1, months=4)])
    with pytest.raises(ValueError, match="engine"):
        RunStack([a, LiquidationModel("crypto_winter", seed=1, months=3, engine="numpy")])
    with pytest.raises(ValueError, match="at least one"):
        RunStack([])


def test_phase_7_runs_batched_and_gives_each_run_its_bits(monkeypatch):
    """Phase 7 runs as one batched call a month for the stack's runs (sim.world.phases.prices.
    run_batch over sim.world.kernels.prices.prices_batch), never through a run's own phase,
    and each run is bit for bit the run alone; the same stack unbatched gives the same bits."""
    calls, alone_calls = [], []
    real_batch, real_run = kprices.prices_batch, phases.prices.run
    monkeypatch.setattr(kprices, "prices_batch", lambda runs, *a: (calls.append(len(runs)),
                                                                   real_batch(runs, *a)))
    monkeypatch.setattr(phases.prices, "run", lambda m, month: (alone_calls.append(1),
                                                               real_run(m, month)))
    cfgs = [load_scenario("crypto_winter", seed=s, months=12) for s in (1, 2, 3, 4)]
    stack = _stacked(cfgs)
    assert calls == [4] * 12 and alone_calls == []
    monkeypatch.undo()
    plain = RunStack([LiquidationModel(c) for c in cfgs], batched=False).run()
    for cfg, m, p in zip(cfgs, stack.models, plain, strict=True):
        assert mismatches(_alone(cfg), m) == []
        assert mismatches(p, m) == []


def test_runs_that_cannot_share_phase_7_run_it_alone(monkeypatch):
    """Runs whose phase 7 arrays differ in shape (one more broker: every buyer array is one
    longer) share a stack (padded) but not the batched call: each runs its own phase 7, with
    its own bits."""
    calls = []
    real_batch = kprices.prices_batch
    monkeypatch.setattr(kprices, "prices_batch", lambda *a: (calls.append(1), real_batch(*a)))
    cfgs = [load_scenario("crypto_winter", seed=1, months=6),
            load_scenario("crypto_winter", ["buyers.types.broker.count=9"], seed=1, months=6)]
    stack = _stacked(cfgs)
    assert stack.kernel_inputs["prices"] is None and calls == []
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_a_detached_run_runs_its_own_phases(monkeypatch):
    """After RunStack.detach(r) run r is in no batched call (its phases' numpy code may have
    rebound arrays the stacks hold); the others still share them; all their bits."""
    sizes = []
    real = kprices.prices_batch
    monkeypatch.setattr(kprices, "prices_batch", lambda runs, *a: (sizes.append(list(runs)),
                                                                   real(runs, *a)))
    cfgs = [load_scenario("crypto_winter", seed=s, months=6) for s in (1, 2, 3)]
    stack = _stacked_only(cfgs)
    stack.step()
    stack.detach(1)
    stack.run()
    assert sizes == [[0, 1, 2]] + [[0, 2]] * 5
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []
