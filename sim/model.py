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

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mesa
import networkx as nx
import numpy as np
from mesa.discrete_space import Network

from agents.borrower import KIND_NAMES, MINER, BorrowerBook, BorrowerStatus, Miner, NeoCloud
from agents.buyer import (
    MONTH_DAYS,
    BuyerBook,
    SalvageBuyer,
    SecondaryBuyer,
    floor_price,
    replacement_cost,
)
from agents.lender import Lender, LenderBook, LenderStatus
from agents.repo_desk import LastResortBuyer, RepoDesk
from agents.sites import SiteBook
from sim import losses
from sim import numerics as nm
from sim.collect import RecordsCollector
from sim.config import ConfigError, Scenario, resolve
from sim.contagion import rogers_veraart_state
from sim.environment import HOURS_PER_MONTH, Environment
from sim.finance import LoanBook, largest_remainder, scheduled_payment
from sim.market import clear_book, outside_bids, parametric_price
from sim.network import funding_book, funding_weights, syndicates

NEVER = 10**9
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


def _column(x, kind: type, n: int) -> list:
    """One field of ``n`` events: a list as is, an array as Python numbers, else ``n`` copies."""
    if isinstance(x, np.ndarray):
        return x.astype(kind, copy=False).tolist()
    if isinstance(x, list):
        return x
    return [kind(x)] * n


