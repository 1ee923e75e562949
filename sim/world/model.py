"""LiquidationModel: the world of docs/model.md, one month per ``step()``.

One month, in order (docs/model.md section 3):

1. the environment advances (rents, BTC, launches) and scenario shocks land;
2. borrowers earn, pay opex and debt service through the cash waterfall
   (cash, BTC, revolver; what is left unpaid is arrears);
3. lenders mark collateral, test LTV and DSCR covenants, collect on margin calls and decide
   which loans maturing next month roll over (only those that still qualify);
4. defaults (arrears past the grace period, margin calls uncured past the cure period; a DSCR
   breach past the cure period triggers a cash sweep, and a default once it is still open
   ``dscr_default_months`` after the sweep started, if that key is > 0): GPUs are repossessed into
   lender inventory, cash and BTC seized, exposure written off;
5. sell orders: the repo desk (if enabled) first offers repo against inventory, then lenders
   (forced or patient), distressed borrowers (voluntary) and the desk post asks;
6. one uniform-price call auction per generation, newest first; trades settle GPUs and cash;
7. the price index (clearing price, or the best bid when nothing trades) and fundamental values
   update; buyers adapt expectations and regrow capacity;
8. lenders pay funding costs, distressed lenders suffer runs, the funding network is cleared
   (Rogers-Veraart; Eisenberg-Noe when alpha = beta = 1), failures and deleveraging switch on;
9. the month is recorded into preallocated arrays.

All state is in numpy arrays (``model.borrowers``, ``model.lenders``, ``model.buyers``,
``model.loans``); the Mesa agents are views on it. Every random draw comes from ``model.rng``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import mesa
import mesa.model as mesa_model
import networkx as nx
import numpy as np
from mesa.discrete_space import Network

from agents.borrower import KIND_NAMES, MINER, BorrowerBook, BorrowerStatus, Miner, NeoCloud
from agents.buyer import BuyerBook, SalvageBuyer, SecondaryBuyer, floor_price
from agents.lender import Lender, LenderBook
from agents.repo_desk import LastResortBuyer, RepoDesk
from agents.sites import SiteBook
from sim.core.config import ConfigError, Scenario, resolve
from sim.core.environment import Environment
from sim.core.finance import LoanBook
from sim.core.network import funding_book, funding_weights, syndicates
from sim.world import phases
from sim.world.collect import RecordsCollector
from sim.world.eventlog import AGENT_CODE, EventLog

NEVER = 10**9
# the Mesa views built at first use (LiquidationModel.__getattr__)
AGENT_VIEWS = frozenset({"lender_agents", "borrower_agents", "buyer_agents", "salvage",
                         "network_agents", "lender_node", "borrower_node", "guarantor_node",
                         "grid", "panel_agents"})
# Mesa's model logger ("MESA.mesa.model"): its step line, written by LiquidationModel.run too
_MESA_LOG = getattr(mesa_model, "_mesa_logger", None) or logging.getLogger("MESA.mesa.model")
ENGINES = ("compiled", "numpy")  # the phases' kernels (sim.world.kernels), or numpy alone
# records written only with sites.enabled (MW, $; docs/model.md, "Power and cooling")
SITE_RECORDS = ("site_mw_borrowers", "site_mw_lenders", "site_mw_repossessed", "site_mw_sold",
                "site_mw_retired", "site_sale_proceeds", "hosting_income",
                "buyer_spare_mw_air", "buyer_spare_mw_liquid", "buyer_mw_converting",
                "buyer_mw_converted", "miner_mw_hosting")
OUTSIDE_FLOWS = ("tenants", "opex", "payouts", "btc_sales", "salvage", "estate_surplus",
                 "unpaid_suppliers",
                 "buyer_capital", "funding_outside", "holding_costs", "other_loans",
                 "policy_funding")


def lead_of(rows_b: np.ndarray, rows_l: np.ndarray, n_borrowers: int) -> np.ndarray:
    """The lead lender of each facility: the lender of its first (largest) row."""
    lead = np.full(n_borrowers, -1, dtype=np.int64)
    if len(rows_b):
        first = np.r_[True, rows_b[1:] != rows_b[:-1]]
        lead[rows_b[first]] = rows_l[first]
    return lead


def _resolve_args(scenario, rng, seed, months, overrides, params) -> Scenario:
    """The validated scenario of :class:`LiquidationModel`'s arguments; ``rng`` and ``seed``
    are one integer seed (both given and different is an error)."""
    for name, value in (("rng", rng), ("seed", seed)):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, int | np.integer)):
            raise ConfigError(f"{name} = {value!r}: expected an integer seed (liqsim records "
                              "the seed it runs), or None for the scenario's")
    if rng is not None and seed is not None and int(rng) != int(seed):
        raise ConfigError(f"rng = {rng} and seed = {seed}: pass one seed")
    chosen = rng if rng is not None else seed
    if params:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ConfigError("overrides: give them as a mapping {key: value} when keyword "
                              "overrides are also given")
        overrides = {**(overrides or {}), **params}
    return resolve(Scenario() if scenario is None else scenario, overrides,
                   None if chosen is None else int(chosen), months)


def _engine(engine: str | None) -> str:
    """The engine a model runs its phases on: ``engine``, else the environment variable
    ``LIQSIM_ENGINE``, else ``"compiled"``. Both give the same bits (the numpy phases are the
    oracle of the compiled kernels, ``tests/world/test_engines.py``)."""
    chosen = os.environ.get("LIQSIM_ENGINE", "compiled") if engine is None else engine
    if chosen not in ENGINES:
        where = "engine" if engine is not None else "LIQSIM_ENGINE"
        raise ConfigError(f"{where} = {chosen!r}: expected one of {', '.join(ENGINES)}")
    return chosen


# the event log's agent code of each borrower kind (KIND_NAMES' order)
KIND_AGENT = np.array([AGENT_CODE[k] for k in KIND_NAMES], dtype=np.int64)


class LiquidationModel(mesa.Model):
    """The GPU liquidation market, one month per ``step()``.

    ``LiquidationModel(scenario=None, rng=None, *, seed=None, months=None, overrides=None,
    **params)``:

    * ``scenario``: a :class:`~sim.core.config.Scenario`, a shipped scenario's name
      (``"crypto_winter"``) or a TOML path; None is the baseline;
    * ``rng`` (or its alias ``seed``, the name ``mesa.batch_run`` passes): an integer seed;
      None keeps the scenario's seed. The seed used is the one recorded (``model.cfg.seed``,
      ``summary()["seed"]``): the same scenario and seed give identical results;
    * ``months``: the horizon, overriding the scenario's;
    * ``engine``: ``"compiled"`` (the phases' numba kernels where a phase has one for the
      scenario's switches) or ``"numpy"`` (the numpy phases alone, the kernels' oracle); None
      reads ``LIQSIM_ENGINE``, else ``"compiled"``. Both give the same bits;
    * ``overrides`` and ``**params``: config keys with typed values, ``{"policy.repo.enabled":
      True}`` (in ``params`` a dotted key needs ``**{...}``; ``policy__repo__enabled=True``
      works as a plain keyword), so ``mesa.batch_run(LiquidationModel, parameters={"scenario":
      "crypto_winter", "policy.repo.enabled": [False, True]}, rng=[1, 2])`` sweeps them.

    Bad input raises :class:`~sim.core.config.ConfigError` with a one-line message.
    ``model.datacollector`` reads the model's own records (nothing is collected per step).
    """

    def __init__(self, scenario: Scenario | str | Path | None = None, rng: int | None = None,
                 *, seed: int | None = None, months: int | None = None,
                 overrides: Mapping[str, Any] | Iterable[str] | None = None,
                 engine: str | None = None, **params: Any):
        cfg = _resolve_args(scenario, rng, seed, months, overrides, params)
        chosen = _engine(engine)
        super().__init__(rng=cfg.seed)
        self.engine = chosen
        self.cfg = cfg
        self.env = Environment(cfg, self.rng)
        self.borrowers = BorrowerBook(cfg, self.env, self.rng)
        self.lenders = LenderBook(cfg, self.env.n_gen, self.rng)
        self.buyers = BuyerBook(cfg, self.env)
        self.buyers_value0 = self.buyers.fundamental(self.env)
        self.n_gen = self.env.n_gen
        self.salvage_units = np.zeros(self.n_gen, dtype=np.int64)
        self.external_units = np.zeros(self.n_gen, dtype=np.int64)  # parametric-mode buyers
        self.flows = dict.fromkeys(OUTSIDE_FLOWS, 0.0)
        self.buyers_paid = 0.0  # secondary buyers' purchases at cost ($, cumulative)
        self.events = EventLog()  # one row of events.parquet per event
        # what the compiled phases keep between months (sim.world.phases.*, by phase name, and
        # "orders_ones", "orders_out", "market_draws", "market_sweep"), made at a phase's
        # first compiled month (a few remade when what they
        # depend on changes: the record dict, the books' sizes, the market's switches): values
        # read from the configuration, scratch arrays a kernel writes and the phase reads back
        # in the same month, output arrays a book may be rebound to (the phase then puts a new
        # one in their place), a cache the environment's kernel keeps between months (a growth
        # row and its mu, recomputed when the mu changes) and the record arrays the record's
        # kernel writes to
        self.kernel_inputs: dict[str, object] = {}
        self._originate()
        # value in best use depends on the environment and the buyer types only, and neither
        # has moved since buyers_value0 (the origination draws loans, not the environment)
        self.fundamental = self.buyers_value0.copy()
        self.price = self.fundamental.copy()
        self.bidding = np.ones(self.buyers.n, dtype=bool)  # buyers able to bid this month
        # participation draws get their own child stream (spawning draws nothing), so switching
        # the search friction on or off leaves the rent, BTC and default paths of a seed alone
        self.search_rng = self.rng.spawn(1)[0]
        # borrowers' sites (sites.enabled): drawn from a child stream spawned after the search
        # stream, so neither the search draws nor the main stream move
        self.sites = (SiteBook(cfg, self.env, self.borrowers, self.buyers, self.rng.spawn(1)[0])
                      if cfg.sites.enabled else None)
        # the cooling each generation needs, as phase 6 passes it to the buyers
        self.liquid = ([bool(x) for x in self.sites.liquid_gen] if self.sites is not None
                        else [False] * self.n_gen)
        self.price_hist = np.zeros((cfg.months + 1, self.n_gen))
        self.price_hist[0] = self.price
        self.desk = RepoDesk(self, cfg.policy.repo, self.n_gen, cfg.months, self.borrowers.n)
        self.desk.maturity_l = np.zeros(self.lenders.n, dtype=np.int64)
        # the buyer of last resort (policy.lolr.enabled), None when off
        self.lolr = (LastResortBuyer(cfg.policy.lolr, self.n_gen, cfg.months)
                     if cfg.policy.lolr.enabled else None)
        self.units0 = self.gpu_units()
        self._cash0 = self.total_cash()
        self._init_records()
        # the clearing's liabilities and external assets, with outside creditors as
        # node n (they owe nothing and hold nothing here): refilled every month
        self.clearing_liab = np.zeros((self.lenders.n + 1, self.lenders.n + 1))
        self.clearing_ext = np.zeros(self.lenders.n + 1)
        phases.funding.clear_funding(self)
        self.equity0 = self.lenders.equity.copy()
        self.assets0 = self.lenders.assets.copy()
        self.interbank0 = self.interbank.copy()
        phases.market.build(self)  # the arrays phase 6 writes in place
        phases.sites.build(self)  # arrays the sites' month writes in place (arbitrage)
        phases.prices.prepare(self)  # the buyers' MW regrown a month, which phase 7 reads
        phases.record.run(self)

    # ================================================================ set-up
    def _originate(self) -> None:
        """Loans, revolvers, opening cash and lender balance sheets at t0."""
        cfg, env, b, lb = self.cfg, self.env, self.borrowers, self.lenders
        rows_b, rows_l, share = syndicates(b.n, lb.n, cfg.network, self.rng)
        pledged = b.pledged_btc * env.btc
        facility = b.ltv0 * (b.cost_basis(env) + pledged)
        age = self.rng.integers(0, cfg.borrowers.loan_age_max + 1, b.n)
        age = np.minimum(age, np.maximum(b.term - 2, 0))
        outstanding = facility * np.maximum(1.0 - b.amort_rate * age / 12.0, 0.05)
        # the world at t0 has no loan in breach: a facility whose amortised balance exceeds
        # ltv_cure x its collateral at the lead lender's t0 mark was already restructured to it
        t0_marks = lb.marks(env, self.buyers_value0[None, :], 0, 1)
        coll0 = (b.fleet * t0_marks[np.maximum(lead_of(rows_b, rows_l, b.n), 0)]).sum(axis=1) \
            + pledged
        cure = phases.lenders.covenant(self, cfg.lenders.ltv_cure)
        outstanding = np.minimum(outstanding, cure * coll0)
        instalment = facility * b.amort_rate / 12.0
        rate = cfg.environment.sofr + b.spread
        lead = lead_of(rows_b, rows_l, b.n)
        self.lead = lead
        self.revolver_limit = b.revolver_share * facility
        n_rows = len(rows_b)
        self.loans = LoanBook(
            borrower=np.r_[rows_b, np.arange(b.n)],
            lender=np.r_[rows_l, lead],
            principal=np.r_[share * outstanding[rows_b], np.zeros(b.n)],
            orig_amort=np.r_[share * instalment[rows_b], np.zeros(b.n)],
            rate=np.r_[rate[rows_b], rate],
            maturity=np.r_[(b.term - age)[rows_b], np.full(b.n, NEVER)],
            revolver=np.r_[np.zeros(n_rows, bool), np.ones(b.n, bool)],
        )
        rev, opex = b.operating(env)
        ds = outstanding * rate / 12.0 + instalment
        b.cash = b.cash_months * (opex + ds)
        # lenders: loans + cash are external assets; funding network on top
        loans_l = self.loans.by_lender(self.loans.exposure, lb.n)
        if lb.has_other:  # other loans: GPU loans are gpu_share of the loan book
            lb.other_loans = loans_l * (1.0 - lb.gpu_share) / lb.gpu_share
            loans_l = loans_l + lb.other_loans
        lb.cash = lb.cash_share / np.maximum(1.0 - lb.cash_share, 1e-9) * loans_l
        ext = loans_l + lb.cash
        w = funding_weights(lb.n, cfg.network, self.rng)
        self.interbank, lb.outside = funding_book(ext, lb.interbank_share, lb.capital_ratio0, w)

    def __getattr__(self, name: str):
        """The Mesa agents and their network (:data:`AGENT_VIEWS`) are built at their first
        use (:meth:`_make_agents`): a run reads and writes the arrays only, and building the
        views was half the cost of building a model, paid twice a run in a sweep (the run and
        its cascade counterfactual). Called only for attributes not found otherwise."""
        if name in AGENT_VIEWS and "_views_made" not in self.__dict__:
            self._make_agents()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def agents(self):
        """Mesa's set of all agents (the views are built first, :meth:`__getattr__`)."""
        self._make_agents()
        return super().agents

    @property
    def agents_by_type(self):
        self._make_agents()
        return super().agents_by_type

    @property
    def agent_types(self) -> list[type]:
        self._make_agents()
        return super().agent_types

    def _make_agents(self) -> None:
        """Mesa agents as views on the arrays, placed on a Mesa Network of the whole graph
        (once; the repo desk, a Mesa agent that holds state, is made with the model). The
        views draw nothing from the model's random streams, so when they are built does not
        change a run. If the build raises (an interrupt, say), what it did is undone (the
        agents it made deregistered, the desk taken off the new grid, the views deleted) and
        the error propagates: the next use builds the views again."""
        if "_views_made" in self.__dict__:
            return
        # set first, so that a use of a view inside the build raises AttributeError (as the
        # build is not done) rather than starting it again
        self._views_made = True
        first_id = self.agent_id_counter  # Mesa numbers the agents it registers from here
        desk_placed = self.desk.cell is not None
        try:
            self._build_views()
        except BaseException:
            for a in list(super().agents):
                if a.unique_id >= first_id:
                    self.deregister_agent(a)
            if not desk_placed and self.desk.cell is not None:
                self.desk.cell.remove_agent(self.desk)
                self.desk._mesa_cell = None  # a FixedAgent's cell is set once: as Mesa's remove
            for name in AGENT_VIEWS:
                self.__dict__.pop(name, None)
            del self._views_made
            raise

    def _build_views(self) -> None:
        """The body of :meth:`_make_agents`: the views, the network and its grid."""
        b, lb = self.borrowers, self.lenders
        self.lender_agents = [Lender(self, i) for i in range(lb.n)]
        cls = {MINER: Miner}
        self.borrower_agents = [cls.get(int(k), NeoCloud)(self, i) for i, k in enumerate(b.kind)]
        self.buyer_agents = [SecondaryBuyer(self, k) for k in range(self.buyers.n)]
        self.salvage = SalvageBuyer(self)
        self.network_agents = (self.lender_agents + self.borrower_agents + self.buyer_agents
                               + [self.salvage, self.desk])
        names = {Lender: "L", Miner: "M", NeoCloud: "N", SecondaryBuyer: "S"}
        for node, a in enumerate(self.network_agents):
            a.node = node
            prefix = names.get(type(a))
            a.name = f"{prefix}{a.idx}" if prefix else a.kind
        self.lender_node = np.arange(lb.n)
        self.borrower_node = lb.n + np.arange(b.n)
        hyps = [a.node for a in self.buyer_agents if a.kind == "hyperscaler"]
        self.guarantor_node = hyps[0] if hyps else None
        g = nx.Graph()
        # nodes 0..N-1 in order, then their names: the same graph as adding (node, {"name": ..})
        # pairs, without networkx's TypeError round trip on every pair
        g.add_nodes_from(range(len(self.network_agents)))
        nx.set_node_attributes(g, {a.node: a.name for a in self.network_agents}, "name")
        r = self.loans.exposure > 0
        g.add_edges_from(zip(self.lender_node[self.loans.lender[r]].tolist(),
                             self.borrower_node[self.loans.borrower[r]].tolist(), strict=True))
        self.grid = Network(g, layout=None, random=self.random)
        for a in self.network_agents:
            a.cell = self.grid[a.node]
        self.panel_agents = self.lender_agents + self.borrower_agents + self.buyer_agents

    # ================================================================ accounting views
    def gpu_units(self) -> np.ndarray:
        """GPU units per generation held anywhere, salvage sink included (conserved)."""
        return (self.borrowers.fleet.sum(axis=0) + self.lenders.inventory.sum(axis=0)
                + self.buyers.holdings.sum(axis=0) + self.desk.holdings + self.salvage_units
                + self.external_units + (0 if self.lolr is None else self.lolr.holdings))

    def total_cash(self) -> float:
        """Cash of every agent (buyers' capital counts when buyers are finite)."""
        buyers = 0.0 if self.buyers.unlimited else float(self.buyers.capital.sum())
        cash = float(self.borrowers.cash.sum() + self.lenders.cash.sum() + self.desk.cash
                     + buyers)
        return cash if self.lolr is None else cash + self.lolr.cash

    def add_outside_flow(self, key: str, amount: float) -> None:
        """Count ``amount`` of cash into (+) or out of (-) the model from outside under ``key``
        (``self.flows``: what the monthly cash identity allows besides transfers)."""
        self.flows[key] += float(amount)

    def log_event(self, name: str, agent: str, idx, gen=-1, units=0, amount=0.0, price=0.0):
        """Log one event of this month (a row of ``events.parquet``)."""
        self.events.add_one(self.env.t, name, agent, idx, gen, units, amount, price)

    def log_events(self, name, agent, idx: np.ndarray, gen=-1, units=0, amount=0.0,
                price=0.0) -> None:
        """Log one event per entry of ``idx`` at once (a vectorised :meth:`log_event`): each other
        field is one value for all, or an array along ``idx`` (for ``name`` and ``agent`` a
        list of strings or an array of codes, :meth:`EventLog.add`)."""
        self.events.add(self.env.t, name, agent, idx, gen, units, amount, price)

    def kind_agents(self, idx: np.ndarray) -> np.ndarray:
        """The event log's agent code of ``miner`` / ``neocloud`` for each borrower in ``idx``
        (the agent of a borrower's events)."""
        return KIND_AGENT[self.borrowers.kind[idx]]

    @property
    def month(self) -> int:
        return self.env.t

    @property
    def datacollector(self):
        """Mesa's ``DataCollector`` interface over the model's records (:mod:`sim.world.collect`):
        built when read, it costs nothing while the model runs. A subclass may assign its own
        (a Mesa ``DataCollector``), which then replaces it."""
        own = self.__dict__.get("_own_datacollector")
        if own is not None:
            return own
        return RecordsCollector(self)

    @datacollector.setter
    def datacollector(self, value) -> None:
        self._own_datacollector = value

    # ================================================================ the month
    def step(self) -> None:
        """One month: the nine phases of docs/model.md section 3, each a module of
        :mod:`sim.world.phases`. Phase 1 returns the month's :class:`~sim.world.state.MonthState`
        (filled by phase 3, read by phases 4, 5 and 7); phase 5 returns the month's
        :class:`~sim.world.state.SellOrders` (read by phase 6). (:data:`sim.world.stack.MONTH`
        lists the same phases for R runs in lockstep.)"""
        if self.env.t >= self.cfg.months:
            self.running = False
            return
        month = phases.environment.run(self)  # 1
        phases.borrowers.run(self)  # 2
        if self.lolr is not None:
            phases.policies.lolr_operate(self)
        phases.lenders.run(self, month)  # 3
        phases.defaults.run(self, month)  # 4
        if self.sites is not None:  # site sales, hosting in place, conversion, arbitrage
            phases.sites.run(self)
        orders = phases.orders.run(self, month)  # 5
        phases.market.run(self, orders)  # 6
        phases.market.sweep_sale_proceeds(self)
        phases.prices.run(self, month)  # 7
        phases.funding.run(self)  # 8
        phases.policies.pay_funding(self)
        phases.record.run(self)  # 9
        if self.env.t >= self.cfg.months:
            self.running = False

    def run(self, on_month: Callable[[int], None] | None = None) -> LiquidationModel:
        """Step month by month to the horizon (calling ``on_month(month)`` after each).

        Each month is what ``model.step()`` does. Without ``on_month`` (which could schedule
        Mesa events between months), and when Mesa's default step schedule is all that is
        scheduled (:meth:`_plain_schedule`), the months are stepped directly, without
        Mesa's event-list round trip (popping the step event, a new Event with its weak
        reference pushed each month, the log line formatted whether or not it is logged:
        about 1.4 ms of a 22 ms crypto_winter run), and Mesa's state is left exactly as
        ``model.step()`` would leave it: ``steps``, ``time`` (set once a month before the
        month runs, as Mesa sets it, so observers see the same changes), the schedule's
        execution count and its next event, also when a month raises
        (``tests/world/test_model_run.py`` compares both paths). Otherwise each month goes
        through ``model.step()``."""
        gen = self._plain_schedule() if on_month is None else None
        if gen is None:
            while self.running and self.env.t < self.cfg.months:
                self.step()
                if on_month is not None:
                    on_month(self.month)
            return self
        user_step, log = self._user_step, _MESA_LOG.isEnabledFor(logging.INFO)
        done, stepping = 0, False
        try:
            while self.running and self.env.t < self.cfg.months:
                self.direct_month_start(log)
                stepping = True
                user_step()
                stepping = False
                done += 1
        finally:
            self.direct_months_end(gen, done, stepping)
        return self

    def direct_month_start(self, log: bool) -> None:
        """Before a month stepped directly (:meth:`run`; :class:`sim.world.stack.RunStack`):
        Mesa's ``_advance_time`` and ``_do_step`` for the one event due at time + 1 (time,
        steps, and the step's log line when ``log``, Mesa's logger enabled for INFO)."""
        self.time = self.time + 1.0
        self.steps += 1
        if log:
            _MESA_LOG.info(f"Step {self.steps} at time {self.time}")

    def direct_months_end(self, gen, done: int, stepping: bool) -> None:
        """After ``done`` months stepped directly, the last of them unfinished if
        ``stepping`` (it raised): Mesa's schedule ``gen`` (:meth:`_plain_schedule`) and event
        list as ``done`` calls of ``model.step()`` leave them."""
        if done or stepping:
            # the step event due at the first month, popped as Mesa pops each one it runs
            self._event_list.pop_event()
            gen._execution_count += done
            if not stepping:  # the next month's event, as Mesa schedules it
                gen._schedule_next(self.time + 1.0)
            elif done:  # a month that raised: its event (made by the month before) was
                # popped and none made after it
                gen._schedule_next(self.time)
                self._event_list.pop_event()

    def _plain_schedule(self):
        """Mesa's default step schedule (an ``EventGenerator``) when stepping months directly
        leaves Mesa's state as ``model.step()`` would: the schedule is active, unpaused, every
        1.0 time unit without end or count, it runs Mesa's own ``_do_step`` with this model's
        step unreplaced, no simulator drives time, and its next event, due at ``time + 1``, is
        the only event on the event list. Else None, also when any of Mesa 3.5's internals
        read here or by :meth:`run` is missing (a changed Mesa falls back to ``model.step()``)."""
        try:
            gen = self.__dict__["_default_schedule"]
            events = self._event_list._events
            ev = gen._current_event
            if (ev is None or len(events) != 1 or events[0] is not ev or ev.CANCELED
                    or ev.time != self.time + 1.0 or self._simulator is not None
                    or self.__dict__.get("step") != self._wrapped_step
                    or type(self)._do_step is not mesa.Model._do_step):
                return None
            sched = gen.schedule
            if (not gen._active or gen._paused or sched.interval != 1.0
                    or sched.end is not None or sched.count is not None
                    or gen.function() != self._do_step
                    or not isinstance(gen._execution_count, int)
                    or not callable(gen._schedule_next)
                    or not callable(self._event_list.pop_event)):
                return None
        except (AttributeError, KeyError, TypeError):
            return None
        return gen

    # ================================================================ records
    def _init_records(self) -> None:
        n = self.cfg.months + 1
        # the outside demand (docs/model.md "Outside demand"), replacing the salvage sink
        self.outside_demand = self.cfg.buyers.outside_demand
        self.outside_on = bool(self.outside_demand.enabled)
        self.ead_total = 0.0
        self.recovered_total = 0.0
        self.paper_recovery = 0.0
        self.forced_value = 0.0
        self.forced_fundamental = 0.0
        self.new_defaults = np.zeros(2, dtype=np.int64)
        # reset_month's NaN row (copied: a copy of an array costs a fifth of np.full's call)
        self._nan_gen = np.full(self.n_gen, np.nan)
        self._nan_gen.flags.writeable = False
        self.reset_month()
        # the generation whose buyer capacity is recorded (H100, else the first)
        self.h100 = self.env.names.index("H100") if "H100" in self.env.names else 0
        # the salvage price per generation (the floor of phase 5's asks and phase 7's quotes;
        # read only): list prices never change
        self.salvage_price = floor_price(self.cfg.buyers, self.env)
        if self.outside_on:
            # value in best use at repossession of each lender's inventory, units-weighted
            self.rep_value = np.zeros((self.lenders.n, self.n_gen))
            self.forced_rep_value = 0.0
            # the last price that was news (set by secondary buyers), its value and month
            self.news_price = self.price.copy()
            self.news_value = self.fundamental.copy()
            self.news_t = np.zeros(self.n_gen)
        # generations newest first, the order phase 6 settles them in (launch months are fixed)
        self.newest_first = (-self.env.launch).argsort(kind="stable").tolist()
        g = self.n_gen
        self.rec = {
            "btc": np.zeros(n), "hashprice": np.zeros(n), "stress": np.zeros(n, bool),
            "rent": np.zeros((n, g)), "price": np.zeros((n, g)), "fundamental": np.zeros((n, g)),
            "volume": np.zeros((n, g), np.int64), "forced_volume": np.zeros((n, g), np.int64),
            "overhang": np.zeros((n, g), np.int64), "salvage": np.zeros((n, g), np.int64),
            "defaults_miner": np.zeros(n, np.int64), "defaults_neocloud": np.zeros(n, np.int64),
            "credit_losses": np.zeros(n), "writeoffs": np.zeros(n), "recoveries": np.zeros(n),
            "lender_failures": np.zeros(n, np.int64), "lenders_deleveraging": np.zeros(n, np.int64),
            "lender_equity": np.zeros(n), "inventory_units": np.zeros(n, np.int64),
            "repo_lent": np.zeros(n), "repo_units": np.zeros(n, np.int64),
            "buyer_capacity_h100": np.zeros(n), "forced_value": np.zeros(n),
            "forced_fundamental": np.zeros(n), "max_fill_above_reservation": np.zeros(n),
        }
        if self.outside_on:  # new records only with the switch (the golden record is unchanged)
            self.rec["forced_repossession_value"] = np.zeros(n)
            self.rec["outside_pinned"] = np.zeros((n, g), bool)
        if self.sites is not None:  # records of the sites (their keys only with sites on)
            for key in SITE_RECORDS:
                self.rec[key] = np.zeros(n)
        n_agents = self.lenders.n + self.borrowers.n + self.buyers.n  # panel_agents' order
        self.panel = {"cash": np.zeros((n, n_agents)), "size": np.zeros((n, n_agents)),
                      "state": np.zeros((n, n_agents), np.int8)}

    def reset_month(self) -> None:
        """Zero the market counters that phase 6 fills and phase 9 records (new arrays each
        month; ``clearing`` all NaN). The numpy phase 6's; the compiled one zeroes the same
        arrays in place (:func:`sim.world.phases.market.start_month`)."""
        self.traded = np.zeros(self.n_gen, dtype=bool)
        self.clearing = self._nan_gen.copy()  # (a copy is writeable)
        self.month_volume = np.zeros(self.n_gen, dtype=np.int64)
        self.month_forced = np.zeros(self.n_gen, dtype=np.int64)
        self.month_overhang = np.zeros(self.n_gen, dtype=np.int64)
        self.month_salvage = np.zeros(self.n_gen, dtype=np.int64)
        self.month_above_reservation = 0.0
        if self.outside_on:
            self.month_pinned = np.zeros(self.n_gen, dtype=bool)

    def buyer_capacity_units(self, g: int) -> float:
        """Units of generation g buyers could still absorb at today's prices."""
        if self.buyers.unlimited:
            return float("inf")
        price = max(float(self.price[g]), 1.0)  # the same double as np.maximum
        return self.buyers.capacity_total(price, self.env.kw[g], self.liquid[g])



    # ================================================================ checks
    def invariants(self, tol: float = 1e-6) -> list[str]:
        """The accounting identities of docs/model.md section 7.22; returns the violations."""
        bad = []
        units = self.gpu_units()
        if not np.array_equal(units, self.units0):
            bad.append(f"GPU units not conserved: {units.tolist()} vs {self.units0.tolist()}")
        drift = self.total_cash() - self._cash0 - sum(self.flows.values())
        # plus a rounding allowance on the money that moved (1e-12 of the outside flows, about
        # 1e4 double roundings): with no opening cash, 1.4e-6 $ of rounding on 1e10 $ of flows
        # exceeded tol x max(1, cash0) = 1e-6 $; where cash0 is large the check is unchanged
        scale = max(1.0, abs(self._cash0))
        if abs(drift) > tol * scale + 1e-12 * sum(abs(v) for v in self.flows.values()):
            bad.append(f"cash transfers do not net to zero: residual {drift:.6g}")
        lb = self.lenders
        losses = lb.credit_losses.sum()
        if abs(losses - (self.ead_total - self.recovered_total)) > tol * max(1.0, self.ead_total):
            bad.append(f"credit losses {losses:.6g} != write-offs - recoveries "
                       f"{self.ead_total - self.recovered_total:.6g}")
        if abs(lb.claim_pool.sum() - losses) > tol * max(1.0, self.ead_total):
            bad.append("unrecovered claims do not match credit losses")
        arrays = [self.price, self.fundamental, lb.cash, lb.equity, self.borrowers.cash,
                  self.loans.principal, self.interbank, self.buyers.capital, lb.outside]
        if not all(np.isfinite(a).all() for a in arrays):
            bad.append("NaN or infinity in the state")
        if (self.price < 0).any():
            bad.append(f"negative price {self.price.tolist()}")
        if (self.borrowers.fleet < 0).any() or (lb.inventory < 0).any():
            bad.append("negative GPU holdings")
        if self.month_above_reservation > 1e-9:
            bad.append(f"fill above reservation by {self.month_above_reservation:.6g}")
        if self.sites is not None:
            gap = self.sites.imbalance(self.buyers)
            if abs(gap) > tol * max(1.0, self.sites.mw0):
                bad.append(f"MW not conserved across holders: residual {gap:.6g} MW")
        dead = self.borrowers.status == BorrowerStatus.DEFAULTED
        if (lb.cash.min() < -tol * scale or self.desk.cash < -tol * scale
                or (self.borrowers.cash[dead] < 0).any()):
            bad.append("negative cash (lenders, repo desk or defaulted borrowers)")
        return bad
