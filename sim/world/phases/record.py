"""Phase 9, the record: month t into the model's preallocated records (``model.rec``), the
agent panel (``model.panel``), the policies' records and the losses (:mod:`sim.world.losses`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core import numerics as nm
from sim.world import losses

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def run(m: LiquidationModel) -> None:
    """Write month t into the preallocated records and the agent panel.

    Sums are ``np.add.reduce`` (what ``ndarray.sum`` calls, without its wrapper), counts
    ``np.count_nonzero``, and each panel row is filled by one ``np.concatenate`` into it:
    the same values as summing and assigning slice by slice."""
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
