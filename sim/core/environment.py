"""The exogenous world: GPU rents per generation, Bitcoin, hashprice, power and rates.

Everything here is driven only by the model's seeded ``numpy.random.Generator``; nothing reads
agents. The processes (monthly steps, month index t with t0 = 2025-12):

* Rent index per generation g (spot $/GPU-hour), a geometric random walk with deterministic
  deflation and a common shock, for every generation already shipping:

      ln R_g(t+1) = ln R_g(t) + ln(1 - d)/12 - sigma_r^2/2 + sigma_r * eps_r(t)

  plus a step-down ``R_g <- (1 - phi) R_g`` for every older generation in the month a newer
  generation ships in volume (non-linear obsolescence). d = 15 %/yr by default: one chip's
  rent decline with the generational steps inside it, fitted to used H100 and A100 prices
  (Silicon Data via WSJ; docs/calibration.md, "Installed-unit values"), so phi = 0 by default;
  a scenario that keeps a step (next_gen_launch, phi = 0.175) nets it from the trend between
  launches with ``launch_rate`` (below).
* Bitcoin: ln S(t+1) = ln S(t) + (mu - sigma^2/2)/12 + sigma/sqrt(12) * eps_b(t), with
  eps_b = rho * eps_r + sqrt(1 - rho^2) * eta. In calm months (sigma, rho) = (50 %, 0.3); once the
  drawdown from the running peak reaches ``stress_drawdown`` the regime switches to
  (75 %, 0.8): the "correlation convergence" of BTC and AI-compute prices (Glassnode/K33 vols;
  BTC-tech correlation 0.2-0.8 by regime, see docs/calibration.md). With
  ``btc_random_walk = false`` BTC moves by ``btc`` shocks only (a historical path), while the
  regime's sigma remains the risk buyers price (``revenue_vol``).
* Hashprice ($/PH/day) = hashprice0 * S/S0 * (1 + g_difficulty)^(-t/12).
* A generation with ``rent_index = "hashprice"`` (a mining rig used as collateral) earns
  R_g(t) = rent0_g * hashprice(t) / hashprice0: its "rent" is its mining revenue per hour, so
  it tracks BTC and difficulty, not the AI rent process (no deflation, noise, step-down or
  `rent` shock).
* What buyers expect of hashprice (:meth:`Environment.hash_log_growth`): hashrate enters
  while mining pays more than its cost and leaves when it pays less, so at a constant BTC
  price the log hashprice reverts to the miners' all-in cost c_H (``hashprice_cost``),

      E_t[ln H(t+m)] = ln c_H + (ln H(t) - ln c_H) exp(-kappa m / 12),  kappa = ln(1 + g),

  the free-entry equilibrium of Prat & Walter (2021, "An equilibrium model of the market for
  Bitcoin mining", J. Political Economy 129(8)), in which the network hashrate adjusts until
  the revenue per unit of hash equals its cost. Entry erodes a margin at the pace at which
  difficulty grows (kappa = ln(1 + g)), and exit restores it at the same pace.
  c_H = 44.8 $/PH/day is the "median cost" of the sourced figures (TheMinerMag (B),
  Nov 2025). The realised path above stays the scenario's (an episode's history, or the
  constant-growth trend); only expectations revert. ``hashprice_cost = 0`` switches the
  reversion off: buyers then expect the rent drift ``rent_deflation``, as for GPUs.

Scenario shocks of kind ``btc`` and ``rent`` are applied here (a one-off fall by ``size``).

Installed units (issue 14 part A; the defaults keep the model above):

* ``new_unit_price`` ($ per installed new unit, by generation): ``system_cost`` (chip, server
  share, networking), or ``installed_multiple`` x ``list_price`` where it is 0; the
  replacement price that caps values (``buyers.value_cap``) and that other parts read.
* ``facility_cost_per_gpu()``: kW x ``facility_cost`` ($/kW-month of IT load; CBRE North
  America Data Center Trends H2 2024: 184.06 $/kW-month), added to the running cost.
* ``rent_path`` (a backtest, empty by default): a generation's observed rent, dated points
  [month, $/GPU-hour] linear between points (:func:`path_rents`), replaces its rent from the
  first to the last point; the rent process above carries on from the last value. Buyers
  still value a unit on the observed rent and the expected drift ln(1 - d) (they do not know
  the path ahead). A market path (``scope = "market"``, the default) is the common rent
  factor: the other AI generations' rents move by its month-on-month ratio over its months,
  as they all move by the common shock and trend in the process above; hedonic pricing of
  substitutes, one price per unit of quality (Griliches 1961; Triplett 2006, OECD Handbook on
  Hedonic Indexes and Quality Adjustments in Price Indexes).
* ``lead_time_path`` (empty by default): a generation's delivery lead time of new units,
  dated points [month, months] linear between points and 0 outside them
  (:meth:`Environment.lead_time`); the buyers' value cap becomes the new-unit price paid at
  delivery plus the net earnings forgone while waiting (time to build, Kydland & Prescott
  1982; :meth:`agents.buyer.BuyerBook.lead_cap`).
* ``launch_rate`` lambda > 0: d is the per-chip decline with the launch steps in it, and the
  trend between launches is ln(1 - d) - lambda ln(1 - phi), so that at lambda launches a year
  rents fall by d a year and are not also stepped down (no double count).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim.core import numerics as nm
from sim.core.config import Scenario

HOURS_PER_MONTH = 730.0
DAYS_PER_MONTH = 365.0 / 12.0
START = "2025-12"  # the calendar month of model month 0 (t0) unless a scenario says (``start``)
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
               "Dec")


def calendar_month(t: int, start: str = START) -> tuple[int, int]:
    """(year, month 1-12) of model month ``t`` when month 0 is ``start`` ('YYYY-MM', the
    scenario's ``start``): ``calendar_month(1) == (2026, 1)``,
    ``calendar_month(10, "2023-03") == (2024, 1)``. The one calendar of the outputs: the
    series' ``date`` column, the figures' labels and the validation's dates."""
    y0, m0 = int(start[:4]), int(start[5:7])
    y, m = divmod(m0 - 1 + int(t), 12)
    return y0 + y, m + 1


def year_month(t: int, start: str = START) -> str:
    """Calendar month of model month ``t`` as 'YYYY-MM': ``year_month(10, "2023-03") ==
    '2024-01'`` (the validation's dates; the series' ``date`` column is its first day)."""
    y, m = calendar_month(t, start)
    return f"{y}-{m:02d}"


def month_label(t: int, start: str = START) -> str:
    """Calendar month of model month ``t`` in words: ``month_label(3) == 'Mar 2026'``."""
    y, m = calendar_month(t, start)
    return f"{MONTH_NAMES[m - 1]} {y}"


def _frozen(a: np.ndarray) -> np.ndarray:
    """``a``, made read-only (it is cached and shared by every reader)."""
    a.flags.writeable = False
    return a


class StepInputs(NamedTuple):
    """:meth:`Environment.step_inputs`: the monthly rent drift, sqrt(12), the environment's
    own shocks (``btc``, ``rent``), the observed rent paths ``(generation, first month,
    rents, market scope)``, the launch months, which generations have AI rents, and which of
    those move with a market path's common factor."""
    rent_drift: float
    sqrt12: float
    shocks: list
    paths: list
    launches: frozenset
    ai_rent: np.ndarray
    factor_gens: np.ndarray


class Environment:
    """Exogenous state, advanced once per month by :meth:`step`."""

    def __init__(self, cfg: Scenario, rng: np.random.Generator):
        e = cfg.environment
        self.cfg = e
        self.rng = rng
        gens = e.generations
        self.names = [g.name for g in gens]
        self.launch = np.array([g.launch_month for g in gens], dtype=np.int64)
        self.list_price = np.array([g.list_price for g in gens], dtype=float)
        self.kw = np.array([g.kw_per_gpu for g in gens], dtype=float)
        self.rent = np.array([g.rent0 for g in gens], dtype=float)
        self.rent0 = self.rent.copy()
        self.hash_linked = np.array([g.rent_index == "hashprice" for g in gens], dtype=bool)
        self.t = 0
        self.btc = e.btc_price0
        self.btc_peak = e.btc_price0
        self.stress = False
        self.hashprice = e.hashprice0
        self._shocks = [s for s in cfg.shocks if s.kind in ("btc", "rent")]
        # invariants of the monthly step, computed once (the same operations on the same values)
        self._ai_rent = ~self.hash_linked
        self.any_hash = bool(self.hash_linked.any())
        self._rent_drift = nm.log1p(-e.rent_deflation) / 12.0 - 0.5 * (e.rent_vol * e.rent_vol)
        if e.launch_rate > 0:
            # d is the per-chip decline a year with the launch steps in it: the trend between
            # launches is ln(1 - d) - launch_rate ln(1 - phi) (no double count)
            self._rent_drift -= e.launch_rate * nm.log1p(-e.step_down) / 12.0
        # $ per installed new unit (chip, server share, networking): the replacement price
        self.new_unit_price = _frozen(np.array(
            [g.system_cost if g.system_cost > 0 else e.installed_multiple * g.list_price
             for g in gens], dtype=float))
        self._sqrt12 = np.sqrt(12.0)
        self._launches = frozenset(self.launch.tolist())  # months in which a generation ships
        # the arrays below are read many times a month and change at most once a month: they
        # are computed when first read in a month (or regime) and handed out read-only
        self._power_cost = _frozen(self.kw * e.pue * HOURS_PER_MONTH * e.power_price / 1000.0)
        self._vol: dict[bool, np.ndarray] = {}
        self._facility = None  # facility_cost_per_gpu, built on first use
        # this month's shipping and age: read-only views of two buffers into which each
        # month's _set_month copies the month's rows of two tables (the same arrays all run,
        # as a stacked row would be)
        self._month = None  # the month they hold
        self._months, self._month_tabs = cfg.months, None  # (_set_month's tables)
        self._month_bufs = (np.zeros(self.n_gen, bool), np.zeros(self.n_gen, np.int64))
        self._month_views()
        # observed rent paths (environment.rent_path; empty = off): (generation, first month,
        # rents month by month from the first to the last point)
        self._paths = [(self.names.index(p.generation), int(p.points[0][0]),
                        path_rents(p.points), p.scope == "market") for p in e.rent_path]
        # the generations a market path moves: AI rents without a path of their own
        self._factor_gens = self._ai_rent.copy()
        for g, *_ in self._paths:
            self._factor_gens[g] = False
        if self._paths:
            self._apply_paths(None)
        # delivery lead times of new units (environment.lead_time_path; empty = none)
        self._init_lead_times()

    def _apply_paths(self, before: np.ndarray | None) -> None:
        """Set each path generation's rent to its observed path in the months the path covers
        (``rent_path``): the path overrides the trend, the noise, launch steps and rent
        shocks; after its last point the rent process carries on from the last value.

        A market path (``scope = "market"``) is the common rent factor R(t): in its months
        every other AI generation g shipping before t (and without a path of its own) has
        r_g(t) = r_g(t-1) R(t) / R(t-1), in place of its trend, noise, steps and shocks; the
        baseline's rent process moves every AI generation by the same factor each month, so
        an observed factor moves them all (``before`` = the rents of month t - 1)."""
        for g, first, rents, market in self._paths:
            k = self.t - first
            if 0 <= k < len(rents):
                self.rent[g] = rents[k]
                if market and k > 0 and before is not None:
                    live = self._factor_gens & (self.launch < self.t)
                    self.rent[live] = before[live] * (rents[k] / rents[k - 1])

    def _init_lead_times(self) -> None:
        """The lead-time paths (``environment.lead_time_path``) as (generation, first month,
        months of lead time month by month from the first to the last point);
        ``has_lead_time`` is False without one (the value cap is then the plain new-unit
        price, bit for bit)."""
        self._lead_paths = [(self.names.index(p.generation), int(p.points[0][0]),
                             path_lead_times(p.points)) for p in self.cfg.lead_time_path]
        self.has_lead_time = bool(self._lead_paths)
        # the month's lead times: a read-only view of a buffer each month's lead_time writes
        self._lead_month, self._lead_buf = None, np.zeros(self.n_gen)
        self._lead = _frozen(self._lead_buf.view())

    def lead_time(self) -> np.ndarray:
        """Months of delivery lead time of a new unit ordered now, per generation, (G,),
        read-only: each path's value at this month (straight lines between its points,
        :func:`path_lead_times`), 0 before its first point and for a generation without a
        path, its last value after its last point (as a rent path's process carries on from
        its last value: a path ends in 0 once new units ship without a wait). Kydland &
        Prescott (1982, Econometrica 50(6)): new capital takes time to build; docs/model.md,
        "Lead time of new units". The same array in every month, written in place at the
        month's first call: a reader holds the month's values while it lasts."""
        if self._lead_month != self.t:
            lead = self._lead_buf
            lead.fill(0.0)
            for g, first, months in self._lead_paths:
                k = self.t - first
                if k >= 0:
                    lead[g] = months[min(k, len(months) - 1)]
            self._lead_month = self.t
        return self._lead

    def _month_views(self) -> None:
        """``_shipping`` and ``_age``: read-only views of the buffers ``_month_bufs``."""
        self._shipping, self._age = (_frozen(b.view()) for b in self._month_bufs)

    def __getstate__(self) -> dict:
        """A copy (pickle, deepcopy) remakes the read-only views on its own buffers (a view
        would be copied as an array of its own, which the month would never write)."""
        state = self.__dict__.copy()
        del state["_shipping"], state["_age"], state["_lead"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._month_views()
        self._lead = _frozen(self._lead_buf.view())

    def _set_month(self) -> None:
        """This month's ``shipping`` and ``age``, written in place: the rows of two read-only
        tables over months 0 to ``months`` made at the first call (launch months never
        change, so every row is what ``launch <= t`` and ``t - launch`` give) copied into
        the buffers behind them; beyond the tables, computed into them. The arrays handed
        out are the same in every month: a reader holds the month's values while it lasts."""
        t = self.t
        tabs = self._month_tabs
        if tabs is None:
            months = np.arange(self._months + 1)[:, None]
            tabs = self._month_tabs = (_frozen(self.launch <= months),
                                       _frozen(months - self.launch))
        ship, age = self._month_bufs
        if 0 <= t <= self._months:
            np.copyto(ship, tabs[0][t])
            np.copyto(age, tabs[1][t])
        else:
            np.less_equal(self.launch, t, out=ship)
            np.subtract(t, self.launch, out=age)
        self._month = t

    def month_buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """The writeable buffers behind ``shipping`` and ``age``, for a caller that writes
        this month's values (``launch <= t``, ``t - launch``) into them itself before either
        is read (the compiled phase 1's kernel, where that costs nothing); from this call the
        month counts as written."""
        self._month = self.t
        return self._month_bufs

    @property
    def n_gen(self) -> int:
        return len(self.names)

    @property
    def shipping(self) -> np.ndarray:
        """Generations launched by now (they have a market); read-only."""
        if self._month != self.t:
            self._set_month()
        return self._shipping

    @property
    def age(self) -> np.ndarray:
        """Months since launch (negative before launch); read-only."""
        if self._month != self.t:
            self._set_month()
        return self._age

    def power_cost_per_gpu(self) -> np.ndarray:
        """Monthly power bill per GPU: kW x PUE x hours x $/MWh / 1000 (read-only)."""
        return self._power_cost

    def facility_cost_per_gpu(self) -> np.ndarray:
        """Monthly facility (colocation) charge per GPU: kW x ``facility_cost`` ($/kW-month of
        IT load; CBRE North America Data Center Trends H2 2024: 184.06 $/kW-month asked for a
        250-500 kW requirement, power billed on top), read-only."""
        if self._facility is None:
            self._facility = _frozen(self.kw * self.cfg.facility_cost)
        return self._facility

    def revenue_vol(self) -> np.ndarray:
        """Monthly log-volatility of each generation's rent, (G,): ``rent_vol`` for the AI rent
        process, and this regime's BTC volatility / sqrt(12) for hashprice-linked generations
        (their revenue moves one for one with BTC; difficulty is deterministic). Read-only."""
        vol = self._vol.get(self.stress)
        if vol is None:
            e = self.cfg
            btc = (e.btc_vol_stress if self.stress else e.btc_vol_calm) / self._sqrt12
            vol = self._vol[self.stress] = _frozen(np.where(self.hash_linked, btc, e.rent_vol))
        return vol

    def hash_log_growth(self, m: np.ndarray) -> np.ndarray | None:
        """Buyers' expected ln(H(t+m) / H(t)) for months ahead ``m`` at a constant BTC price,
        (M,): (ln c_H - ln H(t)) (1 - exp(-kappa m / 12)) with kappa = ln(1 + g_difficulty)
        (free entry and exit of hashrate, Prat & Walter 2021; module docstring). ``None`` when
        the reversion is off (``hashprice_cost = 0``, or no hashprice: ``hashprice0 = 0``)."""
        e = self.cfg
        if e.hashprice_cost <= 0 or e.hashprice0 <= 0:
            return None
        gap = nm.log(e.hashprice_cost / max(self.hashprice, 1e-12))
        kappa = nm.log1p(e.difficulty_growth)
        return gap * -nm.expm1(-kappa * np.asarray(m, dtype=float) / 12.0)

    def step_inputs(self) -> StepInputs:
        """What :meth:`step` reads besides the state, fixed for the run: for the compiled
        phase 1 (:mod:`sim.world.kernels.environment`), which steps as this class does."""
        return StepInputs(self._rent_drift, self._sqrt12, self._shocks, self._paths,
                          self._launches, self._ai_rent, self._factor_gens)

    def step(self) -> None:
        """Advance one month: rent shock and deflation, launches, BTC, hashprice, shocks."""
        e = self.cfg
        self.t += 1
        before = self.rent.copy() if self._paths else None  # last month's rents (paths)
        # two scalar draws (about 1 us each): the same raw draws and bits as one draw of two
        eps_r, eta = nm.standard_normal(self.rng), nm.standard_normal(self.rng)
        rho = e.rho_stress if self.stress else e.rho_calm
        vol = e.btc_vol_stress if self.stress else e.btc_vol_calm
        eps_b = rho * eps_r + np.sqrt(1.0 - rho * rho) * eta

        # shipping before this month: they deflate (hashprice-linked rents follow hashprice)
        live = (self.launch < self.t) & self._ai_rent
        # rent[live] *= f as one masked in-place multiply (the same products, others untouched)
        rent = self.rent
        np.multiply(rent, nm.exp(self._rent_drift + e.rent_vol * eps_r), out=rent, where=live)
        if self.t in self._launches:
            # the newest generation launching this month launches at t, so the older AI-rent
            # generations (launch < newest = t) are exactly ``live``
            np.multiply(rent, 1.0 - e.step_down, out=rent, where=live)

        if e.btc_random_walk:  # else BTC moves by shocks only (the draws are made all the same)
            drift = (e.btc_drift - 0.5 * (vol * vol)) / 12.0
            self.btc *= nm.exp(drift + vol / self._sqrt12 * eps_b)
        for s in self._shocks:
            if s.month == self.t:
                if s.kind == "btc":
                    self.btc *= 1.0 - s.size
                else:
                    self.rent[live] *= 1.0 - s.size
        self.btc = max(self.btc, 1e-9)
        self.btc_peak = max(self.btc_peak, self.btc)
        self.stress = 1.0 - self.btc / self.btc_peak >= e.stress_drawdown
        self.hashprice = (e.hashprice0 * self.btc / e.btc_price0
                          * nm.power(1.0 + e.difficulty_growth, -self.t / 12.0))
        if self.any_hash and e.hashprice0 > 0:
            hl = self.hash_linked
            self.rent[hl] = self.rent0[hl] * self.hashprice / e.hashprice0
        if self._paths:
            self._apply_paths(before)


def path_rents(points) -> np.ndarray:
    """Rents month by month from the first to the last point of an observed rent path
    ``points`` = [[month, $/h], ...] (strictly increasing whole months): linear in $/h between
    neighbouring points, R(t) = R_i + (R_{i+1} - R_i) (t - t_i) / (t_{i+1} - t_i) for
    t_i <= t <= t_{i+1} (``np.interp``). E.g. [[0, 10], [4, 2]] gives 10, 8, 6, 4, 2."""
    months = np.array([p[0] for p in points], dtype=float)
    rents = np.array([p[1] for p in points], dtype=float)
    return np.interp(np.arange(months[0], months[-1] + 1.0), months, rents)


def path_lead_times(points) -> np.ndarray:
    """Months of lead time month by month from the first to the last point of a lead-time
    path ``points`` = [[month, months of lead time], ...] (strictly increasing whole months),
    straight lines between neighbouring points as :func:`path_rents`:
    L(t) = L_i + (L_{i+1} - L_i) (t - t_i) / (t_{i+1} - t_i). E.g. [[0, 9], [3, 0]] gives
    9, 6, 3, 0."""
    return path_rents(points)
