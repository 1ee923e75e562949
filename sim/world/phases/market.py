"""Phase 6, the market (docs/model.md section 3 and 7.12): one uniform-price call auction per
generation, newest first (:func:`sim.core.market.clear_book`), or the parametric inverse demand;
trades settle GPUs and cash between sellers and buyers. After it, secured lenders sweep the
borrowers' sale proceeds (:func:`sweep_sale_proceeds`)."""

from __future__ import annotations

import math
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from agents.borrower import KIND_NAMES
from agents.buyer import MONTH_DAYS, replacement_cost
from sim.core.market import clear_book, outside_bids, parametric_price
from sim.world.eventlog import AGENT_CODE, NAME_CODE
from sim.world.kernels import borrowers as kborrowers
from sim.world.kernels import market as kmarket
from sim.world.phases import borrowers
from sim.world.state import SellOrders

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel
    from sim.world.stack import MonthContext, RunStack


def fill_events(m: LiquidationModel, name: str, agent, idx: list, gen: int, units: list,
                price: float) -> None:
    """Log the fills ``units`` (Python ints) of the participants ``idx`` at ``price``;
    ``agent`` is one name for all or a list along ``idx``. The amount ``u * price`` of the
    int64 x float64 product of numpy is the double the product of a Python int and float
    gives (units are far below 2**53, so converting them to float is exact)."""
    units = np.array(units, dtype=np.int64)
    price = float(price)
    m.events.add(m.env.t, name, agent, idx, int(gen), units, units * price, price)


def run(m: LiquidationModel, orders: SellOrders) -> None:
    """Phase 6: one uniform-price call auction per generation, newest first
    (:func:`sim.core.market.clear_book`; docs/model.md 7.12): asks are the forced lenders' (at the
    salvage floor, or market orders with the outside demand), the patient lenders', the
    borrowers', the desk's and the buyer of last resort's (:func:`ask_book`); bids are the
    participating buyers' reservation prices up to their capacity, the desk's floor bid, the
    buyer of last resort's and the salvage (or outside-demand) schedule (:class:`BidBook`).
    In parametric mode every offered unit sells at p0 exp(-alpha q / stock)
    (:func:`parametric`). Trades settle units and cash (:func:`settle_bids`,
    :func:`settle_orders`) and are counted and logged (:func:`record_trade`,
    :func:`log_purchases`).

    On the compiled engine the month starts in place (:func:`start_month`) and runs as one
    kernel call (:func:`run_compiled`); a month the kernel leaves to numpy runs the numpy code
    with the arrays it rebinds put back (:func:`_resident`)."""
    env, buyers = m.env, m.buyers
    auction = m.cfg.market.mode == "auction"
    if m.engine == "compiled":
        start_month(m, auction)  # the same, written in place
        if m.lenders.n and run_compiled(m, orders):
            return
        _numpy_month(m, orders, auction)  # a month the kernel leaves to numpy
        return
    m.reset_month()
    reservation = buyers.reservation(env)
    m.reservation = reservation
    # search friction (docs/model.md 7.12): only buyers able to close within the month bid
    m.bidding = (buyers.participating(m.search_rng, MONTH_DAYS)
                 if auction else np.ones(buyers.n, dtype=bool))
    m.sale_proceeds = np.zeros(m.borrowers.n)
    _run_numpy(m, orders, auction)


def _run_numpy(m: LiquidationModel, orders: SellOrders, auction: bool) -> None:
    """Phase 6 from :func:`ask_book` on, in numpy (the compiled phase's oracle)."""
    book = ask_book(m, orders)
    if book is None:
        return
    gens, nz_g, nz_r, all_qty, all_price = book
    bids = BidBook(m, orders.floor) if auction else None
    n_l = m.lenders.n
    for g in gens:
        lo, hi = bisect_left(nz_g, g), bisect_right(nz_g, g)
        a_rows, ask_qty = nz_r[lo:hi], all_qty[lo:hi]
        n_forced = bisect_left(a_rows, n_l)  # the forced lenders' rows come first
        forced_total = sum(ask_qty[:n_forced])  # integer sums: exact in any order
        if bids is None:
            fills = ask_qty  # every offered unit sells
            price, volume = parametric(m, g, ask_qty)
            m.external_units[g] += volume
            m.add_outside_flow("salvage", volume * price)
            buys, bought, desk_fill, salvage_fill = [], [], 0, 0
        else:
            b_rows, bid_qty, bid_price = bids.bids(g, sum(ask_qty))
            price, volume, fills, bid_fills, _, _ = clear_book(
                ask_qty, all_price[lo:hi], bid_qty, bid_price, bids.k)
            if m.outside_on and volume:
                m.month_pinned[g] = pinned(b_rows, bid_qty, bid_price, bid_fills,
                                           bids.s0 - 1, bids.k)
            if volume == 0:
                m.month_overhang[g] = forced_total
                continue
            buys, bought, desk_fill, salvage_fill = settle_bids(
                m, g, price, b_rows, bid_fills, bid_price, bids.s0)
        settle_orders(m, g, a_rows, fills, price)
        record_trade(m, g, price, volume, a_rows, fills, n_forced, forced_total)
        log_purchases(m, g, price, buys, bought, salvage_fill, desk_fill)


def build(m: LiquidationModel) -> None:
    """The arrays phase 6 writes in place on the compiled engine (:func:`start_month`), made
    at the model's build, on both engines (the numpy phase rebinds them every month): the
    reservation prices (zeros until the first month), the borrowers' sale proceeds and the
    buyers' closing probabilities (:meth:`agents.buyer.BuyerBook.close_probabilities`)."""
    m.reservation = np.zeros((m.buyers.n, m.n_gen))
    m.sale_proceeds = np.zeros(m.borrowers.n)
    m.buyers.close_probabilities(MONTH_DAYS)


def start_month(m: LiquidationModel, auction: bool) -> None:
    """The start of a compiled phase 6, in place: what the numpy phase makes anew each month
    written into the model's arrays (those of :func:`build` and of ``reset_month``): the
    market counters zeroed (``clearing`` all NaN) and the sale proceeds zeroed
    (:data:`_RESET`), then :func:`_bidders`."""
    m.traded.fill(False)
    m.clearing.fill(np.nan)
    m.month_volume.fill(0)
    m.month_forced.fill(0)
    m.month_overhang.fill(0)
    m.month_salvage.fill(0)
    if m.outside_on:
        m.month_pinned.fill(False)
    m.sale_proceeds.fill(0.0)
    _bidders(m, auction)


