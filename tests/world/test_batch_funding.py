"""Phase 8, funding, batched over a RunStack (sim.world.phases.funding.run_batch over
sim.world.kernels.funding.funding_batch): each run bit for bit the run alone, runs that cannot
share the call falling back to their own phase, and a run whose clearing fails stopped alone
with its own error while the others go on."""

from __future__ import annotations

import pytest
from test_resident import STILL_REBOUND  # tests/world, on the path (pytest prepends it)

from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES, mismatches
from sim.world import phases
from sim.world.kernels import funding as kfunding
from sim.world.model import LiquidationModel
from sim.world.phases import funding as pfunding
from sim.world.stack import RunStack

FAST = ("crypto_winter", "lenders_fail")
# the oracle's cases phase 8 must get right, and the switches it reads: sites (hosted units
# pay no warehouse cost), other loans (off when every lender type holds only GPU loans)
_ORACLE = {c[0]: c for c in ORACLE_CASES}
SWITCHES = (("no_sites", "crypto_winter", ("sites.enabled=false",)),
            ("no_other_loans", "crypto_winter",
             ("lenders.types.bank.gpu_share=1.0", "lenders.types.private_credit.gpu_share=1.0",
              "lenders.types.abl.gpu_share=1.0")))
CASES = [pytest.param(*c, id=c[0], marks=() if c[0] in FAST else pytest.mark.slow)
         for c in (*(_ORACLE[k] for k in ("baseline", "crypto_winter", "repo_defaults",
                                         "mass_default", "lenders_fail",
                                         "crypto_winter+repo", "crypto_winter+lolr")),
                   *SWITCHES)]


def _alone(cfg) -> LiquidationModel:
    return LiquidationModel(cfg).run()


def _spy(monkeypatch) -> tuple[list[int], list[int]]:
    """Count the batched kernel's calls (by the number of runs) and the runs' own phase 8."""
    calls, alone_calls = [], []
    real_batch, real_run = kfunding.funding_batch, phases.funding.run
    monkeypatch.setattr(kfunding, "funding_batch", lambda runs, *a: (calls.append(len(runs)),
                                                                     real_batch(runs, *a)))
    monkeypatch.setattr(phases.funding, "run", lambda m: (alone_calls.append(1), real_run(m)))
    return calls, alone_calls


@pytest.mark.parametrize(("label", "scenario", "overrides"), CASES)
def test_phase_8_runs_batched_and_gives_each_run_its_bits(monkeypatch, label, scenario,
                                                          overrides):
    months = 12 if label in FAST else None
    cfgs = [load_scenario(scenario, list(overrides), seed=s, months=months)
            for s in (1, 2, 3, 20251201)]
    calls, alone_calls = _spy(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    assert stack.errors == {} and stack.kernel_inputs["funding"] is not None
    assert calls == [4] * cfgs[0].months and alone_calls == []
    monkeypatch.undo()
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_loan_books_of_different_lengths_share_the_call(monkeypatch):
    """The seeds draw loan books of different lengths (padded stacks): the batched kernel
    reads each run's own book, and each run keeps its bits."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=8) for s in (4, 5, 6)]
    calls, _ = _spy(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    assert len({s[0] for s in stack.shapes[("loans", "active")]}) > 1
    assert stack.kernel_inputs["funding"]["n_loans"].tolist() == [
        s[0] for s in stack.shapes[("loans", "active")]]
    assert calls == [3] * 8
    monkeypatch.undo()
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_runs_that_cannot_share_phase_8_run_it_alone(monkeypatch):
    """Runs with different lender counts (every lender array one longer) share a stack
    (padded) but not the batched call: each runs its own phase 8, with its own bits."""
    cfgs = [load_scenario("crypto_winter", seed=1, months=6),
            load_scenario("crypto_winter", ["lenders.count=21"], seed=1, months=6)]
    calls, alone_calls = _spy(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    assert stack.kernel_inputs["funding"] is None and calls == []
    assert len(alone_calls) == 2 * 6
    monkeypatch.undo()
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_a_run_whose_clearing_fails_stops_alone(monkeypatch):
    """With three clearing rounds allowed, a run whose lenders default in more rounds fails
    in phase 8 (the kernel's NO_CONVERGENCE code: the RuntimeError its own phase
    raises), in the month a lone run fails, with the state the lone run leaves (its outside
    flows and the desk's payments booked, no event); the runs that never need a second round
    go on and keep their bits. The failing run takes no later phase of its month."""
    monkeypatch.setattr(pfunding, "CLEARING_MAX_ITER", 3)
    case = _ORACLE["lenders_fail"]
    # seeds 1 and 8 fail (months 10 and 9), 2 and 5 do not (12 months)
    cfgs = [load_scenario(case[1], list(case[2]), seed=s, months=12) for s in (1, 2, 5, 8)]
    alone = []
    for cfg in cfgs:
        m = LiquidationModel(cfg)
        try:
            m.run()
            alone.append((m, None))
        except RuntimeError as e:
            alone.append((m, e))
    fails = [r for r, (_, e) in enumerate(alone) if e is not None]
    assert fails == [0, 3] and [a.env.t for a, _ in alone] == [10, 12, 12, 9]
    calls, alone_calls = _spy(monkeypatch)
    records = []
    real_record = phases.record.run
    monkeypatch.setattr(phases.record, "run", lambda m: (records.append((id(m), m.env.t)),
                                                         real_record(m)))
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    assert alone_calls == [] and calls == [4] * 9 + [3] + [2] * 2
    assert sorted(stack.errors) == fails
    for r, (a, e) in enumerate(alone):
        m = stack.models[r]
        assert mismatches(a, m) == []
        assert m.env.t == a.env.t and m.events == a.events
        if e is not None:
            assert type(stack.errors[r]) is RuntimeError and str(stack.errors[r]) == str(e)
            assert (id(m), m.env.t) not in records
