"""Phase 5 compiled: the sell orders (:func:`sim.world.phases.orders.run`) as one kernel call a
month: :func:`orders_month` when the repo desk is off, :func:`orders_secured_month` under the
secured repo desk (``policy.repo.design = "secured"``, the default design),
:func:`orders_legacy_month` under the legacy one.

It replays the numpy code of the phase and of what it calls, line by line: the outside
demand's floor (:func:`agents.buyer.floor_price`: scrap x the installed new-unit price), the
repo units' reset, :meth:`agents.lender.LenderBook.patient_asks`, :meth:`~agents.lender.
LenderBook.forced_lines` and the split of each inventory line into forced and patient units
(:func:`sim.world.phases.orders.lender_orders` without the desk), the distressed borrowers'
need (``LoanBook.arrears`` by borrower; under an open margin call the payment down to the
cure, from :func:`sim.world.phases.lenders.month_debt_coll`: phase 3's cached debt, or the
debt recomputed when it moved) and :meth:`agents.borrower.BorrowerBook.voluntary_sales`
(:func:`sim.core.numerics.matvec` as :func:`sim.core.jit.psum` of each row's products, which
is its order at every fleet width). Bincounts are loops in row order from 0.0;
``np.maximum`` / ``np.minimum`` are :func:`sim.core.jit.maximum` / :func:`~sim.core.jit.minimum`.

Under the secured desk, also :func:`~sim.world.phases.orders.secured_orders` and
:func:`~sim.world.phases.orders.secured_borrowers`: the desk's haircuts
(:meth:`agents.repo_desk.RepoDesk.secured_haircuts`: ``np.std(axis=0, ddof=1)`` as numpy
sums it, :func:`_colsum`), the lenders' and borrowers' repo loans (interest, variation margin,
repayment or roll at term, defaults with the pledged units seized, :meth:`~agents.lender.
LenderBook.remove_inventory` and ``apply_recovery``, write-offs, new loans pro rata to the
desk's room: ``RepoDesk.pledge`` and ``ration``, Python's ``min``/``max`` as
:func:`sim.core.jit.pymin` / :func:`~sim.core.jit.pymax`) and the desk's ledger
(``receive_repayment``, ``foreclose``, ``lend``, ``write_off``, ``receive_interest``,
``capitalise``), in the numpy phase's order. The desk's numbers (``lent``, ``cash``,
``interest_capitalised``) and the model's ``recovered_total`` go in and out through ``fs``;
the events come back as index and amount arrays that the phase logs in numpy's order.
Under the legacy desk, :func:`~sim.world.phases.orders.lender_orders` with the desk: its
haircut (:func:`agents.repo_desk.haircut`, :func:`_legacy_haircut`), its loans
(:func:`_lend_on`, shared with the secured desk) and the financed lines' asks.

Switches covered: the outside demand on or off, sites, the market mode, the buyer of last
resort (phase 5 reads none of the last three), covenant scaling or none (a scale of ones:
``level * 1.0`` is ``level``), the repo desk off, secured (with or without
``policy.repo.borrowers``) or legacy (with or without ``buy_floor``, which phase 5 does not
read), every ``policy.repo`` number. Left to numpy: a month whose phase 3 did not value the
collateral (``month.coll`` None).
"""

from __future__ import annotations

import numpy as np

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core.jit import jitable, kernel, maximum, minimum, psum, pymax, pymin

DEFAULTED = int(BorrowerStatus.DEFAULTED)
NORMAL = int(LenderStatus.NORMAL)


@jitable
def _asks(outside_on, scrap, new_unit_price, floor, marks, sale_discount, fundamental,
          inventory, repo_units, repo_debt, patient_price):
    """The outside demand's floor, the repo units' reset and the patient asks (the start of
    :func:`orders_month`)."""
    nl, g = inventory.shape
    if outside_on:
        for k in range(g):
            floor[k] = scrap * new_unit_price[k]
    # the repo units of lines whose repo is repaid (integer zeros: the reset changes nothing
    # when every unit is 0, which numpy skips)
    for li in range(nl):
        for k in range(g):
            if repo_units[li, k] != 0 and repo_debt[li] <= 0:
                repo_units[li, k] = 0
    for li in range(nl):
        keep = 1.0 - sale_discount[li]
        for k in range(g):
            ask = maximum(marks[li, k] * keep, floor[k])
            if outside_on:
                ask = maximum(minimum(ask, fundamental[k]), floor[k])
            patient_price[li, k] = ask


