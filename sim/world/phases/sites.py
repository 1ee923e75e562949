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


def build(m: LiquidationModel) -> None:
    """At the build, on both engines: the borrowers' ``mining_share`` (1.0) and
    ``site_income`` (0.0) when the energy arbitrage can run (``sites.arbitrage`` with
    ``mining_mw_per_ph`` > 0), so that the compiled month writes them in place instead of
    making them at the first arbitrage (resident state, issue 19). They are the values the
    arbitrage gives before any MW is let (no ``host_mw``, ``host_rent`` or switch debt), and
    phase 2, which reads them from the first month on, finds mining x 1.0 + 0.0 = mining (a
    mining revenue is never -0.0): the months are the same to the bit."""
    s = m.sites.cfg if m.sites is not None else None
    if s is not None and s.arbitrage and s.mining_mw_per_ph > 0.0:
        b = m.borrowers
        b.mining_share, b.site_income = np.ones(b.n), np.zeros(b.n)


_NONE = np.zeros(0)  # mining_share and site_income where the arbitrage never runs (not read)


def _scratch(m: LiquidationModel) -> list:
    """The compiled month's arrays, made once per run (``m.kernel_inputs["sites"]``): the
    generations newest first, the sales' record, ``totals`` and the kernel's scratch arrays
    (``v_liq``, ``v_air``, ``x``, ``old_idx``, ``tmp_n``: only read in the month that fills
    them). No book holds any of them."""
    st = m.kernel_inputs.get("sites")
    if st is None:
        nk, n, g = m.buyers.n, m.borrowers.n, m.env.n_gen
        e = np.empty
        st = m.kernel_inputs["sites"] = [
            np.array(m.newest_first, dtype=np.int64), e((n * (g + 1), ks.N_EV)), e(5),
            e(nk), e(nk), e(nk), e(n, dtype=np.int64), e(n)]
    return st


def _run_compiled(m: LiquidationModel) -> None:
    """``SiteBook.month`` through the kernel: the reservation prices here (as the numpy code
    asks the buyers for them), the kernel writing in place every book array the numpy code
    writes or makes anew (the buyers' ``mw``, ``capital`` and ``mw_liq``, the lenders'
    ``repo_units``, the sites' ``hosted_units``, ``host_rent``, ``host_mw``, ``switch_debt``
    and ``switch_pay``, the borrowers' ``mining_share`` and ``site_income``, the last two made
    at the build by :func:`build`), then the outside flows added and the events logged in its
    order."""
    sb, env, buyers, lb, b, desk = m.sites, m.env, m.buyers, m.lenders, m.borrowers, m.desk
    s = sb.cfg
    newest_first, sales, totals, v_liq, v_air, x, old_idx, tmp_n = _scratch(m)
    has_buyers = buyers.n > 0
    res = buyers.reservation(env) if has_buyers else np.zeros((0, env.n_gen))
    do_convert = has_buyers and not buyers.unlimited and s.conversion_rate > 0
    conv_col = s.conversion_months - 1 if s.conversion_months else -1
    arbitrage = s.arbitrage and s.mining_mw_per_ph > 0.0
    if arbitrage and b.mining_share is None:  # the kernel needs them to write into
        raise ValueError("sites.arbitrage on: the borrowers' mining_share and site_income "
                         "are made at the build (phases.sites.build)")
    # the running totals the kernel adds to (float64, as np.array of them made it)
    totals[0], totals[1], totals[2] = m.recovered_total, sb.sold_mw, sb.sale_proceeds
    totals[3], totals[4] = desk.lent, desk.cash
    (xany, xsum, rows, fleet_units, fleet_sold, n_old, retired, hosted_any, tenants, opex,
     income) = ks.sites_month(
        env.t, has_buyers, res, m.price, env.kw, sb.liquid_gen, env.shipping, do_convert,
        float(s.conversion_cost_per_mw), float(s.conversion_rate), conv_col, buyers.mw,
        buyers.capital, buyers.mw_liq, buyers.mw_conv, sb.holder, sb.since, sb.lender,
        sb.gpu_mw, LENDER, RETIRED, SOLD, s.sale_months, s.max_hold_months, v_liq, v_air, x,
        sb.liquid, sb.buyer, float(s.build_cost_per_mw), buyers.unlimited, buyers.mw_used,
        buyers.holdings, s.sell_with_fleet, newest_first, lb.claim_pool, lb.recoveries,
        lb.later_recoveries, lb.inventory, lb.inv_since, lb.repo_units, lb.repo_debt,
        desk.cash_repaid, sales, totals, old_idx, tmp_n, s.host_in_place, env.rent,
        env.power_cost_per_gpu(), float(env.cfg.utilisation), HOURS_PER_MONTH,
        float(s.hosting_per_kw_month), lb.cash, sb.hosted_units, arbitrage,
        float(s.mining_mw_per_ph), b.status, int(BorrowerStatus.DEFAULTED), sb.mine_mw,
        float(env.hashprice), b.mining_cost, DAYS_PER_MONTH, float(s.host_share),
        float(buyers.cfg.spot_opex_per_gpu), float(s.switch_cost_per_mw),
        float(s.switch_payback_months), float(s.switch_rate), float(s.host_demand_mw),
        sb.host_rent, sb.host_mw, sb.switch_debt, sb.switch_pay,
        b.mining_share if arbitrage else _NONE, b.site_income if arbitrage else _NONE)
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
        sb.fleet_units_sold += fleet_units
    if n_old:
        sb.retired_mw += retired
        idx = old_idx[:n_old]
        m.log_events("site_retired", "lender", sb.lender[idx], amount=sb.gpu_mw[idx])
    if hosted_any:
        m.add_outside_flow("tenants", tenants)
        m.add_outside_flow("opex", -opex)
        sb.hosting_income += income
