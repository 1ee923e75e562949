"""Phase 7, prices (docs/model.md section 3): the price index (the clearing price, or the best
bid when nothing trades, carried with the value in best use when nobody can bid), buyers'
expectations (adaptive, or on news only with the outside demand) and their regrown capital."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.buyer import replacement_cost
from sim.core import numerics as nm
from sim.world.kernels import prices as kp
from sim.world.state import MonthState

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel
    from sim.world.stack import MonthContext, RunStack


def run(m: LiquidationModel, month: MonthState) -> None:
    """Phase 7: p_t = the clearing price where a generation traded; else the best bid of a
    buyer with room for a unit, or, with no such buyer, p_{t-1} x V_t / V_{t-1}
    (``month.prev_fundamental``), never below the salvage floor (nor the outside demand's
    first bid); p_t = V_t before a generation ships. Buyers adapt their expectations to
    ln(p_t / p_{t-1}) - ln(V_t / V_{t-1}) where a price traded (:func:`adapt_on_news` with the
    outside demand) and regrow their capital. On the compiled engine, where :func:`covers`
    the scenario, one kernel call (:func:`sim.world.kernels.prices.prices_month`)."""
    if m.engine == "compiled" and covers(m):
        _run_compiled(m, month)
        return
    env, buyers = m.env, m.buyers
    # m.price is replaced below, never written in place: no copy needed
    old_price, old_value = m.price, month.prev_fundamental
    shipping = env.shipping
    floor = m.salvage_price
    # the best bid of a buyer with room for at least one unit at its own reservation
    # price (np.maximum.reduce is what ndarray.max calls); unlimited buyers all have room,
    # and np.where(True, r, 0.0) is r
    if buyers.unlimited:
        bids = m.reservation
    else:
        if buyers.sites:  # spare MW of the cooling each generation needs
            spare = np.where(m.sites.liquid_gen[None, :], buyers.mw_liq[:, None],
                             (buyers.mw + buyers.mw_liq)[:, None])
        else:
            spare = buyers.mw[:, None]
        has_cap = ((buyers.capital[:, None] >= np.maximum(m.reservation, 1.0))
                   & (spare * 1000.0 >= env.kw[None, :]))
        bids = np.where(has_cap, m.reservation, 0.0)
    best = np.maximum.reduce(bids, axis=0, initial=0.0)
    # no trade: the best bid of a buyer who could take a unit; with no such buyer there is
    # no new information, and the last price moves with the value in best use
    carried = old_price * np.divide(m.fundamental, old_value,
                                    out=np.ones(m.n_gen), where=old_value > 0)
    if m.outside_on:  # the outside demand's first bid is a bid too
        top = m.outside_demand.top * np.minimum(replacement_cost(env), m.fundamental)
        floor = np.maximum(floor, top)
    quote = np.maximum(np.where(best > 0, best, carried), floor)
    new = np.where(m.traded, m.clearing, quote)
    m.price = np.where(shipping, new, m.fundamental)
    m.price_hist[env.t] = m.price
    moved = m.traded & shipping & (old_price > 0)
    if m.outside_on:
        adapt_on_news(m, moved)
    elif moved.any():  # else adapt would leave every expectation as it is
        with np.errstate(divide="ignore", invalid="ignore"):
            dlp = nm.log(np.maximum(m.price, 1e-9) / np.maximum(old_price, 1e-9))
            dlv = nm.log(np.maximum(m.fundamental, 1e-9) / np.maximum(old_value, 1e-9))
        buyers.adapt(dlp, dlv, moved)
    if buyers.unlimited:  # unlimited buyers' capital is off the books
        buyers.regrow()
        return
    before = np.add.reduce(buyers.capital)  # (ndarray.sum without its wrapper)
    buyers.regrow()
    m.add_outside_flow("buyer_capital", np.add.reduce(buyers.capital) - before)


def covers(m: LiquidationModel) -> bool:
    """Whether phase 7's kernel covers the scenario: every switch does (docstring of
    :mod:`sim.world.kernels.prices`); kept as the one place to say otherwise."""
    return True


_NONE = np.zeros(0)  # the news arrays' stand-in without the outside demand (never read)
_NO_PINS = np.zeros(0, dtype=bool)
_NO_CONV = np.zeros((0, 1))  # the conversions' stand-in without sites (never read)


def _static(m: LiquidationModel) -> tuple:
    """The kernel's arguments that never change in a run, read at the first compiled month
    (the books' configuration and arrays bound once: the buyers' initial capital is scaled
    in place by a capital shock, the same array): limited or not, kW per GPU, the outside
    demand's switch, top and reference, the adaptation and regrowth rates, ln(1 - d), the
    spare MW regrown a month (:meth:`agents.buyer.BuyerBook.mw_step`, made at the build by
    :func:`prepare`), the initial MW and the sites' switch and arrays, and the scratch the
    kernel copies last month's price into (G,)."""
    env, buyers = m.env, m.buyers
    c = buyers.cfg
    sites = buyers.sites
    return (buyers.unlimited, env.kw, m.outside_on, m.outside_demand.top,
            replacement_cost(env), c.adapt, buyers.valuation_inputs(env).log_decay,
            buyers.capital0, c.capital_regrowth, buyers.mw_step(), buyers.mw0, sites,
            m.sites.liquid_gen if sites else _NO_PINS, buyers.mw0_liq if sites else _NONE,
            c.mw_regrowth, np.empty(m.n_gen))


