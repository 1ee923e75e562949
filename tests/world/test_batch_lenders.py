"""Phases 3 and 4 batched over a RunStack: phase 3 (sim.world.phases.lenders.run_batch over
sim.world.kernels.lenders.lenders_batch) one kernel call a month for the stack's runs; phase 4
(sim.world.phases.defaults.run_batch) the common month's test of every run by one call of
sim.world.kernels.defaults.any_trigger_batch, its rare months (some borrower triggered) per
run. Each run is bit for bit the run alone (sim.qa.oracle.mismatches: records, panel, events
in order, flows, every array and number of the model and its books); runs that cannot share
a call run their own phase."""

from __future__ import annotations

import pytest
from test_resident import STILL_REBOUND  # tests/world, on the path (pytest prepends it)

from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES, mismatches
from sim.world import phases
from sim.world.kernels import defaults as kdefaults
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


def _spied(monkeypatch) -> dict[str, list]:
    """Spies on the batched kernels (the number of runs of each call: ``lenders``,
    ``trigger``), on a run's own compiled phase 3 (``own_lenders``: one entry a call), on
    phase 4's own common-month test (``own_trigger``) and on phase 4's triggered month of
    one run (``triggered``: the run's model and month)."""
    seen: dict[str, list] = {k: [] for k in ("lenders", "trigger", "own_lenders",
                                             "own_trigger", "triggered")}
    real = (klenders.lenders_batch, kdefaults.any_trigger_batch, phases.lenders._run_compiled,
            kdefaults.any_trigger, phases.defaults._run_triggered)
    monkeypatch.setattr(klenders, "lenders_batch",
                        lambda runs, *a: (seen["lenders"].append(len(runs)),
                                          real[0](runs, *a)))
    monkeypatch.setattr(kdefaults, "any_trigger_batch",
                        lambda runs, *a: (seen["trigger"].append(len(runs)),
                                          real[1](runs, *a)))
    monkeypatch.setattr(phases.lenders, "_run_compiled",
                        lambda m, month: (seen["own_lenders"].append(1), real[2](m, month)))
    monkeypatch.setattr(kdefaults, "any_trigger",
                        lambda *a: (seen["own_trigger"].append(1), real[3](*a))[1])
    monkeypatch.setattr(phases.defaults, "_run_triggered",
                        lambda m, month: (seen["triggered"].append((m, month.t)),
                                          real[4](m, month)))
    return seen


def _triggered_alone(cfg, monkeypatch) -> tuple[LiquidationModel, list[int]]:
    """The run alone, and the months its phase 4 found some borrower triggered."""
    months: list[int] = []
    real = phases.defaults._run_triggered
    monkeypatch.setattr(phases.defaults, "_run_triggered",
                        lambda m, month: (months.append(month.t), real(m, month)))
    m = _alone(cfg)
    monkeypatch.undo()
    return m, months


@pytest.mark.parametrize(("label", "scenario", "overrides"), CASES)
def test_phase_3_runs_batched_and_each_run_is_the_run_alone(monkeypatch, label, scenario,
                                                             overrides):
    cfgs = [load_scenario(scenario, list(overrides), seed=s) for s in (1, 2, 20251201)]
    seen = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert stack.errors == {} and stack.stale() == []
    assert stack.kernel_inputs["lenders"] is not None
    assert stack.kernel_inputs["defaults"] is not None
    months = cfgs[0].months
    assert seen["lenders"] == [3] * months and seen["own_lenders"] == []
    assert seen["trigger"] == [3] * months and seen["own_trigger"] == []
    for cfg, m in zip(cfgs, stack.models, strict=True):
        alone, triggered = _triggered_alone(cfg, monkeypatch)
        assert [t for mm, t in seen["triggered"] if mm is m] == triggered
        assert mismatches(alone, m) == []


def test_batched_months_log_events_and_flows_in_the_runs_order(monkeypatch):
    """A deep fall (mass_default's shocks) at three seeds of padded loan books: the batched
    months open margin calls, sell free BTC and refuse rollovers, and each run logs its own
    events (margin_call before refinancing_refused, as its own phase) and flows; phase 4's
    rare months (some borrower triggered) run per run, each in the months and with the
    defaults of the run alone."""
    over = dict((c[0], c[2]) for c in ORACLE_CASES)["mass_default"]
    cfgs = [load_scenario("crypto_winter", list(over), seed=s, months=24) for s in (3, 4, 5)]
    seen = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert seen["lenders"] == [3] * 24 and seen["own_lenders"] == []
    assert seen["trigger"] == [3] * 24 and seen["own_trigger"] == []
    assert len(set(stack.shapes[("loans", "borrower")])) > 1  # loan books of other lengths
    names = {e[1] for m in stack.models for e in m.events if e[0] >= 1}
    assert {"margin_call", "refinancing_refused", "default_covenant", "repossession"} <= names
    assert any(m.flows["btc_sales"] > 0 for m in stack.models)
    by_month: dict[int, int] = {}
    for _, t in seen["triggered"]:
        by_month[t] = by_month.get(t, 0) + 1
    assert 0 < len(by_month) < 24 and min(by_month.values()) < 3  # rare, and not in every run
    for cfg, m in zip(cfgs, stack.models, strict=True):
        alone, triggered = _triggered_alone(cfg, monkeypatch)
        assert [t for mm, t in seen["triggered"] if mm is m] == triggered
        assert mismatches(alone, m) == []


def test_month_hand_overs_are_rows_of_the_batch_arrays(monkeypatch):
    """MonthState's marks, collateral and debt of every run are its rows of the batch's
    arrays (hand_over_arrays' per-run arrays replaced by them, so phase 4 reads and writes
    the same rows), filled by the batched kernel: phase 5 finds them there."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=4) for s in (1, 2)]
    seen = []
    real_orders = phases.orders.run
    monkeypatch.setattr(phases.orders, "run",
                        lambda m, month: (seen.append((m, month.marks, month.coll)),
                                          real_orders(m, month))[1])
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


@pytest.mark.parametrize(("overrides", "defaults_batched"), [
    pytest.param((NO_SCALING, ()), True, id="covenant_scaling_in_one"),
    pytest.param(((), ("borrowers.miner.count=121",)), False, id="one_more_miner")])
def test_runs_that_cannot_share_a_call_run_their_own_phase(monkeypatch, overrides,
                                                           defaults_batched):
    """Runs without and with covenant scaling (borrowers.cov_scale None in the first, so it
    is not stacked) share a stack but not phase 3's call (phase 4's, yes); runs of different
    borrower counts (padded stacks) share neither: each runs its own phase, with its own
    bits."""
    cfgs = [load_scenario("crypto_winter", list(o), seed=1, months=6) for o in overrides]
    seen = _spied(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert stack.errors == {}
    assert stack.kernel_inputs["lenders"] is None
    assert seen["lenders"] == [] and seen["own_lenders"] == [1] * 12
    assert (stack.kernel_inputs["defaults"] is not None) is defaults_batched
    if defaults_batched:
        assert seen["trigger"] == [2] * 6 and seen["own_trigger"] == []
    else:
        assert seen["trigger"] == [] and seen["own_trigger"] == [1] * 12
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []
