"""Phase 4 compiled: the defaults (:func:`sim.world.phases.defaults.run`) as at most two kernel
calls a month: :func:`any_trigger` (the common month, nobody triggered, ends there; for the
runs of a stack at once :func:`any_trigger_batch`) and
:func:`defaults_month` (the month some borrower is late, past its cure or in a DSCR breach
past its sweep).

:func:`defaults_month` replays the numpy code of the phase and of what it calls, borrower by
borrower and row by row: :meth:`agents.borrower.BorrowerBook.default_triggers`, the phase's
``accelerate`` (``LoanBook.exposure`` and ``by_borrower``, the coins sold for what cash lacks,
:func:`sim.world.phases.borrowers.prepay` through :func:`sim.world.kernels.lenders.
prepay_in_place`, and :func:`sim.world.phases.lenders.collateral` when pledged coins were sold),
``defaulting`` (its void facilities included), :func:`sim.world.phases.lenders.
month_debt_coll` (phase 3's cached debt and collateral, the debt recomputed when it moved),
``repossess`` (:func:`sim.core.finance.largest_remainder` per (facility, generation) and
:meth:`agents.lender.LenderBook.add_inventory`), ``seize`` and ``close_out``. Every operation
is the numpy code's, in its order: whole-array sums (``ndarray.sum``, ``np.add.reduce``) over
the defaulted borrowers or their rows, and along a fleet row, are :func:`sim.core.jit.psum` of
a temporary holding the same terms; bincounts and fancy-index scatters are loops in index
order from 0.0; ``np.maximum`` / ``np.minimum`` are :func:`sim.core.jit.maximum` /
:func:`~sim.core.jit.minimum`; the division by the BTC price is numba's ``np.divide``
(numpy's bits at a zero price). The largest-remainder ranking (numpy's ``lexsort`` by group,
then remainder descending, then row) is a count of the members ranked ahead in each group.

Switches covered: every switch phase 4 reads (``lenders.grace_months``, ``cure_months``,
``dscr_default_months`` including 0, the outside demand's repossession value
(``note_repossession``, in the kernel right after the inventory is updated) and sites
(``SiteBook.repossess``, at the end of the kernel: it reads none of what the rest writes)).
The one case left to numpy is a month whose phase 3 did not evaluate the collateral
(``month.coll`` None: a phase run on its own), where ``month_debt_coll`` would value it
afresh.

One difference from the numpy code, at a state the books never reach: a facility whose
exposure sums to NaN is dropped here as a void one (its call cured); the numpy code drops it
from the defaults but keeps it triggered, and then indexes its rows with a stale position.

Resident state (issue 19): the kernel writes every array in place, those the numpy code
rebinds included (``loans.principal`` at an accelerated payoff, ``loans.accrued`` and
``loans.overdue`` when that payoff first pays arrears, ``borrowers.btc_pledged`` when coins
are sold for it, the month's debt and collateral, ``model.rep_value`` and
``model.new_defaults``): an element is written only after all that its new value or a later
one needs of the old values has been read (its own old value, sums taken before the loop that
writes), so each array ends with the values of numpy's new array. The rest is updated in
place as numpy updates it.
"""

from __future__ import annotations

import numpy as np

from agents.borrower import BorrowerStatus
from sim.core.jit import jitable, kernel, maximum, minimum, psum
from sim.world.kernels.lenders import collateral_into, prepay_in_place

DEFAULTED = int(BorrowerStatus.DEFAULTED)
# reason codes of the default events (index into the phase's names)
PAYMENT, COVENANT, DSCR = 0, 1, 2


@kernel
def any_trigger(grace, cure, dm, status, arrears_months, call_months, dscr_breach):
    """Whether any living borrower is late past ``grace``, under a call open past ``cure``
    or (``dm`` > 0) in a DSCR breach open past ``cure + dm``: else phase 4 does nothing
    (:func:`trigger_body`)."""
    return trigger_body(grace, cure, dm, status, arrears_months, call_months, dscr_breach)


