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
    from sim.world.stack import MonthContext, RunStack


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
    _put_back(m, xany, xsum, rows, sales, totals, fleet_sold, fleet_units, n_old, retired,
              old_idx, hosted_any, tenants, opex, income)


def _put_back(m: LiquidationModel, xany: bool, xsum: float, rows: int, sales: np.ndarray,
              totals: np.ndarray, fleet_sold: bool, fleet_units: int, n_old: int,
              retired: float, old_idx: np.ndarray, hosted_any: bool, tenants: float,
              opex: float, income: float) -> None:
    """The kernel's results of one run's month (``sales``, ``totals`` and ``old_idx`` its
    rows of them) put where ``SiteBook.month`` puts them, for :func:`_run_compiled` and
    :func:`run_batch`: the outside flows added and the events logged in its order, the
    running totals with their types kept."""
    sb, desk = m.sites, m.desk
    if xany:
        sb.converted_mw += xsum
        m.add_outside_flow("buyer_capital", -xsum * sb.cfg.conversion_cost_per_mw)
    if rows:  # SiteBook._sell's (and _sell_fleet's) flows and events, in its order
        unlimited = m.buyers.unlimited
        for kind, l_, g, units, amount, price, to_buyers, surplus in sales[:rows].tolist():
            if unlimited:
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


# the sites' kernel arguments a run's model holds as resident arrays (sim.world.stack): the
# stack's (R, ...) array goes to the batched kernel for each, by argument name, with the
# switch that reads it (None: always; "arbitrage": only with the arbitrage on, else a stand-in)
_STACKED = (("price", ("model", "price"), None), ("kw", ("env", "kw"), None),
            ("liquid_gen", ("sites", "liquid_gen"), None), ("b_mw", ("buyers", "mw"), None),
            ("b_capital", ("buyers", "capital"), None),
            ("b_mw_liq", ("buyers", "mw_liq"), None),
            ("b_mw_conv", ("buyers", "mw_conv"), None), ("holder", ("sites", "holder"), None),
            ("since", ("sites", "since"), None), ("lender", ("sites", "lender"), None),
            ("gpu_mw", ("sites", "gpu_mw"), None), ("liquid", ("sites", "liquid"), None),
            ("site_buyer", ("sites", "buyer"), None), ("mw_used", ("buyers", "mw_used"), None),
            ("holdings", ("buyers", "holdings"), None),
            ("claim_pool", ("lenders", "claim_pool"), None),
            ("recoveries", ("lenders", "recoveries"), None),
            ("later_recoveries", ("lenders", "later_recoveries"), None),
            ("inventory", ("lenders", "inventory"), None),
            ("inv_since", ("lenders", "inv_since"), None),
            ("repo_units", ("lenders", "repo_units"), None),
            ("repo_debt", ("lenders", "repo_debt"), None),
            ("cash_repaid", ("desk", "cash_repaid"), None), ("rent", ("env", "rent"), None),
            ("power", ("env", "_power_cost"), None), ("lb_cash", ("lenders", "cash"), None),
            ("hosted", ("sites", "hosted_units"), None),
            ("status", ("borrowers", "status"), None), ("mine_mw", ("sites", "mine_mw"), None),
            ("mining_cost", ("borrowers", "mining_cost"), None),
            ("host_rent", ("sites", "host_rent"), None), ("host_mw", ("sites", "host_mw"), None),
            ("switch_debt", ("sites", "switch_debt"), None),
            ("switch_pay", ("sites", "switch_pay"), None),
            ("mining_share", ("borrowers", "mining_share"), "arbitrage"),
            ("site_income", ("borrowers", "site_income"), "arbitrage"))


def _held(m: LiquidationModel) -> dict[str, np.ndarray]:
    """The arrays :func:`_run_compiled` passes for the names of :data:`_STACKED`."""
    sb, env, buyers, lb, b = m.sites, m.env, m.buyers, m.lenders, m.borrowers
    arbitrage = sb.cfg.arbitrage and sb.cfg.mining_mw_per_ph > 0.0
    return {"price": m.price, "kw": env.kw, "liquid_gen": sb.liquid_gen,
            "b_mw": buyers.mw, "b_capital": buyers.capital,
            "b_mw_liq": buyers.mw_liq, "b_mw_conv": buyers.mw_conv, "holder": sb.holder,
            "since": sb.since, "lender": sb.lender, "gpu_mw": sb.gpu_mw, "liquid": sb.liquid,
            "site_buyer": sb.buyer, "mw_used": buyers.mw_used, "holdings": buyers.holdings,
            "claim_pool": lb.claim_pool, "recoveries": lb.recoveries,
            "later_recoveries": lb.later_recoveries, "inventory": lb.inventory,
            "inv_since": lb.inv_since, "repo_units": lb.repo_units, "repo_debt": lb.repo_debt,
            "cash_repaid": m.desk.cash_repaid, "rent": env.rent,
            "power": env.power_cost_per_gpu(), "lb_cash": lb.cash,
            "hosted": sb.hosted_units, "status": b.status, "mine_mw": sb.mine_mw,
            "mining_cost": b.mining_cost, "host_rent": sb.host_rent, "host_mw": sb.host_mw,
            "switch_debt": sb.switch_debt, "switch_pay": sb.switch_pay,
            "mining_share": b.mining_share if arbitrage else _NONE,
            "site_income": b.site_income if arbitrage else _NONE}