# the arrays start_month fills, by phase 6's argument name (run_batch fills their stacks)
_RESET = (("traded", False), ("clearing", np.nan), ("month_volume", 0), ("month_forced", 0),
          ("month_overhang", 0), ("month_salvage", 0), ("month_pinned", False),
          ("sale_proceeds", 0.0))


def _bidders(m: LiquidationModel, auction: bool) -> None:
    """The rest of :func:`start_month` (none of it reads what :data:`_RESET` fills): the
    month's largest fill above a reservation zeroed, the reservation prices, the buyers able
    to bid (the same draws from ``search_rng``: :meth:`agents.buyer.BuyerBook.participating`
    into ``m.bidding``, every buyer in the parametric mode)."""
    buyers = m.buyers
    m.month_above_reservation = 0.0
    buyers.reservation(m.env, out=m.reservation)
    # search friction (docs/model.md 7.12): only buyers able to close within the month bid
    if auction:
        draws = m.kernel_inputs.get("market_draws")  # the uniform draws' scratch array
        if draws is None or draws.shape[0] != buyers.n:
            draws = m.kernel_inputs["market_draws"] = np.empty(buyers.n)
        buyers.participating(m.search_rng, MONTH_DAYS, out=m.bidding, draws=draws)
    else:
        m.bidding.fill(True)


@contextmanager
def _resident(m: LiquidationModel) -> Iterator[None]:
    """Around numpy code run on the compiled engine (a month the kernel leaves to numpy):
    every numpy array of the model and of the books phase 6 moves (buyers, lenders,
    borrowers, the desk, the buyer of last resort) that the code rebinds is copied back into
    the array it replaced, which is put back (same shape and dtype: else the new one stays),
    so that the month leaves the model's arrays resident."""
    owners = [o for o in (m, m.buyers, m.lenders, m.borrowers, m.desk, m.lolr) if o is not None]
    before = [{k: v for k, v in vars(o).items() if isinstance(v, np.ndarray)} for o in owners]
    yield
    for o, arrays in zip(owners, before, strict=True):
        for k, old in arrays.items():
            new = getattr(o, k)
            if (new is not old and isinstance(new, np.ndarray) and new.shape == old.shape
                    and new.dtype == old.dtype and old.flags.writeable):
                np.copyto(old, new)
                setattr(o, k, old)


# (name, agent) of each event code of the compiled phase (sim.world.kernels.market.EV_*)
_EVENT_NAMES = (("sale", "lender"), ("sale", "repo_desk"), ("purchase", "buyer"),
                ("purchase", "salvage"), ("purchase", "repo_desk"), ("purchase", "lolr"),
                ("sale", "lolr"), *(("sale", kind) for kind in KIND_NAMES))
_EVENT_NAME = np.array([NAME_CODE[name] for name, _ in _EVENT_NAMES], dtype=np.int64)
_EVENT_AGENT = np.array([AGENT_CODE[agent] for _, agent in _EVENT_NAMES], dtype=np.int64)
_NO_FLOATS, _NO_FLAGS = np.zeros(0), np.zeros(0, dtype=bool)
_NO_UNITS = np.zeros(0, dtype=np.int64)
_NO_MATRIX = np.zeros((0, 0))
# Python's sum() of floats is compensated (Neumaier) from 3.12 on: record_trade's sum of
# the forced sales' values at repossession, which the kernel repeats
_NEUMAIER_SUM = sys.version_info >= (3, 12)


def _scalar_like(old, new: float, numpy_op: bool):
    """``new`` as the type the numpy phase leaves: a numpy float once a numpy scalar was
    added (``numpy_op``) or if it was one, else a Python float."""
    return np.float64(new) if numpy_op or isinstance(old, np.floating) else new


def _statics(m: LiquidationModel) -> tuple:
    """Phase 6's per-run kernel inputs, kept in ``m.kernel_inputs["market"]`` (remade if one
    moves): the generations newest first (fixed at build, as a list and an array), the floor
    bid of a desk without one, the switches (as a tuple and as the kernel's integer
    parameters ``ip``, the month first), the liquid-cooled generations (a list and an
    array), which the kernel only reads, and the events' scratch arrays, which it writes and
    the phase reads in the same month."""
    buyers, desk, lolr = m.buyers, m.desk, m.lolr
    switches = (m.outside_on, m.cfg.market.unsold_to_salvage, buyers.unlimited, buyers.sites,
                desk.enabled, desk.secured, _NEUMAIER_SUM, lolr is not None,
                m.cfg.policy.lolr.hold_months, m.cfg.market.mode == "parametric")
    st = m.kernel_inputs.get("market")
    n_ev_max = m.n_gen * (m.lenders.n + m.borrowers.n + buyers.n + 5)  # the most a month logs
    if (st is None or st[0] is not m.newest_first or st[2].shape[0] != m.n_gen
            or st[3] != switches or st[5] != m.liquid or st[8].shape[0] != n_ev_max):
        st = m.kernel_inputs["market"] = (
            m.newest_first, np.array(m.newest_first, dtype=np.int64), np.zeros(m.n_gen),
            switches, np.array((0, *switches), dtype=np.int64), list(m.liquid),
            np.array(m.liquid, dtype=bool), np.empty((kmarket.EV_INTS, n_ev_max), np.int64),
            np.empty(n_ev_max))
    return st


def _any_order(m: LiquidationModel, orders: SellOrders) -> bool:
    """Whether the month has an order at all (else ask_book's None, where numpy stops too:
    most months)."""
    nz, desk, lolr = np.count_nonzero, m.desk, m.lolr
    offered = orders.offered  # known when phase 5 was compiled
    if offered is None:
        offered = nz(orders.forced) or nz(orders.patient) or nz(orders.b_units)
    return bool(offered or nz(desk.holdings) or (lolr is not None and nz(lolr.holdings)))


def _fp(m: LiquidationModel) -> tuple:
    """The kernel's float parameters ``fp`` (:data:`sim.world.kernels.market.FP_*`)."""
    desk, lolr, od, flows = m.desk, m.lolr, m.outside_demand, m.flows
    lo_cfg = m.cfg.policy.lolr
    return (m.cfg.market.k, od.top, od.depth, desk.cfg.capacity, desk.cash, desk.lent,
            m.month_above_reservation, m.forced_value, m.forced_fundamental,
            m.forced_rep_value if m.outside_on else 0.0, m.buyers_paid, m.recovered_total,
            flows["salvage"], flows["estate_surplus"], flows["buyer_capital"],
            lo_cfg.capacity, 0.0 if lolr is None else lolr.cash,
            (lo_cfg.mw + lo_cfg.hosting_mw) * 1000.0, m.cfg.market.alpha)