@jitable
def _split(inventory, inv_since, repo_units, lb_status, t, max_hold, forced, patient):
    """Each inventory line's forced and patient units (forced lines sell their unfinanced
    units at any price); returns whether any line holds inventory (else every order is 0)."""
    nl, g = inventory.shape
    any_inv = False
    for li in range(nl):
        for k in range(g):
            if inventory[li, k] != 0:
                any_inv = True
    for li in range(nl):
        sound = lb_status[li] == NORMAL
        for k in range(g):
            inv = inventory[li, k]
            if not any_inv:
                forced[li, k] = 0
                patient[li, k] = 0
                continue
            held = t - inv_since[li, k] if inv_since[li, k] >= 0 else 0
            f = ((not sound) or held >= max_hold) and inv > 0
            pu = 0 if f else inv
            if f:
                ru = repo_units[li, k]
                pu += ru if ru < inv else inv
            patient[li, k] = pu
            forced[li, k] = inv - pu
    return any_inv


@jitable
def _gross_need(borrower, active, accrued, overdue, principal, status, call_months,
                month_debt, have_debt, month_coll, ltv_cure, scale, need, debt_out):
    """Each borrower's arrears plus, under an open margin call, the payment down to the cure
    (into ``need``); returns whether ``debt_out`` was filled (the month's debt recomputed)."""
    nb = status.shape[0]
    nrow = borrower.shape[0]
    for i in range(nb):
        need[i] = 0.0
    for r in range(nrow):
        need[borrower[r]] += accrued[r] + overdue[r] if active[r] else 0.0
    any_call = False
    for i in range(nb):
        if status[i] != DEFAULTED and call_months[i] >= 0:
            any_call = True
    debt_filled = False
    if any_call:
        debt = month_debt
        if not have_debt:
            for i in range(nb):
                debt_out[i] = 0.0
            for r in range(nrow):
                debt_out[borrower[r]] += principal[r] + accrued[r] if active[r] else 0.0
            debt = debt_out
            debt_filled = True
        for i in range(nb):
            call = status[i] != DEFAULTED and call_months[i] >= 0
            need[i] = need[i] + (maximum(debt[i] - ltv_cure * scale[i] * month_coll[i], 0.0)
                                 if call else 0.0)
    return debt_filled


@jitable
def _voluntary(need, fleet, fundamental, voluntary_discount, floor, b_units, b_price, offered):
    """The borrowers' ask and :meth:`~agents.borrower.BorrowerBook.voluntary_sales` for the
    ``need`` left; returns ``offered`` or whether some borrower offers a unit."""
    nb, g = fleet.shape
    any_need = False
    for i in range(nb):
        if need[i] != 0.0:
            any_need = True
    for k in range(g):
        b_price[k] = maximum(fundamental[k] * (1.0 - voluntary_discount), floor[k])
    if not any_need:
        for i in range(nb):
            for k in range(g):
                b_units[i, k] = 0
        return offered
    row = np.empty(g)
    for i in range(nb):
        for k in range(g):
            row[k] = fleet[i, k] * b_price[k]
        value = psum(row, 0, g)
        frac = need[i] / value if value > 0 else 0.0
        frac = minimum(frac, 1.0)
        for k in range(g):
            u = np.int64(minimum(np.ceil(frac * fleet[i, k]), float(fleet[i, k])))
            b_units[i, k] = u
            if u != 0:
                offered = True
    return offered


@jitable
def _borrower_asks(borrower, active, accrued, overdue, principal, status, call_months,
                   month_debt, have_debt, month_coll, ltv_cure, scale, debt_out, cash, fleet,
                   fundamental, voluntary_discount, floor, b_units, b_price, offered):
    """The borrowers' side of phase 5 without the secured desk (:func:`orders_month`,
    :func:`orders_legacy_month`): the gross need (:func:`_gross_need`), less the cash on hand
    of every borrower not defaulted, and the voluntary sales for it (:func:`_voluntary`);
    returns (whether the month's debt was filled, ``offered``)."""
    nb = status.shape[0]
    need = np.empty(nb)
    debt_filled = _gross_need(borrower, active, accrued, overdue, principal, status,
                              call_months, month_debt, have_debt, month_coll, ltv_cure, scale,
                              need, debt_out)
    for i in range(nb):
        need[i] = (maximum(need[i] - maximum(cash[i], 0.0), 0.0)
                   if status[i] != DEFAULTED else 0.0)
    return debt_filled, _voluntary(need, fleet, fundamental, voluntary_discount, floor,
                                   b_units, b_price, offered)


