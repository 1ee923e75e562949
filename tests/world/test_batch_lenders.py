"""Phase 3 batched over a RunStack (sim.world.phases.lenders.run_batch over
sim.world.kernels.lenders.lenders_batch): one kernel call a month for the stack's runs, each
run bit for bit the run alone (sim.qa.oracle.mismatches: records, panel, events in order,
flows, every array and number of the model and its books); runs that cannot share the call
run their own phase."""

from __future__ import annotations

import pytest
from test_resident import STILL_REBOUND  # tests/world, on the path (pytest prepends it)

from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES, mismatches
from sim.world import phases
from sim.world.kernels import lenders as klenders
from sim.world.model import LiquidationModel
from sim.world.stack import RunStack

# without guaranteed advance rates: no covenant scaling (borrowers.cov_scale is None)
NO_SCALING = ("borrowers.miner.guarantee_ltv=0", "borrowers.neocloud.guarantee_ltv=0")
FAST = ("crypto_winter",)
CASES = [pytest.param(*c, id=c[0], marks=() if c[0] in FAST else pytest.mark.slow)
         for c in (*ORACLE_CASES, ("no_scaling", "crypto_winter", NO_SCALING))]


def _alone(cfg) -> LiquidationModel:
    return LiquidationModel(cfg).run()


def _spied(monkeypatch) -> tuple[list[int], list[int]]:
    """Spies on the batched kernel (the number of runs of each call) and on a run's own
    compiled phase 3 (one entry a call)."""
    calls: list[int] = []
    alone: list[int] = []
    real_batch, real_own = klenders.lenders_batch, phases.lenders._run_compiled
    monkeypatch.setattr(klenders, "lenders_batch",
                        lambda runs, *a: (calls.append(len(runs)), real_batch(runs, *a)))
    monkeypatch.setattr(phases.lenders, "_run_compiled",
                        lambda m, month: (alone.append(1), real_own(m, month)))
    return calls, alone


@pytest.mark.parametrize(("label", "scenario", "overrides"), CASES)
def test_phase_3_runs_batched_and_each_run_is_the_run_alone(monkeypatch, label, scenario,
                                                             overrides):
    cfgs = [load_scenario(scenario, list(overrides), seed=s) for s in (1, 2, 20251201)]
    calls, alone = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert stack.errors == {} and stack.stale() == []
    assert stack.kernel_inputs["lenders"] is not None
    months = cfgs[0].months
    assert calls == [3] * months and alone == []
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_batched_months_log_events_and_flows_in_the_runs_order(monkeypatch):
    """A deep fall (mass_default's shocks) at three seeds of padded loan books: the batched
    months open margin calls, sell free BTC and refuse rollovers, and each run logs its own
    events (margin_call before refinancing_refused, as its own phase) and flows."""
    over = dict((c[0], c[2]) for c in ORACLE_CASES)["mass_default"]
    cfgs = [load_scenario("crypto_winter", list(over), seed=s, months=24) for s in (3, 4, 5)]
    calls, alone = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert calls == [3] * 24 and alone == []
    assert len(set(stack.shapes[("loans", "borrower")])) > 1  # loan books of other lengths
    names = {e[1] for m in stack.models for e in m.events if e[0] >= 1}
    assert {"margin_call", "refinancing_refused"} <= names
    assert any(m.flows["btc_sales"] > 0 for m in stack.models)
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_month_hand_overs_are_rows_of_the_batch_arrays(monkeypatch):
    """MonthState's marks, collateral and debt of every run are its rows of the batch's
    arrays (hand_over_arrays' per-run arrays replaced by them, so phase 4 reads and writes
    the same rows), filled by the batched kernel."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=4) for s in (1, 2)]
    seen = []
    real_defaults = phases.defaults.run
    monkeypatch.setattr(phases.defaults, "run",
                        lambda m, month: (seen.append((m, month.marks, month.coll)),
                                          real_defaults(m, month)))
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    b = stack.kernel_inputs["lenders"]
    assert len(seen) == 8
    for m, marks, coll in seen:
        r = stack.models.index(m)
        assert marks.base is b["marks"] and coll.base is b["coll"]
        assert marks is b["rows"][r][0] and coll is b["rows"][r][1]
        assert phases.lenders.hand_over_arrays(m)[2] is b["rows"][r][2]
    monkeypatch.undo()
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


@pytest.mark.parametrize("overrides", [
    pytest.param((NO_SCALING, ()), id="covenant_scaling_in_one"),
    pytest.param(((), ("borrowers.miner.count=121",)), id="one_more_miner")])
def test_runs_that_cannot_share_phase_3_run_it_alone(monkeypatch, overrides):
    """Runs without and with covenant scaling (borrowers.cov_scale None in the first, so it
    is not stacked), or of different borrower counts (padded stacks), share a stack but not
    phase 3's call: each runs its own phase, with its own bits."""
    cfgs = [load_scenario("crypto_winter", list(o), seed=1, months=6) for o in overrides]
    calls, alone = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert stack.errors == {}
    assert stack.kernel_inputs["lenders"] is None
    assert calls == [] and alone == [1] * 12
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []
