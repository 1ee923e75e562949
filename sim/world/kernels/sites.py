"""The borrowers' sites compiled (:meth:`agents.sites.SiteBook.month`, run by
:func:`sim.world.phases.sites.run`): the buyers' MW values and conversion, the site sales (with
the fleet, ``sell_with_fleet``), retirement, hosting in place and the miners' energy
arbitrage, as one kernel call a month: :func:`sites_month` for one run, :func:`sites_batch` for
the runs of a stack (:class:`sim.world.stack.RunStack`), both calling :func:`sites_body`.

It replays the numpy code of ``SiteBook.month`` and of what it calls (:func:`agents.sites.
mw_values`, ``BuyerBook.convert``, ``SiteBook._sell`` and ``_sell_fleet`` with
``LenderBook.apply_recovery`` and ``remove_inventory``, ``SiteBook._host``,
``SiteBook._arbitrage``, :func:`agents.sites.ai_rent_per_mw`, :func:`agents.sites.switch_mw`)
element by element in the numpy code's order: ``np.add.reduce`` / ``ndarray.sum`` of a 1-D
float array, a row of ``numerics.matvec`` and ``units.sum(axis=1)`` are
:func:`sim.core.jit.psum` (over a gathered copy for a masked selection such as
``gpu_mw[old].sum()``), the ``bincount`` a loop in index order from 0.0, ``np.maximum`` /
``np.minimum`` numpy's (:func:`sim.core.jit.maximum`, ``minimum``), ``np.divide(..., where=)``
an if, and every early return of the numpy code (no buyer converts, no site held, no unit
hosted, no live miner, no MW switched) is taken where the numpy code takes it. Where the numpy
code makes a book array anew (``BuyerBook.convert``'s ``mw``, ``capital`` and ``mw_liq``, the
repo units after a fleet sale, ``hosted_units``, the arbitrage's ``host_rent``, ``host_mw``,
``switch_debt``, ``switch_pay`` and the borrowers' ``mining_share`` and ``site_income``), the
kernel writes the new values into the book's array itself, element by element, each element
read before it is written (resident state, issue 19: no month rebinds a book array).
``np.maximum.reduce(..., initial=0.0)`` (the MW values, the AI rent) is a loop from 0.0: the
same value, but where every candidate is a zero its sign may differ from numpy's (vectorised)
reduction; no result depends on it (the MW values are only compared and multiplied by MW > 0
after a test p > 0; the AI rent is compared, or multiplied into a rent added to a locked rent
that is never -0.0).

The sales' events and outside flows are written to a record (``sales``, one row per event)
that the phase logs and adds in order after the call; the running totals the numpy code adds
to sale by sale (``recovered_total``, the sold MW and proceeds, the desk's ``lent`` and
``cash``) are carried through ``totals`` with the same additions. Python's ``max(x, 0.0)``
and ``min(a, b)`` of the sales are ``pymax`` / ``pymin`` (:mod:`sim.core.jit`),
``int(x + 1e-9)`` a truncation toward zero.

Switches covered: all of them (``sites.arbitrage``, ``sites.host_in_place``,
``sites.sell_with_fleet``, ``buyers.unlimited``, any ``conversion_rate`` and
``conversion_months``, ``mining_mw_per_ph`` = 0, buyers or none); nothing falls back.
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import jitable, kernel, maximum, minimum, psum, pymax, pymin

# the columns of the sales' record (``sales``): one row per event, in the numpy code's order
EV_KIND, EV_LENDER, EV_GEN, EV_UNITS, EV_AMOUNT, EV_PRICE, EV_BUYER_CAPITAL, EV_SURPLUS = range(8)
N_EV = 8


@jitable
def _stage_a(t, res, price, kw, liquid_gen, shipping, do_convert, conv_cost, conv_rate,
             conv_col, b_mw, b_capital, b_mw_liq, b_mw_conv, holder, since, lender_code,
             sale_months, v_liq, v_air, x):
    """mw_values, then BuyerBook.convert, written in place into ``b_mw``, ``b_capital`` and
    ``b_mw_liq`` (or ``b_mw_conv``): buyer k's new values are made from its own old ones only;
    returns (x.any(), x.sum(), sites ready for sale)."""
    nk, g = res.shape[0], res.shape[1]
    for k in range(nk):
        vl = 0.0
        va = 0.0
        for j in range(g):
            s = maximum(res[k, j] - price[j], 0.0) * (1000.0 / kw[j])
            if not shipping[j]:
                s = 0.0
            vl = maximum(vl, s)
            va = maximum(va, 0.0 if liquid_gen[j] else s)
        v_liq[k] = vl
        v_air[k] = va
    xany = False
    xsum = 0.0
    if do_convert:
        go_any = False
        for k in range(nk):
            if (v_liq[k] - v_air[k] > conv_cost) and b_mw[k] > 0:
                go_any = True
                break
        if go_any:
            for k in range(nk):
                go = (v_liq[k] - v_air[k] > conv_cost) and b_mw[k] > 0
                reach = b_capital[k] / conv_cost if conv_cost > 0 else np.inf
                xk = minimum(conv_rate * b_mw[k], reach) if go else 0.0
                x[k] = xk
                b_mw[k] = b_mw[k] - xk
                b_capital[k] = maximum(b_capital[k] - xk * conv_cost, 0.0)
                if conv_col < 0:
                    b_mw_liq[k] = b_mw_liq[k] + xk
                else:
                    b_mw_conv[k, conv_col] += xk
                if xk != 0.0:
                    xany = True
            if xany:
                xsum = psum(x, 0, nk)
    ready = 0
    for i in range(holder.shape[0]):
        if holder[i] == lender_code and t - since[i] >= sale_months:
            ready += 1
    return xany, xsum, ready


@jitable
def _recover(l_, amount, claim_pool, recoveries, later_recoveries, rec, surplus):
    """``LenderBook.apply_recovery`` of proceeds ``amount`` at lender ``l_`` (0 elsewhere)."""
    for j in range(claim_pool.shape[0]):
        proceeds = amount if j == l_ else 0.0
        r = minimum(proceeds, claim_pool[j])
        claim_pool[j] = claim_pool[j] - r
        recoveries[j] = recoveries[j] + r
        later_recoveries[j] = later_recoveries[j] + r
        rec[j] = r
        surplus[j] = proceeds - r


@jitable
def _charge_buyer(ev, unlimited, capital, k, amount):
    """Buyer ``k`` pays ``amount`` (``SiteBook._sell`` and ``_sell_fleet``): with unlimited
    buyers the payment is an outside flow ("buyer_capital"), written to the event's row ``ev``
    (column EV_BUYER_CAPITAL, NaN otherwise); else ``capital[k] = max(capital[k] - amount,
    0.0)`` with Python's ``max`` (:func:`sim.core.jit.pymax`)."""
    ev[EV_BUYER_CAPITAL] = np.nan
    if unlimited:
        ev[EV_BUYER_CAPITAL] = amount
    else:
        capital[k] = pymax(capital[k] - amount, 0.0)


