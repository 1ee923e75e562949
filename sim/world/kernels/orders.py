"""Phase 5 compiled: the sell orders (:func:`sim.world.phases.orders.run`) as one kernel call a
month, :func:`orders_month`, when the repo desk is off.

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

Switches covered: the outside demand on or off, sites, the market mode, the buyer of last
resort (phase 5 reads none of the last three), covenant scaling or none (a scale of ones:
``level * 1.0`` is ``level``). Left to numpy: the repo desk (``policy.repo.enabled``, legacy or
secured), and a month whose phase 3 did not value the collateral (``month.coll`` None).
"""

from __future__ import annotations

import numpy as np

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core.jit import kernel, maximum, minimum, psum

DEFAULTED = int(BorrowerStatus.DEFAULTED)
NORMAL = int(LenderStatus.NORMAL)


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
    nl, g = inventory.shape
    nb = status.shape[0]
    nrow = borrower.shape[0]
    if outside_on:
        for k in range(g):
            floor[k] = scrap * new_unit_price[k]
    # the repo units of lines whose repo is repaid (integer zeros: the reset changes nothing
    # when every unit is 0, which numpy skips)
    for li in range(nl):
        for k in range(g):
            if repo_units[li, k] != 0 and repo_debt[li] <= 0:
                repo_units[li, k] = 0

    # ---- the lenders: patient asks, forced lines
    any_inv = False
    for li in range(nl):
        keep = 1.0 - sale_discount[li]
        for k in range(g):
            ask = maximum(marks[li, k] * keep, floor[k])
            if outside_on:
                ask = maximum(minimum(ask, fundamental[k]), floor[k])
            patient_price[li, k] = ask
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

    offered = any_inv  # a line's forced and patient units add up to its inventory

    # ---- the borrowers: need, voluntary sales
    need = np.zeros(nb)
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
    any_need = False
    for i in range(nb):
        need[i] = (maximum(need[i] - maximum(cash[i], 0.0), 0.0)
                   if status[i] != DEFAULTED else 0.0)
        if need[i] != 0.0:
            any_need = True
    for k in range(g):
        b_price[k] = maximum(fundamental[k] * (1.0 - voluntary_discount), floor[k])
    if not any_need:
        for i in range(nb):
            for k in range(g):
                b_units[i, k] = 0
        return debt_filled, offered
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
    return debt_filled, offered
