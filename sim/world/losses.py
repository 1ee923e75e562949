"""Losses counted for everyone (``metrics.system_loss``; docs/model.md, "Losses counted for
everyone"): every party's loss marked to market, month by month, the system loss (their sum)
and the identity that checks it.

Each party's wealth W is marked to market: GPUs at the price index p_g, BTC at its price,
claims and debts at face, with what the party's owners took out (or put in) added back (or
taken off). A party's loss at month t is W(0) - W(t) ($, cumulative, positive = a loss):

* lenders: cash + GPU loans + repossessed GPUs + other loans - outside funding - repo debt;
  reported beside it: credit losses at write-off, later recoveries, net credit losses and the
  other loans' losses;
* the desk: cash + repo loans at face (lenders' and, in the secured design, borrowers') + its
  GPUs - its cost of capital not yet paid (``funding_due``) (its P&L, ``RepoDesk.pnl``; every
  cash move of both designs is in its monthly P&L arrays, summed in ``RepoDesk.flows``);
* the buyer of last resort (``policy.lolr``; 0 when off): cash + its GPUs - its cost of
  capital not yet paid (rent earned and running costs paid are operating income and costs,
  like any holder's);
* secondary buyers: capital + GPUs, less the capital their owners put in (``buyer_capital``),
  plus the net operating income of the GPUs they hold (:func:`holder_margin`, imputed: the
  model's buyers run what they buy in their spare MW but their capital does not book the rent);
* borrowers: cash + fleet + BTC - debt (facility and secured repo), plus what their owners
  received (payouts, estate surpluses); reported beside it, the t0 equity at value in best
  use of those that defaulted;
* the outside sector: out-of-sector buyers (0: a GPU sold out of the sector leaves the
  accounts at its sale price, see below), suppliers (their
  unpaid bills), the outside funders (the lenders': their claims plus what they were paid; the
  policies': the cost of capital the desk and the buyer of last resort paid them or owe them)
  and the
  borrowers of the lenders' other loans (minus their debt and the interest they paid).

Every payment between two parties is one's gain and the other's loss, so the sum of the parts,
the system loss S, equals (the identity; U: units per generation held in the sector, by
anyone but out-of-sector buyers; E: the value in best use of the units sold out of the sector,
each at its month's V; P: what out-of-sector buyers paid)

    S = [U.V(0) - U.V(t) - E]                 GPU value destroyed (value in best use V)
      + [BTC value at t0 - at t - BTC sold]   BTC value destroyed
      - [rents - operating costs]             net operating income of the stock (a gain;
                                              secondary buyers' imputed, see above)
      + [U.(V - p)(t) - U.(V - p)(0) + E - P] discount of the stock below its value in best
                                              use, and of the units sold out at their sale
      + holding costs paid

up to rounding: :func:`identity` returns both sides.

Two conventions make the parts comparable across policies (a policy that keeps GPUs running
in the sector must not look better only because other holders' use goes uncounted): every
operator is credited the net operating income of the GPUs it runs (borrowers, lenders hosting
in place and the buyer of last resort in cash, secondary buyers imputed), and a GPU sold out
of the sector is valued at what it fetched (its buyer's later use is outside the system, as a
scrap sale is). Lenders' idle inventory and the legacy desk's unpowered holdings earn nothing.
"""

from __future__ import annotations

import numpy as np

from agents.borrower import BorrowerStatus
from agents.buyer import running_cost
from sim.core import numerics as nm
from sim.core.environment import HOURS_PER_MONTH

# the parties, in the order of the records and the summary
PARTS = ("lenders", "desk", "lolr", "buyers", "borrowers", "outside")
# the outside sector's members: out-of-sector buyers, suppliers, the outside funders (the
# lenders' and the policies') and the borrowers of the lenders' other loans
OUTSIDE = ("outside_buyers", "outside_suppliers", "outside_funders", "outside_other_borrowers")
# the right-hand side of the identity
TERMS = ("value_destroyed", "btc_value_fall", "operating_income", "discount", "holding_costs")
RECORDS = (*(f"loss_{p}" for p in (*PARTS, *OUTSIDE)), "system_loss", "system_loss_at_value",
           "loss_lenders_credit", "loss_lenders_recoveries", "loss_lenders_net",
           "loss_lenders_other", "loss_borrowers_wiped_out", "desk_cash_flows", "desk_mark",
           *(f"sl_{t}" for t in TERMS), "sl_discount_outside")


