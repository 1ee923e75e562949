"""Phase 1's kernel (:mod:`sim.world.phases.environment`): the environment's month and the
value in best use it triggers, in one call: :func:`env_month` for one run,
:func:`env_batch` for the runs of a stack (:class:`sim.world.stack.RunStack`), both calling
:func:`env_body` on each run's arrays.

:func:`env_body` does what :meth:`sim.core.environment.Environment.step` does from its two
standard normal draws (the raw draws and their uniforms stay in the phase, numpy's
Generator, in the same order; their Phi^-1 is taken here), then the buyers' values by type
(:meth:`agents.buyer.BuyerBook.values_by_type`: the value at x = 0 and at the buyers' common
expectation row), the value in best use (:meth:`agents.buyer.BuyerBook.fundamental`) and,
with expectations common to all buyers, their reservation prices
(:meth:`agents.buyer.BuyerBook.reservation`), each number by the numpy code's operations in
its order: the exp, log, power and Black call of :mod:`sim.core.numerics` (``exp1``,
``pow1``, ``black1``, ...), the present values summed in numpy's pairwise order
(:func:`sim.core.jit.psum`), np.maximum / np.minimum as :func:`sim.core.jit.maximum` /
:func:`sim.core.jit.minimum`.

Switches covered (the phase checks them, :func:`sim.world.phases.environment.covers`):
everything the environment's step does (BTC random walk on or off, hashprice-linked
generations and the hashprice reversion, launch steps, ``btc`` and ``rent`` shocks, observed
rent paths of either scope); buyers with ``value_cap`` on or off, with or without delivery
lead times (``environment.lead_time_path``, :meth:`agents.buyer.BuyerBook.lead_cap`),
``retirement`` "life" or "economic", types with no buyer. Not covered (the phase runs its
numpy code): a book without any buyer (the value in best use is then the salvage value,
nothing to compute). The shocks of phase 1 itself (buyer capital, guarantor exit, funding,
other loans) stay in the phase, in Python, after the kernel.
"""

from __future__ import annotations

import math

import numpy as np

from sim.core.jit import jitable, kernel, maximum, minimum, psum
from sim.core.numerics import black1, exp1, expm11, log1, log1p1, ndtri1, pow1

# indices of the scalar parameters packed in one float64 array (:func:`env_month`'s ``p``)
(P_RHO_CALM, P_RHO_STRESS, P_VOL_CALM, P_VOL_STRESS, P_RENT_DRIFT, P_RENT_VOL, P_STEP_DOWN,
 P_BTC_DRIFT, P_SQRT12, P_STRESS_DD, P_HASH0, P_BTC0, P_DIFF_GROWTH, P_HASH_COST, P_LOG_DECAY,
 P_UTIL, P_HOURS, N_PARAMS) = range(18)


@jitable
def _same_bits(a, b):
    """Whether two floats have the same bits (NaN aside: never the same here)."""
    return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


