"""Phase 3, the lenders, as one compiled kernel (:func:`lenders_month`): collateral marks,
collateral, LTV, margin calls and their payments, DSCR breaches and cash sweeps, rollovers.
Its body is the jitable :func:`lenders_body`, which :func:`lenders_month` calls for one run and
:func:`lenders_batch` for the runs of a stack (:func:`sim.world.phases.lenders.run_batch`),
row by row.

It is :func:`sim.world.phases.lenders.run` with the lender, borrower and loan rules it calls
inlined: :meth:`agents.lender.LenderBook.marks` (filling the lender book's own table in place
as it does, :meth:`~agents.lender.LenderBook.marks_table`),
:meth:`~agents.borrower.BorrowerBook.new_margin_calls`,
:meth:`~agents.borrower.BorrowerBook.free_btc_sale` (:func:`sim.world.phases.borrowers.
sell_free_btc`), :func:`sim.world.phases.borrowers.prepay` (:meth:`sim.core.finance.LoanBook.
pay` with a prepayment, both of its branches), :meth:`~agents.borrower.BorrowerBook.
call_months_after`, :meth:`~agents.borrower.BorrowerBook.dscr_breach_after` and
:meth:`agents.lender.LenderBook.rolls_over`. Each step gives the numpy code's bits: the same
operations in the same order per element, ``np.add.reduce`` along a fleet row as :func:`sim.core.
jit.psum`, along the months of the price history and every ``np.bincount`` as a loop in index
order (from the first row, from 0.0), ``np.maximum`` / ``np.minimum`` as :func:`sim.core.jit.
maximum` / :func:`~sim.core.jit.minimum`, the division by the BTC price as numba's
``np.divide`` (numpy's +-inf and NaN at a zero price).

Switches covered: all that phase 3 reads. Without covenant scaling (``borrowers.cov_scale`` is
None) the phase passes a scale of ones: ``level * 1.0`` is ``level`` to the bit, so the
covenants, cures and refinancing limits are the unscaled ones. The phase touches neither the
repo desk, the buyer of last resort, sites, the outside demand nor the market mode, so none of
them falls back to numpy.

Resident state (issue 19): the kernel writes every book array in place, those the numpy code
rebinds included (``loans.principal`` at every prepayment, ``loans.accrued`` and
``loans.overdue`` at a prepayment that first pays arrears, ``borrowers.call_months`` when a
call is open, ``borrowers.dscr_breach`` every month): an element is written only after all
that its new value or a later one needs of the old values has been read (its own old value,
and sums over a borrower's rows taken before the loop that writes them), so the array ends
with the values numpy's new array holds. It
also updates in place what the numpy code updates in place (borrower and lender cash, borrower
BTC, the rolled rows' maturity, instalment and rate, the lender book's marks table), and fills
the month's marks, collateral and debt into the caller's arrays (resident too).
"""

from __future__ import annotations

import numpy as np

from agents.borrower import BorrowerStatus
from agents.lender import ACCOUNTING_LIFE_MONTHS, LenderStatus
from sim.core.jit import jitable, kernel, maximum, minimum, psum

_DEFAULTED = int(BorrowerStatus.DEFAULTED)
_NORMAL = int(LenderStatus.NORMAL)
# call_months_after's slack on the cure (agents.borrower.BorrowerBook.call_months_after)
_CURE_SLACK = 1.0 + 1e-12


