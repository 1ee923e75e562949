"""Phase 8, funding (docs/model.md section 3): lenders' other loans, funding, repo and
warehouse costs, repayment of outside funding, runs on distressed lenders, failed lenders'
estates, and the Rogers-Veraart clearing of the funding network (Eisenberg-Noe when alpha =
beta = 1) that sets equity and switches failures and deleveraging on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.linalg import LinAlgError  # what numerics.solve raises (the class only: no BLAS)

from agents.lender import LenderStatus
from sim.core.contagion import CLEARING_MAX_ITER, CLEARING_TOL, rogers_veraart_state
from sim.world.kernels import funding as kernels

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel
    from sim.world.stack import MonthContext, RunStack


def pay_lender_costs(m: LiquidationModel) -> None:
    """Funding interest, repo interest and warehouse costs; unpaid amounts capitalise.

    (Sums are ``np.add.reduce``, what ``ndarray.sum`` calls, without its wrapper.)"""
    lb, desk, e, lc = m.lenders, m.desk, m.cfg.environment, m.cfg.lenders
    add = np.add.reduce
    r_f = (e.sofr + lc.funding_rate_spread) / 12.0
    ib_int = m.interbank * r_f  # i pays j
    out_int = lb.outside * r_f
    repo_int = lb.repo_debt * desk.rate(e.sofr) / 12.0
    hold = add(lb.inventory, axis=1) * lc.holding_cost
    if m.sites is not None:  # GPUs run in place at a host pay no warehouse cost
        hold = np.maximum(add(lb.inventory, axis=1) - m.sites.hosted_units, 0.0) \
            * lc.holding_cost
    due = add(ib_int, axis=1) + out_int + repo_int + hold
    f = np.divide(np.maximum(lb.cash, 0.0), due, out=np.ones(lb.n), where=due > 0)
    f = np.minimum(f, 1.0)
    if np.minimum.reduce(f) == 1.0:
        # every lender pays in full (f = 1: 1.0 * x = x), nothing is left unpaid and the
        # capitalisation below would add x * 0.0 = +-0 to each balance; with rates and
        # holding costs >= 0 (config) that leaves every balance as it is (no balance here
        # is ever -0.0: sums and differences only make -0.0 from -0.0)
        lb.cash -= due
        lb.cash += add(ib_int, axis=0)
        desk.receive_interest(add(repo_int), m.env.t)
        m.add_outside_flow("funding_outside", -add(out_int))
        m.add_outside_flow("holding_costs", -add(hold))
        return
    lb.cash -= f * due
    lb.cash += add(ib_int * f[:, None], axis=0)
    desk.receive_interest(add(repo_int * f), m.env.t)
    m.add_outside_flow("funding_outside", -add(out_int * f))
    m.add_outside_flow("holding_costs", -add(hold * f))
    m.interbank += ib_int * (1.0 - f)[:, None]
    lb.outside += (out_int + hold) * (1.0 - f)
    unpaid_repo = repo_int * (1.0 - f)
    lb.repo_debt += unpaid_repo
    desk.capitalise(add(unpaid_repo))


def run_on(m: LiquidationModel, who: np.ndarray, rate: float, outside_only: bool = False) -> None:
    """Creditors withdraw ``rate`` of their funding to lenders ``who``, paid from cash."""
    if not np.count_nonzero(who):  # nobody is run on: every amount below would be zero
        return
    lb = m.lenders
    ib = m.interbank * who[:, None] * (0.0 if outside_only else rate)
    out = lb.outside * who * rate
    due = ib.sum(axis=1) + out
    f = np.minimum(np.divide(np.maximum(lb.cash, 0.0), due, out=np.ones(lb.n),
                             where=due > 0), 1.0)
    lb.cash -= f * due
    lb.cash += (ib * f[:, None]).sum(axis=0)
    m.interbank -= ib * f[:, None]
    lb.outside -= out * f
    m.add_outside_flow("funding_outside", -(out * f).sum())


def estates_pay_out(m: LiquidationModel) -> None:
    """Failed lenders' estates pass all their cash to creditors, pro rata."""
    lb, desk = m.lenders, m.desk
    failed = (lb.status == LenderStatus.FAILED) & (lb.cash > 0)
    if not np.count_nonzero(failed):
        return
    owed = m.interbank.sum(axis=1) + lb.outside + lb.repo_debt
    f = np.where(failed, np.minimum(np.divide(lb.cash, owed, out=np.zeros(lb.n),
                                              where=owed > 0), 1.0), 0.0)
    ib = m.interbank * f[:, None]
    out, repo = lb.outside * f, lb.repo_debt * f
    lb.cash -= ib.sum(axis=1) + out + repo
    lb.cash += ib.sum(axis=0)
    m.interbank -= ib
    lb.outside -= out
    lb.repo_debt -= repo
    desk.receive_repayment(repo.sum(), m.env.t)
    m.add_outside_flow("funding_outside", -out.sum())


