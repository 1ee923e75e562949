"""Phase 9, the record: month t into the model's preallocated records (``model.rec``), the
agent panel (``model.panel``), the policies' records and the losses (:mod:`sim.world.losses`)."""

from __future__ import annotations

from operator import itemgetter
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
    """:func:`run` with every sum (the lenders', the sites', the buyers' capacity, the
    desk's records and, after t0, the losses' sums and their arithmetic), the panel rows and
    the rows of the records by generation and of the new defaults from one call of
    :func:`sim.world.kernels.record.record_month` (which zeroes ``model.new_defaults`` in
    place, where :func:`run` binds a new zero array); the other plain numbers, the
    buyer of last resort's own records and the losses at t0 (:func:`sim.world.losses.record`,
    which allocates their records) as :func:`run` writes them. What does not change in a run
    (the switches, the costs per GPU, the record arrays the kernel's sums go to) is read
    once (:func:`_static`)."""
    t, r, env, lb, b = m.env.t, m.rec, m.env, m.lenders, m.borrowers
    p, buyers, s, desk, lo, loans = m.panel, m.buyers, m.sites, m.desk, m.lolr, m.loans
    st = m.kernel_inputs.get("record")
    if st is None or st[0] is not r or st[1] != ("system_loss" in r):
        st = m.kernel_inputs["record"] = _static(m)
    (_, losses_on, h, cap_kw, rent_hours, power_cost, spot_opex, facility, has_facility,
     losses0, site_recs, loss_recs) = st
    sites = s is not None
    # the buyers' capacity for the recorded generation (model.buyer_capacity_units) in the
    # kernel, at a price > 0 and a positive kW; else (unlimited buyers: inf) in Python
    cap_price = max(float(m.price[h]), 1.0)
    cap_on = not buyers.unlimited and cap_price > 0.0 and cap_kw > 0.0
    if losses_on:
        ls, f = m.losses_state, m.flows
        flows = np.array(_flows_of(f))
        income0, exported0, out_units = (ls["buyers_income"], ls["exported_value"],
                                          ls["out_units"])
    else:
        flows, income0, exported0, out_units = _NO_FLOAT, 0.0, 0.0, _NO_INT
    (r["writeoffs"][t], r["recoveries"][t], r["credit_losses"][t], r["lender_equity"][t],
     r["lender_failures"][t], r["lenders_deleveraging"][t], r["inventory_units"][t],
     r["repo_units"][t], vals, out) = kernels.record_month(
        lb.writeoffs, lb.recoveries, lb.later_recoveries, m.cfg.metrics.losses_at_writeoff,
        lb.status, lb.equity, lb.inventory, desk.holdings, lb.cash, b.cash, buyers.capital,
        lb.assets, b.fleet, m.price, b.btc, env.btc, buyers.holdings, b.status,
        b.call_months, b.arrears_months, p["cash"], p["size"], p["state"], sites,
        s.holder if sites else _NO_INT8, s.gpu_mw if sites else _NO_FLOAT,
        s.mine_mw if sites else _NO_FLOAT, s.host_mw if sites else _NO_FLOAT,
        buyers.mw, buyers.mw_liq if buyers.sites else _NO_FLOAT,
        buyers.mw_conv if sites else _NO_FLOAT2, cap_on, cap_price, cap_kw, m.liquid[h],
        buyers.sites, losses_on, m.fundamental, rent_hours, env.rent, power_cost, spot_opex,
        facility, has_facility, _NO_INT if lo is None else lo.holdings, m.salvage_units,
        m.external_units, out_units, lb.outside, lb.repo_debt, lb.other_loans, desk.b_debt,
        loans.active, loans.principal, loans.accrued, lb.other_losses, losses0[0],
        desk.cash_lent, desk.cash_repaid, desk.interest, desk.cash_bought, desk.cash_sold,
        desk.funding, t, desk.cost_basis, desk.holdings_cost, desk.mark, desk.loans,
        desk.cash_balance, desk.due, desk.lent, desk.cash, desk.cash0, desk.funding_due,
        desk.secured, lb.has_other, buyers.unlimited, lo is not None,
        0.0 if lo is None else lo.cash, 0.0 if lo is None else lo.funding_due, income0,
        exported0, flows, losses0[1], losses0[2], r["rent"], r["price"], r["fundamental"],
        r["volume"], m.month_volume, r["forced_volume"], m.month_forced, r["overhang"],
        m.month_overhang, r["salvage"], m.month_salvage, r["defaults_miner"],
        r["defaults_neocloud"], m.new_defaults)
    r["btc"][t], r["hashprice"][t], r["stress"][t] = env.btc, env.hashprice, env.stress
    r["repo_lent"][t] = desk.lent
    if lo is not None:  # (the desk's own records: written by the kernel)
        lo.record(t, m.price)
    v = vals.tolist()
    r["buyer_capacity_h100"][t] = min(v[kernels.V_CAP] if cap_on
                                      else m.buyer_capacity_units(h), 1e15)
    r["forced_value"][t], r["forced_fundamental"][t] = (m.forced_value,
                                                        m.forced_fundamental)
    r["max_fill_above_reservation"][t] = m.month_above_reservation
    if m.outside_on:
        r["forced_repossession_value"][t] = m.forced_rep_value
        r["outside_pinned"][t] = m.month_pinned
    if sites:  # record_sites with the kernel's sums
        for a, x in zip(site_recs, v[kernels.V_SITES: kernels.V_CAP], strict=True):
            a[t] = x
        r["site_mw_repossessed"][t] = s.repossessed_mw
        r["site_mw_sold"][t] = s.sold_mw
        r["site_mw_retired"][t] = s.retired_mw
        r["site_sale_proceeds"][t] = s.sale_proceeds
        r["hosting_income"][t] = s.hosting_income
        r["buyer_mw_converted"][t] = s.converted_mw
    if losses_on:  # losses.record after t0, from the kernel's records
        ls["buyers_income"], ls["exported_value"] = v[kernels.V_INCOME: kernels.V_LOSSES]
        ls["out_units"] = out
        # (zip stops at the last record written: loss_lenders_recoveries only with
        # metrics.losses_at_writeoff, _static)
        for a, x in zip(loss_recs, v[kernels.V_LOSSES:], strict=False):
            a[t] = x
    elif m.cfg.metrics.system_loss:  # t0
        losses.record(m, t)


