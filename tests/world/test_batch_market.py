"""Phase 6 (the market) batched over a RunStack (sim.world.phases.market.run_batch over
sim.world.kernels.market.market_batch): each run of a stack is bit for bit the run alone
(sim.qa.oracle.mismatches, and its search_rng where its participation draws leave it), the
batched kernel runs once a month for exactly the runs with an order, a run's own phase never;
runs that cannot share the call run their own phase; a month the kernel leaves to numpy runs
the numpy code for that run alone, and a failure there stops that run alone. The sale-proceeds
sweep after it (sim.world.phases.market.sweep_batch over
sim.world.kernels.borrowers.sweep_batch) likewise: one call a month for all runs, loan books
of different lengths each its own."""

from __future__ import annotations

import pytest
from test_resident import STILL_REBOUND  # tests/world, on the path (pytest prepends it)

from sim.core.config import load_scenario
from sim.qa.oracle import ORACLE_CASES, mismatches
from sim.world import phases
from sim.world.kernels import borrowers as kborrowers
from sim.world.kernels import market as kmarket
from sim.world.model import LiquidationModel
from sim.world.stack import RunStack

# the oracle's cases, and phase 6's switches its cases leave at their defaults (outside
# demand and sites on by default)
SWITCHES = (("no_outside", "crypto_winter", ("buyers.outside_demand.enabled=false",)),
            ("no_outside_no_salvage", "crypto_winter",
             ("buyers.outside_demand.enabled=false", "market.unsold_to_salvage=false")),
            ("no_sites", "crypto_winter", ("sites.enabled=false",)),
            ("no_sites_unlimited", "crypto_winter",
             ("sites.enabled=false", "buyers.unlimited=true")))
FAST = ("crypto_winter",)
CASES = [pytest.param(*c, id=c[0], marks=() if c[0] in FAST else pytest.mark.slow)
         for c in (*ORACLE_CASES, *SWITCHES)]


def _alone(cfg, months: list[int] | None = None) -> LiquidationModel:
    """Run ``cfg`` alone; the months its phase 6 kernel ran go to ``months``."""
    m = LiquidationModel(cfg)
    if months is None:
        return m.run()
    real = kmarket.market_month

    def spy(ip, *a):
        months.append(int(ip[kmarket.IP_T]))
        return real(ip, *a)

    kmarket.market_month = spy
    try:
        return m.run()
    finally:
        kmarket.market_month = real


sweep_calls: list[list[int]] = []  # the runs of each batched sweep call, of the last stack


def _spied_stack(monkeypatch, cfgs) -> tuple[RunStack, list, list]:
    """A stack of ``cfgs`` run to the end, with the batched kernel's calls (month, runs), the
    runs' own phase 6 and sweep calls and the batched sweep's calls (``sweep_calls``)
    recorded."""
    batch_calls, own_calls = [], []
    sweep_calls.clear()
    models = [LiquidationModel(c) for c in cfgs]
    real_batch, real_run, real_month = kmarket.market_batch, phases.market.run, \
        kmarket.market_month

    def batch(runs, ip, *a):
        batch_calls.append((int(ip[runs[0], kmarket.IP_T]), runs.tolist()))
        return real_batch(runs, ip, *a)

    monkeypatch.setattr(kmarket, "market_batch", batch)
    monkeypatch.setattr(phases.market, "run", lambda m, o: (own_calls.append(m.env.t),
                                                            real_run(m, o)))
    monkeypatch.setattr(kmarket, "market_month", lambda *a: (own_calls.append("kernel"),
                                                             real_month(*a))[1])
    real_sweep_batch, real_sweep = kborrowers.sweep_batch, phases.market.sweep_sale_proceeds
    monkeypatch.setattr(kborrowers, "sweep_batch", lambda runs, *a: (
        sweep_calls.append(runs.tolist()), real_sweep_batch(runs, *a))[1])
    monkeypatch.setattr(phases.market, "sweep_sale_proceeds", lambda m: (
        own_calls.append("sweep"), real_sweep(m))[1])
    stack = RunStack(models, exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    return stack, batch_calls, own_calls


@pytest.mark.parametrize(("label", "scenario", "overrides"), CASES)
def test_phase_6_batched_is_each_run_alone(monkeypatch, label, scenario, overrides):
    cfgs = [load_scenario(scenario, list(overrides), seed=s) for s in (1, 2, 20251201)]
    stack, batch_calls, own_calls = _spied_stack(monkeypatch, cfgs)
    assert stack.kernel_inputs["market"] is not None
    assert stack.errors == {} and stack.stale() == [] and own_calls == []
    months = [t for t, _ in batch_calls]
    assert months == sorted(set(months))  # one call a month at most
    for r, cfg in enumerate(cfgs):
        kernel_months = []
        alone = _alone(cfg, kernel_months)
        m = stack.models[r]
        assert mismatches(alone, m) == []
        assert m.search_rng.bit_generator.state == alone.search_rng.bit_generator.state
        # the batched kernel ran run r exactly in the months its own kernel runs alone
        assert [t for t, runs in batch_calls if r in runs] == kernel_months
    assert batch_calls or label == "one_month"  # some month had orders (not in one month)
    assert sweep_calls == [[0, 1, 2]] * stack.models[0].env.t  # the sweep: every month


def test_the_sweep_takes_loan_books_of_different_lengths(monkeypatch):
    """The batched sweep over runs whose loan books differ in length (padded stacks): one
    call a month, each run's book its own corner, each run bit for bit the run alone."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=36) for s in (4, 5)]
    stack, _, own_calls = _spied_stack(monkeypatch, cfgs)
    assert len(set(stack.kernel_inputs["sweep"]["n_loans"].tolist())) == 2
    assert own_calls == [] and sweep_calls == [[0, 1]] * 36
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_runs_that_cannot_share_the_sweep_sweep_alone(monkeypatch):
    """Runs of different numbers of borrowers cannot share the sweep's call (nor phase 6's):
    each sweeps alone, with its own bits."""
    cfgs = [load_scenario("crypto_winter", seed=1, months=24),
            load_scenario("crypto_winter", ["borrowers.neocloud.count=9"], seed=1, months=24)]
    stack, batch_calls, own_calls = _spied_stack(monkeypatch, cfgs)
    assert stack.kernel_inputs["sweep"] is None and sweep_calls == []
    assert own_calls.count("sweep") == 2 * 24
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def test_runs_that_cannot_share_phase_6_run_it_alone(monkeypatch):
    """Runs whose buyer arrays differ in length (one more broker) share a stack (padded) but
    not phase 6's call: each runs its own phase 6, with its own bits."""
    cfgs = [load_scenario("crypto_winter", seed=1, months=24),
            load_scenario("crypto_winter", ["buyers.types.broker.count=9"], seed=1, months=24)]
    stack, batch_calls, own_calls = _spied_stack(monkeypatch, cfgs)
    assert stack.kernel_inputs["market"] is None and batch_calls == []
    assert len(own_calls) == 2 * 24 + own_calls.count("kernel")
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def _first_trade(cfg) -> int:
    """The first month run ``cfg`` alone runs phase 6's kernel."""
    months: list[int] = []
    _alone(cfg, months)
    return months[0]