@jitable
def values_by_type(t, rent, launch, hash_linked, hash_on, hashprice, p, x0, m, sqrt_m, cost,
                   rvol, disc, life, integration, cap_on, cap, lead_on, lead, cap0, growth0,
                   growth1, mu1):
    """:meth:`agents.buyer.BuyerBook.values_by_type` without a lead time: the value of a unit
    of each generation to each buyer type, (X, T, G), row 0 at x = 0 and row X - 1 at the
    expectation row ``x0`` (X = 1 when ``x0`` is 0 everywhere, as the numpy code evaluates
    one row then).

    Per (row, generation) the M monthly options are valued once (numpy broadcasts them over
    the types), each type's discounted terms summed in numpy's pairwise order. Only the
    results' bits are numpy's: a generation not yet shipping is 0 without being valued
    (``np.where(shipping, ..., 0.0)``), row 0's growth exp(mu m / 12) where the hashprice
    reversion does not apply is read from ``growth0`` (mu = ln(1 - d) + 0.0 in every month:
    the same exp1 of the same arguments, computed once per run by the phase), row 1's
    exp(mu_g m / 12), mu_g = ln(1 - d) + x0[g], is kept in ``growth1[g]`` (G, M) with its
    mu_g in ``mu1[g]`` (per-run buffers; NaN at first) and computed again only when mu_g's
    bits change (expectations move only in months a generation trades), and a month
    no type lives to see is not valued when its revenue is finite (its terms are net x 0.0
    = +0.0 for a finite net >= 0, which Black's call is for a finite revenue: ``black1``
    returns c > 0, NaN or +0.0); a generation whose expectation x0[g] leaves
    mu = ln(1 - d) + x with row 0's bits (x0[g] = +-0, an AI generation) takes row 0's
    values, computed from the same numbers.

    With ``lead_on`` (a delivery lead time ``lead`` in months per generation, value cap on)
    each value is capped at :meth:`agents.buyer.BuyerBook.lead_cap` of its own terms, the
    forgone earnings sum(terms_m w_m), w_m = min(max(L - (m - 1), 0), 1), plus
    P_new (``cap``) x d_1^L; row 0's caps of shipping generations are written to ``cap0``
    (T, G), those :meth:`agents.buyer.BuyerBook.cap_by_type` gives the value in best use."""
    n_g, n_m, n_t = rent.shape[0], m.shape[0], disc.shape[0]
    n_x = 1
    for g in range(n_g):
        if not x0[g] == 0.0:
            n_x = 2
            break
    out = np.empty((n_x, n_t, n_g))
    w = np.empty(n_m)
    log_decay = p[P_LOG_DECAY]
    util, hours = p[P_UTIL], p[P_HOURS]
    hg = np.empty(n_m)
    if hash_on:  # Environment.hash_log_growth: gap (1 - exp(-kappa m / 12))
        gap = log1(p[P_HASH_COST] / (hashprice if not 1e-12 > hashprice else 1e-12))
        kappa = log1p1(p[P_DIFF_GROWTH])
        for j in range(n_m):
            hg[j] = gap * -expm11(-kappa * m[j] / 12.0)
    net = np.empty(n_m)
    terms = np.empty(n_m)
    for x in range(n_x):
        for g in range(n_g):
            age = t - launch[g]
            if age < 0:  # not shipping (launch > t): np.where(shipping, ..., 0.0)
                for k in range(n_t):
                    out[x, k, g] = 0.0
                continue
            ex = 0.0 if x == 0 else x0[g]
            mu = log_decay + ex
            hashed = hash_on and hash_linked[g]
            if x == 1 and not hashed and _same_bits(mu, log_decay + 0.0):
                # the same inputs as row 0 (x0[g] is +-0 and mu keeps its bits): its values
                # (and, with a lead time, its caps)
                for k in range(n_t):
                    out[1, k, g] = out[0, k, g]
                continue
            if x == 1 and not hashed and not _same_bits(mu, mu1[g]):
                for j in range(n_m):
                    growth1[g, j] = exp1(mu * m[j] / 12.0)
                mu1[g] = mu
            base = (util * rent[g]) * hours
            vol = rvol[g]
            last = 0  # the last month any type lives to see (remaining = life - age)
            for k in range(n_t):
                last = max(last, life[k] - age)
            for j in range(n_m):
                if hashed:
                    growth = exp1(hg[j] + ex * m[j] / 12.0)
                elif x == 0:  # mu = ln(1 - d) + 0.0 in every month: computed once per run
                    growth = growth0[j]
                else:  # (computed above, or in an earlier month at the same mu)
                    growth = growth1[g, j]
                rev = base * growth
                if m[j] <= last or not math.isfinite(rev):
                    net[j] = black1(rev, cost[g, j], vol * sqrt_m[j])
                else:
                    net[j] = 0.0  # (net x 0.0 below is +0.0 for every type)
            for k in range(n_t):
                remaining = life[k] - age
                for j in range(n_m):
                    alive = 1.0 if m[j] <= remaining else 0.0
                    terms[j] = net[j] * (alive * disc[k, j])
                value = psum(terms, 0, n_m) - integration[k]
                if lead_on:  # BuyerBook.lead_cap: forgone earnings + P_new d(L)
                    for j in range(n_m):
                        wj = minimum(maximum(lead[g] - (m[j] - 1.0), 0.0), 1.0)
                        w[j] = terms[j] * wj
                    c = psum(w, 0, n_m) + cap[g] * pow1(disc[k, 0], lead[g])
                    if x == 0:
                        cap0[k, g] = c
                    value = minimum(value, c)
                elif cap_on:
                    value = minimum(value, cap[g])
                out[x, k, g] = maximum(value, 0.0)
    return out