# the records of record_month's site sums, in ``vals``' order (sim.world.kernels.record)
_SITE_SUMS = ("site_mw_borrowers", "site_mw_lenders", "buyer_spare_mw_air",
              "buyer_spare_mw_liquid", "buyer_mw_converting", "miner_mw_hosting")
# the outside flows the kernel reads, as a tuple in its order (kernels.FLOW_KEYS)
_flows_of = itemgetter(*kernels.FLOW_KEYS)
# stand-ins for the arrays of a switch that is off (not read by the kernels)
_NO_FLOAT, _NO_INT8, _NO_INT = np.zeros(0), np.zeros(0, np.int8), np.zeros(0, np.int64)
_NO_FLOAT2 = np.zeros((0, 0))


def _static(m: LiquidationModel) -> tuple:
    """What :func:`run_compiled` reads that does not change in a run, kept in
    ``m.kernel_inputs["record"]`` (remade when ``m.rec`` is another dict or the losses'
    records appear, at t0): (``m.rec``, losses on (after t0), the recorded generation, its
    kW, the rented hours of a month, the power cost and spot opex per GPU, the facility
    charge per GPU and whether it is on, ``losses0``'s (borrower equity, stock, wealth), and
    the record arrays the kernel's site sums and losses go to, in ``vals``' order)."""
    env, r = m.env, m.rec
    losses_on = bool(m.cfg.metrics.system_loss) and "system_loss" in r
    facility = env.cfg.facility_cost > 0  # agents.buyer.running_cost's colocation charge
    if losses_on:
        l0 = m.losses0
        losses0 = (l0["equity"], l0["stock"], l0["wealth"])
        n_loss = len(kernels.LOSS_RECORDS) - (0 if m.cfg.metrics.losses_at_writeoff else 1)
        loss_recs = tuple(r[k] for k in kernels.LOSS_RECORDS[:n_loss])
    else:
        losses0, loss_recs = (_NO_FLOAT, _NO_FLOAT, _NO_FLOAT), ()
    site_recs = tuple(r[k] for k in _SITE_SUMS) if m.sites is not None else ()
    h = m.h100
    return (r, losses_on, h, env.kw[h], HOURS_PER_MONTH * env.cfg.utilisation,
            env.power_cost_per_gpu(), m.cfg.buyers.spot_opex_per_gpu,
            env.facility_cost_per_gpu() if facility else _NO_FLOAT, facility, losses0,
            site_recs, loss_recs)


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