@jitable
def _stage_sell(t, holder, since, sale_months, gpu_mw, liquid, lender, site_buyer,
                lender_code, sold_code, build_cap, v_liq, v_air, res, unlimited, capital, b_mw,
                b_mw_liq, mw_used, holdings, with_fleet, newest_first, price, shipping,
                liquid_gen, kw, claim_pool, recoveries, later_recoveries, lb_cash, inventory,
                inv_since, repo_units, repo_debt, cash_repaid, sales, totals):
    """``SiteBook._sell`` (and ``_sell_fleet``) in place, ``repo_units`` included (the numpy
    code's new ``np.minimum(repo_units, inventory)``); the events and outside flows into
    ``sales`` (columns EV_*); ``totals`` in: (recovered_total, sold_mw, sale_proceeds,
    desk.lent, desk.cash), out: their values after the sales. Returns (rows of ``sales``,
    units sold with sites, whether a fleet sale took place)."""
    nk = v_liq.shape[0]
    nl = claim_pool.shape[0]
    p_liq = np.empty(nk)
    p_air = np.empty(nk)
    for k in range(nk):
        p_liq[k] = minimum(v_liq[k], build_cap)
        p_air[k] = minimum(v_air[k], build_cap)
    rec = np.empty(nl)
    surplus = np.empty(nl)
    repay = np.empty(nl)
    recovered, sold_mw, proceeds_sum, lent, desk_cash = (totals[0], totals[1], totals[2],
                                                         totals[3], totals[4])
    rows = 0
    fleet_units = 0
    fleet_sold = False
    for i in range(holder.shape[0]):
        if not (holder[i] == lender_code and t - since[i] >= sale_months):
            continue
        mw = gpu_mw[i]
        p = p_liq if liquid[i] else p_air
        k = -1
        best = 0.0
        for kk in range(nk):  # argmax(where(ok, p, -1.0)), the first of the highest
            ok = p[kk] > 0.0 and (unlimited or capital[kk] >= p[kk] * mw)
            val = p[kk] if ok else -1.0
            if ok and (k < 0 or val > best):
                k, best = kk, val
        if mw <= 0.0 or k < 0:
            continue
        amount = p[k] * mw
        ev = sales[rows]
        _charge_buyer(ev, unlimited, capital, k, amount)
        if liquid[i]:
            b_mw_liq[k] += mw
        else:
            b_mw[k] += mw
        l_ = lender[i]
        _recover(l_, amount, claim_pool, recoveries, later_recoveries, rec, surplus)
        for j in range(nl):
            lb_cash[j] += rec[j]
        recovered = recovered + psum(rec, 0, nl)
        ev[EV_SURPLUS] = -psum(surplus, 0, nl)
        holder[i] = sold_code
        site_buyer[i] = k
        sold_mw = sold_mw + mw
        proceeds_sum = proceeds_sum + amount
        ev[EV_KIND], ev[EV_LENDER], ev[EV_GEN], ev[EV_UNITS] = 0.0, l_, -1.0, 0.0
        ev[EV_AMOUNT], ev[EV_PRICE] = amount, p[k]
        rows += 1
        if not with_fleet:
            continue
        # ---- _sell_fleet
        room = gpu_mw[i]
        liquid_site = liquid[i]
        for g in newest_first:
            units = inventory[l_, g]
            pr = price[g]
            if (units == 0 or not shipping[g] or pr <= 0.0 or res[k, g] < pr
                    or (liquid_gen[g] and not liquid_site)):
                continue
            kwg = kw[g]
            n = min(units, np.int64(room * 1000.0 / kwg + 1e-9))
            if not unlimited:
                reach = capital[k] / pr + 1e-9
                if reach < 9.2e18:  # above int64: Python's int(reach) >= n, no bound
                    n = min(n, np.int64(reach))
            if n <= 0:
                continue
            pay = n * pr
            ev = sales[rows]
            _charge_buyer(ev, unlimited, capital, k, pay)
            holdings[k, g] += n
            mw_g = n * kwg / 1000.0
            room -= mw_g
            pool = b_mw_liq if liquid_site else b_mw
            used = pymin(mw_g, pool[k])
            pool[k] -= used
            mw_used[k] += used
            inventory[l_, g] -= n  # LenderBook.remove_inventory
            for a in range(nl):
                for b in range(inventory.shape[1]):
                    if inventory[a, b] == 0:
                        inv_since[a, b] = -1
            fleet_sold = True
            _recover(l_, pay, claim_pool, recoveries, later_recoveries, rec, surplus)
            recovered = recovered + psum(rec, 0, nl)
            for j in range(nl):
                repay[j] = minimum(repo_debt[j], rec[j])
                repo_debt[j] = repo_debt[j] - repay[j]
            paid = psum(repay, 0, nl)
            lent = lent - paid
            desk_cash = desk_cash + paid
            cash_repaid[t] += paid
            for j in range(nl):
                lb_cash[j] += rec[j] - repay[j]
            ev[EV_SURPLUS] = -psum(surplus, 0, nl)
            fleet_units += n
            ev[EV_KIND], ev[EV_LENDER], ev[EV_GEN], ev[EV_UNITS] = 1.0, l_, g, n
            ev[EV_AMOUNT], ev[EV_PRICE] = pay, pr
            rows += 1
    if fleet_sold:  # repo_units = np.minimum(repo_units, inventory) after every fleet sale;
        # inventory only falls, so after the last one it is the minimum with the last inventory
        for a in range(nl):
            for b in range(inventory.shape[1]):
                repo_units[a, b] = min(repo_units[a, b], inventory[a, b])
    totals[0], totals[1], totals[2], totals[3], totals[4] = (recovered, sold_mw, proceeds_sum,
                                                             lent, desk_cash)
    return rows, fleet_units, fleet_sold


