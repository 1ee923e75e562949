"""Phase 9, the record: month t into the model's preallocated records (``model.rec``), the
agent panel (``model.panel``), the policies' records and the losses (:mod:`sim.world.losses`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core import numerics as nm
from sim.core.environment import HOURS_PER_MONTH
from sim.world import losses
from sim.world.kernels import record as kernels

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def run(m: LiquidationModel) -> None:
    """Write month t into the preallocated records and the agent panel.

    Sums are ``np.add.reduce`` (what ``ndarray.sum`` calls, without its wrapper), counts
    ``np.count_nonzero``, and each panel row is filled by one ``np.concatenate`` into it:
    the same values as summing and assigning slice by slice. On the compiled engine the
    lenders' sums and the panel are one kernel call (:func:`run_compiled`)."""
    if m.engine == "compiled":
        run_compiled(m)
        return
    t, r, env, lb, b = m.env.t, m.rec, m.env, m.lenders, m.borrowers
    add = np.add.reduce
    r["btc"][t], r["hashprice"][t], r["stress"][t] = env.btc, env.hashprice, env.stress
    r["rent"][t], r["price"][t], r["fundamental"][t] = env.rent, m.price, m.fundamental
    r["volume"][t], r["forced_volume"][t] = m.month_volume, m.month_forced
    r["overhang"][t], r["salvage"][t] = m.month_overhang, m.month_salvage
    r["defaults_miner"][t], r["defaults_neocloud"][t] = m.new_defaults
    m.new_defaults = np.zeros(2, dtype=np.int64)
    r["writeoffs"][t], r["recoveries"][t] = add(lb.writeoffs), add(lb.recoveries)
    r["credit_losses"][t] = add(lb.credit_losses)
    if m.cfg.metrics.losses_at_writeoff:  # monotone losses; later recoveries apart
        r["credit_losses"][t] = add(lb.losses_at_writeoff)
        r["recoveries"][t] = add(lb.later_recoveries)
    r["lender_failures"][t] = np.count_nonzero(lb.status == LenderStatus.FAILED)
    r["lenders_deleveraging"][t] = np.count_nonzero(lb.status == LenderStatus.DELEVERAGING)
    r["lender_equity"][t] = add(lb.equity)
    r["inventory_units"][t] = add(lb.inventory, axis=None)
    r["repo_lent"][t], r["repo_units"][t] = m.desk.lent, add(m.desk.holdings)
    m.desk.record(t, m.price)
    if m.lolr is not None:
        m.lolr.record(t, m.price)
    r["buyer_capacity_h100"][t] = min(m.buyer_capacity_units(m.h100), 1e15)
    r["forced_value"][t], r["forced_fundamental"][t] = (m.forced_value,
                                                        m.forced_fundamental)
    r["max_fill_above_reservation"][t] = m.month_above_reservation
    if m.outside_on:
        r["forced_repossession_value"][t] = m.forced_rep_value
        r["outside_pinned"][t] = m.month_pinned
    if m.sites is not None:
        record_sites(m, t)
    if m.cfg.metrics.system_loss:
        losses.record(m, t)
    nl, nb = lb.n, b.n
    p, buyers = m.panel, m.buyers
    np.concatenate((lb.cash, b.cash, buyers.capital), out=p["cash"][t])
    np.concatenate((lb.assets, nm.matvec(b.fleet, m.price) + b.btc * env.btc,
                    buyers.capital + nm.matvec(buyers.holdings, m.price)),
                   out=p["size"][t])
    # borrowers under a margin call or in arrears show as DISTRESSED; buyers stay 0
    # (set in the panel row itself after copying the statuses: no temporary copy)
    row = p["state"][t]
    np.concatenate((lb.status, b.status), out=row[: nl + nb])
    row[nl: nl + nb][(b.status == BorrowerStatus.HEALTHY)
                      & ((b.call_months >= 0) | (b.arrears_months > 0))] = \
        BorrowerStatus.DISTRESSED


