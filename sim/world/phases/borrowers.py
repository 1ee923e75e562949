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
    from sim.world.stack import MonthContext, RunStack


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


# phase 2's kernel arguments a run's model holds as resident arrays (sim.world.stack): the
# stack's (R, ...) array goes to the batched kernel for each, by argument name, with the axis
# its first dimension runs along (run r's length of it: "b" its borrowers, "l" its loan rows,
# "k" its lenders; "g" the generations, one length in every run) and whether it is read only
# with sites
_STACKED = (("rent", ("env", "rent"), "g", False),
            *((name, ("borrowers", name), "b", False) for name in (
                "status", "fleet", "contract_rent", "contract_end", "contract_months",
                "tenant_gone", "guaranteed", "guarantee_cover", "contracted_share", "hashrate",
                "mining_cost", "fixed_opex")),
            ("mining_share", ("borrowers", "mining_share"), "b", True),
            ("site_income", ("borrowers", "site_income"), "b", True),
            *((name, ("borrowers", name), "b", False) for name in (
                "cash", "btc", "btc_pledged", "call_months", "payout_months", "arrears_months",
                "dscr")),
            *((name, ("loans", name), "l", False) for name in (
                "borrower", "lender", "principal", "orig_amort", "rate", "maturity", "active",
                "accrued", "overdue")),
            ("lead", ("model", "lead"), "b", False),
            ("revolver_limit", ("model", "revolver_limit"), "b", False),
            ("lb_status", ("lenders", "status"), "k", False),
            ("lb_cash", ("lenders", "cash"), "k", False),
            ("revenue", ("borrowers", "revenue"), "b", False),
            ("opex", ("borrowers", "opex"), "b", False))


def _held(m: LiquidationModel) -> dict[str, np.ndarray]:
    """The arrays :func:`_run_compiled` passes for the names of :data:`_STACKED` (with sites:
    without them it passes stand-ins)."""
    owners = {"env": m.env, "borrowers": m.borrowers, "loans": m.loans, "model": m,
              "lenders": m.lenders}
    return {name: getattr(owners[owner], attr) for name, (owner, attr), _a, _s in _STACKED}


def batch_inputs(stack: RunStack) -> dict | None:
    """What :func:`run_batch` passes to :func:`kernels.waterfall_batch` for a stack's runs,
    made at its first batched month: the stacks of the arrays each run's phase 2 reads
    (:data:`_STACKED`, checked to be the very arrays the run's own phase would pass, each run's
    the leading corner of its row given by its numbers of borrowers, loan rows and lenders,
    with every other axis one length in every run), the numbers of :func:`_static` as (R,)
    arrays (the power cost per GPU stacked), each run's lengths, and the batch's scratch. None
    when the runs cannot share one call (not all compiled, sites in some runs only, shapes
    that differ otherwise): then each runs its own phase."""
    models = stack.models
    if any(m.engine != "compiled" for m in models):
        return None
    sts = []
    for m in models:
        st = m.kernel_inputs.get("borrowers")
        if st is None:
            st = m.kernel_inputs["borrowers"] = _static(m)
        sts.append(st)
    sites = {m.borrowers.mining_share is not None for m in models}
    if len(sites) != 1 or len({st[2].shape for st in sts}) != 1:
        return None
    sites_on = sites.pop()
    n = len(models)
    dims = {"b": [m.borrowers.n for m in models], "l": [len(m.loans) for m in models],
            "k": [m.lenders.n for m in models]}
    held = [_held(m) for m in models]
    out: dict[str, np.ndarray] = {}
    for name, key, axis, with_sites in _STACKED:
        if with_sites and not sites_on:
            out[name] = np.zeros((n, 0))  # never read (the kernel's stand-in)
            continue
        key = stack.aliases.get(key, key)
        if key not in stack.stacks:
            return None
        full = stack.stacks[key].shape[1:]
        for r in range(n):
            want = full if axis == "g" else (dims[axis][r], *full[1:])
            if stack.shapes[key][r] != want or held[r][name] is not stack.view(key, r):
                return None
        out[name] = stack.stacks[key]
    for axis, name in (("b", "nb"), ("l", "nrow"), ("k", "nl")):
        out[name] = np.array(dims[axis], dtype=np.int64)
    out["power_cost"] = np.stack([st[2] for st in sts])
    out["util"] = np.array([st[3] for st in sts], dtype=np.float64)
    out["defaulted"] = np.array([st[4] for st in sts], dtype=np.int64)
    out["normal"] = np.array([st[5] for st in sts], dtype=np.int64)
    out["has_sites"] = np.full(n, sites_on)
    out["u_walk"] = np.zeros((n, max(dims["b"])))
    for name in ("p_walk", "hashprice", "btc_price", "rev_sum", "opex_sum", "btc_sum",
                 "out_sum"):
        out[name] = np.zeros(n)
    for name in ("t", "rv0"):
        out[name] = np.zeros(n, dtype=np.int64)
    for name in ("sold", "ok"):
        out[name] = np.zeros(n, dtype=np.bool_)
    # by run: its model, its number of borrowers, its row of the walk draws' scratch and its
    # walk probabilities (stress, calm)
    out["per_run"] = [(m, k, out["u_walk"][r, :k], st[0], st[1])
                      for r, (m, k, st) in enumerate(zip(models, dims["b"], sts, strict=True))]
    return out


