"""Phase 4, defaults (docs/model.md section 3): arrears past the grace period, margin calls
uncured past the cure period and (``dscr_default_months`` > 0) DSCR breaches still open after
their sweep; GPUs are repossessed into the lenders' inventory, cash and BTC seized, exposure
written off."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.borrower import BorrowerStatus
from agents.sites import LENDER
from sim.core.finance import largest_remainder
from sim.world.eventlog import NAME_CODE
from sim.world.kernels import defaults as kernels
from sim.world.phases import borrowers, lenders
from sim.world.state import MonthState

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel
    from sim.world.stack import MonthContext, RunStack


def accelerate(m: LiquidationModel, month: MonthState, dscr_default: np.ndarray) -> None:
    """The lender calls (accelerates) the facility of each borrower in ``dscr_default``
    (a DSCR breach past its sweep); a borrower whose cash and coins cover all it owes pays
    it off (selling coins for what cash lacks),
    which ends the breach and is not a default (no loss, no repossession: the event
    ``loan_accelerated_repaid``), and is dropped from ``dscr_default`` in place. Only the
    others default: an event of default becomes a loss only when the borrower cannot pay
    the accelerated debt (Moody's and S&P count a default by missed payment or distressed
    exchange, not by a covenant breach that is repaid)."""
    b, L, btc = m.borrowers, m.loans, m.env.btc
    debt = L.by_borrower(L.exposure, b.n)
    pays = dscr_default & (np.maximum(b.cash, 0.0) + b.btc * btc >= debt)
    if not np.count_nonzero(pays):
        return
    idx = pays.nonzero()[0]
    # coins (pledged ones too: the pledge ends with the loan) are sold for what cash lacks
    sell = np.where(pays, np.minimum(b.btc, np.maximum(debt - b.cash, 0.0) / btc), 0.0)
    pledged_sold = False
    if np.count_nonzero(sell):
        b.btc -= sell
        # pledged coins are sold only where the free ones ran out (b.btc < b.btc_pledged)
        pledged_sold = bool(np.count_nonzero(b.btc < b.btc_pledged))
        b.btc_pledged = np.minimum(b.btc_pledged, b.btc)
        b.cash += sell * btc
        m.add_outside_flow("btc_sales", np.add.reduce(sell * btc))
    borrowers.prepay(m, np.where(pays, np.minimum(debt, b.cash), 0.0))
    if month.coll is not None:  # phase 3's evaluation of the month
        month.debt = None  # debt moved: phases 4 and 5 recompute it
        if pledged_sold:
            # pledged coins are collateral (fleet x lead mark + pledged BTC x BTC price):
            # phase 3's cached value is stale for the payers; re-evaluate it as phase 3 did
            month.coll = lenders.collateral(m, month.marks)
    b.dscr_breach[pays] = 0
    m.log_events("loan_accelerated_repaid", m.kind_agents(idx), idx, amount=debt[idx])
    dscr_default &= ~pays


def run(m: LiquidationModel, month: MonthState) -> None:
    """Phase 4. A borrower defaults on arrears older than grace_months, a margin call open
    longer than cure_months or (dscr_default_months > 0) a DSCR breach open longer than
    cure_months + dscr_default_months that it cannot pay off (:func:`accelerate`)
    (:func:`defaulting`). Its GPUs go to the facility's lenders in proportion to exposure
    (:func:`repossess`), its cash and BTC are seized up to the exposure at default EAD and
    each lender writes off its EAD and books recovery = seized x EAD / EAD_facility
    (:func:`seize`); its loans close (:func:`close_out`).

    On the compiled engine, when phase 3 has valued the month's collateral (``month.coll``),
    the phase is :func:`_run_compiled`: one kernel call in a month nobody is triggered, two
    otherwise; else, and on the numpy engine, the numpy code below (the kernels' oracle)."""
    if m.engine == "compiled" and month.coll is not None:
        _run_compiled(m, month)
        return
    claims = defaulting(m, month)
    if claims is None:
        return
    dead, rows, ead, group, ead_b, reasons = claims
    debt, coll = lenders.month_debt_coll(m, month)
    holder = repossess(m, dead, rows, ead, group)
    seize(m, dead, ead, group, ead_b, holder)
    m.paper_recovery += np.minimum(coll[dead], debt[dead]).sum()
    close_out(m, dead, rows)
    m.log_events(reasons, m.kind_agents(dead), dead, units=0, amount=debt[dead],
                 price=coll[dead])
    m.new_defaults = np.bincount(m.borrowers.kind[dead], minlength=2)


_REASONS = ("default_payment", "default_covenant", "default_dscr")  # the kernel's codes
_REASON_CODES = np.array([NAME_CODE[r] for r in _REASONS], dtype=np.int64)  # the log's codes
_NO_MATRIX = np.zeros((0, 0))  # rep_value without the outside demand (not read)
# the site book's arrays without sites (not read): holder, lender, since, gpu_mw, mine_mw,
# host_mw
_NO_SITES = (np.zeros(0, np.int8), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
             np.zeros(0), np.zeros(0))


def _scratch(m: LiquidationModel) -> tuple:
    """The compiled phase's scratch arrays (the events', the repossessed units per lender and
    generation), kept per run (``m.kernel_inputs``) and remade if a book's size changed."""
    b, L, lb = m.borrowers, m.loans, m.lenders
    nb, nrow, nl, g = b.n, len(L.borrower), lb.n, m.n_gen
    st = m.kernel_inputs.get("defaults")
    if st is None or st[0] != (nb, nrow, nl, g):
        st = m.kernel_inputs["defaults"] = ((nb, nrow, nl, g), (
            np.empty(nb, np.int64), np.empty(nb, np.int64), np.empty(nb), np.empty(nb),
            np.empty(nb, np.int64), np.empty(nb),
            np.empty(nrow * g, np.int64), np.empty(nrow * g, np.int64),
            np.empty(nrow * g, np.int64), np.empty((nl, g), np.int64)))
    return st[1]


def _run_compiled(m: LiquidationModel, month: MonthState) -> None:
    """Phase 4 as :func:`sim.world.kernels.defaults.any_trigger` and, when some borrower is
    triggered, :func:`sim.world.kernels.defaults.defaults_month`; then, in the numpy code's
    order, its events (``loan_accelerated_repaid``, ``repossession``, the defaults), outside
    flows (``btc_sales`` of the payoffs, of the seizures, ``unpaid_suppliers``), totals and
    the sites' repossession's totals (``SiteBook.repossess``, whose arrays the kernel
    updates). The kernel writes every array in place, those numpy rebinds included (the
    loans' principal, accrued and overdue, ``borrowers.btc_pledged``, ``model.rep_value``,
    ``model.new_defaults``, and the month's collateral and debt: ``month.coll`` and, when not
    None, ``month.debt`` are the resident arrays of :func:`sim.world.phases.lenders.
    hand_over_arrays`, which a recomputed debt is written into)."""
    b, lc = m.borrowers, m.cfg.lenders
    if not kernels.any_trigger(lc.grace_months, lc.cure_months, lc.dscr_default_months,
                               b.status, b.arrears_months, b.call_months, b.dscr_breach):
        return  # the common month: nothing more is looked up
    _run_triggered(m, month)


def _run_triggered(m: LiquidationModel, month: MonthState) -> None:
    """:func:`_run_compiled` in a month some borrower is triggered (:func:`kernels.
    any_trigger`): :func:`kernels.defaults_month` and what follows it."""
    b, lc = m.borrowers, m.cfg.lenders
    grace, cure, dm = lc.grace_months, lc.cure_months, lc.dscr_default_months
    L, lb, env = m.loans, m.lenders, m.env
    dead, reason, ev_amt, ev_price, acc_idx, acc_amt, rep_l, rep_g, rep_u, new_units = \
        _scratch(m)
    # this month's debt, or (month.debt None) the resident array the kernel fills when a
    # default needs the debt
    have_debt = month.debt is not None
    debt = month.debt if have_debt else lenders.hand_over_arrays(m)[2]
    sb = m.sites
    outside_on = m.outside_on
    (n_acc, acc_sold, acc_btc, _, _, n_dead, debt_computed, n_rep, btc_sales, unpaid_sum,
     ead_sum, rec_sum, paper_sum, site_mw, mine_mw) = kernels.defaults_month(
        grace, cure, dm, b.status, b.arrears_months, b.call_months, b.dscr_breach, b.kind,
        b.cash, b.btc, b.btc_pledged, b.fleet, env.btc, m.lead, month.marks,
        L.borrower, L.lender, L.principal, L.accrued, L.overdue, L.active,
        lb.inventory, lb.inv_since, lb.cash, lb.writeoffs, lb.recoveries, lb.claim_pool, env.t,
        debt, have_debt, month.coll,
        dead, reason, ev_amt, ev_price, acc_idx, acc_amt,
        rep_l, rep_g, rep_u, new_units, m.new_defaults,
        outside_on, m.rep_value if outside_on else _NO_MATRIX, m.fundamental,
        sb is not None, *(_NO_SITES if sb is None else (
            sb.holder, sb.lender, sb.since, sb.gpu_mw, sb.mine_mw, sb.host_mw)), LENDER)
    if n_acc:
        if acc_sold:
            m.add_outside_flow("btc_sales", acc_btc)
        month.debt = None  # the payoffs moved it (the collateral is re-evaluated in place)
        idx = acc_idx[:n_acc]
        m.log_events("loan_accelerated_repaid", m.kind_agents(idx), idx, amount=acc_amt[:n_acc])
    if not n_dead:
        return
    if debt_computed:
        month.debt = debt
    dead = dead[:n_dead]
    m.log_events("repossession", "lender", rep_l[:n_rep], rep_g[:n_rep], rep_u[:n_rep])
    m.add_outside_flow("btc_sales", btc_sales)
    m.add_outside_flow("unpaid_suppliers", -unpaid_sum)
    m.ead_total += ead_sum
    m.recovered_total += rec_sum
    m.paper_recovery += paper_sum
    if sb is not None:  # SiteBook.repossess' totals (its arrays updated by the kernel)
        sb.repossessed_mw += float(site_mw)
        sb.estate_mw += float(mine_mw)
    m.log_events(_REASON_CODES[reason[:n_dead]], m.kind_agents(dead), dead,
                 units=0, amount=ev_amt[:n_dead], price=ev_price[:n_dead])


# what kernels.any_trigger reads of a run's resident arrays (sim.world.stack), by argument
_STACKED = (("status", ("borrowers", "status")),
            ("arrears_months", ("borrowers", "arrears_months")),
            ("call_months", ("borrowers", "call_months")),
            ("dscr_breach", ("borrowers", "dscr_breach")))


def batch_inputs(stack: RunStack) -> dict | None:
    """What :func:`run_batch` passes to :func:`kernels.any_trigger_batch` for a stack's runs,
    made at its first batched month: the stacks of the borrower arrays :func:`_run_compiled`
    passes (:data:`_STACKED`, checked to be the very arrays, of one shape in every run), the
    grace, cure and DSCR-default months as (R,) arrays and the answers' scratch. None when
    the runs cannot share one call (not all compiled, shapes that differ): then each runs
    its own phase."""
    models = stack.models
    if any(m.engine != "compiled" for m in models):
        return None
    out: dict[str, np.ndarray] = {}
    for name, key in _STACKED:
        if key not in stack.stacks or len(set(stack.shapes[key])) != 1:
            return None
        if any(getattr(m.borrowers, name) is not stack.view(key, r)
               for r, m in enumerate(models)):
            return None
        out[name] = stack.stacks[key]
    for name in ("grace_months", "cure_months", "dscr_default_months"):
        out[name] = np.array([getattr(m.cfg.lenders, name) for m in models], dtype=np.int64)
    out["triggered"] = np.zeros(len(models), dtype=np.bool_)
    return out


def run_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """Phase 4 for the runs ``runs`` of a stack (``contexts`` their months' hand-overs): the
    common month's test of every run by one call of :func:`kernels.any_trigger_batch`
    (:func:`batch_inputs`), then, in run order, :func:`_run_triggered` (the rest of
    :func:`_run_compiled`, per run) for each run some borrower of which is triggered: the
    same bits as each run's own phase (``tests/world/test_batch_lenders.py``). A month in
    which some run's phase 3 left no collateral (``month.coll`` None, where :func:`run` takes
    the numpy code), or runs that cannot share a call, run each run's own phase (:func:`run`).
    Nothing here raises for one run: phase 4 has no error (its kernels have no error code)."""
    b = stack.inputs("defaults", batch_inputs)
    models = stack.models
    if b is None or any(c.month.coll is None for c in contexts):
        for r, c in zip(runs, contexts, strict=True):
            run(models[r], c.month)
        return
    kernels.any_trigger_batch(np.array(runs, dtype=np.int64), b["grace_months"],
                              b["cure_months"], b["dscr_default_months"], b["status"],
                              b["arrears_months"], b["call_months"], b["dscr_breach"],
                              b["triggered"])
    triggered = b["triggered"].tolist()
    for r, c in zip(runs, contexts, strict=True):
        if triggered[r]:
            _run_triggered(models[r], c.month)


def defaulting(m: LiquidationModel, month: MonthState) -> tuple | None:
    """The borrowers defaulting this month (:meth:`agents.borrower.BorrowerBook.
    default_triggers`, after the accelerated facilities that are paid off), with their
    facilities' active rows, each row's exposure (EAD), the borrower's group index of each
    row, each borrower's EAD and the event of each (``default_payment``,
    ``default_covenant``, ``default_dscr``); None when nobody defaults."""
    b, L, lc = m.borrowers, m.loans, m.cfg.lenders
    late, trig, dscr_default = b.default_triggers(lc.grace_months, lc.cure_months,
                                                  lc.dscr_default_months)
    if dscr_default is not None:
        # a DSCR breach still open dscr_default_months after its cash sweep: the facility is
        # called, and only a borrower that cannot pay it off defaults
        if np.count_nonzero(dscr_default):
            accelerate(m, month, dscr_default)
        trig = trig | dscr_default
    dead = trig.nonzero()[0]
    if len(dead) == 0:
        return None
    payment = late  # read only at ``dead``, which are all alive: the payment defaults
    rows = (L.active & trig[L.borrower]).nonzero()[0]
    ead = L.exposure[rows]
    pos = np.full(b.n, -1)
    pos[dead] = np.arange(len(dead))
    group = pos[L.borrower[rows]]
    ead_b = np.bincount(group, weights=ead, minlength=len(dead))
    if not (ead_b > 0.0).all():
        # a facility that owes nothing (repaid in full, e.g. by this month's cash sweep
        # after its call was counted uncured) has no claim to enforce: its LTV is 0, so
        # the call is cured and the borrower is not defaulted. Never in the golden runs:
        # every facility they default on has a positive exposure.
        void = dead[ead_b <= 0.0]
        b.call_months[void] = -1
        trig[void] = False
        dead = dead[ead_b > 0.0]
        if len(dead) == 0:
            return None
        rows = (L.active & trig[L.borrower]).nonzero()[0]
        ead = L.exposure[rows]
        pos[dead] = np.arange(len(dead))
        group = pos[L.borrower[rows]]
        ead_b = ead_b[ead_b > 0.0]
    reasons = np.where(payment[dead], "default_payment", "default_covenant")
    if dscr_default is not None:
        reasons = np.where(dscr_default[dead], "default_dscr", reasons)
    return dead, rows, ead, group, ead_b, reasons.tolist()


def repossess(m: LiquidationModel, dead: np.ndarray, rows: np.ndarray, ead: np.ndarray,
              group: np.ndarray) -> np.ndarray:
    """The defaulted borrowers' GPUs go to their facilities' lenders in proportion to
    exposure (largest remainder, :func:`sim.core.finance.largest_remainder`), all generations at
    once: one apportionment group per (facility, generation), its members in row order as
    when the generations were split one by one. Returns each row's lender."""
    env, b, lb, L = m.env, m.borrowers, m.lenders, m.loans
    n_gen = m.n_gen
    gens = np.arange(n_gen)
    units = largest_remainder(b.fleet[dead].ravel(), np.repeat(ead, n_gen),
                              (group[:, None] * n_gen + gens).ravel()).reshape(-1, n_gen)
    holder = L.lender[rows]
    per_lender = np.bincount((holder[:, None] * n_gen + gens).ravel(),
                             weights=units.ravel(), minlength=lb.n * n_gen)
    new_units = per_lender.astype(np.int64).reshape(lb.n, n_gen)
    lb.add_inventory(new_units, env.t)
    if m.outside_on:
        note_repossession(m, new_units)
    got_g, got_r = units.T.nonzero()  # events by generation, then by row
    m.log_events("repossession", "lender", holder[got_r], got_g, units[got_r, got_g])
    return holder


def seize(m: LiquidationModel, dead: np.ndarray, ead: np.ndarray, group: np.ndarray,
          ead_b: np.ndarray, holder: np.ndarray) -> None:
    """Seize the defaulted borrowers' cash and BTC (sold at once) up to their EAD; their
    unpaid bills (negative cash) are lost by the suppliers. Each row's lender writes off its
    EAD and recovers seized x EAD / EAD_facility; the rest joins its claim pool."""
    env, b, lb = m.env, m.borrowers, m.lenders
    btc_cash = b.btc[dead] * env.btc
    m.add_outside_flow("btc_sales", btc_cash.sum())
    b.cash[dead] += btc_cash
    b.btc[dead] = 0.0
    b.btc_pledged[dead] = 0.0
    seized = np.minimum(np.maximum(b.cash[dead], 0.0), ead_b)
    b.cash[dead] -= seized
    # unpaid power and running bills (negative cash) are lost by the suppliers
    unpaid = np.minimum(b.cash[dead], 0.0)
    b.cash[dead] -= unpaid
    m.add_outside_flow("unpaid_suppliers", -unpaid.sum())
    rec = seized[group] * np.divide(ead, ead_b[group], out=np.zeros_like(ead),
                                    where=ead_b[group] > 0)
    rec_l = np.bincount(holder, weights=rec, minlength=lb.n)  # holder = L.lender[rows]
    lb.cash += rec_l
    lb.writeoffs += np.bincount(holder, weights=ead, minlength=lb.n)
    lb.recoveries += rec_l
    lb.claim_pool += np.bincount(holder, weights=ead - rec, minlength=lb.n)
    m.ead_total += ead.sum()
    m.recovered_total += rec.sum()


def close_out(m: LiquidationModel, dead: np.ndarray, rows: np.ndarray) -> None:
    """Close the defaulted facilities' loans, empty the borrowers' fleets (the lead lender
    takes the site with the GPUs) and mark them DEFAULTED."""
    b, L = m.borrowers, m.loans
    L.principal[rows] = 0.0
    L.accrued[rows] = 0.0
    L.overdue[rows] = 0.0
    L.active[rows] = False
    b.fleet[dead] = 0
    if m.sites is not None:  # the lead lender takes the site with the GPUs
        m.sites.repossess(dead, m.lead[dead], m.env.t)
    b.status[dead] = BorrowerStatus.DEFAULTED
    b.call_months[dead] = -1


def note_repossession(m: LiquidationModel, new_units: np.ndarray) -> None:
    """Value in best use at repossession of each lender's line, units-weighted (the
    reference of the fire-sale discount with the outside demand): with ``u`` units just
    added to an inventory now ``I`` and this month's value in best use ``V``,
    ``v <- (v (I - u) + u V) / I``; a sale leaves ``v`` as it is."""
    inv = m.lenders.inventory
    m.rep_value = np.divide(m.rep_value * (inv - new_units)
                               + new_units * m.fundamental[None, :], inv,
                               out=m.rep_value.copy(), where=new_units > 0)