@kernel
def any_trigger_batch(runs, grace, cure, dm, status, arrears_months, call_months, dscr_breach,
                      out):
    """:func:`any_trigger` for the runs ``runs`` of a stack at once (the run axis, issue 19):
    each argument stacked with a leading run axis (the numbers as (R,) arrays), run r's the
    row r; run r's answer goes to ``out[r]``."""
    for i in range(runs.shape[0]):
        r = runs[i]
        out[r] = trigger_body(grace[r], cure[r], dm[r], status[r], arrears_months[r],
                              call_months[r], dscr_breach[r])


@jitable
def trigger_body(grace, cure, dm, status, arrears_months, call_months, dscr_breach):
    """:func:`any_trigger`'s test of one run."""
    for i in range(status.shape[0]):
        if status[i] == DEFAULTED:
            continue
        if arrears_months[i] > grace or call_months[i] > cure:
            return True
        if dm and dscr_breach[i] > cure + dm:
            return True
    return False


@jitable
def exposure_by_borrower(borrower, principal, accrued, active, out):
    """``LoanBook.by_borrower(LoanBook.exposure)`` into ``out`` (a bincount: row order from
    0.0)."""
    for i in range(out.shape[0]):
        out[i] = 0.0
    for r in range(borrower.shape[0]):
        out[borrower[r]] += principal[r] + accrued[r] if active[r] else 0.0