@kernel
def orders_month(outside_on, scrap, new_unit_price, floor, marks, sale_discount, fundamental,
                 inventory, inv_since, repo_units, repo_debt, lb_status, t, max_hold,
                 borrower, active, accrued, overdue, principal,
                 status, call_months, cash, fleet, month_debt, have_debt, month_coll,
                 ltv_cure, scale, voluntary_discount,
                 patient_price, forced, patient, b_units, b_price, debt_out):
    """One month of phase 5 over the books' arrays (module docstring). Fills ``floor`` (with
    the outside demand; else it is the model's salvage price, only read), ``patient_price``,
    ``forced``, ``patient``, ``b_units``, ``b_price`` (the month's orders) and, when the
    debt had moved and some borrower is under a call, ``debt_out``; updates ``repo_units``
    in place as numpy does. Returns whether ``debt_out`` was filled (``month.debt``), and
    whether any order offers units (a nonzero entry in ``forced``, ``patient`` or ``b_units``:
    a line's forced and patient units add up to its inventory, so the lenders' offer one
    when some inventory is nonzero)."""
    _asks(outside_on, scrap, new_unit_price, floor, marks, sale_discount, fundamental,
          inventory, repo_units, repo_debt, patient_price)
    # ---- the lenders: forced lines
    offered = _split(inventory, inv_since, repo_units, lb_status, t, max_hold, forced, patient)
    # ---- the borrowers: need, voluntary sales
    return _borrower_asks(borrower, active, accrued, overdue, principal, status, call_months,
                          month_debt, have_debt, month_coll, ltv_cure, scale, debt_out, cash,
                          fleet, fundamental, voluntary_discount, floor, b_units, b_price,
                          offered)


# ---------------------------------------------------------------- the secured repo desk
# Slots of the desk's (and the model's) numbers in ``fs`` (in and out) and the bits of the
# kernel's ``touched`` mask: a number the numpy phase moved with a numpy scalar ends as one.
FS_LENT, FS_CASH, FS_CAPITALISED, FS_RECOVERED, FS_CAPACITY = 0, 1, 2, 3, 4
TOUCH_LENT, TOUCH_CASH, TOUCH_CAPITALISED, TOUCH_RECOVERED = 1, 2, 4, 8
# rows of the event arrays, in the order the numpy phase logs them
EV_L_DEFAULT, EV_L_LOAN, EV_B_WRITE_OFF, EV_B_DEFAULT, EV_B_LOAN = 0, 1, 2, 3, 4


@jitable
def _colsum(a, k, n, col):
    """``a[:n].sum(axis=0)[k]`` of a C-ordered float64 (rows, g) array, in numpy's order: from
    0.0, row by row when g > 1; a single column is reduced as a 1-D array (pairwise), so it
    is copied into ``col`` and summed by :func:`psum`."""
    if a.shape[1] == 1:
        for i in range(n):
            col[i] = a[i, k]
        return psum(col, 0, n)
    s = 0.0
    for i in range(n):
        s += a[i, k]
    return s


@jitable
def _room(fs, cost_basis):
    """:attr:`agents.repo_desk.RepoDesk.room` of an enabled desk: max(min(capacity - used,
    cash), 0.0) with Python's min and max, used = lent + cost_basis.sum()."""
    used = fs[FS_LENT] + psum(cost_basis, 0, cost_basis.shape[0])
    return pymax(pymin(fs[FS_CAPACITY] - used, fs[FS_CASH]), 0.0)


@jitable
def _secured_haircuts(price_hist, t, window, sigma, z, sqrt_liq, addon, h):
    """:meth:`agents.repo_desk.RepoDesk.secured_haircuts` (the price history up to month
    ``t``) into ``h``: ``np.std(ddof=1)`` along axis 0 as numpy computes it (the column sums
    of :func:`_colsum`, the mean divided by the count, the squared deviations summed)."""
    g = h.shape[0]
    lo = max(t - window, 0)
    hi = min(t + 1, price_hist.shape[0])
    n = hi - lo if hi > lo else 0
    if n < 3:
        for k in range(g):
            h[k] = minimum(z * sigma * sqrt_liq + addon, 1.0)
        return
    w = n - 1
    ret = np.empty((w, g))
    for i in range(w):
        for k in range(g):
            prev = price_hist[lo + i, k]
            ret[i, k] = (price_hist[lo + i + 1, k] / prev if prev > 0 else 1.0) - 1.0
    col = np.empty(w)
    for k in range(g):
        mean = _colsum(ret, k, w, col) / w
        for i in range(w):
            x = ret[i, k] - mean
            ret[i, k] = x * x
    for k in range(g):
        sd = np.sqrt(_colsum(ret, k, w, col) / (w - 1))
        h[k] = minimum(z * maximum(sigma, sd) * sqrt_liq + addon, 1.0)


