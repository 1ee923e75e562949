"""Phase 8 (:mod:`sim.world.phases.funding`) compiled: the whole month of the funding phase in
one kernel call, :func:`funding_month` (its body :func:`funding_body`, which
:func:`funding_batch` calls for each run of a stack).

It covers every switch the phase reads: the other loans (``has_other``), hosting in place
(``sites``: the hosted units passed in, else none), the repo desk (its rate, and the interest,
capitalisation and estate repayments it is paid, handed back for the phase to book), and the
Rogers-Veraart clearing (:func:`sim.core.contagion.rogers_veraart_state`) with or without
defaulting lenders, its linear systems solved as :func:`sim.core.numerics.solve` does, and
the month's marks (the appraisal and market rows of :meth:`agents.lender.LenderBook.marks`'
table; when the table's cached book row is not this month's, the phase calls the method
first). Invalid clearing inputs (a NaN, an infinity or a negative
amount in the network or the external assets), a singular system and a clearing that does not
converge are reported back by a code; the phase then raises what the numpy code raises.

Every sum is added in numpy's order (:mod:`sim.core.jit`): a row of a C-ordered array or a
1-D array as numpy's pairwise sum (:func:`~sim.core.jit.psum`), a sum over axis 0 from row 0
itself, a ``bincount`` from 0.0 in index order; ``matvec`` rows as :func:`sim.core.numerics.
matvec` adds them (pairwise, which below 8 terms is the plain sum from 0.0).
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import jitable, kernel, maximum, minimum, psum

# LenderStatus codes (agents.lender; an IntEnum cannot be read in compiled code)
NORMAL, DELEVERAGING, FAILED = 0, 1, 2
# the kernel's error codes: the phase raises what rogers_veraart_state would
OK, BAD_INPUT, SINGULAR, NO_CONVERGENCE = 0, 1, 2, 3


@jitable
def _colsum(x, n_rows, out):
    """``x.sum(axis=0)`` of a C-ordered (n_rows, k) array: from row 0 itself, row by row."""
    k = out.shape[0]
    for j in range(k):
        out[j] = x[0, j]
    for i in range(1, n_rows):
        for j in range(k):
            out[j] += x[i, j]


@jitable
def _row_products_sum(a, i, x, tmp):
    """``np.add.reduce(a[i] * x)`` (one row of ``numerics.matvec``), via the row ``tmp``."""
    k = x.shape[0]
    for j in range(k):
        tmp[j] = a[i, j] * x[j]
    return psum(tmp, 0, k)


@jitable
def _matvec(a, x, out, tmp):
    """``numerics.matvec(a, x)`` into ``out``."""
    for i in range(a.shape[0]):
        out[i] = _row_products_sum(a, i, x, tmp)


@jitable
def _solve(u, y):
    """:func:`sim.core.numerics.solve` in place on copies ``u``, ``y`` (Gaussian elimination
    with partial pivoting, Golub & Van Loan algorithm 3.4.1, the same operations in the same
    order). Returns (x, singular)."""
    n = u.shape[0]
    for k in range(n):
        p = k  # np.argmax(np.abs(u[k:, k])): the first maximum, a NaN wins at once
        best = abs(u[k, k])
        if best == best:
            for i in range(k + 1, n):
                v = abs(u[i, k])
                if v != v:
                    p = i
                    break
                if v > best:
                    best = v
                    p = i
        if p != k:
            for j in range(n):
                tmp = u[k, j]
                u[k, j] = u[p, j]
                u[p, j] = tmp
            tmp = y[k]
            y[k] = y[p]
            y[p] = tmp
        if u[k, k] == 0.0:
            return np.zeros(n), True
        for i in range(k + 1, n):
            f = u[i, k] / u[k, k]
            for j in range(k + 1, n):
                u[i, j] -= f * u[k, j]
            y[i] -= f * y[k]
    x = np.zeros(n)
    tmp = np.empty(n)
    for i in range(n - 1, -1, -1):
        m = n - i - 1
        for j in range(m):
            tmp[j] = u[i, i + 1 + j] * x[i + 1 + j]
        x[i] = (y[i] - psum(tmp, 0, m)) / u[i, i]
    return x, False


@jitable
def _clearing(liab, e, alpha, beta, tol, max_iter):
    """:func:`sim.core.contagion.rogers_veraart_state` on valid inputs (the greatest clearing
    vector, Rogers & Veraart 2013, by the defaulting-set rounds of ``_clearing_rounds``).
    Returns (p, lbar, equity, solvent, code)."""
    n = liab.shape[0]
    lbar = np.empty(n)
    for i in range(n):
        lbar[i] = psum(liab[i], 0, n)
    pi_t = np.empty((n, n))
    for j in range(n):
        s = lbar[j] if lbar[j] > 0 else 1.0
        for i in range(n):
            pi_t[i, j] = liab[j, i] / s
    scale = 1.0  # max(1.0, max(lbar), max(e)): Python's max, the first largest
    ml = lbar[0]
    me = e[0]
    for i in range(1, n):
        ml = maximum(ml, lbar[i])
        me = maximum(me, e[i])
    if ml > scale:
        scale = ml
    if me > scale:
        scale = me
    slack = tol * scale
    tmp = np.empty(n)
    p = lbar.copy()
    mv = np.empty(n)
    _matvec(pi_t, p, mv, tmp)
    assets = np.empty(n)
    short = np.zeros(n, np.bool_)
    anyshort = False
    for i in range(n):
        assets[i] = e[i] + mv[i]
        short[i] = assets[i] < lbar[i] - slack
        anyshort = anyshort or short[i]
    if not anyshort:
        equity = np.empty(n)
        for i in range(n):
            equity[i] = assets[i] - lbar[i]
        return p, lbar, equity, True, OK
    defaulting = np.zeros(n, np.bool_)
    converged = False
    for _ in range(max_iter):
        changed = False
        for i in range(n):
            if short[i] and not defaulting[i]:
                changed = True
        if not changed:
            converged = True
            break
        nd = 0
        for i in range(n):
            defaulting[i] = defaulting[i] or short[i]
            if defaulting[i]:
                nd += 1
        p = lbar.copy()
        d_idx = np.empty(nd, np.int64)
        s_idx = np.empty(n - nd, np.int64)
        a_, b_ = 0, 0
        for i in range(n):
            if defaulting[i]:
                d_idx[a_] = i
                a_ += 1
            else:
                s_idx[b_] = i
                b_ += 1
        if nd > 0 and beta == 0.0:
            for r in range(nd):
                p[d_idx[r]] = alpha * e[d_idx[r]]
        elif nd > 0:
            a = np.empty((nd, nd))
            for r in range(nd):
                for c in range(nd):
                    a[r, c] = (1.0 if r == c else 0.0) - beta * pi_t[d_idx[r], d_idx[c]]
            b = np.empty(nd)
            ns = n - nd
            for r in range(nd):
                for c in range(ns):
                    tmp[c] = pi_t[d_idx[r], s_idx[c]] * lbar[s_idx[c]]
                b[r] = alpha * e[d_idx[r]] + beta * psum(tmp, 0, ns)
            x, singular = _solve(a, b)
            if singular:
                return p, lbar, p, False, SINGULAR
            for r in range(nd):
                p[d_idx[r]] = x[r]
        _matvec(pi_t, p, mv, tmp)
        for i in range(n):
            short[i] = e[i] + mv[i] < lbar[i] - slack
    if not converged:
        return p, lbar, p, False, NO_CONVERGENCE
    for i in range(n):  # np.clip(p, 0.0, lbar)
        p[i] = minimum(maximum(p[i], 0.0), lbar[i])
    _matvec(pi_t, p, mv, tmp)
    equity = np.empty(n)
    for i in range(n):
        equity[i] = e[i] + mv[i] - lbar[i]
    return p, lbar, equity, False, OK


@jitable
def _pay_share(cash, due, n):
    """min(divide(max(cash, 0), due, where due > 0, else 1), 1) per lender."""
    f = np.empty(n)
    for i in range(n):
        f[i] = minimum(maximum(cash[i], 0.0) / due[i] if due[i] > 0 else 1.0, 1.0)
    return f


@kernel
def funding_month(interbank, cash, outside, repo_debt, inventory, status, assets0,
                  has_other, stress, other_loans, other_losses, other_yield, loss_calm,
                  loss_stress, hosted, has_sites, r_f, repo_rate, holding_cost, cash_share,
                  run_rate, active, principal, accrued, loan_lender, table, mark_rule,
                  price_hist, t, lag, refresh, liab, e_full, alpha, beta, tol, max_iter,
                  capital_floor, capital_ratio0, equity, assets, flows, failed, weak):
    """Phase 8 of one run: :func:`funding_body`."""
    return funding_body(interbank, cash, outside, repo_debt, inventory, status, assets0,
                        has_other, stress, other_loans, other_losses, other_yield, loss_calm,
                        loss_stress, hosted, has_sites, r_f, repo_rate, holding_cost,
                        cash_share, run_rate, active, principal, accrued, loan_lender, table,
                        mark_rule, price_hist, t, lag, refresh, liab, e_full, alpha, beta, tol,
                        max_iter, capital_floor, capital_ratio0, equity, assets, flows, failed,
                        weak)


@kernel
def funding_batch(runs, n_loans, interbank, cash, outside, repo_debt, inventory, status,
                  has_other, stress, other_loans, other_losses, other_yield, loss_calm,
                  loss_stress, hosted, has_sites, r_f, repo_rate, holding_cost, cash_share,
                  run_rate, active, principal, accrued, loan_lender, table, mark_rule,
                  price_hist, t, lag, refresh, liab, e_full, alpha, beta, tol, max_iter,
                  capital_floor, capital_ratio0, equity, assets, flows, failed, weak, code,
                  n_failed, n_weak):
    """Phase 8 of the runs ``runs`` of a stack at once (the run axis, issue 19): each argument
    of :func:`funding_body` stacked with a leading run axis (numbers and switches as (R,)
    arrays; ``tol`` and ``max_iter`` one for all), run r's the row r, the loan book's rows
    (``active``, ``principal``, ``accrued``, ``loan_lender``) cut to run r's own length
    ``n_loans[r]`` (a stack pads the shorter books); the lenders' assets are both
    ``assets0`` and ``assets`` of :func:`funding_body` (written in place, as the phase
    passes them). :func:`funding_body`'s three numbers of run r go to ``code[r]``,
    ``n_failed[r]``, ``n_weak[r]``. The same operations on each row as :func:`funding_month`
    on that run's arrays, so each run's bits are its own; a run's error code stops nobody
    else."""
    for i in range(runs.shape[0]):
        r = runs[i]
        nl = n_loans[r]
        code[r], n_failed[r], n_weak[r] = funding_body(
            interbank[r], cash[r], outside[r], repo_debt[r], inventory[r], status[r],
            assets[r], has_other[r], stress[r], other_loans[r], other_losses[r],
            other_yield[r], loss_calm[r], loss_stress[r], hosted[r], has_sites[r], r_f[r],
            repo_rate[r], holding_cost[r], cash_share[r], run_rate[r], active[r, :nl],
            principal[r, :nl], accrued[r, :nl], loan_lender[r, :nl], table[r], mark_rule[r],
            price_hist[r], t[r], lag[r], refresh[r], liab[r], e_full[r], alpha[r], beta[r],
            tol, max_iter, capital_floor[r], capital_ratio0[r], equity[r], assets[r],
            flows[r], failed[r], weak[r])


@jitable
def funding_body(interbank, cash, outside, repo_debt, inventory, status, assets0, has_other,
                 stress, other_loans, other_losses, other_yield, loss_calm, loss_stress,
                 hosted, has_sites, r_f, repo_rate, holding_cost, cash_share, run_rate, active,
                 principal, accrued, loan_lender, table, mark_rule, price_hist, t, lag, refresh,
                 liab, e_full, alpha, beta, tol, max_iter, capital_floor, capital_ratio0,
                 equity, assets, flows, failed, weak):
    """Phase 8 of one month (:func:`sim.world.phases.funding.run` after the marks): other
    loans, :func:`~sim.world.phases.funding.pay_lender_costs`, ``repay_outside``, ``run_on``
    the lenders not NORMAL, ``estates_pay_out``, ``clear_funding`` and the status changes.

    Updates in place what the numpy code updates in place (``interbank``, ``cash``,
    ``outside``, ``repo_debt``, ``other_loans``, ``other_losses``, ``status``, ``liab``,
    ``e_full``) and writes the rest into the caller's arrays (a returned array costs numba's
    dispatch about 0.3-0.6 us to box, a passed one a tenth of that): ``equity`` and ``assets``
    (n,; ``assets`` may be ``assets0`` itself, the lenders' assets written in place: every read
    of ``assets0`` comes before the first write of ``assets``, and on an error code neither is
    written), the lenders newly failed in ``failed[:n_failed]`` and those that start deleveraging
    in ``weak[:n_weak]`` (n,), and ``flows`` (13,); returns (code, n_failed, n_weak), with
    ``table`` the lenders' cached marks (book, appraisal, market rows;
    ``LenderBook.mark_table``), ``flows[12]`` 1 when some lender defaulted in the clearing (else
    0), and ``flows`` = [other loans' income,
    repo interest paid, outside funding interest paid, holding costs paid, unpaid repo
    interest, paid in full (1/0), outside repayment, run (1/0), run's outside repayment,
    estates (1/0), estates' repo repayment, estates' outside repayment, in default (1/0)]
    for the phase to book in the numpy code's order."""
    n = cash.shape[0]
    g = inventory.shape[1]
    flows[:] = 0.0
    # other loans: interest on the opening balance, then the month's write-off
    if has_other:
        income = np.empty(n)
        for i in range(n):
            rate = loss_stress[i] if stress else loss_calm[i]
            income[i] = other_loans[i] * other_yield[i] / 12.0
            loss = other_loans[i] * rate / 12.0
            other_loans[i] -= loss
            other_losses[i] += loss
        for i in range(n):
            cash[i] += income[i]
        flows[0] = psum(income, 0, n)
    # funding, repo and warehouse costs
    ib_int = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            ib_int[i, j] = interbank[i, j] * r_f
    out_int = np.empty(n)
    repo_int = np.empty(n)
    hold = np.empty(n)
    due = np.empty(n)
    for i in range(n):
        out_int[i] = outside[i] * r_f
        repo_int[i] = repo_debt[i] * repo_rate / 12.0
        units = 0
        for k in range(g):
            units += inventory[i, k]
        if has_sites:
            hold[i] = maximum(units - hosted[i], 0.0) * holding_cost
        else:
            hold[i] = units * holding_cost
        due[i] = psum(ib_int[i], 0, n) + out_int[i] + repo_int[i] + hold[i]
    f = np.empty(n)
    full = True
    for i in range(n):
        f[i] = minimum(maximum(cash[i], 0.0) / due[i] if due[i] > 0 else 1.0, 1.0)
        if not f[i] == 1.0:
            full = False
    col = np.empty(n)
    tmp = np.empty(n)
    if full:
        for i in range(n):
            cash[i] -= due[i]
        _colsum(ib_int, n, col)
        for i in range(n):
            cash[i] += col[i]
        flows[1] = psum(repo_int, 0, n)
        flows[2] = -psum(out_int, 0, n)
        flows[3] = -psum(hold, 0, n)
        flows[5] = 1.0
    else:
        for i in range(n):
            cash[i] -= f[i] * due[i]
        paid = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                paid[i, j] = ib_int[i, j] * f[i]
        _colsum(paid, n, col)
        for i in range(n):
            cash[i] += col[i]
        for i in range(n):
            tmp[i] = repo_int[i] * f[i]
        flows[1] = psum(tmp, 0, n)
        for i in range(n):
            tmp[i] = out_int[i] * f[i]
        flows[2] = -psum(tmp, 0, n)
        for i in range(n):
            tmp[i] = hold[i] * f[i]
        flows[3] = -psum(tmp, 0, n)
        for i in range(n):
            unpaid = 1.0 - f[i]
            for j in range(n):
                interbank[i, j] += ib_int[i, j] * unpaid
        for i in range(n):
            outside[i] += (out_int[i] + hold[i]) * (1.0 - f[i])
        for i in range(n):
            tmp[i] = repo_int[i] * (1.0 - f[i])
            repo_debt[i] += tmp[i]
        flows[4] = psum(tmp, 0, n)
    # sound lenders repay outside funding from cash above their liquidity target
    for i in range(n):
        target = cash_share[i] * maximum(assets0[i], 0.0)
        rep = minimum(maximum(cash[i] - target, 0.0), outside[i])
        if status[i] != NORMAL:
            rep = 0.0
        tmp[i] = rep
    for i in range(n):
        cash[i] -= tmp[i]
    for i in range(n):
        outside[i] -= tmp[i]
    flows[6] = psum(tmp, 0, n)
    # a run of run_rate on the lenders not NORMAL
    n_run = 0
    for i in range(n):
        if status[i] != NORMAL:
            n_run += 1
    if n_run:
        flows[7] = 1.0
        ib = np.empty((n, n))
        out = np.empty(n)
        for i in range(n):
            w = 1.0 if status[i] != NORMAL else 0.0
            for j in range(n):
                ib[i, j] = interbank[i, j] * w * run_rate
            out[i] = outside[i] * w * run_rate
            due[i] = psum(ib[i], 0, n) + out[i]
        f = _pay_share(cash, due, n)
        for i in range(n):
            cash[i] -= f[i] * due[i]
        for i in range(n):
            for j in range(n):
                ib[i, j] = ib[i, j] * f[i]
        _colsum(ib, n, col)
        for i in range(n):
            cash[i] += col[i]
        for i in range(n):
            for j in range(n):
                interbank[i, j] -= ib[i, j]
        for i in range(n):
            tmp[i] = out[i] * f[i]
            outside[i] -= tmp[i]
        flows[8] = psum(tmp, 0, n)
    # failed lenders' estates pay out all their cash, pro rata
    n_est = 0
    for i in range(n):
        if status[i] == FAILED and cash[i] > 0:
            n_est += 1
    if n_est:
        flows[9] = 1.0
        fe = np.zeros(n)
        for i in range(n):
            owed = psum(interbank[i], 0, n) + outside[i] + repo_debt[i]
            if status[i] == FAILED and cash[i] > 0:
                fe[i] = minimum(cash[i] / owed if owed > 0 else 0.0, 1.0)
        ib = np.empty((n, n))
        out = np.empty(n)
        repo = np.empty(n)
        for i in range(n):
            for j in range(n):
                ib[i, j] = interbank[i, j] * fe[i]
            out[i] = outside[i] * fe[i]
            repo[i] = repo_debt[i] * fe[i]
        for i in range(n):
            cash[i] -= psum(ib[i], 0, n) + out[i] + repo[i]
        _colsum(ib, n, col)
        for i in range(n):
            cash[i] += col[i]
        for i in range(n):
            for j in range(n):
                interbank[i, j] -= ib[i, j]
        for i in range(n):
            outside[i] -= out[i]
        for i in range(n):
            repo_debt[i] -= repo[i]
        flows[10] = psum(repo, 0, n)
        flows[11] = psum(out, 0, n)
    # the marks (LenderBook.marks): with ``refresh`` the appraisal row (the mean of the price
    # index over the last ``lag`` months, its rows summed from the first) and the market row
    # of the book's table, whose book row is this month's; each lender's row by its rule
    if refresh:
        lo = max(0, t - lag + 1)
        for k in range(g):
            acc = price_hist[lo, k]
            for s in range(lo + 1, t + 1):
                acc += price_hist[s, k]
            table[1, k] = acc / (t + 1 - lo)
            table[2, k] = price_hist[t, k]
    # the clearing: external assets (cash, GPU loans by bincount, inventory at its marks,
    # other loans), the network with the outside creditors as node n
    loans = np.zeros(n)
    for r in range(active.shape[0]):
        loans[loan_lender[r]] += (principal[r] + accrued[r]) if active[r] else 0.0
    ext = np.empty(n)
    row = np.empty(g)
    for i in range(n):
        for k in range(g):
            row[k] = inventory[i, k] * table[mark_rule[i], k]
        ext[i] = cash[i] + loans[i] + psum(row, 0, g)
        if has_other:
            ext[i] = ext[i] + other_loans[i]
    valid = True
    for i in range(n):
        for j in range(n):
            liab[i, j] = interbank[i, j]
        liab[i, n] = outside[i] + repo_debt[i]
        e_full[i] = maximum(ext[i], 0.0)
    for i in range(n + 1):
        if not (e_full[i] >= 0.0 and e_full[i] < np.inf):
            valid = False
        for j in range(n + 1):
            if not (liab[i, j] >= 0.0 and liab[i, j] < np.inf):
                valid = False
    if not valid:
        return BAD_INPUT, 0, 0
    p, lbar, eq_full, solvent, code = _clearing(liab, e_full, alpha, beta, tol, max_iter)
    if code != OK:
        return code, 0, 0
    for i in range(n):
        equity[i] = eq_full[i] + (ext[i] - e_full[i])
    if solvent:
        _colsum(interbank, n, col)
        for i in range(n):
            assets[i] = ext[i] + col[i]
    else:
        ratio = np.empty(n)
        for i in range(n):
            ratio[i] = p[i] / lbar[i] if lbar[i] > 0 else 1.0
        ib = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                ib[i, j] = interbank[i, j] * ratio[i]
        _colsum(ib, n, col)
        for i in range(n):
            assets[i] = ext[i] + col[i]
    # failures, deleveraging and healing
    n_fail = 0
    if not solvent:
        for i in range(n):
            if p[i] < lbar[i] * (1.0 - 1e-9):
                flows[12] = 1.0
                if status[i] != FAILED:
                    failed[n_fail] = i
                    n_fail += 1
    for k in range(n_fail):
        status[failed[k]] = FAILED
    ratio = np.empty(n)
    for i in range(n):
        ratio[i] = equity[i] / assets[i] if assets[i] > 0 else 0.0
    n_weak = 0
    for i in range(n):
        if status[i] == NORMAL and ratio[i] < capital_floor * capital_ratio0[i]:
            weak[n_weak] = i
            n_weak += 1
    for k in range(n_weak):
        status[weak[k]] = DELEVERAGING
    for i in range(n):
        if status[i] == DELEVERAGING and ratio[i] >= 1.2 * (capital_floor * capital_ratio0[i]):
            status[i] = NORMAL
    return OK, n_fail, n_weak
