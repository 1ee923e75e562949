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
    from sim.world.stack import MonthContext, RunStack


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


def _state(m: LiquidationModel) -> tuple:
    """The run's kernel inputs kept in ``m.kernel_inputs["environment"]``, made at its first
    compiled month: (:func:`_static`, the environment's step inputs, the buyers' valuation
    inputs, row 1's growth (G, M) and its mu (G,) per generation, kept between months by the
    kernel, and the buffer of last month's value in best use (G,))."""
    st = m.kernel_inputs.get("environment")
    if st is None:  # (the valuation's inputs depend on the configuration only)
        env = m.env
        vi = m.buyers.valuation_inputs(env)
        growth1 = np.empty((env.n_gen, vi.m.shape[0]))
        st = m.kernel_inputs["environment"] = (_static(m), env.step_inputs(), vi, growth1,
                                               np.full(env.n_gen, np.nan),
                                               np.empty(env.n_gen))
    return st


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
    st = _state(m)
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


# the arguments of ke.env_batch after ``runs``, in order (those of ke.env_body, then the
# batch's outputs of the numbers env_month returns)
_ARGS = ("t", "launch_now", "u_r", "u_eta", "btc", "btc_peak", "stress", "btc_walk",
         "any_hash", "rent", "launch", "ai_rent", "hash_linked", "rent0", "shock_month",
         "shock_kind", "shock_size", "p", "hash_on", "extrap", "m", "sqrt_m", "cost",
         "rvol_calm", "rvol_stress", "disc", "life", "integration", "present", "all_present",
         "cap_on", "cap", "salvage", "path_gen", "path_first", "path_market", "path_rents",
         "path_len", "factor_gens", "lead_on", "lead", "growth0", "growth1", "mu1", "type_idx",
         "v_out", "fund_out", "prev_out", "res_out", "ship_out", "age_out", "hashprice", "n_x",
         "common")
# arguments the kernel writes or that change between months outside phase 1: each run's
# own array must be its row of a stack (else the runs cannot share a call)
_RESIDENT = ("rent", "extrap", "salvage", "fund_out")
# the kernel's buffers kept between months in each run's m.kernel_inputs["environment"] (its
# index there): stacked at the first batched month, each run's entry then holding its row
_KEPT = (("growth1", 3), ("mu1", 4), ("prev_out", 5))


def _held(m: LiquidationModel, st: tuple) -> dict:
    """What :func:`_run_compiled` passes to the kernel, by :data:`_ARGS`' names, but the
    month's numbers (the month, whether a generation launches, the draws, BTC, its peak, the
    stress flag, the lead times), the new arrays (values, reservation prices) and the
    environment's shipping and age buffers."""
    ((p, s_month, s_kind, s_size, rvol_calm, rvol_stress, hash_on, cap_on, cap, path_gen,
      path_first, path_market, path_rents, path_len, growth0), si, vi, growth1, mu1, prev) = st
    env, b = m.env, m.buyers
    return {"btc_walk": env.cfg.btc_random_walk, "any_hash": env.any_hash, "rent": env.rent,
            "launch": env.launch, "ai_rent": si.ai_rent, "hash_linked": env.hash_linked,
            "rent0": env.rent0, "shock_month": s_month, "shock_kind": s_kind,
            "shock_size": s_size, "p": p, "hash_on": hash_on, "extrap": b.extrap, "m": vi.m,
            "sqrt_m": vi.sqrt_m, "cost": vi.cost, "rvol_calm": rvol_calm,
            "rvol_stress": rvol_stress, "disc": vi.t_disc, "life": vi.t_life,
            "integration": vi.t_integration, "present": vi.present,
            "all_present": vi.all_present, "cap_on": cap_on, "cap": cap,
            "salvage": m.salvage_price, "path_gen": path_gen, "path_first": path_first,
            "path_market": path_market, "path_rents": path_rents, "path_len": path_len,
            "factor_gens": si.factor_gens, "lead_on": vi.lead_on, "growth0": growth0,
            "growth1": growth1, "mu1": mu1, "type_idx": b.type_idx, "fund_out": m.fundamental,
            "prev_out": prev}