def _numbers(m: LiquidationModel) -> dict[str, object]:
    """The numbers and switches :func:`_run_compiled` passes that never change in a run (the
    configuration's and the books' switches), by argument name."""
    s, buyers = m.sites.cfg, m.buyers
    has_buyers = buyers.n > 0
    return {"has_buyers": has_buyers,
            "do_convert": has_buyers and not buyers.unlimited and s.conversion_rate > 0,
            "conv_cost": float(s.conversion_cost_per_mw), "conv_rate": float(s.conversion_rate),
            "conv_col": s.conversion_months - 1 if s.conversion_months else -1,
            "sale_months": s.sale_months, "max_hold": s.max_hold_months,
            "build_cap": float(s.build_cost_per_mw), "unlimited": buyers.unlimited,
            "with_fleet": s.sell_with_fleet, "host_in_place": s.host_in_place,
            "util": float(m.env.cfg.utilisation),
            "hosting_fee": float(s.hosting_per_kw_month),
            "arbitrage": s.arbitrage and s.mining_mw_per_ph > 0.0,
            "mining_mw_per_ph": float(s.mining_mw_per_ph), "host_share": float(s.host_share),
            "spot_opex": float(buyers.cfg.spot_opex_per_gpu),
            "switch_cost": float(s.switch_cost_per_mw),
            "payback": float(s.switch_payback_months), "switch_rate": float(s.switch_rate),
            "host_demand": float(s.host_demand_mw)}


# dtypes of the (R,) arrays of :func:`_numbers`
_BOOL = ("has_buyers", "do_convert", "unlimited", "with_fleet", "host_in_place", "arbitrage")
_INT = ("conv_col", "sale_months", "max_hold")


def batch_inputs(stack: RunStack) -> dict | None:
    """What :func:`run_batch` passes to :func:`ks.sites_batch` for a stack's runs, made at
    its first batched month: the stacks of the arrays each run's sites' month reads and
    writes (:data:`_STACKED`, checked to be the very arrays the run's own phase would pass,
    and of one shape in every run), the numbers of :func:`_numbers` as (R,) arrays, the
    generations newest first stacked, and the batch's scratch (what :func:`_scratch` makes
    per run, with a leading run axis, and what is gathered each month: the month, the
    reservation prices, the shipping generations, the hashprice, the running totals). None
    when the runs cannot share one call (not all compiled with sites, the arbitrage on in
    some runs only, shapes that differ): then each runs its own phase."""
    models = stack.models
    if any(m.engine != "compiled" or m.sites is None for m in models):
        return None
    nums = [_numbers(m) for m in models]
    if len({x["arbitrage"] for x in nums}) != 1:  # its stand-ins have another shape
        return None
    arbitrage = nums[0]["arbitrage"]
    helds = [_held(m) for m in models]
    n = len(models)
    out: dict[str, np.ndarray] = {}
    for name, key, switch in _STACKED:
        if switch == "arbitrage" and not arbitrage:
            out[name] = np.zeros((n, 0))
            continue
        key = stack.aliases.get(key, key)
        if key not in stack.stacks or len(set(stack.shapes[key])) != 1:
            return None
        if any(h[name] is not stack.view(key, r) for r, h in enumerate(helds)):
            return None
        out[name] = stack.stacks[key]
    for name in nums[0]:
        dtype = np.bool_ if name in _BOOL else np.int64 if name in _INT else np.float64
        out[name] = np.array([x[name] for x in nums], dtype=dtype)
    m0 = models[0]
    nk, nb, g = m0.buyers.n, m0.borrowers.n, m0.env.n_gen
    out["newest_first"] = np.array([m.newest_first for m in models], dtype=np.int64)
    e = np.empty
    out.update(t=np.zeros(n, dtype=np.int64), res=np.zeros((n, nk, g)),
               shipping=np.zeros((n, g), dtype=np.bool_),
               hashprice=np.zeros(n), totals=np.zeros((n, 5)),
               sales=e((n, nb * (g + 1), ks.N_EV)), v_liq=e((n, nk)), v_air=e((n, nk)),
               x=e((n, nk)), old_idx=e((n, nb), dtype=np.int64), tmp_n=e((n, nb)),
               flags=np.zeros((n, 3), dtype=np.bool_), counts=np.zeros((n, 3), dtype=np.int64),
               sums=np.zeros((n, 5)))
    return out


