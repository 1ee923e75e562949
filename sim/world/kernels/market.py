"""Compiled phase 6, the market (:mod:`sim.world.phases.market`): every generation's call
auction, newest first, and its settlement, in one kernel call a month (:func:`market_month`;
:func:`market_batch` for the runs of a stack at once, both running :func:`market_body`).

What it covers: every switch of the phase. Both market modes (``market.mode``: the call
auction, or the parametric inverse demand in which every offered unit sells), the outside demand
(``buyers.outside_demand.enabled``) or the salvage sink (``market.unsold_to_salvage``), unlimited
buyers (``buyers.unlimited``), sites (``sites.enabled``: the buyers' spare MW by cooling type),
the repo desk (off, ``legacy`` with its floor bid, or ``secured``) and the buyer of last resort
(``policy.lolr.enabled``). The numpy phase runs a month in which a generation's book could
reach :data:`sim.core.market.MAX_UNITS` units (where :func:`sim.core.market.clear_book` checks
its units; the kernel refuses such a month before it changes anything), and a world without
lenders. The month's reservation prices and participation draws (``buyers.reservation``,
``buyers.participating``) stay in Python, before the kernel, as in the numpy phase.

The kernel is the numpy phase step for step: :func:`_clear` is the rule of
:func:`sim.core.market.call_auction` as :func:`sim.core.market._clear_small` computes it (stable
sorts, bisections, exact integer fills by the largest-remainder method, the price from the same
float operations, Python's ``min`` / ``max`` on floats as :func:`sim.core.jit.pymin` /
:func:`~sim.core.jit.pymax`, its ``//`` as :func:`~sim.core.jit.floordiv` and its ``sum()``
of the forced sales' values at repossession as :func:`~sim.core.jit.pysum_terms`);
:func:`_outside_bids` is :func:`sim.core.market.outside_bids` and the parametric price that
of :func:`sim.core.market.parametric_price` (the exponential through
:func:`sim.core.numerics.exp1`, as ``numerics.exp`` computes it); sums numpy takes with
``ndarray.sum`` are :func:`sim.core.jit.psum`. The events are written into two arrays the
phase passes in (a code for the name and agent, the row, generation and units in one; the
price) in the numpy phase's order, and the phase logs the same tuples from them.
"""

from __future__ import annotations

import math

import numpy as np

from sim.core.jit import (
    floordiv,
    jitable,
    kernel,
    maximum,
    minimum,
    psum,
    pymax,
    pymin,
    pysum_terms,
)
from sim.core.market import MAX_UNITS, OUTSIDE_DEPTHS, OUTSIDE_STEPS_PER_DEPTH
from sim.core.numerics import exp1

# event codes (the phase maps them to (name, agent)); a borrower's sale is EV_BORROWER + kind
(EV_LENDER, EV_DESK_SALE, EV_BUYER, EV_SALVAGE, EV_DESK_BUY, EV_LOLR_BUY, EV_LOLR_SALE,
 EV_BORROWER) = range(8)
# the integer and float parameters of :func:`market_month`, by position
(IP_T, IP_OUTSIDE, IP_TO_SALVAGE, IP_UNLIMITED, IP_SITES, IP_DESK_ON, IP_DESK_SECURED,
 IP_NEUMAIER, IP_LOLR, IP_LOLR_HOLD, IP_PARAMETRIC) = range(11)
(FP_K, FP_TOP, FP_DEPTH, FP_DESK_CAPACITY, FP_DESK_CASH, FP_DESK_LENT, FP_ABOVE,
 FP_FORCED_VALUE, FP_FORCED_FUNDAMENTAL, FP_FORCED_REP, FP_BUYERS_PAID, FP_RECOVERED,
 FP_FLOW_SALVAGE, FP_FLOW_ESTATE, FP_FLOW_BUYER_CAPITAL, FP_LOLR_CAPACITY, FP_LOLR_CASH,
 FP_LOLR_KW, FP_ALPHA) = range(19)
# what :func:`market_month` did (the three flags it returns), which decides which numbers
# become numpy floats as in the numpy phase: generations traded (forced_fundamental), lender
# settlements (recovered_total, the desk's cash and loans), buyer settlements (buyers_paid)
FL_TRADES, FL_LENDER_SETTLES, FL_BUYER_SETTLES = 0, 1, 2
EV_INTS = 4  # the rows of the events' integer array: code, row, generation, units
_BIG_UNITS = 10**12  # agents.buyer.BIG, an unlimited buyer's capacity
_BIG_F = float(_BIG_UNITS)
_TINY = math.ulp(0.0)
_N_STEPS = OUTSIDE_STEPS_PER_DEPTH * OUTSIDE_DEPTHS