@jitable
def best_use(t, launch, v0, present, all_present, salvage, cap_on, cap, lead_on, cap0):
    """:meth:`agents.buyer.BuyerBook.fundamental` (some type present): the highest value over
    the types present (np.maximum.reduce over axis 0, row by row from the first), floored at
    the salvage value, capped at the new-unit price (with a lead time at the highest of the
    present types' caps ``cap0``, reduced as the values); 0 where not shipping."""
    n_t, n_g = v0.shape
    out = np.empty(n_g)
    for g in range(n_g):
        shipping = launch[g] <= t
        best = 0.0
        first = True
        for k in range(n_t):
            if all_present or present[k]:
                if first:
                    best = v0[k, g]
                    first = False
                else:
                    best = maximum(best, v0[k, g])
        value = maximum(best, salvage[g] if shipping else 0.0)
        if cap_on:
            c = cap[g]
            if lead_on and shipping:
                first = True
                for k in range(n_t):
                    if all_present or present[k]:
                        c = cap0[k, g] if first else maximum(c, cap0[k, g])
                        first = False
            value = minimum(value, c if shipping else 0.0)
        out[g] = value
    return out


@kernel
def env_month(t, launch_now, u_r, u_eta, btc, btc_peak, stress, btc_walk, any_hash, rent,
              launch, ai_rent, hash_linked, rent0, shock_month, shock_kind, shock_size, p,
              hash_on, extrap, m, sqrt_m, cost, rvol_calm, rvol_stress, disc, life, integration,
              present, all_present, cap_on, cap, salvage, path_gen, path_first, path_market,
              path_rents, path_len, factor_gens, lead_on, lead, growth0, growth1, mu1,
              type_idx, v_out, fund_out, prev_out, res_out, ship_out, age_out):
    """Phase 1's month of one run: :func:`env_body`."""
    return env_body(t, launch_now, u_r, u_eta, btc, btc_peak, stress, btc_walk, any_hash, rent,
                    launch, ai_rent, hash_linked, rent0, shock_month, shock_kind, shock_size, p,
                    hash_on, extrap, m, sqrt_m, cost, rvol_calm, rvol_stress, disc, life,
                    integration, present, all_present, cap_on, cap, salvage, path_gen,
                    path_first, path_market, path_rents, path_len, factor_gens, lead_on, lead,
                    growth0, growth1, mu1, type_idx, v_out, fund_out, prev_out, res_out,
                    ship_out, age_out)


