"""The borrowers' sites' month batched over a RunStack (sim.world.phases.sites.run_batch over
sim.world.kernels.sites.sites_batch): one kernel call a month for the stack's runs, never a
run's own phase, and each run bit for bit the run alone (sim.qa.oracle.mismatches, and the
outside flows and events with their types) under every switch the sites' month reads; runs
that cannot share the call (the arbitrage on in some runs only, buyer books of different
lengths, no sites) each run their own phase; a run whose sites' month raises fails alone."""

from __future__ import annotations

import pytest
from test_resident import STILL_REBOUND  # tests/world, on the path (pytest prepends it)

import sim.world.stack as stack_module
from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES, mismatches, model_state, same_bits
from sim.world import phases
from sim.world.kernels import sites as ksites
from sim.world.model import LiquidationModel
from sim.world.stack import RunStack

_ORACLE = {c[0]: c[1:] for c in ORACLE_CASES}
# (label, scenario, overrides, months; None: the scenario's): the oracle's cases and every
# switch the sites' month reads (docstring of sim.world.kernels.sites)
_CASES = [(label, *_ORACLE[label], None) for label in
          ("baseline", "crypto_winter", "repo_defaults", "mass_default", "lenders_fail")]
_CASES += [(over[0], "crypto_winter", over, 30) for over in (
    ("sites.arbitrage=false",), ("sites.host_in_place=false",),
    ("sites.sell_with_fleet=false",), ("buyers.unlimited=true",),
    ("sites.conversion_months=0", "sites.conversion_cost_per_mw=1e5"),
    ("sites.mining_mw_per_ph=0.0",), ("sites.max_hold_months=4",),
    ("sites.conversion_rate=0.0",),
    ("sites.switch_cost_per_mw=0", "sites.host_demand_mw=0.3"))]
_FAST = {"sites.max_hold_months=4"}  # (every stage of the month: the test after)
CASES = [pytest.param(label, sc, over, months, id=label,
                      marks=() if label in _FAST else pytest.mark.slow)
         for label, sc, over, months in _CASES]


def _cfgs(scenario, overrides, months, seeds=(1, 2, 20251201)):
    return [load_scenario(scenario, list(overrides), seed=s, months=months) for s in seeds]


def _spy(monkeypatch) -> tuple[list[int], list[int]]:
    """Count the batched kernel's calls (runs in each) and the runs' own sites' months."""
    calls, alone = [], []
    real_batch, real_run = ksites.sites_batch, phases.sites.run
    monkeypatch.setattr(ksites, "sites_batch", lambda runs, *a: (calls.append(len(runs)),
                                                                 real_batch(runs, *a)))
    monkeypatch.setattr(phases.sites, "run", lambda m: (alone.append(m.env.t), real_run(m)))
    return calls, alone


def _same(alone: LiquidationModel, m: LiquidationModel) -> None:
    """Bit for bit (the oracle), with the types of the numbers (a float and a np.float64 of
    one value are the same bits to the oracle) and the outside flows' and events' values and
    types."""
    assert mismatches(alone, m) == []
    assert ({k: type(v) for k, v in model_state(alone).items()}
            == {k: type(v) for k, v in model_state(m).items()})
    assert list(alone.flows.items()) == list(m.flows.items())
    assert [type(v) for v in alone.flows.values()] == [type(v) for v in m.flows.values()]
    assert alone.events == m.events
    assert [[type(v) for v in e] for e in alone.events] == [[type(v) for v in e]
                                                            for e in m.events]


