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
    from sim.world.stack import MonthContext, RunStack

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
    state, issue 19). Kept per run in ``m.kernel_inputs`` and remade if a book was resized;
    a stack's batched phase 3 sets them to the run's rows of its batch arrays
    (:func:`batch_inputs`), which this then returns."""
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


# phase 3's kernel arguments a run's model holds as resident arrays (sim.world.stack): the
# stack's (R, ...) array goes to the batched kernel for each, by argument name; the loan
# book's may differ in length between runs (padded stacks, each run cut to its own rows)
_STACKED = (("table", ("lenders", "_table")), ("new_unit_price", ("env", "new_unit_price")),
            ("launch", ("env", "launch")), ("price_hist", ("model", "price_hist")),
            ("mark_rule", ("lenders", "mark_rule")), ("lead", ("model", "lead")),
            ("fleet", ("borrowers", "fleet")), ("pledged", ("borrowers", "btc_pledged")),
            ("borrower", ("loans", "borrower")), ("lender", ("loans", "lender")),
            ("active", ("loans", "active")), ("term", ("loans", "term")),
            ("maturity", ("loans", "maturity")), ("principal", ("loans", "principal")),
            ("accrued", ("loans", "accrued")), ("overdue", ("loans", "overdue")),
            ("orig_amort", ("loans", "orig_amort")), ("rate", ("loans", "rate")),
            ("status", ("borrowers", "status")), ("call_months", ("borrowers", "call_months")),
            ("cash", ("borrowers", "cash")), ("opex", ("borrowers", "opex")),
            ("btc", ("borrowers", "btc")), ("dscr", ("borrowers", "dscr")),
            ("dscr_breach", ("borrowers", "dscr_breach")),
            ("arrears_months", ("borrowers", "arrears_months")),
            ("b_term", ("borrowers", "term")), ("amort_rate", ("borrowers", "amort_rate")),
            ("spread", ("borrowers", "spread")), ("cov_scale", ("borrowers", "cov_scale")),
            ("l_status", ("lenders", "status")), ("l_cash", ("lenders", "cash")))


def _held(m: LiquidationModel) -> dict[str, np.ndarray | None]:
    """The arrays :func:`_run_compiled` passes for the names of :data:`_STACKED` (``launch``:
    what ``env.age`` is computed from; ``cov_scale`` None without covenant scaling)."""
    env, b, lb, L = m.env, m.borrowers, m.lenders, m.loans
    return {"table": lb._table, "new_unit_price": env.new_unit_price, "launch": env.launch,
            "price_hist": m.price_hist, "mark_rule": lb.mark_rule, "lead": m.lead,
            "fleet": b.fleet, "pledged": b.pledged_btc, "borrower": L.borrower,
            "lender": L.lender, "active": L.active, "term": L.term, "maturity": L.maturity,
            "principal": L.principal, "accrued": L.accrued, "overdue": L.overdue,
            "orig_amort": L.orig_amort, "rate": L.rate, "status": b.status,
            "call_months": b.call_months, "cash": b.cash, "opex": b.opex, "btc": b.btc,
            "dscr": b.dscr, "dscr_breach": b.dscr_breach, "arrears_months": b.arrears_months,
            "b_term": b.term, "amort_rate": b.amort_rate, "spread": b.spread,
            "cov_scale": b.cov_scale, "l_status": lb.status, "l_cash": lb.cash}


_LOAN_ARGS = frozenset(("borrower", "lender", "active", "term", "maturity", "principal",
                        "accrued", "overdue", "orig_amort", "rate"))


def batch_inputs(stack: RunStack) -> dict | None:
    """What :func:`run_batch` passes to :func:`kernels.lenders_batch` for a stack's runs, made
    at its first batched month: the stacks of the arrays each run's phase 3 reads and writes
    (:data:`_STACKED`, checked to be the very arrays the run's own phase would pass, of one
    shape in every run but for the loan book's length), each run's loan count, the scenario's
    numbers as (R,) arrays, the batch's scratch, and all of them in the kernel's order
    (``args``, :data:`_ARGS`). The month's hand-over arrays
    (:func:`hand_over_arrays`: marks, collateral, debt) become rows of three batch arrays:
    each run's ``kernel_inputs["month_lenders"]`` is set to its rows (their values copied),
    so that the kernel fills them in place and phases 3 and 4 of the run, batched or not,
    hand over those rows. None when the runs cannot share one call (not all compiled,
    covenant scaling in some runs only, shapes that differ): then each runs its own phase."""
    models = stack.models
    if any(m.engine != "compiled" for m in models):
        return None
    scaled = {m.borrowers.cov_scale is not None for m in models}
    if len(scaled) != 1:
        return None
    scaled_on = scaled.pop()
    n = len(models)
    helds = [_held(m) for m in models]
    n_loans = np.array([len(m.loans.borrower) for m in models], dtype=np.int64)
    out: dict[str, object] = {}
    for name, key in _STACKED:
        if name == "cov_scale" and not scaled_on:
            continue
        key = stack.aliases.get(key, key)  # (env.new_unit_price is buyers._cap)
        if key not in stack.stacks:
            return None
        shapes = stack.shapes[key]
        if name in _LOAN_ARGS:
            if any(s != (int(k),) for s, k in zip(shapes, n_loans, strict=True)):
                return None
        elif len(set(shapes)) != 1:
            return None
        if any(h[name] is not stack.view(key, r) for r, h in enumerate(helds)):
            return None
        out[name] = stack.stacks[key]
    nb, nl, n_g = models[0].borrowers.n, models[0].lenders.n, models[0].n_gen
    if not scaled_on:  # level x 1.0 is level, to the bit (as _run_compiled's ones)
        out["cov_scale"] = np.ones((n, nb))
    cfgs = [m.cfg.lenders for m in models]
    for name in ("appraisal_lag", "cure_months"):
        out[name] = np.array([getattr(c, name) for c in cfgs], dtype=np.int64)
    for name in ("ltv_max", "ltv_cure", "dscr_min", "cash_sweep", "refi_ltv"):
        out[name] = np.array([getattr(c, name) for c in cfgs], dtype=np.float64)
    out["sofr"] = np.array([m.cfg.environment.sofr for m in models], dtype=np.float64)
    out["n_loans"] = n_loans
    out["stale"] = np.zeros(n, dtype=np.bool_)
    out["btc_price"] = np.zeros(n)
    out["t"] = np.zeros(n, dtype=np.int64)
    out["age"] = np.zeros((n, n_g), dtype=np.int64)
    out["called"] = np.zeros((n, nb), dtype=np.int64)
    out["called_at"] = np.zeros((n, 2, nb))
    out["refused"] = np.zeros((n, max(int(n_loans.max()), 1)), dtype=np.int64)
    out["counts"] = np.zeros((n, 2), dtype=np.int64)
    out["flags"] = np.zeros((n, 3), dtype=np.bool_)
    out["btc_sales"] = np.zeros(n)
    marks, coll, debt = np.zeros((n, nl, n_g)), np.zeros((n, nb)), np.zeros((n, nb))
    rows = []
    for r, m in enumerate(models):
        row = (marks[r], coll[r], debt[r])
        old = m.kernel_inputs.get("month_lenders")
        if old is not None:
            for new, a in zip(row, old, strict=True):
                new[...] = a
        m.kernel_inputs["month_lenders"] = row
        rows.append(row)
    out["marks"], out["coll"], out["debt"], out["rows"] = marks, coll, debt, rows
    out["args"] = tuple(out[name] for name in _ARGS)  # the kernel's arguments, in order
    return out


_ARGS = ("n_loans", "table", "stale", "new_unit_price", "launch", "price_hist",
         "appraisal_lag", "mark_rule", "lead", "fleet", "pledged", "btc_price", "borrower",
         "lender", "active", "term", "maturity", "principal", "accrued", "overdue",
         "orig_amort", "rate", "status", "call_months", "cash", "opex", "btc", "dscr",
         "dscr_breach", "arrears_months", "b_term", "amort_rate", "spread", "cov_scale",
         "l_status", "l_cash", "ltv_max", "ltv_cure", "dscr_min", "cure_months", "cash_sweep",
         "refi_ltv", "sofr", "t", "marks", "coll", "debt", "called", "called_at", "refused",
         "age", "counts", "flags", "btc_sales")


def run_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """Phase 3 for the runs ``runs`` of a stack (``contexts`` their months' hand-overs) by one
    call of :func:`kernels.lenders_batch` over the stacked arrays (:func:`batch_inputs`),
    then per run what :func:`_run_compiled` does with the kernel's results, in its order:
    the ``margin_call`` events, the ``btc_sales`` outside flow, ``MonthState``'s marks, debt
    and collateral (the run's rows of the hand-over arrays), the ``refinancing_refused``
    events: the same bits as each run's own phase (``tests/world/test_batch_lenders.py``).
    Per run before the call: the lender book's marks table claimed for the month
    (``LenderBook.marks_table``: whether its book row is stale), the BTC price and the month
    (>= 1 in a stack's month: phase 1 has counted it, so there is a last month to mark at,
    as :func:`run` requires of its compiled path). Runs that cannot share a call each run
    their own phase (:func:`run`). Nothing here raises for one run: phase 3 has no error
    (the kernel has no error code, and the glue only logs and counts)."""
    b = stack.inputs("lenders", batch_inputs)
    models = stack.models
    if b is None:
        for r, c in zip(runs, contexts, strict=True):
            run(models[r], c.month)
        return
    stale, btc_price, t = b["stale"], b["btc_price"], b["t"]
    for r in runs:
        env = models[r].env
        stale[r] = models[r].lenders.marks_table(env)[1]
        btc_price[r] = env.btc
        t[r] = env.t
    kernels.lenders_batch(np.array(runs, dtype=np.int64), *b["args"])
    counts, flags = b["counts"].tolist(), b["flags"].tolist()
    called, called_at, refused, btc_sales, rows = (b["called"], b["called_at"], b["refused"],
                                                   b["btc_sales"], b["rows"])
    for r, c in zip(runs, contexts, strict=True):
        m, month = models[r], c.month
        n_called, n_refused = counts[r]
        _, btc_sold, swept = flags[r]
        if n_called:
            idx = called[r, :n_called]
            m.log_events("margin_call", m.kind_agents(idx), idx,
                         amount=called_at[r, 0, :n_called], price=called_at[r, 1, :n_called])
        if btc_sold:
            m.add_outside_flow("btc_sales", btc_sales[r])
        marks, coll, debt = rows[r]
        month.marks, month.debt, month.coll = marks, None if swept else debt, coll
        if n_refused:
            idx = refused[r, :n_refused]
            L = m.loans
            m.log_events("refinancing_refused", "lender", L.lender[idx],
                         amount=L.principal[idx])


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