def prepare(m: LiquidationModel) -> None:
    """At the build, on both engines: the buyers' spare MW regrown a month
    (:meth:`agents.buyer.BuyerBook.mw_step`, which the numpy code's first regrowth would
    make), so that no month makes an array the model holds."""
    m.buyers.mw_step()


def _run_compiled(m: LiquidationModel, month: MonthState) -> None:
    """Phase 7 by :func:`kp.prices_month`, which writes in place the arrays the numpy code
    replaces (the price, the news arrays, the expectations, the spare MW) with the numbers
    the numpy code gives them, and regrows the capital in place; the same outside flow."""
    st = m.kernel_inputs.get("prices")
    if st is None:
        st = m.kernel_inputs["prices"] = _static(m)
    (unlimited, kw, on, od_top, repl, lam, log_decay, capital0, capital_regrowth, mw_step,
     mw0, sites, liquid_gen, mw0_liq, mw_regrowth, old_price) = st
    env, buyers = m.env, m.buyers
    built, before, after = kp.prices_month(
        env.t, env.shipping, m.price, old_price, month.prev_fundamental, m.fundamental,
        m.reservation, unlimited, buyers.capital, buyers.mw, kw, m.salvage_price, on, od_top,
        repl, m.traded, m.clearing, m.price_hist, m.news_price if on else _NONE,
        m.news_value if on else _NONE, m.news_t if on else _NONE,
        m.month_pinned if on else _NO_PINS, buyers.extrap, lam, log_decay, capital0,
        capital_regrowth, mw_step, mw0, sites, liquid_gen,
        buyers.mw_liq if sites else _NONE, mw0_liq, mw_regrowth,
        buyers.mw_conv if sites else _NO_CONV)
    if sites:
        buyers.mw_built += built
    if not unlimited:  # unlimited buyers' capital is off the books
        m.add_outside_flow("buyer_capital", after - before)