@jitable
def _bisect_left(a, n, x):
    """``bisect.bisect_left(a[:n], x)``: the first i with not a[i] < x."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jitable
def _bisect_right(a, n, x):
    """``bisect.bisect_right(a[:n], x)``: the first i with x < a[i]."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@jitable
def _argsort(key, n, order):
    """A stable argsort of ``key[:n]`` ascending into ``order[:n]`` (insertion sort: Python's
    ``sorted`` and ``argsort(kind="stable")`` keep equal keys in row order too)."""
    for i in range(n):
        order[i] = i
    for i in range(1, n):
        j = order[i]
        kj = key[j]
        p = i
        while p > 0 and kj < key[order[p - 1]]:
            order[p] = order[p - 1]
            p -= 1
        order[p] = j


@jitable
def _fill(qty, cum, n, start, stop, volume, out):
    """:func:`sim.core.market._fill_list` into ``out[:n]``: rows before ``start`` in full, the
    marginal level ``[start, stop)`` pro rata by the largest remainder (ties to the lower
    row), nothing from ``stop`` on."""
    for i in range(n):
        out[i] = qty[i] if i < stop else 0
    before = cum[start - 1] if start else 0
    rest = volume - before
    if stop - start == 1:
        out[start] = rest
        return
    total = cum[stop - 1] - before
    if rest == total:
        return
    m = stop - start
    base = np.empty(m, np.int64)
    neg_rem = np.empty(m, np.int64)
    left = rest
    for j in range(m):
        x = qty[start + j] * rest
        base[j] = x // total
        neg_rem[j] = -(x % total)
        left -= base[j]
    if left:
        order = np.empty(m, np.int64)
        _argsort(neg_rem, m, order)  # sorted by -remainder, stable
        for j in range(left):
            base[order[j]] += 1
    for j in range(m):
        out[start + j] = base[j]


@jitable
def _clear(aq, ap, na, bq, bp, nb, k, a_fill, b_fill):
    """The call auction of :func:`sim.core.market.clear_book` (the rule of
    :func:`sim.core.market._clear_small`, step for step) on ``aq[:na]``, ``ap[:na]`` (asks)
    and ``bq[:nb]``, ``bp[:nb]`` (bids): returns (price, volume) and writes the fills of each
    row into ``a_fill``, ``b_fill`` (NaN and no fills when nothing trades)."""
    a_ord = np.empty(na, np.int64)
    b_ord = np.empty(nb, np.int64)
    neg_b = np.empty(nb)
    for i in range(nb):
        neg_b[i] = -bp[i]
    _argsort(ap, na, a_ord)
    _argsort(neg_b, nb, b_ord)
    a_px = np.empty(na)
    a_q = np.empty(na, np.int64)
    a_cum = np.empty(na, np.int64)
    nb_px = np.empty(nb)
    b_q = np.empty(nb, np.int64)
    b_cum = np.empty(nb, np.int64)
    b_cum0 = np.zeros(nb + 1, np.int64)
    s = 0
    for i in range(na):
        a_px[i] = ap[a_ord[i]]
        a_q[i] = aq[a_ord[i]]
        s += a_q[i]
        a_cum[i] = s
    s = 0
    for i in range(nb):
        nb_px[i] = neg_b[b_ord[i]]
        b_q[i] = bq[b_ord[i]]
        s += b_q[i]
        b_cum[i] = s
        b_cum0[i + 1] = s
    a_tot = a_cum[na - 1] if na else 0
    b_tot = b_cum[nb - 1] if nb else 0
    # V = max over the sorted asks of min(D, S) at the ask's price (see _clear_small)
    volume = 0
    if a_tot and b_tot:
        for i in range(na):
            d = b_cum0[_bisect_right(nb_px, nb, -a_px[i])]
            if d <= a_cum[i]:
                if d > volume:
                    volume = d
                break
            volume = a_cum[i]
    for i in range(na):
        a_fill[i] = 0
    for i in range(nb):
        b_fill[i] = 0
    if volume == 0:
        return np.nan, 0
    marg_bid = -nb_px[_bisect_left(b_cum, nb, volume)]
    marg_ask = a_px[_bisect_left(a_cum, na, volume)]
    next_bid = -nb_px[_bisect_left(b_cum, nb, volume + 1)] if volume < b_tot else 0.0
    next_ask = a_px[_bisect_left(a_cum, na, volume + 1)] if volume < a_tot else math.inf
    lo = pymax(marg_ask, next_bid)
    hi = pymin(marg_bid, next_ask)
    price = hi if k == 1.0 else pymin(pymax(lo + k * (hi - lo), lo), hi)
    # the marginal levels: bisect_left(x, nextafter(m, inf)) is bisect_right(x, m) for
    # finite prices (no NaN in a book)
    fa = np.empty(na, np.int64)
    fb = np.empty(nb, np.int64)
    _fill(a_q, a_cum, na, _bisect_left(a_px, na, marg_ask), _bisect_right(a_px, na, marg_ask),
          volume, fa)
    _fill(b_q, b_cum, nb, _bisect_left(nb_px, nb, -marg_bid),
          _bisect_right(nb_px, nb, -marg_bid), volume, fb)
    for i in range(na):
        a_fill[a_ord[i]] = fa[i]
    for i in range(nb):
        b_fill[b_ord[i]] = fb[i]
    return price, volume


