"""Resident state on the compiled engine: the run axis's first step (issue 19).

A batched engine holds R runs' state in stacked arrays with a leading run axis, each run's
book arrays being views of one row (docs/performance.md, "The run axis"). That is possible
only if a month writes the model's arrays in place: an array a phase replaces by a new one
(``m.price = price``) would leave the stacked row behind. These tests step every oracle case
(sim.qa.oracle.ORACLE_CASES: every golden case and the edge cases, every switch) on the
compiled engine and list the arrays a month rebinds: every numpy array held by the model,
its books (sim.qa.oracle's ``_BOOKS``) and its records (``model.rec``), and the month's
hand-overs (:class:`~sim.world.state.MonthState`, :class:`~sim.world.state.SellOrders`),
compared by identity with the arrays they held after the build (the hand-overs: after the
first month, MonthState's as phases 1 and 5 hand them over). ``STILL_REBOUND`` lists what a
month still rebinds, by the phase that does; it may only shrink: an entry no case rebinds any
more fails the second test, so the list stays the exact set of what is left.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.config import load_scenario
from sim.qa.oracle import _BOOKS, ORACLE_CASES
from sim.world import phases
from sim.world.model import LiquidationModel

# (owner, attribute): what some month still rebinds (or makes after the build), by phase:
# nothing since stop 28 (every phase is resident); a phase that must rebind lists it here
STILL_REBOUND: frozenset[tuple[str, str]] = frozenset()


def _arrays(model: LiquidationModel) -> dict[tuple[str, str], int]:
    """id() of every numpy array held by the model, its books and its records."""
    out: dict[tuple[str, str], int] = {}
    for owner, obj in (("model", model), *((b, getattr(model, b, None)) for b in _BOOKS)):
        if obj is None:
            continue
        for name, v in vars(obj).items():
            if isinstance(v, np.ndarray):
                out[(owner, name)] = id(v)
    for name, v in model.rec.items():
        if isinstance(v, np.ndarray):
            out[("rec", name)] = id(v)
    return out


def _handovers(owner: str, obj: object) -> dict[tuple[str, str], int]:
    return {(owner, name): id(getattr(obj, name)) for name in obj.__slots__
            if isinstance(getattr(obj, name), np.ndarray)}


def rebound(scenario: str, overrides=(), seed: int | None = None) -> set[tuple[str, str]]:
    """What the months of one compiled run rebind (see the module's docstring)."""
    cfg = load_scenario(scenario, list(overrides), seed=seed)
    model = LiquidationModel(cfg, engine="compiled")
    handed: list[dict[tuple[str, str], int]] = []
    env_run, orders_run = phases.environment.run, phases.orders.run

    def env_spy(m):
        month = env_run(m)
        handed.append(_handovers("month", month))
        return month

    def orders_spy(m, month):
        handed.append(_handovers("month", month))  # as phase 5 finds it (it drops coll)
        orders = orders_run(m, month)
        handed.append(_handovers("orders", orders))
        return orders

    out: set[tuple[str, str]] = set()
    base = _arrays(model)
    first: dict[tuple[str, str], int] | None = None
    mp = pytest.MonkeyPatch()
    mp.setattr(phases.environment, "run", env_spy)
    mp.setattr(phases.orders, "run", orders_spy)
    try:
        while model.running and model.env.t < cfg.months:
            handed.clear()
            model.step()
            now = _arrays(model)
            out |= {k for k, v in now.items() if base.get(k) != v}
            held: dict[tuple[str, str], int] = {}
            for ids in handed:
                held.update(ids)
            if first is None:
                first = held
            else:
                out |= {k for k, v in held.items() if first.get(k) != v}
                first.update(held)  # a field first filled later counts from then
    finally:
        mp.undo()
    return out


@pytest.fixture(scope="module")
def rebound_by_case() -> dict[str, set[tuple[str, str]]]:
    return {label: rebound(scenario, overrides) for label, scenario, overrides in ORACLE_CASES}


def test_a_month_rebinds_only_what_is_listed(rebound_by_case):
    """No case rebinds an array outside ``STILL_REBOUND`` (a phase made resident stays so)."""
    extra = {label: sorted(r - STILL_REBOUND) for label, r in rebound_by_case.items()
             if r - STILL_REBOUND}
    assert extra == {}


def test_the_list_is_what_is_left(rebound_by_case):
    """Every entry of ``STILL_REBOUND`` is rebound by some case: a phase made resident must
    take its entries off the list."""
    seen = set().union(*rebound_by_case.values())
    assert sorted(STILL_REBOUND - seen) == []


def test_the_check_sees_a_rebinding(monkeypatch):
    """The check itself: a phase that replaces a resident book array is caught."""
    real = phases.record.run

    def rebinding(m):
        real(m)
        m.borrowers.cash = m.borrowers.cash.copy()

    monkeypatch.setattr(phases.record, "run", rebinding)
    assert ("borrowers", "cash") in rebound("baseline", ("months=2",))