def holder_margin(model) -> np.ndarray:
    """Net operating income of one running GPU a month, per generation ($/GPU-month):

        m_g = max(0, 730 u r_g - (power_g + spot opex + facility_g))

    the rent at the fleet utilisation u less the running costs secondary buyers' valuations
    use (``agents.buyer``), with the shut-down option (a unit whose rent does not cover its
    running cost is switched off and earns 0)."""
    env = model.env
    cost = running_cost(model.cfg.buyers, env)
    return np.maximum(HOURS_PER_MONTH * env.cfg.utilisation * env.rent - cost, 0.0)


def _outside_units(model) -> np.ndarray:
    return model.salvage_units + model.external_units


def wealth(model, price: np.ndarray | None = None) -> np.ndarray:
    """Each party's wealth marked to market ($), in the order of :data:`PARTS` then the
    outside sector's four members (:data:`OUTSIDE`; ``outside`` is their sum); GPUs at the
    price index, or at ``price`` per generation when given (e.g. the value in best use)."""
    add, f = np.add.reduce, model.flows
    p = model.price if price is None else price
    lb, b, desk, buyers = model.lenders, model.borrowers, model.desk, model.buyers
    debt = add(model.loans.exposure)  # the lenders' claim and the borrowers' debt
    other = add(lb.other_loans) if lb.has_other else 0.0
    lenders = (add(lb.cash) + debt + nm.dot(lb.inventory.sum(axis=0), p) + other
               - add(lb.outside) - add(lb.repo_debt))
    capital = 0.0 if buyers.unlimited else add(buyers.capital)
    buy = (capital - f["buyer_capital"] + nm.dot(buyers.holdings.sum(axis=0), p)
           + model.losses_state["buyers_income"])
    repo_b = add(desk.b_debt) if desk.secured else 0.0  # secured repo loans to borrowers
    borrowers = (add(b.cash) + nm.dot(b.fleet.sum(axis=0), p) + add(b.btc) * model.env.btc
                 - debt - repo_b - f["payouts"] - f["estate_surplus"])
    lo = model.lolr
    lolr = 0.0 if lo is None else lo.cash + nm.dot(lo.holdings, p) - lo.funding_due
    # the policies' cost of capital their cash could not pay yet: owed to their funders
    due = desk.funding_due + (0.0 if lo is None else lo.funding_due)
    out = np.array([0.0, -f["unpaid_suppliers"],
                    add(lb.outside) - f["funding_outside"] - f["policy_funding"] + due,
                    -other - f["other_loans"]])
    return np.array([lenders, desk.pnl(p) + desk.cash0, lolr, buy, borrowers, out.sum(), *out])


def _stock(model) -> np.ndarray:
    """[U.V + E, U.(V - p) + E - P, BTC value, E - P (the discount of the units sold out of
    the sector), and the flows of the identity]; U the units held in the sector."""
    f, st = model.flows, model.losses_state
    units = model.gpu_units() - _outside_units(model)
    gap = model.fundamental - model.price
    e, out_disc = st["exported_value"], st["exported_value"] - f["salvage"]
    return np.array([nm.dot(units, model.fundamental) + e, nm.dot(units, gap) + out_disc,
                     np.add.reduce(model.borrowers.btc) * model.env.btc, out_disc,
                     f["btc_sales"], f["tenants"] + f["opex"] + st["buyers_income"],
                     f["holding_costs"]])