def _desk_bid(m: LiquidationModel, st: tuple) -> np.ndarray:
    """The legacy desk's floor bid (RepoDesk.floor_bid is 0 for every other desk: then the
    zeros of ``st``, :func:`_statics`)."""
    desk = m.desk
    if desk.enabled and desk.cfg.buy_floor and not desk.secured:
        return desk.floor_bid(m.price, m.fundamental)
    return st[2]


def run_compiled(m: LiquidationModel, orders: SellOrders) -> bool:
    """Phase 6 from :func:`ask_book` on, in one kernel call
    (:func:`sim.world.kernels.market.market_month`, both market modes): the same trades,
    arrays, counters, outside flows and events as the numpy code below. False, with nothing
    changed, when the kernel leaves the month to numpy (a book that could reach
    ``MAX_UNITS`` units)."""
    if not _any_order(m, orders):
        return True  # no order at all (most months): ask_book's None, where numpy stops too
    env, desk, buyers, lb, b, lolr = m.env, m.desk, m.buyers, m.lenders, m.borrowers, m.lolr
    outside, sites = m.outside_on, buyers.sites
    st = _statics(m)
    _, newest_first, _, _, ip, _, liquid, ev_int, ev_price = st
    ip[kmarket.IP_T] = env.t
    fp = np.array(_fp(m), dtype=np.float64)
    # the buyers' capital and MW and the lenders' repo units, which the numpy phase rebinds,
    # are written in place (nothing else holds them: the kernel wrote copies, rebound, before)
    mw_liq = buyers.mw_liq if sites else _NO_FLOATS
    mw_used = buyers.mw_used if sites else _NO_FLOATS
    if lolr is None:
        lo_arrays = (_NO_FLOATS, _NO_UNITS, _NO_FLOATS, _NO_FLOATS, _NO_FLOATS, _NO_FLOATS)
    else:
        lo_arrays = (lolr.bid(m.fundamental), lolr.holdings, lolr.cost_basis, lolr.since,
                     lolr.cash_bought, lolr.cash_sold)
    status, n_ev, trades, lender_settles, buyer_settles = kmarket.market_month(
        ip, fp, newest_first, env.shipping, env.kw,
        liquid, replacement_cost(env), m.units0, m.fundamental,
        orders.forced, orders.patient, orders.patient_price, orders.floor, orders.b_units,
        orders.b_price, desk.holdings, desk.cost_basis, desk.cash_bought, desk.cash_sold,
        desk.cash_repaid, desk.default_loss, _desk_bid(m, st), m.price,
        *lo_arrays, m.reservation, m.bidding, buyers.capital, buyers.mw, mw_liq, mw_used,
        buyers.holdings, lb.inventory, lb.inv_since, lb.repo_units, lb.claim_pool,
        lb.recoveries, lb.later_recoveries, lb.repo_debt, lb.cash, b.fleet, b.cash, b.kind,
        m.sale_proceeds,
        m.traded, m.clearing, m.month_volume, m.month_forced, m.month_overhang,
        m.month_salvage, m.month_pinned if outside else _NO_FLAGS, m.salvage_units,
        m.external_units, m.rep_value if outside else _NO_MATRIX, ev_int, ev_price)
    if status:
        return False
    _write_back(m, fp, n_ev, trades, lender_settles, buyer_settles, ev_int, ev_price)
    return True


def _write_back(m: LiquidationModel, fp: np.ndarray, n_ev: int, trades: int,
                lender_settles: int, buyer_settles: int, ev_int: np.ndarray,
                ev_price: np.ndarray) -> None:
    """After a kernel month: the scalars of ``fp`` back on the model and its books (with the
    types the numpy phase leaves them), and the ``n_ev`` events of ``ev_int`` / ``ev_price``
    logged as the numpy phase logs them, in its order. Nothing when no generation traded
    (no number moved)."""
    if not trades:
        return
    desk, lolr, flows = m.desk, m.lolr, m.flows
    K, v = kmarket, fp.tolist()
    desk.cash = _scalar_like(desk.cash, v[K.FP_DESK_CASH], lender_settles > 0)
    desk.lent = _scalar_like(desk.lent, v[K.FP_DESK_LENT], lender_settles > 0)
    if lolr is not None:
        lolr.cash = _scalar_like(lolr.cash, v[K.FP_LOLR_CASH], False)
    m.month_above_reservation = v[K.FP_ABOVE]
    m.forced_value = v[K.FP_FORCED_VALUE]
    m.forced_fundamental = _scalar_like(m.forced_fundamental, v[K.FP_FORCED_FUNDAMENTAL], True)
    if m.outside_on:
        m.forced_rep_value = v[K.FP_FORCED_REP]
    m.buyers_paid = _scalar_like(m.buyers_paid, v[K.FP_BUYERS_PAID], buyer_settles > 0)
    m.recovered_total = _scalar_like(m.recovered_total, v[K.FP_RECOVERED], lender_settles > 0)
    flows["salvage"] = v[K.FP_FLOW_SALVAGE]
    flows["estate_surplus"] = v[K.FP_FLOW_ESTATE]
    flows["buyer_capital"] = v[K.FP_FLOW_BUYER_CAPITAL]
    if n_ev:  # the events fill_events and log_event log, in the numpy phase's order
        codes, rows, gens, units = ev_int[:, :n_ev]
        p = ev_price[:n_ev]
        m.events.add(m.env.t, _EVENT_NAME[codes], _EVENT_AGENT[codes], rows, gens, units,
                     units * p, p)