def clear_funding(m: LiquidationModel) -> np.ndarray:
    """Rogers-Veraart clearing of the funding network; sets equity and assets.

    Returns which lenders default in the clearing (pay less than their obligations)."""
    lb = m.lenders
    marks = lb.marks(m.env, m.price_hist, m.env.t, m.cfg.lenders.appraisal_lag)
    loans = m.loans.by_lender(m.loans.exposure, lb.n)
    ext = lb.cash + loans + np.add.reduce(lb.inventory * marks, axis=1)
    if lb.has_other:
        ext = ext + lb.other_loans
    n = lb.n
    liab = m.clearing_liab  # row and column n (outside creditors) stay as set in __init__
    liab[:n, :n] = m.interbank
    liab[:n, n] = lb.outside + lb.repo_debt
    e = m.clearing_ext
    np.maximum(ext, 0.0, out=e[:n])  # e[n] = 0: outside creditors hold no assets here
    c = m.cfg.contagion
    p, lbar, equity, solvent = rogers_veraart_state(liab, e, c.alpha, c.beta)
    lb.equity = equity[:n] + (ext - e[:n])
    if solvent:
        # p = Lbar: every claim is worth its face (p / Lbar = 1 exactly, and x * 1.0 = x)
        # and nobody pays less than it owes
        lb.assets = ext + np.add.reduce(m.interbank, axis=0)
        return np.zeros(n, dtype=bool)
    ratio = np.divide(p, lbar, out=np.ones(n + 1), where=lbar > 0)
    ib_assets = (m.interbank * ratio[:n, None]).sum(axis=0)
    lb.assets = ext + ib_assets
    return p[:n] < lbar[:n] * (1.0 - 1e-9)


def repay_outside(m: LiquidationModel) -> None:
    """Sound lenders use cash above their liquidity target to repay outside funding."""
    lb = m.lenders
    rep = lb.outside_repayment()
    lb.cash -= rep
    lb.outside -= rep
    m.add_outside_flow("funding_outside", -np.add.reduce(rep))