def identity(model) -> dict[str, float]:
    """The identity's right-hand side at the current month (each term, ``rhs`` their sum) and
    its left-hand side ``system_loss`` (the parts' sum)."""
    s0, s = model.losses0["stock"], _stock(model)
    d = s - s0
    terms = {"value_destroyed": -d[0], "btc_value_fall": -d[2] - d[4],
             "operating_income": d[5], "discount": d[1], "holding_costs": -d[6]}
    rhs = (terms["value_destroyed"] + terms["btc_value_fall"] - terms["operating_income"]
           + terms["discount"] + terms["holding_costs"])
    parts = model.losses0["wealth"] - wealth(model)
    return {**terms, "discount_outside": d[3], "rhs": rhs,
            "system_loss": float(parts[: len(PARTS)].sum()), "parts": parts}


def init(model) -> None:
    """Allocate the records and keep t0's wealth, stock and borrower equities."""
    n = model.cfg.months + 1
    for key in RECORDS:
        model.rec[key] = np.zeros(n)
    b, env = model.borrowers, model.env
    model.losses_state = {"buyers_income": 0.0, "exported_value": 0.0,
                          "out_units": _outside_units(model).copy()}
    debt = model.loans.by_borrower(model.loans.exposure, b.n)
    equity = b.cash + nm.matvec(b.fleet, model.fundamental) + b.btc * env.btc - debt
    model.losses0 = {"wealth": wealth(model), "stock": _stock(model),
                     "equity": np.maximum(equity, 0.0)}


def record(model, t: int) -> None:
    """Write month t's losses into ``model.rec``."""
    r, lb, desk = model.rec, model.lenders, model.desk
    if "system_loss" not in r:
        init(model)
    else:  # the month's imputed income of secondary buyers and the units sold out of the sector
        st = model.losses_state
        st["buyers_income"] += nm.dot(model.buyers.holdings.sum(axis=0), holder_margin(model))
        out = _outside_units(model)
        st["exported_value"] += nm.dot(out - st["out_units"], model.fundamental)
        st["out_units"] = out.copy()
    add = np.add.reduce
    ident = identity(model)
    for key, x in zip((*PARTS, *OUTSIDE), ident["parts"], strict=True):
        r[f"loss_{key}"][t] = x
    r["system_loss"][t] = ident["system_loss"]
    # the same with the GPUs in the sector marked at their value in best use (the price index
    # of a fire sale is not what a GPU that keeps running is worth to its holder)
    r["system_loss_at_value"][t] = ident["system_loss"] - (ident["discount"]
                                                            - ident["discount_outside"])
    for key in (*TERMS, "discount_outside"):
        r[f"sl_{key}"][t] = ident[key]
    # the model's own records (LiquidationModel._record, written just before): credit losses
    # at write-off and later recoveries with metrics.losses_at_writeoff, else net (and no
    # later recoveries)
    r["loss_lenders_credit"][t] = r["credit_losses"][t]
    if model.cfg.metrics.losses_at_writeoff:
        r["loss_lenders_recoveries"][t] = r["recoveries"][t]
    r["loss_lenders_net"][t] = add(lb.credit_losses)
    r["loss_lenders_other"][t] = add(lb.other_losses) if lb.has_other else 0.0
    r["loss_borrowers_wiped_out"][t] = add(
        model.losses0["equity"][model.borrowers.status == BorrowerStatus.DEFAULTED])
    r["desk_cash_flows"][t] = sum(desk.flows.values())
    r["desk_mark"][t] = (desk.lent + float(nm.dot(desk.holdings, model.price))
                         - desk.funding_due)


# the summary's "losses" keys: the records without their prefix, and the desk's P&L
SUMMARY_KEYS = (*(k.removeprefix("loss_").removeprefix("sl_") for k in RECORDS), "desk_pnl")


def summary(model) -> dict:
    """The summary's ``losses``: every record at the end, without its prefix."""
    r, t = model.rec, model.env.t
    out = {key.removeprefix("loss_").removeprefix("sl_"): float(r[key][t]) for key in RECORDS}
    out["desk_pnl"] = -out["desk"]
    return out