@jitable
def _foreclose(seized, d, price, t, holdings, cost_basis, default_loss, defaults, fs):
    """:meth:`agents.repo_desk.RepoDesk.foreclose`: the loans ``d`` discharged (``fs``'s lent
    moves), the ``seized`` units taken at a cost basis spread by value at ``price``."""
    n, g = seized.shape
    fs[FS_LENT] = fs[FS_LENT] - psum(d, 0, n)
    row = np.empty(g)
    w = np.empty(n)
    lost = np.empty(n)
    for i in range(n):
        for k in range(g):
            row[k] = seized[i, k] * price[k]
        val = psum(row, 0, g)
        w[i] = d[i] / val if val > 0 else 0.0
        lost[i] = 0.0 if val > 0 else d[i]
    part = np.empty((n, g))
    for i in range(n):
        for k in range(g):
            part[i, k] = seized[i, k] * w[i]
    col = np.empty(n)
    for k in range(g):
        units = 0
        for i in range(n):
            units += seized[i, k]
        holdings[k] += units
        cost_basis[k] = cost_basis[k] + _colsum(part, k, n, col) * price[k]
    default_loss[t] += psum(lost, 0, n)
    count = 0
    for i in range(n):
        if d[i] > 0:
            count += 1
    defaults[t] += count


@jitable
def _log(ev_idx, ev_amt, ev_n, row, values, n):
    """The entries of ``values[:n]`` that are nonzero (``ndarray.nonzero``: NaN counts) as one
    group of events: their indices and amounts."""
    c = 0
    for i in range(n):
        if values[i] != 0.0:
            ev_idx[row, c] = i
            ev_amt[row, c] = values[i]
            c += 1
    ev_n[row] = c


@jitable
def _log_where(ev_idx, ev_amt, ev_n, row, mask, values, n):
    """Events in row ``row``: index ``i`` and amount ``values[i]`` for each ``i < n`` where
    ``mask[i]``, in index order (the desk's defaults on lenders and on borrowers)."""
    c = 0
    for i in range(n):
        if mask[i]:
            ev_idx[row, c] = i
            ev_amt[row, c] = values[i]
            c += 1
    ev_n[row] = c


@jitable
def _lend_on(fresh, lend_price, repo_debt, repo_units, lb_cash, maturity_l, with_term,
             maturity, cost_basis, cash_lent, t, fs, ev_idx, ev_amt, ev_n):
    """:func:`sim.world.phases.orders.lend_on`: ``RepoDesk.pledge`` of the ``fresh`` units
    (overwritten with the units pledged), the loans booked (``with_term``: a lender's first
    loan matures at ``maturity``), ``RepoDesk.lend`` and the ``repo_loan`` events. Returns
    whether anything was wanted (else nothing moved: ``pledge`` returned None)."""
    nl, g = fresh.shape
    row = np.empty(g)
    want = np.empty(nl)
    for li in range(nl):
        for k in range(g):
            row[k] = fresh[li, k] * lend_price[k]
        want[li] = psum(row, 0, g)
    total = psum(want, 0, nl)
    if not total > 0:
        return False
    frac = pymin(1.0, _room(fs, cost_basis) / total)
    loan = np.empty(nl)
    for li in range(nl):
        for k in range(g):
            moved = np.int64(np.floor(fresh[li, k] * frac + 1e-9))
            fresh[li, k] = moved
            row[k] = moved * lend_price[k]
        loan[li] = psum(row, 0, g)
    for li in range(nl):
        if with_term and loan[li] > 0 and repo_debt[li] <= 0:
            maturity_l[li] = maturity
        repo_debt[li] = repo_debt[li] + loan[li]
        for k in range(g):
            repo_units[li, k] += fresh[li, k]
        lb_cash[li] = lb_cash[li] + loan[li]
    amount = psum(loan, 0, nl)
    fs[FS_LENT] = fs[FS_LENT] + amount
    fs[FS_CASH] = fs[FS_CASH] - amount
    cash_lent[t] += amount
    _log(ev_idx, ev_amt, ev_n, EV_L_LOAN, loan, nl)
    return True