_ARGS = ("nb", "nrow", "nl", "t", "u_walk", "p_walk", "rent", "hashprice", "power_cost",
         "util", "btc_price", "status", "defaulted", "fleet", "contract_rent", "contract_end",
         "contract_months", "tenant_gone", "guaranteed", "guarantee_cover", "contracted_share",
         "hashrate", "mining_cost", "fixed_opex", "has_sites", "mining_share", "site_income",
         "cash", "btc", "btc_pledged", "call_months", "payout_months", "arrears_months", "dscr",
         "borrower", "lender", "principal", "orig_amort", "rate", "maturity", "active",
         "accrued", "overdue", "rv0", "lead", "revolver_limit", "lb_status", "normal",
         "lb_cash", "revenue", "opex", "rev_sum", "opex_sum", "sold", "btc_sum", "out_sum",
         "ok")


def _alone(stack: RunStack, r: int) -> None:
    """Run r's own phase 2 (:func:`run`), its failure that run's (:meth:`RunStack.fail`)."""
    try:
        run(stack.models[r])
    except Exception as e:  # noqa: BLE001 - one run's failure is that run's result
        stack.fail(r, e)


def run_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """Phase 2 for the runs ``runs`` of a stack by one call of
    :func:`kernels.waterfall_batch` over the stacked arrays (:func:`batch_inputs`): per run,
    in the gather loop before the call, the test :func:`run` makes for its kernel and the
    tenants' walk draws of :func:`_run_compiled` (each run's own generator, the same draws in
    the same order); after the call each run's outside flows added as :func:`_run_compiled`
    adds them. The same bits as each run's own phase (``tests/world/test_batch_borrowers.py``).
    A run whose kernel stops where :func:`kernels.waterfall` raises (a revolver request
    without a lead lender) fails with that ValueError (:meth:`RunStack.fail`, after the call:
    the other runs' results are their own) and adds no flow, as its own phase would. A run
    the kernel does not cover this month (:func:`run`'s test) runs its own phase, and every
    phase from then on (:meth:`RunStack.detach`: the numpy code rebinds arrays the stack
    holds), and so does every run where the runs cannot share a call."""
    b = stack.inputs("borrowers", batch_inputs)
    if b is None:
        for r in runs:
            _alone(stack, r)
        return
    t, p_walk, hashprice, btc_price, rv0, per_run = (
        b["t"], b["p_walk"], b["hashprice"], b["btc_price"], b["rv0"], b["per_run"])
    batch = []
    for r in runs:
        m, n, u_walk, p_stress, p_calm = per_run[r]
        env, blk = m.env, m.loans.revolver_block
        if blk is None or blk.stop - blk.start != n or env.btc == 0.0:
            # the numpy code, as run() takes it; it rebinds arrays the stack holds, so the
            # run runs its own phases from now on, every batched phase's included
            stack.detach(r)
            _alone(stack, r)
            continue
        t[r] = env.t
        m.rng.random(out=u_walk)  # m.rng.random(b.n), the same draws
        p_walk[r] = p_stress if env.stress else p_calm
        hashprice[r] = env.hashprice  # float(env.hashprice), float(env.btc): the same values
        btc_price[r] = env.btc
        rv0[r] = blk.start
        batch.append(r)
    if not batch:
        return
    kernels.waterfall_batch(np.array(batch, dtype=np.int64), *(b[name] for name in _ARGS))
    # Python floats and bools, as the kernel of one run returns them
    rev_sum, opex_sum, sold, btc_sum, out_sum, ok = (
        b[name].tolist() for name in ("rev_sum", "opex_sum", "sold", "btc_sum", "out_sum",
                                      "ok"))
    models = stack.models
    for r in batch:
        if not ok[r]:
            stack.fail(r, ValueError(kernels.NO_LEAD))
            continue
        f = models[r].flows
        f["tenants"] += rev_sum[r]
        f["opex"] += -opex_sum[r]
        if sold[r]:
            f["btc_sales"] += btc_sum[r]
        f["payouts"] += -out_sum[r]


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