@jitable
def _stage_b(t, holder, since, lender, gpu_mw, lender_code, retired_code, max_hold,
             old_idx, tmp_n, host_in_place, inventory, kw, rent, power, util, hours, shipping,
             hosting_fee, lb_cash, hosted, arbitrage, mining_mw_per_ph, status, defaulted,
             mine_mw, hashprice, mining_cost, days, host_share, spot_opex, liquid_gen,
             switch_cost, payback, switch_rate, host_demand, host_rent, host_mw, switch_debt,
             switch_pay, mining_share, site_income):
    """Retirement, hosting in place and the arbitrage (``SiteBook.month`` after the sales):
    ``holder`` (retired sites) and ``lb_cash`` in place, the retired sites' indices and MW
    into ``old_idx`` and ``tmp_n``; ``hosted`` (the numpy code's new ``hosted_units``) zeroed
    and filled in place; the arbitrage's ``host_rent``, ``host_mw``, ``switch_debt``,
    ``switch_pay``, ``mining_share`` and ``site_income`` written in place in a month it runs
    (borrower i's new values made from its own old ones, read first; ``host_rent`` and
    ``host_mw`` keep their values in a month without a switch, as in the numpy code).
    Returns (retired count, their MW, hosted any, tenants' rent, hosting fees, hosting
    income)."""
    n = holder.shape[0]
    nl, g = inventory.shape[0], inventory.shape[1]
    # ---- retirement of sites held max_hold months
    n_old = 0
    for i in range(n):
        if holder[i] == lender_code and t - since[i] >= max_hold:
            old_idx[n_old] = i
            tmp_n[n_old] = gpu_mw[i]
            n_old += 1
    retired = 0.0
    if n_old:
        retired = psum(tmp_n, 0, n_old)
        for j in range(n_old):
            holder[old_idx[j]] = retired_code
    # ---- hosting in place
    for l_ in range(hosted.shape[0]):
        hosted[l_] = 0.0
    hosted_any = False
    tenants = 0.0
    opex = 0.0
    income_sum = 0.0
    if host_in_place:
        held_any = False
        mw_l = np.zeros(nl)
        for i in range(n):
            if holder[i] == lender_code:
                held_any = True
                mw_l[lender[i]] += gpu_mw[i]
        if held_any:
            tmp_g = np.empty(g)
            revenue = np.empty(g)
            fee = np.empty(g)
            run = np.empty(g)
            for j in range(g):
                revenue[j] = maximum(util * rent[j] * hours - power[j], 0.0)
                fee[j] = hosting_fee * kw[j]
                run[j] = 1.0 if (shipping[j] and revenue[j] - fee[j] > 0.0) else 0.0
            units = np.empty((nl, g))
            for l_ in range(nl):
                for j in range(g):
                    tmp_g[j] = inventory[l_, j] * kw[j]
                load = psum(tmp_g, 0, g) / 1000.0
                sh = minimum(mw_l[l_] / load if load > 0 else 0.0, 1.0)
                for j in range(g):
                    u = inventory[l_, j] * sh * run[j]
                    units[l_, j] = u
                    if u != 0.0:
                        hosted_any = True
            if hosted_any:
                income = np.empty(nl)
                rows_rev = np.empty(nl)
                rows_fee = np.empty(nl)
                for l_ in range(nl):
                    for j in range(g):
                        tmp_g[j] = units[l_, j] * (revenue[j] - fee[j])
                    income[l_] = psum(tmp_g, 0, g)
                for l_ in range(nl):
                    lb_cash[l_] = lb_cash[l_] + income[l_]
                for l_ in range(nl):
                    for j in range(g):
                        tmp_g[j] = units[l_, j] * revenue[j]
                    rows_rev[l_] = psum(tmp_g, 0, g)
                    for j in range(g):
                        tmp_g[j] = units[l_, j] * fee[j]
                    rows_fee[l_] = psum(tmp_g, 0, g)
                    for j in range(g):
                        tmp_g[j] = units[l_, j]
                    hosted[l_] = psum(tmp_g, 0, g)
                tenants = psum(rows_rev, 0, nl)
                opex = psum(rows_fee, 0, nl)
                income_sum = psum(income, 0, nl)
    # ---- energy arbitrage
    if arbitrage and mining_mw_per_ph > 0.0:
        live = np.empty(n, np.bool_)
        any_live = False
        for i in range(n):
            live[i] = status[i] != defaulted and mine_mw[i] > 0
            any_live = any_live or live[i]
        if any_live:
            best = 0.0  # ai_rent_per_mw
            for j in range(g):
                net = (util * rent[j] * hours - power[j] - spot_opex) * (1000.0 / kw[j])
                best = maximum(best, maximum(net, 0.0)
                               if (shipping[j] and not liquid_gen[j]) else 0.0)
            r_ai = host_share * best
            dx = tmp_n
            r_mine = np.empty(n)
            avg = np.empty(n)
            for i in range(n):
                r_mine[i] = maximum(hashprice - mining_cost[i], 0.0) * days / mining_mw_per_ph
                avg[i] = host_rent[i] / host_mw[i] if host_mw[i] > 0 else 0.0
                step = switch_rate * mine_mw[i]
                dx[i] = (minimum(step, mine_mw[i] - host_mw[i])
                         if live[i] and (r_ai - r_mine[i]) * payback > switch_cost else 0.0)
            total = psum(dx, 0, n)
            if total > host_demand:
                f = host_demand / total
                for i in range(n):
                    dx[i] = dx[i] * f
            any_dx = False
            for i in range(n):
                step = switch_rate * mine_mw[i]
                back = live[i] and host_mw[i] > 0 and (r_mine[i] - avg[i]) * payback > switch_cost
                if back:
                    dx[i] = -minimum(step, host_mw[i])
                if dx[i] != 0.0:
                    any_dx = True
            for i in range(n):
                hr, hm, debt, sp = host_rent[i], host_mw[i], switch_debt[i], switch_pay[i]
                if any_dx:
                    d = dx[i]
                    hr = hr + (d * r_ai if d > 0 else d * avg[i])
                    hm = hm + d
                    cost = abs(d) * switch_cost
                    debt = debt + cost
                    sp = sp + cost / payback
                pay = minimum(sp, debt)
                debt = debt - pay
                host_rent[i] = hr
                host_mw[i] = hm
                switch_debt[i] = debt
                switch_pay[i] = sp if debt > 0.0 else 0.0
                mining_share[i] = (mine_mw[i] - hm) / mine_mw[i] if mine_mw[i] > 0 else 1.0
                site_income[i] = hr - pay
    return n_old, retired, hosted_any, tenants, opex, income_sum