@jitable
def _marks(table, stale, new_unit_price, age, price_hist, t, lag, mark_rule, marks):
    """:meth:`agents.lender.LenderBook.marks` at month ``t`` >= 0: the book row of ``table``
    (if ``stale``) = new-unit price x clip(1 - max(age, 0) / 72, 0, 1); the appraisal row = the
    mean of price_hist over the last ``lag`` months (np.add.reduce along axis 0: row by row
    from the window's first row, then divided by its length); the market row = price_hist[t].
    Writes table[mark_rule] into ``marks`` (lender x generation)."""
    g = table.shape[1]
    if stale:
        for k in range(g):
            a = age[k] if age[k] > 0 else 0
            # np.clip(x, 0, 1) = min(max(x, 0), 1) here: x is never NaN (ages are integers)
            table[0, k] = new_unit_price[k] * minimum(
                maximum(1.0 - a / ACCOUNTING_LIFE_MONTHS, 0.0), 1.0)
    lo = max(0, t - lag + 1)
    for k in range(g):
        s = price_hist[lo, k]
        for r in range(lo + 1, t + 1):
            s += price_hist[r, k]
        table[1, k] = s / (t + 1 - lo)
        table[2, k] = price_hist[t, k]
    for i in range(mark_rule.shape[0]):
        for k in range(g):
            marks[i, k] = table[mark_rule[i], k]


@jitable
def collateral_into(marks, lead, fleet, pledged, btc_price, coll):
    """:func:`sim.world.phases.lenders.collateral` into ``coll``: each fleet row times the
    lead lender's marks (row ``max(lead, 0)``), summed as numpy sums along the last axis
    (pairwise), plus pledged BTC x price (also phase 4's, :mod:`sim.world.kernels.defaults`)."""
    nb, g = fleet.shape
    row = np.empty(g)
    for i in range(nb):
        li = lead[i] if lead[i] > 0 else 0
        for k in range(g):
            row[k] = fleet[i, k] * marks[li, k]
        coll[i] = psum(row, 0, g) + pledged[i] * btc_price


@jitable
def _debt_ltv(borrower, active, principal, accrued, coll, debt, ltv):
    """:func:`sim.world.phases.lenders.facility_ltv` at a given collateral: debt = bincount
    of the exposure (principal + accrued on active rows, else 0.0) from 0.0 in row order; LTV =
    debt / collateral where the collateral is positive, else inf (debt > 0) or 0.0."""
    debt[:] = 0.0
    for r in range(borrower.shape[0]):
        debt[borrower[r]] += (principal[r] + accrued[r]) if active[r] else 0.0
    for i in range(debt.shape[0]):
        c, d = coll[i], debt[i]
        if c > 0.0:
            ltv[i] = d / c
        else:
            ltv[i] = np.inf if d > 0.0 else 0.0


@jitable
def prepay_in_place(amount, borrower, lender, principal, accrued, overdue, cash, l_cash):
    """:func:`sim.world.phases.borrowers.prepay` (``LoanBook.pay(amount, accrued, overdue,
    prepay=principal)``, then the cash moves), on the loan arrays in place: a row's new
    principal, accrued and overdue are computed from its own old values and from sums over
    the borrower's rows taken before the loop that writes them (also phase 4's,
    :mod:`sim.world.kernels.defaults`). Returns whether pay() took its two-stage branch (where
    numpy rebinds ``accrued`` and ``overdue``)."""
    nb, nl, n = amount.shape[0], l_cash.shape[0], borrower.shape[0]
    owed_b = np.zeros(nb)
    for r in range(n):
        owed_b[borrower[r]] += accrued[r] + overdue[r]
    frac = np.zeros(nb)
    two_stage = False
    for i in range(nb):
        if owed_b[i] > 0.0:
            frac[i] = amount[i] / owed_b[i]
            if frac[i] != 0.0:  # np.count_nonzero: NaN counts
                two_stage = True
    cap = np.empty(n)
    paid = np.zeros(n)
    spare = np.empty(nb)
    if two_stage:
        paid_b = np.zeros(nb)
        for r in range(n):
            p = minimum(frac[borrower[r]], 1.0) * (accrued[r] + overdue[r])
            int_paid = minimum(p, accrued[r])
            prin_paid = p - int_paid
            accrued[r] = accrued[r] - int_paid
            overdue[r] = overdue[r] - prin_paid
            before = principal[r]  # pay()'s ``prepay`` argument: the principal it was given
            principal[r] = before - prin_paid
            cap[r] = maximum(minimum(before, principal[r] - overdue[r]), 0.0)
            paid[r] = p
            paid_b[borrower[r]] += p
        for i in range(nb):
            spare[i] = maximum(amount[i] - paid_b[i], 0.0)
    else:
        for i in range(nb):
            spare[i] = maximum(amount[i], 0.0)
        for r in range(n):
            cap[r] = maximum(minimum(principal[r], principal[r] - overdue[r]), 0.0)
    cap_b = np.zeros(nb)
    for r in range(n):
        cap_b[borrower[r]] += cap[r]
    pf = np.zeros(nb)
    for i in range(nb):
        if cap_b[i] > 0.0:  # else 0.0 (np.divide's out), and min(0.0, 1.0) is 0.0
            pf[i] = minimum(spare[i] / cap_b[i], 1.0)
    out_b = np.zeros(nb)
    out_l = np.zeros(nl)
    for r in range(n):
        extra = pf[borrower[r]] * cap[r]
        principal[r] = principal[r] - extra
        total = paid[r] + extra if two_stage else extra
        out_b[borrower[r]] += total
        out_l[lender[r]] += total
    for i in range(nb):
        cash[i] -= out_b[i]
    for j in range(nl):
        l_cash[j] += out_l[j]
    return two_stage