@kernel
def env_batch(runs, t, launch_now, u_r, u_eta, btc, btc_peak, stress, btc_walk, any_hash, rent,
              launch, ai_rent, hash_linked, rent0, shock_month, shock_kind, shock_size, p,
              hash_on, extrap, m, sqrt_m, cost, rvol_calm, rvol_stress, disc, life, integration,
              present, all_present, cap_on, cap, salvage, path_gen, path_first, path_market,
              path_rents, path_len, factor_gens, lead_on, lead, growth0, growth1, mu1,
              type_idx, v_out, fund_out, prev_out, res_out, ship_out, age_out, hashprice, n_x,
              common):
    """Phase 1's month of the runs ``runs`` of a stack at once (the run axis, issue 19): each
    argument of :func:`env_body` stacked with a leading run axis (numbers and switches as
    (R,) arrays), run r's the row r. Run r's new BTC, peak and stress flag are written back
    into ``btc[r]``, ``btc_peak[r]`` and ``stress[r]`` (read first), its hashprice, X and
    ``common`` into ``hashprice[r]``, ``n_x[r]`` and ``common[r]``. The same operations on
    each row as :func:`env_month` on that run's arrays, so each run's bits are its own."""
    for i in range(runs.shape[0]):
        r = runs[i]
        btc[r], btc_peak[r], stress[r], hashprice[r], n_x[r], common[r] = env_body(
            t[r], launch_now[r], u_r[r], u_eta[r], btc[r], btc_peak[r], stress[r],
            btc_walk[r], any_hash[r], rent[r], launch[r], ai_rent[r], hash_linked[r],
            rent0[r], shock_month[r], shock_kind[r], shock_size[r], p[r], hash_on[r],
            extrap[r], m[r], sqrt_m[r], cost[r], rvol_calm[r], rvol_stress[r], disc[r],
            life[r], integration[r], present[r], all_present[r], cap_on[r], cap[r],
            salvage[r], path_gen[r], path_first[r], path_market[r], path_rents[r],
            path_len[r], factor_gens[r], lead_on[r], lead[r], growth0[r], growth1[r], mu1[r],
            type_idx[r], v_out[r], fund_out[r], prev_out[r], res_out[r], ship_out[r],
            age_out[r])