@jitable
def _secured_lenders(inventory, inv_since, repo_units, repo_debt, lb_status, lb_cash,
                     claim_pool, recoveries, later_recoveries, maturity_l, t, max_hold, term,
                     price, lend_price, holdings, cost_basis, cash_lent, cash_repaid,
                     margin_received, default_loss, defaults, fs, ev_idx, ev_amt, ev_n):
    """:func:`sim.world.phases.orders.secured_lenders` up to the forced lines: margin, term
    and defaults on the lenders' repo loans, then new loans on the forced lines' unpledged
    units. Returns (whether a default seized pledged units; the touched mask)."""
    nl, g = inventory.shape
    touched = 0
    seizure = False
    bad = np.zeros(nl, np.bool_)
    n_has = 0
    for li in range(nl):
        if repo_debt[li] > 0:
            n_has += 1
    if n_has:
        units = np.empty((nl, g), np.int64)
        row = np.empty(g)
        allowed = np.empty(nl)
        for li in range(nl):
            for k in range(g):
                ru, inv = repo_units[li, k], inventory[li, k]
                units[li, k] = ru if ru < inv else inv
                row[k] = units[li, k] * lend_price[k]
            allowed[li] = psum(row, 0, g)
        paid = np.empty(nl)
        margin = np.empty(nl)
        any_bad = False
        for li in range(nl):
            has = repo_debt[li] > 0
            debt = repo_debt[li]
            matured = has and maturity_l[li] <= t
            cash = maximum(lb_cash[li], 0.0)
            any_forced = False
            sound = lb_status[li] == NORMAL
            for k in range(g):
                held = t - inv_since[li, k] if inv_since[li, k] >= 0 else 0
                if ((not sound) or held >= max_hold) and inventory[li, k] > 0:
                    any_forced = True
            repay = matured and (not any_forced) and cash >= debt
            call = maximum(debt - allowed[li], 0.0) if has else 0.0
            pay = debt if repay else call
            ok = cash >= pay
            paid[li] = pay if ok else 0.0
            margin[li] = call if (ok and not repay) else 0.0
            lb_cash[li] = lb_cash[li] - paid[li]
            repo_debt[li] = repo_debt[li] - paid[li]
            if repay:
                repo_debt[li] = 0.0
                for k in range(g):
                    repo_units[li, k] = 0
            if matured and ok and not repay:
                maturity_l[li] = t + term
            bad[li] = has and not ok
            if bad[li]:
                any_bad = True
        amount = psum(paid, 0, nl)
        fs[FS_LENT] = fs[FS_LENT] - amount
        fs[FS_CASH] = fs[FS_CASH] + amount
        cash_repaid[t] += amount
        margin_received[t] += psum(margin, 0, nl)
        touched |= TOUCH_LENT | TOUCH_CASH
        if any_bad:
            d = np.empty(nl)
            seized = np.zeros((nl, g), np.int64)
            for li in range(nl):
                d[li] = repo_debt[li] if bad[li] else 0.0
                if bad[li]:
                    for k in range(g):
                        seized[li, k] = units[li, k]
            # LenderBook.remove_inventory: the repo units cut to min(units, inventory), in
            # place (numpy rebinds them; each entry reads only itself)
            for li in range(nl):
                for k in range(g):
                    inventory[li, k] -= seized[li, k]
                    if inventory[li, k] == 0:
                        inv_since[li, k] = -1
                    ru, inv = repo_units[li, k], inventory[li, k]
                    repo_units[li, k] = ru if ru < inv else inv
            seizure = True
            # LenderBook.apply_recovery: the debt discharged is the lender's recovery
            rec = np.empty(nl)
            for li in range(nl):
                rec[li] = minimum(d[li], claim_pool[li])
                claim_pool[li] = claim_pool[li] - rec[li]
                recoveries[li] = recoveries[li] + rec[li]
                later_recoveries[li] = later_recoveries[li] + rec[li]
            fs[FS_RECOVERED] = fs[FS_RECOVERED] + psum(rec, 0, nl)
            touched |= TOUCH_RECOVERED
            for li in range(nl):
                if bad[li]:
                    repo_debt[li] = 0.0
                    for k in range(g):
                        repo_units[li, k] = 0
            _foreclose(seized, d, price, t, holdings, cost_basis, default_loss, defaults, fs)
            _log_where(ev_idx, ev_amt, ev_n, EV_L_DEFAULT, bad, d, nl)
    # new loans on the forced lines' units not yet pledged (the lines after any seizure)
    fresh = np.zeros((nl, g), np.int64)
    any_forced = False
    for li in range(nl):
        sound = lb_status[li] == NORMAL
        for k in range(g):
            held = t - inv_since[li, k] if inv_since[li, k] >= 0 else 0
            inv = inventory[li, k]
            if ((not sound) or held >= max_hold) and inv > 0:
                any_forced = True
                if not bad[li]:
                    ru = repo_units[li, k]
                    fresh[li, k] = inv - (ru if ru < inv else inv)
    if not (_room(fs, cost_basis) > 0 and any_forced):
        return seizure, touched
    if _lend_on(fresh, lend_price, repo_debt, repo_units, lb_cash, maturity_l, True, t + term,
                cost_basis, cash_lent, t, fs, ev_idx, ev_amt, ev_n):
        touched |= TOUCH_LENT | TOUCH_CASH
    return seizure, touched