@kernel
def lenders_month(table, stale, new_unit_price, age, price_hist, t_mark, lag, mark_rule,
                  lead, fleet, pledged, btc_price,
                  borrower, lender, active, term, maturity, principal, accrued, overdue,
                  orig_amort, rate,
                  status, call_months, cash, opex, btc, dscr, dscr_breach, arrears_months,
                  b_term, amort_rate, spread, cov_scale, l_status, l_cash,
                  ltv_max, ltv_cure, dscr_min, cure_months, cash_sweep, refi_ltv, sofr, t,
                  marks, coll, debt, called, called_at, refused):
    """Phase 3 of one run: :func:`lenders_body`."""
    return lenders_body(table, stale, new_unit_price, age, price_hist, t_mark, lag, mark_rule,
                        lead, fleet, pledged, btc_price,
                        borrower, lender, active, term, maturity, principal, accrued, overdue,
                        orig_amort, rate,
                        status, call_months, cash, opex, btc, dscr, dscr_breach,
                        arrears_months, b_term, amort_rate, spread, cov_scale, l_status, l_cash,
                        ltv_max, ltv_cure, dscr_min, cure_months, cash_sweep, refi_ltv, sofr, t,
                        marks, coll, debt, called, called_at, refused)


@kernel
def lenders_batch(runs, n_loans, table, stale, new_unit_price, launch, price_hist, lag,
                  mark_rule, lead, fleet, pledged, btc_price,
                  borrower, lender, active, term, maturity, principal, accrued, overdue,
                  orig_amort, rate,
                  status, call_months, cash, opex, btc, dscr, dscr_breach, arrears_months,
                  b_term, amort_rate, spread, cov_scale, l_status, l_cash,
                  ltv_max, ltv_cure, dscr_min, cure_months, cash_sweep, refi_ltv, sofr, t,
                  marks, coll, debt, called, called_at, refused, age, counts, flags, btc_sales):
    """Phase 3 of the runs ``runs`` of a stack at once (the run axis, issue 19): each argument
    of :func:`lenders_body` stacked with a leading run axis (numbers and switches as (R,)
    arrays), run r's the row r, the loan arrays (padded to the longest book) cut to run r's
    ``n_loans[r]`` rows. The marks are for month ``t[r] - 1``; the ages a stale book row
    reads are ``t[r] - launch[r]`` (what ``Environment.age`` holds in month ``t``), written
    into the scratch ``age[r]``. :func:`lenders_body`'s results of run r go to
    ``counts[r]`` (n_called, n_refused), ``flags[r]`` (arrears_paid, btc_sold, swept) and
    ``btc_sales[r]``. The same operations on each row as :func:`lenders_month` on that run's
    arrays, so each run's bits are its own."""
    for i in range(runs.shape[0]):
        r = runs[i]
        n = n_loans[r]
        tr = t[r]
        if stale[r]:
            for k in range(launch.shape[1]):
                age[r, k] = tr - launch[r, k]
        (counts[r, 0], counts[r, 1], flags[r, 0], flags[r, 1], btc_sales[r],
         flags[r, 2]) = lenders_body(
            table[r], stale[r], new_unit_price[r], age[r], price_hist[r], tr - 1, lag[r],
            mark_rule[r], lead[r], fleet[r], pledged[r], btc_price[r],
            borrower[r, :n], lender[r, :n], active[r, :n], term[r, :n], maturity[r, :n],
            principal[r, :n], accrued[r, :n], overdue[r, :n], orig_amort[r, :n], rate[r, :n],
            status[r], call_months[r], cash[r], opex[r], btc[r], dscr[r], dscr_breach[r],
            arrears_months[r], b_term[r], amort_rate[r], spread[r], cov_scale[r],
            l_status[r], l_cash[r], ltv_max[r], ltv_cure[r], dscr_min[r], cure_months[r],
            cash_sweep[r], refi_ltv[r], sofr[r], tr, marks[r], coll[r], debt[r], called[r],
            called_at[r], refused[r])


