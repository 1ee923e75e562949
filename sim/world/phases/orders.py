"""Phase 5, sell orders (docs/model.md section 3): the repo desk (if enabled) first finances
forced inventory, then forced and patient lenders and distressed borrowers post asks. Returns the
month's :class:`~sim.world.state.SellOrders`; the secured repo's loans (docs/model.md, "A secured
repo") are booked here too."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.buyer import floor_price
from agents.repo_desk import margin_and_term, units_to_seize
from sim.core import numerics as nm
from sim.world.kernels import orders as kernels
from sim.world.phases import lenders
from sim.world.state import MonthState, SellOrders

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def run(m: LiquidationModel, month: MonthState) -> SellOrders:
    """Phase 5: the lenders' orders (:func:`lender_orders`, or :func:`secured_orders` under
    the secured repo), then the distressed borrowers' (:func:`borrower_orders`), at the
    month's salvage floor (:func:`agents.buyer.floor_price`).

    On the compiled engine, when phase 3 has valued the month's collateral, the phase is one
    kernel call (:func:`_run_compiled` without the repo desk, :func:`_run_secured` and
    :func:`_run_legacy` with it); else (a month phase 3 did not value), and on the numpy
    engine, the numpy code below (the kernels' oracle)."""
    lb, desk = m.lenders, m.desk
    if m.engine == "compiled" and month.coll is not None:
        if not desk.enabled:
            return _run_compiled(m, month)
        return (_run_secured if desk.secured else _run_legacy)(m, month)
    if m.outside_on:  # the scrap value of the outside demand (replacement cost moves)
        m.salvage_price = floor_price(m.cfg.buyers, m.env)
    floor = m.salvage_price  # read only: shared with phase 7
    # the repo desk is offered first: it finances forced inventory (each GPU once) so that
    # it need not be dumped; financed GPUs are sold patiently and repay the repo when sold
    if np.count_nonzero(lb.repo_units):  # else zeroing integer zeros changes nothing
        lb.repo_units[lb.repo_debt <= 0] = 0
    h = None
    if desk.secured:
        forced, patient, patient_price, h = secured_orders(m, month.marks, floor)
    else:
        forced, patient, patient_price = lender_orders(m, month.marks, floor)
    b_units, b_price = borrower_orders(m, month, floor, h)
    return SellOrders(forced=forced, patient=patient, patient_price=patient_price,
                      floor=floor, b_units=b_units, b_price=b_price)


def _outputs(m: LiquidationModel, nb: int, nl: int, g: int) -> tuple:
    """The arrays a compiled phase 5 fills, the same arrays every month (the kernels write
    them in place): the salvage floor, which is the model's salvage price (filled with the
    outside demand on; else only read), and, made at the phase's first compiled month and
    kept in ``m.kernel_inputs["orders_out"]`` (made anew if a book's size moves), the
    lenders' patient prices, forced and patient units, the borrowers' units and price on
    offer (the month's :class:`~sim.world.state.SellOrders`, which phase 6 reads within the
    month), and the month's debt per borrower when recomputed."""
    out = m.kernel_inputs.get("orders_out")
    if out is None or out[0].shape != (nl, g) or out[3].shape != (nb, g):
        out = m.kernel_inputs["orders_out"] = (
            np.empty((nl, g)), np.empty((nl, g), np.int64), np.empty((nl, g), np.int64),
            np.empty((nb, g), np.int64), np.empty(g), np.empty(nb))
    return (m.salvage_price, *out)


def _finish(month: MonthState, debt_filled: bool, debt_out: np.ndarray,
            orders: SellOrders) -> SellOrders:
    """The end of a compiled phase 5: the month's debt kept if the kernel recomputed it, the
    month's evaluation spent (phase 6 moves fleets); returns ``orders``."""
    if debt_filled:
        month.debt = debt_out
    month.coll = None
    return orders


def _run_compiled(m: LiquidationModel, month: MonthState) -> SellOrders:
    """Phase 5 as one kernel call (:func:`sim.world.kernels.orders.orders_month`): the same
    orders (in the same arrays every month, :func:`_outputs`), salvage floor (the model's,
    written in place), repo units (in place) and ``MonthState`` (the month's debt when
    recomputed; the evaluation spent) as :func:`run`, and whether the orders offer any unit
    (``SellOrders.offered``, which phase 6 reads)."""
    b, lb, L, env, c = m.borrowers, m.lenders, m.loans, m.env, m.cfg
    nb, nl, g = b.n, lb.n, m.n_gen
    outside_on = m.outside_on
    floor, patient_price, forced, patient, b_units, b_price, debt_out = _outputs(m, nb, nl, g)
    have_debt = month.debt is not None
    scale = _scale_of(m)
    debt_filled, offered = kernels.orders_month(
            outside_on, c.buyers.outside_demand.scrap, env.new_unit_price, floor, month.marks,
            lb.sale_discount, m.fundamental, lb.inventory, lb.inv_since, lb.repo_units,
            lb.repo_debt, lb.status, env.t, c.lenders.max_hold_months,
            L.borrower, L.active, L.accrued, L.overdue, L.principal,
            b.status, b.call_months, b.cash, b.fleet, month.debt if have_debt else debt_out,
            have_debt, month.coll, c.lenders.ltv_cure,
            scale, c.borrowers.voluntary_discount,
            patient_price, forced, patient, b_units, b_price, debt_out)
    return _finish(month, debt_filled, debt_out, SellOrders(
        forced=forced, patient=patient, patient_price=patient_price, floor=floor,
        b_units=b_units, b_price=b_price, offered=offered))


def _scale_of(m: LiquidationModel) -> np.ndarray:
    """The borrowers' covenant scale, or a scale of ones (made once per run) without it."""
    scale = m.borrowers.cov_scale
    if scale is None:  # no covenant scaling: a scale of ones, made once per run
        nb = m.borrowers.n
        scale = m.kernel_inputs.get("orders_ones")
        if scale is None or scale.shape[0] != nb:
            scale = m.kernel_inputs["orders_ones"] = np.ones(nb)
    return scale


def _as_numpy_left(old, new: float, numpy_op: bool):
    """``new`` as the type the numpy phase leaves: a numpy float once the desk's ledger moved
    it by a numpy scalar (``numpy_op``) or if it was one, else a Python float."""
    return np.float64(new) if numpy_op or isinstance(old, np.floating) else new


_EVENTS = ((kernels.EV_L_DEFAULT, "repo_default", "lender"),
           (kernels.EV_L_LOAN, "repo_loan", "lender"),
           (kernels.EV_B_WRITE_OFF, "repo_default", "borrower"),
           (kernels.EV_B_DEFAULT, "repo_default", "borrower"),
           (kernels.EV_B_LOAN, "repo_loan", "borrower"))


def _run_secured(m: LiquidationModel, month: MonthState) -> SellOrders:
    """Phase 5 under the secured repo desk (``policy.repo.design = "secured"``, with or
    without ``policy.repo.borrowers``) as one kernel call
    (:func:`sim.world.kernels.orders.orders_secured_month`): :func:`secured_orders` and
    :func:`borrower_orders` with the desk's haircuts, margin, term, defaults and new loans,
    the same orders (in the arrays of :func:`_outputs`), book arrays (written in place, the
    lenders' repo units too, which numpy's ``remove_inventory`` rebinds after a repo
    default), desk ledger (its numbers numpy floats where numpy's left them so),
    ``recovered_total``, ``MonthState`` and ``repo_default`` / ``repo_loan`` events, in the
    numpy phase's order; and ``SellOrders.offered``."""
    b, lb, L, env, c, desk = m.borrowers, m.lenders, m.loans, m.env, m.cfg, m.desk
    nb, nl, g = b.n, lb.n, m.n_gen
    rc = desk.cfg
    outside_on = m.outside_on
    floor, patient_price, forced, patient, b_units, b_price, debt_out = _outputs(m, nb, nl, g)
    have_debt = month.debt is not None
    fs = np.array((desk.lent, desk.cash, desk.interest_capitalised, m.recovered_total,
                   rc.capacity), dtype=np.float64)
    width = max(nl, nb)
    ev_idx, ev_amt = np.empty((5, width), np.int64), np.empty((5, width))
    ev_n = np.zeros(5, np.int64)
    debt_filled, offered, _, touched = kernels.orders_secured_month(
            outside_on, c.buyers.outside_demand.scrap, env.new_unit_price, floor, month.marks,
            lb.sale_discount, m.fundamental, lb.inventory, lb.inv_since, lb.repo_units,
            lb.repo_debt, lb.status, lb.cash, lb.claim_pool, lb.recoveries,
            lb.later_recoveries, env.t, c.lenders.max_hold_months,
            L.borrower, L.active, L.accrued, L.overdue, L.principal,
            b.status, b.call_months, b.cash, b.fleet, month.debt if have_debt else debt_out,
            have_debt, month.coll, c.lenders.ltv_cure, _scale_of(m),
            c.borrowers.voluntary_discount,
            m.price, m.price_hist, rc.vol_window, rc.sigma, rc.z, np.sqrt(rc.liq_months),
            rc.liq_addon, rc.term_months, desk.rate(c.environment.sofr), rc.borrowers,
            desk.maturity_l, desk.b_debt, desk.b_maturity, desk.holdings, desk.cost_basis,
            desk.cash_lent, desk.cash_repaid, desk.margin_received, desk.interest,
            desk.default_loss, desk.defaults, fs, ev_idx, ev_amt, ev_n,
            patient_price, forced, patient, b_units, b_price, debt_out)
    K, v = kernels, fs.tolist()
    desk.lent = _as_numpy_left(desk.lent, v[K.FS_LENT], touched & K.TOUCH_LENT)
    desk.cash = _as_numpy_left(desk.cash, v[K.FS_CASH], touched & K.TOUCH_CASH)
    desk.interest_capitalised = _as_numpy_left(desk.interest_capitalised,
                                               v[K.FS_CAPITALISED],
                                               touched & K.TOUCH_CAPITALISED)
    m.recovered_total = _as_numpy_left(m.recovered_total, v[K.FS_RECOVERED],
                                       touched & K.TOUCH_RECOVERED)
    for row, name, agent in _EVENTS:
        n = int(ev_n[row])
        if n:
            m.log_events(name, agent, ev_idx[row, :n], amount=ev_amt[row, :n])
    return _finish(month, debt_filled, debt_out, SellOrders(
        forced=forced, patient=patient, patient_price=patient_price, floor=floor,
        b_units=b_units, b_price=b_price, offered=offered))


def _run_legacy(m: LiquidationModel, month: MonthState) -> SellOrders:
    """Phase 5 under the legacy repo desk (``policy.repo.design = "legacy"``) as one kernel
    call (:func:`sim.world.kernels.orders.orders_legacy_month`): :func:`lender_orders` with
    the desk (its haircut, loans against forced lines, financed lines' asks capped) and
    :func:`borrower_orders`, the same orders (in the arrays of :func:`_outputs`), book arrays
    (in place), desk ledger (``lent`` and ``cash``
    numpy floats once it lent), ``MonthState`` and ``repo_loan`` events as numpy; and
    ``SellOrders.offered``."""
    b, lb, L, env, c, desk = m.borrowers, m.lenders, m.loans, m.env, m.cfg, m.desk
    nb, nl, g = b.n, lb.n, m.n_gen
    outside_on = m.outside_on
    floor, patient_price, forced, patient, b_units, b_price, debt_out = _outputs(m, nb, nl, g)
    have_debt = month.debt is not None
    fs = np.array((desk.lent, desk.cash, 0.0, 0.0, desk.cfg.capacity), dtype=np.float64)
    ev_idx, ev_amt = np.empty((5, nl), np.int64), np.empty((5, nl))
    ev_n = np.zeros(5, np.int64)
    debt_filled, offered, lent = kernels.orders_legacy_month(
            outside_on, c.buyers.outside_demand.scrap, env.new_unit_price, floor, month.marks,
            lb.sale_discount, m.fundamental, lb.inventory, lb.inv_since, lb.repo_units,
            lb.repo_debt, lb.status, lb.cash, env.t, c.lenders.max_hold_months,
            L.borrower, L.active, L.accrued, L.overdue, L.principal,
            b.status, b.call_months, b.cash, b.fleet, month.debt if have_debt else debt_out,
            have_debt, month.coll, c.lenders.ltv_cure, _scale_of(m),
            c.borrowers.voluntary_discount, m.price, desk.cfg.h0, desk.cfg.kappa,
            desk.cost_basis, desk.cash_lent, fs, ev_idx, ev_amt, ev_n,
            patient_price, forced, patient, b_units, b_price, debt_out)
    if lent:
        K, v = kernels, fs.tolist()
        desk.lent = _as_numpy_left(desk.lent, v[K.FS_LENT], True)
        desk.cash = _as_numpy_left(desk.cash, v[K.FS_CASH], True)
        n = int(ev_n[K.EV_L_LOAN])
        if n:
            m.log_events("repo_loan", "lender", ev_idx[K.EV_L_LOAN, :n],
                         amount=ev_amt[K.EV_L_LOAN, :n])
    return _finish(month, debt_filled, debt_out, SellOrders(
        forced=forced, patient=patient, patient_price=patient_price, floor=floor,
        b_units=b_units, b_price=b_price, offered=offered))


def lender_orders(m: LiquidationModel, marks: np.ndarray, floor: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lenders' side of phase 5 (the legacy desk or none): a line is forced when its
    lender is not NORMAL or it has been held max_hold_months; the legacy desk lends
    (1 - h) x price against forced units not yet financed (:func:`lend_on`), and financed
    units are sold patiently at min(patient ask, max((1 - h) V, floor)). A patient lender
    asks max(mark x (1 - sale_discount), floor) (capped at V with the outside demand).
    Returns (forced units, patient units, patient asks), lender x generation."""
    lb, desk = m.lenders, m.desk
    # with the outside demand a patient lender never asks more than the value in best use
    patient_price = lb.patient_asks(marks, floor, m.fundamental if m.outside_on else None)
    if not np.count_nonzero(lb.inventory):
        # an empty warehouse: no line is forced (inventory > 0 fails everywhere), so
        # nothing is financed, moved to the desk or repriced, and both books hold 0 units
        zero = np.zeros(lb.inventory.shape, dtype=np.int64)
        return zero, zero.copy(), patient_price
    forced = forced_lines(m)
    patient_units = np.where(forced, 0, lb.inventory)
    financed = np.where(forced, np.minimum(lb.repo_units, lb.inventory), 0)
    patient_units = patient_units + financed
    # the desk's haircuts depend on this month's prices only: computed at most once
    h = None
    if desk.enabled and np.count_nonzero(forced) and desk.room > 0:
        h = desk.haircuts(m.price, m.fundamental)
        lendable = m.price * (1.0 - h)
        fresh = np.where(forced, lb.inventory - financed, 0)
        moved = lend_on(m, fresh, lendable)
        if moved is not None:
            patient_units = patient_units + moved
    forced_units = lb.inventory - patient_units
    # a line financed by repo is sold as soon as a buyer pays what the desk's haircut
    # leaves, (1 - h) x value in best use: no dumping, but no waiting on a book mark either
    if desk.enabled:
        if h is None:
            h = desk.haircuts(m.price, m.fundamental)
        supported = np.maximum((1.0 - h) * m.fundamental, floor)
        repo_line = (lb.repo_units > 0) & forced
        patient_price = np.where(repo_line, np.minimum(patient_price, supported[None, :]),
                                 patient_price)
    return forced_units, patient_units, patient_price


def secured_orders(m: LiquidationModel, marks: np.ndarray, floor: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Phase 5 under ``policy.repo.design = "secured"`` (docs/model.md, "A secured repo"):
    margin, term and defaults on the desk's loans, then new loans against forced
    inventory; financed units stay in the lender's inventory and are sold patiently (at
    its patient price) while the loan runs. Returns (forced units, patient units, patient
    asks, the desk's haircut per generation)."""
    env, lb, desk = m.env, m.lenders, m.desk
    t = env.t
    patient_price = lb.patient_asks(marks, floor, m.fundamental if m.outside_on else None)
    # haircuts from the price history up to last month (this month's price is not known)
    h = desk.secured_haircuts(m.price_hist, t - 1)
    lend_price = (1.0 - h) * m.price
    forced = secured_lenders(m, lend_price)
    financed = np.where(forced, np.minimum(lb.repo_units, lb.inventory), 0)
    patient_units = np.where(forced, 0, lb.inventory) + financed
    return lb.inventory - patient_units, patient_units, patient_price, h


def forced_lines(m: LiquidationModel) -> np.ndarray:
    """The lines sold at any price this month (:meth:`agents.lender.LenderBook.forced_lines`)."""
    return m.lenders.forced_lines(m.env.t, m.cfg.lenders.max_hold_months)


def secured_lenders(m: LiquidationModel, lend_price: np.ndarray) -> np.ndarray:
    """Lenders' secured repo loans: variation margin (loan <= sum of pledged units x
    (1 - h) x price), repayment or roll at term, default (the desk takes the pledged
    units), then new loans on forced lines' unpledged units. Returns the forced lines."""
    lb, desk, t = m.lenders, m.desk, m.env.t
    term = desk.cfg.term_months
    has = lb.repo_debt > 0
    bad = np.zeros(lb.n, dtype=bool)
    if np.count_nonzero(has):
        units = np.minimum(lb.repo_units, lb.inventory)
        allowed = (units * lend_price[None, :]).sum(axis=1)
        debt = lb.repo_debt.copy()
        matured = has & (desk.maturity_l <= t)
        cash = np.maximum(lb.cash, 0.0)
        # at term a lender with no forced line left repays if it can; otherwise it rolls
        repay = matured & ~forced_lines(m).any(axis=1) & (cash >= debt)
        call, pay, ok = margin_and_term(has, debt, allowed, repay, cash)
        paid = np.where(ok, pay, 0.0)
        lb.cash -= paid
        lb.repo_debt -= paid
        lb.repo_debt[repay] = 0.0
        lb.repo_units[repay] = 0
        desk.receive_repayment(paid.sum(), t, margin=np.where(ok & ~repay, call, 0.0).sum())
        desk.maturity_l[matured & ok & ~repay] = t + term
        bad = has & ~ok
        if np.count_nonzero(bad):
            d = np.where(bad, lb.repo_debt, 0.0)
            seized = np.where(bad[:, None], units, 0)
            lb.remove_inventory(seized)
            # the debt discharged is what the lender got for the GPUs: its recovery
            rec, _ = lb.apply_recovery(d)
            m.recovered_total += rec.sum()
            lb.repo_debt[bad] = 0.0
            lb.repo_units[bad] = 0
            desk.foreclose(seized, d, m.price, t)
            idx = bad.nonzero()[0]
            m.log_events("repo_default", "lender", idx, amount=d[idx])
    forced = forced_lines(m)
    if desk.room > 0 and np.count_nonzero(forced):
        fresh = np.where(forced & ~bad[:, None],
                         lb.inventory - np.minimum(lb.repo_units, lb.inventory), 0)
        lend_on(m, fresh, lend_price, maturity=t + term)
    return forced


def lend_on(m: LiquidationModel, fresh: np.ndarray, lend_price: np.ndarray,
             maturity: int | None = None) -> np.ndarray | None:
    """The desk lends against the lenders' ``fresh`` units (lender x generation) at
    ``lend_price`` per unit, pro rata when its room is short: each line pledges
    floor(units x min(1, room / wanted) + 1e-9) units. Books the loans (lenders' repo debt,
    units and cash; the desk's loans, cash and monthly ``cash_lent``) and logs
    ``repo_loan``; with ``maturity``, a lender's first loan gets that term (the secured
    design). Returns the units pledged, or None when nothing is wanted."""
    lb, desk, t = m.lenders, m.desk, m.env.t
    moved = desk.pledge(fresh, lend_price)
    if moved is None:
        return None
    loan = (moved * lend_price[None, :]).sum(axis=1)
    if maturity is not None:
        desk.maturity_l[(loan > 0) & (lb.repo_debt <= 0)] = maturity
    lb.repo_debt += loan
    lb.repo_units += moved
    lb.cash += loan
    desk.lend(loan.sum(), t)
    lent = loan.nonzero()[0]
    m.log_events("repo_loan", "lender", lent, amount=loan[lent])
    return moved


def secured_borrowers(m: LiquidationModel, gross: np.ndarray, alive: np.ndarray,
                      h: np.ndarray) -> np.ndarray:
    """Borrowers' secured repo loans against their fleets' equity (docs/model.md, "A
    secured repo"): interest, margin, term and default as for lenders, then new loans to
    borrowers short of cash (in arrears or under a margin call: ``gross`` > cash), at most
    (1 - h) x fleet at the price index less the facility debt. The fleet keeps running.
    ``h`` is the desk's haircut per generation (:func:`secured_orders`). Returns the need
    left (``gross`` less cash) for voluntary sales."""
    b, desk, t = m.borrowers, m.desk, m.env.t
    lend_price = (1.0 - h) * m.price
    debt_b = desk.b_debt
    dead = (debt_b > 0) & ~alive  # a defaulted facility took the fleet: the claim is lost
    if np.count_nonzero(dead):
        desk.write_off(debt_b[dead].sum(), np.count_nonzero(dead), t)
        idx = dead.nonzero()[0]
        m.log_events("repo_default", "borrower", idx, amount=debt_b[idx])
        debt_b[dead] = 0.0
    fac = m.loans.by_borrower(m.loans.exposure, b.n)
    room_b = np.where(alive, np.maximum(nm.matvec(b.fleet, lend_price) - fac, 0.0), 0.0)
    has = debt_b > 0
    bad = np.zeros(b.n, dtype=bool)
    if np.count_nonzero(has):
        intr = debt_b * desk.rate(m.cfg.environment.sofr) / 12.0
        paid_i = np.minimum(intr, np.maximum(b.cash, 0.0))
        b.cash -= paid_i
        desk.receive_interest(paid_i.sum(), t)
        debt_b += intr - paid_i  # unpaid interest capitalises
        desk.capitalise((intr - paid_i).sum())
        matured = has & (desk.b_maturity <= t)
        cash = np.maximum(b.cash, 0.0)
        # at term a borrower repays if its cash covers the loan and its other needs
        repay = matured & (gross <= cash - debt_b)
        call, pay, ok = margin_and_term(has, debt_b, room_b, repay, cash)
        paid = np.where(ok, pay, 0.0)
        b.cash -= paid
        debt_b -= paid
        debt_b[repay] = 0.0
        desk.receive_repayment(paid.sum(), t, margin=np.where(ok & ~repay, call, 0.0).sum())
        desk.b_maturity[matured & ok & ~repay] = t + desk.cfg.term_months
        bad = has & ~ok
        if np.count_nonzero(bad):
            d = np.where(bad, debt_b, 0.0)
            seized = units_to_seize(b.fleet, d, m.price, bad)
            b.fleet -= seized
            debt_b[bad] = 0.0
            desk.foreclose(seized, d, m.price, t)
            idx = bad.nonzero()[0]
            m.log_events("repo_default", "borrower", idx, amount=d[idx])
    need = np.where(alive, np.maximum(gross - np.maximum(b.cash, 0.0), 0.0), 0.0)
    if desk.room > 0 and np.count_nonzero(need):
        want = np.where(bad, 0.0, np.minimum(need, np.maximum(room_b - debt_b, 0.0)))
        loan = desk.ration(want)
        if loan is not None:
            desk.b_maturity[(loan > 0) & (debt_b <= 0)] = t + desk.cfg.term_months
            debt_b += loan
            b.cash += loan
            desk.lend(loan.sum(), t)
            need = need - loan
            lent = loan.nonzero()[0]
            m.log_events("repo_loan", "borrower", lent, amount=loan[lent])
    return np.maximum(need, 0.0)


def borrower_orders(m: LiquidationModel, month: MonthState, floor: np.ndarray,
                    h: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Phase 5, borrowers' side: the voluntary sales of distressed borrowers, (units per
    borrower and generation, ask per generation). A borrower in arrears or under a margin call
    needs arrears + max(debt - ltv_cure x C, 0) less its cash (after a secured repo loan,
    :func:`secured_borrowers`, with the desk's haircut ``h``); it offers
    ceil(min(need / (fleet . ask), 1) x fleet) units at ask = max(V (1 - voluntary_discount),
    floor). Spends the month's evaluation (``month.coll`` = None: phase 6 moves fleets)."""
    b, lc = m.borrowers, m.cfg.lenders
    # distressed borrowers sell some GPUs (voluntary limit orders) to cover arrears and calls
    need = m.loans.by_borrower(m.loans.arrears, b.n)
    alive = b.alive
    calls = alive & (b.call_months >= 0)
    if np.count_nonzero(calls):  # else need + 0.0 == need (a bincount of floats is never -0.0)
        debt, coll = lenders.month_debt_coll(m, month)
        need = need + np.where(calls, np.maximum(
            debt - lenders.covenant(m, lc.ltv_cure) * coll, 0.0), 0.0)
    month.coll = None  # phase 6 moves fleets: the month's evaluation is spent
    if m.desk.secured and m.desk.cfg.borrowers:
        need = secured_borrowers(m, need, alive, h)
    else:
        need = np.where(alive, np.maximum(need - np.maximum(b.cash, 0.0), 0.0), 0.0)
    # a borrower values its GPUs at their use value: it asks the fundamental less a discount
    vol_price = np.maximum(m.fundamental * (1.0 - m.cfg.borrowers.voluntary_discount),
                           floor)
    return b.voluntary_sales(need, vol_price), vol_price