@jitable
def _secured_borrowers(gross, status, cash, fleet, borrower, active, principal, accrued,
                       b_debt, b_maturity, t, term, rate, price, lend_price, holdings,
                       cost_basis, cash_lent, cash_repaid, margin_received, interest,
                       default_loss, defaults, fs, ev_idx, ev_amt, ev_n, need):
    """:func:`sim.world.phases.orders.secured_borrowers`: the borrowers' repo loans
    (write-offs, interest, margin, term, defaults, new loans); fills ``need`` (the need left
    for voluntary sales). Returns the touched mask."""
    nb, g = fleet.shape
    touched = 0
    # facilities' defaults took the fleets: the desk's claims on them are lost
    n_dead = 0
    lost = np.empty(nb)
    for i in range(nb):
        if b_debt[i] > 0 and status[i] == DEFAULTED:
            lost[n_dead] = b_debt[i]
            ev_idx[EV_B_WRITE_OFF, n_dead] = i
            ev_amt[EV_B_WRITE_OFF, n_dead] = b_debt[i]
            n_dead += 1
    ev_n[EV_B_WRITE_OFF] = n_dead
    if n_dead:
        amount = psum(lost, 0, n_dead)
        default_loss[t] += amount
        defaults[t] += n_dead
        fs[FS_LENT] = fs[FS_LENT] - amount
        touched |= TOUCH_LENT
        for i in range(nb):
            if b_debt[i] > 0 and status[i] == DEFAULTED:
                b_debt[i] = 0.0
    fac = np.zeros(nb)
    for r in range(borrower.shape[0]):
        fac[borrower[r]] += principal[r] + accrued[r] if active[r] else 0.0
    room_b = np.empty(nb)
    row = np.empty(g)
    for i in range(nb):
        for k in range(g):
            row[k] = fleet[i, k] * lend_price[k]
        v = psum(row, 0, g)
        room_b[i] = maximum(v - fac[i], 0.0) if status[i] != DEFAULTED else 0.0
    bad = np.zeros(nb, np.bool_)
    n_has = 0
    for i in range(nb):
        if b_debt[i] > 0:
            n_has += 1
    if n_has:
        paid_i = np.empty(nb)
        unpaid = np.empty(nb)
        for i in range(nb):
            intr = b_debt[i] * rate / 12.0
            paid_i[i] = minimum(intr, maximum(cash[i], 0.0))
            cash[i] = cash[i] - paid_i[i]
            unpaid[i] = intr - paid_i[i]
        amount = psum(paid_i, 0, nb)
        fs[FS_CASH] = fs[FS_CASH] + amount
        interest[t] += amount
        has = np.empty(nb, np.bool_)
        for i in range(nb):
            has[i] = b_debt[i] > 0  # before the unpaid interest is added (numpy's order)
            b_debt[i] = b_debt[i] + unpaid[i]
        amount = psum(unpaid, 0, nb)
        fs[FS_LENT] = fs[FS_LENT] + amount
        fs[FS_CAPITALISED] = fs[FS_CAPITALISED] + amount
        paid = np.empty(nb)
        margin = np.empty(nb)
        any_bad = False
        for i in range(nb):
            matured = has[i] and b_maturity[i] <= t
            c = maximum(cash[i], 0.0)
            repay = matured and gross[i] <= c - b_debt[i]
            call = maximum(b_debt[i] - room_b[i], 0.0) if has[i] else 0.0
            pay = b_debt[i] if repay else call
            ok = c >= pay
            paid[i] = pay if ok else 0.0
            margin[i] = call if (ok and not repay) else 0.0
            cash[i] = cash[i] - paid[i]
            b_debt[i] = b_debt[i] - paid[i]
            if repay:
                b_debt[i] = 0.0
            if matured and ok and not repay:
                b_maturity[i] = t + term
            bad[i] = has[i] and not ok
            if bad[i]:
                any_bad = True
        amount = psum(paid, 0, nb)
        fs[FS_LENT] = fs[FS_LENT] - amount
        fs[FS_CASH] = fs[FS_CASH] + amount
        cash_repaid[t] += amount
        margin_received[t] += psum(margin, 0, nb)
        touched |= TOUCH_LENT | TOUCH_CASH | TOUCH_CAPITALISED
        if any_bad:
            # agents.repo_desk.units_to_seize: the share of the fleet the debt is worth
            d = np.empty(nb)
            seized = np.zeros((nb, g), np.int64)
            for i in range(nb):
                d[i] = b_debt[i] if bad[i] else 0.0
                for k in range(g):
                    row[k] = fleet[i, k] * price[k]
                value = psum(row, 0, g)
                frac = minimum(d[i] / value if value > 0 else 1.0, 1.0)
                if bad[i]:
                    for k in range(g):
                        seized[i, k] = np.int64(minimum(np.ceil(frac * fleet[i, k]),
                                                        float(fleet[i, k])))
            for i in range(nb):
                for k in range(g):
                    fleet[i, k] -= seized[i, k]
                if bad[i]:
                    b_debt[i] = 0.0
            _foreclose(seized, d, price, t, holdings, cost_basis, default_loss, defaults, fs)
            _log_where(ev_idx, ev_amt, ev_n, EV_B_DEFAULT, bad, d, nb)
    any_need = False
    for i in range(nb):
        need[i] = (maximum(gross[i] - maximum(cash[i], 0.0), 0.0)
                   if status[i] != DEFAULTED else 0.0)
        if need[i] != 0.0:
            any_need = True
    if _room(fs, cost_basis) > 0 and any_need:
        # RepoDesk.ration
        want = np.empty(nb)
        for i in range(nb):
            want[i] = 0.0 if bad[i] else minimum(need[i], maximum(room_b[i] - b_debt[i], 0.0))
        total = psum(want, 0, nb)
        if total > 0:
            f = pymin(1.0, _room(fs, cost_basis) / total)
            for i in range(nb):
                loan = want[i] * f
                want[i] = loan
                if loan > 0 and b_debt[i] <= 0:
                    b_maturity[i] = t + term
                b_debt[i] = b_debt[i] + loan
                cash[i] = cash[i] + loan
                need[i] = need[i] - loan
            amount = psum(want, 0, nb)
            fs[FS_LENT] = fs[FS_LENT] + amount
            fs[FS_CASH] = fs[FS_CASH] - amount
            cash_lent[t] += amount
            touched |= TOUCH_LENT | TOUCH_CASH
            _log(ev_idx, ev_amt, ev_n, EV_B_LOAN, want, nb)
    for i in range(nb):
        need[i] = maximum(need[i], 0.0)
    return touched