def run(m: LiquidationModel) -> None:
    """Phase 8: other loans' income and losses, funding, repo and warehouse costs
    (:func:`pay_lender_costs`), repayment of outside funding (:func:`repay_outside`), a run of
    run_rate on lenders not NORMAL (:func:`run_on`), failed lenders' estates
    (:func:`estates_pay_out`), then the Rogers-Veraart clearing (:func:`clear_funding`): a
    lender paying less than it owes fails; a sound lender whose equity / assets falls below
    capital_floor x its initial ratio deleverages, and heals above 1.2 x that floor.

    On the compiled engine the whole phase is one kernel call (:func:`run_compiled`)."""
    if m.engine == "compiled":
        run_compiled(m)
        return
    lb, lc = m.lenders, m.cfg.lenders
    if lb.has_other:  # other loans pay interest (from outside) and lose at their rate
        income, _ = lb.other_loans_month(bool(m.env.stress))
        lb.cash += income
        m.add_outside_flow("other_loans", np.add.reduce(income))
    pay_lender_costs(m)
    repay_outside(m)
    run_on(m, lb.status != LenderStatus.NORMAL, lc.run_rate)
    estates_pay_out(m)
    in_default = clear_funding(m)
    if np.count_nonzero(in_default):  # (else no failure: nothing to log or switch)
        new_fail = in_default & (lb.status != LenderStatus.FAILED)
        failed = new_fail.nonzero()[0]
        m.log_events("lender_failure", "lender", failed, amount=lb.equity[failed])
        lb.status[new_fail] = LenderStatus.FAILED
    ratio = lb.capital_ratio()
    floor = lc.capital_floor * lb.capital_ratio0
    stress = lb.starts_deleveraging(ratio, floor)
    if np.count_nonzero(stress):
        weak = stress.nonzero()[0]
        m.log_events("deleveraging", "lender", weak, amount=lb.equity[weak])
        lb.status[stress] = LenderStatus.DELEVERAGING
    heal = lb.heals(ratio, floor)  # a lender heals back to normal above 1.2 x its floor
    if np.count_nonzero(heal):
        lb.status[heal] = LenderStatus.NORMAL


_NO_SITES = np.zeros(0)  # hosted units without sites (not read by the kernel)


def run_compiled(m: LiquidationModel) -> None:
    """:func:`run` as one call of :func:`sim.world.kernels.funding.funding_month` (every
    switch: other loans, sites, the repo desk, clearing with defaults), which also takes the
    month's marks (:meth:`~agents.lender.LenderBook.marks`, whose table of book, appraisal
    and market marks the kernel brings up to date when its book row is this month's; else
    the method fills it first); the outside flows, the desk's payments and the events are
    booked after it in the numpy code's order and with its amounts (each outside flow added
    to ``m.flows`` as :meth:`~sim.world.model.LiquidationModel.add_outside_flow` adds it, as
    a Python float). The rates and the clearing's parameters, fixed in a run, are read once
    (``m.kernel_inputs["funding"]``), with the kernel's scratch arrays (the month's outside
    flows and the indices of the lenders failing and deleveraging, read here in the month that
    fills them). The kernel writes the lenders' new equity and assets in place, into
    ``lenders.equity`` and ``lenders.assets`` (it reads last month's assets, for the outside
    repayments, before it writes them; on an error it writes neither, as the numpy clearing
    raises before it binds them)."""
    lb, loans, env = m.lenders, m.loans, m.env
    t = env.t
    st = m.kernel_inputs.get("funding")
    if st is None or st[9].shape[0] != lb.n:
        st = _static(m)
    (r_f, repo_rate, holding_cost, run_rate, lag, alpha, beta, capital_floor, fl, failed,
     weak) = st
    equity = lb.equity
    refresh = lb.book_marks_current(env)  # the book marks are this month's (the usual case)
    if not refresh:
        lb.marks(env, m.price_hist, t, lag)
    sites = m.sites
    code, n_failed, n_weak = kernels.funding_month(
        m.interbank, lb.cash, lb.outside, lb.repo_debt, lb.inventory, lb.status, lb.assets,
        lb.has_other, bool(env.stress), lb.other_loans, lb.other_losses, lb.other_yield,
        lb.other_loss_calm, lb.other_loss_stress,
        _NO_SITES if sites is None else sites.hosted_units, sites is not None, r_f,
        repo_rate, holding_cost, lb.cash_share, run_rate, loans.active, loans.principal,
        loans.accrued, loans.lender, lb.mark_table, lb.mark_rule, m.price_hist, t, lag,
        refresh, m.clearing_liab, m.clearing_ext, alpha, beta, CLEARING_TOL,
        CLEARING_MAX_ITER, capital_floor, lb.capital_ratio0, equity, lb.assets, fl, failed,
        weak)
    _book(m, t, fl)
    if code:
        _raise(m, code)
    _log(m, equity, failed, n_failed, weak, n_weak)