@jitable
def _outside_bids(top, scrap, depth, supply, scrap_block, qty, price, pos):
    """:func:`sim.core.market.outside_bids` appended to ``qty`` / ``price`` from ``pos``;
    returns the new end."""
    if supply <= 0:
        return pos
    top = pymax(top, scrap)
    step = depth / OUTSIDE_STEPS_PER_DEPTH
    lim = float(supply + 1)
    prev = 0
    for j in range(1, _N_STEPS + 1):
        e = np.floor(float(j) * step)
        c = int(minimum(e, lim))
        if c > prev:
            qty[pos] = c - prev
            # -ends / depth: the int64 -c converted to float (+0.0 for c = 0)
            price[pos] = scrap + (top - scrap) * exp1(float(-c) / depth)
            pos += 1
            prev = c
    if scrap_block and prev <= supply:
        qty[pos] = supply + 1 - prev
        price[pos] = scrap
        pos += 1
    return pos


@jitable
def _pinned(b_rows, bq, bp, b_fill, nb, n_k, k):
    """:func:`sim.world.phases.market.pinned`: whether the outside demand (rows > ``n_k``)
    set the price."""
    fill_in = fill_out = math.inf
    open_in = open_out = -math.inf
    for j in range(nb):
        p, u = bp[j], b_fill[j]
        if b_rows[j] > n_k:
            if u and p < fill_out:
                fill_out = p
            if u < bq[j] and p > open_out:
                open_out = p
        else:
            if u and p < fill_in:
                fill_in = p
            if u < bq[j] and p > open_in:
                open_in = p
    return fill_out < fill_in or (k < 1.0 and open_out > open_in)


@jitable
def _desk_room(on, capacity, lent, cost_basis, cash):
    """:attr:`agents.repo_desk.RepoDesk.room`: max(min(capacity - used, cash), 0)."""
    if not on:
        return 0.0
    used = lent + psum(cost_basis, 0, cost_basis.shape[0])
    return pymax(pymin(capacity - used, cash), 0.0)


@kernel
def market_month(ip, fp, newest_first, shipping, kw, liquid, ref, units0, fundamental,
                 forced, patient, patient_price, floor, b_units, b_price,
                 d_holdings, d_cost_basis, d_cash_bought, d_cash_sold, d_cash_repaid,
                 d_default_loss, d_prices, price_index, lo_prices, lo_holdings, lo_cost_basis,
                 lo_since, lo_cash_bought, lo_cash_sold, reservation, bidding, capital, mw,
                 mw_liq, mw_used, k_holdings,
                 inventory, inv_since, repo_units, claim_pool, recoveries, later_recoveries,
                 repo_debt, l_cash, fleet, b_cash, kind, sale_proceeds,
                 traded, clearing, month_volume, month_forced, month_overhang, month_salvage,
                 month_pinned, salvage_units, external_units, rep_value, ev_int, ev_price):
    """Phase 6 of one run: :func:`market_body`."""
    return market_body(ip, fp, newest_first, shipping, kw, liquid, ref, units0, fundamental,
        forced, patient, patient_price, floor, b_units, b_price, d_holdings, d_cost_basis,
        d_cash_bought, d_cash_sold, d_cash_repaid, d_default_loss, d_prices, price_index,
        lo_prices, lo_holdings, lo_cost_basis, lo_since, lo_cash_bought, lo_cash_sold,
        reservation, bidding, capital, mw, mw_liq, mw_used, k_holdings, inventory, inv_since,
        repo_units, claim_pool, recoveries, later_recoveries, repo_debt, l_cash, fleet, b_cash,
        kind, sale_proceeds, traded, clearing, month_volume, month_forced, month_overhang,
        month_salvage, month_pinned, salvage_units, external_units, rep_value, ev_int,
        ev_price)