def ask_book(m: LiquidationModel, orders: SellOrders
             ) -> tuple[list, list, list, list, list] | None:
    """Every generation's book of asks at once, one row per order (forced lenders, patient
    lenders, borrowers, the desk, the buyer of last resort): settling one generation never
    moves another's asks. Returns the shipping generations offered, newest first, and the
    orders for some units as Python lists, generation by generation (rows in row order within
    each): (generations, generation of each order, its row, its units, its ask); None when
    nothing is offered. Orders for no units are left out (the outcome is the same)."""
    env, desk, lolr, n_l = m.env, m.desk, m.lolr, m.lenders.n
    asks = np.concatenate((orders.forced, orders.patient, orders.b_units,
                           desk.holdings[None, :]) + (
                               () if lolr is None else (lolr.for_sale(env.t)[None, :],)))
    d_row = 2 * n_l + m.borrowers.n  # the desk's row (the buyer of last resort's is the next)
    offered = (asks.any(axis=0) & env.shipping).tolist()
    if not any(offered):
        return None
    # newest generation first (launch months are fixed at build: the order is cached)
    gens = [g for g in m.newest_first if offered[g]]
    ask_prices = np.empty(asks.shape)
    # forced sellers ask the salvage floor; with the outside demand they take the clearing
    # price (market orders): the outside schedule bids for every offered unit down to scrap
    ask_prices[:n_l] = 0.0 if m.outside_on else orders.floor
    ask_prices[n_l: 2 * n_l] = orders.patient_price
    ask_prices[2 * n_l: d_row] = orders.b_price
    # the legacy desk sells back at the value in best use; a secured desk sells collateral
    # it took (a repo default) as a forced seller, within the liquidation horizon
    ask_prices[d_row] = ask_prices[0] if desk.secured else m.fundamental
    if lolr is not None:  # patient: the price index, never below the salvage floor
        ask_prices[d_row + 1] = np.maximum(m.price, orders.floor)
    # (asks.T is generation-major)
    nz_g, nz_r = asks.T.nonzero()
    all_qty = asks[nz_r, nz_g].tolist()
    all_price = ask_prices[nz_r, nz_g].tolist()
    return gens, nz_g.tolist(), nz_r.tolist(), all_qty, all_price


