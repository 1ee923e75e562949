"""Phase 3, the lenders (docs/model.md section 3): collateral marks, LTV margin calls and their
cure, DSCR breaches and cash sweeps, and the rollover of loans maturing next month. Fills the
month's marks, debt and collateral in :class:`~sim.world.state.MonthState` for phases 4 and 5."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.world.kernels import lenders as kernels
from sim.world.phases import borrowers
from sim.world.state import MonthState

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel

# the ages the compiled marks do not read (book row not stale): read-only like env.age, so that
# the kernel has one signature (env.age is read only when stale, as LenderBook.marks reads it)
_NO_AGE = np.zeros(0, dtype=np.int64)
_NO_AGE.flags.writeable = False


def collateral(m: LiquidationModel, marks: np.ndarray) -> np.ndarray:
    """Collateral value per borrower: its GPUs at the lead lender's mark plus pledged BTC."""
    b = m.borrowers
    lead_marks = marks[np.maximum(m.lead, 0)]
    return np.add.reduce(b.fleet * lead_marks, axis=1) + b.pledged_btc * m.env.btc


def facility_ltv(m: LiquidationModel, marks: np.ndarray, coll: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(debt, collateral value at the lead lender's mark, LTV) per borrower. ``coll``, if
    given, is ``collateral(m, marks)`` computed while fleets and pledged BTC were as now."""
    debt = m.loans.by_borrower(m.loans.exposure, m.borrowers.n)
    if coll is None:
        coll = collateral(m, marks)
    ltv = np.divide(debt, coll, out=np.where(debt > 0, np.inf, 0.0), where=coll > 0)
    return debt, coll, ltv


def month_debt_coll(m: LiquidationModel, month: MonthState
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(debt, collateral) for phases 4 and 5, reusing phase 3's evaluation of this month
    (``month.debt``, ``month.coll``).

    Valid for every borrower alive when phase 3 ended: from phase 3 to phase 5 fleets,
    pledged BTC, the BTC price, the lead lenders and ``month.marks`` do not change except for
    the borrowers defaulting in phase 4 (their GPUs and coins are taken) and the borrowers
    paying off a called facility with pledged coins (:func:`sim.world.phases.defaults.
    accelerate`, which re-evaluates the cached collateral), and a borrower's
    debt is a bincount over its own rows only, which change only by
    :func:`sim.world.phases.borrowers.prepay` (after which ``month.debt`` is None and the debt
    is recomputed once) or at its own default. Phase 4 reads rows of borrowers alive until
    then; phase 5 reads only rows of living borrowers. A month phase 3 has not evaluated (or
    whose evaluation phase 5 has spent) evaluates afresh at ``month.marks``.
    """
    if month.coll is None:  # not evaluated by phase 3 (a phase run on its own), or spent
        debt, coll, _ = facility_ltv(m, month.marks)
        return debt, coll
    if month.debt is None:  # debt moved since (a cash sweep): recompute it, keep the collateral
        month.debt = m.loans.by_borrower(m.loans.exposure, m.borrowers.n)
    return month.debt, month.coll


def covenant(m: LiquidationModel, level: float) -> float | np.ndarray:
    """An LTV threshold (covenant, cure, t0 cap) per borrower: ``level`` x cov_scale for
    guaranteed borrowers with a raised advance rate (guarantee_ltv / ltv), else ``level``."""
    scale = m.borrowers.cov_scale
    return level if scale is None else level * scale


def run(m: LiquidationModel, month: MonthState) -> None:
    """Phase 3. Marks M (lender x generation, :meth:`agents.lender.LenderBook.marks`: last
    month's price index, appraisal-lagged); collateral C = fleet . M[lead] + pledged BTC x BTC
    price; LTV = debt / C. A margin call opens when LTV > ltv_max, and is met from cash above a
    month of opex (then free BTC) up to debt - ltv_cure x C; a call paid down to ltv_cure is
    cured. DSCR breach months count up while DSCR < dscr_min; past cure_months a cash sweep
    prepays cash_sweep x (cash - opex). Loans maturing next month roll over only if LTV <=
    refi_ltv, DSCR >= dscr_min, no arrears and the lender is sound (:func:`margin_calls`,
    :func:`cash_sweeps`, :func:`rollovers`). Sets ``month.marks``, ``month.debt`` (None if a
    sweep moved it) and ``month.coll``.

    On the compiled engine the phase is one kernel call (:func:`_run_compiled`, every switch)."""
    env, lb, lc = m.env, m.lenders, m.cfg.lenders
    if m.engine == "compiled" and env.t >= 1:  # (month 0 has no last month to mark at)
        _run_compiled(m, month)
        return
    marks = lb.marks(env, m.price_hist, env.t - 1, lc.appraisal_lag)
    # the collateral is valued once a month: selling free BTC and prepaying move neither
    # fleets nor pledged coins (see month_debt_coll)
    coll = collateral(m, marks)
    debt, coll, ltv = facility_ltv(m, marks, coll)
    debt, coll, ltv = margin_calls(m, marks, debt, coll, ltv)
    swept = cash_sweeps(m)
    # marks, debt (None: moved by the sweep) and collateral for phases 4 and 5
    month.marks, month.debt, month.coll = marks, None if swept else debt, coll
    rollovers(m, ltv)


def hand_over_arrays(m: LiquidationModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compiled engine's resident arrays of the month's marks (lender x generation),
    collateral and debt per borrower: ``MonthState.marks``, ``coll`` and ``debt`` are these
    same arrays every month (when not None), written in place by phases 3 and 4 (resident
    state, issue 19). Kept per run in ``m.kernel_inputs`` and remade if a book was resized."""
    nb, shape = m.borrowers.n, (m.lenders.n, m.n_gen)
    st = m.kernel_inputs.get("month_lenders")
    if st is None or st[0].shape != shape or len(st[1]) != nb:
        st = m.kernel_inputs["month_lenders"] = (np.empty(shape), np.empty(nb), np.empty(nb))
    return st


def _run_compiled(m: LiquidationModel, month: MonthState) -> None:
    """Phase 3 as one kernel call (:func:`sim.world.kernels.lenders.lenders_month`): the same
    book updates (the lender book's marks table included), ``MonthState``, events
    (``margin_call``, then ``refinancing_refused``) and ``btc_sales`` flow as the numpy code
    of :func:`run`, which is its oracle. Every array is written in place, those numpy rebinds
    included (the loans' principal, accrued and overdue, ``borrowers.call_months`` and
    ``dscr_breach``), and ``month.marks``, ``coll`` and ``debt`` are the resident arrays of
    :func:`hand_over_arrays`, filled by the kernel."""
    env, b, lb, L, lc = m.env, m.borrowers, m.lenders, m.loans, m.cfg.lenders
    table, stale = lb.marks_table(env)
    nb = b.n
    st = m.kernel_inputs.get("lenders")
    if st is None or len(st[0]) != nb or len(st[3]) != len(L.borrower):  # remade if resized
        # kept for the run: the scale of ones without covenant scaling (level x 1.0 is
        # level, to the bit; the kernel only reads it) and the events' scratch arrays (read
        # here, in the month that fills them)
        st = m.kernel_inputs["lenders"] = (
            np.ones(nb), np.empty(nb, np.int64), np.empty((2, nb)),
            np.empty(len(L.borrower), np.int64))
    ones, called, called_at, refused = st
    scale = ones if b.cov_scale is None else b.cov_scale
    marks, coll, debt = hand_over_arrays(m)
    n_called, n_refused, _, btc_sold, btc_sales, swept = kernels.lenders_month(
        table, stale, env.new_unit_price, env.age if stale else _NO_AGE, m.price_hist,
        env.t - 1, lc.appraisal_lag, lb.mark_rule,
        m.lead, b.fleet, b.pledged_btc, env.btc,
        L.borrower, L.lender, L.active, L.term, L.maturity, L.principal, L.accrued, L.overdue,
        L.orig_amort, L.rate,
        b.status, b.call_months, b.cash, b.opex, b.btc, b.dscr, b.dscr_breach,
        b.arrears_months, b.term, b.amort_rate, b.spread, scale, lb.status, lb.cash,
        lc.ltv_max, lc.ltv_cure, lc.dscr_min, lc.cure_months, lc.cash_sweep, lc.refi_ltv,
        m.cfg.environment.sofr, env.t,
        marks, coll, debt, called, called_at, refused)
    if n_called:
        called = called[:n_called]
        m.log_events("margin_call", m.kind_agents(called), called,
                     amount=called_at[0, :n_called], price=called_at[1, :n_called])
    if btc_sold:
        m.add_outside_flow("btc_sales", btc_sales)
    month.marks, month.debt, month.coll = marks, None if swept else debt, coll
    if n_refused:
        refused = refused[:n_refused]
        m.log_events("refinancing_refused", "lender", L.lender[refused],
                     amount=L.principal[refused])


def margin_calls(m: LiquidationModel, marks: np.ndarray, debt: np.ndarray, coll: np.ndarray,
                 ltv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open margin calls where LTV > ltv_max (:meth:`agents.borrower.BorrowerBook.
    new_margin_calls`); each open call is met from cash above a month of opex, then free BTC,
    up to debt - ltv_cure x C, and is cured at LTV <= ltv_cure or counts a month more.
    Returns (debt, collateral, LTV) after the payments."""
    b, lc = m.borrowers, m.cfg.lenders
    alive = b.alive
    new_call = b.new_margin_calls(ltv, covenant(m, lc.ltv_max))
    called = new_call.nonzero()[0]
    if len(called):
        m.log_events("margin_call", m.kind_agents(called), called, amount=debt[called],
                     price=ltv[called])
        b.call_months[new_call] = 0
    open_call = alive & (b.call_months >= 0)
    if np.count_nonzero(open_call):
        need = np.where(open_call, np.maximum(
            debt - covenant(m, lc.ltv_cure) * coll, 0.0), 0.0)
        spare = np.maximum(b.cash - b.opex, 0.0) * open_call
        if borrowers.sell_free_btc(m, np.maximum(need - spare, 0.0)):
            spare = np.maximum(b.cash - b.opex, 0.0) * open_call  # coins sold: cash moved
        borrowers.prepay(m, np.minimum(spare, need))
        debt, coll, ltv = facility_ltv(m, marks, coll)
        # paying exactly what was asked (need) cures the call: the debt it leaves can
        # round 1 ulp above ltv_cure x collateral, which must not keep the call open
        b.call_months = b.call_months_after(open_call, ltv, covenant(m, lc.ltv_cure))
    return debt, coll, ltv


def cash_sweeps(m: LiquidationModel) -> bool:
    """Count DSCR breach months; past cure_months a breach triggers a cash sweep: cash_sweep
    x the cash above a month of opex prepays principal, as in GPU facilities with sweeps of
    up to 50 % (Blockspace 2025). Returns whether any borrower was swept (its debt moved)."""
    b, lc = m.borrowers, m.cfg.lenders
    b.dscr_breach = b.dscr_breach_after(lc.dscr_min)
    sweep = b.alive & (b.dscr_breach > lc.cure_months)
    swept = np.count_nonzero(sweep) > 0
    if swept:
        borrowers.prepay(m, np.where(sweep, lc.cash_sweep * np.maximum(b.cash - b.opex, 0.0), 0.0))
    return swept


def rollovers(m: LiquidationModel, ltv: np.ndarray) -> None:
    """Loans maturing next month roll over for another term at today's spread only if they
    still qualify (:meth:`agents.lender.LenderBook.rolls_over`); the others are refused
    (event ``refinancing_refused``) and come due as a balloon."""
    b, lb, L, lc, t = m.borrowers, m.lenders, m.loans, m.cfg.lenders, m.env.t
    due = L.active & L.term & (L.maturity == t + 1)
    if np.count_nonzero(due):
        bi = L.borrower[due]
        refi = lc.refi_ltv if b.cov_scale is None else lc.refi_ltv * b.cov_scale[bi]
        ok = lb.rolls_over(L.lender[due], ltv[bi], refi, b.dscr[bi], lc.dscr_min,
                           b.arrears_months[bi])
        rows = due.nonzero()[0]
        roll = rows[ok]
        L.maturity[roll] += b.term[L.borrower[roll]]
        L.orig_amort[roll] = L.principal[roll] * b.amort_rate[L.borrower[roll]] / 12.0
        L.rate[roll] = m.cfg.environment.sofr + b.spread[L.borrower[roll]]
        refused = rows[~ok]
        if len(refused):
            m.log_events("refinancing_refused", "lender", L.lender[refused],
                         amount=L.principal[refused])