@kernel
def orders_secured_month(outside_on, scrap, new_unit_price, floor, marks, sale_discount,
                         fundamental, inventory, inv_since, repo_units, repo_debt,
                         lb_status, lb_cash, claim_pool, recoveries, later_recoveries, t,
                         max_hold, borrower, active, accrued, overdue, principal,
                         status, call_months, cash, fleet, month_debt, have_debt, month_coll,
                         ltv_cure, scale, voluntary_discount,
                         price, price_hist, window, sigma, z, sqrt_liq, addon, term, rate,
                         lend_borrowers, maturity_l, b_debt, b_maturity, holdings, cost_basis,
                         cash_lent, cash_repaid, margin_received, interest, default_loss,
                         defaults, fs, ev_idx, ev_amt, ev_n,
                         patient_price, forced, patient, b_units, b_price, debt_out):
    """One month of phase 5 under the secured repo desk (module docstring): the orders of
    :func:`orders_month`, with :func:`sim.world.phases.orders.secured_orders` (the haircuts,
    the lenders' repo loans) and, if ``lend_borrowers``, :func:`~sim.world.phases.orders.
    secured_borrowers`. The books' arrays are updated in place, the desk's numbers in ``fs``
    (slots ``FS_*``), the events' indices and amounts in ``ev_idx`` / ``ev_amt`` (rows
    ``EV_*``, ``ev_n`` entries each: the groups the numpy phase did not log are left
    unread). Returns (``month.debt`` filled, any unit offered, whether a repo default seized
    pledged units, the ``TOUCH_*`` mask of the numbers moved)."""
    g = inventory.shape[1]
    nb = status.shape[0]
    _asks(outside_on, scrap, new_unit_price, floor, marks, sale_discount, fundamental,
          inventory, repo_units, repo_debt, patient_price)
    h = np.empty(g)
    _secured_haircuts(price_hist, t - 1, window, sigma, z, sqrt_liq, addon, h)
    lend_price = np.empty(g)
    for k in range(g):
        lend_price[k] = (1.0 - h[k]) * price[k]
    seizure, touched = _secured_lenders(
        inventory, inv_since, repo_units, repo_debt, lb_status, lb_cash, claim_pool,
        recoveries, later_recoveries, maturity_l, t, max_hold, term, price, lend_price,
        holdings, cost_basis, cash_lent, cash_repaid, margin_received, default_loss, defaults,
        fs, ev_idx, ev_amt, ev_n)
    offered = _split(inventory, inv_since, repo_units, lb_status, t, max_hold, forced, patient)
    gross = np.empty(nb)
    debt_filled = _gross_need(borrower, active, accrued, overdue, principal, status,
                              call_months, month_debt, have_debt, month_coll, ltv_cure, scale,
                              gross, debt_out)
    need = np.empty(nb)
    if lend_borrowers:
        touched |= _secured_borrowers(
            gross, status, cash, fleet, borrower, active, principal, accrued, b_debt,
            b_maturity, t, term, rate, price, lend_price, holdings, cost_basis, cash_lent,
            cash_repaid, margin_received, interest, default_loss, defaults, fs, ev_idx, ev_amt,
            ev_n, need)
    else:
        for i in range(nb):
            need[i] = (maximum(gross[i] - maximum(cash[i], 0.0), 0.0)
                       if status[i] != DEFAULTED else 0.0)
    offered = _voluntary(need, fleet, fundamental, voluntary_discount, floor, b_units, b_price,
                         offered)
    return debt_filled, offered, seizure, touched