# phase 7's kernel arguments a run's model holds as resident arrays (sim.world.stack): the
# stack's (R, ...) array goes to the batched kernel for each, by argument name, with the
# switch that reads it (None: always)
_STACKED = (("price", ("model", "price"), None), ("fund", ("model", "fundamental"), None),
            ("reservation", ("model", "reservation"), None),
            ("capital", ("buyers", "capital"), None), ("mw", ("buyers", "mw"), None),
            ("kw", ("env", "kw"), None), ("floor", ("model", "salvage_price"), None),
            ("traded", ("model", "traded"), None), ("clearing", ("model", "clearing"), None),
            ("price_hist", ("model", "price_hist"), None),
            ("news_price", ("model", "news_price"), "on"),
            ("news_value", ("model", "news_value"), "on"),
            ("news_t", ("model", "news_t"), "on"), ("pinned", ("model", "month_pinned"), "on"),
            ("extrap", ("buyers", "extrap"), None), ("capital0", ("buyers", "capital0"), None),
            ("mw_step", ("buyers", "_mw_step"), None), ("mw0", ("buyers", "mw0"), None),
            ("liquid_gen", ("sites", "liquid_gen"), "sites"),
            ("mw_liq", ("buyers", "mw_liq"), "sites"), ("mw0_liq", ("buyers", "mw0_liq"), "sites"),
            ("mw_conv", ("buyers", "mw_conv"), "sites"))


def _held(m: LiquidationModel, st: tuple) -> dict[str, np.ndarray]:
    """The arrays :func:`_run_compiled` passes for the names of :data:`_STACKED`."""
    buyers, (_u, kw, on, *_, capital0, _cr, mw_step, mw0, sites, liquid_gen, mw0_liq, _mr,
             _old) = m.buyers, st
    return {"price": m.price, "fund": m.fundamental, "reservation": m.reservation,
            "capital": buyers.capital, "mw": buyers.mw, "kw": kw, "floor": m.salvage_price,
            "traded": m.traded, "clearing": m.clearing, "price_hist": m.price_hist,
            "news_price": m.news_price if on else _NONE,
            "news_value": m.news_value if on else _NONE, "news_t": m.news_t if on else _NONE,
            "pinned": m.month_pinned if on else _NO_PINS, "extrap": buyers.extrap,
            "capital0": capital0, "mw_step": mw_step, "mw0": mw0, "liquid_gen": liquid_gen,
            "mw_liq": buyers.mw_liq if sites else _NONE, "mw0_liq": mw0_liq,
            "mw_conv": buyers.mw_conv if sites else _NO_CONV}


def batch_inputs(stack: RunStack) -> dict | None:
    """What :func:`run_batch` passes to :func:`kp.prices_batch` for a stack's runs, made at
    its first batched month: the stacks of the arrays each run's phase 7 reads
    (:data:`_STACKED`, checked to be the very arrays the run's own phase would pass, and of
    one shape in every run), the numbers and switches of :func:`_static` as (R,) arrays, its
    derived arrays stacked, and the batch's scratch. None when the runs cannot share one
    call (not all compiled and covered, switches or shapes that differ): then each runs its
    own phase."""
    models = stack.models
    if any(m.engine != "compiled" or not covers(m) for m in models):
        return None
    sts = []
    for m in models:
        st = m.kernel_inputs.get("prices")
        if st is None:
            st = m.kernel_inputs["prices"] = _static(m)
        sts.append(st)
    switches = {(st[0], st[2], st[11]) for st in sts}  # unlimited, outside demand, sites
    if len(switches) != 1:
        return None
    unlimited, on, sites = switches.pop()
    n = len(models)
    out: dict[str, np.ndarray] = {}
    for name, key, switch in _STACKED:
        if (switch == "on" and not on) or (switch == "sites" and not sites):
            out[name] = np.zeros((n, *_held(models[0], sts[0])[name].shape),
                                 dtype=_held(models[0], sts[0])[name].dtype)
            continue
        if key not in stack.stacks or len(set(stack.shapes[key])) != 1:
            return None
        if any(_held(m, st)[name] is not stack.view(key, r)
               for r, (m, st) in enumerate(zip(models, sts, strict=True))):
            return None
        out[name] = stack.stacks[key]
    for i, name in ((0, "unlimited"), (2, "outside_on"), (11, "sites")):
        out[name] = np.array([st[i] for st in sts], dtype=np.bool_)
    for i, name in ((3, "od_top"), (5, "lam"), (8, "capital_regrowth"), (14, "mw_regrowth")):
        out[name] = np.array([st[i] for st in sts], dtype=np.float64)
    for i, name in ((4, "repl"), (6, "log_decay"), (15, "old_price")):
        out[name] = np.stack([st[i] for st in sts])
    n_g = models[0].n_gen
    out["t"] = np.zeros(n, dtype=np.int64)
    out["shipping"] = np.zeros((n, n_g), dtype=np.bool_)
    out["old_value"] = np.zeros((n, n_g))
    for name in ("built", "before", "after"):
        out[name] = np.zeros(n)
    return out


