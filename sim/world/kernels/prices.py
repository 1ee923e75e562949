"""Phase 7's kernel (:mod:`sim.world.phases.prices`): the price index, the buyers'
expectations and their regrown capital in one call.

:func:`prices_month` computes what :func:`sim.world.phases.prices.run` computes (with
:func:`~sim.world.phases.prices.adapt_on_news`, :meth:`agents.buyer.BuyerBook.adapt` and
:meth:`agents.buyer.BuyerBook.regrow`), each number by the numpy code's operations in its
order: the logs of :mod:`sim.core.numerics` (``log1``), np.maximum / np.minimum as
:func:`sim.core.jit.maximum` / :func:`sim.core.jit.minimum`, the best bid as
``np.maximum.reduce(..., initial=0.0)`` row by row from 0.0, and the buyers' capital summed in
numpy's pairwise order (:func:`sim.core.jit.psum`) for the outside flow.

Switches covered (:func:`sim.world.phases.prices.covers`): limited or unlimited buyers, the
outside demand on or off (news-only expectations,
:func:`~sim.world.phases.prices.adapt_on_news`, or adaptive on every traded price), buyers'
sites on or off (``sites.enabled``: spare MW split by cooling,
:meth:`agents.buyer.BuyerBook._regrow_sites`). It covers every switch; the numpy code stays
the oracle (``LIQSIM_ENGINE=numpy``). Nothing here draws random numbers or logs events.
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import jitable, kernel, maximum, minimum, psum
from sim.core.numerics import log1


@jitable
def adapt(extrap, dlp, dlv, traded, lam, log_decay):
    """:meth:`agents.buyer.BuyerBook.adapt` in place on ``extrap`` (K, G): x <- min((1 - lam)
    x + lam clip(12 (dlp - dlv), -1, 1), -ln(1 - d)) where ``traded`` (each x from its own old
    value only), the other columns left as they are."""
    n_k, n_g = extrap.shape
    keep = 1.0 - lam
    top = -log_decay
    for g in range(n_g):
        if not traded[g]:
            continue
        surprise = minimum(maximum(12.0 * (dlp[g] - dlv[g]), -1.0), 1.0)
        for k in range(n_k):
            extrap[k, g] = minimum(keep * extrap[k, g] + lam * surprise, top)


@kernel
def prices_month(t, shipping, price, old_price, old_value, fund, reservation, unlimited,
                 capital, mw, kw, floor, outside_on, od_top, repl, traded, clearing, price_hist,
                 news_price, news_value, news_t, pinned, extrap, lam, log_decay, capital0,
                 capital_regrowth, mw_step, mw0, sites, liquid_gen, mw_liq, mw0_liq, mw_regrowth,
                 mw_conv):
    """Phase 7 of one run: :func:`prices_body`."""
    return prices_body(t, shipping, price, old_price, old_value, fund, reservation, unlimited,
                       capital, mw, kw, floor, outside_on, od_top, repl, traded, clearing,
                       price_hist, news_price, news_value, news_t, pinned, extrap, lam,
                       log_decay, capital0, capital_regrowth, mw_step, mw0, sites, liquid_gen,
                       mw_liq, mw0_liq, mw_regrowth, mw_conv)


@kernel
def prices_batch(runs, t, shipping, price, old_price, old_value, fund, reservation, unlimited,
                 capital, mw, kw, floor, outside_on, od_top, repl, traded, clearing, price_hist,
                 news_price, news_value, news_t, pinned, extrap, lam, log_decay, capital0,
                 capital_regrowth, mw_step, mw0, sites, liquid_gen, mw_liq, mw0_liq, mw_regrowth,
                 mw_conv, built, before, after):
    """Phase 7 of the runs ``runs`` of a stack at once (the run axis, issue 19): each
    argument of :func:`prices_body` stacked with a leading run axis (numbers and switches as
    (R,) arrays), run r's the row r; :func:`prices_body`'s three numbers of run r go to
    ``built[r]``, ``before[r]``, ``after[r]``. The same operations on each row as
    :func:`prices_month` on that run's arrays, so each run's bits are its own."""
    for i in range(runs.shape[0]):
        r = runs[i]
        built[r], before[r], after[r] = prices_body(
            t[r], shipping[r], price[r], old_price[r], old_value[r], fund[r], reservation[r],
            unlimited[r], capital[r], mw[r], kw[r], floor[r], outside_on[r], od_top[r],
            repl[r], traded[r], clearing[r], price_hist[r], news_price[r], news_value[r],
            news_t[r], pinned[r], extrap[r], lam[r], log_decay[r], capital0[r],
            capital_regrowth[r], mw_step[r], mw0[r], sites[r], liquid_gen[r], mw_liq[r],
            mw0_liq[r], mw_regrowth[r], mw_conv[r])


@jitable
def prices_body(t, shipping, price, old_price, old_value, fund, reservation, unlimited,
                capital, mw, kw, floor, outside_on, od_top, repl, traded, clearing, price_hist,
                news_price, news_value, news_t, pinned, extrap, lam, log_decay, capital0,
                capital_regrowth, mw_step, mw0, sites, liquid_gen, mw_liq, mw0_liq, mw_regrowth,
                mw_conv):
    """Phase 7, writing in place every array the numpy code replaces: the price index
    ``price`` (G,; last month's copied first into the scratch ``old_price``, which the
    carried price, the moves and the surprises read), ``price_hist[t]``, with ``outside_on``
    the news price, value and month ``news_*`` (G,) where they move (else not read), the
    expectations ``extrap`` (K, G) of the generations they adapt on, the capital ``capital``
    regrown, the spare MW ``mw`` (B,) and with ``sites`` the liquid MW ``mw_liq`` (B,) regrown
    and the conversions ``mw_conv`` a month on (else neither is read). Each element is written
    from its own old value (and the scratch), so in place gives the numpy code's numbers.
    Returns (MW built, capital sum before regrowth, after). With ``sites`` the spare MW of a
    liquid-cooled generation (``liquid_gen``) is the liquid MW ``mw_liq``, of an air-cooled
    one ``mw + mw_liq``, and both regrow as :meth:`agents.buyer.BuyerBook._regrow_sites`."""
    n_k, n_g = reservation.shape
    for g in range(n_g):
        old_price[g] = price[g]
    for g in range(n_g):
        best = 0.0
        for k in range(n_k):
            r = reservation[k, g]
            if not unlimited:
                if not sites:
                    spare = mw[k]
                elif liquid_gen[g]:
                    spare = mw_liq[k]
                else:
                    spare = mw[k] + mw_liq[k]
                room = (capital[k] >= maximum(r, 1.0)) and (spare * 1000.0 >= kw[g])
                r = r if room else 0.0
            best = maximum(best, r)
        carried = old_price[g] * (fund[g] / old_value[g] if old_value[g] > 0 else 1.0)
        fl = floor[g]
        if outside_on:
            fl = maximum(fl, od_top * minimum(repl[g], fund[g]))
        quote = maximum(best if best > 0 else carried, fl)
        new = clearing[g] if traded[g] else quote
        price[g] = new if shipping[g] else fund[g]
        price_hist[t, g] = price[g]
    moved = np.empty(n_g, np.bool_)
    any_moved = False
    for g in range(n_g):
        moved[g] = traded[g] and shipping[g] and old_price[g] > 0
        any_moved = any_moved or moved[g]
    dlp = np.empty(n_g)
    dlv = np.empty(n_g)
    if outside_on:  # adapt_on_news
        fresh = np.empty(n_g, np.bool_)
        for g in range(n_g):
            fresh[g] = news_price[g] <= 0 and price[g] > 0 and shipping[g]
            if fresh[g]:
                news_price[g] = price[g]
                news_value[g] = fund[g]
                news_t[g] = float(t)
        news = np.empty(n_g, np.bool_)
        any_news = False
        for g in range(n_g):
            news[g] = moved[g] and not pinned[g] and not fresh[g] and news_price[g] > 0
            any_news = any_news or news[g]
        if any_news:
            for g in range(n_g):
                gap = maximum(t - news_t[g], 1.0)
                lp = log1(maximum(price[g], 1e-9) / maximum(news_price[g], 1e-9))
                lv = log1(maximum(fund[g], 1e-9) / maximum(news_value[g], 1e-9))
                dlp[g] = lp / gap
                dlv[g] = lv / gap
            adapt(extrap, dlp, dlv, news, lam, log_decay)
            for g in range(n_g):
                if news[g]:
                    news_price[g] = price[g]
                    news_value[g] = fund[g]
                    news_t[g] = float(t)
    elif any_moved:
        for g in range(n_g):
            dlp[g] = log1(maximum(price[g], 1e-9) / maximum(old_price[g], 1e-9))
            dlv[g] = log1(maximum(fund[g], 1e-9) / maximum(old_value[g], 1e-9))
        adapt(extrap, dlp, dlv, moved, lam, log_decay)
    # BuyerBook.regrow
    n_b = capital.shape[0]
    before = psum(capital, 0, n_b)
    for k in range(n_b):
        capital[k] += capital_regrowth * maximum(capital0[k] - capital[k], 0.0)
    built = 0.0
    if not sites:
        for k in range(n_b):
            mw[k] = minimum(mw[k] + mw_step[k], mw0[k])
    else:  # BuyerBook._regrow_sites
        held = psum(mw, 0, n_b) + psum(mw_liq, 0, n_b)
        for k in range(n_b):
            mw[k] = maximum(mw[k], minimum(mw[k] + mw_step[k], mw0[k]))
            step_liq = mw_regrowth * mw0_liq[k]
            mw_liq[k] = maximum(mw_liq[k], minimum(mw_liq[k] + step_liq, mw0_liq[k]))
        built = psum(mw, 0, n_b) + psum(mw_liq, 0, n_b) - held
        n_lag = mw_conv.shape[1]
        for k in range(n_b):
            done = mw_conv[k, 0]
            for j in range(n_lag - 1):
                mw_conv[k, j] = mw_conv[k, j + 1]
            mw_conv[k, n_lag - 1] = 0.0
            mw_liq[k] = mw_liq[k] + done
    after = psum(capital, 0, n_b)
    return built, before, after