@jitable
def _legacy_haircut(price, ref, h0, kappa, h):
    """:func:`agents.repo_desk.haircut` into ``h``: h0 + kappa max(0, 1 - price / ref) (a ratio
    of 1 where ref <= 0) clipped to [0, 1] as ``np.clip`` clips a float: the bound only when
    strictly beyond it (so -0.0 stays -0.0 and NaN stays NaN, unlike maximum then minimum)."""
    for k in range(h.shape[0]):
        ratio = price[k] / ref[k] if ref[k] > 0 else 1.0
        v = h0 + kappa * maximum(0.0, 1.0 - ratio)
        h[k] = 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


@kernel
def orders_legacy_month(outside_on, scrap, new_unit_price, floor, marks, sale_discount,
                        fundamental, inventory, inv_since, repo_units, repo_debt, lb_status,
                        lb_cash, t, max_hold, borrower, active, accrued, overdue, principal,
                        status, call_months, cash, fleet, month_debt, have_debt, month_coll,
                        ltv_cure, scale, voluntary_discount, price, h0, kappa, cost_basis,
                        cash_lent, fs, ev_idx, ev_amt, ev_n,
                        patient_price, forced, patient, b_units, b_price, debt_out):
    """One month of phase 5 under the legacy repo desk (``policy.repo.design = "legacy"``):
    the orders of :func:`orders_month` with :func:`sim.world.phases.orders.lender_orders`'
    desk: its haircut h = clip(h0 + kappa max(0, 1 - price / fundamental), 0, 1)
    (:func:`agents.repo_desk.haircut`), loans against forced lines' unfinanced units
    (:func:`_lend_on`, no term) and the patient asks of financed lines capped at
    max((1 - h) x fundamental, floor). The desk's numbers in ``fs``, the ``repo_loan`` events
    in row ``EV_L_LOAN`` of ``ev_idx`` / ``ev_amt``. Returns (``month.debt`` filled, any unit
    offered, whether the desk lent: ``lent`` and ``cash`` moved)."""
    nl, g = inventory.shape
    _asks(outside_on, scrap, new_unit_price, floor, marks, sale_discount, fundamental,
          inventory, repo_units, repo_debt, patient_price)
    lent = False
    any_inv = False
    for li in range(nl):
        for k in range(g):
            if inventory[li, k] != 0:
                any_inv = True
    if any_inv:
        h = np.empty(g)
        _legacy_haircut(price, fundamental, h0, kappa, h)
        fresh = np.zeros((nl, g), np.int64)
        is_forced = np.zeros((nl, g), np.bool_)
        n_forced = 0
        for li in range(nl):
            sound = lb_status[li] == NORMAL
            for k in range(g):
                inv = inventory[li, k]
                held = t - inv_since[li, k] if inv_since[li, k] >= 0 else 0
                f = ((not sound) or held >= max_hold) and inv > 0
                is_forced[li, k] = f
                if f:
                    n_forced += 1
                    ru = repo_units[li, k]
                    fresh[li, k] = inv - (ru if ru < inv else inv)
        if n_forced and _room(fs, cost_basis) > 0:
            lend_price = np.empty(g)
            for k in range(g):
                lend_price[k] = price[k] * (1.0 - h[k])
            lent = _lend_on(fresh, lend_price, repo_debt, repo_units, lb_cash, repo_debt, False,
                            0, cost_basis, cash_lent, t, fs, ev_idx, ev_amt, ev_n)
        for li in range(nl):
            for k in range(g):
                inv = inventory[li, k]
                pu = inv
                if is_forced[li, k]:
                    ru = repo_units[li, k] - (fresh[li, k] if lent else 0)
                    pu = (ru if ru < inv else inv) + (fresh[li, k] if lent else 0)
                patient[li, k] = pu
                forced[li, k] = inv - pu
                if is_forced[li, k] and repo_units[li, k] > 0:
                    supported = maximum((1.0 - h[k]) * fundamental[k], floor[k])
                    patient_price[li, k] = minimum(patient_price[li, k], supported)
    else:
        for li in range(nl):
            for k in range(g):
                forced[li, k] = 0
                patient[li, k] = 0
    debt_filled, offered = _borrower_asks(
        borrower, active, accrued, overdue, principal, status, call_months, month_debt,
        have_debt, month_coll, ltv_cure, scale, debt_out, cash, fleet, fundamental,
        voluntary_discount, floor, b_units, b_price, any_inv)
    return debt_filled, offered, lent
