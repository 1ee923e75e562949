"""Phase 2 compiled: the borrowers' cash waterfall (:func:`sim.world.phases.borrowers.run`) as
one kernel call a month, :func:`waterfall` (its body :func:`waterfall_body`, which
:func:`waterfall_batch` calls for each run of a stack); and the borrowers' extra payments that
phases 3, 4 and 6 make (:func:`sim.world.phases.borrowers.prepay`) as one call each,
:func:`prepay`.

It replays, borrower by borrower and row by row, the numpy code of the phase and of the book
methods it calls: the contract renewals of ``BorrowerBook.update_contracts`` (whose uniform
draws the phase makes before the call, as the numpy code does), ``operating``,
:func:`sim.core.finance.scheduled_payment`, ``LoanBook.by_borrower``, the phase's
``sell_free_btc`` (``free_btc_sale``), ``draw_revolvers`` (``revolver_request``),
``LoanBook.pay`` (without a prepayment), ``count_arrears``, ``update_dscr``,
``repay_revolvers`` (``revolver_repayment``) and ``payouts``, with every operation in the
numpy code's order: sums over a row or a whole 1-D array (``np.add.reduce``, ``matvec``) are
:func:`sim.core.jit.psum` (a fleet row of fewer than 8 generations, which psum adds one by one
from 0.0, is added so in the borrower's loop, without a temporary), bincounts and scatters a
loop in row order from 0.0, minimum and
maximum numpy's (NaN and signed zeros), and each early return of the numpy code (nobody sells
coins, nobody is short, nobody asks the revolver, no revolver to repay) is taken where the
numpy code takes it, since adding +0.0 is not a no-op on -0.0. Steps the numpy code runs one
after the other over every borrower are fused into one loop over the borrowers where each
borrower's step reads only that borrower's results of the step before (the contracts and
``operating``; the shortfall and the coins sold; ``count_arrears`` and ``update_dscr``; the
revolver repayment and the payouts): the same operations on the same values, in the same
order within each sum.

Switches covered: all of them (the phase reads no policy switch); with sites
(``sites.enabled``: ``mining_share`` and ``site_income`` set) the mining revenue is mixed as
``operating`` mixes it. The one layout not covered is a loan book whose revolvers are not one
block of rows in borrower order, one per borrower (``LoanBook.revolver_block`` spanning all
borrowers), which the model's origination always makes when it has borrowers: a book without
borrowers or another layout (hand-built books in tests) runs the numpy code, and so does a BTC
price of 0 (which the environment never sets: it floors the price at 1e-9), where the kernel
could not divide as numpy does. :func:`prepay` covers every call with a 1-D float64 amount.
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import jitable, kernel, maximum, minimum, psum

HOURS = 730.0  # sim.core.environment.HOURS_PER_MONTH
DAYS = 365.0 / 12.0  # sim.core.environment.DAYS_PER_MONTH


# what waterfall raises where waterfall_body stops (a revolver request without a lead lender)
NO_LEAD = "a borrower without a lead lender asks its revolver"


@kernel
def waterfall(t, u_walk, p_walk, rent, hashprice, power_cost, util, btc_price,
              status, defaulted, fleet, contract_rent, contract_end, contract_months,
              tenant_gone, guaranteed, guarantee_cover, contracted_share, hashrate,
              mining_cost, fixed_opex, has_sites, mining_share, site_income,
              cash, btc, btc_pledged, call_months, payout_months, arrears_months, dscr,
              borrower, lender, principal, orig_amort, rate, maturity, active, accrued,
              overdue, rv0, lead, revolver_limit, lb_status, normal, lb_cash, revenue, opex):
    """Phase 2 of one run: :func:`waterfall_body`, raising ValueError(:data:`NO_LEAD`) where
    it stops. Returns its outside flows (the first five numbers)."""
    rev_sum, opex_sum, sold, btc_sum, out_sum, ok = waterfall_body(
        t, u_walk, p_walk, rent, hashprice, power_cost, util, btc_price, status, defaulted,
        fleet, contract_rent, contract_end, contract_months, tenant_gone, guaranteed,
        guarantee_cover, contracted_share, hashrate, mining_cost, fixed_opex, has_sites,
        mining_share, site_income, cash, btc, btc_pledged, call_months, payout_months,
        arrears_months, dscr, borrower, lender, principal, orig_amort, rate, maturity, active,
        accrued, overdue, rv0, lead, revolver_limit, lb_status, normal, lb_cash, revenue, opex)
    if not ok:
        raise ValueError(NO_LEAD)
    return rev_sum, opex_sum, sold, btc_sum, out_sum


@kernel
def waterfall_batch(runs, nb, nrow, nl, t, u_walk, p_walk, rent, hashprice, power_cost, util,
                    btc_price, status, defaulted, fleet, contract_rent, contract_end,
                    contract_months, tenant_gone, guaranteed, guarantee_cover,
                    contracted_share, hashrate, mining_cost, fixed_opex, has_sites,
                    mining_share, site_income, cash, btc, btc_pledged, call_months,
                    payout_months, arrears_months, dscr, borrower, lender, principal,
                    orig_amort, rate, maturity, active, accrued, overdue, rv0, lead,
                    revolver_limit, lb_status, normal, lb_cash, revenue, opex, rev_sum,
                    opex_sum, sold, btc_sum, out_sum, ok):
    """Phase 2 of the runs ``runs`` of a stack at once (the run axis, issue 19): each
    argument of :func:`waterfall_body` stacked with a leading run axis (numbers and switches
    as (R,) arrays), run r's arrays the leading corner of row r: its ``nb[r]`` borrowers,
    ``nrow[r]`` loan rows and ``nl[r]`` lenders (``rent`` and ``power_cost`` whole rows, the
    borrowers' (B, G) arrays all G columns). :func:`waterfall_body`'s six results of run r go
    to ``rev_sum[r]``, ``opex_sum[r]``, ``sold[r]``, ``btc_sum[r]``, ``out_sum[r]``,
    ``ok[r]``: a run whose body stops (``ok[r]`` False) does not stop the others. The same
    operations on each run's arrays as :func:`waterfall` on that run's, so each run's bits
    are its own."""
    for i in range(runs.shape[0]):
        r = runs[i]
        b, k, q = nb[r], nrow[r], nl[r]
        rev_sum[r], opex_sum[r], sold[r], btc_sum[r], out_sum[r], ok[r] = waterfall_body(
            t[r], u_walk[r, :b], p_walk[r], rent[r], hashprice[r], power_cost[r], util[r],
            btc_price[r], status[r, :b], defaulted[r], fleet[r, :b], contract_rent[r, :b],
            contract_end[r, :b], contract_months[r, :b], tenant_gone[r, :b],
            guaranteed[r, :b], guarantee_cover[r, :b], contracted_share[r, :b],
            hashrate[r, :b], mining_cost[r, :b], fixed_opex[r, :b], has_sites[r],
            mining_share[r, :b], site_income[r, :b],
            cash[r, :b], btc[r, :b], btc_pledged[r, :b], call_months[r, :b],
            payout_months[r, :b], arrears_months[r, :b], dscr[r, :b], borrower[r, :k],
            lender[r, :k], principal[r, :k], orig_amort[r, :k], rate[r, :k], maturity[r, :k],
            active[r, :k], accrued[r, :k], overdue[r, :k], rv0[r], lead[r, :b],
            revolver_limit[r, :b], lb_status[r, :q], normal[r], lb_cash[r, :q],
            revenue[r, :b], opex[r, :b])


@jitable
def waterfall_body(t, u_walk, p_walk, rent, hashprice, power_cost, util, btc_price,
                   status, defaulted, fleet, contract_rent, contract_end, contract_months,
                   tenant_gone, guaranteed, guarantee_cover, contracted_share, hashrate,
                   mining_cost, fixed_opex, has_sites, mining_share, site_income,
                   cash, btc, btc_pledged, call_months, payout_months, arrears_months, dscr,
                   borrower, lender, principal, orig_amort, rate, maturity, active, accrued,
                   overdue, rv0, lead, revolver_limit, lb_status, normal, lb_cash, revenue,
                   opex):
    """One month of phase 2 over the books' arrays (module docstring).

    Writes every result in place into the books' arrays: what the numpy code writes in place
    (``tenant_gone``, ``contract_rent``, ``contract_end``, ``cash``, ``btc``, ``principal``
    at the revolver rows, ``lb_cash``) and what it makes new and rebinds (``revenue``,
    ``opex``, ``accrued``, ``overdue``, ``principal``, ``arrears_months``, ``dscr``). A
    row's (a borrower's) old value is read only before its new one is written: the loan
    rows' after the debt service due and the revolver draws were computed from them, each
    borrower's arrears months and DSCR in that borrower's own step. ``rv0`` is the first
    revolver row (revolver k is row rv0 + k, borrower k's). Returns the month's outside
    flows as (sum of revenue, sum of opex, whether coins were sold, sum of their proceeds,
    sum of payouts), each summed as ``np.add.reduce`` sums, and True; or, where a borrower
    without a lead lender (``lead`` < 0) asks its revolver, stops there (nothing more
    written) and returns (0.0, 0.0, False, 0.0, 0.0, False)."""
    n = cash.shape[0]
    nrow = borrower.shape[0]
    nl = lb_cash.shape[0]
    g = rent.shape[0]

    # ---- update_contracts (tenants walk, lapsed contracts renew at the spot rent) and
    # operating (revenue and opex; cash += NOI), borrower by borrower: each reads only its
    # own contract. Below 8 generations psum is a plain sum from 0.0 in index order, which
    # the loop adds directly (no temporary)
    alive = np.empty(n, np.bool_)
    tmp = np.empty(g)
    tmp2 = np.empty(g)
    tmp3 = np.empty(g)
    noi = np.empty(n)
    short_sums = g < 8
    for i in range(n):
        alive[i] = status[i] != defaulted
        in_term = t < contract_end[i]
        walk = (u_walk[i] < p_walk) and in_term
        tenant_gone[i] = tenant_gone[i] or (walk and alive[i])
        if (not in_term) or (tenant_gone[i] and not guaranteed[i]):
            for j in range(g):
                contract_rent[i, j] = rent[j]
            contract_end[i] = t + contract_months[i]
            tenant_gone[i] = False

        in_term = t < contract_end[i]
        contracted = in_term and not tenant_gone[i]
        cover = guarantee_cover[i] if (tenant_gone[i] and guaranteed[i] and in_term) else 0.0
        locked_share = contracted_share[i] * (1.0 if contracted else cover)
        spot_share = 1.0 - contracted_share[i] * (1.0 if contracted else 0.0)
        units = 0
        if short_sums:
            locked = 0.0
            spot = 0.0
            power = 0.0
            for j in range(g):
                f = fleet[i, j]
                locked += f * contract_rent[i, j]
                spot += f * rent[j]
                power += f * power_cost[j]
                units += f
            locked = 0.0 + locked
            spot = 0.0 + spot
            power = 0.0 + power
        else:
            for j in range(g):
                f = fleet[i, j]
                tmp[j] = f * contract_rent[i, j]
                tmp2[j] = f * rent[j]
                tmp3[j] = f * power_cost[j]
                units += f
            locked = psum(tmp, 0, g)
            spot = psum(tmp2, 0, g)
            power = psum(tmp3, 0, g)
        gpu_rev = HOURS * (locked_share * locked + spot_share * util * spot)
        mining = hashrate[i] * maximum(hashprice - mining_cost[i], 0.0) * DAYS
        if has_sites:
            mining = mining * mining_share[i] + site_income[i]
        op = power + units * fixed_opex[i]
        revenue[i] = gpu_rev + mining if alive[i] else 0.0
        opex[i] = op if alive[i] else 0.0
        noi[i] = revenue[i] - opex[i]
        cash[i] += noi[i]
    rev_sum = psum(revenue, 0, n)
    opex_sum = psum(opex, 0, n)

    # ---- debt service due (scheduled_payment, the balloon at maturity), its sums per
    # borrower, and the scheduled (non-balloon) service of the DSCR, from the book as it
    # stands before any draw
    due_int = np.empty(nrow)
    due_prin = np.empty(nrow)
    owed = np.empty(nrow)
    due = np.zeros(n)
    sched = np.zeros(n)
    for r in range(nrow):
        p = principal[r]
        outstanding = p - overdue[r]
        interest = p * rate[r] / 12.0
        amort = minimum(p, orig_amort[r])
        before = t < maturity[r]
        amort = minimum(amort, outstanding) if before else outstanding
        due_int[r] = accrued[r] + interest if active[r] else 0.0
        due_prin[r] = overdue[r] + amort if active[r] else 0.0
        owed[r] = due_int[r] + due_prin[r]
        due[borrower[r]] += owed[r]
        sched[borrower[r]] += (interest + minimum(orig_amort[r], outstanding)
                               if (active[r] and before) else 0.0)
    # ---- the shortfall, and sell_free_btc: unpledged coins raise up to it
    short = np.empty(n)
    sell = np.empty(n)
    any_sell = False
    any_short = False
    for i in range(n):
        short[i] = maximum(due[i] - cash[i], 0.0) * (1.0 if alive[i] else 0.0)
        sell[i] = minimum(btc[i] - btc_pledged[i], short[i] / btc_price)
        if sell[i] != 0.0:
            any_sell = True
        if short[i] != 0.0:
            any_short = True
    btc_sum = 0.0
    if any_sell:
        any_short = False
        for i in range(n):
            btc[i] -= sell[i]
            sell[i] = sell[i] * btc_price  # the proceeds
            cash[i] += sell[i]
            short[i] = maximum(due[i] - cash[i], 0.0) * (1.0 if alive[i] else 0.0)
            if short[i] != 0.0:
                any_short = True
        btc_sum = psum(sell, 0, n)

    # ---- draw_revolvers: from the lead lender if sound, rationed to its cash
    if any_short:
        req = np.empty(n)
        any_req = False
        for i in range(n):
            room = maximum(revolver_limit[i] - principal[rv0 + i], 0.0)
            sound = lb_status[lead[i]] == normal
            req[i] = minimum(short[i], room) * (1.0 if sound else 0.0) \
                * (1.0 if alive[i] else 0.0)
            if req[i] != 0.0:
                any_req = True
        if any_req:
            for i in range(n):
                if lead[i] < 0:
                    return 0.0, 0.0, False, 0.0, 0.0, False
            req_l = np.zeros(nl)
            for i in range(n):
                req_l[lead[i]] += req[i]
            for k in range(nl):
                req_l[k] = maximum(lb_cash[k], 0.0) / req_l[k] if req_l[k] > 0 else 1.0
            drawn_l = np.zeros(nl)
            for i in range(n):
                draw = req[i] * minimum(req_l[lead[i]], 1.0)
                principal[rv0 + i] += draw
                cash[i] += draw
                drawn_l[lead[i]] += draw
            for k in range(nl):
                lb_cash[k] -= drawn_l[k]

    # ---- pay what cash pays, pro rata, interest first (LoanBook.pay without prepayment)
    frac = np.empty(n)
    for i in range(n):
        pay = minimum(maximum(cash[i], 0.0), due[i])
        f = pay / due[i] if due[i] > 0 else 0.0
        frac[i] = minimum(f, 1.0)
        cash[i] -= pay
    paid_l = np.zeros(nl)
    arrears = np.zeros(n)
    for r in range(nrow):
        paid = frac[borrower[r]] * owed[r]
        int_paid = minimum(paid, due_int[r])
        prin_paid = paid - int_paid
        accrued[r] = due_int[r] - int_paid
        overdue[r] = due_prin[r] - prin_paid
        principal[r] = principal[r] - prin_paid
        paid_l[lender[r]] += paid
        arrears[borrower[r]] += accrued[r] + overdue[r]
    for k in range(nl):
        lb_cash[k] += paid_l[k]

    # ---- count_arrears and update_dscr; whether any revolver is left to repay
    any_sel = False
    for i in range(n):
        late = arrears[i] > 1.0 and alive[i]
        arrears_months[i] = arrears_months[i] + 1 if late else 0
        ratio = noi[i] / sched[i] if sched[i] > 0 else 10.0
        clipped = minimum(maximum(ratio, -10.0), 10.0)
        dscr[i] = 0.5 * dscr[i] + 0.5 * clipped if alive[i] else dscr[i]
        if active[rv0 + i] and principal[rv0 + i] > 0:
            any_sel = True

    # ---- repay_revolvers (cash above three months of opex), then payouts above the
    # buffer, borrower by borrower (each reads only its own cash)
    rep_l = np.zeros(nl)
    out = np.empty(n)
    for i in range(n):
        if any_sel:
            r = rv0 + i
            rep = 0.0
            if active[r] and principal[r] > 0:
                spare = maximum(cash[i] - 3.0 * opex[i], 0.0)
                rep = maximum(minimum(spare, principal[r] - overdue[r]), 0.0)
            principal[r] -= rep
            cash[i] -= rep
            rep_l[lender[r]] += rep
        keep = payout_months[i] * (opex[i] + due[i])
        out[i] = maximum(cash[i] - keep, 0.0) if (alive[i] and call_months[i] < 0) else 0.0
        cash[i] -= out[i]
    if any_sel:
        for k in range(nl):
            lb_cash[k] += rep_l[k]
    return rev_sum, opex_sum, any_sell, btc_sum, psum(out, 0, n), True


@jitable
def prepay_rows(amount, borrower, lender, principal, accrued, overdue, cash, lb_cash,
                accrued_new, overdue_new, principal_new):
    """:func:`sim.world.phases.borrowers.prepay` over the books' arrays: ``LoanBook.pay``
    with ``due_int`` = ``accrued``, ``due_prin`` = ``overdue`` and ``prepay`` = ``principal``
    (arrears first, pro rata over a borrower's rows, interest before principal; then up to
    ``principal - overdue`` of each row prepaid pro rata), its skip of the first stage when no
    borrower that pays owes anything (every ``frac`` 0, NaN counting as nonzero), then
    ``cash -= paid`` per borrower and ``lb_cash += paid`` per lender (bincounts, in row order
    from 0.0).

    Fills ``principal_new`` always and ``accrued_new``, ``overdue_new`` when the first stage
    runs; returns whether it ran (the numpy code rebinds ``accrued`` and ``overdue`` only
    then; ``principal`` always). ``amount`` is per borrower. Each ``*_new`` array may be its
    input array itself (the book written in place): a row's old values are read only before
    its new ones are written (the prepayment's cap min(principal, principal_new - overdue),
    which reads both, is taken in the same row's step)."""
    nb = amount.shape[0]
    nrow = borrower.shape[0]
    owed = np.empty(nrow)
    owed_b = np.zeros(nb)
    for r in range(nrow):
        owed[r] = accrued[r] + overdue[r]
        owed_b[borrower[r]] += owed[r]
    frac = np.empty(nb)
    first = False
    for i in range(nb):
        frac[i] = amount[i] / owed_b[i] if owed_b[i] > 0 else 0.0
        if frac[i] != 0.0:
            first = True
    paid = np.zeros(nrow)
    spare = np.empty(nb)
    cap = np.empty(nrow)
    cap_b = np.zeros(nb)
    if first:
        for i in range(nb):
            frac[i] = minimum(frac[i], 1.0)
        paid_b = np.zeros(nb)
        for r in range(nrow):
            p = frac[borrower[r]] * owed[r]
            int_paid = minimum(p, accrued[r])
            prin_paid = p - int_paid
            before = principal[r]
            accrued_new[r] = accrued[r] - int_paid
            overdue_new[r] = overdue[r] - prin_paid
            principal_new[r] = before - prin_paid
            paid[r] = p
            paid_b[borrower[r]] += p
            cap[r] = maximum(minimum(before, principal_new[r] - overdue_new[r]), 0.0)
            cap_b[borrower[r]] += cap[r]
        for i in range(nb):
            spare[i] = maximum(amount[i] - paid_b[i], 0.0)
    else:
        for i in range(nb):
            spare[i] = maximum(amount[i], 0.0)
        for r in range(nrow):
            principal_new[r] = principal[r]
            cap[r] = maximum(minimum(principal[r], principal_new[r] - overdue[r]), 0.0)
            cap_b[borrower[r]] += cap[r]
    for i in range(nb):
        pf = spare[i] / cap_b[i] if cap_b[i] > 0 else 0.0
        spare[i] = minimum(pf, 1.0)
    cash_b = np.zeros(nb)
    cash_l = np.zeros(lb_cash.shape[0])
    for r in range(nrow):
        extra = spare[borrower[r]] * cap[r]
        principal_new[r] = principal_new[r] - extra
        got = paid[r] + extra if first else extra
        cash_b[borrower[r]] += got
        cash_l[lender[r]] += got
    for i in range(nb):
        cash[i] -= cash_b[i]
    for k in range(lb_cash.shape[0]):
        lb_cash[k] += cash_l[k]
    return first


@kernel
def sweep_batch(runs, n_loans, proceeds, cash, amount, borrower, lender, principal, accrued,
                overdue, lb_cash):
    """The sale-proceeds sweep (:func:`sim.world.phases.market.sweep_sale_proceeds` on the
    compiled engine) of the runs ``runs`` of a stack at once (the run axis, issue 19): each
    argument stacked with a leading run axis, run r's the row r, its loan book the first
    ``n_loans[r]`` entries of its rows. A run whose sale proceeds are all zero (no nonzero
    entry: ``np.count_nonzero``'s test, NaN counting) is left as it is; else the amount
    swept, ``np.minimum(proceeds, np.maximum(cash, 0.0))``, into the scratch ``amount[r]``,
    and its prepayment by :func:`prepay_rows` in place, as :func:`prepay` does for one run."""
    for i in range(runs.shape[0]):
        r = runs[i]
        p = proceeds[r]
        nb = p.shape[0]
        swept = False
        for j in range(nb):
            if p[j] != 0.0:
                swept = True
                break
        if not swept:
            continue
        c, a = cash[r], amount[r]
        for j in range(nb):
            a[j] = minimum(p[j], maximum(c[j], 0.0))
        n = n_loans[r]
        prepay_rows(a, borrower[r, :n], lender[r, :n], principal[r, :n], accrued[r, :n],
                    overdue[r, :n], c, lb_cash[r], accrued[r, :n], overdue[r, :n],
                    principal[r, :n])


@kernel
def prepay(amount, borrower, lender, principal, accrued, overdue, cash, lb_cash):
    """:func:`prepay_rows` as a kernel, writing the loan book's ``principal``, ``accrued``
    and ``overdue`` in place (phases 3, 4 and 6 call the phase's ``prepay``); returns
    whether the first stage ran."""
    return prepay_rows(amount, borrower, lender, principal, accrued, overdue, cash, lb_cash,
                       accrued, overdue, principal)