@kernel
def sites_month(t, has_buyers, res, price, kw, liquid_gen, shipping, do_convert, conv_cost,
                conv_rate, conv_col, b_mw, b_capital, b_mw_liq, b_mw_conv, holder, since,
                lender, gpu_mw, lender_code, retired_code, sold_code, sale_months, max_hold,
                v_liq, v_air, x, liquid, site_buyer, build_cap, unlimited, mw_used, holdings,
                with_fleet, newest_first, claim_pool, recoveries, later_recoveries, inventory,
                inv_since, repo_units, repo_debt, cash_repaid, sales, totals, old_idx, tmp_n,
                host_in_place, rent, power, util, hours, hosting_fee, lb_cash, hosted, arbitrage,
                mining_mw_per_ph, status, defaulted, mine_mw, hashprice, mining_cost, days,
                host_share, spot_opex, switch_cost, payback, switch_rate, host_demand, host_rent,
                host_mw, switch_debt, switch_pay, mining_share, site_income):
    """One month of ``SiteBook.month`` for one run: :func:`sites_body` (its docstring)."""
    return sites_body(
        t, has_buyers, res, price, kw, liquid_gen, shipping, do_convert, conv_cost, conv_rate,
        conv_col, b_mw, b_capital, b_mw_liq, b_mw_conv, holder, since, lender, gpu_mw,
        lender_code, retired_code, sold_code, sale_months, max_hold, v_liq, v_air, x, liquid,
        site_buyer, build_cap, unlimited, mw_used, holdings, with_fleet, newest_first,
        claim_pool, recoveries, later_recoveries, inventory, inv_since, repo_units, repo_debt,
        cash_repaid, sales, totals, old_idx, tmp_n, host_in_place, rent, power, util, hours,
        hosting_fee, lb_cash, hosted, arbitrage, mining_mw_per_ph, status, defaulted, mine_mw,
        hashprice, mining_cost, days, host_share, spot_opex, switch_cost, payback, switch_rate,
        host_demand, host_rent, host_mw, switch_debt, switch_pay, mining_share, site_income)