_ARGS = ("t", "shipping", "price", "old_price", "old_value", "fund", "reservation",
         "unlimited", "capital", "mw", "kw", "floor", "outside_on", "od_top", "repl", "traded",
         "clearing", "price_hist", "news_price", "news_value", "news_t", "pinned", "extrap",
         "lam", "log_decay", "capital0", "capital_regrowth", "mw_step", "mw0", "sites",
         "liquid_gen", "mw_liq", "mw0_liq", "mw_regrowth", "mw_conv", "built", "before",
         "after")


def run_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """Phase 7 for the runs ``runs`` of a stack (``contexts`` their months' hand-overs) by one
    call of :func:`kp.prices_batch` over the stacked arrays (:func:`batch_inputs`), each run's
    numbers and outside flow then put where :func:`_run_compiled` puts them: the same bits as
    each run's own phase (``tests/world/test_stack.py``). Runs that cannot share a call each
    run their own phase (:func:`run`). Nothing here raises for one run: phase 7 has no error."""
    b = stack.inputs("prices", batch_inputs)
    models = stack.models
    if b is None:
        for r, c in zip(runs, contexts, strict=True):
            run(models[r], c.month)
        return
    t, ship, old_value = b["t"], b["shipping"], b["old_value"]
    for r, c in zip(runs, contexts, strict=True):
        m = models[r]
        t[r] = m.env.t
        ship[r] = m.env.shipping
        old_value[r] = c.month.prev_fundamental
    kp.prices_batch(np.array(runs, dtype=np.int64), *(b[name] for name in _ARGS))
    built, before, after = b["built"], b["before"], b["after"]
    sites, unlimited = bool(b["sites"][0]), bool(b["unlimited"][0])
    for r in runs:
        m = models[r]
        if sites:
            m.buyers.mw_built += float(built[r])
        if not unlimited:  # unlimited buyers' capital is off the books
            m.add_outside_flow("buyer_capital", after[r] - before[r])


def adapt_on_news(m: LiquidationModel, moved: np.ndarray) -> None:
    """Phase 7's expectations update with the outside demand: only prices set by the
    secondary buyers are news about the value in best use. A month whose price the
    outside demand set (``month_pinned``) is skipped; the surprise of a news month is
    measured from the last news month s, per month elapsed,

        x <- (1 - lambda) x + lambda clip(12 [ln(p_t / p_s) - ln(V_t / V_s)] / (t - s), -1, 1).
    """
    # a generation's first price (at launch) is its first reference, not news
    fresh = (m.news_price <= 0) & (m.price > 0) & m.env.shipping
    if fresh.any():
        m.news_price = np.where(fresh, m.price, m.news_price)
        m.news_value = np.where(fresh, m.fundamental, m.news_value)
        m.news_t = np.where(fresh, float(m.env.t), m.news_t)
    news = moved & ~m.month_pinned & ~fresh & (m.news_price > 0)
    if not news.any():
        return
    t = m.env.t
    gap = np.maximum(t - m.news_t, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dlp = nm.log(np.maximum(m.price, 1e-9) / np.maximum(m.news_price, 1e-9))
        dlv = nm.log(np.maximum(m.fundamental, 1e-9)
                     / np.maximum(m.news_value, 1e-9))
    m.buyers.adapt(dlp / gap, dlv / gap, news)
    m.news_price = np.where(news, m.price, m.news_price)
    m.news_value = np.where(news, m.fundamental, m.news_value)
    m.news_t = np.where(news, float(t), m.news_t)