def _left_to_numpy(monkeypatch, victim: int, month: int) -> None:
    """The batched kernel leaves run ``victim``'s month ``month`` to numpy (status 1, the
    run's arrays untouched, as for a book that could reach MAX_UNITS units)."""
    real = kmarket.market_batch

    def batch(runs, ip, *a):
        out = a[-1]
        if victim in runs and ip[victim, kmarket.IP_T] == month:
            real(runs[runs != victim], ip, *a)
            out[victim] = (1, 0, 0, 0, 0)
            return None
        return real(runs, ip, *a)

    monkeypatch.setattr(kmarket, "market_batch", batch)


def test_a_month_left_to_numpy_runs_numpy_for_that_run(monkeypatch):
    """A run whose month the batched kernel leaves to numpy runs the numpy rest of phase 6
    for that month (the numpy code's bits are the kernel's), the others the kernel's."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=30) for s in (1, 2, 3)]
    month = _first_trade(cfgs[1])
    numpy_months = []
    real_numpy = phases.market._run_numpy
    monkeypatch.setattr(phases.market, "_run_numpy", lambda m, o, a: (
        numpy_months.append(m.env.t), real_numpy(m, o, a))[1])
    _left_to_numpy(monkeypatch, 1, month)
    stack = RunStack([LiquidationModel(c) for c in cfgs], exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert numpy_months == [month] and stack.errors == {}
    for cfg, m in zip(cfgs, stack.models, strict=True):
        assert mismatches(_alone(cfg), m) == []


def _mesa(m: LiquidationModel) -> tuple:
    gen = m._default_schedule
    return (m.steps, m.time, gen._execution_count, [e.time for e in m._event_list._events])


def test_a_failure_in_the_numpy_month_stops_that_run_alone(monkeypatch):
    """The numpy rest of a month raising for one run stops that run with its error and Mesa's
    state as the run alone leaves them (its kernel leaving the same month to numpy); the
    other runs go on, each its own bits."""
    cfgs = [load_scenario("crypto_winter", seed=s, months=30) for s in (1, 2, 3)]
    month = _first_trade(cfgs[1])

    def boom(m, o, a):
        raise RuntimeError("boom")

    monkeypatch.setattr(phases.market, "_run_numpy", boom)
    _left_to_numpy(monkeypatch, 1, month)
    models = [LiquidationModel(c) for c in cfgs]
    stack = RunStack(models, exclude=STILL_REBOUND)
    stack.run()
    monkeypatch.undo()
    assert list(stack.errors) == [1] and str(stack.errors[1]) == "boom"
    assert models[1].env.t == month
    alone = LiquidationModel(cfgs[1])
    real_month = kmarket.market_month
    monkeypatch.setattr(phases.market, "_run_numpy", boom)
    monkeypatch.setattr(kmarket, "market_month", lambda ip, *a: (
        (1, 0, 0, 0, 0) if ip[kmarket.IP_T] == month else real_month(ip, *a)))
    with pytest.raises(RuntimeError, match="boom"):
        alone.run()
    monkeypatch.undo()
    assert _mesa(models[1]) == _mesa(alone)
    assert mismatches(alone, models[1]) == []
    for r in (0, 2):
        assert models[r].env.t == 30
        assert mismatches(_alone(cfgs[r]), models[r]) == []