@kernel
def sites_batch(runs, t, has_buyers, res, price, kw, liquid_gen, shipping, do_convert,
                conv_cost, conv_rate, conv_col, b_mw, b_capital, b_mw_liq, b_mw_conv, holder,
                since, lender, gpu_mw, lender_code, retired_code, sold_code, sale_months,
                max_hold, v_liq, v_air, x, liquid, site_buyer, build_cap, unlimited, mw_used,
                holdings, with_fleet, newest_first, claim_pool, recoveries, later_recoveries,
                inventory, inv_since, repo_units, repo_debt, cash_repaid, sales, totals, old_idx,
                tmp_n, host_in_place, rent, power, util, hours, hosting_fee, lb_cash, hosted,
                arbitrage, mining_mw_per_ph, status, defaulted, mine_mw, hashprice, mining_cost,
                days, host_share, spot_opex, switch_cost, payback, switch_rate, host_demand,
                host_rent, host_mw, switch_debt, switch_pay, mining_share, site_income, flags,
                counts, sums):
    """The sites' month of the runs ``runs`` of a stack at once (the run axis, issue 19):
    every argument of :func:`sites_body` stacked with a leading run axis (numbers and
    switches as (R,) arrays; ``lender_code``, ``retired_code``, ``sold_code``, ``defaulted``,
    ``hours`` and ``days`` are constants, passed as numbers), run r's the row r. Run r's
    results go to ``flags[r]`` (x.any(), fleet sale, hosted any), ``counts[r]`` (rows of
    ``sales[r]``, units sold with sites, retired count) and ``sums[r]`` (x.sum(), retired MW,
    tenants' rent, hosting fees, hosting income). The same operations on each row as
    :func:`sites_month` on that run's arrays, so each run's bits are its own."""
    for i in range(runs.shape[0]):
        r = runs[i]
        (xany, xsum, rows, fleet_units, fleet_sold, n_old, retired, hosted_any, tenants, opex,
         income) = sites_body(
            t[r], has_buyers[r], res[r], price[r], kw[r], liquid_gen[r], shipping[r],
            do_convert[r], conv_cost[r], conv_rate[r], conv_col[r], b_mw[r], b_capital[r],
            b_mw_liq[r], b_mw_conv[r], holder[r], since[r], lender[r], gpu_mw[r], lender_code,
            retired_code, sold_code, sale_months[r], max_hold[r], v_liq[r], v_air[r], x[r],
            liquid[r], site_buyer[r], build_cap[r], unlimited[r], mw_used[r], holdings[r],
            with_fleet[r], newest_first[r], claim_pool[r], recoveries[r], later_recoveries[r],
            inventory[r], inv_since[r], repo_units[r], repo_debt[r], cash_repaid[r], sales[r],
            totals[r], old_idx[r], tmp_n[r], host_in_place[r], rent[r], power[r], util[r],
            hours, hosting_fee[r], lb_cash[r], hosted[r], arbitrage[r], mining_mw_per_ph[r],
            status[r], defaulted, mine_mw[r], hashprice[r], mining_cost[r], days,
            host_share[r], spot_opex[r], switch_cost[r], payback[r], switch_rate[r],
            host_demand[r], host_rent[r], host_mw[r], switch_debt[r], switch_pay[r],
            mining_share[r], site_income[r])
        flags[r, 0], flags[r, 1], flags[r, 2] = xany, fleet_sold, hosted_any
        counts[r, 0], counts[r, 1], counts[r, 2] = rows, fleet_units, n_old
        sums[r, 0], sums[r, 1], sums[r, 2], sums[r, 3], sums[r, 4] = (xsum, retired, tenants,
                                                                      opex, income)