def _static(m: LiquidationModel) -> tuple:
    """What :func:`run_compiled` keeps in ``m.kernel_inputs["funding"]`` (made at its first
    compiled month, and again should the lender count change): the monthly funding rate, the
    desk's rate, the holding cost, the run rate, the appraisal lag, the clearing's alpha and
    beta, the capital floor, and the scratch of the month's outside flows (13,) and of the
    indices of the lenders failing and deleveraging (n,)."""
    st = m.kernel_inputs.get("funding")
    if st is None or st[9].shape[0] != m.lenders.n:  # (as run_compiled checks it)
        lc, e, c = m.cfg.lenders, m.cfg.environment, m.cfg.contagion
        st = m.kernel_inputs["funding"] = (
            (e.sofr + lc.funding_rate_spread) / 12.0, m.desk.rate(e.sofr), lc.holding_cost,
            lc.run_rate, lc.appraisal_lag, c.alpha, c.beta, lc.capital_floor, np.empty(13),
            np.empty(m.lenders.n, np.int64), np.empty(m.lenders.n, np.int64))
    return st


# phase 8's kernel arguments a run's model holds as resident arrays (sim.world.stack), by
# argument name of kernels.funding_batch: (owner, name) of the array run_compiled passes.
# The loan book's arrays (_LOANS) may differ in length between runs (the batched kernel cuts
# each run's row to its own); every other one must have one shape in every run
_STACKED = (("interbank", ("model", "interbank")), ("cash", ("lenders", "cash")),
            ("outside", ("lenders", "outside")), ("repo_debt", ("lenders", "repo_debt")),
            ("inventory", ("lenders", "inventory")), ("status", ("lenders", "status")),
            ("other_loans", ("lenders", "other_loans")),
            ("other_losses", ("lenders", "other_losses")),
            ("hosted", ("sites", "hosted_units")),
            ("active", ("loans", "active")), ("principal", ("loans", "principal")),
            ("accrued", ("loans", "accrued")), ("loan_lender", ("loans", "lender")),
            ("table", ("lenders", "_table")), ("mark_rule", ("lenders", "mark_rule")),
            ("price_hist", ("model", "price_hist")), ("liab", ("model", "clearing_liab")),
            ("e_full", ("model", "clearing_ext")),
            ("equity", ("lenders", "equity")), ("assets", ("lenders", "assets")))
_LOANS = ("active", "principal", "accrued", "loan_lender")
# the lenders' rates by type the kernel reads, by argument name: rows of the table their book
# picks them from at the build (views, so per run and not in the stacks), never written after
# it; stacked (copied) for the batch at its first month
_CONSTANT = (("other_yield", "other_yield"), ("loss_calm", "other_loss_calm"),
             ("loss_stress", "other_loss_stress"), ("cash_share", "cash_share"),
             ("capital_ratio0", "capital_ratio0"))


def _held(m: LiquidationModel) -> dict[str, np.ndarray]:
    """The arrays :func:`run_compiled` passes for the names of :data:`_STACKED`."""
    lb, loans = m.lenders, m.loans
    return {"interbank": m.interbank, "cash": lb.cash, "outside": lb.outside,
            "repo_debt": lb.repo_debt, "inventory": lb.inventory, "status": lb.status,
            "other_loans": lb.other_loans, "other_losses": lb.other_losses,
            "hosted": _NO_SITES if m.sites is None else m.sites.hosted_units,
            "active": loans.active,
            "principal": loans.principal, "accrued": loans.accrued,
            "loan_lender": loans.lender, "table": lb.mark_table, "mark_rule": lb.mark_rule,
            "price_hist": m.price_hist, "liab": m.clearing_liab, "e_full": m.clearing_ext,
            "equity": lb.equity, "assets": lb.assets}


