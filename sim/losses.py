"""Losses counted for everyone (``metrics.system_loss``; docs/model.md, "Losses counted for
everyone"): every party's loss marked to market at the price index, month by month, and the
system loss, their sum.

All amounts are cumulative from t0, in $, positive = a loss:

* lenders: net credit losses (losses at write-off less later recoveries); their other loans'
  losses are reported apart and added only in ``system_loss_with_other``;
* the desk: minus its P&L, P&L = cash flows + repo loans outstanding at face + holdings at the
  price index (``RepoDesk.pnl``);
* secondary buyers: minus their mark-to-market, holdings at the price index less what they
  paid (the model credits them no rent);
* borrowers: the equity wiped out, the t0 equity at value in best use (cash + fleet at the
  value in best use + BTC - debt, floored at 0) of the borrowers that have defaulted;
* the outside sector: minus the out-of-sector buyers' mark (their units at the price index
  less what they paid) plus the suppliers' unpaid bills.

The trades between parties (sale proceeds, repo loans and their interest) are each one
party's gain and another's loss, so they cancel in the sum.
"""

from __future__ import annotations

import numpy as np

from agents.borrower import DEFAULTED
from sim import numerics as nm

# the parts of the system loss, in the order of the records and the summary
PARTS = ("lenders", "desk", "buyers", "borrowers", "outside")
RECORDS = ("loss_lenders_credit", "loss_lenders_recoveries", "loss_lenders_net",
           "loss_lenders_other", *(f"loss_{p}" for p in PARTS[1:]), "system_loss",
           "system_loss_with_other", "desk_cash_flows", "desk_mark")


def equity0(model) -> np.ndarray:
    """Each borrower's equity at t0 at value in best use ($, floored at 0): cash + fleet x
    value in best use + BTC treasury x BTC - debt (loans and revolvers drawn)."""
    b, env = model.borrowers, model.env
    debt = model.loans.by_borrower(model.loans.exposure, b.n)
    assets = b.cash + nm.matvec(b.fleet, model.fundamental) + b.btc * env.btc
    return np.maximum(assets - debt, 0.0)


def init(model) -> None:
    """Allocate the records and the t0 equities (called after origination)."""
    n = model.cfg.months + 1
    for key in RECORDS:
        model.rec[key] = np.zeros(n)
    model.borrower_equity0 = equity0(model)


def record(model, t: int) -> None:
    """Write month t's losses into ``model.rec``."""
    r, lb, desk, p = model.rec, model.lenders, model.desk, model.price
    if "system_loss" not in r:
        init(model)
    add = np.add.reduce
    if model.cfg.metrics.losses_at_writeoff:
        r["loss_lenders_credit"][t] = add(lb.losses_at_writeoff)
        r["loss_lenders_recoveries"][t] = add(lb.later_recoveries)
    else:
        r["loss_lenders_credit"][t] = add(lb.credit_losses)
    r["loss_lenders_net"][t] = add(lb.credit_losses)
    r["loss_lenders_other"][t] = add(lb.other_losses) if lb.has_other else 0.0
    mark = float(np.dot(desk.holdings, p))
    r["desk_cash_flows"][t] = sum(desk.flows.values())
    r["desk_mark"][t] = desk.lent + mark
    r["loss_desk"][t] = -desk.pnl(p)
    r["loss_buyers"][t] = model.buyers_paid - float(np.dot(model.buyers.holdings.sum(axis=0), p))
    dead = model.borrowers.status == DEFAULTED
    r["loss_borrowers"][t] = add(model.borrower_equity0[dead])
    out_units = model.salvage_units + model.external_units
    r["loss_outside"][t] = (model.flows["salvage"] - float(np.dot(out_units, p))
                            - model.flows["unpaid_suppliers"])
    # the system loss of the GPU market; the other loans' losses (outside it, the same with
    # and without any GPU policy) are added in system_loss_with_other
    r["system_loss"][t] = r["loss_lenders_net"][t] + sum(r[f"loss_{x}"][t] for x in PARTS[1:])
    r["system_loss_with_other"][t] = r["system_loss"][t] + r["loss_lenders_other"][t]


def summary(model) -> dict:
    """The summary's ``losses``: each part at the end (and the lenders' split)."""
    r, t = model.rec, model.env.t
    out = {key.removeprefix("loss_"): float(r[key][t]) for key in RECORDS}
    out["desk_pnl"] = -out["desk"]
    return out
