"""Phase 9 (:mod:`sim.world.phases.record`) compiled: every sum of the month's records (the
lenders', the sites', the buyers' capacity and the losses counted for everyone,
:mod:`sim.world.losses`, with the arithmetic that combines them), the desk's month-end
records and the three rows of the agent panel in one kernel call, :func:`record_month`.

It covers every switch (sites on or off, other loans, the repo desk, the buyer of last resort,
unlimited buyers, the outside demand, ``metrics.losses_at_writeoff`` and
``metrics.system_loss``). The kernel copies the month's records by generation and new
defaults; the phase copies the other plain numbers and the kernel's values into the records in
Python, as the numpy code does, and leaves in Python: the buyer of last resort's
own records (its method), the buyers' capacity when buyers are unlimited (inf) and the losses
at t0 (which allocate their records). Sums are added in numpy's order
(:func:`sim.core.jit.psum` for ``np.add.reduce`` of a 1-D array; a row of ``numerics.matvec``
as it adds one: pairwise, which below 8 terms is the plain sum from 0.0); integer sums in any
order; Python's ``sum`` of floats as CPython adds them (:func:`sim.core.jit.pysum`); the scalar
arithmetic of ``losses.wealth``, ``_stock`` and ``identity`` in their order
(:func:`_losses_records`).
"""

from __future__ import annotations

import numpy as np

from agents.buyer import BIG
from sim.core.jit import jitable, kernel, maximum, minimum, psum, pysum

# LenderStatus and BorrowerStatus codes (agents.lender, agents.borrower)
L_DELEVERAGING, L_FAILED = 1, 2
B_HEALTHY, B_DISTRESSED, B_DEFAULTED = 0, 1, 2
# agents.sites holder codes
SITE_BORROWER, SITE_LENDER = 0, 1
_BIG_F = float(BIG)  # the most units a buyer's capacity counts (agents.buyer)

# the layout of record_month's ``vals``: the sites' six sums, the buyers' capacity, the new
# losses_state sums, then the records of LOSS_RECORDS (sim.world.losses.RECORDS' keys; the
# last, loss_lenders_recoveries, only written with metrics.losses_at_writeoff)
V_SITES, V_CAP, V_INCOME, V_EXPORTED, V_LOSSES = 0, 6, 7, 8, 9
LOSS_RECORDS = ("loss_lenders", "loss_desk", "loss_lolr", "loss_buyers", "loss_borrowers",
                "loss_outside", "loss_outside_buyers", "loss_outside_suppliers",
                "loss_outside_funders", "loss_outside_other_borrowers", "system_loss",
                "system_loss_at_value", "sl_value_destroyed", "sl_btc_value_fall",
                "sl_operating_income", "sl_discount", "sl_holding_costs", "sl_discount_outside",
                "loss_lenders_credit", "loss_lenders_net", "loss_lenders_other",
                "loss_borrowers_wiped_out", "desk_cash_flows", "desk_mark",
                "loss_lenders_recoveries")
N_VALS = V_LOSSES + len(LOSS_RECORDS)
# the model's outside flows the losses read (model.flows), in the order of record_month's
# ``flows`` argument
FLOW_KEYS = ("salvage", "btc_sales", "tenants", "opex", "holding_costs", "buyer_capital",
             "payouts", "estate_surplus", "unpaid_suppliers", "funding_outside",
             "policy_funding", "other_loans")
(F_SALVAGE, F_BTC_SALES, F_TENANTS, F_OPEX, F_HOLDING, F_BUYER_CAPITAL, F_PAYOUTS, F_ESTATE,
 F_UNPAID, F_FUNDING_OUTSIDE, F_POLICY, F_OTHER_LOANS) = range(len(FLOW_KEYS))


@jitable
def _row_dot(a, i, x, tmp):
    """``numerics.matvec(a, x)[i]``: the products a_ik x_k (an integer a converted exactly)
    added pairwise (:func:`~sim.core.jit.psum`, via ``tmp``), which below 8 terms is the plain
    sum from 0.0, done here without psum's call."""
    k = x.shape[0]
    if k < 8:
        acc = 0.0
        for j in range(k):
            acc += a[i, j] * x[j]
        return acc
    for j in range(k):
        tmp[j] = a[i, j] * x[j]
    return psum(tmp, 0, k)