@jitable
def env_body(t, launch_now, u_r, u_eta, btc, btc_peak, stress, btc_walk, any_hash, rent,
             launch, ai_rent, hash_linked, rent0, shock_month, shock_kind, shock_size, p,
             hash_on, extrap, m, sqrt_m, cost, rvol_calm, rvol_stress, disc, life, integration,
             present, all_present, cap_on, cap, salvage, path_gen, path_first, path_market,
             path_rents, path_len, factor_gens, lead_on, lead, growth0, growth1, mu1,
             type_idx, v_out, fund_out, prev_out, res_out, ship_out, age_out):
    """Phase 1's month after the draws: the standard normals eps_r and eta of
    :meth:`sim.core.environment.Environment.step` are Phi^-1 (``ndtri1``) of the uniforms
    ``u_r`` and ``u_eta`` the phase draws (``nm.standard_normal``'s transform of the same
    raw draws, compiled: the same bits, sim.core.numerics). Then the environment's step
    (rents in place in ``rent``; BTC, its peak, the stress flag and hashprice returned),
    the values by type (:func:`values_by_type`) and the value in best use (:func:`best_use`).
    Writes the values into ``v_out[:X]`` ((2, T, G), X = 1 or 2), the value in best use into
    ``fund_out`` (G,), the model's own array, in place: last month's values, which it holds
    on entry (never read here), go to ``prev_out`` (G,) first; and the reservation prices,
    when ``common``, into ``res_out`` (K, G): arrays from the caller (a returned array costs
    numba's dispatch about 0.3-0.6 us to box, a passed one a tenth of that). Returns (btc,
    btc_peak, stress, hashprice, X, common): the values are at x = 0 and at the buyers'
    expectation row ``extrap[0]`` (rows 0 and X - 1); the reservation prices, written when
    every row of ``extrap`` (K, G) equals the first (``common``: ``extrap == extrap[0]``,
    NaN never equal), are each buyer's type's value at that row (row X - 1 taken at
    ``type_idx``), what :meth:`agents.buyer.BuyerBook.reservation` gives. The month's
    ``launch <= t`` and ``t - launch`` go into ``ship_out`` and ``age_out`` (G,), the
    environment's buffers behind ``shipping`` and ``age`` (:meth:`Environment.month_buffers`).
    ``shock_*`` are the environment's ``btc`` (kind 0) and ``rent`` (kind 1) shocks in the
    scenario's order; ``p`` the scalar parameters (``P_*``). ``path_*`` are the observed rent
    paths (:meth:`Environment._apply_paths`: generation, first month, market scope, rents
    month by month padded to the longest, their number), ``factor_gens`` the generations a
    market path moves; ``lead`` the month's lead times with ``lead_on``, ``growth0`` row
    0's growth, ``growth1`` and ``mu1`` row 1's, kept between months (:func:`values_by_type`:
    the buffers are written here)."""
    n_g = rent.shape[0]
    for g in range(n_g):
        ship_out[g] = launch[g] <= t
        age_out[g] = t - launch[g]
    before = rent.copy()  # last month's rents (a market path's factor)
    rho = p[P_RHO_STRESS] if stress else p[P_RHO_CALM]
    vol = p[P_VOL_STRESS] if stress else p[P_VOL_CALM]
    eps_r, eta = ndtri1(u_r), ndtri1(u_eta)
    eps_b = rho * eps_r + math.sqrt(1.0 - rho * rho) * eta
    live = np.empty(n_g, np.bool_)
    for g in range(n_g):
        live[g] = launch[g] < t and ai_rent[g]
    f = exp1(p[P_RENT_DRIFT] + p[P_RENT_VOL] * eps_r)
    for g in range(n_g):
        if live[g]:
            rent[g] = rent[g] * f
    if launch_now:
        step = 1.0 - p[P_STEP_DOWN]
        for g in range(n_g):
            if live[g]:
                rent[g] = rent[g] * step
    if btc_walk:
        drift = (p[P_BTC_DRIFT] - 0.5 * (vol * vol)) / 12.0
        btc = btc * exp1(drift + vol / p[P_SQRT12] * eps_b)
    for s in range(shock_month.shape[0]):
        if shock_month[s] == t:
            cut = 1.0 - shock_size[s]
            if shock_kind[s] == 0:
                btc = btc * cut
            else:
                for g in range(n_g):
                    if live[g]:
                        rent[g] = rent[g] * cut
    btc = btc if not 1e-9 > btc else 1e-9  # Python's max(btc, 1e-9)
    btc_peak = btc_peak if not btc > btc_peak else btc
    stress = 1.0 - btc / btc_peak >= p[P_STRESS_DD]
    hashprice = (p[P_HASH0] * btc / p[P_BTC0]
                 * pow1(1.0 + p[P_DIFF_GROWTH], -t / 12.0))
    if any_hash and p[P_HASH0] > 0:
        for g in range(n_g):
            if hash_linked[g]:
                rent[g] = rent0[g] * hashprice / p[P_HASH0]
    for q in range(path_gen.shape[0]):  # Environment._apply_paths
        k = t - path_first[q]
        if 0 <= k < path_len[q]:
            rent[path_gen[q]] = path_rents[q, k]
            if path_market[q] and k > 0:
                ratio = path_rents[q, k] / path_rents[q, k - 1]
                for g in range(n_g):
                    if factor_gens[g] and launch[g] < t:
                        rent[g] = before[g] * ratio
    rvol = rvol_stress if stress else rvol_calm
    cap0 = np.empty((disc.shape[0], n_g))
    x0 = extrap[0]
    v = values_by_type(t, rent, launch, hash_linked, hash_on, hashprice, p, x0, m, sqrt_m,
                       cost, rvol, disc, life, integration, cap_on, cap, lead_on, lead, cap0,
                       growth0, growth1, mu1)
    fund = best_use(t, launch, v[0], present, all_present, salvage, cap_on, cap, lead_on, cap0)
    n_x, n_t = v.shape[0], v.shape[1]
    for x in range(n_x):
        for k in range(n_t):
            for g in range(n_g):
                v_out[x, k, g] = v[x, k, g]
    for g in range(n_g):
        prev_out[g] = fund_out[g]
        fund_out[g] = fund[g]
    n_k = extrap.shape[0]
    common = True
    for k in range(n_k):
        for g in range(n_g):
            if not extrap[k, g] == x0[g]:
                common = False
    if common:
        vx = v[n_x - 1]
        for k in range(n_k):
            for g in range(n_g):
                res_out[k, g] = vx[type_idx[k], g]
    return btc, btc_peak, stress, hashprice, n_x, common
