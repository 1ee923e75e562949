"""Secondary buyers of used GPUs: hyperscalers, tier-2 clouds, brokers, and the salvage sink.

Reservation price of buyer k for one GPU of generation g (docs/model.md 7.11): the present value at
its hurdle rate r_k of the net rent it expects over the GPU's remaining economic life, minus the
cost of integrating it,

    P_kg = sum_{m=1}^{M_kg} E[max(0, R~_kgm - c_g)] (1 + r_k)^{-m/12} - I_k,

with M_kg = life_k - age_g, c_g the power and running cost per GPU-month, and R~_kgm lognormal
with mean F = u R_g 730 e^{mu_kg m/12} and log-sd sigma_g sqrt(m), expected log rent drift
mu_kg = ln(1 - d) + x_kg (for a hashprice-linked mining rig the ln(1 - d) m / 12 part is
the expected reversion of hashprice to miners' cost,
:meth:`sim.core.environment.Environment.hash_log_growth`, Prat & Walter 2021). Each month is
the option to run only when revenue covers the running cost (McDonald & Siegel 1985;
Dixit & Pindyck 1994, ch. 6; Brennan & Schwartz 1985), a Black (1976) call
F N(d1) - c N(d1 - s); sigma_g is ``Environment.revenue_vol`` (rent_vol, or BTC
volatility for hashprice-linked rigs). With sigma = 0 it is max(0, F - c). The extrapolation
term x_kg follows adaptive expectations (Cagan 1956; Nerlove 1958) on the part of the observed
price change that fundamentals do not explain,
x <- (1 - lambda) x + lambda * clip(12 (dln p - dln V), -1, 1): after a fire sale buyers expect
further falls and bid less, which deepens the buying vacuum (extrapolative expectations,
Greenwood & Shleifer 2014, RFS 27(3)).

Installed units and economic retirement (issue 14 part A; defaults keep the model above):
c_g adds the facility charge kW_g x ``facility_cost`` to power and spot opex; with
``value_cap`` every reservation and the value in best use are capped at the new-unit price,
P_kg <= P_new_g = ``Environment.new_unit_price`` (a buyer never pays more for a used unit than
for a new one: replacement cost bounds the value of a reproducible asset; with a delivery lead
time of new units, ``environment.lead_time_path``, the bound is the new price paid at delivery
plus the net earnings forgone while waiting, :meth:`BuyerBook.lead_cap`); with
``retirement = "economic"`` every type's horizon is M_g = ``physical_life_months`` - age_g,
and within it a unit earns only in months whose rent covers c_g (the shut-down option above),
so it retires when rent stops covering its running cost rather than at a fixed life.

Capacity (units) = min(capital / reservation, spare MW x 1000 / kW per GPU): a buyer can only
use GPUs it can power and cool. Capital and MW regrow slowly (new substations take 5-7 years,
TeraWulf). The salvage buyer takes anything at a floor share of list price; with
``buyers.outside_demand.enabled`` it is replaced by a downward-sloping outside demand of
out-of-sector and overseas buyers (:func:`sim.core.market.outside_bids`, docs/model.md
"Outside demand"), whose reference is :func:`replacement_cost`.

Participation: a buyer bids in a sale only if it can close within the sale window, with
probability 1 - exp(-days / close_days) (search friction, Duffie, Garleanu & Pedersen 2005;
see :meth:`BuyerBook.participating`). The model's monthly auction is a 30-day window.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from mesa.discrete_space import FixedAgent

from sim.core import numerics as nm
from sim.core.config import Scenario
from sim.core.environment import HOURS_PER_MONTH, Environment
from sim.core.finance import discount_factors, lognormal_call

SALVAGE = "salvage"
BIG = np.int64(10**12)  # "unlimited" units
_BIG_F = float(BIG)  # the most units any buyer's capacity counts (exact as a double)
MONTH_DAYS = 30.0  # the sale window of the model's monthly auction, days


def replacement_cost(env: Environment) -> np.ndarray:
    """Replacement cost of one unit of each generation ($/GPU), the reference of the outside
    demand (out-of-sector buyers pay a share of it, Ramey & Shapiro 2001, JPE 109(5)): the
    installed new-unit price ``env.new_unit_price`` (``system_cost``, or
    ``installed_multiple`` x list price; the list price itself with the defaults, bit for
    bit: 1.0 x p = p)."""
    return env.new_unit_price


def running_cost(cfg, env: Environment) -> np.ndarray:
    """Running cost of one installed GPU a month, per generation ($/GPU-month): power, spot
    opex (``cfg`` = the ``buyers`` config) and, when ``environment.facility_cost`` > 0, the
    colocation charge per kW of IT load. What buyers' valuations net from the rent, and what
    ``sim.world.losses.holder_margin`` credits holders with."""
    cost = env.power_cost_per_gpu() + cfg.spot_opex_per_gpu
    if env.cfg.facility_cost > 0:  # colocation charge per kW of IT load
        cost = cost + env.facility_cost_per_gpu()
    return cost


def _copy_out(a: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """A copy of ``a``: a new array, or ``out`` with ``a`` copied into it."""
    if out is None:
        return a.copy()
    np.copyto(out, a)
    return out


def floor_price(cfg, env: Environment) -> np.ndarray:
    """The lowest price a GPU of each generation sells at ($/GPU; ``cfg`` is the scenario's
    ``buyers`` section): with the outside demand its scrap value, ``scrap`` x replacement
    cost; without it the salvage sink's floor, ``salvage_floor`` x list price. The floor of
    the model's asks and quotes (phases 5 and 7), of the value in best use, and of the
    figures."""
    od = cfg.outside_demand
    if od.enabled:
        return od.scrap * replacement_cost(env)
    return cfg.salvage_floor * env.list_price


class ValuationInputs(NamedTuple):
    """:meth:`BuyerBook.valuation_inputs`: months ahead m and sqrt(m), the running cost per
    GPU-month (G, M), each type's discount, life and integration terms, which types have
    buyers (and whether any / all do), the value cap (None without it), whether the delivery
    lead time applies, and log(1 - rent deflation)."""
    m: np.ndarray
    sqrt_m: np.ndarray
    cost: np.ndarray
    t_disc: np.ndarray
    t_life: np.ndarray
    t_integration: np.ndarray
    present: np.ndarray
    any_present: bool
    all_present: bool
    cap: np.ndarray | None
    lead_on: bool
    log_decay: float


class BuyerBook:
    """State of all secondary buyers (struct of arrays); the salvage sink is not a row here."""

    def __init__(self, cfg: Scenario, env: Environment):
        b = cfg.buyers
        self.cfg = b
        names, rows = [], []
        for name, bt in b.types.items():
            names += [name] * bt.count
            rows += [bt] * bt.count
        self.n = len(rows)
        self.type = np.array(names, dtype=object)
        self.type_names = list(b.types)
        self.type_idx = np.array([self.type_names.index(t) for t in names], dtype=np.int64)
        self.hurdle = np.array([r.hurdle for r in rows], dtype=float)
        self.integration = np.array([r.integration_cost for r in rows], dtype=float)
        self.life = np.array([r.life_months for r in rows], dtype=np.int64)
        self._economic = b.retirement == "economic"
        if self._economic:  # every type plans on the physical life; the option retires units
            self.life = np.full(self.n, b.physical_life_months, dtype=np.int64)
        self.close_days = np.array([r.close_days for r in rows], dtype=float)
        scale = b.capacity_scale
        self.capital0 = np.array([r.capital for r in rows], dtype=float) * scale
        self.mw0 = np.array([r.spare_mw for r in rows], dtype=float) * scale
        self.capital = self.capital0.copy()
        self.mw = self.mw0.copy()
        # mw_regrowth x mw0, built on first use (``mw_step``: the model's build calls it, after
        # the sites split mw0)
        self._mw_step = None
        self.unlimited = b.unlimited
        self.extrap = np.zeros((self.n, env.n_gen))
        # ln(1 - d) of the book's environment, the expected log rent drift before extrapolation
        # (``_pv``); its negative is ``adapt``'s upper bound on x
        self._log_decay = nm.log1p(-env.cfg.rent_deflation)
        self.holdings = np.zeros((self.n, env.n_gen), dtype=np.int64)
        self._mmax = int(self.life.max()) if self.n else 1
        self._disc_rows = None  # per-buyer discount factors, built on first use (``_disc``)
        types = list(b.types.values())
        self._t_hurdle = np.array([t.hurdle for t in types])
        self._t_integration = np.array([t.integration_cost for t in types])
        self._t_life = np.array([t.life_months for t in types], dtype=np.int64)
        if self._economic:
            self._t_life = np.full(len(types), b.physical_life_months, dtype=np.int64)
        # value_cap: no value above the price of a new installed unit (None = no cap)
        self._cap = env.new_unit_price if b.value_cap else None
        # with delivery lead times (environment.lead_time_path) the cap is lead_cap's
        self._lead_on = self._cap is not None and env.has_lead_time
        self._t_disc = discount_factors(self._t_hurdle, self._mmax) if types else None
        # types with at least one buyer (the value in best use counts only these; public: the
        # validation's backtest reads it too)
        self.present = np.bincount(self.type_idx, minlength=len(self.type_names)) > 0
        self._any_present, self._all_present = bool(self.present.any()), bool(self.present.all())
        self._static_env = None  # the environment whose constant inputs ``_static`` holds
        self._by_type_cache = None  # (env, state key, value at x = 0, value at common x)
        # (env, state key, reservation prices) of expectations common to all buyers
        self._res_cache = None
        self._close_key, self._close_prob = None, None  # ``participating``'s probabilities
        self.sites = False  # spare MW split by cooling type (``enable_sites``)

    def enable_sites(self, liquid_share: float, n_lag: int) -> None:
        """Split every buyer's spare MW into air-cooled (``mw``) and liquid-cooled
        (``mw_liq``) MW, ``liquid_share`` of it liquid (docs/model.md, "Power and cooling").
        ``mw_used`` is the MW the GPUs bought draw, ``mw_conv[:, j]`` the MW being converted
        to liquid that arrives in j + 1 months (``n_lag`` columns), ``mw_built`` the MW
        added by regrowth (new power): the buyers' side of the MW ledger."""
        self.sites = True
        self.mw_liq = self.mw * liquid_share
        self.mw = self.mw - self.mw_liq
        self.mw0_liq = self.mw0 * liquid_share
        self.mw0 = self.mw0 - self.mw0_liq
        self._mw_step = None
        self.mw_used = np.zeros(self.n)
        self.mw_conv = np.zeros((self.n, max(n_lag, 1)))
        self.mw_built = 0.0

    def spare(self, liquid: bool) -> np.ndarray:
        """Spare MW a unit can be installed in: liquid-cooled MW only for a liquid-cooled
        generation; air-cooled generations use air or liquid MW (``mw`` without sites)."""
        if not self.sites:
            return self.mw
        return self.mw_liq if liquid else self.mw + self.mw_liq

    def mw_held(self) -> float:
        """All MW the buyers hold: spare (air and liquid), in use and being converted."""
        return float(self.mw.sum() + self.mw_liq.sum() + self.mw_used.sum()
                     + self.mw_conv.sum())

    @property
    def _disc(self) -> np.ndarray:
        """(1 + r_k)^(-m/12) per buyer, (K, M); only the per-buyer valuation (buyers whose
        expectations differ) needs it, so it is built on first use (11,667 x 72 powers in the
        large world)."""
        if self._disc_rows is None:
            self._disc_rows = discount_factors(self.hurdle, self._mmax)
        return self._disc_rows

    # ----------------------------------------------------------------- valuation
    def valuation_inputs(self, env: Environment) -> ValuationInputs:
        """What :meth:`values_by_type` reads besides the state, for the compiled phases 1 and 7
        (:mod:`sim.world.kernels.environment`, :mod:`sim.world.kernels.prices`), which value
        and regrow as this class does."""
        if self._static_env is not env:
            self._static(env)
        return ValuationInputs(self._m, self._sqrt_m, self._cost, self._t_disc, self._t_life,
                               self._t_integration, self.present, self._any_present,
                               self._all_present, self._cap, self._lead_on, self._log_decay)

    def store_values_by_type(self, env: Environment, key: tuple, v0: np.ndarray,
                             vx: np.ndarray) -> None:
        """Record values by type computed elsewhere (the compiled phase 1) for the state
        ``key`` that :meth:`values_by_type` builds, so that its next call for that state (phase
        6's reservation prices) reads them instead of valuing again."""
        self._by_type_cache = (env, key, v0, vx)

    def store_reservation(self, env: Environment, key: tuple, res: np.ndarray) -> None:
        """Record reservation prices computed elsewhere (the compiled phase 1) for the state
        ``key`` that :meth:`reservation` builds, expectations common to all buyers: its calls
        in that state (the sites phase, phase 6) read them instead of indexing the values
        again. The array is kept, never handed out (each call returns a copy)."""
        self._res_cache = (env, key, res)

    def _static(self, env: Environment) -> None:
        """Inputs of the valuation that depend on the configuration only, computed once per
        environment (they were recomputed in every valuation): the months ahead m = 1..M and
        sqrt(m), the running cost c_g per GPU-month and the log-sd sigma_g sqrt(m) per BTC
        regime (``_logvol``)."""
        self._m = np.arange(1, self._mmax + 1, dtype=float)
        self._sqrt_m = np.sqrt(self._m)
        cost = running_cost(self.cfg, env)
        # (G, M), contiguous: numerics.black_call repeats it over the expectation rows
        self._cost = np.ascontiguousarray(np.broadcast_to(cost[:, None], (len(cost),
                                                                          self._mmax)))
        self._logvols = {}
        self._static_env = env

    def _logvol(self, env: Environment) -> np.ndarray:
        """sigma_g sqrt(m), (G, M); sigma_g depends on the BTC regime only (``revenue_vol``)."""
        stress = bool(env.stress)
        lv = self._logvols.get(stress)
        if lv is None:
            lv = self._logvols[stress] = env.revenue_vol()[:, None] * self._sqrt_m[None, :]
        return lv

    def _pv(self, env: Environment, disc: np.ndarray, life: np.ndarray, integration: np.ndarray,
            extrap: np.ndarray) -> np.ndarray:
        """PV of expected net rent per GPU for each (row, generation); see module docstring.

        ``extrap`` is (R, G), one expectation row per row of ``disc`` / ``life`` /
        ``integration``, or (1, G) when common to all rows. A stack (X, 1, G) of expectation
        rows values every row under each of them at once and gives (X, R, G): every entry is
        computed by the same operations on the same numbers as in a separate call, and each
        present value is the sum of the same M terms in the same order."""
        terms = self._terms(env, disc, life, extrap)
        pv = np.add.reduce(terms, axis=-1)
        value = pv - integration[:, None]
        if self._cap is not None:
            # nobody pays more for a used unit than for a new installed one (value_cap), or,
            # with a delivery lead time, than the new one paid at delivery plus the net
            # earnings forgone while waiting for it (lead_cap)
            cap = self._cap if not self._lead_on else self.lead_cap(env, terms, disc)
            value = np.minimum(value, cap)
        return np.where(env.shipping, np.maximum(value, 0.0), 0.0)

    def _terms(self, env: Environment, disc: np.ndarray, life: np.ndarray,
               extrap: np.ndarray) -> np.ndarray:
        """The discounted terms e_m d_m of :meth:`_pv`'s sum, (..., R, G, M): month m's
        expected net earnings (the option to run, zero past the unit's remaining life) times
        the row's discount factor."""
        if self._static_env is not env:
            self._static(env)
        e, m = env.cfg, self._m
        mu = self._log_decay + extrap  # (..., G)
        growth = nm.exp(mu[..., None] * m / 12.0)  # (..., G, M)
        hash_growth = env.hash_log_growth(m) if env.any_hash else None
        if hash_growth is not None:
            # mining rigs: hashprice reverts to miners' cost (free entry and exit of hashrate)
            # instead of eroding at the rent drift; the extrapolation term x stays
            lg = hash_growth + extrap[..., None] * m / 12.0
            growth = np.where(env.hash_linked[:, None], nm.exp(lg), growth)
        revenue = (e.utilisation * env.rent * HOURS_PER_MONTH)[:, None] * growth
        # each month: the option to run only when revenue covers the running cost
        net = lognormal_call(revenue, self._cost, self._logvol(env))  # (..., G, M)
        remaining = life[:, None] - np.maximum(env.age, 0)  # (R, G)
        alive = m <= remaining[:, :, None]  # (R, G, M)
        # (net * alive) * disc as net * (alive * disc), on the smaller (R, G, M) array: with
        # alive in {0, 1} and disc > 0 finite both give net * disc, or net * 0 (+-0, or NaN
        # for a non-finite net) where not alive, bit for bit
        return net * (alive * disc[:, None, :])

    def lead_cap(self, env: Environment, terms: np.ndarray, disc: np.ndarray,
                 parts: bool = False):
        """The value cap with a delivery lead time of L_g months for a new unit
        (``environment.lead_time_path``; Kydland & Prescott 1982, Econometrica 50(6): new
        capital takes time to build). Replacement cost bounds a reproducible asset's value
        only for delivery at the same date; a unit available now is worth at most the new
        unit's price paid at delivery plus the net earnings forgone while waiting:

            cap_kg = sum_{m=1}^{M} w_gm e_kgm d_km + P_new_g d_k(L_g),
            w_gm = min(1, max(0, L_g - m + 1)),  d_k(L) = (1 + r_k)^(-L/12) = d_k1^L,

        e_kgm d_km being the present value of month m's expected net earnings as buyer (row)
        k values them, the terms of its reservation price (``terms``, (..., R, G, M), with
        ``disc`` (R, M) its discount factors), so for a whole L the first L terms; a
        fractional last month counts pro rata. With L_g = 0 every w is 0 and d(0) = 1: the
        cap is P_new_g exactly. Returns the cap (..., R, G), or with ``parts`` the pair
        (forgone earnings, P_new d(L))."""
        lead = env.lead_time()
        w = np.minimum(np.maximum(lead[:, None] - (self._m - 1.0), 0.0), 1.0)  # (G, M)
        earn = np.add.reduce(terms * w, axis=-1)
        new = env.new_unit_price * nm.power(disc[:, :1], lead[None, :])  # (R, G)
        return (earn, new) if parts else earn + new

    def cap_by_type(self, env: Environment, x0: np.ndarray | None = None,
                    parts: bool = False):
        """The value cap of each buyer type, (T, G), at the expectation row ``x0`` (0 by
        default, the value in best use's): P_new (``env.new_unit_price``) without a lead
        time, else :meth:`lead_cap` (with ``parts`` the pair (forgone earnings, P_new d(L))).
        ``None`` when ``buyers.value_cap`` is off. The bound the sanity tests check: no
        value in best use above the highest type's cap, no reservation above its buyer's."""
        if self._cap is None:
            return None
        n_t = len(self.type_names)
        if not self._lead_on:
            cap = np.broadcast_to(self._cap, (n_t, env.n_gen))
            return (np.zeros((n_t, env.n_gen)), cap) if parts else cap
        x = np.zeros((1, env.n_gen)) if x0 is None else np.asarray(x0, dtype=float)[None, :]
        terms = self._terms(env, self._t_disc, self._t_life, x)
        return self.lead_cap(env, terms, self._t_disc, parts)

    def values_by_type(self, env: Environment, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values by buyer type, (T, G): at x = 0 (for the value in best use) and at the
        expectation row ``x0`` common to all buyers (for reservation prices).

        Both come from one ``_pv`` evaluation (x0 stacked under the zero row; one row when
        x0 is 0 everywhere, where the two are the same numbers: mu = ln(1 - d) + 0). They are
        kept while the state they depend on is unchanged (month, BTC regime, hashprice, rents,
        x0), so the model's two valuations a month, the value in best use in phase 1 and the
        reservation prices in phase 6, cost one evaluation: nothing in between moves them."""
        key = (env.t, bool(env.stress), env.hashprice, env.rent.tobytes(), x0.tobytes())
        c = self._by_type_cache
        if c is not None and c[0] is env and c[1] == key:
            return c[2], c[3]
        args = (env, self._t_disc, self._t_life, self._t_integration)
        if (x0 == 0.0).all():
            v0 = vx = self._pv(*args, np.zeros((1, env.n_gen)))
        else:
            rows = np.zeros((2, 1, env.n_gen))  # the stack (0, x0) as (2, 1, G)
            rows[1, 0] = x0
            v0, vx = self._pv(*args, rows)
        self._by_type_cache = (env, key, v0, vx)
        return v0, vx

    def reservation(self, env: Environment, out: np.ndarray | None = None) -> np.ndarray:
        """Reservation price of every buyer for every generation, (K, G): a new array, or
        written into ``out`` (a float64 (K, G) array, returned) when given.

        With expectations common to all buyers the prices are kept for the state they depend
        on (month, BTC regime, hashprice, rents, every buyer's expectations: the key of
        :meth:`values_by_type` with the whole ``extrap`` for x0), so the model's calls in one
        month (the sites phase and phase 6) index the values once; each call returns a copy
        (or copies them into ``out``: the kept array is never handed out)."""
        if self.n == 0:
            return np.zeros((0, env.n_gen)) if out is None else out
        x = self.extrap
        key = (env.t, bool(env.stress), env.hashprice, env.rent.tobytes(), x.tobytes())
        c = self._res_cache
        if c is not None and c[0] is env and c[1] == key:
            return _copy_out(c[2], out)
        if (x == x[0]).all():
            # expectations are common to all buyers (``adapt`` moves every row alike), so the
            # value depends on the buyer's type only: one row per type, not one per buyer
            res = self.values_by_type(env, x[0])[1][self.type_idx]
            self._res_cache = (env, key, res)
            return _copy_out(res, out)
        res = self._pv(env, self._disc, self.life, self.integration, x)
        if out is None:
            return res
        np.copyto(out, res)
        return out

    def fundamental(self, env: Environment) -> np.ndarray:
        """Value in best use (Shleifer & Vishny 1992, J. Finance 47(4)): the highest reservation
        price over buyer types with expectations anchored on fundamentals (x = 0), per generation,
        and never below the salvage value. The fire-sale discount is measured against it. Only
        types with at least one buyer count: a type with ``count = 0`` is no user."""
        salvage = np.where(env.shipping, floor_price(self.cfg, env), 0.0)
        if not self._any_present:  # no buyer at all: the best use is scrap
            value = salvage
        else:
            best = self.values_by_type(env, self.extrap[0])[0]  # x = 0 for every type
            if not self._all_present:
                best = best[self.present]
            # max(best over types, salvage), 0 where not shipping: ``_pv`` and ``salvage``
            # are both +0.0 there already (np.where(shipping, ..., 0.0)), and max(+0.0, +0.0)
            # = +0.0, so no outer mask is needed; np.maximum.reduce is what ndarray.max calls
            value = np.maximum(np.maximum.reduce(best, axis=0), salvage)
        if self._cap is not None:  # a salvage floor above a (small) system cost is capped too
            cap = self._cap
            if self._lead_on:  # the best use's cap: the highest cap of the types present
                cap = np.maximum.reduce(self.cap_by_type(env)[self.present], axis=0)
            value = np.minimum(value, np.where(env.shipping, cap, 0.0))
        return value

    def capacity(self, price: np.ndarray, kw: float, liquid: bool = False) -> np.ndarray:
        """Units each buyer can take at the given prices: min(capital / p, MW x 1000 / kW),
        MW being the spare MW the generation fits (``spare``)."""
        if self.unlimited:
            return np.full(self.n, BIG)
        units = np.divide(self.capital, price, out=np.zeros(self.n), where=price > 0)
        return self._whole_units(units, kw, liquid)

    def _whole_units(self, units: np.ndarray, kw: float, liquid: bool = False) -> np.ndarray:
        """floor(min(units, MW x 1000 / kW, BIG)) as int64, ``units`` (the capital's reach,
        overwritten) and the power bound each nudged up by 1e-9 against rounding. Capped at
        ``BIG``, the capacity of an unlimited buyer: capital / a reservation near 0 (e.g. a
        GPU whose rent index is ~1e-6) can exceed int64, whose cast would give -2**63, a
        negative bid. The cap never binds in the shipped scenarios (at most 12,000 units a
        buyer), and the model caps every bid at the units offered anyway."""
        units += 1e-9
        by_mw = (self.spare(liquid) if self.sites else self.mw) * 1000.0 / kw
        by_mw += 1e-9
        # floor is monotone, so floor(min(a, b)) = min(floor(a), floor(b)): one floor, not two
        np.minimum(units, by_mw, out=units)
        np.minimum(units, _BIG_F, out=units)
        return np.floor(units, out=units).astype(np.int64)

    def capacity_total(self, price: float, kw: float, liquid: bool = False) -> float:
        """Total units all buyers could take at one price ``price`` > 0 for every buyer: the
        sum of :meth:`capacity` at ``np.full(n, price)`` (the same divisions, floors and
        integer sum), without building the price row and its mask."""
        if self.unlimited or not price > 0.0:  # (NaN included) the general path
            return float(self.capacity(np.full(self.n, price), kw, liquid).sum())
        return float(np.add.reduce(self._whole_units(self.capital / price, kw, liquid)))

    def close_probabilities(self, days: float) -> np.ndarray | None:
        """Each buyer's probability of closing within ``days`` days, 1 - exp(-days /
        close_days) (1 where ``close_days = 0``), or None when nobody draws (no buyer has a
        friction, or ``buyers.unlimited``). Kept (``_close_prob``) and made anew only when
        ``days``, ``unlimited`` or ``close_days`` change: the model makes it at its build, so
        that no month makes it (:meth:`participating`)."""
        key = (days, self.unlimited, self.close_days.tobytes())
        if self._close_key != key:  # the closing probabilities change with these only
            self._close_key = key
            if self.unlimited or not (self.close_days > 0).any():
                self._close_prob = None
            else:
                rate = np.divide(days, self.close_days, out=np.full(self.n, np.inf),
                                 where=self.close_days > 0)
                self._close_prob = -nm.expm1(-rate)
        return self._close_prob

    def participating(self, rng: np.random.Generator, days: float,
                      out: np.ndarray | None = None, draws: np.ndarray | None = None
                      ) -> np.ndarray:
        """Which buyers are able to bid in a sale window of ``days`` days, (K,) bool: a new
        array, or written into ``out`` (a (K,) bool array, returned) when given, the uniform
        draws then into ``draws`` (a (K,) float64 scratch array; the same numbers as a new
        array of them: ``Generator.random`` fills either alike).

        Search and due-diligence friction: buyer k needs an exponential time with mean
        ``close_days`` to find the sale, inspect the GPUs, sign and provision power, so it can
        bid with probability 1 - exp(-days / close_days) (the Poisson meeting rate of the OTC
        search model of Duffie, Garleanu & Pedersen 2005, Econometrica 73(6)). One uniform draw
        per buyer from ``rng``; ``close_days = 0`` always bids. If no buyer has a friction, or
        ``buyers.unlimited`` is set (the frictionless benchmark), every buyer bids and nothing
        is drawn, so the random stream is that of the market without the friction.
        """
        prob = self.close_probabilities(days)
        if out is None:
            if prob is None:
                return np.ones(self.n, dtype=bool)
            return rng.random(self.n) < prob
        if prob is None:
            out.fill(True)
        else:
            rng.random(out=draws)
            np.less(draws, prob, out=out)
        return out

    # ----------------------------------------------------------------- dynamics
    def settle(self, fills: np.ndarray, price: float, gen: int, kw: float,
               liquid: bool = False) -> np.ndarray:
        """Take delivery of ``fills`` units at ``price``; return the cash each buyer pays.

        With sites, a unit of an air-cooled generation draws its kW from air-cooled MW first
        and then from liquid-cooled MW (liquid MW, scarcer, is kept for the units that need
        it); a liquid-cooled generation's only from liquid MW; the MW drawn moves to
        ``mw_used``."""
        pay = fills * price
        self.holdings[:, gen] += fills
        if not self.unlimited:
            self.capital = np.maximum(self.capital - pay, 0.0)
            if not self.sites:
                self.mw = np.maximum(self.mw - fills * kw / 1000.0, 0.0)
                return pay
            need = fills * kw / 1000.0
            air = np.zeros(self.n) if liquid else np.minimum(need, self.mw)
            liq = np.minimum(need - air, self.mw_liq)
            self.mw = self.mw - air
            self.mw_liq = self.mw_liq - liq
            self.mw_used = self.mw_used + air + liq
        return pay

    def adapt(self, dlog_price: np.ndarray, dlog_value: np.ndarray, traded: np.ndarray) -> None:
        """Adaptive expectations on unexplained price moves, for generations that traded."""
        lam = self.cfg.adapt
        # clip(a, -1, 1) as minimum(maximum(a, -1), 1): the same values (NaN stays NaN)
        surprise = np.minimum(np.maximum(12.0 * (dlog_price - dlog_value), -1.0), 1.0)
        upd = (1 - lam) * self.extrap + lam * surprise[None, :]
        # nobody expects GPU rents to rise (cost per FLOP falls 21-28 %/yr, Epoch AI 2022):
        # the expected drift ln(1 - d) + x stays <= 0
        upd = np.minimum(upd, -self._log_decay)
        self.extrap = np.where(traded[None, :], upd, self.extrap)

    def mw_step(self) -> np.ndarray:
        """The spare MW that regrowth adds a month, mw_regrowth x mw0 (mw0 never changes once
        the months run: computed at the first call)."""
        if self._mw_step is None:
            self._mw_step = self.cfg.mw_regrowth * self.mw0
        return self._mw_step

    def regrow(self) -> None:
        """Capital refills towards its initial level; spare MW grows slowly (new power)."""
        c = self.cfg
        self.capital += c.capital_regrowth * np.maximum(self.capital0 - self.capital, 0.0)
        self.mw_step()
        if self.sites:
            self._regrow_sites()
            return
        self.mw = np.minimum(self.mw + self._mw_step, self.mw0)

    def _regrow_sites(self) -> None:
        """Air and liquid spare MW each regrow by mw_regrowth x its initial level, up to that
        level; MW above it (a bought site) is kept, never cut back:
        mw <- max(mw, min(mw + step, mw0)). The MW added is ``mw_built``; conversions in
        progress advance a month and those finished join the liquid MW."""
        before = self.mw.sum() + self.mw_liq.sum()
        self.mw = np.maximum(self.mw, np.minimum(self.mw + self._mw_step, self.mw0))
        step_liq = self.cfg.mw_regrowth * self.mw0_liq
        self.mw_liq = np.maximum(self.mw_liq, np.minimum(self.mw_liq + step_liq, self.mw0_liq))
        self.mw_built += float(self.mw.sum() + self.mw_liq.sum() - before)
        done = self.mw_conv[:, 0].copy()
        self.mw_conv[:, :-1] = self.mw_conv[:, 1:]
        self.mw_conv[:, -1] = 0.0
        self.mw_liq = self.mw_liq + done

    def convert(self, gain: np.ndarray, cost: float, rate: float, months: int) -> np.ndarray:
        """Air-to-liquid conversion (docs/model.md, "Power and cooling"): buyer k converts

            x_k = min(rate x air spare MW_k, capital_k / cost)   if gain_k > cost, else 0

        MW, ``gain_k`` being the value to k of one liquid-cooled MW over one air-cooled MW
        ($/MW) and ``cost`` the conversion capital per MW. It pays x_k x cost from its capital
        at once; the MW leave the air spare MW and arrive as liquid MW after ``months``
        months (at once if 0). Returns x (MW)."""
        go = (gain > cost) & (self.mw > 0)
        if not go.any():
            return np.zeros(self.n)
        reach = np.divide(self.capital, cost, out=np.full(self.n, np.inf), where=cost > 0)
        x = np.where(go, np.minimum(rate * self.mw, reach), 0.0)
        self.mw = self.mw - x
        self.capital = np.maximum(self.capital - x * cost, 0.0)
        if months == 0:
            self.mw_liq = self.mw_liq + x
        else:
            self.mw_conv[:, months - 1] += x
        return x

    def shock_capital(self, size: float) -> None:
        self.capital *= 1.0 - size
        self.capital0 *= 1.0 - size


class SecondaryBuyer(FixedAgent):
    """A buyer of used GPUs (hyperscaler, tier-2 cloud, broker): a view on the BuyerBook."""

    def __init__(self, model, idx: int):
        super().__init__(model)
        self.idx = idx

    @property
    def kind(self) -> str:
        return str(self.model.buyers.type[self.idx])

    @property
    def capital(self) -> float:
        return float(self.model.buyers.capital[self.idx])

    @property
    def spare_mw(self) -> float:
        """Spare MW, air- and liquid-cooled (with sites on, ``mw`` is the air-cooled part)."""
        b = self.model.buyers
        return float(b.mw[self.idx] + b.mw_liq[self.idx]) if b.sites else float(b.mw[self.idx])

    @property
    def holdings(self) -> dict[str, int]:
        return dict(zip(self.model.env.names, self.model.buyers.holdings[self.idx].tolist(),
                        strict=True))

    @property
    def state(self) -> str:
        return "healthy"

    @property
    def size(self) -> float:
        """Capital plus GPUs bought, at the price index ($)."""
        m = self.model
        return float(m.buyers.capital[self.idx] + nm.dot(m.buyers.holdings[self.idx], m.price))


class SalvageBuyer(FixedAgent):
    """The salvage sink: buys any quantity at ``salvage_floor`` x list price (parts, scrap)."""

    kind = SALVAGE
    state = "healthy"

    def __init__(self, model):
        super().__init__(model)

    @property
    def size(self) -> float:
        return nm.dot(self.model.salvage_units, self.model.price)

    @property
    def holdings(self) -> dict[str, int]:
        return dict(zip(self.model.env.names, self.model.salvage_units.tolist(), strict=True))