def batch_inputs(stack: RunStack) -> dict | None:
    """What :func:`run_batch` passes to :func:`kernels.funding_batch` for a stack's runs, made
    at its first batched month: the stacks of the arrays each run's phase 8 passes
    (:data:`_STACKED`, checked to be the very arrays the run's own phase would pass, of one
    shape in every run but the loan book's, whose lengths go in ``n_loans``), the lenders'
    constant rates stacked (:data:`_CONSTANT`), the numbers of :func:`_static` and the
    switches as (R,) arrays, and the batch's scratch (the outside
    flows, the failing and deleveraging lenders, the month's numbers and the kernel's
    results, by run). None when the runs cannot share one call (not all compiled, sites in
    some runs only, shapes that differ): then each runs its own phase."""
    models = stack.models
    if any(m.engine != "compiled" for m in models):
        return None
    sites = {m.sites is not None for m in models}
    if len(sites) != 1:
        return None
    on_sites = sites.pop()
    sts = [_static(m) for m in models]
    held = [_held(m) for m in models]
    n = len(models)
    out: dict[str, np.ndarray] = {}
    for name, key in _STACKED:
        if name == "hosted" and not on_sites:
            out[name] = np.zeros((n, 0))
            continue
        if key not in stack.stacks:
            return None
        if name not in _LOANS and len(set(stack.shapes[key])) != 1:
            return None
        if any(h[name] is not stack.view(key, r) for r, h in enumerate(held)):
            return None
        out[name] = stack.stacks[key]
    for name, attr in _CONSTANT:
        rows = [getattr(m.lenders, attr) for m in models]
        if len({a.shape for a in rows}) != 1:
            return None
        out[name] = np.stack(rows)
    out["n_loans"] = np.array([s[0] for s in stack.shapes[("loans", "active")]],
                              dtype=np.int64)
    out["has_other"] = np.array([m.lenders.has_other for m in models], dtype=np.bool_)
    out["has_sites"] = np.full(n, on_sites, dtype=np.bool_)
    for i, name in ((0, "r_f"), (1, "repo_rate"), (2, "holding_cost"), (3, "run_rate"),
                    (5, "alpha"), (6, "beta"), (7, "capital_floor")):
        out[name] = np.array([st[i] for st in sts], dtype=np.float64)
    out["lag"] = np.array([st[4] for st in sts], dtype=np.int64)
    n_l = models[0].lenders.n
    out["flows"] = np.zeros((n, 13))
    out["failed"] = np.zeros((n, n_l), dtype=np.int64)
    out["weak"] = np.zeros((n, n_l), dtype=np.int64)
    out["t"] = np.zeros(n, dtype=np.int64)
    out["stress"] = np.zeros(n, dtype=np.bool_)
    out["refresh"] = np.zeros(n, dtype=np.bool_)
    for name in ("code", "n_failed", "n_weak"):
        out[name] = np.zeros(n, dtype=np.int64)
    return out