@kernel
def record_month(writeoffs, recoveries, later_recoveries, at_writeoff, lstatus, equity,
                 inventory, desk_holdings, lcash, bcash, capital, lassets, fleet, price, btc,
                 env_btc, holdings, bstatus, call_months, arrears_months, cash_panel,
                 size_panel, state_panel, has_sites, holder, gpu_mw, mine_mw, host_mw, mw,
                 mw_liq, mw_conv, cap_on, cap_price, cap_kw, cap_liquid, buyer_sites, losses_on,
                 fundamental, rent_hours, rent, power_cost, spot_opex, facility, has_facility,
                 lolr_holdings, salvage_units, external_units, out_units, outside, repo_debt,
                 other_loans, b_debt, active, principal, accrued, other_losses, equity0,
                 cash_lent, cash_repaid, interest, cash_bought, cash_sold, funding, t,
                 cost_basis, desk_cost, desk_mark, desk_loans, desk_cash_rec, desk_due_rec,
                 desk_lent, desk_cash, desk_cash0, desk_due, desk_secured, has_other, unlimited,
                 has_lolr, lolr_cash, lolr_due, income0, exported0, flows, stock0, wealth0,
                 rec_rent, rec_price, rec_fundamental, rec_volume, volume, rec_forced, forced,
                 rec_overhang, overhang, rec_salvage, salvage, rec_defaults_miner,
                 rec_defaults_neocloud, new_defaults):
    """The whole month of :func:`sim.world.phases.record.run` that is not a copy of a
    number: the lenders' sums, the month's panel rows, the sites' sums, the buyers' capacity,
    the desk's records and (``losses_on``) the losses counted for everyone
    (:func:`_losses_sums`, :func:`_losses_records`).

    Copies the month's rows of the records by generation (``rec_rent[t] = rent``,
    ``rec_price[t] = price``, ``rec_fundamental[t] = fundamental``, and the month's market
    counters ``volume``, ``forced``, ``overhang``, ``salvage`` into theirs) and the month's
    new defaults (``new_defaults``: miners, neoclouds) into ``rec_defaults_miner[t]`` and
    ``rec_defaults_neocloud[t]``, as the numpy code assigns them, then zeroes ``new_defaults``
    in place (the numpy code binds a new zero array).

    Fills row ``t`` of ``cash_panel``, ``size_panel`` and ``state_panel`` (the panel:
    lenders, borrowers, buyers) as the numpy code's ``np.concatenate`` does (a borrower
    HEALTHY in its book but under a margin call or in arrears shows as DISTRESSED); sums the
    lenders' books: with ``at_writeoff`` (metrics.losses_at_writeoff) the recoveries are the
    later recoveries and the credit losses net of recoveries at write-off only; and fills
    ``vals`` (:data:`N_VALS` entries): with ``has_sites``, in ``vals[V_SITES:V_SITES + 6]``,
    the sums of :func:`sim.world.phases.record.record_sites`: [MW held by borrowers (data
    halls and mining halls), by lenders, buyers' spare air-cooled, liquid-cooled and
    converting MW, and miners' MW let to AI tenants]; and, with ``cap_on``, the units the
    buyers could take of the recorded generation at ``cap_price``
    (``BuyerBook.capacity_total``: each buyer's capital over the price and its spare MW over
    the generation's ``cap_kw``, each nudged up by 1e-9,
    the smaller, capped, floored), else 0, in ``vals[V_CAP]``; with ``losses_on``, the month's
    losses (:func:`_losses_records`: ``vals[V_INCOME]``, ``vals[V_EXPORTED]`` the new
    ``losses_state`` sums, ``vals[V_LOSSES:]`` the records of :data:`LOSS_RECORDS` that
    ``losses.record`` writes) and the units sold out of the sector (else an empty array).

    It also writes the desk's month-end records (``RepoDesk.record``: ``desk_cost``,
    ``desk_mark``, ``desk_loans``, ``desk_cash_rec``, ``desk_due_rec`` at ``t``: its holdings
    at cost and at ``price``, its loans, cash and unpaid cost of capital).

    Returns (writeoffs, recoveries, credit losses, lender equity, failures, lenders
    deleveraging, inventory units, repo units, vals, out)."""
    nl, nb, nu = lcash.shape[0], bcash.shape[0], capital.shape[0]
    g = price.shape[0]
    for k in range(g):
        rec_rent[t, k] = rent[k]
        rec_price[t, k] = price[k]
        rec_fundamental[t, k] = fundamental[k]
        rec_volume[t, k] = volume[k]
        rec_forced[t, k] = forced[k]
        rec_overhang[t, k] = overhang[k]
        rec_salvage[t, k] = salvage[k]
    rec_defaults_miner[t] = new_defaults[0]
    rec_defaults_neocloud[t] = new_defaults[1]
    new_defaults[0] = 0
    new_defaults[1] = 0
    cash_row, size_row, state_row = cash_panel[t], size_panel[t], state_panel[t]
    tmp = np.empty(max(nl, g))
    w_sum = psum(writeoffs, 0, nl)
    if at_writeoff:
        for i in range(nl):
            tmp[i] = writeoffs[i] - (recoveries[i] - later_recoveries[i])
        loss_sum = psum(tmp, 0, nl)
        rec_sum = psum(later_recoveries, 0, nl)
    else:
        for i in range(nl):
            tmp[i] = writeoffs[i] - recoveries[i]
        loss_sum = psum(tmp, 0, nl)
        rec_sum = psum(recoveries, 0, nl)
    eq_sum = psum(equity, 0, nl)
    n_failed = 0
    n_delev = 0
    for i in range(nl):
        if lstatus[i] == L_FAILED:
            n_failed += 1
        elif lstatus[i] == L_DELEVERAGING:
            n_delev += 1
    units = 0
    for i in range(nl):
        for k in range(inventory.shape[1]):
            units += inventory[i, k]
    repo_units = 0
    for k in range(desk_holdings.shape[0]):
        repo_units += desk_holdings[k]
    # the panel: lenders, borrowers, buyers
    for i in range(nl):
        cash_row[i] = lcash[i]
        size_row[i] = lassets[i]
        state_row[i] = lstatus[i]
    for i in range(nb):
        cash_row[nl + i] = bcash[i]
        if g < 8:  # _row_dot written out: a call per row costs more than the row's sum
            acc = 0.0
            for k in range(g):
                acc += fleet[i, k] * price[k]
        else:
            acc = _row_dot(fleet, i, price, tmp)
        size_row[nl + i] = acc + btc[i] * env_btc
        s = bstatus[i]
        if s == B_HEALTHY and (call_months[i] >= 0 or arrears_months[i] > 0):
            s = B_DISTRESSED
        state_row[nl + i] = s
    for i in range(nu):
        cash_row[nl + nb + i] = capital[i]
        if g < 8:
            acc = 0.0
            for k in range(g):
                acc += holdings[i, k] * price[k]
        else:
            acc = _row_dot(holdings, i, price, tmp)
        size_row[nl + nb + i] = capital[i] + acc
    vals = np.zeros(N_VALS)
    if has_sites:
        ns = holder.shape[0]
        sel = np.empty(max(ns, nb))
        k = 0
        for i in range(ns):
            if holder[i] == SITE_BORROWER:
                sel[k] = gpu_mw[i]
                k += 1
        s0 = psum(sel, 0, k)
        k = 0
        for i in range(ns):
            if holder[i] == SITE_BORROWER:
                sel[k] = mine_mw[i]
                k += 1
        vals[V_SITES] = s0 + psum(sel, 0, k)
        k = 0
        for i in range(ns):
            if holder[i] == SITE_LENDER:
                sel[k] = gpu_mw[i]
                k += 1
        vals[V_SITES + 1] = psum(sel, 0, k)
        vals[V_SITES + 2] = psum(mw, 0, mw.shape[0])
        vals[V_SITES + 3] = psum(mw_liq, 0, mw_liq.shape[0])
        vals[V_SITES + 4] = psum(mw_conv.reshape(mw_conv.size), 0, mw_conv.size)  # one run
        k = 0
        for i in range(nb):
            if bstatus[i] != B_DEFAULTED:
                sel[k] = host_mw[i]
                k += 1
        vals[V_SITES + 5] = psum(sel, 0, k)
    capacity = 0
    if cap_on:
        for k in range(nu):
            u = capital[k] / cap_price
            u += 1e-9
            if not buyer_sites:
                spare = mw[k]
            elif cap_liquid:
                spare = mw_liq[k]
            else:
                spare = mw[k] + mw_liq[k]
            by_mw = spare * 1000.0 / cap_kw
            by_mw += 1e-9
            capacity += np.int64(np.floor(minimum(minimum(u, by_mw), _BIG_F)))
    vals[V_CAP] = float(capacity)
    # the desk's month-end records (RepoDesk.record: np.add.reduce of its cost basis and of
    # its holdings x the price, pairwise)
    ng = cost_basis.shape[0]
    desk_cost[t] = psum(cost_basis, 0, ng)
    dtmp = np.empty(ng)
    for k in range(ng):
        dtmp[k] = desk_holdings[k] * price[k]
    desk_mark[t] = psum(dtmp, 0, ng)
    desk_loans[t] = desk_lent
    desk_cash_rec[t] = desk_cash
    desk_due_rec[t] = desk_due
    if losses_on:
        sums, out = _losses_sums(
            price, fundamental, rent_hours, rent, power_cost, spot_opex, facility,
            has_facility, fleet, inventory, holdings, desk_holdings, lolr_holdings,
            salvage_units, external_units, out_units, btc, bcash, lcash, outside, repo_debt,
            other_loans, capital, b_debt, active, principal, accrued, writeoffs, recoveries,
            other_losses, equity0, bstatus, cash_lent, cash_repaid, interest, cash_bought,
            cash_sold, funding)
        _losses_records(sums, vals, loss_sum, rec_sum, at_writeoff, env_btc, desk_lent,
                        desk_cash, desk_cash0, desk_due, desk_secured, has_other, unlimited,
                        has_lolr, lolr_cash, lolr_due, income0, exported0, flows, stock0,
                        wealth0)
    else:
        out = np.zeros(0, np.int64)
    return (w_sum, rec_sum, loss_sum, eq_sum, n_failed, n_delev, units, repo_units, vals,
            out)