@jitable
def sites_body(t, has_buyers, res, price, kw, liquid_gen, shipping, do_convert, conv_cost,
                conv_rate, conv_col, b_mw, b_capital, b_mw_liq, b_mw_conv, holder, since,
                lender, gpu_mw, lender_code, retired_code, sold_code, sale_months, max_hold,
                v_liq, v_air, x, liquid, site_buyer, build_cap, unlimited, mw_used, holdings,
                with_fleet, newest_first, claim_pool, recoveries, later_recoveries, inventory,
                inv_since, repo_units, repo_debt, cash_repaid, sales, totals, old_idx, tmp_n,
                host_in_place, rent, power, util, hours, hosting_fee, lb_cash, hosted, arbitrage,
                mining_mw_per_ph, status, defaulted, mine_mw, hashprice, mining_cost, days,
                host_share, spot_opex, switch_cost, payback, switch_rate, host_demand, host_rent,
                host_mw, switch_debt, switch_pay, mining_share, site_income):
    """One month of ``SiteBook.month`` (module docstring): with buyers (``has_buyers``) the
    MW values, the conversion and the sales (:func:`_stage_sell`), then retirement, hosting
    in place and arbitrage; writes in place every book array the numpy code writes or makes
    anew (the buyers' ``b_mw``, ``b_capital``, ``b_mw_liq``, ``repo_units``, ``hosted``, the
    arbitrage's arrays and ``mining_share``, ``site_income``), and into ``sales``, ``totals``
    and ``old_idx`` what the numpy code adds up or logs. Returns (x.any(), x.sum(), rows of
    ``sales``, units sold with sites, whether a fleet sale took place, retired count, their
    MW, hosted any, tenants' rent, hosting fees, hosting income)."""
    xany, xsum = False, 0.0
    rows, fleet_units, fleet_sold = 0, 0, False
    if has_buyers:
        xany, xsum, ready = _stage_a(
            t, res, price, kw, liquid_gen, shipping, do_convert, conv_cost, conv_rate,
            conv_col, b_mw, b_capital, b_mw_liq, b_mw_conv, holder, since, lender_code,
            sale_months, v_liq, v_air, x)
        if ready:
            rows, fleet_units, fleet_sold = _stage_sell(
                t, holder, since, sale_months, gpu_mw, liquid, lender, site_buyer,
                lender_code, sold_code, build_cap, v_liq, v_air, res, unlimited, b_capital,
                b_mw, b_mw_liq, mw_used, holdings, with_fleet, newest_first, price, shipping,
                liquid_gen, kw, claim_pool, recoveries, later_recoveries, lb_cash, inventory,
                inv_since, repo_units, repo_debt, cash_repaid, sales, totals)
    n_old, retired, hosted_any, tenants, opex, income_sum = _stage_b(
        t, holder, since, lender, gpu_mw, lender_code, retired_code, max_hold, old_idx, tmp_n,
        host_in_place, inventory, kw, rent, power, util, hours, shipping, hosting_fee,
        lb_cash, hosted, arbitrage, mining_mw_per_ph, status, defaulted, mine_mw, hashprice,
        mining_cost, days, host_share, spot_opex, liquid_gen, switch_cost, payback,
        switch_rate, host_demand, host_rent, host_mw, switch_debt, switch_pay, mining_share,
        site_income)
    return (xany, xsum, rows, fleet_units, fleet_sold, n_old, retired, hosted_any, tenants,
            opex, income_sum)
