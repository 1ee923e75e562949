"""Phase 2, the borrowers' cash waterfall (docs/model.md section 3): revenue less opex, then
debt service from cash, free BTC and the revolver (what is left unpaid is arrears), the DSCR,
revolver repayment and payouts; also the borrowers' extra payments (:func:`prepay`) that
phases 3, 4 and 6 use.

(Phases 2 to 5 test arrays with ``np.count_nonzero(x)``: ``x.any()`` as a count of the nonzero
entries, NaN included, without ndarray.any's wrapper and cast to bool.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core.finance import scheduled_payment
from sim.world.kernels import borrowers as kernels

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def run(m: LiquidationModel) -> None:
    """Phase 2, the cash waterfall: tenants may walk and contracts renew; cash += revenue -
    opex (:meth:`agents.borrower.BorrowerBook.operating`); debt service due = accrued interest
    + r/12 x principal + overdue + the instalment (the balloon at maturity,
    :func:`sim.core.finance.scheduled_payment`); a shortfall is met by selling free BTC, then
    by the revolver; what cash pays is paid pro rata (interest first,
    :meth:`sim.core.finance.LoanBook.pay`), the rest is arrears. Then the arrears months and
    the smoothed DSCR, revolver repayment from cash above three months of opex, and payouts
    above the buffer.

    On the compiled engine the whole phase is one kernel call
    (:func:`sim.world.kernels.borrowers.waterfall`) when the loan book's revolvers are one
    block of rows, one per borrower in order (as the model originates them) and the BTC price
    is not 0; else, and on the numpy engine, the numpy code below (the kernel's oracle)."""
    env, b, L = m.env, m.borrowers, m.loans
    blk = L.revolver_block
    if (m.engine == "compiled" and blk is not None and blk.stop - blk.start == b.n
            and env.btc != 0.0):
        _run_compiled(m, blk.start)
        return
    c = m.cfg.borrowers
    b.update_contracts(env, m.rng,
                       c.tenant_default_stress if env.stress else c.tenant_default_calm)
    rev, opex = b.operating(env)
    alive = b.alive
    noi = rev - opex
    b.cash += noi
    m.add_outside_flow("tenants", np.add.reduce(rev))  # ndarray.sum's own reduction
    m.add_outside_flow("opex", -np.add.reduce(opex))

    t = env.t
    outstanding = L.principal - L.overdue
    interest, amort = scheduled_payment(L.principal, L.orig_amort, L.rate)
    before_maturity = t < L.maturity  # else the balloon: all that is outstanding is due
    amort = np.where(before_maturity, np.minimum(amort, outstanding), outstanding)
    due_int = np.where(L.active, L.accrued + interest, 0.0)
    due_prin = np.where(L.active, L.overdue + amort, 0.0)
    owed = due_int + due_prin
    due = L.by_borrower(owed, b.n)
    short = np.maximum(due - b.cash, 0.0) * alive

    # pecking order: BTC treasury (unpledged coins), then the revolver
    if sell_free_btc(m, short):
        short = np.maximum(due - b.cash, 0.0) * alive
    draw_revolvers(m, short)

    pay = np.minimum(np.maximum(b.cash, 0.0), due)
    paid = L.pay(pay, due_int, due_prin, owed=owed, owed_b=due)  # the sums pay() would form
    b.cash -= pay
    m.lenders.cash += L.by_lender(paid, m.lenders.n)

    # L.arrears without its mask: pay() has just set accrued and overdue to due - paid,
    # and at closed rows due_int = due_prin = 0.0 above, so paid = frac x 0.0 = +0.0 and
    # both are +0.0 there, as the mask would make them
    arrears = L.by_borrower(L.accrued + L.overdue, b.n)
    b.count_arrears(arrears)
    # debt-service cover: NOI over scheduled (non-balloon) debt service, smoothed
    sched = L.by_borrower(np.where(L.active & before_maturity, interest +
                                   np.minimum(L.orig_amort, outstanding), 0.0), b.n)
    b.update_dscr(noi, sched)
    repay_revolvers(m)
    # cash above the target buffer leaves the firm (growth capex, dividends, buybacks)
    out = b.payouts(alive, due)
    b.cash -= out
    m.add_outside_flow("payouts", -np.add.reduce(out))


_NO_SITES = np.zeros(0)  # mining_share and site_income without sites (not read)


def _static(m: LiquidationModel) -> tuple:
    """What :func:`_run_compiled` reads that does not change in a run, kept in
    ``m.kernel_inputs["borrowers"]``: the tenants' walk probabilities (stress, calm), the
    power cost per GPU, the utilisation and the status codes the kernel tests."""
    c, env = m.cfg.borrowers, m.env
    return (float(c.tenant_default_stress), float(c.tenant_default_calm),
            env.power_cost_per_gpu(), float(env.cfg.utilisation),
            int(BorrowerStatus.DEFAULTED), int(LenderStatus.NORMAL))


def _run_compiled(m: LiquidationModel, rv0: int) -> None:
    """:func:`run` as one kernel call: the tenants' walk draws here (the same draws as
    ``BorrowerBook.update_contracts``), the waterfall in the kernel, then the outside flows
    added in the numpy code's order (as
    :meth:`~sim.world.model.LiquidationModel.add_outside_flow` adds them). The kernel writes
    the books in place, the arrays the numpy code makes new included (the borrowers'
    ``revenue``, ``opex``, ``arrears_months`` and ``dscr``, the loans' ``accrued``,
    ``overdue`` and ``principal``): no array is rebound."""
    env, b, L, lb = m.env, m.borrowers, m.loans, m.lenders
    st = m.kernel_inputs.get("borrowers")
    if st is None:
        st = m.kernel_inputs["borrowers"] = _static(m)
    p_stress, p_calm, power_cost, util, defaulted, normal = st
    u_walk = m.rng.random(b.n)
    sites = b.mining_share is not None
    rev_sum, opex_sum, sold, btc_sum, out_sum = kernels.waterfall(
        env.t, u_walk, p_stress if env.stress else p_calm, env.rent, float(env.hashprice),
        power_cost, util, float(env.btc), b.status, defaulted, b.fleet, b.contract_rent,
        b.contract_end, b.contract_months, b.tenant_gone, b.guaranteed, b.guarantee_cover,
        b.contracted_share, b.hashrate, b.mining_cost, b.fixed_opex, sites,
        b.mining_share if sites else _NO_SITES, b.site_income if sites else _NO_SITES,
        b.cash, b.btc, b.btc_pledged, b.call_months, b.payout_months, b.arrears_months, b.dscr,
        L.borrower, L.lender, L.principal, L.orig_amort, L.rate, L.maturity, L.active,
        L.accrued, L.overdue, rv0, m.lead, m.revolver_limit, lb.status, normal, lb.cash,
        b.revenue, b.opex)
    f = m.flows
    f["tenants"] += float(rev_sum)
    f["opex"] += float(-opex_sum)
    if sold:
        f["btc_sales"] += float(btc_sum)
    f["payouts"] += float(-out_sum)


def sell_free_btc(m: LiquidationModel, need: np.ndarray) -> bool:
    """Miners sell unpledged BTC (outside market) to raise up to ``need`` dollars each."""
    b, btc = m.borrowers, m.env.btc
    sell = b.free_btc_sale(need, btc)
    if not np.count_nonzero(sell):
        return False
    b.btc -= sell
    proceeds = sell * btc
    b.cash += proceeds
    m.add_outside_flow("btc_sales", np.add.reduce(proceeds))
    return True


def prepay(m: LiquidationModel, amount: np.ndarray) -> None:
    """An extra payment by each borrower: arrears first, then principal, cash to lenders.

    On the compiled engine one kernel call (:func:`sim.world.kernels.borrowers.prepay`, the
    same operations in the same order) for a float64 ``amount``, which writes the loan book's
    ``principal``, ``accrued`` and ``overdue`` in place (the numpy code rebinds them); else
    the numpy code below."""
    b, L, lb = m.borrowers, m.loans, m.lenders
    if m.engine == "compiled" and amount.dtype == np.float64 and amount.ndim == 1:
        kernels.prepay(amount, L.borrower, L.lender, L.principal, L.accrued, L.overdue,
                       b.cash, lb.cash)
        return
    # pay() reads these arrays and rebinds the book's own (never writes into them): no copies
    paid = L.pay(amount, L.accrued, L.overdue, prepay=L.principal)
    b.cash -= np.bincount(L.borrower, weights=paid, minlength=b.n)  # L.by_borrower
    lb.cash += np.bincount(L.lender, weights=paid, minlength=lb.n)  # L.by_lender


def draw_revolvers(m: LiquidationModel, short: np.ndarray) -> None:
    """Draw the revolver from the lead lender, if it is sound and has the cash."""
    # nobody short: req below is min(0, room >= 0) x ... = 0 everywhere, nothing is drawn
    if not np.count_nonzero(short):
        return
    b, lb, L = m.borrowers, m.lenders, m.loans
    rows, rows_b = L.revolver_rows, L.revolver_borrower
    dense = L.revolver_dense and len(rows_b) == b.n  # revolver k is borrower k's
    if dense:  # the scatter below would write every entry, in order
        if L.revolver_block is not None:  # ... and they are one block: views
            rows = L.revolver_block
        drawn = L.principal[rows]  # only read
    else:
        drawn = np.zeros(b.n)
        drawn[rows_b] = L.principal[rows]
    room = np.maximum(m.revolver_limit - drawn, 0.0)
    req = b.revolver_request(short, room, lb.status[m.lead] == LenderStatus.NORMAL)
    if not np.count_nonzero(req):
        return
    req_l = np.bincount(m.lead, weights=req, minlength=lb.n)
    scale = np.divide(np.maximum(lb.cash, 0.0), req_l, out=np.ones(lb.n), where=req_l > 0)
    draw = req * np.minimum(scale, 1.0)[m.lead]
    L.principal[rows] += draw if dense else draw[rows_b]
    b.cash += draw
    lb.cash -= np.bincount(m.lead, weights=draw, minlength=lb.n)


def repay_revolvers(m: LiquidationModel) -> None:
    """Cash above three months of opex repays the revolver."""
    b, L = m.borrowers, m.loans
    blk = L.revolver_block
    if blk is not None and blk.stop - blk.start == b.n:
        # revolver k is borrower k's, in one block of rows: the same repayment computed on
        # views over all revolvers, with rep = +0.0 where the rows below would not be
        # selected (x - 0.0 = x; a +0.0 weight leaves every bincount sum as it is)
        principal = L.principal[blk]
        sel = L.active[blk] & (principal > 0)
        if not np.count_nonzero(sel):
            return
        rep = np.where(sel, b.revolver_repayment(principal, L.overdue[blk]), 0.0)
        principal -= rep
        b.cash -= rep
        m.lenders.cash += np.bincount(L.lender[blk], weights=rep, minlength=m.lenders.n)
        return
    rows = (L.revolver & L.active & (L.principal > 0)).nonzero()[0]
    if len(rows) == 0:
        return
    bi = L.borrower[rows]
    rep = b.revolver_repayment(L.principal[rows], L.overdue[rows], bi)
    L.principal[rows] -= rep
    b.cash[bi] -= rep
    m.lenders.cash += np.bincount(L.lender[rows], weights=rep, minlength=m.lenders.n)