@jitable
def _losses_records(sums, vals, credit, recovered, at_writeoff, env_btc, lent, cash, cash0,
                    due_desk, secured, has_other, unlimited, has_lolr, lolr_cash, lolr_due,
                    income0, exported0, flows, stock0, wealth0):
    """The scalar arithmetic of :func:`sim.world.losses.record` after t0 on the sums of
    :func:`_losses_sums`, as ``losses.wealth``, ``losses._stock`` and ``losses.identity``
    combine them (the same float operations in the same order; an ``np.add.reduce`` of fewer
    than 8 terms is the plain sum from 0.0), into ``vals``: the new ``losses_state`` sums of
    the buyers' imputed income and of the value exported (``income0``, ``exported0`` before
    this month) and the records of :data:`LOSS_RECORDS`. ``flows`` holds the model's outside
    flows of :data:`FLOW_KEYS`; ``stock0``, ``wealth0`` are ``losses0``'s stock and wealth;
    ``credit`` and ``recovered`` the month's credit-loss and recovery records."""
    income = income0 + sums[0]
    exported = exported0 + sums[1]
    vals[V_INCOME] = income
    vals[V_EXPORTED] = exported
    uv = sums[2]
    ugap = sums[3]
    btc = sums[4]
    debt = sums[5]
    # losses._stock
    out_disc = exported - flows[F_SALVAGE]
    stock = np.empty(7)
    stock[0] = uv + exported
    stock[1] = ugap + out_disc
    stock[2] = btc * env_btc
    stock[3] = out_disc
    stock[4] = flows[F_BTC_SALES]
    stock[5] = flows[F_TENANTS] + flows[F_OPEX] + income
    stock[6] = flows[F_HOLDING]
    # losses.wealth
    other = sums[10] if has_other else 0.0
    lenders = sums[6] + debt + sums[7] + other - sums[8] - sums[9]
    cap = 0.0 if unlimited else sums[11]
    buy = cap - flows[F_BUYER_CAPITAL] + sums[12] + income
    repo_b = sums[13] if secured else 0.0
    borrowers = (sums[14] + sums[15] + btc * env_btc - debt - repo_b - flows[F_PAYOUTS]
                 - flows[F_ESTATE])
    lolr = lolr_cash + sums[16] - lolr_due if has_lolr else 0.0
    due = due_desk + (lolr_due if has_lolr else 0.0)
    wealth = np.empty(10)
    wealth[0] = lenders
    wealth[1] = (cash - cash0) + lent + sums[17] - due_desk + cash0  # desk.pnl(price) + cash0
    wealth[2] = lolr
    wealth[3] = buy
    wealth[4] = borrowers
    wealth[6] = 0.0
    wealth[7] = -flows[F_UNPAID]
    wealth[8] = sums[8] - flows[F_FUNDING_OUTSIDE] - flows[F_POLICY] + due
    wealth[9] = -other - flows[F_OTHER_LOANS]
    acc = 0.0
    for k in range(6, 10):
        acc += wealth[k]
    wealth[5] = acc
    # losses.identity: stock - stock0, and each party's wealth0 - wealth
    d = np.empty(7)
    for k in range(7):
        d[k] = stock[k] - stock0[k]
    j = V_LOSSES
    system_loss = 0.0
    for k in range(10):
        x = wealth0[k] - wealth[k]
        vals[j + k] = x
        if k < 6:
            system_loss += x
    j += 10
    discount = d[1]
    vals[j] = system_loss
    vals[j + 1] = system_loss - (discount - d[3])
    vals[j + 2] = -d[0]  # the identity's terms (losses.TERMS, then discount_outside)
    vals[j + 3] = -d[2] - d[4]
    vals[j + 4] = d[5]
    vals[j + 5] = discount
    vals[j + 6] = -d[6]
    vals[j + 7] = d[3]
    vals[j + 8] = credit  # loss_lenders_credit
    vals[j + 9] = sums[18]  # loss_lenders_net
    vals[j + 10] = sums[19] if has_other else 0.0  # loss_lenders_other
    vals[j + 11] = sums[20]  # loss_borrowers_wiped_out
    flows6 = np.empty(6)  # desk_cash_flows: Python's sum of RepoDesk.flows' six values
    flows6[0] = -sums[21]
    flows6[1] = sums[22]
    flows6[2] = sums[23]
    flows6[3] = -sums[24]
    flows6[4] = sums[25]
    flows6[5] = -sums[26]
    vals[j + 12] = pysum(flows6)
    vals[j + 13] = lent + sums[17] - due_desk  # desk_mark
    vals[j + 14] = recovered if at_writeoff else 0.0  # loss_lenders_recoveries (if written)