class BidBook:
    """The month's bids, generation by generation: rows ``< n_k`` are the buyers (their
    reservation prices, up to their capacity), row ``n_k`` the legacy desk's floor bid, row
    ``n_k + 1`` the buyer of last resort's (if any), then from row ``s0`` the salvage sink or
    the outside demand's steps. Prices that do not move within the month are read once, as
    Python lists; capacities and rooms are read when a generation is auctioned (earlier
    generations' trades move them)."""

    def __init__(self, m: LiquidationModel, floor: np.ndarray):
        env, desk, lolr = m.env, m.desk, m.lolr
        self.m, self.n_k = m, m.buyers.n
        self.k, self.unsold_to_salvage = m.cfg.market.k, m.cfg.market.unsold_to_salvage
        reservation = m.reservation
        bidders = (reservation > 0) & m.bidding[:, None]  # (K, G)
        self.any_bidder = bidders.any(axis=0).tolist()
        self.bidders_by_gen = bidders.T.tolist()
        # bid prices of every generation: the buyers, then the desk, then salvage
        self.res_by_gen = reservation.T.tolist()
        self.desk_prices = desk.floor_bid(m.price, m.fundamental).tolist()
        if lolr is not None:
            self.lolr_prices = lolr.bid(m.fundamental).tolist()
        self.s0 = self.n_k + 1 + (lolr is not None)  # the first salvage / outside row
        self.salvage_prices = floor.tolist()
        if m.outside_on:
            od, ref = m.outside_demand, replacement_cost(env)
            # top of the schedule: a share of min(replacement cost, value in best use)
            self.out_top = (od.top * np.minimum(ref, m.fundamental)).tolist()
            self.out_depth = (od.depth * np.maximum(m.units0, 1)).tolist()

    def bids(self, g: int, supply: int) -> tuple[list, list, list]:
        """Generation ``g``'s bids for some units, in row order (rows, units, prices); no bid
        asks for more than the ``supply`` offered."""
        m, n_k = self.m, self.n_k
        env, desk, lolr = m.env, m.desk, m.lolr
        desk_price = self.desk_prices[g]
        desk_qty = int(desk.room // desk_price) if desk_price > 0 else 0
        b_rows, bid_qty, bid_price = [], [], []
        if self.any_bidder[g]:  # else no buyer's capacity enters the book
            cap = m.buyers.capacity(m.reservation[:, g], env.kw[g], m.liquid[g]).tolist()
            res_g = self.res_by_gen[g]
            for i, flag in enumerate(self.bidders_by_gen[g]):
                if flag and (q := cap[i] if cap[i] < supply else supply):  # min
                    b_rows.append(i)
                    bid_qty.append(q)
                    bid_price.append(res_g[i])
        if q := min(desk_qty, supply):
            b_rows.append(n_k)
            bid_qty.append(q)
            bid_price.append(desk_price)
        if lolr is not None and self.lolr_prices[g] > 0:  # capacity and powered space
            q = min(int(lolr.room() // self.lolr_prices[g]),
                    int(lolr.kw_room(env.kw) // env.kw[g]), supply)
            if q > 0:
                b_rows.append(n_k + 1)
                bid_qty.append(q)
                bid_price.append(self.lolr_prices[g])
        s0 = self.s0
        if m.outside_on:  # the outside demand's steps, rows s0, ...
            o_qty, o_price = outside_bids(self.out_top[g], self.salvage_prices[g],
                                          self.out_depth[g], supply, self.unsold_to_salvage)
            b_rows.extend(range(s0, s0 + len(o_qty)))
            bid_qty.extend(o_qty)
            bid_price.extend(o_price)
        elif self.unsold_to_salvage and supply:  # salvage takes every offered unit
            b_rows.append(s0)
            bid_qty.append(supply)
            bid_price.append(self.salvage_prices[g])
        return b_rows, bid_qty, bid_price


def settle_bids(m: LiquidationModel, g: int, price: float, b_rows: list, bid_fills: list,
                bid_price: list, s0: int) -> tuple[list, list, int, int]:
    """Settle the buyers' side of generation ``g``'s trades at ``price``: the salvage sink or
    outside demand (rows >= ``s0``), the buyer of last resort, the desk and the buyers
    (:meth:`agents.buyer.BuyerBook.settle`); records the largest fill above a bid's
    reservation. Returns (buyer rows, their units, the desk's units, salvage units)."""
    env, buyers, lolr, n_k = m.env, m.buyers, m.lolr, m.buyers.n
    buys, bought = [], []  # rows and units of the buyers with a fill
    desk_fill = salvage_fill = 0
    lowest = math.inf  # the lowest price of a filled bid
    for r, u, bp in zip(b_rows, bid_fills, bid_price, strict=True):
        if u:
            buys.append(r)
            bought.append(u)
            if bp < lowest:  # min(lowest, bp): prices are finite
                lowest = bp
    # max over the filled bids of (price - bid) is price - (lowest bid): rounding
    # the difference is monotone, so the largest difference is the same double
    m.month_above_reservation = max(m.month_above_reservation, price - lowest)
    if m.outside_on:
        while buys and buys[-1] >= s0:  # the outside demand's steps come last
            buys.pop()
            salvage_fill += bought.pop()
    elif buys[-1] == s0:
        buys.pop()
        salvage_fill = bought.pop()
    if lolr is not None and buys and buys[-1] == n_k + 1:
        buys.pop()
        lolr_fill = bought.pop()
        lolr.buy(g, lolr_fill, price, env.t)
        m.log_event("purchase", "lolr", 0, g, lolr_fill, lolr_fill * price, price)
    if buys and buys[-1] == n_k:
        buys.pop()
        desk_fill = bought.pop()
    if buys:  # settling no fill at all would change no buyer's state
        fills = np.zeros(n_k, dtype=np.int64)
        fills[buys] = bought
        pay = buyers.settle(fills, price, g, env.kw[g], m.liquid[g])
        m.buyers_paid += pay.sum()
        if buyers.unlimited:
            m.add_outside_flow("buyer_capital", pay.sum())
    if desk_fill:
        m.desk.buy(g, desk_fill, price, env.t)
    m.salvage_units[g] += salvage_fill
    m.add_outside_flow("salvage", salvage_fill * price)
    m.month_salvage[g] = salvage_fill
    return buys, bought, desk_fill, salvage_fill


def record_trade(m: LiquidationModel, g: int, price: float, volume: int, a_rows: list,
                 fills: list, n_forced: int, forced_total: int) -> None:
    """The month's counters of generation ``g``'s trade: clearing price, volume, forced units
    sold and left over, and the forced sales' value at the price and in best use (and at
    repossession, with the outside demand)."""
    m.traded[g] = True
    m.clearing[g] = price
    m.month_volume[g] = volume  # the ask fills add up to the volume
    forced_sold = sum(fills[:n_forced])  # int x float: the same double as in numpy
    m.month_forced[g] = forced_sold
    m.month_overhang[g] = forced_total - forced_sold
    m.forced_value += forced_sold * price
    m.forced_fundamental += forced_sold * m.fundamental[g]
    if m.outside_on and forced_sold:  # forced rows are lender rows r < n_l
        rv = m.rep_value[:, g].tolist()
        m.forced_rep_value += sum(u * rv[r] for r, u in
                                  zip(a_rows[:n_forced], fills[:n_forced], strict=True))


def log_purchases(m: LiquidationModel, g: int, price: float, buys: list, bought: list,
                  salvage_fill: int, desk_fill: int) -> None:
    """The purchase events of generation ``g``: buyers (row order), salvage, the desk."""
    if buys:
        fill_events(m, "purchase", "buyer", buys, g, bought, price)
    if salvage_fill:
        m.log_event("purchase", "salvage", 0, g, salvage_fill, salvage_fill * price, price)
    if desk_fill:
        m.log_event("purchase", "repo_desk", 0, g, desk_fill, desk_fill * price, price)


def pinned(b_rows: list, bid_qty: list, bid_price: list, bid_fills: list, n_k: int,
            k: float) -> bool:
    """Whether the outside demand set the month's clearing price (rows ``> n_k`` are its
    steps): the marginal bid, the lowest-priced bid with a fill (the upper end of the
    k-rule's interval), is an outside step's, or, with ``k < 1``, the best unfilled bid
    (its lower end) is. A month where outside buyers took units above a secondary
    buyer's marginal bid is priced by that buyer: news."""
    inf = math.inf
    fill_in = fill_out = inf  # the lowest filled bid: secondary buyers (and desk) / outside
    open_in = open_out = -inf  # the best bid with units left
    for r, q, p, u in zip(b_rows, bid_qty, bid_price, bid_fills, strict=True):
        if r > n_k:
            if u and p < fill_out:
                fill_out = p
            if u < q and p > open_out:
                open_out = p
        else:
            if u and p < fill_in:
                fill_in = p
            if u < q and p > open_in:
                open_in = p
    return fill_out < fill_in or (k < 1.0 and open_out > open_in)


def sweep_sale_proceeds(m: LiquidationModel) -> None:
    """Secured lenders sweep borrowers' sale proceeds: arrears first, then principal. On the
    compiled engine in place (:func:`_sweep_in_place`)."""
    if np.count_nonzero(m.sale_proceeds):  # ndarray.any()'s answer, in a third of its time
        if m.engine == "compiled":
            _sweep_in_place(m)
            return
        borrowers.prepay(m, np.minimum(m.sale_proceeds, np.maximum(m.borrowers.cash, 0.0)))


def _sweep_in_place(m: LiquidationModel) -> None:
    """:func:`sweep_sale_proceeds` on the compiled engine: the amount swept (the same
    ``np.minimum(proceeds, np.maximum(cash, 0.0))``, into a per-run scratch array) and the
    prepayment (:func:`sim.world.kernels.borrowers.prepay`, what
    :func:`sim.world.phases.borrowers.prepay` calls), which writes the loan book's principal,
    accrued and overdue in place: none is rebound."""
    b, L, lb = m.borrowers, m.loans, m.lenders
    amount = m.kernel_inputs.get("market_sweep")
    if amount is None or amount.shape[0] != b.n:
        amount = m.kernel_inputs["market_sweep"] = np.empty(b.n)
    np.maximum(b.cash, 0.0, out=amount)
    np.minimum(m.sale_proceeds, amount, out=amount)
    kborrowers.prepay(amount, L.borrower, L.lender, L.principal, L.accrued, L.overdue,
                      b.cash, lb.cash)


# the sale-proceeds sweep's arrays a run's model holds as resident arrays, by argument name
# of kborrowers.sweep_batch; the loan book's (padded to the longest run's) last
_SWEEP_STACKED = (("proceeds", ("model", "sale_proceeds")), ("cash", ("borrowers", "cash")),
                  ("lb_cash", ("lenders", "cash")), ("borrower", ("loans", "borrower")),
                  ("lender", ("loans", "lender")), ("principal", ("loans", "principal")),
                  ("accrued", ("loans", "accrued")), ("overdue", ("loans", "overdue")))
_N_BOOKS = 3  # the entries of _SWEEP_STACKED before the loan book's


def _sweep_held(m: LiquidationModel) -> tuple[np.ndarray, ...]:
    """The arrays :func:`_sweep_in_place` reads and writes, in :data:`_SWEEP_STACKED`'s
    order."""
    b, L, lb = m.borrowers, m.loans, m.lenders
    return (m.sale_proceeds, b.cash, lb.cash, L.borrower, L.lender, L.principal, L.accrued,
            L.overdue)


def sweep_inputs(stack: RunStack) -> dict | None:
    """What :func:`sweep_batch` passes to :func:`kborrowers.sweep_batch`, made at the
    stack's first batched month: the stacks of :data:`_SWEEP_STACKED` (checked to be the very
    arrays each run's sweep would pass; the books' of one shape in every run, the loan
    book's of each run's own length, kept as ``n_loans``) and the amounts' scratch. None
    when the runs cannot share one call (not all compiled, shapes that differ): then each
    runs its own sweep."""
    models = stack.models
    if any(m.engine != "compiled" for m in models):
        return None
    helds = [_sweep_held(m) for m in models]
    out: dict[str, np.ndarray] = {}
    for i, (name, key) in enumerate(_SWEEP_STACKED):
        if key not in stack.stacks or (i < _N_BOOKS and len(set(stack.shapes[key])) != 1):
            return None
        if any(h[i] is not stack.view(key, r) for r, h in enumerate(helds)):
            return None
        out[name] = stack.stacks[key]
    n_loans = [h[_N_BOOKS].shape[0] for h in helds]
    if any(a.shape[0] != n for h, n in zip(helds, n_loans, strict=True)
           for a in h[_N_BOOKS:]):
        return None
    out["n_loans"] = np.array(n_loans, dtype=np.int64)
    out["amount"] = np.zeros(out["cash"].shape)
    return out


_SWEEP_ARGS = ("n_loans", "proceeds", "cash", "amount", "borrower", "lender", "principal",
               "accrued", "overdue", "lb_cash")


def sweep_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """The sale-proceeds sweep for the runs ``runs`` of a stack by one call of
    :func:`kborrowers.sweep_batch` over the stacked arrays (:func:`sweep_inputs`): the same
    bits as each run's own :func:`sweep_sale_proceeds` (its test for proceeds and
    :func:`_sweep_in_place`), which nothing here raises. Runs that cannot share a call each
    run their own sweep."""
    b = stack.inputs("sweep", sweep_inputs)
    models = stack.models
    if b is None:
        for r in runs:
            _own_phase(stack, r, lambda m=models[r]: sweep_sale_proceeds(m))
        return
    kborrowers.sweep_batch(np.array(runs, dtype=np.int64), *(b[name] for name in _SWEEP_ARGS))


def parametric(m: LiquidationModel, g: int, ask_qty: list) -> tuple[float, int]:
    """Parametric inverse demand: every offered unit (``ask_qty``, the units of each
    order) sells at p0 exp(-alpha q / stock). Returns (price, q)."""
    stock = max(int(m.units0[g]), 1)
    q = sum(ask_qty)
    price = float(parametric_price(m.fundamental[g], q, stock, m.cfg.market.alpha))
    return price, q


def settle_orders(m: LiquidationModel, g: int, rows: list, fills: list, price: float) -> None:
    """Settle the sellers' side of generation ``g``'s trades: ``fills[j]`` units sold by
    order row ``rows[j]`` of the book of asks (forced lenders, patient lenders, borrowers,
    the desk; rows ascending, rows left out sold nothing)."""
    lb, b, desk = m.lenders, m.borrowers, m.desk
    n_l, n_b = lb.n, b.n
    n_lend = bisect_left(rows, 2 * n_l)  # the lenders' rows come first
    n_sell = bisect_left(rows, 2 * n_l + n_b, n_lend)  # then the borrowers'
    if n_lend:
        # each lender's forced plus patient units (Python ints: exact, as in int64)
        units = [0] * n_l
        for r, u in zip(rows[:n_lend], fills[:n_lend], strict=True):
            units[r - n_l if r >= n_l else r] += u
    if n_lend and any(units):
        lender_units = np.array(units, dtype=np.int64)
        sold = np.zeros((n_l, m.n_gen), dtype=np.int64)
        sold[:, g] = lender_units
        lb.remove_inventory(sold)
        proceeds = lender_units * price
        rec, surplus = lb.apply_recovery(proceeds)
        m.recovered_total += rec.sum()
        repay = np.minimum(lb.repo_debt, rec)  # the repo is repaid out of the recovery
        lb.repo_debt -= repay
        repaid = repay.sum()
        desk.receive_repayment(repaid, m.env.t)
        lb.cash += rec - repay
        m.add_outside_flow("estate_surplus", -surplus.sum())
        sellers = [i for i, u in enumerate(units) if u]
        fill_events(m, "sale", "lender", sellers, g, [units[i] for i in sellers], price)
    # the borrowers with a fill (in row order) and their units
    sellers, units = [], []
    for r, u in zip(rows[n_lend:n_sell], fills[n_lend:n_sell], strict=True):
        if u:
            sellers.append(r - 2 * n_l)
            units.append(u)
    if sellers:
        s_idx = np.array(sellers)
        b_units = np.zeros(n_b, dtype=np.int64)
        b_units[s_idx] = units
        b.fleet[:, g] -= b_units
        proceeds = b_units * price
        b.cash += proceeds
        m.sale_proceeds += proceeds
        # logged miners first (a stable sort by kind: sellers are in row order)
        kinds = b.kind[s_idx].tolist()
        order = sorted(range(len(kinds)), key=kinds.__getitem__)
        fill_events(m, "sale", [KIND_NAMES[kinds[j]] for j in order],
                          [sellers[j] for j in order], g, [units[j] for j in order], price)
    d = lo = 0  # the desk's row, then the buyer of last resort's, come last
    for r, u in zip(rows[n_sell:], fills[n_sell:], strict=True):
        if r == 2 * n_l + n_b:
            d = u
        else:
            lo = u
    if d:
        desk.sell(g, d, price, m.env.t)
        m.log_event("sale", "repo_desk", 0, g, d, d * price, price)
    if lo:
        m.lolr.sell(g, lo, price, m.env.t)
        m.log_event("sale", "lolr", 0, g, lo, lo * price, price)


# phase 6's kernel arguments a run's model holds as resident arrays (sim.world.stack): the
# stack's (R, ...) array goes to the batched kernel for each, by argument name, with the
# switch that reads it (None: always); their order is the kernel's (see _ARGS)
_STACKED = (
    ("kw", ("env", "kw"), None),
    ("ref", ("env", "new_unit_price"), None), ("units0", ("model", "units0"), None),
    ("fundamental", ("model", "fundamental"), None),
    ("d_holdings", ("desk", "holdings"), None), ("d_cost_basis", ("desk", "cost_basis"), None),
    ("d_cash_bought", ("desk", "cash_bought"), None),
    ("d_cash_sold", ("desk", "cash_sold"), None),
    ("d_cash_repaid", ("desk", "cash_repaid"), None),
    ("d_default_loss", ("desk", "default_loss"), None),
    ("price_index", ("model", "price"), None),
    ("lo_holdings", ("lolr", "holdings"), "lolr"),
    ("lo_cost_basis", ("lolr", "cost_basis"), "lolr"), ("lo_since", ("lolr", "since"), "lolr"),
    ("lo_cash_bought", ("lolr", "cash_bought"), "lolr"),
    ("lo_cash_sold", ("lolr", "cash_sold"), "lolr"),
    ("reservation", ("model", "reservation"), None), ("bidding", ("model", "bidding"), None),
    ("capital", ("buyers", "capital"), None), ("mw", ("buyers", "mw"), None),
    ("mw_liq", ("buyers", "mw_liq"), "sites"), ("mw_used", ("buyers", "mw_used"), "sites"),
    ("k_holdings", ("buyers", "holdings"), None),
    ("inventory", ("lenders", "inventory"), None), ("inv_since", ("lenders", "inv_since"), None),
    ("repo_units", ("lenders", "repo_units"), None),
    ("claim_pool", ("lenders", "claim_pool"), None),
    ("recoveries", ("lenders", "recoveries"), None),
    ("later_recoveries", ("lenders", "later_recoveries"), None),
    ("repo_debt", ("lenders", "repo_debt"), None), ("l_cash", ("lenders", "cash"), None),
    ("fleet", ("borrowers", "fleet"), None), ("b_cash", ("borrowers", "cash"), None),
    ("kind", ("borrowers", "kind"), None), ("sale_proceeds", ("model", "sale_proceeds"), None),
    ("traded", ("model", "traded"), None), ("clearing", ("model", "clearing"), None),
    ("month_volume", ("model", "month_volume"), None),
    ("month_forced", ("model", "month_forced"), None),
    ("month_overhang", ("model", "month_overhang"), None),
    ("month_salvage", ("model", "month_salvage"), None),
    ("month_pinned", ("model", "month_pinned"), "outside"),
    ("salvage_units", ("model", "salvage_units"), None),
    ("external_units", ("model", "external_units"), None),
    ("rep_value", ("model", "rep_value"), "outside"))


def _held(m: LiquidationModel) -> dict[str, np.ndarray]:
    """The arrays :func:`run_compiled` passes for the names of :data:`_STACKED` (the
    switches' stand-ins where a switch is off)."""
    env, desk, buyers, lb, b, lolr = m.env, m.desk, m.buyers, m.lenders, m.borrowers, m.lolr
    out = {"kw": env.kw, "ref": replacement_cost(env),
           "units0": m.units0, "fundamental": m.fundamental, "d_holdings": desk.holdings,
           "d_cost_basis": desk.cost_basis, "d_cash_bought": desk.cash_bought,
           "d_cash_sold": desk.cash_sold, "d_cash_repaid": desk.cash_repaid,
           "d_default_loss": desk.default_loss, "price_index": m.price,
           "reservation": m.reservation, "bidding": m.bidding, "capital": buyers.capital,
           "mw": buyers.mw, "k_holdings": buyers.holdings, "inventory": lb.inventory,
           "inv_since": lb.inv_since, "repo_units": lb.repo_units, "claim_pool": lb.claim_pool,
           "recoveries": lb.recoveries, "later_recoveries": lb.later_recoveries,
           "repo_debt": lb.repo_debt, "l_cash": lb.cash, "fleet": b.fleet, "b_cash": b.cash,
           "kind": b.kind, "sale_proceeds": m.sale_proceeds, "traded": m.traded,
           "clearing": m.clearing, "month_volume": m.month_volume,
           "month_forced": m.month_forced, "month_overhang": m.month_overhang,
           "month_salvage": m.month_salvage, "salvage_units": m.salvage_units,
           "external_units": m.external_units}
    lo = lolr is not None
    for name in ("lo_holdings", "lo_cost_basis", "lo_since", "lo_cash_bought", "lo_cash_sold"):
        out[name] = (getattr(lolr, name[3:]) if lo
                     else _NO_UNITS if name == "lo_holdings" else _NO_FLOATS)
    out["mw_liq"] = buyers.mw_liq if buyers.sites else _NO_FLOATS
    out["mw_used"] = buyers.mw_used if buyers.sites else _NO_FLOATS
    out["month_pinned"] = m.month_pinned if m.outside_on else _NO_FLAGS
    out["rep_value"] = m.rep_value if m.outside_on else _NO_MATRIX
    return out


# the orders' arrays (SellOrders, per run: phase 5's "orders_out" or new arrays) the batch
# copies into its own stacks each month, unless a run's phase 5 wrote them there
_ORDERS = ("patient_price", "forced", "patient", "b_units", "b_price")


def batch_inputs(stack: RunStack) -> dict | None:
    """What :func:`run_batch` passes to :func:`kmarket.market_batch` for a stack's runs, made
    at its first batched month: the stacks of the arrays each run's phase 6 reads
    (:data:`_STACKED`, checked to be the very arrays the run's own phase would pass, and of
    one shape in every run), the per-run inputs of :func:`_statics` stacked, and the batch's
    scratch: the float parameters, the desk's and the buyer of last resort's bids, the
    orders, the salvage floor and the shipping generations (gathered each month), the
    events and the kernel's results. Each run's phase 5 is given its rows of the batch's
    order stacks as its own output arrays (``m.kernel_inputs["orders_out"]``, the debt
    array kept), so that a compiled phase 5 writes its orders where the batch reads them.
    None when the runs cannot share one call (not all compiled with lenders, switches or
    shapes that differ): then each runs its own phase."""
    models = stack.models
    if any(m.engine != "compiled" or not m.lenders.n for m in models):
        return None
    sts = [_statics(m) for m in models]
    if len({st[3] for st in sts}) != 1:
        return None
    switches = sts[0][3]
    on = {"lolr": switches[7], "sites": switches[3], "outside": switches[0]}
    n = len(models)
    out: dict[str, np.ndarray] = {}
    helds = [_held(m) for m in models]
    for name, key, switch in _STACKED:
        if switch is not None and not on[switch]:
            a = helds[0][name]
            out[name] = np.zeros((n, *a.shape), dtype=a.dtype)
            continue
        if key not in stack.stacks and key not in stack.aliases:
            return None
        base = stack.aliases.get(key, key)
        if len(set(stack.shapes[base])) != 1:
            return None
        if any(h[name] is not stack.view(key, r) for r, h in enumerate(helds)):
            return None
        out[name] = stack.stacks[base]
    for i, name in ((1, "newest_first"), (4, "ip"), (6, "liquid")):
        if len({st[i].shape for st in sts}) != 1:
            return None
        out[name] = np.stack([st[i] for st in sts])
    if len({st[7].shape for st in sts}) != 1:
        return None
    out["ev_int"] = np.stack([st[7] for st in sts])
    out["ev_price"] = np.stack([st[8] for st in sts])
    n_l, n_g, n_b = models[0].lenders.n, models[0].n_gen, models[0].borrowers.n
    out["fp"] = np.zeros((n, len(_fp(models[0]))))
    out["d_prices"] = np.zeros((n, n_g))
    out["lo_prices"] = np.zeros((n, n_g if on["lolr"] else 0))
    out["floor"] = np.zeros((n, n_g))
    out["shipping"] = np.zeros((n, n_g), dtype=np.bool_)
    out["patient_price"] = np.zeros((n, n_l, n_g))
    for name in ("forced", "patient"):
        out[name] = np.zeros((n, n_l, n_g), dtype=np.int64)
    out["b_units"] = np.zeros((n, n_b, n_g), dtype=np.int64)
    out["b_price"] = np.zeros((n, n_g))
    out["out"] = np.zeros((n, 5), dtype=np.int64)
    rows = []  # each run's rows of the order stacks (the views phase 5 is given)
    for r, m in enumerate(models):
        rows.append(tuple(out[name][r] for name in _ORDERS))
        own = m.kernel_inputs.get("orders_out")
        debt = own[5] if own is not None and own[5].shape == (n_b,) else np.empty(n_b)
        m.kernel_inputs["orders_out"] = (*rows[r], debt)
    return {**out, "order_rows": rows}


_ARGS = ("ip", "fp", "newest_first", "shipping", "kw", "liquid", "ref", "units0",
         "fundamental", "forced", "patient", "patient_price", "floor", "b_units", "b_price",
         "d_holdings", "d_cost_basis", "d_cash_bought", "d_cash_sold", "d_cash_repaid",
         "d_default_loss", "d_prices", "price_index", "lo_prices", "lo_holdings",
         "lo_cost_basis", "lo_since", "lo_cash_bought", "lo_cash_sold", "reservation",
         "bidding", "capital", "mw", "mw_liq", "mw_used", "k_holdings", "inventory",
         "inv_since", "repo_units", "claim_pool", "recoveries", "later_recoveries",
         "repo_debt", "l_cash", "fleet", "b_cash", "kind", "sale_proceeds", "traded",
         "clearing", "month_volume", "month_forced", "month_overhang", "month_salvage",
         "month_pinned", "salvage_units", "external_units", "rep_value", "ev_int",
         "ev_price", "out")


def _own_phase(stack: RunStack, r: int, step) -> None:
    """Run ``step()`` (run r's own phase 6, or the numpy rest of its month) as a run's own
    phase runs in a stack: an Exception is run r's failure (:meth:`RunStack.fail`)."""
    try:
        step()
    except Exception as e:  # noqa: BLE001 - one run's failure is that run's result
        stack.fail(r, e)


def run_batch(stack: RunStack, runs: list[int], contexts: list[MonthContext]) -> None:
    """Phase 6 for the runs ``runs`` of a stack (``contexts`` their months' hand-overs): each
    run's month started as its own phase starts it (:func:`start_month`: its fills on the
    stacks at once, then :func:`_bidders` run by run, with its own draws from its
    ``search_rng``), then one call of
    :func:`kmarket.market_batch` for the runs with an order (:func:`_any_order`) over the
    stacked arrays (:func:`batch_inputs`), their orders, floor, bids and float parameters
    gathered first; each run's numbers and events are then put where :func:`run_compiled`
    puts them: the same bits as each run's own phase (``tests/world/test_batch_market.py``).
    A run the kernel leaves to numpy (a book that could reach ``MAX_UNITS`` units: it
    changed nothing of that run) runs the numpy rest of its month, as :func:`run` does; an
    Exception there is that run's failure (:meth:`RunStack.fail`), the others go on. Runs
    that cannot share a call each run their own phase (:func:`run`)."""
    b = stack.inputs("market", batch_inputs)
    models = stack.models
    if b is None:
        for r, c in zip(runs, contexts, strict=True):
            _own_phase(stack, r, lambda m=models[r], o=c.orders: run(m, o))
        return
    auction = models[runs[0]].cfg.market.mode == "auction"
    ip, fp, floor, d_prices = b["ip"], b["fp"], b["floor"], b["d_prices"]
    lo_prices, shipping, order_rows = b["lo_prices"], b["shipping"], b["order_rows"]
    # start_month's fills, on the stacks (one shape in every run: no padding), then the rest
    # of it run by run
    rows = slice(None) if len(runs) == stack.n else np.array(runs, dtype=np.int64)
    for name, value in _RESET:
        b[name][rows] = value
    active = []
    for r, c in zip(runs, contexts, strict=True):
        m, orders = models[r], c.orders
        _bidders(m, auction)
        if not _any_order(m, orders):
            continue
        ip[r, kmarket.IP_T] = m.env.t
        fp[r] = _fp(m)
        for name, row in zip(_ORDERS, order_rows[r], strict=True):
            a = getattr(orders, name)
            if a is not row:  # not written there by a compiled phase 5
                row[...] = a
        floor[r] = orders.floor
        shipping[r] = m.env.shipping
        desk = m.desk
        if desk.enabled and desk.cfg.buy_floor and not desk.secured:  # else its zeros
            d_prices[r] = desk.floor_bid(m.price, m.fundamental)
        if m.lolr is not None:
            lo_prices[r] = m.lolr.bid(m.fundamental)
        active.append(r)
    if not active:
        return
    kmarket.market_batch(np.array(active, dtype=np.int64), *(b[name] for name in _ARGS))
    out, ev_int, ev_price = b["out"], b["ev_int"], b["ev_price"]
    orders_of = {r: c.orders for r, c in zip(runs, contexts, strict=True)}
    for r in active:
        m = models[r]
        status, n_ev, trades, lender_settles, buyer_settles = out[r].tolist()
        if status:  # the kernel left the month to numpy, as run() does
            _own_phase(stack, r, lambda m=m, o=orders_of[r]: _numpy_month(m, o, auction))
            continue
        _write_back(m, fp[r], n_ev, trades, lender_settles, buyer_settles, ev_int[r],
                    ev_price[r])


def _numpy_month(m: LiquidationModel, orders: SellOrders, auction: bool) -> None:
    """The rest of a compiled month the kernel leaves to numpy (:func:`run`'s): the numpy
    code, the arrays it rebinds kept resident."""
    with _resident(m):
        _run_numpy(m, orders, auction)
