"""The borrowers' sites' month (``sites.enabled``; docs/model.md, "Power and cooling"), run
between phases 4 and 5: the buyers' conversion of air MW to liquid, site sales, retirement,
hosting in place and the miners' energy arbitrage (:meth:`agents.sites.SiteBook.month`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.borrower import BorrowerStatus
from agents.sites import LENDER, RETIRED
from sim.core.environment import DAYS_PER_MONTH, HOURS_PER_MONTH
from sim.world.kernels import sites as ks

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def run(m: LiquidationModel) -> None:
    """The sites' month (:meth:`agents.sites.SiteBook.month`). On the compiled engine one
    kernel call (:func:`sim.world.kernels.sites.sites_month`) under every switch, two in a
    month where a site is ready for sale, the sales (``SiteBook._sell``) running on numpy
    between them; on the numpy engine ``SiteBook.month`` itself (the kernel's oracle)."""
    if m.engine == "compiled":
        _run_compiled(m)
        return
    m.sites.month(m)


def _run_compiled(m: LiquidationModel) -> None:
    """``SiteBook.month`` through the kernel: the reservation prices here (as the numpy code
    asks the buyers for them), then the books rebound to the arrays the numpy code would have
    made new, the outside flows added and the events logged in its order."""
    sb, env, buyers, lb, b = m.sites, m.env, m.buyers, m.lenders, m.borrowers
    s = sb.cfg
    nk, n, nl = buyers.n, b.n, lb.n
    has_buyers = nk > 0
    res = buyers.reservation(env) if has_buyers else np.zeros((0, env.n_gen))
    do_convert = has_buyers and not buyers.unlimited and s.conversion_rate > 0
    conv_col = s.conversion_months - 1 if s.conversion_months else -1
    v_liq, v_air, x = np.empty(nk), np.empty(nk), np.empty(nk)
    mw_new, cap_new, liq_new = np.empty(nk), np.empty(nk), np.empty(nk)
    old_idx, tmp_n = np.empty(n, dtype=np.int64), np.empty(n)
    hosted = np.zeros(nl)
    rent_new, hmw_new, debt_new = np.empty(n), np.empty(n), np.empty(n)
    pay_new, share_new, income_new = np.empty(n), np.empty(n), np.empty(n)

    def args():  # the books' arrays as they are now (the sales write into some of them)
        return (env.t, has_buyers, res, m.price, env.kw, sb.liquid_gen, env.shipping, do_convert,
                float(s.conversion_cost_per_mw), float(s.conversion_rate), conv_col, buyers.mw,
                buyers.capital, buyers.mw_liq, buyers.mw_conv, sb.holder, sb.since, sb.lender,
                sb.gpu_mw, LENDER, RETIRED, s.sale_months, s.max_hold_months, v_liq, v_air, x,
                mw_new, cap_new, liq_new, old_idx, tmp_n, s.host_in_place, lb.inventory, env.rent,
                env.power_cost_per_gpu(), float(env.cfg.utilisation), HOURS_PER_MONTH,
                float(s.hosting_per_kw_month), lb.cash, hosted, s.arbitrage,
                float(s.mining_mw_per_ph), b.status, int(BorrowerStatus.DEFAULTED), sb.mine_mw,
                float(env.hashprice), b.mining_cost, DAYS_PER_MONTH, float(s.host_share),
                float(buyers.cfg.spot_opex_per_gpu), float(s.switch_cost_per_mw),
                float(s.switch_payback_months), float(s.switch_rate), float(s.host_demand_mw),
                sb.host_rent, sb.host_mw, sb.switch_debt, sb.switch_pay, rent_new, hmw_new,
                debt_new, pay_new, share_new, income_new)

    (converted, xany, xsum, ready, n_old, retired, hosted_any, tenants, opex, income,
     arb) = ks.sites_month(False, *args())
    if converted:  # BuyerBook.convert's new arrays
        buyers.mw, buyers.capital = mw_new, cap_new
        if conv_col < 0:
            buyers.mw_liq = liq_new
    if xany:
        sb.converted_mw += xsum
        m.add_outside_flow("buyer_capital", -xsum * s.conversion_cost_per_mw)
    if ready:  # the sales on numpy, then the rest of the month
        sb.sell(m, v_liq, v_air, res)
        (_, _, _, _, n_old, retired, hosted_any, tenants, opex, income,
         arb) = ks.sites_month(True, *args())
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
        sb.switch_debt, sb.switch_pay = debt_new, pay_new
        b.mining_share, b.site_income = share_new, income_new