def run_compiled(m: LiquidationModel) -> None:
    """:func:`run` with every sum (the lenders', the sites', the buyers' capacity and, after
    t0, the losses') and the panel rows from one call of
    :func:`sim.world.kernels.record.record_month`; the plain numbers, the desk's and the buyer
    of last resort's own records and the losses' arithmetic (:func:`losses_compiled`) as
    :func:`run` writes them."""
    t, r, env, lb, b = m.env.t, m.rec, m.env, m.lenders, m.borrowers
    p, buyers, s, desk, lo, loans = m.panel, m.buyers, m.sites, m.desk, m.lolr, m.loans
    sites = s is not None
    # the buyers' capacity for the recorded generation (model.buyer_capacity_units) in the
    # kernel, at a price > 0 and a positive kW; else (unlimited buyers: inf) in Python
    h = m.h100
    cap_price, cap_kw = max(float(m.price[h]), 1.0), env.kw[h]
    cap_on = not buyers.unlimited and cap_price > 0.0 and cap_kw > 0.0
    # the losses after t0 (t0 allocates their records: losses.record)
    losses_on = m.cfg.metrics.system_loss and "system_loss" in r
    facility = env.cfg.facility_cost > 0  # agents.buyer.running_cost's colocation charge
    (r["writeoffs"][t], r["recoveries"][t], r["credit_losses"][t], r["lender_equity"][t],
     r["lender_failures"][t], r["lenders_deleveraging"][t], r["inventory_units"][t],
     r["repo_units"][t], site_sums, capacity, loss_sums, out) = kernels.record_month(
        lb.writeoffs, lb.recoveries, lb.later_recoveries, m.cfg.metrics.losses_at_writeoff,
        lb.status, lb.equity, lb.inventory, desk.holdings, lb.cash, b.cash, buyers.capital,
        lb.assets, b.fleet, m.price, b.btc, env.btc, buyers.holdings, b.status, b.call_months,
        b.arrears_months, p["cash"][t], p["size"][t], p["state"][t], sites,
        s.holder if sites else _NO_INT8, s.gpu_mw if sites else _NO_FLOAT,
        s.mine_mw if sites else _NO_FLOAT, s.host_mw if sites else _NO_FLOAT,
        buyers.mw, buyers.mw_liq if buyers.sites else _NO_FLOAT,
        buyers.mw_conv if sites else _NO_FLOAT2, cap_on, cap_price, cap_kw, m.liquid[h],
        buyers.sites, losses_on, m.fundamental, HOURS_PER_MONTH * env.cfg.utilisation,
        env.rent, env.power_cost_per_gpu(), m.cfg.buyers.spot_opex_per_gpu,
        env.facility_cost_per_gpu() if facility else _NO_FLOAT, facility,
        _NO_INT if lo is None else lo.holdings, m.salvage_units, m.external_units,
        m.losses_state["out_units"] if losses_on else _NO_INT, lb.outside, lb.repo_debt,
        lb.other_loans, desk.b_debt, loans.active, loans.principal, loans.accrued,
        lb.other_losses, m.losses0["equity"] if losses_on else _NO_FLOAT, desk.cash_lent,
        desk.cash_repaid, desk.interest, desk.cash_bought, desk.cash_sold, desk.funding)
    r["btc"][t], r["hashprice"][t], r["stress"][t] = env.btc, env.hashprice, env.stress
    r["rent"][t], r["price"][t], r["fundamental"][t] = env.rent, m.price, m.fundamental
    r["volume"][t], r["forced_volume"][t] = m.month_volume, m.month_forced
    r["overhang"][t], r["salvage"][t] = m.month_overhang, m.month_salvage
    r["defaults_miner"][t], r["defaults_neocloud"][t] = m.new_defaults
    m.new_defaults = np.zeros(2, dtype=np.int64)
    r["repo_lent"][t] = m.desk.lent
    m.desk.record(t, m.price)
    if m.lolr is not None:
        m.lolr.record(t, m.price)
    r["buyer_capacity_h100"][t] = min(capacity if cap_on else m.buyer_capacity_units(h),
                                      1e15)
    r["forced_value"][t], r["forced_fundamental"][t] = (m.forced_value,
                                                        m.forced_fundamental)
    r["max_fill_above_reservation"][t] = m.month_above_reservation
    if m.outside_on:
        r["forced_repossession_value"][t] = m.forced_rep_value
        r["outside_pinned"][t] = m.month_pinned
    if sites:  # record_sites with the kernel's sums
        (r["site_mw_borrowers"][t], r["site_mw_lenders"][t], r["buyer_spare_mw_air"][t],
         r["buyer_spare_mw_liquid"][t], r["buyer_mw_converting"][t],
         r["miner_mw_hosting"][t]) = site_sums
        r["site_mw_repossessed"][t] = s.repossessed_mw
        r["site_mw_sold"][t] = s.sold_mw
        r["site_mw_retired"][t] = s.retired_mw
        r["site_sale_proceeds"][t] = s.sale_proceeds
        r["hosting_income"][t] = s.hosting_income
        r["buyer_mw_converted"][t] = s.converted_mw
    if losses_on:
        losses_compiled(m, t, loss_sums, out)
    elif m.cfg.metrics.system_loss:  # t0
        losses.record(m, t)


# the losses' record keys: the parties' and the identity's terms (sim.world.losses)
_LOSS_KEYS = tuple(f"loss_{k}" for k in (*losses.PARTS, *losses.OUTSIDE))
_SL_KEYS = tuple(f"sl_{k}" for k in (*losses.TERMS, "discount_outside"))
# stand-ins for the arrays of a switch that is off (not read by the kernels)
_NO_FLOAT, _NO_INT8, _NO_INT = np.zeros(0), np.zeros(0, np.int8), np.zeros(0, np.int64)
_NO_FLOAT2 = np.zeros((0, 0))