@kernel
def market_batch(runs, ip, fp, newest_first, shipping, kw, liquid, ref, units0, fundamental,
                 forced, patient, patient_price, floor, b_units, b_price,
                 d_holdings, d_cost_basis, d_cash_bought, d_cash_sold, d_cash_repaid,
                 d_default_loss, d_prices, price_index, lo_prices, lo_holdings, lo_cost_basis,
                 lo_since, lo_cash_bought, lo_cash_sold, reservation, bidding, capital, mw,
                 mw_liq, mw_used, k_holdings,
                 inventory, inv_since, repo_units, claim_pool, recoveries, later_recoveries,
                 repo_debt, l_cash, fleet, b_cash, kind, sale_proceeds,
                 traded, clearing, month_volume, month_forced, month_overhang, month_salvage,
                 month_pinned, salvage_units, external_units, rep_value, ev_int, ev_price, out):
    """Phase 6 of the runs ``runs`` of a stack at once (the run axis, issue 19): each
    argument of :func:`market_body` stacked with a leading run axis, run r's the row r;
    :func:`market_body`'s five numbers of run r (status, events, the three flags) go to
    ``out[r]``. The same operations on each row as :func:`market_month` on that run's
    arrays, so each run's bits are its own; a run whose status is 1 was left unchanged."""
    for i in range(runs.shape[0]):
        r = runs[i]
        out[r, 0], out[r, 1], out[r, 2], out[r, 3], out[r, 4] = market_body(
            ip[r], fp[r], newest_first[r], shipping[r], kw[r], liquid[r], ref[r], units0[r],
            fundamental[r], forced[r], patient[r], patient_price[r], floor[r], b_units[r],
            b_price[r], d_holdings[r], d_cost_basis[r], d_cash_bought[r], d_cash_sold[r],
            d_cash_repaid[r], d_default_loss[r], d_prices[r], price_index[r], lo_prices[r],
            lo_holdings[r], lo_cost_basis[r], lo_since[r], lo_cash_bought[r], lo_cash_sold[r],
            reservation[r], bidding[r], capital[r], mw[r], mw_liq[r], mw_used[r], k_holdings[r],
            inventory[r], inv_since[r], repo_units[r], claim_pool[r], recoveries[r],
            later_recoveries[r], repo_debt[r], l_cash[r], fleet[r], b_cash[r], kind[r],
            sale_proceeds[r], traded[r], clearing[r], month_volume[r], month_forced[r],
            month_overhang[r], month_salvage[r], month_pinned[r], salvage_units[r],
            external_units[r], rep_value[r], ev_int[r], ev_price[r])