_ARGS = ("t", "has_buyers", "res", "price", "kw", "liquid_gen", "shipping", "do_convert",
         "conv_cost", "conv_rate", "conv_col", "b_mw", "b_capital", "b_mw_liq", "b_mw_conv",
         "holder", "since", "lender", "gpu_mw", "lender_code", "retired_code", "sold_code",
         "sale_months", "max_hold", "v_liq", "v_air", "x", "liquid", "site_buyer", "build_cap",
         "unlimited", "mw_used", "holdings", "with_fleet", "newest_first", "claim_pool",
         "recoveries", "later_recoveries", "inventory", "inv_since", "repo_units", "repo_debt",
         "cash_repaid", "sales", "totals", "old_idx", "tmp_n", "host_in_place", "rent", "power",
         "util", "hours", "hosting_fee", "lb_cash", "hosted", "arbitrage", "mining_mw_per_ph",
         "status", "defaulted", "mine_mw", "hashprice", "mining_cost", "days", "host_share",
         "spot_opex", "switch_cost", "payback", "switch_rate", "host_demand", "host_rent",
         "host_mw", "switch_debt", "switch_pay", "mining_share", "site_income", "flags",
         "counts", "sums")

# the kernel's constants, the same in every run
_CONSTANTS = {"lender_code": LENDER, "retired_code": RETIRED, "sold_code": SOLD,
              "hours": HOURS_PER_MONTH, "defaulted": int(BorrowerStatus.DEFAULTED),
              "days": DAYS_PER_MONTH}


def _alone(stack: RunStack, r: int) -> None:
    """Run r's own sites' month (as :data:`sim.world.stack.MONTH`'s step runs it), its
    failure stopping run r alone (:meth:`sim.world.stack.RunStack.fail`)."""
    m = stack.models[r]
    if m.sites is None:
        return
    try:
        run(m)
    except Exception as e:  # noqa: BLE001 - one run's failure is that run's result
        stack.fail(r, e)


def run_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """The sites' month for the runs ``runs`` of a stack by one call of
    :func:`ks.sites_batch` over the stacked arrays (:func:`batch_inputs`), each run's
    numbers, outside flows and events then put where :func:`_run_compiled` puts them, in its
    order: the same bits as each run's own phase (``tests/world/test_batch_sites.py``). Runs
    that cannot share a call each run their own phase (:func:`run`; none without sites).
    The one error of :func:`_run_compiled` (the arbitrage on and no ``mining_share``) is
    checked run by run before the call: such a run is left out of it and then runs its own
    phase, which raises, so it fails alone (:meth:`sim.world.stack.RunStack.fail`) after the
    others' results are written."""
    b = stack.inputs("sites", batch_inputs)
    if b is None:
        for r in runs:
            _alone(stack, r)
        return
    models = stack.models
    t, res, ship, hashprice, totals = b["t"], b["res"], b["shipping"], b["hashprice"], b["totals"]
    arbitrage = bool(b["arbitrage"][0])
    go, bad = [], []
    for r in runs:
        m = models[r]
        if arbitrage and m.borrowers.mining_share is None:
            bad.append(r)
            continue
        go.append(r)
        sb, env, desk = m.sites, m.env, m.desk
        if m.buyers.n:  # the reservation prices, as _run_compiled asks for them
            m.buyers.reservation(env, out=res[r])
        t[r] = env.t
        ship[r] = env.shipping  # a view of the environment's own month buffer, not stacked
        hashprice[r] = env.hashprice
        tr = totals[r]
        tr[0], tr[1], tr[2] = m.recovered_total, sb.sold_mw, sb.sale_proceeds
        tr[3], tr[4] = desk.lent, desk.cash
    if go:
        ks.sites_batch(np.array(go, dtype=np.int64),
                       *(_CONSTANTS[a] if a in _CONSTANTS else b[a] for a in _ARGS))
    flags, counts, sums, sales, old_idx = (b["flags"], b["counts"], b["sums"], b["sales"],
                                           b["old_idx"])
    for r in go:
        xany, fleet_sold, hosted_any = flags[r].tolist()
        rows, fleet_units, n_old = counts[r].tolist()
        xsum, retired, tenants, opex, income = sums[r].tolist()
        _put_back(models[r], xany, xsum, rows, sales[r], totals[r], fleet_sold, fleet_units,
                  n_old, retired, old_idx[r], hosted_any, tenants, opex, income)
    for r in bad:
        _alone(stack, r)