@jitable
def lenders_body(table, stale, new_unit_price, age, price_hist, t_mark, lag, mark_rule,
                 lead, fleet, pledged, btc_price,
                 borrower, lender, active, term, maturity, principal, accrued, overdue,
                 orig_amort, rate,
                 status, call_months, cash, opex, btc, dscr, dscr_breach, arrears_months,
                 b_term, amort_rate, spread, cov_scale, l_status, l_cash,
                 ltv_max, ltv_cure, dscr_min, cure_months, cash_sweep, refi_ltv, sofr, t,
                 marks, coll, debt, called, called_at, refused):
    """Phase 3, one month (:func:`sim.world.phases.lenders.run`).

    Reads the marks' inputs (the lender book's table and whether its book row is stale, the
    new-unit prices, the ages (read only if stale), the price history, the month ``t_mark`` >=
    0 the marks are for, the appraisal lag and each lender's marking rule), the borrower, loan
    and lender arrays and the scenario's scalars; ``cov_scale`` is the covenant scale per
    borrower (ones when off). Writes in place what the numpy code updates or rebinds (module
    docstring): the loans' principal, accrued interest and overdue principal after the
    payments, the margin-call months, the DSCR breach months, cash, BTC, the rolled rows and
    the marks' table.

    Fills the outputs (arrays from the caller, kept per run by the phase, returned through
    arguments: a returned array costs numba about 0.45 us to box, a passed one a tenth of
    that): ``marks`` (lender x generation), ``coll`` and ``debt`` (the debt after the
    margin-call payments) for ``MonthState``; ``called[:n_called]``, the borrowers with a new
    margin call, with their debt and LTV then in ``called_at[0]`` and ``called_at[1]`` (the
    ``margin_call`` events); ``refused[:n_refused]``, the loan rows refused a rollover
    (``refinancing_refused``). Returns ``(n_called, n_refused, arrears_paid, btc_sold,
    btc_sales, swept)``: whether a prepayment paid arrears first (pay()'s two-stage branch,
    where numpy rebinds accrued and overdue; the phase does not need it, its tests count the
    branch by it), whether free BTC was sold and its proceeds (the ``btc_sales`` outside
    flow), and whether a cash sweep moved the debt.
    """
    _marks(table, stale, new_unit_price, age, price_hist, t_mark, lag, mark_rule, marks)
    nb = status.shape[0]
    ltv = np.empty(nb)
    collateral_into(marks, lead, fleet, pledged, btc_price, coll)
    _debt_ltv(borrower, active, principal, accrued, coll, debt, ltv)

    # margin calls: new ones (BorrowerBook.new_margin_calls), logged at the debt and LTV now
    n_called = 0
    n_open = 0
    for i in range(nb):
        if status[i] != _DEFAULTED:
            if call_months[i] < 0 and ltv[i] > ltv_max * cov_scale[i]:
                called[n_called] = i
                called_at[0, n_called] = debt[i]
                called_at[1, n_called] = ltv[i]
                n_called += 1
                call_months[i] = 0
            if call_months[i] >= 0:
                n_open += 1

    arrears_paid = False
    btc_sold = False
    btc_sales = 0.0
    if n_open:
        need = np.empty(nb)
        spare = np.empty(nb)
        sell = np.empty(nb)
        any_sale = False
        for i in range(nb):
            is_open = status[i] != _DEFAULTED and call_months[i] >= 0
            need[i] = maximum(debt[i] - ltv_cure * cov_scale[i] * coll[i], 0.0) \
                if is_open else 0.0
            spare[i] = maximum(cash[i] - opex[i], 0.0) * (1.0 if is_open else 0.0)
            # np.divide, not /: numba's float / raises at a zero price, and its np.divide
            # on two floats is numpy's to the bit (+-inf, and 0 / 0 numpy's NaN, sign bit set)
            sell[i] = minimum(btc[i] - pledged[i],
                              np.divide(maximum(need[i] - spare[i], 0.0), btc_price))
            if sell[i] != 0.0:
                any_sale = True
        if any_sale:  # borrowers.sell_free_btc, then the spare cash again
            proceeds = np.empty(nb)
            for i in range(nb):
                btc[i] -= sell[i]
                proceeds[i] = sell[i] * btc_price
                cash[i] += proceeds[i]
            btc_sold = True
            btc_sales = psum(proceeds, 0, nb)
            for i in range(nb):
                is_open = status[i] != _DEFAULTED and call_months[i] >= 0
                spare[i] = maximum(cash[i] - opex[i], 0.0) * (1.0 if is_open else 0.0)
        amount = np.empty(nb)
        for i in range(nb):
            amount[i] = minimum(spare[i], need[i])
        arrears_paid = prepay_in_place(amount, borrower, lender, principal, accrued, overdue,
                                       cash, l_cash)
        _debt_ltv(borrower, active, principal, accrued, coll, debt, ltv)
        for i in range(nb):  # BorrowerBook.call_months_after, in place (element by element)
            is_open = status[i] != _DEFAULTED and call_months[i] >= 0
            if is_open and ltv[i] <= ltv_cure * cov_scale[i] * _CURE_SLACK:
                call_months[i] = -1
            elif is_open:
                call_months[i] = call_months[i] + 1
            else:
                call_months[i] = -1

    # DSCR breaches (BorrowerBook.dscr_breach_after, in place) and cash sweeps
    swept = False
    for i in range(nb):
        alive = status[i] != _DEFAULTED
        dscr_breach[i] = dscr_breach[i] + 1 if (alive and dscr[i] < dscr_min) else 0
        if alive and dscr_breach[i] > cure_months:
            swept = True
    if swept:
        amount = np.empty(nb)
        for i in range(nb):
            sweep = status[i] != _DEFAULTED and dscr_breach[i] > cure_months
            amount[i] = cash_sweep * maximum(cash[i] - opex[i], 0.0) if sweep else 0.0
        if prepay_in_place(amount, borrower, lender, principal, accrued, overdue, cash, l_cash):
            arrears_paid = True

    # rollovers of the term loans maturing next month (LenderBook.rolls_over), at the LTV
    # after the margin-call payments and the principal after the sweeps
    n = borrower.shape[0]
    n_refused = 0
    for r in range(n):
        if active[r] and term[r] and maturity[r] == t + 1:
            bi = borrower[r]
            if (ltv[bi] <= refi_ltv * cov_scale[bi] and dscr[bi] >= dscr_min
                    and arrears_months[bi] == 0 and l_status[lender[r]] == _NORMAL):
                maturity[r] += b_term[bi]
                orig_amort[r] = principal[r] * amort_rate[bi] / 12.0
                rate[r] = sofr + spread[bi]
            else:
                refused[n_refused] = r
                n_refused += 1

    return n_called, n_refused, arrears_paid, btc_sold, btc_sales, swept