@pytest.mark.parametrize(("label", "scenario", "overrides", "months"), CASES)
def test_the_sites_month_runs_batched_and_gives_each_run_its_bits(monkeypatch, label,
                                                                   scenario, overrides, months):
    cfgs = _cfgs(scenario, overrides, months)
    calls, alone_calls = _spy(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    assert stack.errors == {}
    assert calls == [len(cfgs)] * cfgs[0].months and alone_calls == []
    monkeypatch.undo()
    for cfg, m in zip(cfgs, stack.models, strict=True):
        _same(LiquidationModel(cfg).run(), m)


def test_the_batched_month_sells_retires_hosts_and_switches():
    """The fast cases above reach every stage of the month in every run: site sales, fleet
    sales, retirements, hosting income and MW switched to hosting."""
    cfgs = _cfgs("crypto_winter", ("sites.max_hold_months=4",), 30)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    for m in stack.models:
        kinds = {e[1] for e in m.events}
        assert {"site_sale", "site_fleet_sale", "site_retired"} <= kinds
        assert m.sites.hosting_income > 0 and m.sites.converted_mw > 0
        assert (m.sites.host_mw > 0).any()


@pytest.mark.parametrize("overrides", [
    pytest.param((("sites.arbitrage=false",), ()), id="arbitrage-in-one-run-only"),
    pytest.param((("buyers.types.broker.count=9",), ()), id="buyer-books-of-two-lengths")])
def test_runs_that_cannot_share_the_call_run_their_own_month(monkeypatch, overrides):
    cfgs = [load_scenario("crypto_winter", list(o), seed=1, months=12) for o in overrides]
    calls, alone_calls = _spy(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    assert stack.kernel_inputs["sites"] is None and calls == []
    assert alone_calls == [t for t in range(1, 13) for _ in cfgs]  # env.t: after phase 1
    monkeypatch.undo()
    for cfg, m in zip(cfgs, stack.models, strict=True):
        _same(LiquidationModel(cfg).run(), m)


def test_runs_without_sites_skip_the_month(monkeypatch):
    cfgs = _cfgs("crypto_winter", ("sites.enabled=false",), 6, seeds=(1, 2))
    calls, alone_calls = _spy(monkeypatch)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    assert stack.kernel_inputs["sites"] is None and calls == [] and alone_calls == []
    monkeypatch.undo()
    for cfg, m in zip(cfgs, stack.models, strict=True):
        _same(LiquidationModel(cfg).run(), m)


def _loses_mining_share_in_month_4(monkeypatch, victim) -> None:
    """Phase 4 drops ``victim``'s ``mining_share`` at env.t 4 (the sites' month then raises)."""
    real = phases.defaults.run

    def defaults(m, month):
        real(m, month)
        if m is victim and m.env.t == 4:
            m.borrowers.mining_share = None

    monkeypatch.setattr(phases.defaults, "run", defaults)
    # phase 4 run by run, so that the patched phase is the one that runs
    monkeypatch.delitem(stack_module.BATCHED, "defaults", raising=False)


def _mesa(m: LiquidationModel) -> tuple:
    gen = m._default_schedule
    return (m.steps, m.time, gen._execution_count, [e.time for e in m._event_list._events])


def test_a_run_whose_sites_month_raises_fails_alone(monkeypatch):
    """The sites' month's one error (the arbitrage on and no ``mining_share``) stops that run
    alone, in the state and with the error of the run alone; the others' months, batched
    before and after, are their own."""
    cfgs = _cfgs("crypto_winter", (), 10, seeds=(1, 2, 3))
    models = [LiquidationModel(c) for c in cfgs]
    stack = RunStack(models, exclude=STILL_REBOUND)
    calls = []
    real_batch = ksites.sites_batch
    monkeypatch.setattr(ksites, "sites_batch", lambda runs, *a: (calls.append(runs.tolist()),
                                                                 real_batch(runs, *a)))
    _loses_mining_share_in_month_4(monkeypatch, models[1])
    stack.run()
    assert list(stack.errors) == [1] and isinstance(stack.errors[1], ValueError)
    # the 4th month (env.t 4 after phase 1) leaves run 1 out, and the later ones
    assert calls == [[0, 1, 2]] * 3 + [[0, 2]] * 7 and models[1].env.t == 4
    alone = LiquidationModel(cfgs[1])
    _loses_mining_share_in_month_4(monkeypatch, alone)
    with pytest.raises(ValueError) as raised:
        alone.run()
    assert str(raised.value) == str(stack.errors[1])
    assert _mesa(models[1]) == _mesa(alone)
    sa, sb = model_state(alone), model_state(models[1])
    assert sorted(sa) == sorted(sb) and [k for k in sa if not same_bits(sa[k], sb[k])] == []
    assert alone.events == models[1].events and alone.flows == models[1].flows
    monkeypatch.undo()
    for r in (0, 2):
        _same(LiquidationModel(cfgs[r]).run(), models[r])
        assert _mesa(models[r]) == _mesa(LiquidationModel(cfgs[r]).run())
