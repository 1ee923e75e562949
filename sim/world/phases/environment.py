"""Phase 1, the environment: the month advances (rents, BTC, hashprice, launches, stress),
the value in best use is recomputed and the scenario's shocks land (docs/model.md section 3,
"Shocks"). Returns the month's :class:`~sim.world.state.MonthState`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.core import numerics as nm
from sim.core.environment import HOURS_PER_MONTH
from sim.world.kernels import environment as ke
from sim.world.phases import funding
from sim.world.state import MonthState

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def run(m: LiquidationModel) -> MonthState:
    """Advance the environment one month, recompute the value in best use V_t (buyers'
    fundamental, :meth:`agents.buyer.BuyerBook.fundamental`) and apply this month's shocks;
    returns the month's state with last month's V_{t-1} (phase 7's reference). On the
    compiled engine, where :func:`covers` the scenario, the step and the valuation are one
    kernel call (:func:`sim.world.kernels.environment.env_month`), elsewhere the numpy code
    writing in place (:func:`_run_uncovered`)."""
    # (the kernel's inputs exist once a month ran on it: covered, as the book of buyers
    # never changes its types)
    if m.engine == "compiled":
        if "environment" in m.kernel_inputs or covers(m):
            month = _run_compiled(m)
        else:
            month = _run_uncovered(m)
        _shocks(m, month.t)
        return month
    m.env.step()
    t = m.env.t
    # value in best use depends on the environment only: it is this month's reference
    month = MonthState(t, m.fundamental)
    m.fundamental = m.buyers.fundamental(m.env)
    _shocks(m, t)
    return month


def _run_uncovered(m: LiquidationModel) -> MonthState:
    """The numpy code's step and valuation on the compiled engine where the kernel does not
    cover the scenario (a book without any buyer), writing in place as the kernel does:
    V_{t-1} copied into the run's buffer of last month's value in best use (kept in
    ``m.kernel_inputs["prev_fundamental"]``), the month's value into ``m.fundamental``."""
    prev = m.kernel_inputs.get("prev_fundamental")
    if prev is None:
        prev = m.kernel_inputs["prev_fundamental"] = np.empty_like(m.fundamental)
    m.env.step()
    np.copyto(prev, m.fundamental)
    np.copyto(m.fundamental, m.buyers.fundamental(m.env))
    return MonthState(m.env.t, prev)


def _shocks(m: LiquidationModel, t: int) -> None:
    """This month's shocks of the buyers, borrowers and lenders (the environment's own,
    ``btc`` and ``rent``, land in its step)."""
    for s in m.cfg.shocks:
        if s.month != t:
            continue
        if s.kind == "buyer_capital":
            before = m.buyers.capital.sum()
            m.buyers.shock_capital(s.size)
            if not m.buyers.unlimited:  # unlimited buyers' capital is off the books
                m.add_outside_flow("buyer_capital", m.buyers.capital.sum() - before)
        elif s.kind == "guarantor_exit":
            hit = m.borrowers.guaranteed & (m.rng.random(m.borrowers.n) < s.size)
            m.borrowers.guaranteed &= ~hit
            # loans that roll over from now on are priced without the guarantee
            m.borrowers.spread[hit] = m.borrowers.spread_base[hit]
            m.borrowers.tenant_gone |= hit
            for i in hit.nonzero()[0]:
                m.log_event("guarantee_withdrawn", "borrower", i)
        elif s.kind == "funding":
            funding.run_on(m, np.ones(m.lenders.n, bool), s.size, outside_only=True)
        elif s.kind == "other_loans":
            m.lenders.shock_other_loans(s.size, s.lender_type)


def covers(m: LiquidationModel) -> bool:
    """Whether phase 1's kernel covers the scenario: every switch does, given at least one
    buyer (docstring of :mod:`sim.world.kernels.environment`)."""
    return m.buyers.valuation_inputs(m.env).any_present


# stand-ins for the value cap and the lead times without them (never read), read-only as
# the real ones are (Environment.new_unit_price, Environment.lead_time): one compiled
# signature of the kernel for both
_NO_LEAD = np.zeros(0)
_NO_LEAD.flags.writeable = False
_NO_CAP = np.zeros(0)
_NO_CAP.flags.writeable = False


def _static(m: LiquidationModel) -> tuple:
    """The kernel's arguments that never change in a run, built at the first compiled month:
    the scalar parameters (``P_*``, the numbers :meth:`Environment.step` and the valuation
    read), the environment's shocks, the revenue volatilities of both BTC regimes
    (:meth:`Environment.revenue_vol`, by its expression), the observed rent paths as
    arrays and row 0's growth exp(mu m / 12), mu = ln(1 - d) + 0.0 (by ``nm.exp``, as the
    numpy valuation computes it every month)."""
    env, vi = m.env, m.buyers.valuation_inputs(m.env)
    si = env.step_inputs()
    e = env.cfg
    p = np.zeros(ke.N_PARAMS)
    p[ke.P_RHO_CALM], p[ke.P_RHO_STRESS] = e.rho_calm, e.rho_stress
    p[ke.P_VOL_CALM], p[ke.P_VOL_STRESS] = e.btc_vol_calm, e.btc_vol_stress
    p[ke.P_RENT_DRIFT], p[ke.P_RENT_VOL] = si.rent_drift, e.rent_vol
    p[ke.P_STEP_DOWN], p[ke.P_BTC_DRIFT] = e.step_down, e.btc_drift
    p[ke.P_SQRT12], p[ke.P_STRESS_DD] = si.sqrt12, e.stress_drawdown
    p[ke.P_HASH0], p[ke.P_BTC0] = e.hashprice0, e.btc_price0
    p[ke.P_DIFF_GROWTH], p[ke.P_HASH_COST] = e.difficulty_growth, e.hashprice_cost
    p[ke.P_LOG_DECAY], p[ke.P_UTIL], p[ke.P_HOURS] = vi.log_decay, e.utilisation, HOURS_PER_MONTH
    shocks = si.shocks
    rvol = [np.where(env.hash_linked, v / si.sqrt12, e.rent_vol)
            for v in (e.btc_vol_calm, e.btc_vol_stress)]
    hash_on = env.any_hash and e.hashprice_cost > 0 and e.hashprice0 > 0
    cap_on = vi.cap is not None
    paths = si.paths
    longest = max([len(r) for _, _, r, _ in paths], default=1)
    path_rents = np.zeros((len(paths), longest))
    for q, (_, _, rents, _) in enumerate(paths):
        path_rents[q, :len(rents)] = rents
    return (p, np.array([s.month for s in shocks], dtype=np.int64),
            np.array([0 if s.kind == "btc" else 1 for s in shocks], dtype=np.int64),
            np.array([s.size for s in shocks], dtype=float), rvol[0], rvol[1], hash_on,
            cap_on, vi.cap if cap_on else _NO_CAP,
            np.array([g for g, _, _, _ in paths], dtype=np.int64),
            np.array([first for _, first, _, _ in paths], dtype=np.int64),
            np.array([market for _, _, _, market in paths], dtype=bool), path_rents,
            np.array([len(r) for _, _, r, _ in paths], dtype=np.int64),
            nm.exp((vi.log_decay + 0.0) * vi.m / 12.0))


def _run_compiled(m: LiquidationModel) -> MonthState:
    """The environment's step and the value in best use by :func:`ke.env_month`; the two
    standard normal draws are made here, as :meth:`Environment.step` makes them (the raw
    draws and their uniforms; the kernel takes their Phi^-1). Leaves the environment, the
    buyers' valuation cache (phase 6's reservation prices read it) and ``m.fundamental`` as
    the numpy code does; with expectations common to all buyers it also hands the month's
    reservation prices to the buyers (:meth:`agents.buyer.BuyerBook.store_reservation`),
    which the sites phase and phase 6 ask for.

    Written in place: ``m.fundamental`` (the kernel writes V_t into it) and the month's
    ``prev_fundamental``, a buffer of the run (in ``m.kernel_inputs["environment"]``) into
    which the kernel copies V_{t-1} first; the environment's rents, and its ``shipping`` and
    ``age`` (:meth:`~sim.core.environment.Environment.month_buffers`)."""
    env, b = m.env, m.buyers
    st = m.kernel_inputs.get("environment")
    if st is None:  # (the valuation's inputs depend on the configuration only)
        vi = b.valuation_inputs(env)
        # row 1's growth and its mu per generation, kept between months by the kernel
        growth1 = np.empty((env.n_gen, vi.m.shape[0]))
        st = m.kernel_inputs["environment"] = (_static(m), env.step_inputs(), vi, growth1,
                                               np.full(env.n_gen, np.nan),
                                               np.empty(env.n_gen))
    ((p, s_month, s_kind, s_size, rvol_calm, rvol_stress, hash_on, cap_on, cap, path_gen,
      path_first, path_market, path_rents, path_len, growth0), si, vi, growth1, mu1, prev) = st
    env.t += 1
    t = env.t
    rng = env.rng
    # Environment.step's two standard normal draws, nm.standard_normal(rng) each: the
    # uniforms here, in its order, their Phi^-1 in the kernel (ndtri1 compiled, the same bits)
    u_r, u_eta = nm.open_uniform(rng, None), nm.open_uniform(rng, None)
    ship, age = env.month_buffers()  # (the kernel writes the month's shipping and age)
    extrap = b.extrap
    rent = env.rent
    # the month's lead times (env.lead_time caches them, as the numpy valuation reads them)
    lead = env.lead_time() if vi.lead_on else _NO_LEAD
    # the kernel's new arrays, passed in (cheaper than returned): the values at rows 0 and
    # X - 1 (X <= 2), the reservation prices
    n_g = rent.shape[0]
    v, res = np.empty((2, vi.t_disc.shape[0], n_g)), np.empty(extrap.shape)
    btc, peak, stress, hashprice, n_x, common = ke.env_month(
        t, t in si.launches, u_r, u_eta, env.btc, env.btc_peak, env.stress,
        env.cfg.btc_random_walk, env.any_hash, rent, env.launch, si.ai_rent,
        env.hash_linked, env.rent0, s_month, s_kind, s_size, p, hash_on, extrap, vi.m,
        vi.sqrt_m, vi.cost, rvol_calm, rvol_stress, vi.t_disc, vi.t_life, vi.t_integration,
        vi.present, vi.all_present, cap_on, cap, m.salvage_price, path_gen, path_first,
        path_market, path_rents, path_len, si.factor_gens, vi.lead_on, lead, growth0,
        growth1, mu1, b.type_idx, v, m.fundamental, prev, res, ship, age)
    env.btc, env.btc_peak, env.stress, env.hashprice = btc, peak, stress, hashprice
    state = (t, bool(stress), hashprice, rent.tobytes())
    b.store_values_by_type(env, state + (extrap[0].tobytes(),), v[0], v[n_x - 1])
    if common and res.shape[0]:  # (BuyerBook.reservation's key)
        b.store_reservation(env, state + (extrap.tobytes(),), res)
    return MonthState(t, prev)