def batch_inputs(stack: RunStack) -> dict | None:
    """What :func:`run_batch` passes to :func:`ke.env_batch` for a stack's runs, made at its
    first batched month. Each argument :func:`_held` names: the stack of the very arrays the
    runs' own phases pass where they are rows of one (of one shape in every run; required
    for :data:`_RESIDENT`), else the runs' arrays, which never change, stacked (numbers and
    switches as (R,) arrays); the buffers of :data:`_KEPT` stacked from their contents and
    each run's ``m.kernel_inputs["environment"]`` rebound to its rows (its own phase then
    keeps them there); scratch for the month's numbers, the shipping and age the kernel
    writes (copied into each run's :meth:`Environment.month_buffers`) and the numbers it
    returns. None when the runs cannot share one call (not all compiled and covered, an
    argument of another shape in some run): then each runs its own phase."""
    models = stack.models
    if any(m.engine != "compiled" or not ("environment" in m.kernel_inputs or covers(m))
           for m in models):
        return None
    sts = [_state(m) for m in models]
    held = [_held(m, st) for m, st in zip(models, sts, strict=True)]
    index = {id(stack.view(key, 0)): key for key in stack.stacks}  # (an alias: one array)
    out: dict = {}
    for name, a0 in held[0].items():
        runs = [h[name] for h in held]
        if not isinstance(a0, np.ndarray):
            out[name] = np.array(runs, dtype=np.float64 if isinstance(a0, float) else np.bool_)
            continue
        if len({a.shape for a in runs}) != 1 or len({a.dtype for a in runs}) != 1:
            return None
        key = index.get(id(a0))
        if key is not None and len(set(stack.shapes[key])) == 1 and all(
                a is stack.view(key, r) for r, a in enumerate(runs)):
            out[name] = stack.stacks[key]
        elif name in _RESIDENT:
            return None
        else:  # (fixed for the run, or a buffer of _KEPT)
            out[name] = np.stack(runs)
    if len(set(out["lead_on"].tolist())) != 1:  # (the lead times' scratch: one shape)
        return None
    for name, i in _KEPT:  # each run's own phase keeps its buffers in the stacked rows
        for r, m in enumerate(models):
            st = list(m.kernel_inputs["environment"])
            st[i] = out[name][r]
            m.kernel_inputs["environment"] = tuple(st)
    # each run's buffer of V_{t-1} (the one its months' MonthState hand on)
    out["prev_rows"] = [m.kernel_inputs["environment"][5] for m in models]
    n, n_g = len(models), models[0].n_gen
    out["launches"] = [st[1].launches for st in sts]  # (frozensets: read in Python)
    out["t"], out["n_x"] = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for name in ("u_r", "u_eta", "btc", "btc_peak", "hashprice"):
        out[name] = np.zeros(n)
    for name in ("launch_now", "stress", "common"):
        out[name] = np.zeros(n, np.bool_)
    out["lead"] = np.zeros((n, n_g if out["lead_on"][0] else 0))
    out["ship_out"], out["age_out"] = np.zeros((n, n_g), np.bool_), np.zeros((n, n_g), np.int64)
    return out


def run_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """Phase 1 for the runs ``runs`` of a stack (``contexts`` their months' hand-overs, whose
    ``month`` it sets) by one call of :func:`ke.env_batch` over the stacked arrays
    (:func:`batch_inputs`): per run first what :func:`_run_compiled` does before its kernel
    (the month, the two draws from the run's Generator, the lead times), then the one call,
    then per run what it does after (the environment's numbers, its shipping and age, the
    buyers' caches) and the run's shocks (:func:`_shocks`, which may draw from the same
    Generator: each run's draws stay in its own order). The same bits as each run's own
    phase (``tests/world/test_batch_environment.py``). A run whose shocks raise (a funding
    shock's clearing) fails alone (:meth:`RunStack.fail`), after the others' months are
    written; runs that cannot share a call each run their own phase (:func:`run`)."""
    b = stack.inputs("environment", batch_inputs)
    models = stack.models
    if b is None:
        for r, c in zip(runs, contexts, strict=True):
            try:
                c.month = run(models[r])
            except Exception as e:  # noqa: BLE001 - one run's failure is that run's result
                stack.fail(r, e)
        return
    t, now, u_r, u_eta, lead = b["t"], b["launch_now"], b["u_r"], b["u_eta"], b["lead"]
    btc, peak, stress, launches = b["btc"], b["btc_peak"], b["stress"], b["launches"]
    lead_on = bool(b["lead_on"][0])
    for r in runs:
        env = models[r].env
        env.t += 1
        t[r] = env.t
        now[r] = env.t in launches[r]
        rng = env.rng  # (Environment.step's two draws, as _run_compiled makes them)
        u_r[r], u_eta[r] = nm.open_uniform(rng, None), nm.open_uniform(rng, None)
        btc[r], peak[r], stress[r] = env.btc, env.btc_peak, env.stress
        if lead_on:
            lead[r] = env.lead_time()
    n = stack.n
    n_k, n_g = b["extrap"].shape[1:]
    # the values and reservation prices, new arrays each month as _run_compiled's
    v = b["v_out"] = np.empty((n, 2, b["disc"].shape[1], n_g))
    res = b["res_out"] = np.empty((n, n_k, n_g))
    ke.env_batch(np.array(runs, dtype=np.int64), *(b[name] for name in _ARGS))
    ship_s, age_s, hp, n_x, common = (b["ship_out"], b["age_out"], b["hashprice"], b["n_x"],
                                      b["common"])
    prev = b["prev_rows"]
    for r, c in zip(runs, contexts, strict=True):
        m = models[r]
        env, bk = m.env, m.buyers
        ship, age = env.month_buffers()
        np.copyto(ship, ship_s[r])
        np.copyto(age, age_s[r])
        env.btc, env.btc_peak = float(btc[r]), float(peak[r])
        env.stress, env.hashprice = bool(stress[r]), float(hp[r])
        state = (env.t, env.stress, env.hashprice, env.rent.tobytes())
        extrap = bk.extrap
        bk.store_values_by_type(env, state + (extrap[0].tobytes(),), v[r, 0],
                                v[r, int(n_x[r]) - 1])
        if common[r] and n_k:  # (BuyerBook.reservation's key)
            bk.store_reservation(env, state + (extrap.tobytes(),), res[r])
        c.month = MonthState(env.t, prev[r])
        try:
            _shocks(m, env.t)
        except Exception as e:  # noqa: BLE001 - one run's failure is that run's result
            stack.fail(r, e)