@jitable
def _dot(a, x, tmp):
    """``numerics.dot(a, x)``: the products a_k x_k (an integer a converted exactly) added
    as ``numerics.matvec`` adds a row."""
    k = x.shape[0]
    if k < 8:  # psum's plain sum from 0.0, without the call
        acc = 0.0
        for j in range(k):
            acc += a[j] * x[j]
        return acc
    for j in range(k):
        tmp[j] = a[j] * x[j]
    return psum(tmp, 0, k)


@jitable
def _colsum_int(a, out):
    """``a.sum(axis=0)`` of an integer (n, k) array (integer sums: any order)."""
    for j in range(out.shape[0]):
        out[j] = 0
    for i in range(a.shape[0]):
        for j in range(out.shape[0]):
            out[j] += a[i, j]


@jitable
def _losses_sums(price, fundamental, rent_hours, rent, power_cost, spot_opex, facility,
                 has_facility, fleet, inventory, holdings, desk_holdings,
                 lolr_holdings, salvage_units, external_units, out_units, btc, bcash, lcash,
                 outside, repo_debt, other_loans, capital, b_debt, active, principal, accrued,
                 writeoffs, recoveries, other_losses, equity0, bstatus, cash_lent, cash_repaid,
                 interest, cash_bought, cash_sold, funding):
    """The array reductions of :func:`sim.world.losses.record` at a month after t0, in one
    call, with ``losses.holder_margin``: max(rent_hours x rent - cost, 0), cost = power +
    spot opex (+ the facility charge with ``has_facility``; ``agents.buyer.running_cost``),
    rent_hours = 730 x the utilisation.

    Returns (sums, out): ``out`` the units sold out of the sector
    (``losses._outside_units``), ``sums`` = [buyers' imputed income this month, value of the
    units newly sold out, U.V, U.(V - p), BTC held, the GPU loans' exposure, lenders' cash,
    lenders' inventory at p, outside funding, repo debt, other loans, buyers' capital, buyers'
    holdings at p, borrowers' secured repo debt, borrowers' cash, fleets at p, the buyer of
    last resort's holdings at p, the desk's holdings at p, net credit losses, other loans'
    losses, t0 equity of the defaulted, and the desk's six cash-flow sums (lent, repaid,
    interest, purchases, sales, funding)]: each added as numpy adds it there."""
    g = price.shape[0]
    nb = bcash.shape[0]
    sums = np.zeros(27)
    tmp = np.empty(max(g, lcash.shape[0]))
    units = np.empty(g, np.int64)
    held = np.empty(g, np.int64)
    _colsum_int(holdings, held)
    margin = np.empty(g)
    for k in range(g):
        cost = power_cost[k] + spot_opex
        if has_facility:
            cost = cost + facility[k]
        margin[k] = maximum(rent_hours * rent[k] - cost, 0.0)
    sums[0] = _dot(held, margin, tmp)
    out = np.empty(g, np.int64)
    for k in range(g):
        out[k] = salvage_units[k] + external_units[k]
        units[k] = out[k] - out_units[k]
    sums[1] = _dot(units, fundamental, tmp)
    fl = np.empty(g, np.int64)
    inv = np.empty(g, np.int64)
    _colsum_int(fleet, fl)
    _colsum_int(inventory, inv)
    gap = np.empty(g)
    for k in range(g):  # model.gpu_units() less the units sold out of the sector
        u = fl[k] + inv[k] + held[k] + desk_holdings[k] + salvage_units[k] + external_units[k]
        if lolr_holdings.shape[0]:
            u += lolr_holdings[k]
        units[k] = u - out[k]
        gap[k] = fundamental[k] - price[k]
    sums[2] = _dot(units, fundamental, tmp)
    sums[3] = _dot(units, gap, tmp)
    sums[4] = psum(btc, 0, nb)
    nr = active.shape[0]
    exposure = np.empty(nr)
    for r in range(nr):
        exposure[r] = (principal[r] + accrued[r]) if active[r] else 0.0
    sums[5] = psum(exposure, 0, nr)
    nl = lcash.shape[0]
    sums[6] = psum(lcash, 0, nl)
    sums[7] = _dot(inv, price, tmp)
    sums[8] = psum(outside, 0, nl)
    sums[9] = psum(repo_debt, 0, nl)
    sums[10] = psum(other_loans, 0, nl)
    sums[11] = psum(capital, 0, capital.shape[0])
    sums[12] = _dot(held, price, tmp)
    sums[13] = psum(b_debt, 0, b_debt.shape[0])
    sums[14] = psum(bcash, 0, nb)
    sums[15] = _dot(fl, price, tmp)
    if lolr_holdings.shape[0]:
        sums[16] = _dot(lolr_holdings, price, tmp)
    sums[17] = _dot(desk_holdings, price, tmp)
    for i in range(nl):
        tmp[i] = writeoffs[i] - recoveries[i]
    sums[18] = psum(tmp, 0, nl)
    sums[19] = psum(other_losses, 0, nl)
    n_dead = 0
    dead = np.empty(nb)
    for i in range(nb):
        if bstatus[i] == B_DEFAULTED:
            dead[n_dead] = equity0[i]
            n_dead += 1
    sums[20] = psum(dead, 0, n_dead)
    sums[21] = psum(cash_lent, 0, cash_lent.shape[0])
    sums[22] = psum(cash_repaid, 0, cash_repaid.shape[0])
    sums[23] = psum(interest, 0, interest.shape[0])
    sums[24] = psum(cash_bought, 0, cash_bought.shape[0])
    sums[25] = psum(cash_sold, 0, cash_sold.shape[0])
    sums[26] = psum(funding, 0, funding.shape[0])
    return sums, out
