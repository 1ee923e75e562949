"""The borrowers' sites' month (``sites.enabled``; docs/model.md, "Power and cooling"), run
between phases 4 and 5: the buyers' conversion of air MW to liquid, site sales, retirement,
hosting in place and the miners' energy arbitrage (:meth:`agents.sites.SiteBook.month`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.borrower import BorrowerStatus
from agents.sites import LENDER, RETIRED, SOLD
from sim.core.environment import DAYS_PER_MONTH, HOURS_PER_MONTH
from sim.world.kernels import sites as ks

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def run(m: LiquidationModel) -> None:
    """The sites' month (:meth:`agents.sites.SiteBook.month`). On the compiled engine one
    kernel call (:func:`sim.world.kernels.sites.sites_month`) under every switch; on the
    numpy engine ``SiteBook.month`` itself (the kernel's oracle)."""
    if m.engine == "compiled":
        _run_compiled(m)
        return
    m.sites.month(m)


def _scratch(m: LiquidationModel) -> list:
    """The compiled month's arrays, made once per run (``m.kernel_inputs["sites"]``): the
    generations newest first, the sales' record, ``totals`` and the kernel's scratch arrays
    (``v_liq``, ``v_air``, ``x``, ``old_idx``, ``tmp_n``: only read in the month that fills
    them), then the output arrays a book may be rebound to (``mw_new``, ``cap_new``,
    ``liq_new``, ``repo_new``, ``rent_new``, ``hmw_new``, ``debt_new``, ``pay_new``,
    ``share_new``, ``income_new``, from index :data:`_OUT`): a month that rebinds a book to
    one of them replaces it in this list with a new array, so that no array a book holds (or
    held: a record, a test) is ever written again, as with the numpy code's new arrays."""
    st = m.kernel_inputs.get("sites")
    if st is None:
        nk, n, g = m.buyers.n, m.borrowers.n, m.env.n_gen
        e = np.empty
        st = m.kernel_inputs["sites"] = [
            np.array(m.newest_first, dtype=np.int64), e((n * (g + 1), ks.N_EV)), e(5),
            e(nk), e(nk), e(nk), e(n, dtype=np.int64), e(n),
            e(nk), e(nk), e(nk), np.empty_like(m.lenders.repo_units),
            e(n), e(n), e(n), e(n), e(n), e(n)]
    return st


_OUT = 8  # the first output array a book may be rebound to, in _scratch's list


def _run_compiled(m: LiquidationModel) -> None:
    """``SiteBook.month`` through the kernel: the reservation prices here (as the numpy code
    asks the buyers for them), then the books rebound to the arrays the numpy code would have
    made new, the outside flows added and the events logged in its order."""
    sb, env, buyers, lb, b, desk = m.sites, m.env, m.buyers, m.lenders, m.borrowers, m.desk
    s = sb.cfg
    st = _scratch(m)
    (newest_first, sales, totals, v_liq, v_air, x, old_idx, tmp_n, mw_new, cap_new, liq_new,
     repo_new, rent_new, hmw_new, debt_new, pay_new, share_new, income_new) = st
    has_buyers = buyers.n > 0
    res = buyers.reservation(env) if has_buyers else np.zeros((0, env.n_gen))
    do_convert = has_buyers and not buyers.unlimited and s.conversion_rate > 0
    conv_col = s.conversion_months - 1 if s.conversion_months else -1
    hosted = np.zeros(lb.n)
    # the running totals the kernel adds to (float64, as np.array of them made it)
    totals[0], totals[1], totals[2] = m.recovered_total, sb.sold_mw, sb.sale_proceeds
    totals[3], totals[4] = desk.lent, desk.cash
    (converted, xany, xsum, rows, fleet_units, fleet_sold, n_old, retired, hosted_any, tenants,
     opex, income, arb) = ks.sites_month(
        env.t, has_buyers, res, m.price, env.kw, sb.liquid_gen, env.shipping, do_convert,
        float(s.conversion_cost_per_mw), float(s.conversion_rate), conv_col, buyers.mw,
        buyers.capital, buyers.mw_liq, buyers.mw_conv, sb.holder, sb.since, sb.lender,
        sb.gpu_mw, LENDER, RETIRED, SOLD, s.sale_months, s.max_hold_months, v_liq, v_air, x,
        mw_new, cap_new, liq_new, sb.liquid, sb.buyer, float(s.build_cost_per_mw),
        buyers.unlimited, buyers.mw_used, buyers.holdings, s.sell_with_fleet, newest_first,
        lb.claim_pool, lb.recoveries, lb.later_recoveries, lb.inventory, lb.inv_since,
        lb.repo_units, repo_new, lb.repo_debt, desk.cash_repaid, sales, totals, old_idx, tmp_n,
        s.host_in_place, env.rent, env.power_cost_per_gpu(), float(env.cfg.utilisation),
        HOURS_PER_MONTH, float(s.hosting_per_kw_month), lb.cash, hosted, s.arbitrage,
        float(s.mining_mw_per_ph), b.status, int(BorrowerStatus.DEFAULTED), sb.mine_mw,
        float(env.hashprice), b.mining_cost, DAYS_PER_MONTH, float(s.host_share),
        float(buyers.cfg.spot_opex_per_gpu), float(s.switch_cost_per_mw),
        float(s.switch_payback_months), float(s.switch_rate), float(s.host_demand_mw),
        sb.host_rent, sb.host_mw, sb.switch_debt, sb.switch_pay, rent_new, hmw_new, debt_new,
        pay_new, share_new, income_new)
    if converted:  # BuyerBook.convert's new arrays
        buyers.mw, buyers.capital = mw_new, cap_new
        st[_OUT], st[_OUT + 1] = np.empty_like(mw_new), np.empty_like(cap_new)
        if conv_col < 0:
            buyers.mw_liq = liq_new
            st[_OUT + 2] = np.empty_like(liq_new)
    if xany:
        sb.converted_mw += xsum
        m.add_outside_flow("buyer_capital", -xsum * s.conversion_cost_per_mw)
    if rows:  # SiteBook._sell's (and _sell_fleet's) flows and events, in its order
        for kind, l_, g, units, amount, price, to_buyers, surplus in sales[:rows].tolist():
            if buyers.unlimited:
                m.add_outside_flow("buyer_capital", to_buyers)
            m.add_outside_flow("estate_surplus", surplus)
            m.log_event("site_fleet_sale" if kind else "site_sale", "lender", l_, g, units,
                        amount, price)
        # the running totals the numpy code adds to sale by sale (their types kept)
        m.recovered_total = type(m.recovered_total)(totals[0])
        sb.sold_mw = type(sb.sold_mw)(totals[1])
        sb.sale_proceeds = type(sb.sale_proceeds)(totals[2])
    if fleet_sold:
        desk.lent, desk.cash = type(desk.lent)(totals[3]), type(desk.cash)(totals[4])
        lb.repo_units = repo_new
        st[_OUT + 3] = np.empty_like(repo_new)
        sb.fleet_units_sold += fleet_units
    if n_old:
        sb.retired_mw += retired
        idx = old_idx[:n_old]
        m.log_events("site_retired", "lender", sb.lender[idx], amount=sb.gpu_mw[idx])
    sb.hosted_units = hosted
    if hosted_any:
        m.add_outside_flow("tenants", tenants)
        m.add_outside_flow("opex", -opex)
        sb.hosting_income += income
    if arb:
        if arb == 2:
            sb.host_rent, sb.host_mw = rent_new, hmw_new
            st[_OUT + 4], st[_OUT + 5] = np.empty_like(rent_new), np.empty_like(hmw_new)
        sb.switch_debt, sb.switch_pay = debt_new, pay_new
        b.mining_share, b.site_income = share_new, income_new
        st[_OUT + 6:] = [np.empty_like(debt_new), np.empty_like(pay_new),
                         np.empty_like(share_new), np.empty_like(income_new)]