class LiquidationModel(mesa.Model):
    """The GPU liquidation market, one month per ``step()``.

    ``LiquidationModel(scenario=None, rng=None, *, seed=None, months=None, overrides=None,
    **params)``:

    * ``scenario``: a :class:`~sim.config.Scenario`, a shipped scenario's name
      (``"crypto_winter"``) or a TOML path; None is the baseline;
    * ``rng`` (or its alias ``seed``, the name ``mesa.batch_run`` passes): an integer seed;
      None keeps the scenario's seed. The seed used is the one recorded (``model.cfg.seed``,
      ``summary()["seed"]``): the same scenario and seed give identical results;
    * ``months``: the horizon, overriding the scenario's;
    * ``overrides`` and ``**params``: config keys with typed values, ``{"policy.repo.enabled":
      True}`` (in ``params`` a dotted key needs ``**{...}``; ``policy__repo__enabled=True``
      works as a plain keyword), so ``mesa.batch_run(LiquidationModel, parameters={"scenario":
      "crypto_winter", "policy.repo.enabled": [False, True]}, rng=[1, 2])`` sweeps them.

    Bad input raises :class:`~sim.config.ConfigError` with a one-line message.
    ``model.datacollector`` reads the model's own records (nothing is collected per step).
    """

    def __init__(self, scenario: Scenario | str | Path | None = None, rng: int | None = None,
                 *, seed: int | None = None, months: int | None = None,
                 overrides: Mapping[str, Any] | Iterable[str] | None = None, **params: Any):
        cfg = _resolve_args(scenario, rng, seed, months, overrides, params)
        super().__init__(rng=cfg.seed)
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
        self.events: list[tuple] = []
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
        self._liquid = ([bool(x) for x in self.sites.liquid_gen] if self.sites is not None
                        else [False] * self.n_gen)
        self.price_hist = np.zeros((cfg.months + 1, self.n_gen))
        self.price_hist[0] = self.price
        self.desk = RepoDesk(self, cfg.policy.repo, self.n_gen, cfg.months, self.borrowers.n)
        self.desk.maturity_l = np.zeros(self.lenders.n, dtype=np.int64)
        # the buyer of last resort (policy.lolr.enabled), None when off
        self.lolr = (LastResortBuyer(cfg.policy.lolr, self.n_gen, cfg.months)
                     if cfg.policy.lolr.enabled else None)
        self._make_agents()
        self.units0 = self.gpu_units()
        self._cash0 = self.total_cash()
        self._init_records()
        # the clearing's liabilities and external assets, with outside creditors as
        # node n (they owe nothing and hold nothing here): refilled every month
        self._liab = np.zeros((self.lenders.n + 1, self.lenders.n + 1))
        self._ext = np.zeros(self.lenders.n + 1)
        self._clear_funding()
        self.equity0 = self.lenders.equity.copy()
        self.assets0 = self.lenders.assets.copy()
        self.interbank0 = self.interbank.copy()
        self._record()

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
        outstanding = np.minimum(outstanding, self._covenant(cfg.lenders.ltv_cure) * coll0)
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

    def _make_agents(self) -> None:
        """Mesa agents as views on the arrays, placed on a Mesa Network of the whole graph."""
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
        self.events.append((self.env.t, name, agent, int(idx), int(gen), int(units),
                            float(amount), float(price)))

    def log_events(self, name, agent, idx: np.ndarray, gen=-1, units=0, amount=0.0,
                price=0.0) -> None:
        """Log one event per entry of ``idx`` at once (a vectorised :meth:`log_event`): each other
        field is one value for all, or an array (a list for ``name``, ``agent``) along ``idx``."""
        n = len(idx)
        if n:
            self.events.extend(zip([self.env.t] * n, _column(name, str, n),
                                   _column(agent, str, n), _column(idx, int, n),
                                   _column(gen, int, n), _column(units, int, n),
                                   _column(amount, float, n), _column(price, float, n),
                                   strict=True))

    def _fill_events(self, name: str, agent, idx: list, gen: int, units: list,
                     price: float) -> None:
        """Log the fills ``units`` (Python ints) of the participants ``idx`` at ``price``;
        ``agent`` is one name for all or a list along ``idx``. The amount ``u * price`` of
        a Python int and float is the double that the int64 x float64 product of numpy
        gives (units are far below 2**53, so converting them to float is exact)."""
        t, gen, price = self.env.t, int(gen), float(price)
        if isinstance(agent, str):
            self.events.extend([(t, name, agent, i, gen, u, u * price, price)
                                for i, u in zip(idx, units, strict=True)])
        else:
            self.events.extend([(t, name, a, i, gen, u, u * price, price)
                                for a, i, u in zip(agent, idx, units, strict=True)])

    def _kind_names(self, idx: np.ndarray) -> list[str]:
        """``miner`` / ``neocloud`` for each borrower in ``idx``."""
        return [KIND_NAMES[k] for k in self.borrowers.kind[idx].tolist()]

    @property
    def month(self) -> int:
        return self.env.t

    @property
    def datacollector(self):
        """Mesa's ``DataCollector`` interface over the model's records (:mod:`sim.collect`):
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
        """One month in the nine phases of docs/model.md section 3."""
        if self.env.t >= self.cfg.months:
            self.running = False
            return
        self._phase_environment()
        self._phase_borrowers()
        if self.lolr is not None:
            self._lolr_operate()
        marks = self._phase_lenders()
        self._phase_defaults(marks)
        if self.sites is not None:  # site sales, hosting in place, conversion, arbitrage
            self.sites.month(self)
        books = self._phase_orders(marks)
        self._phase_market(books)
        self._sweep_sale_proceeds()
        self._phase_prices()
        self._phase_funding()
        self._policy_funding()
        self._record()
        if self.env.t >= self.cfg.months:
            self.running = False

    def run(self) -> LiquidationModel:
        while self.running and self.env.t < self.cfg.months:
            self.step()
        return self

    # ---------------------------------------------------------------- 1. environment
    def _phase_environment(self) -> None:
        self.env.step()
        t = self.env.t
        # value in best use depends on the environment only: it is this month's reference
        self.prev_fundamental = self.fundamental
        self.fundamental = self.buyers.fundamental(self.env)
        for s in self.cfg.shocks:
            if s.month != t:
                continue
            if s.kind == "buyer_capital":
                before = self.buyers.capital.sum()
                self.buyers.shock_capital(s.size)
                if not self.buyers.unlimited:  # unlimited buyers' capital is off the books
                    self.add_outside_flow("buyer_capital", self.buyers.capital.sum() - before)
            elif s.kind == "guarantor_exit":
                hit = self.borrowers.guaranteed & (self.rng.random(self.borrowers.n) < s.size)
                self.borrowers.guaranteed &= ~hit
                # loans that roll over from now on are priced without the guarantee
                self.borrowers.spread[hit] = self.borrowers.spread_base[hit]
                self.borrowers.tenant_gone |= hit
                for i in hit.nonzero()[0]:
                    self.log_event("guarantee_withdrawn", "borrower", i)
            elif s.kind == "funding":
                self._run_on(np.ones(self.lenders.n, bool), s.size, outside_only=True)
            elif s.kind == "other_loans":
                self.lenders.shock_other_loans(s.size, s.lender_type)

    # ---------------------------------------------------------------- 2. borrowers
    # (phases 2 to 5 test arrays with ``np.count_nonzero(x)``: ``x.any()`` as a count of the
    # nonzero entries, NaN included, without ndarray.any's wrapper and cast to bool)
    def _phase_borrowers(self) -> None:
        env, b, L = self.env, self.borrowers, self.loans
        c = self.cfg.borrowers
        b.update_contracts(env, self.rng,
                           c.tenant_default_stress if env.stress else c.tenant_default_calm)
        rev, opex = b.operating(env)
        alive = b.alive
        noi = rev - opex
        b.cash += noi
        self.add_outside_flow("tenants", np.add.reduce(rev))  # ndarray.sum's own reduction
        self.add_outside_flow("opex", -np.add.reduce(opex))

        t = env.t
        outstanding = L.principal - L.overdue
        interest, amort = scheduled_payment(L.principal, L.orig_amort, L.rate)
        before_maturity = t < L.maturity  # else the balloon: all that is outstanding is due
        amort = np.where(before_maturity, np.minimum(amort, outstanding), outstanding)
        due_int = np.where(L.active, L.accrued + interest, 0.0)
        due_prin = np.where(L.active, L.overdue + amort, 0.0)
        owed = due_int + due_prin
        due = L.by_borrower(owed, b.n)
        short = np.maximum(due - b.cash, 0.0) * alive

        # pecking order: BTC treasury (unpledged coins), then the revolver
        if self._sell_free_btc(short):
            short = np.maximum(due - b.cash, 0.0) * alive
        self._draw_revolvers(short)

        pay = np.minimum(np.maximum(b.cash, 0.0), due)
        paid = L.pay(pay, due_int, due_prin, owed=owed, owed_b=due)  # the sums pay() would form
        b.cash -= pay
        self.lenders.cash += L.by_lender(paid, self.lenders.n)

        # L.arrears without its mask: pay() has just set accrued and overdue to due - paid,
        # and at closed rows due_int = due_prin = 0.0 above, so paid = frac x 0.0 = +0.0 and
        # both are +0.0 there, as the mask would make them
        arrears = L.by_borrower(L.accrued + L.overdue, b.n)
        late = (arrears > 1.0) & alive
        b.arrears_months = np.where(late, b.arrears_months + 1, 0)
        # debt-service cover: NOI over scheduled (non-balloon) debt service, smoothed
        sched = L.by_borrower(np.where(L.active & before_maturity, interest +
                                       np.minimum(L.orig_amort, outstanding), 0.0), b.n)
        with np.errstate(over="ignore"):  # a near-repaid loan: NOI / tiny -> inf, clipped
            ratio = np.divide(noi, sched, out=np.full(b.n, 10.0), where=sched > 0)
        clipped = np.minimum(np.maximum(ratio, -10.0), 10.0)
        b.dscr = np.where(alive, 0.5 * b.dscr + 0.5 * clipped, b.dscr)
        self._repay_revolvers()
        # cash above the target buffer leaves the firm (growth capex, dividends, buybacks)
        keep = b.payout_months * (b.opex + due)
        out = np.where(alive & (b.call_months < 0), np.maximum(b.cash - keep, 0.0), 0.0)
        b.cash -= out
        self.add_outside_flow("payouts", -np.add.reduce(out))

    def _sell_free_btc(self, need: np.ndarray) -> bool:
        """Miners sell unpledged BTC (outside market) to raise up to ``need`` dollars each."""
        b, btc = self.borrowers, self.env.btc
        sell = np.minimum(b.btc - b.pledged_btc, need / btc)
        if not np.count_nonzero(sell):
            return False
        b.btc -= sell
        proceeds = sell * btc
        b.cash += proceeds
        self.add_outside_flow("btc_sales", np.add.reduce(proceeds))
        return True

    def _prepay(self, amount: np.ndarray) -> None:
        """An extra payment by each borrower: arrears first, then principal, cash to lenders."""
        b, L, lb = self.borrowers, self.loans, self.lenders
        # pay() reads these arrays and rebinds the book's own (never writes into them): no copies
        paid = L.pay(amount, L.accrued, L.overdue, prepay=L.principal)
        b.cash -= np.bincount(L.borrower, weights=paid, minlength=b.n)  # L.by_borrower
        lb.cash += np.bincount(L.lender, weights=paid, minlength=lb.n)  # L.by_lender

    def _draw_revolvers(self, short: np.ndarray) -> None:
        """Draw the revolver from the lead lender, if it is sound and has the cash."""
        # nobody short: req below is min(0, room >= 0) x ... = 0 everywhere, nothing is drawn
        if not np.count_nonzero(short):
            return
        b, lb, L = self.borrowers, self.lenders, self.loans
        rows, rows_b = L.revolver_rows, L.revolver_borrower
        dense = L.revolver_dense and len(rows_b) == b.n  # revolver k is borrower k's
        if dense:  # the scatter below would write every entry, in order
            if L.revolver_block is not None:  # ... and they are one block: views
                rows = L.revolver_block
            drawn = L.principal[rows]  # only read
        else:
            drawn = np.zeros(b.n)
            drawn[rows_b] = L.principal[rows]
        room = np.maximum(self.revolver_limit - drawn, 0.0)
        req = np.minimum(short, room) * (lb.status[self.lead] == LenderStatus.NORMAL) * b.alive
        if not np.count_nonzero(req):
            return
        req_l = np.bincount(self.lead, weights=req, minlength=lb.n)
        scale = np.divide(np.maximum(lb.cash, 0.0), req_l, out=np.ones(lb.n), where=req_l > 0)
        draw = req * np.minimum(scale, 1.0)[self.lead]
        L.principal[rows] += draw if dense else draw[rows_b]
        b.cash += draw
        lb.cash -= np.bincount(self.lead, weights=draw, minlength=lb.n)

    def _repay_revolvers(self) -> None:
        """Cash above three months of opex repays the revolver."""
        b, L = self.borrowers, self.loans
        blk = L.revolver_block
        if blk is not None and blk.stop - blk.start == b.n:
            # revolver k is borrower k's, in one block of rows: the same repayment computed on
            # views over all revolvers, with rep = +0.0 where the rows below would not be
            # selected (x - 0.0 = x; a +0.0 weight leaves every bincount sum as it is)
            principal = L.principal[blk]
            sel = L.active[blk] & (principal > 0)
            if not np.count_nonzero(sel):
                return
            spare = np.maximum(b.cash - 3.0 * b.opex, 0.0)
            rep = np.minimum(spare, principal - L.overdue[blk])
            rep = np.where(sel, np.maximum(rep, 0.0), 0.0)
            principal -= rep
            b.cash -= rep
            self.lenders.cash += np.bincount(L.lender[blk], weights=rep, minlength=self.lenders.n)
            return
        rows = (L.revolver & L.active & (L.principal > 0)).nonzero()[0]
        if len(rows) == 0:
            return
        bi = L.borrower[rows]
        spare = np.maximum(b.cash[bi] - 3.0 * b.opex[bi], 0.0)
        rep = np.minimum(spare, L.principal[rows] - L.overdue[rows])
        rep = np.maximum(rep, 0.0)
        L.principal[rows] -= rep
        b.cash[bi] -= rep
        self.lenders.cash += np.bincount(L.lender[rows], weights=rep, minlength=self.lenders.n)

    # ---------------------------------------------------------------- 3. lenders
    def _collateral(self, marks: np.ndarray) -> np.ndarray:
        """Collateral value per borrower: its GPUs at the lead lender's mark plus pledged BTC."""
        b = self.borrowers
        lead_marks = marks[np.maximum(self.lead, 0)]
        return np.add.reduce(b.fleet * lead_marks, axis=1) + b.pledged_btc * self.env.btc

    def _facility_ltv(self, marks: np.ndarray, coll: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(debt, collateral value at the lead lender's mark, LTV) per borrower. ``coll``, if
        given, is ``_collateral(marks)`` computed while fleets and pledged BTC were as now."""
        debt = self.loans.by_borrower(self.loans.exposure, self.borrowers.n)
        if coll is None:
            coll = self._collateral(marks)
        ltv = np.divide(debt, coll, out=np.where(debt > 0, np.inf, 0.0), where=coll > 0)
        return debt, coll, ltv

    def _month_debt_coll(self, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(debt, collateral) for phases 4 and 5, reusing phase 3's evaluation of this month.

        Valid for every borrower alive when phase 3 ended: from phase 3 to phase 5 fleets,
        pledged BTC, the BTC price, the lead lenders and ``marks`` do not change except for
        the borrowers defaulting in phase 4 (their GPUs and coins are taken) and the borrowers
        paying off a called facility with pledged coins (``_accelerate``, which re-evaluates
        the cached collateral), and a borrower's
        debt is a bincount over its own rows only, which change only by ``_prepay`` (after
        which phase 3 leaves the debt to be recomputed) or at its own default. Phase 4 reads
        rows of borrowers alive until then; phase 5 reads only rows of living borrowers.
        Anything else (a new month, other marks, a phase run on its own) evaluates afresh.
        """
        c = self._ltv_month  # set by phase 3
        if c is None or c[0] != self.env.t or c[1] is not marks:
            debt, coll, _ = self._facility_ltv(marks)
            return debt, coll
        if c[2] is None:  # debt moved since (a cash sweep): recompute it, keep the collateral
            c[2] = self.loans.by_borrower(self.loans.exposure, self.borrowers.n)
        return c[2], c[3]

    def _covenant(self, level: float) -> float | np.ndarray:
        """An LTV threshold (covenant, cure, t0 cap) per borrower: ``level`` x cov_scale for
        guaranteed borrowers with a raised advance rate (guarantee_ltv / ltv), else ``level``."""
        scale = self.borrowers.cov_scale
        return level if scale is None else level * scale

    def _phase_lenders(self) -> np.ndarray:
        env, b, lb, L, lc = self.env, self.borrowers, self.lenders, self.loans, self.cfg.lenders
        t = env.t
        marks = lb.marks(env, self.price_hist, t - 1, lc.appraisal_lag)
        # the collateral is valued once a month: selling free BTC and prepaying move neither
        # fleets nor pledged coins (see _month_debt_coll)
        coll = self._collateral(marks)
        debt, coll, ltv = self._facility_ltv(marks, coll)
        alive = b.alive
        new_call = alive & (b.call_months < 0) & (ltv > self._covenant(lc.ltv_max))
        called = new_call.nonzero()[0]
        if len(called):
            self.log_events("margin_call", self._kind_names(called), called, amount=debt[called],
                         price=ltv[called])
            b.call_months[new_call] = 0
        open_call = alive & (b.call_months >= 0)
        if np.count_nonzero(open_call):
            need = np.where(open_call, np.maximum(
                debt - self._covenant(lc.ltv_cure) * coll, 0.0), 0.0)
            spare = np.maximum(b.cash - b.opex, 0.0) * open_call
            if self._sell_free_btc(np.maximum(need - spare, 0.0)):
                spare = np.maximum(b.cash - b.opex, 0.0) * open_call  # coins sold: cash moved
            self._prepay(np.minimum(spare, need))
            debt, coll, ltv = self._facility_ltv(marks, coll)
            # paying exactly what was asked (need) cures the call: the debt it leaves can
            # round 1 ulp above ltv_cure x collateral, which must not keep the call open
            cured = open_call & (ltv <= self._covenant(lc.ltv_cure) * (1.0 + 1e-12))
            b.call_months = np.where(cured, -1, np.where(open_call, b.call_months + 1, -1))
        b.dscr_breach = np.where(alive & (b.dscr < lc.dscr_min), b.dscr_breach + 1, 0)
        # DSCR breach past the cure period: a cash sweep (share of cash above a month of opex
        # prepays principal), as in GPU facilities with sweeps of up to 50 % (Blockspace 2025)
        sweep = alive & (b.dscr_breach > lc.cure_months)
        swept = np.count_nonzero(sweep) > 0
        if swept:
            self._prepay(np.where(sweep, lc.cash_sweep * np.maximum(b.cash - b.opex, 0.0), 0.0))
        # [month, marks, debt (None: moved by the sweep), collateral] for phases 4 and 5
        self._ltv_month = [t, marks, None if swept else debt, coll]

        # maturities next month: roll over only loans that still qualify
        due = L.active & L.term & (L.maturity == t + 1)
        if np.count_nonzero(due):
            bi = L.borrower[due]
            refi = lc.refi_ltv if b.cov_scale is None else lc.refi_ltv * b.cov_scale[bi]
            ok = ((ltv[bi] <= refi) & (b.dscr[bi] >= lc.dscr_min)
                  & (b.arrears_months[bi] == 0)
                  & (lb.status[L.lender[due]] == LenderStatus.NORMAL))
            rows = due.nonzero()[0]
            roll = rows[ok]
            L.maturity[roll] += b.term[L.borrower[roll]]
            L.orig_amort[roll] = L.principal[roll] * b.amort_rate[L.borrower[roll]] / 12.0
            L.rate[roll] = self.cfg.environment.sofr + b.spread[L.borrower[roll]]
            refused = rows[~ok]
            if len(refused):
                self.log_events("refinancing_refused", "lender", L.lender[refused],
                             amount=L.principal[refused])
        return marks

    # ---------------------------------------------------------------- 4. defaults
    def _accelerate(self, dscr_default: np.ndarray) -> None:
        """The lender calls (accelerates) the facility of each borrower in ``dscr_default``
        (a DSCR breach past its sweep); a borrower whose cash and coins cover all it owes pays
        it off (selling coins for what cash lacks),
        which ends the breach and is not a default (no loss, no repossession: the event
        ``loan_accelerated_repaid``), and is dropped from ``dscr_default`` in place. Only the
        others default: an event of default becomes a loss only when the borrower cannot pay
        the accelerated debt (Moody's and S&P count a default by missed payment or distressed
        exchange, not by a covenant breach that is repaid)."""
        b, L, btc = self.borrowers, self.loans, self.env.btc
        debt = L.by_borrower(L.exposure, b.n)
        pays = dscr_default & (np.maximum(b.cash, 0.0) + b.btc * btc >= debt)
        if not np.count_nonzero(pays):
            return
        idx = pays.nonzero()[0]
        # coins (pledged ones too: the pledge ends with the loan) are sold for what cash lacks
        sell = np.where(pays, np.minimum(b.btc, np.maximum(debt - b.cash, 0.0) / btc), 0.0)
        pledged_sold = False
        if np.count_nonzero(sell):
            b.btc -= sell
            # pledged coins are sold only where the free ones ran out (b.btc < b.btc_pledged)
            pledged_sold = bool(np.count_nonzero(b.btc < b.btc_pledged))
            b.btc_pledged = np.minimum(b.btc_pledged, b.btc)
            b.cash += sell * btc
            self.add_outside_flow("btc_sales", np.add.reduce(sell * btc))
        self._prepay(np.where(pays, np.minimum(debt, b.cash), 0.0))
        c = self._ltv_month
        if c is not None:
            c[2] = None  # debt moved: phases 4 and 5 recompute it
            if pledged_sold:
                # pledged coins are collateral (fleet x lead mark + pledged BTC x BTC price):
                # phase 3's cached value is stale for the payers; re-evaluate it as phase 3 did
                c[3] = self._collateral(c[1])
        b.dscr_breach[pays] = 0
        self.log_events("loan_accelerated_repaid", self._kind_names(idx), idx, amount=debt[idx])
        dscr_default &= ~pays

    def _phase_defaults(self, marks: np.ndarray) -> None:
        env, b, lb, L, lc = self.env, self.borrowers, self.lenders, self.loans, self.cfg.lenders
        late = b.arrears_months > lc.grace_months
        trig = b.alive & (late | (b.call_months > lc.cure_months))
        # a DSCR breach still open dscr_default_months after its cash sweep started (the sweep
        # runs from breach month cure_months + 1): breach months > cure + dscr_default_months
        dscr_default = None
        if lc.dscr_default_months:
            # the DSCR cause: neither in arrears nor under a margin call past its cure
            dscr_default = (b.alive & (b.dscr_breach > lc.cure_months + lc.dscr_default_months)
                            & ~trig)
            if np.count_nonzero(dscr_default):
                self._accelerate(dscr_default)
            trig = trig | dscr_default
        dead = trig.nonzero()[0]
        if len(dead) == 0:
            return
        payment = late  # read only at ``dead``, which are all alive: the payment defaults
        rows = (L.active & trig[L.borrower]).nonzero()[0]
        ead = L.exposure[rows]
        pos = np.full(b.n, -1)
        pos[dead] = np.arange(len(dead))
        group = pos[L.borrower[rows]]
        ead_b = np.bincount(group, weights=ead, minlength=len(dead))
        if not (ead_b > 0.0).all():
            # a facility that owes nothing (repaid in full, e.g. by this month's cash sweep
            # after its call was counted uncured) has no claim to enforce: its LTV is 0, so
            # the call is cured and the borrower is not defaulted. Never in the golden runs:
            # every facility they default on has a positive exposure.
            void = dead[ead_b <= 0.0]
            b.call_months[void] = -1
            trig[void] = False
            dead = dead[ead_b > 0.0]
            if len(dead) == 0:
                return
            rows = (L.active & trig[L.borrower]).nonzero()[0]
            ead = L.exposure[rows]
            pos[dead] = np.arange(len(dead))
            group = pos[L.borrower[rows]]
            ead_b = ead_b[ead_b > 0.0]
        debt, coll = self._month_debt_coll(marks)
        # repossession: GPUs split over the facility's lenders in proportion to exposure, all
        # generations at once: one apportionment group per (facility, generation), its members
        # in row order as when the generations were split one by one
        n_gen = self.n_gen
        gens = np.arange(n_gen)
        units = largest_remainder(b.fleet[dead].ravel(), np.repeat(ead, n_gen),
                                  (group[:, None] * n_gen + gens).ravel()).reshape(-1, n_gen)
        holder = L.lender[rows]
        per_lender = np.bincount((holder[:, None] * n_gen + gens).ravel(),
                                 weights=units.ravel(), minlength=lb.n * n_gen)
        new_units = per_lender.astype(np.int64).reshape(lb.n, n_gen)
        lb.add_inventory(new_units, env.t)
        if self._outside_on:
            self._note_repossession(new_units)
        got_g, got_r = units.T.nonzero()  # events by generation, then by row
        self.log_events("repossession", "lender", holder[got_r], got_g, units[got_r, got_g])
        # seize cash and BTC (sold at once) up to the exposure
        btc_cash = b.btc[dead] * env.btc
        self.add_outside_flow("btc_sales", btc_cash.sum())
        b.cash[dead] += btc_cash
        b.btc[dead] = 0.0
        b.btc_pledged[dead] = 0.0
        seized = np.minimum(np.maximum(b.cash[dead], 0.0), ead_b)
        b.cash[dead] -= seized
        # unpaid power and running bills (negative cash) are lost by the suppliers
        unpaid = np.minimum(b.cash[dead], 0.0)
        b.cash[dead] -= unpaid
        self.add_outside_flow("unpaid_suppliers", -unpaid.sum())
        rec = seized[group] * np.divide(ead, ead_b[group], out=np.zeros_like(ead),
                                        where=ead_b[group] > 0)
        rec_l = np.bincount(holder, weights=rec, minlength=lb.n)  # holder = L.lender[rows]
        lb.cash += rec_l
        lb.writeoffs += np.bincount(holder, weights=ead, minlength=lb.n)
        lb.recoveries += rec_l
        lb.claim_pool += np.bincount(holder, weights=ead - rec, minlength=lb.n)
        self.ead_total += ead.sum()
        self.recovered_total += rec.sum()
        self.paper_recovery += np.minimum(coll[dead], debt[dead]).sum()
        L.principal[rows] = 0.0
        L.accrued[rows] = 0.0
        L.overdue[rows] = 0.0
        L.active[rows] = False
        b.fleet[dead] = 0
        if self.sites is not None:  # the lead lender takes the site with the GPUs
            self.sites.repossess(dead, self.lead[dead], env.t)
        b.status[dead] = BorrowerStatus.DEFAULTED
        b.call_months[dead] = -1
        reasons = np.where(payment[dead], "default_payment", "default_covenant")
        if dscr_default is not None:
            reasons = np.where(dscr_default[dead], "default_dscr", reasons)
        reasons = reasons.tolist()
        self.log_events(reasons, self._kind_names(dead), dead, units=0, amount=debt[dead],
                     price=coll[dead])
        self.new_defaults = np.bincount(b.kind[dead], minlength=2)

    def _note_repossession(self, new_units: np.ndarray) -> None:
        """Value in best use at repossession of each lender's line, units-weighted (the
        reference of the fire-sale discount with the outside demand): with ``u`` units just
        added to an inventory now ``I`` and this month's value in best use ``V``,
        ``v <- (v (I - u) + u V) / I``; a sale leaves ``v`` as it is."""
        inv = self.lenders.inventory
        self.rep_value = np.divide(self.rep_value * (inv - new_units)
                                   + new_units * self.fundamental[None, :], inv,
                                   out=self.rep_value.copy(), where=new_units > 0)

    # ---------------------------------------------------------------- 5. orders
    def _phase_orders(self, marks: np.ndarray) -> dict:
        env, lb, desk, lc = self.env, self.lenders, self.desk, self.cfg.lenders
        t = env.t
        if self._outside_on:  # the scrap value of the outside demand (replacement cost moves)
            self._salvage_price = floor_price(self.cfg.buyers, env)
        floor = self._salvage_price  # read only: shared with phase 7
        # the repo desk is offered first: it finances forced inventory (each GPU once) so that
        # it need not be dumped; financed GPUs are sold patiently and repay the repo when sold
        if np.count_nonzero(lb.repo_units):  # else zeroing integer zeros changes nothing
            lb.repo_units[lb.repo_debt <= 0] = 0
        if desk.secured:
            return self._secured_orders(marks, floor)
        patient_price = np.maximum(marks * (1.0 - lb.sale_discount)[:, None], floor[None, :])
        if self._outside_on:
            # a patient lender never asks more than the value in best use (no buyer pays more:
            # an ask above it only waits while the GPU ages); never below the scrap value
            patient_price = np.maximum(np.minimum(patient_price, self.fundamental[None, :]),
                                       floor[None, :])
        if not np.count_nonzero(lb.inventory):
            # an empty warehouse: no line is forced (inventory > 0 fails everywhere), so
            # nothing is financed, moved to the desk or repriced, and both books hold 0 units
            zero = np.zeros(lb.inventory.shape, dtype=np.int64)
            return self._borrower_orders(marks, {
                "forced": zero, "patient": zero.copy(), "patient_price": patient_price,
                "floor": floor})
        held = np.where(lb.inv_since >= 0, t - lb.inv_since, 0)
        forced = ((lb.status != LenderStatus.NORMAL)[:, None] | (held >= lc.max_hold_months)) \
            & (lb.inventory > 0)
        patient_units = np.where(forced, 0, lb.inventory)
        financed = np.where(forced, np.minimum(lb.repo_units, lb.inventory), 0)
        patient_units = patient_units + financed
        # the desk's haircuts depend on this month's prices only: computed at most once
        h = None
        if desk.enabled and np.count_nonzero(forced) and desk.room > 0:
            h = desk.haircuts(self.price, self.fundamental)
            lendable = self.price * (1.0 - h)
            fresh = np.where(forced, lb.inventory - financed, 0)
            moved = self._lend_on(fresh, lendable)
            if moved is not None:
                patient_units = patient_units + moved
        forced_units = lb.inventory - patient_units
        # a line financed by repo is sold as soon as a buyer pays what the desk's haircut
        # leaves, (1 - h) x value in best use: no dumping, but no waiting on a book mark either
        if desk.enabled:
            if h is None:
                h = desk.haircuts(self.price, self.fundamental)
            supported = np.maximum((1.0 - h) * self.fundamental, floor)
            repo_line = (lb.repo_units > 0) & forced
            patient_price = np.where(repo_line, np.minimum(patient_price, supported[None, :]),
                                     patient_price)
        return self._borrower_orders(marks, {
            "forced": forced_units, "patient": patient_units, "patient_price": patient_price,
            "floor": floor})

    # ................................................................ secured repo (issue 15)
    def _secured_orders(self, marks: np.ndarray, floor: np.ndarray) -> dict:
        """Phase 5 under ``policy.repo.design = "secured"`` (docs/model.md, "A secured repo"):
        margin, term and defaults on the desk's loans, then new loans against forced
        inventory; financed units stay in the lender's inventory and are sold patiently (at
        its patient price) while the loan runs."""
        env, lb, desk = self.env, self.lenders, self.desk
        t = env.t
        patient_price = np.maximum(marks * (1.0 - lb.sale_discount)[:, None], floor[None, :])
        if self._outside_on:
            patient_price = np.maximum(np.minimum(patient_price, self.fundamental[None, :]),
                                       floor[None, :])
        # haircuts from the price history up to last month (this month's price is not known)
        self._desk_h = desk.secured_haircuts(self.price_hist, t - 1)
        lend_price = (1.0 - self._desk_h) * self.price
        forced = self._secured_lenders(lend_price)
        financed = np.where(forced, np.minimum(lb.repo_units, lb.inventory), 0)
        patient_units = np.where(forced, 0, lb.inventory) + financed
        return self._borrower_orders(marks, {
            "forced": lb.inventory - patient_units, "patient": patient_units,
            "patient_price": patient_price, "floor": floor})

    def _forced_lines(self) -> np.ndarray:
        lb, lc, t = self.lenders, self.cfg.lenders, self.env.t
        held = np.where(lb.inv_since >= 0, t - lb.inv_since, 0)
        return ((lb.status != LenderStatus.NORMAL)[:, None] | (held >= lc.max_hold_months)) \
            & (lb.inventory > 0)

    def _secured_lenders(self, lend_price: np.ndarray) -> np.ndarray:
        """Lenders' secured repo loans: variation margin (loan <= sum of pledged units x
        (1 - h) x price), repayment or roll at term, default (the desk takes the pledged
        units), then new loans on forced lines' unpledged units. Returns the forced lines."""
        lb, desk, t = self.lenders, self.desk, self.env.t
        term = desk.cfg.term_months
        has = lb.repo_debt > 0
        bad = np.zeros(lb.n, dtype=bool)
        if np.count_nonzero(has):
            units = np.minimum(lb.repo_units, lb.inventory)
            allowed = (units * lend_price[None, :]).sum(axis=1)
            debt = lb.repo_debt.copy()
            call = np.where(has, np.maximum(debt - allowed, 0.0), 0.0)
            matured = has & (desk.maturity_l <= t)
            cash = np.maximum(lb.cash, 0.0)
            # at term a lender with no forced line left repays if it can; otherwise it rolls
            repay = matured & ~self._forced_lines().any(axis=1) & (cash >= debt)
            pay = np.where(repay, debt, call)
            ok = cash >= pay
            paid = np.where(ok, pay, 0.0)
            lb.cash -= paid
            lb.repo_debt -= paid
            lb.repo_debt[repay] = 0.0
            lb.repo_units[repay] = 0
            desk.cash += paid.sum()
            desk.lent -= paid.sum()
            desk.cash_repaid[t] += paid.sum()
            desk.margin_received[t] += np.where(ok & ~repay, call, 0.0).sum()
            desk.maturity_l[matured & ok & ~repay] = t + term
            bad = has & ~ok
            if np.count_nonzero(bad):
                d = np.where(bad, lb.repo_debt, 0.0)
                seized = np.where(bad[:, None], units, 0)
                lb.remove_inventory(seized)
                # the debt discharged is what the lender got for the GPUs: its recovery
                rec, _ = lb.apply_recovery(d)
                self.recovered_total += rec.sum()
                lb.repo_debt[bad] = 0.0
                lb.repo_units[bad] = 0
                desk.lent -= d.sum()
                self._desk_take(seized, d)
                idx = bad.nonzero()[0]
                self.log_events("repo_default", "lender", idx, amount=d[idx])
        forced = self._forced_lines()
        if desk.room > 0 and np.count_nonzero(forced):
            fresh = np.where(forced & ~bad[:, None],
                             lb.inventory - np.minimum(lb.repo_units, lb.inventory), 0)
            self._lend_on(fresh, lend_price, maturity=t + term)
        return forced

    def _lend_on(self, fresh: np.ndarray, lend_price: np.ndarray,
                 maturity: int | None = None) -> np.ndarray | None:
        """The desk lends against the lenders' ``fresh`` units (lender x generation) at
        ``lend_price`` per unit, pro rata when its room is short: each line pledges
        floor(units x min(1, room / wanted) + 1e-9) units. Books the loans (lenders' repo debt,
        units and cash; the desk's loans, cash and monthly ``cash_lent``) and logs
        ``repo_loan``; with ``maturity``, a lender's first loan gets that term (the secured
        design). Returns the units pledged, or None when nothing is wanted."""
        lb, desk, t = self.lenders, self.desk, self.env.t
        want = (fresh * lend_price[None, :]).sum(axis=1)
        total = want.sum()
        if not total > 0:
            return None
        frac = min(1.0, desk.room / total)
        moved = np.floor(fresh * frac + 1e-9).astype(np.int64)
        loan = (moved * lend_price[None, :]).sum(axis=1)
        if maturity is not None:
            desk.maturity_l[(loan > 0) & (lb.repo_debt <= 0)] = maturity
        lb.repo_debt += loan
        lb.repo_units += moved
        lb.cash += loan
        desk.lent += loan.sum()
        desk.cash -= loan.sum()
        desk.cash_lent[t] += loan.sum()
        lent = loan.nonzero()[0]
        self.log_events("repo_loan", "lender", lent, amount=loan[lent])
        return moved

    def _desk_take(self, seized: np.ndarray, debt: np.ndarray) -> None:
        """The desk takes ``seized`` units (owner x generation) for the ``debt`` of each owner:
        its cost basis is the debt, spread over the owner's units by value; a debt with no
        collateral left is lost at once."""
        desk, t = self.desk, self.env.t
        val = nm.matvec(seized, self.price)
        w = np.divide(debt, val, out=np.zeros_like(debt), where=val > 0)
        desk.holdings += seized.sum(axis=0)
        desk.cost_basis += (seized * w[:, None]).sum(axis=0) * self.price
        desk.default_loss[t] += np.where(val > 0, 0.0, debt).sum()
        desk.defaults[t] += np.count_nonzero(debt > 0)

    def _secured_borrowers(self, gross: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Borrowers' secured repo loans against their fleets' equity (docs/model.md, "A
        secured repo"): interest, margin, term and default as for lenders, then new loans to
        borrowers short of cash (in arrears or under a margin call: ``gross`` > cash), at most
        (1 - h) x fleet at the price index less the facility debt. The fleet keeps running.
        Returns the need left (``gross`` less cash) for voluntary sales."""
        b, desk, t = self.borrowers, self.desk, self.env.t
        lend_price = (1.0 - self._desk_h) * self.price
        debt_b = desk.b_debt
        dead = (debt_b > 0) & ~alive  # a defaulted facility took the fleet: the claim is lost
        if np.count_nonzero(dead):
            lost = debt_b[dead].sum()
            desk.default_loss[t] += lost
            desk.defaults[t] += np.count_nonzero(dead)
            desk.lent -= lost
            idx = dead.nonzero()[0]
            self.log_events("repo_default", "borrower", idx, amount=debt_b[idx])
            debt_b[dead] = 0.0
        fac = self.loans.by_borrower(self.loans.exposure, b.n)
        room_b = np.where(alive, np.maximum(nm.matvec(b.fleet, lend_price) - fac, 0.0), 0.0)
        has = debt_b > 0
        bad = np.zeros(b.n, dtype=bool)
        if np.count_nonzero(has):
            intr = debt_b * desk.rate(self.cfg.environment.sofr) / 12.0
            paid_i = np.minimum(intr, np.maximum(b.cash, 0.0))
            b.cash -= paid_i
            desk.cash += paid_i.sum()
            desk.interest[t] += paid_i.sum()
            debt_b += intr - paid_i  # unpaid interest capitalises
            desk.lent += (intr - paid_i).sum()
            desk.interest_capitalised += (intr - paid_i).sum()
            call = np.where(has, np.maximum(debt_b - room_b, 0.0), 0.0)
            matured = has & (desk.b_maturity <= t)
            cash = np.maximum(b.cash, 0.0)
            repay = matured & (gross <= cash - debt_b)
            pay = np.where(repay, debt_b, call)
            ok = cash >= pay
            paid = np.where(ok, pay, 0.0)
            b.cash -= paid
            debt_b -= paid
            debt_b[repay] = 0.0
            desk.cash += paid.sum()
            desk.lent -= paid.sum()
            desk.cash_repaid[t] += paid.sum()
            desk.margin_received[t] += np.where(ok & ~repay, call, 0.0).sum()
            desk.b_maturity[matured & ok & ~repay] = t + desk.cfg.term_months
            bad = has & ~ok
            if np.count_nonzero(bad):
                d = np.where(bad, debt_b, 0.0)
                value = nm.matvec(b.fleet, self.price)
                frac = np.minimum(np.divide(d, value, out=np.ones(b.n), where=value > 0), 1.0)
                seized = np.where(bad[:, None],
                                  np.minimum(np.ceil(frac[:, None] * b.fleet), b.fleet), 0
                                  ).astype(np.int64)
                b.fleet -= seized
                debt_b[bad] = 0.0
                desk.lent -= d.sum()
                self._desk_take(seized, d)
                idx = bad.nonzero()[0]
                self.log_events("repo_default", "borrower", idx, amount=d[idx])
        need = np.where(alive, np.maximum(gross - np.maximum(b.cash, 0.0), 0.0), 0.0)
        if desk.room > 0 and np.count_nonzero(need):
            want = np.where(bad, 0.0, np.minimum(need, np.maximum(room_b - debt_b, 0.0)))
            total = want.sum()
            if total > 0:
                loan = want * min(1.0, desk.room / total)
                desk.b_maturity[(loan > 0) & (debt_b <= 0)] = t + desk.cfg.term_months
                debt_b += loan
                b.cash += loan
                desk.lent += loan.sum()
                desk.cash -= loan.sum()
                desk.cash_lent[t] += loan.sum()
                need = need - loan
                lent = loan.nonzero()[0]
                self.log_events("repo_loan", "borrower", lent, amount=loan[lent])
        return np.maximum(need, 0.0)

    def _policy_funding(self) -> None:
        """The repo desk's and the buyer of last resort's cost of capital this month
        (:func:`agents.repo_desk.cost_of_capital`: SOFR + ``funding_spread`` on what each has
        deployed), paid to their funders (the outside flow ``policy_funding``)."""
        sofr, t = self.cfg.environment.sofr, self.env.t
        paid = self.desk.pay_funding(t, sofr)
        if self.lolr is not None:
            paid += self.lolr.pay_funding(t, sofr)
        if paid:
            self.add_outside_flow("policy_funding", -paid)

    def _lolr_operate(self) -> None:
        """The buyer of last resort runs what it holds: spot rent at the fleet utilisation
        (tenants) less power, spot opex, the facility charge on its own MW and hosting beyond
        it (opex), the running costs buyers' valuations use."""
        env, lo = self.env, self.lolr
        rent_month = HOURS_PER_MONTH * self.cfg.environment.utilisation * env.rent
        run_cost = env.power_cost_per_gpu() + self.cfg.buyers.spot_opex_per_gpu
        rent, cost = lo.operate(env.t, rent_month, run_cost, env.kw, env.cfg.facility_cost)
        self.add_outside_flow("tenants", rent)
        self.add_outside_flow("opex", -cost)

    def _borrower_orders(self, marks: np.ndarray, books: dict) -> dict:
        """Phase 5, borrowers' side: ``books`` (the lenders' orders) plus ``b_units`` and
        ``b_price``, the voluntary sales of distressed borrowers."""
        b, lc, floor = self.borrowers, self.cfg.lenders, books["floor"]
        # distressed borrowers sell some GPUs (voluntary limit orders) to cover arrears and calls
        need = self.loans.by_borrower(self.loans.arrears, b.n)
        alive = b.alive
        calls = alive & (b.call_months >= 0)
        if np.count_nonzero(calls):  # else need + 0.0 == need (a bincount of floats is never -0.0)
            debt, coll = self._month_debt_coll(marks)
            need = need + np.where(calls, np.maximum(
                debt - self._covenant(lc.ltv_cure) * coll, 0.0), 0.0)
        self._ltv_month = None  # phase 6 moves fleets: the month's evaluation is spent
        if self.desk.secured and self.desk.cfg.borrowers:
            need = self._secured_borrowers(need, alive)
        else:
            need = np.where(alive, np.maximum(need - np.maximum(b.cash, 0.0), 0.0), 0.0)
        # a borrower values its GPUs at their use value: it asks the fundamental less a discount
        vol_price = np.maximum(self.fundamental * (1.0 - self.cfg.borrowers.voluntary_discount),
                               floor)
        if np.count_nonzero(need):
            fleet_value = nm.matvec(b.fleet, vol_price)
            frac = np.divide(need, fleet_value, out=np.zeros(b.n), where=fleet_value > 0)
            b_units = np.minimum(np.ceil(np.minimum(frac, 1.0)[:, None] * b.fleet),
                                 b.fleet).astype(np.int64)
        else:  # frac = 0 everywhere: ceil(0 x units) = 0 units offered by every borrower
            b_units = np.zeros(b.fleet.shape, dtype=np.int64)
        books["b_units"], books["b_price"] = b_units, vol_price
        return books

    # ---------------------------------------------------------------- 6. market
    def _phase_market(self, books: dict) -> None:
        env, lb, b, desk, buyers = self.env, self.lenders, self.borrowers, self.desk, self.buyers
        n_l, n_k = lb.n, buyers.n
        self._reset_month()
        reservation = buyers.reservation(env)
        self.reservation = reservation
        # search friction (docs/model.md 7.12): only buyers able to close within the month bid
        auction = self.cfg.market.mode == "auction"
        self.bidding = (buyers.participating(self.search_rng, MONTH_DAYS)
                        if auction else np.ones(n_k, dtype=bool))
        self.sale_proceeds = np.zeros(b.n)
        # every generation's book of asks at once, one row per order (forced lenders, patient
        # lenders, borrowers, the desk): settling one generation never moves another's asks
        lolr = self.lolr
        asks = np.concatenate((books["forced"], books["patient"], books["b_units"],
                               desk.holdings[None, :]) + (
                                   () if lolr is None else (lolr.for_sale(env.t)[None, :],)))
        d_row = 2 * n_l + b.n  # the desk's row (the buyer of last resort's is the next)
        offered = (asks.any(axis=0) & env.shipping).tolist()
        if not any(offered):
            return
        # newest generation first (launch months are fixed at build: the order is cached)
        gens = [g for g in self.newest_first if offered[g]]
        ask_prices = np.empty(asks.shape)
        # forced sellers ask the salvage floor; with the outside demand they take the clearing
        # price (market orders): the outside schedule bids for every offered unit down to scrap
        ask_prices[:n_l] = 0.0 if self._outside_on else books["floor"]
        ask_prices[n_l: 2 * n_l] = books["patient_price"]
        ask_prices[2 * n_l: d_row] = books["b_price"]
        # the legacy desk sells back at the value in best use; a secured desk sells collateral
        # it took (a repo default) as a forced seller, within the liquidation horizon
        ask_prices[d_row] = ask_prices[0] if desk.secured else self.fundamental
        if lolr is not None:  # patient: the price index, never below the salvage floor
            ask_prices[d_row + 1] = np.maximum(self.price, books["floor"])
        # the orders for some units, of all generations at once, as Python lists: generation
        # by generation (asks.T is generation-major), rows in row order within each; orders
        # for no units are left out of each book (the outcome is the same)
        nz_g, nz_r = asks.T.nonzero()
        all_qty = asks[nz_r, nz_g].tolist()
        all_price = ask_prices[nz_r, nz_g].tolist()
        nz_g, nz_r = nz_g.tolist(), nz_r.tolist()
        unsold_to_salvage, k = self.cfg.market.unsold_to_salvage, self.cfg.market.k
        if auction:
            floor_bid = desk.floor_bid(self.price, self.fundamental)
            bidders = (reservation > 0) & self.bidding[:, None]  # (K, G)
            any_bidder = bidders.any(axis=0).tolist()
            bidders_by_gen = bidders.T.tolist()
            # bid prices of every generation: the buyers, then the desk, then salvage
            res_by_gen = reservation.T.tolist()
            desk_prices = floor_bid.tolist()
            if lolr is not None:
                lolr_prices = lolr.bid(self.fundamental).tolist()
            s0 = n_k + 1 + (lolr is not None)  # the first salvage / outside row
            salvage_prices = books["floor"].tolist()
            if self._outside_on:
                od, ref = self._od, replacement_cost(env)
                # top of the schedule: a share of min(replacement cost, value in best use)
                out_top = (od.top * np.minimum(ref, self.fundamental)).tolist()
                out_depth = (od.depth * np.maximum(self.units0, 1)).tolist()
        for g in gens:
            lo, hi = bisect_left(nz_g, g), bisect_right(nz_g, g)
            a_rows, ask_qty = nz_r[lo:hi], all_qty[lo:hi]
            supply = sum(ask_qty)  # integer sums: exact in any order
            n_forced = bisect_left(a_rows, n_l)  # the forced lenders' rows come first
            forced_total = sum(ask_qty[:n_forced])
            desk_fill = salvage_fill = 0
            buys, bought = [], []  # rows and units of the buyers with a fill
            if not auction:
                fills = ask_qty  # every offered unit sells
                price, bfill_ext = self._parametric(g, ask_qty)
                volume = bfill_ext
                self.external_units[g] += bfill_ext
                self.add_outside_flow("salvage", bfill_ext * price)
            else:
                desk_price = desk_prices[g]
                desk_qty = int(desk.room // desk_price) if desk_price > 0 else 0
                # the bids for some units, in row order: buyers (< n_k), the desk, salvage;
                # no bid needs more units than are offered
                b_rows, bid_qty, bid_price = [], [], []
                if any_bidder[g]:  # else no buyer's capacity enters the book
                    cap = buyers.capacity(reservation[:, g], env.kw[g],
                                          self._liquid[g]).tolist()
                    res_g = res_by_gen[g]
                    for i, flag in enumerate(bidders_by_gen[g]):
                        if flag and (q := cap[i] if cap[i] < supply else supply):  # min
                            b_rows.append(i)
                            bid_qty.append(q)
                            bid_price.append(res_g[i])
                if q := min(desk_qty, supply):
                    b_rows.append(n_k)
                    bid_qty.append(q)
                    bid_price.append(desk_price)
                if lolr is not None and lolr_prices[g] > 0:  # capacity and powered space
                    q = min(int(lolr.room() // lolr_prices[g]),
                            int(lolr.kw_room(env.kw) // env.kw[g]), supply)
                    if q > 0:
                        b_rows.append(n_k + 1)
                        bid_qty.append(q)
                        bid_price.append(lolr_prices[g])
                if self._outside_on:  # the outside demand's steps, rows s0, ...
                    o_qty, o_price = outside_bids(out_top[g], salvage_prices[g], out_depth[g],
                                                  supply, unsold_to_salvage)
                    b_rows.extend(range(s0, s0 + len(o_qty)))
                    bid_qty.extend(o_qty)
                    bid_price.extend(o_price)
                elif unsold_to_salvage and supply:  # salvage takes every offered unit
                    b_rows.append(s0)
                    bid_qty.append(supply)
                    bid_price.append(salvage_prices[g])
                price, volume, fills, bid_fills, _, _ = clear_book(
                    ask_qty, all_price[lo:hi], bid_qty, bid_price, k)
                if self._outside_on and volume:
                    self.month_pinned[g] = self._pinned(b_rows, bid_qty, bid_price, bid_fills,
                                                        s0 - 1, k)
                if volume == 0:
                    self.month_overhang[g] = forced_total
                    continue
                lowest = math.inf  # the lowest price of a filled bid
                for r, u, bp in zip(b_rows, bid_fills, bid_price, strict=True):
                    if u:
                        buys.append(r)
                        bought.append(u)
                        if bp < lowest:  # min(lowest, bp): prices are finite
                            lowest = bp
                # max over the filled bids of (price - bid) is price - (lowest bid): rounding
                # the difference is monotone, so the largest difference is the same double
                self.month_above_reservation = max(self.month_above_reservation,
                                                   price - lowest)
                if self._outside_on:
                    while buys and buys[-1] >= s0:  # the outside demand's steps come last
                        buys.pop()
                        salvage_fill += bought.pop()
                elif buys[-1] == s0:
                    buys.pop()
                    salvage_fill = bought.pop()
                lolr_fill = 0
                if lolr is not None and buys and buys[-1] == n_k + 1:
                    buys.pop()
                    lolr_fill = bought.pop()
                    lolr.buy(g, lolr_fill, price, env.t)
                    self.log_event("purchase", "lolr", 0, g, lolr_fill, lolr_fill * price, price)
                if buys and buys[-1] == n_k:
                    buys.pop()
                    desk_fill = bought.pop()
                if buys:  # settling no fill at all would change no buyer's state
                    bid_fills = np.zeros(n_k, dtype=np.int64)
                    bid_fills[buys] = bought
                    pay = buyers.settle(bid_fills, price, g, env.kw[g], self._liquid[g])
                    self.buyers_paid += pay.sum()
                    if buyers.unlimited:
                        self.add_outside_flow("buyer_capital", pay.sum())
                if desk_fill:
                    desk.holdings[g] += desk_fill
                    desk.cost_basis[g] += desk_fill * price
                    desk.cash -= desk_fill * price
                    desk.cash_bought[env.t] += desk_fill * price
                self.salvage_units[g] += salvage_fill
                self.add_outside_flow("salvage", salvage_fill * price)
                self.month_salvage[g] = salvage_fill
            self._settle_orders(g, a_rows, fills, price)
            self.traded[g] = True
            self.clearing[g] = price
            self.month_volume[g] = volume  # the ask fills add up to the volume
            forced_sold = sum(fills[:n_forced])  # int x float: the same double as in numpy
            self.month_forced[g] = forced_sold
            self.month_overhang[g] = forced_total - forced_sold
            self.forced_value += forced_sold * price
            self.forced_fundamental += forced_sold * self.fundamental[g]
            if self._outside_on and forced_sold:  # forced rows are lender rows r < n_l
                rv = self.rep_value[:, g].tolist()
                self.forced_rep_value += sum(u * rv[r] for r, u in
                                             zip(a_rows[:n_forced], fills[:n_forced],
                                                 strict=True))
            if buys:
                self._fill_events("purchase", "buyer", buys, g, bought, price)
            if salvage_fill:
                self.log_event("purchase", "salvage", 0, g, salvage_fill, salvage_fill * price,
                               price)
            if desk_fill:
                self.log_event("purchase", "repo_desk", 0, g, desk_fill, desk_fill * price, price)

    @staticmethod
    def _pinned(b_rows: list, bid_qty: list, bid_price: list, bid_fills: list, n_k: int,
                k: float) -> bool:
        """Whether the outside demand set the month's clearing price (rows ``> n_k`` are its
        steps): the marginal bid, the lowest-priced bid with a fill (the upper end of the
        k-rule's interval), is an outside step's, or, with ``k < 1``, the best unfilled bid
        (its lower end) is. A month where outside buyers took units above a secondary
        buyer's marginal bid is priced by that buyer: news."""
        inf = math.inf
        fill_in = fill_out = inf  # the lowest filled bid: secondary buyers (and desk) / outside
        open_in = open_out = -inf  # the best bid with units left
        for r, q, p, u in zip(b_rows, bid_qty, bid_price, bid_fills, strict=True):
            if r > n_k:
                if u and p < fill_out:
                    fill_out = p
                if u < q and p > open_out:
                    open_out = p
            else:
                if u and p < fill_in:
                    fill_in = p
                if u < q and p > open_in:
                    open_in = p
        return fill_out < fill_in or (k < 1.0 and open_out > open_in)

    def _sweep_sale_proceeds(self) -> None:
        """Secured lenders sweep borrowers' sale proceeds: arrears first, then principal."""
        if self.sale_proceeds.any():
            self._prepay(np.minimum(self.sale_proceeds, np.maximum(self.borrowers.cash, 0.0)))

    def _parametric(self, g: int, ask_qty: list) -> tuple[float, int]:
        """Parametric inverse demand: every offered unit (``ask_qty``, the units of each
        order) sells at p0 exp(-alpha q / stock). Returns (price, q)."""
        stock = max(int(self.units0[g]), 1)
        q = sum(ask_qty)
        price = float(parametric_price(self.fundamental[g], q, stock, self.cfg.market.alpha))
        return price, q

    def _settle_orders(self, g: int, rows: list, fills: list, price: float) -> None:
        """Settle the sellers' side of generation ``g``'s trades: ``fills[j]`` units sold by
        order row ``rows[j]`` of the book of asks (forced lenders, patient lenders, borrowers,
        the desk; rows ascending, rows left out sold nothing)."""
        lb, b, desk = self.lenders, self.borrowers, self.desk
        n_l, n_b = lb.n, b.n
        n_lend = bisect_left(rows, 2 * n_l)  # the lenders' rows come first
        n_sell = bisect_left(rows, 2 * n_l + n_b, n_lend)  # then the borrowers'
        if n_lend:
            # each lender's forced plus patient units (Python ints: exact, as in int64)
            units = [0] * n_l
            for r, u in zip(rows[:n_lend], fills[:n_lend], strict=True):
                units[r - n_l if r >= n_l else r] += u
        if n_lend and any(units):
            lender_units = np.array(units, dtype=np.int64)
            sold = np.zeros((n_l, self.n_gen), dtype=np.int64)
            sold[:, g] = lender_units
            lb.remove_inventory(sold)
            proceeds = lender_units * price
            rec, surplus = lb.apply_recovery(proceeds)
            self.recovered_total += rec.sum()
            repay = np.minimum(lb.repo_debt, rec)  # the repo is repaid out of the recovery
            lb.repo_debt -= repay
            repaid = repay.sum()
            desk.lent -= repaid
            desk.cash += repaid
            desk.cash_repaid[self.env.t] += repaid
            lb.cash += rec - repay
            self.add_outside_flow("estate_surplus", -surplus.sum())
            sellers = [i for i, u in enumerate(units) if u]
            self._fill_events("sale", "lender", sellers, g, [units[i] for i in sellers], price)
        # the borrowers with a fill (in row order) and their units
        sellers, units = [], []
        for r, u in zip(rows[n_lend:n_sell], fills[n_lend:n_sell], strict=True):
            if u:
                sellers.append(r - 2 * n_l)
                units.append(u)
        if sellers:
            s_idx = np.array(sellers)
            b_units = np.zeros(n_b, dtype=np.int64)
            b_units[s_idx] = units
            b.fleet[:, g] -= b_units
            proceeds = b_units * price
            b.cash += proceeds
            self.sale_proceeds += proceeds
            # logged miners first (a stable sort by kind: sellers are in row order)
            kinds = b.kind[s_idx].tolist()
            order = sorted(range(len(kinds)), key=kinds.__getitem__)
            self._fill_events("sale", [KIND_NAMES[kinds[j]] for j in order],
                              [sellers[j] for j in order], g, [units[j] for j in order], price)
        d = lo = 0  # the desk's row, then the buyer of last resort's, come last
        for r, u in zip(rows[n_sell:], fills[n_sell:], strict=True):
            if r == 2 * n_l + n_b:
                d = u
            else:
                lo = u
        if d:
            basis = desk.cost_basis[g] * d / desk.holdings[g]
            desk.holdings[g] -= d
            desk.cost_basis[g] -= basis
            desk.cash += d * price
            desk.cash_sold[self.env.t] += d * price
            if desk.secured:  # collateral taken in a repo default: the loss is realised
                desk.default_loss[self.env.t] += basis - d * price
            self.log_event("sale", "repo_desk", 0, g, d, d * price, price)
        if lo:
            self.lolr.sell(g, lo, price, self.env.t)
            self.log_event("sale", "lolr", 0, g, lo, lo * price, price)

    # ---------------------------------------------------------------- 7. prices
    def _phase_prices(self) -> None:
        env, buyers = self.env, self.buyers
        # self.price is replaced below, never written in place: no copy needed
        old_price, old_value = self.price, self.prev_fundamental
        shipping = env.shipping
        floor = self._salvage_price
        # the best bid of a buyer with room for at least one unit at its own reservation
        # price (np.maximum.reduce is what ndarray.max calls); unlimited buyers all have room,
        # and np.where(True, r, 0.0) is r
        if buyers.unlimited:
            bids = self.reservation
        else:
            if buyers.sites:  # spare MW of the cooling each generation needs
                spare = np.where(self.sites.liquid_gen[None, :], buyers.mw_liq[:, None],
                                 (buyers.mw + buyers.mw_liq)[:, None])
            else:
                spare = buyers.mw[:, None]
            has_cap = ((buyers.capital[:, None] >= np.maximum(self.reservation, 1.0))
                       & (spare * 1000.0 >= env.kw[None, :]))
            bids = np.where(has_cap, self.reservation, 0.0)
        best = np.maximum.reduce(bids, axis=0, initial=0.0)
        # no trade: the best bid of a buyer who could take a unit; with no such buyer there is
        # no new information, and the last price moves with the value in best use
        carried = old_price * np.divide(self.fundamental, old_value,
                                        out=np.ones(self.n_gen), where=old_value > 0)
        if self._outside_on:  # the outside demand's first bid is a bid too
            top = self._od.top * np.minimum(replacement_cost(env), self.fundamental)
            floor = np.maximum(floor, top)
        quote = np.maximum(np.where(best > 0, best, carried), floor)
        new = np.where(self.traded, self.clearing, quote)
        self.price = np.where(shipping, new, self.fundamental)
        self.price_hist[env.t] = self.price
        moved = self.traded & shipping & (old_price > 0)
        if self._outside_on:
            self._adapt_on_news(moved)
        elif moved.any():  # else adapt would leave every expectation as it is
            with np.errstate(divide="ignore", invalid="ignore"):
                dlp = nm.log(np.maximum(self.price, 1e-9) / np.maximum(old_price, 1e-9))
                dlv = nm.log(np.maximum(self.fundamental, 1e-9) / np.maximum(old_value, 1e-9))
            buyers.adapt(dlp, dlv, moved)
        if buyers.unlimited:  # unlimited buyers' capital is off the books
            buyers.regrow()
            return
        before = np.add.reduce(buyers.capital)  # (ndarray.sum without its wrapper)
        buyers.regrow()
        self.add_outside_flow("buyer_capital", np.add.reduce(buyers.capital) - before)

    def _adapt_on_news(self, moved: np.ndarray) -> None:
        """Phase 7's expectations update with the outside demand: only prices set by the
        secondary buyers are news about the value in best use. A month whose price the
        outside demand set (``month_pinned``) is skipped; the surprise of a news month is
        measured from the last news month s, per month elapsed,

            x <- (1 - lambda) x + lambda clip(12 [ln(p_t / p_s) - ln(V_t / V_s)] / (t - s), -1, 1).
        """
        # a generation's first price (at launch) is its first reference, not news
        fresh = (self._news_price <= 0) & (self.price > 0) & self.env.shipping
        if fresh.any():
            self._news_price = np.where(fresh, self.price, self._news_price)
            self._news_value = np.where(fresh, self.fundamental, self._news_value)
            self._news_t = np.where(fresh, float(self.env.t), self._news_t)
        news = moved & ~self.month_pinned & ~fresh & (self._news_price > 0)
        if not news.any():
            return
        t = self.env.t
        gap = np.maximum(t - self._news_t, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dlp = nm.log(np.maximum(self.price, 1e-9) / np.maximum(self._news_price, 1e-9))
            dlv = nm.log(np.maximum(self.fundamental, 1e-9)
                         / np.maximum(self._news_value, 1e-9))
        self.buyers.adapt(dlp / gap, dlv / gap, news)
        self._news_price = np.where(news, self.price, self._news_price)
        self._news_value = np.where(news, self.fundamental, self._news_value)
        self._news_t = np.where(news, float(t), self._news_t)

    # ---------------------------------------------------------------- 8. funding
    def _pay_lender_costs(self) -> None:
        """Funding interest, repo interest and warehouse costs; unpaid amounts capitalise.

        (Sums are ``np.add.reduce``, what ``ndarray.sum`` calls, without its wrapper.)"""
        lb, desk, e, lc = self.lenders, self.desk, self.cfg.environment, self.cfg.lenders
        add = np.add.reduce
        r_f = (e.sofr + lc.funding_rate_spread) / 12.0
        ib_int = self.interbank * r_f  # i pays j
        out_int = lb.outside * r_f
        repo_int = lb.repo_debt * desk.rate(e.sofr) / 12.0
        hold = add(lb.inventory, axis=1) * lc.holding_cost
        if self.sites is not None:  # GPUs run in place at a host pay no warehouse cost
            hold = np.maximum(add(lb.inventory, axis=1) - self.sites.hosted_units, 0.0) \
                * lc.holding_cost
        due = add(ib_int, axis=1) + out_int + repo_int + hold
        f = np.divide(np.maximum(lb.cash, 0.0), due, out=np.ones(lb.n), where=due > 0)
        f = np.minimum(f, 1.0)
        if np.minimum.reduce(f) == 1.0:
            # every lender pays in full (f = 1: 1.0 * x = x), nothing is left unpaid and the
            # capitalisation below would add x * 0.0 = +-0 to each balance; with rates and
            # holding costs >= 0 (config) that leaves every balance as it is (no balance here
            # is ever -0.0: sums and differences only make -0.0 from -0.0)
            lb.cash -= due
            lb.cash += add(ib_int, axis=0)
            desk.cash += add(repo_int)
            desk.interest[self.env.t] += add(repo_int)
            self.add_outside_flow("funding_outside", -add(out_int))
            self.add_outside_flow("holding_costs", -add(hold))
            return
        lb.cash -= f * due
        lb.cash += add(ib_int * f[:, None], axis=0)
        desk.cash += add(repo_int * f)
        desk.interest[self.env.t] += add(repo_int * f)
        self.add_outside_flow("funding_outside", -add(out_int * f))
        self.add_outside_flow("holding_costs", -add(hold * f))
        self.interbank += ib_int * (1.0 - f)[:, None]
        lb.outside += (out_int + hold) * (1.0 - f)
        unpaid_repo = repo_int * (1.0 - f)
        lb.repo_debt += unpaid_repo
        desk.lent += add(unpaid_repo)
        desk.interest_capitalised += add(unpaid_repo)

    def _run_on(self, who: np.ndarray, rate: float, outside_only: bool = False) -> None:
        """Creditors withdraw ``rate`` of their funding to lenders ``who``, paid from cash."""
        if not np.count_nonzero(who):  # nobody is run on: every amount below would be zero
            return
        lb = self.lenders
        ib = self.interbank * who[:, None] * (0.0 if outside_only else rate)
        out = lb.outside * who * rate
        due = ib.sum(axis=1) + out
        f = np.minimum(np.divide(np.maximum(lb.cash, 0.0), due, out=np.ones(lb.n),
                                 where=due > 0), 1.0)
        lb.cash -= f * due
        lb.cash += (ib * f[:, None]).sum(axis=0)
        self.interbank -= ib * f[:, None]
        lb.outside -= out * f
        self.add_outside_flow("funding_outside", -(out * f).sum())

    def _estates_pay_out(self) -> None:
        """Failed lenders' estates pass all their cash to creditors, pro rata."""
        lb, desk = self.lenders, self.desk
        failed = (lb.status == LenderStatus.FAILED) & (lb.cash > 0)
        if not np.count_nonzero(failed):
            return
        owed = self.interbank.sum(axis=1) + lb.outside + lb.repo_debt
        f = np.where(failed, np.minimum(np.divide(lb.cash, owed, out=np.zeros(lb.n),
                                                  where=owed > 0), 1.0), 0.0)
        ib = self.interbank * f[:, None]
        out, repo = lb.outside * f, lb.repo_debt * f
        lb.cash -= ib.sum(axis=1) + out + repo
        lb.cash += ib.sum(axis=0)
        self.interbank -= ib
        lb.outside -= out
        lb.repo_debt -= repo
        desk.lent -= repo.sum()
        desk.cash += repo.sum()
        desk.cash_repaid[self.env.t] += repo.sum()
        self.add_outside_flow("funding_outside", -out.sum())

    def _clear_funding(self) -> np.ndarray:
        """Rogers-Veraart clearing of the funding network; sets equity and assets.

        Returns which lenders default in the clearing (pay less than their obligations)."""
        lb = self.lenders
        marks = lb.marks(self.env, self.price_hist, self.env.t, self.cfg.lenders.appraisal_lag)
        loans = self.loans.by_lender(self.loans.exposure, lb.n)
        ext = lb.cash + loans + np.add.reduce(lb.inventory * marks, axis=1)
        if lb.has_other:
            ext = ext + lb.other_loans
        n = lb.n
        liab = self._liab  # row and column n (outside creditors) stay as set in __init__
        liab[:n, :n] = self.interbank
        liab[:n, n] = lb.outside + lb.repo_debt
        e = self._ext
        np.maximum(ext, 0.0, out=e[:n])  # e[n] = 0: outside creditors hold no assets here
        c = self.cfg.contagion
        p, lbar, equity, solvent = rogers_veraart_state(liab, e, c.alpha, c.beta)
        lb.equity = equity[:n] + (ext - e[:n])
        if solvent:
            # p = Lbar: every claim is worth its face (p / Lbar = 1 exactly, and x * 1.0 = x)
            # and nobody pays less than it owes
            lb.assets = ext + np.add.reduce(self.interbank, axis=0)
            return np.zeros(n, dtype=bool)
        ratio = np.divide(p, lbar, out=np.ones(n + 1), where=lbar > 0)
        ib_assets = (self.interbank * ratio[:n, None]).sum(axis=0)
        lb.assets = ext + ib_assets
        return p[:n] < lbar[:n] * (1.0 - 1e-9)

    def _repay_outside(self) -> None:
        """Sound lenders use cash above their liquidity target to repay outside funding."""
        lb = self.lenders
        target = lb.cash_share * np.maximum(lb.assets, 0.0)
        # np.clip(x, 0, hi) is minimum(maximum(x, 0), hi) (without clip's Python wrapper), and
        # zeroing the rows of lenders not NORMAL in place gives what np.where gave
        rep = np.minimum(np.maximum(lb.cash - target, 0.0), lb.outside)
        rep[lb.status != LenderStatus.NORMAL] = 0.0
        lb.cash -= rep
        lb.outside -= rep
        self.add_outside_flow("funding_outside", -np.add.reduce(rep))

    def _phase_funding(self) -> None:
        lb, lc = self.lenders, self.cfg.lenders
        if lb.has_other:  # other loans pay interest (from outside) and lose at their rate
            income, _ = lb.other_loans_month(bool(self.env.stress))
            lb.cash += income
            self.add_outside_flow("other_loans", np.add.reduce(income))
        self._pay_lender_costs()
        self._repay_outside()
        self._run_on(lb.status != LenderStatus.NORMAL, lc.run_rate)
        self._estates_pay_out()
        in_default = self._clear_funding()
        if np.count_nonzero(in_default):  # (else no failure: nothing to log or switch)
            new_fail = in_default & (lb.status != LenderStatus.FAILED)
            failed = new_fail.nonzero()[0]
            self.log_events("lender_failure", "lender", failed, amount=lb.equity[failed])
            lb.status[new_fail] = LenderStatus.FAILED
        ratio = np.divide(lb.equity, lb.assets, out=np.zeros(lb.n), where=lb.assets > 0)
        floor = lc.capital_floor * lb.capital_ratio0
        stress = (lb.status == LenderStatus.NORMAL) & (ratio < floor)
        if np.count_nonzero(stress):
            weak = stress.nonzero()[0]
            self.log_events("deleveraging", "lender", weak, amount=lb.equity[weak])
            lb.status[stress] = LenderStatus.DELEVERAGING
        deleveraging = lb.status == LenderStatus.DELEVERAGING
        if np.count_nonzero(deleveraging):  # a lender heals back to normal above 1.2 x its floor
            lb.status[deleveraging & (ratio >= 1.2 * floor)] = LenderStatus.NORMAL

    # ================================================================ records
    def _init_records(self) -> None:
        n = self.cfg.months + 1
        # the outside demand (docs/model.md "Outside demand"), replacing the salvage sink
        self._od = self.cfg.buyers.outside_demand
        self._outside_on = bool(self._od.enabled)
        self.ead_total = 0.0
        self.recovered_total = 0.0
        self.paper_recovery = 0.0
        self.forced_value = 0.0
        self.forced_fundamental = 0.0
        self.new_defaults = np.zeros(2, dtype=np.int64)
        self._reset_month()
        # the generation whose buyer capacity is recorded (H100, else the first)
        self._h100 = self.env.names.index("H100") if "H100" in self.env.names else 0
        # the salvage price per generation (the floor of phase 5's asks and phase 7's quotes;
        # read only): list prices never change
        self._salvage_price = floor_price(self.cfg.buyers, self.env)
        if self._outside_on:
            # value in best use at repossession of each lender's inventory, units-weighted
            self.rep_value = np.zeros((self.lenders.n, self.n_gen))
            self.forced_rep_value = 0.0
            # the last price that was news (set by secondary buyers), its value and month
            self._news_price = self.price.copy()
            self._news_value = self.fundamental.copy()
            self._news_t = np.zeros(self.n_gen)
        # generations newest first, the order phase 6 settles them in (launch months are fixed)
        self.newest_first = (-self.env.launch).argsort(kind="stable").tolist()
        # phase 3's evaluation of the month, [month, marks, debt, collateral] (_month_debt_coll)
        self._ltv_month: list | None = None
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
        if self._outside_on:  # new records only with the switch (the golden record is unchanged)
            self.rec["forced_repossession_value"] = np.zeros(n)
            self.rec["outside_pinned"] = np.zeros((n, g), bool)
        if self.sites is not None:  # records of the sites (their keys only with sites on)
            for key in SITE_RECORDS:
                self.rec[key] = np.zeros(n)
        agents = self.lender_agents + self.borrower_agents + self.buyer_agents
        self.panel_agents = agents
        self.panel = {"cash": np.zeros((n, len(agents))), "size": np.zeros((n, len(agents))),
                      "state": np.zeros((n, len(agents)), np.int8)}

    def _reset_month(self) -> None:
        """Zero the market counters that phase 6 fills and phase 9 records."""
        self.traded = np.zeros(self.n_gen, dtype=bool)
        self.clearing = np.full(self.n_gen, np.nan)
        self.month_volume = np.zeros(self.n_gen, dtype=np.int64)
        self.month_forced = np.zeros(self.n_gen, dtype=np.int64)
        self.month_overhang = np.zeros(self.n_gen, dtype=np.int64)
        self.month_salvage = np.zeros(self.n_gen, dtype=np.int64)
        self.month_above_reservation = 0.0
        if self._outside_on:
            self.month_pinned = np.zeros(self.n_gen, dtype=bool)

    def buyer_capacity_units(self, g: int) -> float:
        """Units of generation g buyers could still absorb at today's prices."""
        if self.buyers.unlimited:
            return float("inf")
        price = max(float(self.price[g]), 1.0)  # the same double as np.maximum
        return self.buyers.capacity_total(price, self.env.kw[g], self._liquid[g])

    def _record(self) -> None:
        """Write month t into the preallocated records and the agent panel.

        Sums are ``np.add.reduce`` (what ``ndarray.sum`` calls, without its wrapper), counts
        ``np.count_nonzero``, and each panel row is filled by one ``np.concatenate`` into it:
        the same values as summing and assigning slice by slice."""
        t, r, env, lb, b = self.env.t, self.rec, self.env, self.lenders, self.borrowers
        add = np.add.reduce
        r["btc"][t], r["hashprice"][t], r["stress"][t] = env.btc, env.hashprice, env.stress
        r["rent"][t], r["price"][t], r["fundamental"][t] = env.rent, self.price, self.fundamental
        r["volume"][t], r["forced_volume"][t] = self.month_volume, self.month_forced
        r["overhang"][t], r["salvage"][t] = self.month_overhang, self.month_salvage
        r["defaults_miner"][t], r["defaults_neocloud"][t] = self.new_defaults
        self.new_defaults = np.zeros(2, dtype=np.int64)
        r["writeoffs"][t], r["recoveries"][t] = add(lb.writeoffs), add(lb.recoveries)
        r["credit_losses"][t] = add(lb.credit_losses)
        if self.cfg.metrics.losses_at_writeoff:  # monotone losses; later recoveries apart
            r["credit_losses"][t] = add(lb.losses_at_writeoff)
            r["recoveries"][t] = add(lb.later_recoveries)
        r["lender_failures"][t] = np.count_nonzero(lb.status == LenderStatus.FAILED)
        r["lenders_deleveraging"][t] = np.count_nonzero(lb.status == LenderStatus.DELEVERAGING)
        r["lender_equity"][t] = add(lb.equity)
        r["inventory_units"][t] = add(lb.inventory, axis=None)
        r["repo_lent"][t], r["repo_units"][t] = self.desk.lent, add(self.desk.holdings)
        self.desk.record(t, self.price)
        if self.lolr is not None:
            self.lolr.record(t, self.price)
        r["buyer_capacity_h100"][t] = min(self.buyer_capacity_units(self._h100), 1e15)
        r["forced_value"][t], r["forced_fundamental"][t] = (self.forced_value,
                                                            self.forced_fundamental)
        r["max_fill_above_reservation"][t] = self.month_above_reservation
        if self._outside_on:
            r["forced_repossession_value"][t] = self.forced_rep_value
            r["outside_pinned"][t] = self.month_pinned
        if self.sites is not None:
            self._record_sites(t)
        if self.cfg.metrics.system_loss:
            losses.record(self, t)
        nl, nb = lb.n, b.n
        p, buyers = self.panel, self.buyers
        np.concatenate((lb.cash, b.cash, buyers.capital), out=p["cash"][t])
        np.concatenate((lb.assets, nm.matvec(b.fleet, self.price) + b.btc * env.btc,
                        buyers.capital + nm.matvec(buyers.holdings, self.price)),
                       out=p["size"][t])
        # borrowers under a margin call or in arrears show as DISTRESSED; buyers stay 0
        # (set in the panel row itself after copying the statuses: no temporary copy)
        row = p["state"][t]
        np.concatenate((lb.status, b.status), out=row[: nl + nb])
        row[nl: nl + nb][(b.status == BorrowerStatus.HEALTHY)
                          & ((b.call_months >= 0) | (b.arrears_months > 0))] = \
            BorrowerStatus.DISTRESSED

    def _record_sites(self, t: int) -> None:
        """MW by holder and cooling (docs/model.md, "Power and cooling")."""
        s, r, buyers = self.sites, self.rec, self.buyers
        held = s.by_holder(buyers)
        r["site_mw_borrowers"][t] = held["borrowers"]
        r["site_mw_lenders"][t] = held["lenders"]
        r["site_mw_repossessed"][t] = s.repossessed_mw
        r["site_mw_sold"][t] = s.sold_mw
        r["site_mw_retired"][t] = s.retired_mw
        r["site_sale_proceeds"][t] = s.sale_proceeds
        r["hosting_income"][t] = s.hosting_income
        r["buyer_spare_mw_air"][t] = float(buyers.mw.sum())
        r["buyer_spare_mw_liquid"][t] = float(buyers.mw_liq.sum())
        r["buyer_mw_converting"][t] = float(buyers.mw_conv.sum())
        r["buyer_mw_converted"][t] = s.converted_mw
        r["miner_mw_hosting"][t] = float(s.host_mw[self.borrowers.alive].sum())

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