@jitable
def market_body(ip, fp, newest_first, shipping, kw, liquid, ref, units0, fundamental,
                 forced, patient, patient_price, floor, b_units, b_price,
                 d_holdings, d_cost_basis, d_cash_bought, d_cash_sold, d_cash_repaid,
                 d_default_loss, d_prices, price_index, lo_prices, lo_holdings, lo_cost_basis,
                 lo_since, lo_cash_bought, lo_cash_sold, reservation, bidding, capital, mw,
                 mw_liq, mw_used, k_holdings,
                 inventory, inv_since, repo_units, claim_pool, recoveries, later_recoveries,
                 repo_debt, l_cash, fleet, b_cash, kind, sale_proceeds,
                 traded, clearing, month_volume, month_forced, month_overhang, month_salvage,
                 month_pinned, salvage_units, external_units, rep_value, ev_int, ev_price):
    """Phase 6 (:func:`sim.world.phases.market.run` from ``ask_book`` on): every shipping
    generation with units offered, newest first (``newest_first``), is auctioned against its
    bids (``BidBook.bids``, :func:`_clear`; in the parametric mode every offered unit sells at
    p0 exp(-alpha q / stock), ``parametric``) and settled (``settle_bids``,
    ``settle_orders``, ``record_trade``), writing the books' arrays in place. ``ip``: the
    integer switches (``IP_*``); ``fp`` (``FP_*``): k, the outside demand's top and depth,
    the desk's capacity, then the scalars the phase updates, read and written back (the
    desk's cash and loans, the month's largest fill above a reservation, the forced sales'
    values, the buyers' purchases, the recoveries, the three outside flows), then the buyer
    of last resort's capacity, cash (read and written back) and powered kW, and the
    parametric alpha. ``capital``, ``mw``, ``mw_liq``, ``mw_used`` and ``repo_units`` are
    the books' own arrays, written in place too (the numpy phase rebinds them).

    Returns (status, number of events n, the three flags ``FL_*``): status 1 when a
    generation's book could reach ``MAX_UNITS`` units, and then nothing was changed (the
    phase runs numpy, whose ``clear_book`` checks them). The events are written into the
    caller's arrays (a returned array costs numba's dispatch about 0.3-0.6 us to box, a
    passed one a tenth of that): ``ev_int[:, :n]`` ((``EV_INTS``, N) int64) their codes,
    rows, generations and units, ``ev_price[:n]`` their prices; N must be at least
    G x (lenders + borrowers + buyers + 5), the most events a month can log."""
    t = ip[IP_T]
    outside_on, to_salvage = ip[IP_OUTSIDE] != 0, ip[IP_TO_SALVAGE] != 0
    unlimited, sites = ip[IP_UNLIMITED] != 0, ip[IP_SITES] != 0
    desk_on, secured = ip[IP_DESK_ON] != 0, ip[IP_DESK_SECURED] != 0
    lolr_on, parametric = ip[IP_LOLR] != 0, ip[IP_PARAMETRIC] != 0
    k = fp[FP_K]
    n_l, n_gen = forced.shape
    n_b, n_k = b_units.shape[0], reservation.shape[0]
    d_row = 2 * n_l + n_b
    l_row = d_row + 1  # the buyer of last resort's ask
    s0 = n_k + 1 + (1 if lolr_on else 0)  # the first salvage / outside row
    flags = np.zeros(3, np.int64)
    # the ask book: every generation's units offered (the desk's and the buyer of last
    # resort's holdings as at the start: LastResortBuyer.for_sale)
    supply = np.zeros(n_gen, np.int64)
    desk_asks = d_holdings.copy()
    lo_asks = np.zeros(n_gen, np.int64)
    if lolr_on:
        for g in range(n_gen):
            if t - lo_since[g] >= ip[IP_LOLR_HOLD]:
                lo_asks[g] = lo_holdings[g]
    lo_kw = np.zeros(n_gen)
    for g in range(n_gen):
        s = desk_asks[g] + lo_asks[g]
        for r in range(n_l):
            s += forced[r, g] + patient[r, g]
        for r in range(n_b):
            s += b_units[r, g]
        supply[g] = s
    n_gens = 0
    offered = np.zeros(n_gen, np.bool_)
    for g in newest_first:
        if shipping[g] and _any_ask(forced, patient, b_units, desk_asks, lo_asks, g):
            offered[g] = True
            n_gens += 1
            # every bid is capped at the supply: (buyers, desk, lolr) x supply + supply + 1 bid
            # units at most, and the ask units: below MAX_UNITS, clear_book checks nothing
            if supply[g] > MAX_UNITS or (n_k + 3) * supply[g] + 1 > MAX_UNITS:
                return 1, 0, 0, 0, 0
    # rows of ev_int: code, agent row, gen, units; at most n_gens x (n_l + n_b + n_k + 5)
    ev_code, ev_idx, ev_gen, ev_units = ev_int[0], ev_int[1], ev_int[2], ev_int[3]
    n_ev = 0
    # the book of one generation: asks (rows in row order) and bids
    n_ask_max = d_row + 2
    a_rows = np.empty(n_ask_max, np.int64)
    aq = np.empty(n_ask_max, np.int64)
    ap = np.empty(n_ask_max)
    a_fill = np.empty(n_ask_max, np.int64)
    n_bid_max = n_k + 3 + _N_STEPS + 1
    b_rows = np.empty(n_bid_max, np.int64)
    bq = np.empty(n_bid_max, np.int64)
    bp = np.empty(n_bid_max)
    b_fill = np.empty(n_bid_max, np.int64)
    fills = np.zeros(n_k, np.int64)
    pay = np.zeros(n_k)
    l_units = np.zeros(n_l, np.int64)
    rec = np.zeros(n_l)
    repay = np.zeros(n_l)
    surplus = np.zeros(n_l)
    s_rows = np.empty(n_b, np.int64)
    s_units = np.empty(n_b, np.int64)
    s_kind = np.empty(n_b, np.int64)
    s_ord = np.empty(n_b, np.int64)
    b_sold = np.zeros(n_b, np.int64)
    for g in newest_first:
        if not offered[g]:
            continue
        # ---- asks (ask_book): forced lenders, patient lenders, borrowers, the desk
        forced_price = 0.0 if outside_on else floor[g]
        na = 0
        forced_total = 0
        for r in range(n_l):
            if forced[r, g] != 0:
                a_rows[na], aq[na], ap[na] = r, forced[r, g], forced_price
                forced_total += forced[r, g]
                na += 1
        n_forced = na
        for r in range(n_l):
            if patient[r, g] != 0:
                a_rows[na], aq[na], ap[na] = n_l + r, patient[r, g], patient_price[r, g]
                na += 1
        for r in range(n_b):
            if b_units[r, g] != 0:
                a_rows[na], aq[na], ap[na] = 2 * n_l + r, b_units[r, g], b_price[g]
                na += 1
        if desk_asks[g] != 0:
            a_rows[na], aq[na] = d_row, desk_asks[g]
            ap[na] = forced_price if secured else fundamental[g]
            na += 1
        if lo_asks[g] != 0:  # patient: the price index, never below the salvage floor
            a_rows[na], aq[na] = l_row, lo_asks[g]
            ap[na] = maximum(price_index[g], floor[g])
            na += 1
        sup = supply[g]
        if parametric:  # every offered unit sells at p0 exp(-alpha q / stock) (parametric)
            volume = sup
            stock = float(max(units0[g], 1))
            price = fundamental[g] * exp1(-fp[FP_ALPHA] * (float(volume) / stock))
            for j in range(na):
                a_fill[j] = aq[j]
            external_units[g] += volume
            fp[FP_FLOW_SALVAGE] += float(volume) * price
            flags[FL_TRADES] += 1
            salvage_fill = desk_fill = 0
            last = -1
        else:
            # ---- bids (BidBook.bids): buyers, the desk's floor bid, salvage or outside steps
            nb = 0
            for i in range(n_k):
                res = reservation[i, g]
                if res > 0 and bidding[i]:
                    if unlimited:
                        cap = _BIG_UNITS
                    else:
                        units = capital[i] / res + 1e-9
                        if sites:
                            spare = mw_liq[i] if liquid[g] else mw[i] + mw_liq[i]
                        else:
                            spare = mw[i]
                        by_mw = spare * 1000.0 / kw[g] + 1e-9
                        cap = int(np.floor(minimum(minimum(units, by_mw), _BIG_F)))
                    q = cap if cap < sup else sup
                    if q != 0:
                        b_rows[nb], bq[nb], bp[nb] = i, q, res
                        nb += 1
            desk_price = d_prices[g]
            if desk_price > 0:
                room = _desk_room(desk_on, fp[FP_DESK_CAPACITY], fp[FP_DESK_LENT], d_cost_basis,
                                  fp[FP_DESK_CASH])
                dq = floordiv(room, desk_price)
                q = sup if dq >= sup else int(dq)
                if q != 0:
                    b_rows[nb], bq[nb], bp[nb] = n_k, q, desk_price
                    nb += 1
            if lolr_on and lo_prices[g] > 0:  # its capacity and its powered space
                lo_p = lo_prices[g]
                room = pymax(pymin(fp[FP_LOLR_CAPACITY] - psum(lo_cost_basis, 0, n_gen),
                                     fp[FP_LOLR_CASH]), 0.0)
                for gg in range(n_gen):
                    lo_kw[gg] = float(lo_holdings[gg]) * kw[gg]
                kw_room = pymax(fp[FP_LOLR_KW] - psum(lo_kw, 0, n_gen), 0.0)
                qf = pymin(floordiv(room, lo_p), floordiv(kw_room, kw[g]))
                q = sup if qf >= sup else int(qf)
                if q > 0:
                    b_rows[nb], bq[nb], bp[nb] = n_k + 1, q, lo_p
                    nb += 1
            if outside_on:
                top = fp[FP_TOP] * minimum(ref[g], fundamental[g])
                depth = fp[FP_DEPTH] * float(max(units0[g], 1))
                end = _outside_bids(top, floor[g], depth, sup, to_salvage, bq, bp, nb)
                for j in range(nb, end):
                    b_rows[j] = s0 + j - nb
                nb = end
            elif to_salvage and sup:
                b_rows[nb], bq[nb], bp[nb] = s0, sup, floor[g]
                nb += 1
            price, volume = _clear(aq, ap, na, bq, bp, nb, k, a_fill, b_fill)
            if outside_on and volume:
                month_pinned[g] = _pinned(b_rows, bq, bp, b_fill, nb, s0 - 1, k)
            if volume == 0:
                month_overhang[g] = forced_total
                continue
            flags[FL_TRADES] += 1
            # ---- settle_bids: the buyers with a fill (row order), the desk, salvage / outside
            lowest = math.inf
            n_buys = 0
            last = -1
            for j in range(nb):
                if b_fill[j]:
                    n_buys = j + 1
                    if bp[j] < lowest:
                        lowest = bp[j]
            fp[FP_ABOVE] = pymax(fp[FP_ABOVE], price - lowest)
            salvage_fill = 0
            desk_fill = 0
            # the filled rows from the end: outside steps / salvage, then the desk
            j = n_buys - 1
            if outside_on:
                while j >= 0 and (b_fill[j] == 0 or b_rows[j] >= s0):
                    salvage_fill += b_fill[j]
                    j -= 1
            else:
                if b_rows[j] == s0:
                    salvage_fill = b_fill[j]
                    j -= 1
                    while j >= 0 and b_fill[j] == 0:
                        j -= 1
            if lolr_on and j >= 0 and b_rows[j] == n_k + 1:  # LastResortBuyer.buy
                lo_fill = b_fill[j]
                j -= 1
                while j >= 0 and b_fill[j] == 0:
                    j -= 1
                h = lo_holdings[g]
                lo_since[g] = (lo_since[g] * float(h) + float(t * lo_fill)) / float(h + lo_fill)
                amount = float(lo_fill) * price
                lo_holdings[g] += lo_fill
                lo_cost_basis[g] += amount
                fp[FP_LOLR_CASH] -= amount
                lo_cash_bought[t] += amount
                ev_code[n_ev], ev_idx[n_ev], ev_units[n_ev] = EV_LOLR_BUY, 0, lo_fill
                ev_gen[n_ev], ev_price[n_ev] = g, price
                n_ev += 1
            if j >= 0 and b_rows[j] == n_k:
                desk_fill = b_fill[j]
                j -= 1
            last = j  # bid rows 0..last (those with a fill) are the buyers'
            any_buyer = False
            for jj in range(last + 1):
                if b_fill[jj]:
                    any_buyer = True
            if any_buyer:
                flags[FL_BUYER_SETTLES] += 1
                for i in range(n_k):
                    fills[i] = 0
                for jj in range(last + 1):
                    if b_fill[jj]:
                        fills[b_rows[jj]] = b_fill[jj]
                kwg = kw[g]
                for i in range(n_k):
                    pay[i] = float(fills[i]) * price
                    k_holdings[i, g] += fills[i]
                if not unlimited:
                    for i in range(n_k):
                        capital[i] = maximum(capital[i] - pay[i], 0.0)
                        need = float(fills[i]) * kwg / 1000.0
                        if not sites:
                            mw[i] = maximum(mw[i] - need, 0.0)
                        else:
                            air = 0.0 if liquid[g] else minimum(need, mw[i])
                            liq = minimum(need - air, mw_liq[i])
                            mw[i] = mw[i] - air
                            mw_liq[i] = mw_liq[i] - liq
                            mw_used[i] = mw_used[i] + air + liq
                total_pay = psum(pay, 0, n_k)
                fp[FP_BUYERS_PAID] += total_pay
                if unlimited:
                    fp[FP_FLOW_BUYER_CAPITAL] += total_pay
            if desk_fill:  # RepoDesk.buy
                amount = float(desk_fill) * price
                d_holdings[g] += desk_fill
                d_cost_basis[g] += amount
                fp[FP_DESK_CASH] -= amount
                d_cash_bought[t] += amount
            salvage_units[g] += salvage_fill
            fp[FP_FLOW_SALVAGE] += float(salvage_fill) * price
            month_salvage[g] = salvage_fill
        # ---- settle_orders: lenders (forced + patient units), borrowers, the desk
        n_lend = 0
        any_lender = False
        for i in range(n_l):
            l_units[i] = 0
        for j in range(na):
            r = a_rows[j]
            if r < 2 * n_l:
                n_lend += 1
                l_units[r - n_l if r >= n_l else r] += a_fill[j]
        for i in range(n_l):
            if l_units[i] != 0:
                any_lender = True
        if n_lend and any_lender:
            flags[FL_LENDER_SETTLES] += 1
            for i in range(n_l):  # LenderBook.remove_inventory
                inventory[i, g] -= l_units[i]
            for i in range(n_l):
                for gg in range(n_gen):
                    if inventory[i, gg] == 0:
                        inv_since[i, gg] = -1
                    if inventory[i, gg] < repo_units[i, gg]:
                        repo_units[i, gg] = inventory[i, gg]
            for i in range(n_l):  # apply_recovery, the repo repaid out of the recovery
                proceeds = float(l_units[i]) * price
                rec[i] = minimum(proceeds, claim_pool[i])
                claim_pool[i] -= rec[i]
                recoveries[i] += rec[i]
                later_recoveries[i] += rec[i]
                surplus[i] = proceeds - rec[i]
            fp[FP_RECOVERED] += psum(rec, 0, n_l)
            for i in range(n_l):
                repay[i] = minimum(repo_debt[i], rec[i])
                repo_debt[i] -= repay[i]
            repaid = psum(repay, 0, n_l)
            fp[FP_DESK_LENT] -= repaid  # RepoDesk.receive_repayment
            fp[FP_DESK_CASH] += repaid
            d_cash_repaid[t] += repaid
            for i in range(n_l):
                l_cash[i] += rec[i] - repay[i]
            fp[FP_FLOW_ESTATE] += -psum(surplus, 0, n_l)
            for i in range(n_l):
                if l_units[i] != 0:
                    ev_code[n_ev], ev_idx[n_ev], ev_units[n_ev] = EV_LENDER, i, l_units[i]
                    ev_gen[n_ev], ev_price[n_ev] = g, price
                    n_ev += 1
        n_sell = 0
        d_fill = 0
        lo_sold = 0
        for j in range(n_lend, na):
            r = a_rows[j]
            if r < d_row:
                if a_fill[j]:
                    s_rows[n_sell] = r - 2 * n_l
                    s_units[n_sell] = a_fill[j]
                    s_kind[n_sell] = kind[r - 2 * n_l]
                    n_sell += 1
            elif r == d_row:
                d_fill = a_fill[j]
            else:
                lo_sold = a_fill[j]
        if n_sell:
            for i in range(n_b):
                b_sold[i] = 0
            for j in range(n_sell):
                fleet[s_rows[j], g] -= s_units[j]
                b_sold[s_rows[j]] = s_units[j]
            # b.cash += b_units * price, and sale_proceeds: every borrower, + 0.0 for those
            # that sold nothing (which turns a -0.0 into +0.0, as numpy's add does)
            for i in range(n_b):
                proceeds = float(b_sold[i]) * price
                b_cash[i] += proceeds
                sale_proceeds[i] += proceeds
            _argsort(s_kind, n_sell, s_ord)  # miners first: a stable sort by kind
            for j in range(n_sell):
                o = s_ord[j]
                ev_code[n_ev], ev_idx[n_ev], ev_units[n_ev] = (EV_BORROWER + s_kind[o],
                                                               s_rows[o], s_units[o])
                ev_gen[n_ev], ev_price[n_ev] = g, price
                n_ev += 1
        if d_fill:  # RepoDesk.sell
            basis = d_cost_basis[g] * float(d_fill) / float(d_holdings[g])
            amount = float(d_fill) * price
            d_holdings[g] -= d_fill
            d_cost_basis[g] -= basis
            fp[FP_DESK_CASH] += amount
            d_cash_sold[t] += amount
            if secured:
                d_default_loss[t] += basis - amount
            ev_code[n_ev], ev_idx[n_ev], ev_units[n_ev] = EV_DESK_SALE, 0, d_fill
            ev_gen[n_ev], ev_price[n_ev] = g, price
            n_ev += 1
        if lo_sold:  # LastResortBuyer.sell
            lo_cost_basis[g] -= lo_cost_basis[g] * float(lo_sold) / float(lo_holdings[g])
            amount = float(lo_sold) * price
            lo_holdings[g] -= lo_sold
            fp[FP_LOLR_CASH] += amount
            lo_cash_sold[t] += amount
            ev_code[n_ev], ev_idx[n_ev], ev_units[n_ev] = EV_LOLR_SALE, 0, lo_sold
            ev_gen[n_ev], ev_price[n_ev] = g, price
            n_ev += 1
        # ---- record_trade
        traded[g] = True
        clearing[g] = price
        month_volume[g] = volume
        forced_sold = 0
        for j in range(n_forced):
            forced_sold += a_fill[j]
        month_forced[g] = forced_sold
        month_overhang[g] = forced_total - forced_sold
        fp[FP_FORCED_VALUE] += float(forced_sold) * price
        fp[FP_FORCED_FUNDAMENTAL] += float(forced_sold) * fundamental[g]
        if outside_on and forced_sold:
            fp[FP_FORCED_REP] += pysum_terms(a_fill, a_rows, rep_value, g, n_forced,
                                              ip[IP_NEUMAIER] != 0)
        # ---- log_purchases: buyers (row order), salvage, the desk
        for jj in range(last + 1):
            if b_fill[jj]:
                ev_code[n_ev], ev_idx[n_ev], ev_units[n_ev] = EV_BUYER, b_rows[jj], b_fill[jj]
                ev_gen[n_ev], ev_price[n_ev] = g, price
                n_ev += 1
        if salvage_fill:
            ev_code[n_ev], ev_idx[n_ev], ev_units[n_ev] = EV_SALVAGE, 0, salvage_fill
            ev_gen[n_ev], ev_price[n_ev] = g, price
            n_ev += 1
        if desk_fill:
            ev_code[n_ev], ev_idx[n_ev], ev_units[n_ev] = EV_DESK_BUY, 0, desk_fill
            ev_gen[n_ev], ev_price[n_ev] = g, price
            n_ev += 1
    return 0, n_ev, flags[FL_TRADES], flags[FL_LENDER_SETTLES], flags[FL_BUYER_SETTLES]


@jitable
def _any_ask(forced, patient, b_units, desk_asks, lo_asks, g):
    """Whether any order offers a nonzero number of units of generation ``g`` (``asks.any``:
    a nonzero entry, whatever the sign)."""
    if desk_asks[g] != 0 or lo_asks[g] != 0:
        return True
    for r in range(forced.shape[0]):
        if forced[r, g] != 0 or patient[r, g] != 0:
            return True
    for r in range(b_units.shape[0]):
        if b_units[r, g] != 0:
            return True
    return False