@kernel
def defaults_month(grace, cure, dm, status, arrears_months, call_months, dscr_breach, kind,
                   cash, btc, btc_pledged, fleet, btc_price, lead, marks,
                   borrower, lender, principal, accrued, overdue, active,
                   inventory, inv_since, lb_cash, writeoffs, recoveries, claim_pool, t,
                   month_debt, have_debt, month_coll,
                   dead, reason, ev_amt, ev_price, acc_idx, acc_amt,
                   rep_l, rep_g, rep_u, new_units, new_defaults,
                   outside_on, rep_value, fundamental,
                   has_sites, s_holder, s_lender, s_since, s_gpu_mw, s_mine_mw, s_host_mw,
                   s_lender_code):
    """One month of phase 4 over the books' arrays (module docstring), written in place.

    ``month_debt`` and ``month_coll`` are the month's debt and collateral (the resident
    arrays of :func:`sim.world.phases.lenders.hand_over_arrays`); ``have_debt``: whether
    ``month_debt`` holds this month's debt (``month.debt`` is not None). The debt is
    recomputed into ``month_debt`` when it moved and a default needs it, and the collateral
    re-evaluated in ``month_coll`` when an accelerated payoff sold pledged coins.

    Fills, for the caller's events: ``acc_idx``/``acc_amt`` (``loan_accelerated_repaid``),
    ``rep_l``/``rep_g``/``rep_u`` (``repossession``: lender, generation, units, by generation
    then row), ``dead``/``reason``/``ev_amt``/``ev_price`` (the default events); and
    ``new_units`` (lender x generation repossessed). When some borrower defaults, writes the
    defaults by kind into ``new_defaults`` (``model.new_defaults``) and, with
    ``outside_on``, ``note_repossession``'s update into ``rep_value`` (``model.rep_value``).
    With ``has_sites``, the defaulted borrowers' sites are repossessed as ``SiteBook.
    repossess`` does (``s_*``: the site book's arrays, updated in place; ``s_lender_code``:
    ``agents.sites.LENDER``).

    Returns (n_acc, acc_sold, acc_btc_sales, pledged_sold, arrears_paid, n_dead,
    debt_computed, n_rep, btc_sales, unpaid_sum, ead_sum, rec_sum, paper_sum, site_mw,
    mine_mw): the payoffs, whether they sold coins and the proceeds' sum, whether they sold
    pledged coins (the collateral re-evaluated) and paid arrears first (pay()'s two-stage
    branch; these two the phase does not need, its tests count the branches by them), the
    defaults, whether the month's debt was recomputed into ``month_debt`` (then
    ``month.debt`` is that array again), the repossession events, the sums the numpy code
    adds to the outside flows and the model's totals (the unpaid bills' sum before its
    negation) and, with sites, the sums of the defaulted borrowers' data-hall and
    mining-hall MW (``SiteBook.repossess``' additions to ``repossessed_mw`` and
    ``estate_mw``; 0.0 without sites)."""
    nb = status.shape[0]
    nrow = borrower.shape[0]
    nl = lb_cash.shape[0]
    g = fleet.shape[1]

    # ---- default_triggers
    trig = np.empty(nb, np.bool_)
    dd = np.zeros(nb, np.bool_)
    any_dd = False
    for i in range(nb):
        alive = status[i] != DEFAULTED
        trig[i] = alive and (arrears_months[i] > grace or call_months[i] > cure)
        if dm:
            dd[i] = alive and dscr_breach[i] > cure + dm and not trig[i]
            any_dd = any_dd or dd[i]

    # ---- accelerate: the called facilities that cash and coins pay off
    n_acc = 0
    acc_sold = False
    acc_btc = 0.0
    pledged_sold = False
    arrears_paid = False
    if any_dd:
        debt_a = np.empty(nb)
        exposure_by_borrower(borrower, principal, accrued, active, debt_a)
        pays = np.empty(nb, np.bool_)
        for i in range(nb):
            pays[i] = dd[i] and (maximum(cash[i], 0.0) + btc[i] * btc_price >= debt_a[i])
            if pays[i]:
                acc_idx[n_acc] = i
                acc_amt[n_acc] = debt_a[i]
                n_acc += 1
        if n_acc:
            sell = np.empty(nb)
            for i in range(nb):
                sell[i] = minimum(btc[i], np.divide(maximum(debt_a[i] - cash[i], 0.0),
                                                    btc_price)) if pays[i] else 0.0
                if sell[i] != 0.0:
                    acc_sold = True
            if acc_sold:
                for i in range(nb):
                    btc[i] -= sell[i]
                for i in range(nb):
                    if btc[i] < btc_pledged[i]:
                        pledged_sold = True
                    btc_pledged[i] = minimum(btc_pledged[i], btc[i])
                for i in range(nb):
                    sell[i] = sell[i] * btc_price
                    cash[i] += sell[i]
                acc_btc = psum(sell, 0, nb)
            amount = np.empty(nb)
            for i in range(nb):
                amount[i] = minimum(debt_a[i], cash[i]) if pays[i] else 0.0
            arrears_paid = prepay_in_place(amount, borrower, lender, principal, accrued,
                                           overdue, cash, lb_cash)
            have_debt = False  # month.debt = None: the debt moved
            if pledged_sold:  # re-evaluated as phase 3 did (it reads no collateral)
                collateral_into(marks, lead, fleet, btc_pledged, btc_price, month_coll)
            for i in range(nb):
                if pays[i]:
                    dscr_breach[i] = 0
                    dd[i] = False
        for i in range(nb):
            trig[i] = trig[i] or dd[i]

    # ---- defaulting: the dead, their facilities' rows and EADs; void facilities dropped
    pos = np.full(nb, -1, np.int64)
    n_dead = 0
    for i in range(nb):
        if trig[i]:
            pos[i] = n_dead
            n_dead += 1
    if n_dead == 0:
        return (n_acc, acc_sold, acc_btc, pledged_sold, arrears_paid, 0, False, 0, 0.0, 0.0,
                0.0, 0.0, 0.0, 0.0, 0.0)
    ead_b = np.zeros(n_dead)
    for r in range(nrow):
        if active[r] and trig[borrower[r]]:
            ead_b[pos[borrower[r]]] += principal[r] + accrued[r] if active[r] else 0.0
    void = False
    for i in range(nb):
        if trig[i] and not ead_b[pos[i]] > 0.0:
            call_months[i] = -1
            trig[i] = False
            void = True
    if void:
        n_dead = 0
        for i in range(nb):
            pos[i] = -1
            if trig[i]:
                pos[i] = n_dead
                n_dead += 1
        if n_dead == 0:
            return (n_acc, acc_sold, acc_btc, pledged_sold, arrears_paid, 0, False, 0, 0.0,
                    0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ead_b = np.zeros(n_dead)
        for r in range(nrow):
            if active[r] and trig[borrower[r]]:
                ead_b[pos[borrower[r]]] += principal[r] + accrued[r]
    for i in range(nb):
        if trig[i]:
            d = pos[i]
            dead[d] = i
            reason[d] = DSCR if dd[i] else (PAYMENT if arrears_months[i] > grace
                                            else COVENANT)
    nr = 0
    for r in range(nrow):
        if active[r] and trig[borrower[r]]:
            nr += 1
    rows = np.empty(nr, np.int64)
    ead = np.empty(nr)
    group = np.empty(nr, np.int64)
    j = 0
    for r in range(nrow):
        if active[r] and trig[borrower[r]]:
            rows[j] = r
            ead[j] = principal[r] + accrued[r]
            group[j] = pos[borrower[r]]
            j += 1

    # ---- month_debt_coll: phase 3's debt unless it moved (then recomputed, and cached)
    debt_computed = False
    if not have_debt:
        exposure_by_borrower(borrower, principal, accrued, active, month_debt)
        debt_computed = True

    # ---- repossess: largest remainder per (facility, generation), members in row order
    neg = False
    for jj in range(nr):
        if not ead[jj] >= 0.0:
            neg = True
    w = np.empty(nr)
    for jj in range(nr):
        w[jj] = (ead[jj] if ead[jj] > 0.0 else 0.0) if neg else ead[jj]
    wsum = np.zeros(n_dead)
    for jj in range(nr):
        wsum[group[jj]] += w[jj]
    # every facility left has ead_b > 0, so a positive row and wsum > 0: largest_remainder's
    # branch for a group without weight is never taken here
    cnt = np.zeros(n_dead + 1, np.int64)
    for jj in range(nr):
        cnt[group[jj] + 1] += 1
    for d in range(n_dead):
        cnt[d + 1] += cnt[d]
    members = np.empty(nr, np.int64)
    fill = cnt[:n_dead].copy()
    for jj in range(nr):
        members[fill[group[jj]]] = jj
        fill[group[jj]] += 1
    units = np.zeros((nr, g), np.int64)
    quota = np.empty(nr)
    rem = np.empty(nr)
    base = np.empty(nr, np.int64)
    for d in range(n_dead):
        lo, hi = cnt[d], cnt[d + 1]
        for k in range(g):
            total = fleet[dead[d], k]
            left = total
            for q in range(lo, hi):
                jj = members[q]
                quota[jj] = (total * w[jj]) / wsum[d] if wsum[d] > 0 else 0.0
                base[jj] = np.int64(np.floor(quota[jj] + 1e-9))
                left -= base[jj]
                rem[jj] = quota[jj] - base[jj]
            for q in range(lo, hi):
                jj = members[q]
                rank = 0
                for q2 in range(lo, hi):
                    j2 = members[q2]
                    if rem[j2] > rem[jj] or (rem[j2] == rem[jj] and j2 < jj):
                        rank += 1
                units[jj, k] = base[jj] + (1 if rank < left else 0)
    holder = np.empty(nr, np.int64)
    for jj in range(nr):
        holder[jj] = lender[rows[jj]]
    for li in range(nl):
        for k in range(g):
            new_units[li, k] = 0
    for jj in range(nr):
        for k in range(g):
            new_units[holder[jj], k] += units[jj, k]
    for li in range(nl):
        for k in range(g):
            if inventory[li, k] == 0 and new_units[li, k] > 0:
                inv_since[li, k] = t
            inventory[li, k] += new_units[li, k]
    if outside_on:  # note_repossession, at the inventory just updated (in place)
        for li in range(nl):
            for k in range(g):
                u = new_units[li, k]
                if u > 0:
                    rep_value[li, k] = np.divide(
                        rep_value[li, k] * (inventory[li, k] - u) + u * fundamental[k],
                        float(inventory[li, k]))
    n_rep = 0
    for k in range(g):
        for jj in range(nr):
            if units[jj, k] != 0:
                rep_l[n_rep] = holder[jj]
                rep_g[n_rep] = k
                rep_u[n_rep] = units[jj, k]
                n_rep += 1

    # ---- seize: coins sold, cash up to the EAD, unpaid bills lost; write-offs, recoveries
    tmp = np.empty(n_dead)
    for d in range(n_dead):
        tmp[d] = btc[dead[d]] * btc_price
    btc_sales = psum(tmp, 0, n_dead)
    seized = np.empty(n_dead)
    for d in range(n_dead):
        i = dead[d]
        cash[i] += tmp[d]
        btc[i] = 0.0
        btc_pledged[i] = 0.0
        seized[d] = minimum(maximum(cash[i], 0.0), ead_b[d])
        cash[i] -= seized[d]
        tmp[d] = minimum(cash[i], 0.0)  # unpaid
        cash[i] -= tmp[d]
    unpaid_sum = psum(tmp, 0, n_dead)
    rec = np.empty(nr)
    rec_l = np.zeros(nl)
    wo_l = np.zeros(nl)
    pool_l = np.zeros(nl)
    for jj in range(nr):
        eb = ead_b[group[jj]]
        rec[jj] = seized[group[jj]] * (ead[jj] / eb if eb > 0 else 0.0)
        rec_l[holder[jj]] += rec[jj]
    for jj in range(nr):
        wo_l[holder[jj]] += ead[jj]
    for jj in range(nr):
        pool_l[holder[jj]] += ead[jj] - rec[jj]
    for li in range(nl):
        lb_cash[li] += rec_l[li]
        writeoffs[li] += wo_l[li]
        recoveries[li] += rec_l[li]
        claim_pool[li] += pool_l[li]
    ead_sum = psum(ead, 0, nr)
    rec_sum = psum(rec, 0, nr)
    for d in range(n_dead):
        i = dead[d]
        ev_amt[d] = month_debt[i]
        ev_price[d] = month_coll[i]
        tmp[d] = minimum(month_coll[i], month_debt[i])
    paper_sum = psum(tmp, 0, n_dead)

    # ---- close_out
    for jj in range(nr):
        r = rows[jj]
        principal[r] = 0.0
        accrued[r] = 0.0
        overdue[r] = 0.0
        active[r] = False
    new_defaults[0] = 0
    new_defaults[1] = 0
    for d in range(n_dead):
        i = dead[d]
        for k in range(g):
            fleet[i, k] = 0
        status[i] = DEFAULTED
        call_months[i] = -1
        new_defaults[kind[i]] += 1

    # ---- SiteBook.repossess: the lead lender takes the data hall, the estate the mining hall
    site_mw = 0.0
    mine_mw = 0.0
    if has_sites:
        for d in range(n_dead):
            i = dead[d]
            s_holder[i] = s_lender_code
            s_lender[i] = lead[i]
            s_since[i] = t
        for d in range(n_dead):
            tmp[d] = s_gpu_mw[dead[d]]
        site_mw = psum(tmp, 0, n_dead)
        for d in range(n_dead):
            tmp[d] = s_mine_mw[dead[d]]
        mine_mw = psum(tmp, 0, n_dead)
        for d in range(n_dead):
            s_host_mw[dead[d]] = 0.0
    return (n_acc, acc_sold, acc_btc, pledged_sold, arrears_paid, n_dead, debt_computed, n_rep,
            btc_sales, unpaid_sum, ead_sum, rec_sum, paper_sum, site_mw, mine_mw)