def run_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """Phase 8 for the runs ``runs`` of a stack by one call of :func:`kernels.funding_batch`
    over the stacked arrays (:func:`batch_inputs`), each run's outside flows, the desk's
    payments and the events then booked as :func:`run_compiled` books them: the same bits as
    each run's own phase (``tests/world/test_batch_funding.py``). Each run's marks are made
    first, as its own phase makes them (the method's table filled where its book row is not
    this month's). A run whose kernel reports an error gets its outside flows and desk
    payments booked, then the error its own phase would raise (:func:`_raise`) as its failure
    (:meth:`RunStack.fail`), after every other run's results; the others go on. Runs that
    cannot share a call each run their own phase (:func:`run`)."""
    b = stack.inputs("funding", batch_inputs)
    models = stack.models
    if b is None:
        for r in runs:
            run(models[r])
        return
    t, stress, refresh, lag = b["t"], b["stress"], b["refresh"], b["lag"]
    for r in runs:
        m = models[r]
        env, lb = m.env, m.lenders
        t[r] = env.t
        stress[r] = bool(env.stress)
        refresh[r] = lb.book_marks_current(env)
        if not refresh[r]:
            lb.marks(env, m.price_hist, env.t, int(lag[r]))
    code, n_failed, n_weak = b["code"], b["n_failed"], b["n_weak"]
    kernels.funding_batch(
        np.array(runs, dtype=np.int64), b["n_loans"], b["interbank"], b["cash"], b["outside"],
        b["repo_debt"], b["inventory"], b["status"], b["has_other"], stress, b["other_loans"],
        b["other_losses"], b["other_yield"], b["loss_calm"], b["loss_stress"], b["hosted"],
        b["has_sites"], b["r_f"], b["repo_rate"], b["holding_cost"], b["cash_share"],
        b["run_rate"], b["active"], b["principal"], b["accrued"], b["loan_lender"],
        b["table"], b["mark_rule"], b["price_hist"], t, lag, refresh, b["liab"], b["e_full"],
        b["alpha"], b["beta"], CLEARING_TOL, CLEARING_MAX_ITER, b["capital_floor"],
        b["capital_ratio0"], b["equity"], b["assets"], b["flows"], b["failed"], b["weak"],
        code, n_failed, n_weak)
    failures = []
    for r in runs:
        m = models[r]
        _book(m, m.env.t, b["flows"][r])
        if code[r]:
            failures.append(r)
            continue
        _log(m, m.lenders.equity, b["failed"][r], int(n_failed[r]), b["weak"][r],
             int(n_weak[r]))
    for r in failures:
        try:
            _raise(models[r], int(code[r]))
        except Exception as e:  # noqa: BLE001 - the run's own phase raises it: its failure
            stack.fail(r, e)


def _book(m: LiquidationModel, t: int, fl: np.ndarray) -> None:
    """The kernel's outside flows ``fl`` (13,) and the desk's payments, booked for
    :func:`run_compiled` and :func:`run_batch`: in the numpy code's order and with its amounts (the
    flows as Python floats, as add_outside_flow adds them; the desk's payments numpy floats,
    as the numpy code pays the desk)."""
    desk, flows = m.desk, m.flows
    f = fl.tolist()
    if m.lenders.has_other:
        flows["other_loans"] += f[0]
    desk.receive_interest(fl[1], t)
    flows["funding_outside"] += f[2]
    flows["holding_costs"] += f[3]
    if not f[5]:  # some lender could not pay in full: the unpaid repo interest capitalises
        desk.capitalise(fl[4])
    flows["funding_outside"] += -f[6]
    if f[7]:  # a run on the lenders not NORMAL
        flows["funding_outside"] += -f[8]
    if f[9]:  # failed lenders' estates paid out
        desk.receive_repayment(fl[10], t)
        flows["funding_outside"] += -f[11]


def _log(m: LiquidationModel, equity: np.ndarray, failed: np.ndarray, n_failed: int,
         weak: np.ndarray, n_weak: int) -> None:
    """The month's events, for :func:`run_compiled` and :func:`run_batch`: the lenders newly failed
    (``failed[:n_failed]``), then those that start deleveraging (``weak[:n_weak]``), each
    with its new equity."""
    if n_failed:
        failed = failed[:n_failed]
        m.log_events("lender_failure", "lender", failed, amount=equity[failed])
    if n_weak:
        weak = weak[:n_weak]
        m.log_events("deleveraging", "lender", weak, amount=equity[weak])


def _raise(m: LiquidationModel, code: int) -> None:
    """Raise what the numpy clearing raises for the kernel's error ``code``."""
    c = m.cfg.contagion
    if code == kernels.BAD_INPUT:  # raises the numpy clearing's ValueError
        rogers_veraart_state(m.clearing_liab, m.clearing_ext, c.alpha, c.beta)
        raise AssertionError("the compiled clearing rejected inputs the numpy one accepts")
    if code == kernels.SINGULAR:
        raise LinAlgError("Singular matrix")
    if code == kernels.NO_CONVERGENCE:
        raise RuntimeError(f"clearing did not converge in {CLEARING_MAX_ITER} rounds")
