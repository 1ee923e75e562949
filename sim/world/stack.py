"""R runs' state in stacked arrays with a leading run axis (issue 19's run axis, its first step).

A batched engine steps R runs of one scenario shape at once: each phase one kernel call over
the R runs (docs/performance.md, "The run axis"). Its state is stacked: for every array a
model and its books hold, one array of shape (R, ...) whose row r is run r's array, and each
run's model holds a view of its row. :class:`RunStack` builds that layout over R models already
built, so each run's own code (the phases, the metrics, the app) reads and writes the stacked
rows without knowing it, and a kernel over the batch can take the stacks whole.

That holds only for arrays a month writes in place: a phase that rebinds an attribute to a new
array (``m.price = price``) leaves the stacked row behind. What the compiled engine's months
still rebind is listed, and checked both ways, by ``tests/world/test_resident.py``; those
arrays are left per run here (``exclude``). :meth:`RunStack.stale` lists any stacked array a
model no longer views, so a batched engine can refuse to read a row that is not the run's.

Layout: runs of one shape may differ in the length of a book (a seed draws a different number
of syndicated loans), so a stack's shape is the largest of the runs' along each axis, and run r
views the leading corner ``stack[r, :n0, :n1, ...]`` of its row, contiguous where only the
first axis differs. An array held under several names (one object) is stacked once and every
holder gets the same view. Arrays that are views themselves (rows of a per-run table) and 0-d
arrays stay per run, except a whole view of a stacked array, which becomes the same view of
the run's row. Read-only arrays stay read-only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from sim.world import phases
from sim.world.model import _MESA_LOG, LiquidationModel
from sim.world.state import MonthState, SellOrders

# the books a model holds (the same names as sim.qa.oracle's state comparison)
BOOKS = ("borrowers", "lenders", "buyers", "loans", "desk", "env", "sites", "lolr")

Key = tuple[str, str]


def holders(model: LiquidationModel) -> dict[str, object]:
    """The objects whose array attributes are stacked: the model, its books, by name."""
    out: dict[str, object] = {"model": model}
    for b in BOOKS:
        obj = getattr(model, b, None)
        if obj is not None:
            out[b] = obj
    return out


def arrays(model: LiquidationModel) -> dict[Key, np.ndarray]:
    """Every numpy array held by the model and its books, and its records (``("rec", name)``)."""
    out: dict[Key, np.ndarray] = {}
    for owner, obj in holders(model).items():
        for name, v in vars(obj).items():
            if isinstance(v, np.ndarray):
                out[(owner, name)] = v
    for name, v in model.rec.items():
        if isinstance(v, np.ndarray):
            out[("rec", name)] = v
    return out


def _bind(model: LiquidationModel, owners: dict[str, object], key: Key,
          value: np.ndarray) -> None:
    """Put ``value`` under ``key`` in the model (``owners``: :func:`holders` of the model)."""
    owner, name = key
    if owner == "rec":
        model.rec[name] = value
    else:
        setattr(owners[owner], name, value)


class RunStack:
    """R built models of one shape, their arrays moved into stacks (see the module docstring).

    ``stacks[key]`` is the (R, ...) array of the attribute ``key`` = (owner, name) (owner a
    book's name, ``"model"`` or ``"rec"``); ``shapes[key][r]`` run r's own shape. Raises
    ValueError when the models cannot share a layout: not one engine, not one horizon, or an
    attribute missing, of another dtype or rank in some run; then no model has been changed.
    """

    def __init__(self, models: Sequence[LiquidationModel], exclude: Iterable[Key] = (),
                 batched: bool = True) -> None:
        if not models:
            raise ValueError("a run stack needs at least one model")
        self.models = list(models)
        self.batched = batched
        # what the batched phases keep for the stack (their stacked inputs), by phase name
        self.kernel_inputs: dict[str, Any] = {}
        self.errors: dict[int, Exception] = {}
        self.detached: set[int] = set()  # runs that run their own phases (detach)
        # Mesa's bookkeeping of the months stepped directly, by run (LiquidationModel.run's)
        self._sched: dict[int, Any] = {}
        self._done: dict[int, int] = {}
        self._finished: set[int] = set()
        first = self.models[0]
        for m in self.models[1:]:
            if m.engine != first.engine or m.cfg.months != first.cfg.months:
                raise ValueError("the runs of a stack must share the engine and the horizon "
                                 f"({first.engine}, {first.cfg.months} months; got "
                                 f"{m.engine}, {m.cfg.months})")
        skip = set(exclude)
        per_run = [arrays(m) for m in self.models]
        self._owners = [holders(m) for m in self.models]
        keys = [k for k, a in per_run[0].items()
                if k not in skip and a.base is None and a.ndim > 0]
        self.stacks: dict[Key, np.ndarray] = {}
        self.shapes: dict[Key, list[tuple[int, ...]]] = {}
        self._views: dict[Key, list[np.ndarray]] = {}  # each run's view, bound to its model
        self.aliases: dict[Key, Key] = {}  # a second name for one array -> the first
        first_name: dict[tuple[int, ...], Key] = {}  # the runs' array ids -> the first name
        columns = [[arrs.get(key) for arrs in per_run] for key in keys]
        for key, runs in zip(keys, columns, strict=True):  # every check before any change
            self._check(key, runs)
        for key, runs in zip(keys, columns, strict=True):
            ids = tuple(id(a) for a in runs)
            if ids in first_name:
                self.aliases[key] = first_name[ids]
                continue
            first_name[ids] = key
            self._stack(key, runs)
        for key, same in self.aliases.items():
            for r, m in enumerate(self.models):
                _bind(m, self._owners[r], key, self.view(same, r))
        self._rebase_views(per_run)

    def _rebase_views(self, per_run: list[dict[Key, np.ndarray]]) -> None:
        """An attribute that is a whole view of a stacked array (the environment's read-only
        lead times ``_lead`` of its buffer ``_lead_buf``) becomes the same view of the run's
        row: it would go on viewing the array the stack replaced, which no month writes."""
        for r, (m, arrs) in enumerate(zip(self.models, per_run, strict=True)):
            rows = {id(arrs[key]): self._views[key][r] for key in self.stacks}
            for key, a in arrs.items():
                row = rows.get(id(a.base)) if a.base is not None else None
                if row is None or a.shape != row.shape or a.dtype != row.dtype:
                    continue
                if (a.__array_interface__["data"][0] != a.base.__array_interface__["data"][0]
                        or a.strides != a.base.strides):
                    continue
                v = row.view()
                if not a.flags.writeable:
                    v.flags.writeable = False
                _bind(m, self._owners[r], key, v)

    @staticmethod
    def _check(key: Key, runs: list[np.ndarray | None]) -> None:
        a0 = runs[0]
        for r, a in enumerate(runs):
            if not isinstance(a, np.ndarray) or a.base is not None:
                raise ValueError(f"{key[0]}.{key[1]}: run {r} holds no array of its own "
                                 "where run 0 does")
            if a.dtype != a0.dtype or a.ndim != a0.ndim:
                raise ValueError(f"{key[0]}.{key[1]}: run {r} holds {a.dtype}[{a.ndim}d], "
                                 f"run 0 {a0.dtype}[{a0.ndim}d]")

    def _stack(self, key: Key, runs: list[np.ndarray]) -> None:
        shapes = [a.shape for a in runs]
        self.shapes[key] = shapes
        if shapes.count(shapes[0]) == len(shapes):  # one shape: one copy, rows as views
            stack = np.stack(runs)
            views = list(stack)
        else:  # padded to the largest along each axis, each run its leading corner
            shape = tuple(max(s[i] for s in shapes) for i in range(len(shapes[0])))
            stack = np.zeros((len(runs), *shape), dtype=runs[0].dtype)
            views = []
            for r, a in enumerate(runs):
                v = stack[(r, *(slice(0, n) for n in a.shape))]
                v[...] = a
                views.append(v)
        self.stacks[key] = stack
        self._views[key] = views
        for r, (a, v) in enumerate(zip(runs, views, strict=True)):
            if not a.flags.writeable:
                v.flags.writeable = False
            _bind(self.models[r], self._owners[r], key, v)

    @property
    def n(self) -> int:
        """R, the number of runs."""
        return len(self.models)

    def view(self, key: Key, r: int) -> np.ndarray:
        """Run r's view of the stack of ``key`` (the leading corner of its row): the array its
        model holds under that name (and under every alias of it)."""
        return self._views[self.aliases.get(key, key)][r]

    def stale(self) -> list[tuple[int, str]]:
        """(run, "owner.name") of every stacked array a model no longer views (a phase rebound
        it): empty while the stacks hold every run's state."""
        out = []
        for r, m in enumerate(self.models):
            now = arrays(m)
            for key in (*self.stacks, *self.aliases):
                a = now.get(key)
                base = self.stacks[self.aliases.get(key, key)]
                if a is None or a.base is not base:
                    out.append((r, f"{key[0]}.{key[1]}"))
        return out

    def step(self) -> None:
        """One month of every run still running, in lockstep: the phases of :data:`MONTH` in
        order, each for all the runs at once, by one batched call where :data:`BATCHED` has
        it (and ``batched`` is on), else run by run, as ``model.step()`` runs them. A run
        whose month raises an Exception (in its own phase, or as a batched phase finds it,
        :meth:`fail`) is stopped, its error kept in ``errors`` (by run) and its Mesa state
        left as ``model.step()`` leaves it; the others go on. A run whose Mesa
        schedule is not the plain step schedule (:meth:`LiquidationModel._plain_schedule`) is
        stepped alone by ``model.step()``."""
        log = _MESA_LOG.isEnabledFor(logging.INFO)
        live: list[int] = []
        for r, m in enumerate(self.models):
            if not m.running or r in self.errors:
                continue
            if r not in self._sched:
                self._sched[r] = m._plain_schedule()
            if self._sched[r] is None:
                self._alone(r, m)
            elif m.env.t >= m.cfg.months:
                m.running = False
            else:
                m.direct_month_start(log)
                live.append(r)
        ctx = {r: MonthContext() for r in live}
        for name, phase in MONTH:
            batch = BATCHED.get(name) if self.batched else None
            together = [r for r in live if r not in self.detached] if batch else []
            if len(together) > 1:
                batch(self, together, [ctx[r] for r in together])
            else:
                together = []
            for r in live:
                if r in together:
                    continue
                try:
                    phase(self.models[r], ctx[r])
                except Exception as e:  # noqa: BLE001 - one run's failure is its result
                    self.fail(r, e)
            if any(r in self.errors for r in live):
                live = [r for r in live if r not in self.errors]
        for r in live:
            m = self.models[r]
            self._done[r] = self._done.get(r, 0) + 1
            if m.env.t >= m.cfg.months:
                m.running = False

    def fail(self, r: int, e: Exception) -> None:
        """Stop run r, whose month raised ``e`` in a phase (its own, or its part of a batched
        call, which writes the other runs' results first): the error kept in ``errors``, its
        Mesa state left as ``model.step()`` leaves it; the month's later phases skip it."""
        self.errors[r] = e
        self._finish(r, stepping=True)

    def inputs(self, name: str, make: Callable[[RunStack], Any]) -> Any:
        """What the batched phase ``name`` keeps for the stack (its stacked inputs, or None when
        the runs cannot share its call): ``make(stack)`` at its first batched month, kept in
        ``kernel_inputs`` after that."""
        if name not in self.kernel_inputs:
            self.kernel_inputs[name] = make(self)
        return self.kernel_inputs[name]

    def detach(self, r: int) -> None:
        """Run r runs its own phases from now on, never a batched call: a phase's numpy code
        rebound arrays of the run that the stacks hold (the stacks' rows are no longer its
        state; :meth:`stale` lists them)."""
        self.detached.add(r)

    def _alone(self, r: int, m: LiquidationModel) -> None:
        try:
            m.step()
        except Exception as e:  # noqa: BLE001 - one run's failure is that run's result
            self.errors[r] = e

    def _finish(self, r: int, stepping: bool = False) -> None:
        """Mesa's schedule and event list of run r as ``model.step()`` would leave them after
        the months this stack stepped directly (once, at the run's end or failure)."""
        if r in self._finished or self._sched.get(r) is None:
            return
        self._finished.add(r)
        self.models[r].direct_months_end(self._sched[r], self._done.get(r, 0), stepping)

    def running(self) -> bool:
        """Whether some run has months left and has not failed."""
        return any(m.running and r not in self.errors for r, m in enumerate(self.models))

    def run(self) -> list[LiquidationModel]:
        """Step every run to its horizon (or its failure); the models, in order."""
        while self.running():
            self.step()
        for r in range(self.n):
            self._finish(r)
        return self.models


class MonthContext:
    """What one run's month hands from a phase to a later one in :data:`MONTH`: phase 1's
    :class:`~sim.world.state.MonthState` and phase 5's :class:`~sim.world.state.SellOrders`."""

    __slots__ = ("month", "orders")

    def __init__(self) -> None:
        self.month: MonthState | None = None
        self.orders: SellOrders | None = None


def _environment(m: LiquidationModel, c: MonthContext) -> None:
    c.month = phases.environment.run(m)


def _borrowers(m: LiquidationModel, c: MonthContext) -> None:
    phases.borrowers.run(m)


def _lolr(m: LiquidationModel, c: MonthContext) -> None:
    if m.lolr is not None:
        phases.policies.lolr_operate(m)


def _lenders(m: LiquidationModel, c: MonthContext) -> None:
    phases.lenders.run(m, c.month)


def _defaults(m: LiquidationModel, c: MonthContext) -> None:
    phases.defaults.run(m, c.month)


def _sites(m: LiquidationModel, c: MonthContext) -> None:
    if m.sites is not None:
        phases.sites.run(m)


def _orders(m: LiquidationModel, c: MonthContext) -> None:
    c.orders = phases.orders.run(m, c.month)


def _market(m: LiquidationModel, c: MonthContext) -> None:
    phases.market.run(m, c.orders)


def _sweep(m: LiquidationModel, c: MonthContext) -> None:
    phases.market.sweep_sale_proceeds(m)


def _prices(m: LiquidationModel, c: MonthContext) -> None:
    phases.prices.run(m, c.month)


def _funding(m: LiquidationModel, c: MonthContext) -> None:
    phases.funding.run(m)


def _pay_funding(m: LiquidationModel, c: MonthContext) -> None:
    phases.policies.pay_funding(m)


def _record(m: LiquidationModel, c: MonthContext) -> None:
    phases.record.run(m)


# the month of LiquidationModel.step, phase by phase, each for one run (the phases' modules
# looked up at each call, as step() does): names for BATCHED
MONTH: tuple[tuple[str, Callable[[LiquidationModel, MonthContext], None]], ...] = (
    ("environment", _environment),  # 1
    ("borrowers", _borrowers),  # 2
    ("lolr", _lolr),
    ("lenders", _lenders),  # 3
    ("defaults", _defaults),  # 4
    ("sites", _sites),
    ("orders", _orders),  # 5
    ("market", _market),  # 6
    ("sweep", _sweep),
    ("prices", _prices),  # 7
    ("funding", _funding),  # 8
    ("pay_funding", _pay_funding),
    ("record", _record),  # 9
)

# phases run for many runs at once by one call, by their name in MONTH: f(stack, runs,
# contexts), runs the indices of the live runs (in order), contexts their MonthContexts. A
# batched phase gives each run the bits of its own phase, and falls back to it run by run
# where the runs cannot share a call; a run whose part raises is stopped by RunStack.fail
# (the later phases of the month skip it)
BATCHED: dict[str, Callable[[RunStack, list[int], list[MonthContext]], None]] = {
    "environment": phases.environment.run_batch,  # 1
    "borrowers": phases.borrowers.run_batch,  # 2
    "lenders": phases.lenders.run_batch,  # 3
    "defaults": phases.defaults.run_batch,  # 4
    "sites": phases.sites.run_batch,  # between 4 and 5
    "market": phases.market.run_batch,  # 6
    "sweep": phases.market.sweep_batch,  # the sale-proceeds sweep after phase 6
    "prices": phases.prices.run_batch,  # 7
    "funding": phases.funding.run_batch,  # 8
}