def losses_compiled(m: LiquidationModel, t: int, sums: np.ndarray, out: np.ndarray) -> None:
    """:func:`sim.world.losses.record` after t0 from the kernel's ``sums`` and ``out``
    (:func:`sim.world.kernels.record._losses_sums`), combined as ``losses.wealth``,
    ``losses._stock`` and ``losses.identity`` combine them: the same operations in the same
    order."""
    r, lb, desk, buyers, lo = m.rec, m.lenders, m.desk, m.buyers, m.lolr
    st, f, env = m.losses_state, m.flows, m.env
    (income, exported, uv, ugap, btc, debt, lcash, inv_p, outside, repo, other_loans, capital,
     held_p, b_debt, bcash, fleet_p, lolr_p, desk_p, net, other_losses, wiped, lent, repaid,
     interest, bought, sold, funding) = sums.tolist()
    st["buyers_income"] += income
    st["exported_value"] += exported
    st["out_units"] = out
    # losses._stock (its array's entries, as Python floats: the same doubles)
    e, out_disc = st["exported_value"], st["exported_value"] - f["salvage"]
    stock = (uv + e, ugap + out_disc, btc * env.btc, out_disc, f["btc_sales"],
             f["tenants"] + f["opex"] + st["buyers_income"], f["holding_costs"])
    # losses.wealth
    other = other_loans if lb.has_other else 0.0
    lenders = lcash + debt + inv_p + other - outside - repo
    cap = 0.0 if buyers.unlimited else capital
    buy = cap - f["buyer_capital"] + held_p + st["buyers_income"]
    repo_b = b_debt if desk.secured else 0.0
    borrowers = (bcash + fleet_p + btc * env.btc - debt - repo_b - f["payouts"]
                 - f["estate_surplus"])
    lolr = 0.0 if lo is None else lo.cash + lolr_p - lo.funding_due
    due = desk.funding_due + (0.0 if lo is None else lo.funding_due)
    outs = (0.0, -f["unpaid_suppliers"],
            outside - f["funding_outside"] - f["policy_funding"] + due,
            -other - f["other_loans"])
    outs_sum = 0.0  # np.add.reduce of 4 terms: the plain sum from 0.0 (sim.core.jit.psum)
    for x in outs:
        outs_sum += x
    pnl = (desk.cash - desk.cash0) + desk.lent + desk_p - desk.funding_due  # desk.pnl(price)
    wealth = (lenders, pnl + desk.cash0, lolr, buy, borrowers, outs_sum, *outs)
    # losses.identity and losses.record: stock - stock0 and wealth0 - wealth term by term
    d = [a - b for a, b in zip(stock, m.losses0["stock"].tolist(), strict=True)]
    terms = (-d[0], -d[2] - d[4], d[5], d[1], -d[6], d[3])  # _SL_KEYS' order
    parts = [a - b for a, b in zip(m.losses0["wealth"].tolist(), wealth, strict=True)]
    system_loss = 0.0  # np.add.reduce of the 6 parties: the plain sum from 0.0
    for x in parts[: len(losses.PARTS)]:
        system_loss += x
    for key, x in zip(_LOSS_KEYS, parts, strict=True):
        r[key][t] = x
    r["system_loss"][t] = system_loss
    r["system_loss_at_value"][t] = system_loss - (terms[3] - terms[5])
    for key, x in zip(_SL_KEYS, terms, strict=True):
        r[key][t] = x
    r["loss_lenders_credit"][t] = r["credit_losses"][t]
    if m.cfg.metrics.losses_at_writeoff:
        r["loss_lenders_recoveries"][t] = r["recoveries"][t]
    r["loss_lenders_net"][t] = net
    r["loss_lenders_other"][t] = other_losses if lb.has_other else 0.0
    r["loss_borrowers_wiped_out"][t] = wiped
    r["desk_cash_flows"][t] = sum((-lent, repaid, interest, -bought, sold, -funding))
    r["desk_mark"][t] = desk.lent + desk_p - desk.funding_due


def record_sites(m: LiquidationModel, t: int) -> None:
    """MW by holder and cooling (docs/model.md, "Power and cooling")."""
    s, r, buyers = m.sites, m.rec, m.buyers
    held = s.by_holder(buyers)
    r["site_mw_borrowers"][t] = held["borrowers"]
    r["site_mw_lenders"][t] = held["lenders"]
    r["site_mw_repossessed"][t] = s.repossessed_mw
    r["site_mw_sold"][t] = s.sold_mw
    r["site_mw_retired"][t] = s.retired_mw
    r["site_sale_proceeds"][t] = s.sale_proceeds
    r["hosting_income"][t] = s.hosting_income
    r["buyer_spare_mw_air"][t] = float(buyers.mw.sum())
    r["buyer_spare_mw_liquid"][t] = float(buyers.mw_liq.sum())
    r["buyer_mw_converting"][t] = float(buyers.mw_conv.sum())
    r["buyer_mw_converted"][t] = s.converted_mw
    r["miner_mw_hosting"][t] = float(s.host_mw[m.borrowers.alive].sum())
