"""Secondary market for the GPUs of one generation.

Two price-formation rules are provided, both as pure numpy functions:

* :func:`call_auction` -- a uniform-price sealed-bid call market (the *k*-double auction of
  Satterthwaite & Williams 1989 generalised to many traders and multi-unit orders, as in
  Rustichini, Satterthwaite & Williams 1994).  Sellers submit asks (price 0 is a market
  order; liqsim's forced sellers ask the salvage floor, or post market orders against the
  outside demand of :func:`outside_bids`, see ``sim.world.model``), buyers submit
  limit bids at their reservation prices, and the price is set by the marginal units.  Thin
  demand therefore produces fire-sale prices endogenously.
* :func:`parametric_price` -- the exponential inverse-demand curve of Cifuentes, Shin &
  Ferrucci (2005), the reduced-form alternative.

:func:`exponential_bids` links the two: it builds a ladder of limit bids whose step demand
curve reproduces the exponential curve, so the auction run on that ladder recovers the
parametric price.

The model calls these once per generation per month, so everything is vectorised
(argsort / cumsum / searchsorted over orders, never a Python loop over units).  The model's
books are tiny (a few asks, one to two dozen bids), where numpy's per-call overhead is most of
the cost: books of at most ``_SMALL_BOOK`` orders are cleared by the same rule on Python lists
(sorted / accumulate / bisect, exact integer and the same float arithmetic), which gives the
same result (``tests/core/test_market.py`` checks both against each other on random books).
The model builds its books as Python lists and calls :func:`clear_book`, which takes and
returns lists (no conversion to arrays and back for the small books).

References
----------
Satterthwaite, M. A. and Williams, S. R. (1989). Bilateral trade with the sealed bid
    k-double auction: existence and efficiency. *Journal of Economic Theory* 48(1), 107-133.
Rustichini, A., Satterthwaite, M. A. and Williams, S. R. (1994). Convergence to efficiency
    in a simple market with incomplete information. *Econometrica* 62(5), 1041-1063.
Cifuentes, R., Shin, H. S. and Ferrucci, G. (2005). Liquidity risk and contagion.
    *Journal of the European Economic Association* 3(2-3), 556-566.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from sim.core import numerics as nm
from sim.core.contagion import exponential_impact

__all__ = ["AuctionResult", "call_auction", "clear_book", "exponential_bids", "outside_bids",
           "parametric_price"]

# Largest number of units allowed on the ask side of the book and in any one bid.  The
# integer arithmetic of a clearing is then exact in int64: the pro-rata products
# quantity * remaining units of :func:`_fill_sorted` are at most (2**31 - 1) * volume, and the
# volume is at most the ask units, so below 2**62; the bid side's cumulative sums need only
# a total below 2**63 (checked exactly), so demand from many bidders, each capped at the
# supply as the model does, is never refused.
MAX_UNITS = 2**31 - 1
_INT64_TOTAL = 2**63
# Smallest positive float: searchsorted(..., _TINY) counts the prices equal to 0.
_TINY = math.ulp(0.0)
# Books with at most this many orders (asks and bids together) are cleared on Python lists
# (:func:`_clear_lists`), larger ones with numpy (:func:`_clear_arrays`): below it the lists
# are about twice as fast, above it numpy's per-call overhead is amortised.
_SMALL_BOOK = 32


@dataclass(frozen=True)
class AuctionResult:
    """Outcome of one :func:`call_auction`.

    Attributes
    ----------
    price:
        Uniform clearing price; ``nan`` when nothing trades.
    volume:
        Number of units traded (the maximal tradeable volume).
    ask_fills, bid_fills:
        Units filled per ask / bid row, int64, same order as the inputs.
    unfilled_market_units:
        Units of market-order asks (ask price 0) left unsold: the forced-sale overhang.
    best_bid:
        Highest bid price among rows with positive quantity; ``nan`` if there is none.
    """

    price: float
    volume: int
    ask_fills: np.ndarray
    bid_fills: np.ndarray
    unfilled_market_units: int
    best_bid: float


def _as_prices(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    # min/max propagate NaN, and NaN fails both comparisons, so NaN is rejected too.
    if arr.size and not (arr.min() >= 0.0 and arr.max() < np.inf):
        raise ValueError(f"{name} must contain finite, non-negative prices")
    return arr


def _as_units(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind in "iub":
        if kind == "i" and arr.size and arr.min() < 0:
            raise ValueError(f"{name} must contain non-negative unit quantities")
        return arr.astype(np.int64, copy=False)
    if kind != "f":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if not ((arr >= 0.0) & (arr < np.inf) & (arr == np.floor(arr))).all():
        raise ValueError(f"{name} must contain finite, non-negative, integer unit quantities")
    return arr.astype(np.int64)


def _check_units(ask_qty: list, bid_qty: list) -> None:
    """Raise unless a book's unit arithmetic is exact in int64 (see ``MAX_UNITS``): at most
    ``MAX_UNITS`` ask units, and bids of at most ``MAX_UNITS`` units each totalling less
    than 2**63. Called only when a total or an order is out of the fast range (never in the
    model's runs, whose books have at most a few hundred thousand units a side), with the
    quantities as Python ints, summed here exactly (an int64 total may have wrapped)."""
    if sum(ask_qty) > MAX_UNITS:
        raise ValueError(f"at most {MAX_UNITS} units on the ask side are supported")
    if max(bid_qty, default=0) > MAX_UNITS or sum(bid_qty) >= _INT64_TOTAL:
        raise ValueError(f"at most {MAX_UNITS} units per bid, and fewer than 2**63 units of "
                         "bids in all, are supported")


def _fill_sorted(qty: np.ndarray, cum: np.ndarray, start: int, stop: int, volume: int):
    """Fills of one side of the book, in priority (sorted) order.

    Rows ``[0, start)`` are strictly better than the marginal price and are filled in full,
    rows ``[start, stop)`` sit at the marginal price and share the rest pro rata to their
    quantities by the largest-remainder (Hamilton) method in exact integer arithmetic,
    rows from ``stop`` on get nothing.  Within a price level the sorted order is the row
    order (stable sort), so the stable sort on remainders breaks ties to the lower row.
    """
    fills = qty.copy()
    fills[stop:] = 0
    rest = volume - (int(cum[start - 1]) if start else 0)
    if stop - start == 1:
        fills[start] = rest
        return fills
    q = qty[start:stop]
    total = int(cum[stop - 1]) - (int(cum[start - 1]) if start else 0)
    if rest == total:
        return fills
    base, rem = np.divmod(q * rest, total)
    left = rest - int(base.sum())
    if left:
        base[(-rem).argsort(kind="stable")[:left]] += 1
    fills[start:stop] = base
    return fills


def _fill_list(qty: list, cum: list, start: int, stop: int, volume: int) -> list:
    """:func:`_fill_sorted` on Python lists of ints (the same integer arithmetic, exact)."""
    fills = qty[:stop] + [0] * (len(qty) - stop)
    before = cum[start - 1] if start else 0
    rest = volume - before
    if stop - start == 1:
        fills[start] = rest
        return fills
    total = cum[stop - 1] - before
    if rest == total:
        return fills
    base = [q * rest // total for q in qty[start:stop]]
    rem = [q * rest % total for q in qty[start:stop]]
    left = rest - sum(base)
    if left:  # the stable sort on -remainder: ties to the lower row, as argsort(stable)
        for j in sorted(range(len(rem)), key=lambda j: -rem[j])[:left]:
            base[j] += 1
    fills[start:stop] = base
    return fills


def call_auction(
    ask_qty: np.ndarray,
    ask_price: np.ndarray,
    bid_qty: np.ndarray,
    bid_price: np.ndarray,
    k: float = 0.5,
    validate: bool = True,
) -> AuctionResult:
    """Uniform-price sealed call auction (a multi-unit *k*-double auction).

    All orders are collected and cleared at once at a single price, as in the *k*-double
    auction of Satterthwaite & Williams (1989) and its many-trader version in Rustichini,
    Satterthwaite & Williams (1994).

    Rule
    ----
    1. *Volume.*  Bid units are ranked by descending price, ask units by ascending price
       (ties by row index).  Unit ``n`` trades iff the ``n``-th highest bid unit price is
       ``>=`` the ``n``-th lowest ask unit price; the volume ``V`` is the largest such ``n``
       (the maximal tradeable volume).  Equivalently ``V = max_p min(D(p), S(p))`` with
       ``D(p)`` the bid units priced ``>= p`` and ``S(p)`` the ask units priced ``<= p``;
       the maximum is attained at an ask price, so ``V`` comes from one searchsorted of the
       sorted ask prices into the sorted bids plus cumulative sums, never unit by unit.
    2. *Price.*  Every price in ``[lo, hi]`` clears ``V`` units (it is the Walrasian
       interval of the submitted book), with

       * ``lo = max(V-th ask unit price, (V+1)-th bid unit price or 0 if no such unit)``,
       * ``hi = min(V-th bid unit price, (V+1)-th ask unit price or +inf if none)``.

       When trade occurs this is ``[s(N), s(N+1)]``, the ``N``-th and ``N+1``-th smallest
       of all bid and ask unit prices pooled, ``N`` being the number of bid units: with
       ``m`` single-unit buyers and sellers it is the ``[s(m), s(m+1)]`` of Rustichini,
       Satterthwaite & Williams (1994).

       The price is ``p = k * hi + (1 - k) * lo``.  As in Satterthwaite & Williams, ``k``
       weights the buyers' side: ``k = 1`` is the buyer's-bid double auction (``p = hi``),
       ``k = 0`` the seller's-offer one (``p = lo``).  ``hi`` is finite whenever ``V > 0``.
       With excess market-order supply the (V+1)-th ask is a market order (price 0), so
       ``hi = 0`` when every bid is exhausted, and otherwise the price falls to the next
       unfilled bid: fire-sale prices emerge from thin demand.
    3. *Fills.*  Bid rows priced strictly above the marginal (``V``-th unit) bid price are
       filled in full; rows at exactly that price share the remaining units pro rata to
       their quantities (integer units, largest-remainder method, ties to the lower row
       index).  Asks are symmetric (strictly below the marginal ask price in full, the
       marginal price level pro rata).  Hence every filled bid is priced ``>= p``, every
       filled ask ``<= p``, every unfilled bid ``<= p`` and every unfilled ask ``>= p``.
    4. If ``V == 0`` the price is ``nan`` and all fills are zero.

    Parameters
    ----------
    ask_qty, ask_price:
        Sellers' integer unit quantities (``>= 0``) and limit prices (``>= 0``); an ask
        price of 0 is a market order that accepts any price.
    bid_qty, bid_price:
        Buyers' integer unit quantities (``>= 0``) and limit (reservation) prices.
    k:
        Weight on the upper end of the clearing interval, in ``[0, 1]``.
    validate:
        ``False`` skips the input checks and conversions below, for a caller that passes
        1-D int64 quantities and finite, non-negative float64 prices of equal lengths; the
        unit limit is checked either way. (The model itself calls :func:`clear_book`.)

    Raises
    ------
    ValueError
        On mismatched lengths, negative / non-finite / non-integer quantities, negative or
        non-finite prices, ``k`` outside ``[0, 1]``, more than ``2**31 - 1`` units on the
        ask side or in one bid, or ``2**63`` or more bid units in all (the integer
        arithmetic stays exact in int64 below these; demand from many bids, each at most the
        supply, is accepted).
    """
    if not 0.0 <= k <= 1.0:  # also rejects nan
        raise ValueError(f"k must be in [0, 1], got {k!r}")
    if validate:
        aq = _as_units(ask_qty, "ask_qty")
        ap = _as_prices(ask_price, "ask_price")
        bq = _as_units(bid_qty, "bid_qty")
        bp = _as_prices(bid_price, "bid_price")
        if aq.shape != ap.shape:
            raise ValueError(f"ask_qty and ask_price lengths differ: {aq.size} != {ap.size}")
        if bq.shape != bp.shape:
            raise ValueError(f"bid_qty and bid_price lengths differ: {bq.size} != {bp.size}")
    else:
        aq, ap, bq, bp = ask_qty, ask_price, bid_qty, bid_price
    if len(aq) + len(bq) <= _SMALL_BOOK:
        return _clear_lists(aq.tolist(), ap.tolist(), bq.tolist(), bp.tolist(), k)
    return _clear_arrays(aq, ap, bq, bp, k)


def _clear_arrays(aq: np.ndarray, ap: np.ndarray, bq: np.ndarray, bp: np.ndarray,
                  k: float) -> AuctionResult:
    """The rule of :func:`call_auction` on checked numpy arrays (int64 units, float64 prices)."""
    # Ask units ascending, bid units descending (stable: ties keep row order).
    a_ord = ap.argsort(kind="stable")
    neg_b = -bp  # bids sorted ascending in -price, i.e. descending in price
    b_ord = neg_b.argsort(kind="stable")
    a_px = ap[a_ord]
    nb_px = neg_b[b_ord]
    a_q = aq[a_ord]
    b_q = bq[b_ord]
    a_cum = np.add.accumulate(a_q)
    b_cum0 = np.zeros(b_q.size + 1, dtype=np.int64)  # bid units of the best j rows
    b_cum = np.add.accumulate(b_q, out=b_cum0[1:])
    a_tot = int(a_cum[-1]) if a_cum.size else 0
    b_tot = int(b_cum0[-1])
    # an order above the limit can wrap an int64 total into range (4 x 2**62 sums to 0)
    if (a_tot > MAX_UNITS or not 0 <= b_tot <= MAX_UNITS
            or max(a_q.max(initial=0), b_q.max(initial=0)) > MAX_UNITS):
        _check_units(a_q.tolist(), b_q.tolist())

    # Maximal volume.  With D(p) the bid units priced >= p and S(p) the ask units priced
    # <= p, unit n trades iff some p has D(p) >= n and S(p) >= n, so V = max_p min(D, S).
    # S steps up only at ask prices and D is non-increasing, so the maximum is attained at
    # an ask price; S at the i-th sorted ask is a_cum[i] (exact at the last row of a tie,
    # smaller before it, which cannot raise the max).  One searchsorted gives D at all asks.
    volume = 0
    if a_tot and b_tot:
        demand = b_cum0[nb_px.searchsorted(-a_px, side="right")]
        volume = int(np.minimum(demand, a_cum).max())

    if volume == 0:
        # The first bid unit (searchsorted for unit 1 skips zero-quantity rows) is the best.
        best_bid = -float(nb_px[b_cum.searchsorted(1)]) if b_tot else float("nan")
        n_mkt = int(a_px.searchsorted(_TINY))  # rows with price 0 come first
        mkt_units = int(a_cum[n_mkt - 1]) if n_mkt else 0
        zeros_a = np.zeros(aq.shape, dtype=np.int64)
        zeros_b = np.zeros(bq.shape, dtype=np.int64)
        return AuctionResult(float("nan"), 0, zeros_a, zeros_b, mkt_units, best_bid)

    # Rows holding bid unit 1 (best bid), unit V (marginal) and unit V+1 (first unfilled).
    ib = b_cum.searchsorted((1, volume, volume + 1))
    ia = a_cum.searchsorted((volume, volume + 1))
    best_bid = -float(nb_px[ib[0]])
    marg_bid = -float(nb_px[ib[1]])
    marg_ask = float(a_px[ia[0]])
    next_bid = -float(nb_px[ib[2]]) if volume < b_tot else 0.0
    next_ask = float(a_px[ia[1]]) if volume < a_tot else np.inf
    lo = max(marg_ask, next_bid)
    hi = min(marg_bid, next_ask)
    # lo + k (hi - lo) returns lo exactly when hi == lo; the clamp keeps rounding from
    # pushing the price outside [lo, hi] (which would break p <= every filled bid).
    price = hi if k == 1.0 else min(max(lo + k * (hi - lo), lo), hi)

    # The marginal price levels are contiguous runs [start, stop) of the sorted books
    # (x < nextafter(m) <=> x <= m); market orders (price 0) are the first rows of the asks.
    a_cut = a_px.searchsorted((marg_ask, math.nextafter(marg_ask, math.inf), _TINY))
    b_cut = nb_px.searchsorted((-marg_bid, math.nextafter(-marg_bid, math.inf)))
    ask_fills = np.empty(aq.shape, dtype=np.int64)
    bid_fills = np.empty(bq.shape, dtype=np.int64)
    ask_fills[a_ord] = _fill_sorted(a_q, a_cum, int(a_cut[0]), int(a_cut[1]), volume)
    bid_fills[b_ord] = _fill_sorted(b_q, b_cum, int(b_cut[0]), int(b_cut[1]), volume)
    n_mkt = int(a_cut[2])
    mkt_units = int(a_cum[n_mkt - 1]) if n_mkt else 0
    # Market orders are filled first, so the filled market units are min(V, mkt_units).
    overhang = mkt_units - min(volume, mkt_units)
    return AuctionResult(float(price), volume, ask_fills, bid_fills, overhang, best_bid)


def _clear_lists(aq: list, ap: list, bq: list, bp: list, k: float) -> AuctionResult:
    """:func:`_clear_small` as an :class:`AuctionResult` (fills as int64 arrays)."""
    price, volume, ask_fills, bid_fills, overhang, best_bid = _clear_small(aq, ap, bq, bp, k)
    return AuctionResult(price, volume, np.array(ask_fills, dtype=np.int64),
                         np.array(bid_fills, dtype=np.int64), overhang, best_bid)


def _clear_small(aq: list, ap: list, bq: list, bp: list, k: float) -> tuple:
    """The rule of :func:`call_auction`, step for step as :func:`_clear_arrays`, on Python
    lists (int units, float prices) for small books.  Python's ``sorted`` is stable like
    ``argsort(kind="stable")``, ``bisect_left`` / ``bisect_right`` are ``searchsorted``'s
    left / right sides, the unit arithmetic is exact integer arithmetic in both and the price
    is computed from the same Python floats, so the result is the same to the bit. Returns
    ``(price, volume, ask_fills, bid_fills, unfilled_market_units, best_bid)``, the fills as
    lists of ints (the fields of :class:`AuctionResult`)."""
    na, nb = len(ap), len(bp)
    neg_b = [-p for p in bp]  # bids sorted ascending in -price, i.e. descending in price
    a_ord = sorted(range(na), key=ap.__getitem__)
    b_ord = sorted(range(nb), key=neg_b.__getitem__)
    a_px = [ap[i] for i in a_ord]
    nb_px = [neg_b[i] for i in b_ord]
    a_q = [aq[i] for i in a_ord]
    b_q = [bq[i] for i in b_ord]
    a_cum = list(accumulate(a_q))
    b_cum = list(accumulate(b_q))
    a_tot = a_cum[-1] if na else 0
    b_tot = b_cum[-1] if nb else 0
    if a_tot > MAX_UNITS or b_tot > MAX_UNITS:
        _check_units(a_q, b_q)  # Python ints: the totals are exact

    # V = max over the sorted asks of min(D, S) at the ask's price.  S rises and D falls
    # along the sorted asks, so min(D, S) is S until the first ask with D <= S, and at most
    # that D from there on: the maximum is max(S before it, D there), found in one pass.
    volume = 0
    if a_tot and b_tot:
        b_cum0 = [0, *b_cum]
        for p, s in zip(a_px, a_cum, strict=True):
            d = b_cum0[bisect_right(nb_px, -p)]
            if d <= s:
                volume = max(volume, d)
                break
            volume = s

    n_mkt = bisect_left(a_px, _TINY)  # rows with price 0 come first
    mkt_units = a_cum[n_mkt - 1] if n_mkt else 0
    if volume == 0:
        best_bid = -nb_px[bisect_left(b_cum, 1)] if b_tot else float("nan")
        return float("nan"), 0, [0] * na, [0] * nb, mkt_units, best_bid

    best_bid = -nb_px[bisect_left(b_cum, 1)]
    marg_bid = -nb_px[bisect_left(b_cum, volume)]
    marg_ask = a_px[bisect_left(a_cum, volume)]
    next_bid = -nb_px[bisect_left(b_cum, volume + 1)] if volume < b_tot else 0.0
    next_ask = a_px[bisect_left(a_cum, volume + 1)] if volume < a_tot else math.inf
    lo = max(marg_ask, next_bid)
    hi = min(marg_bid, next_ask)
    price = hi if k == 1.0 else min(max(lo + k * (hi - lo), lo), hi)

    a_fill = _fill_list(a_q, a_cum, bisect_left(a_px, marg_ask),
                        bisect_left(a_px, math.nextafter(marg_ask, math.inf)), volume)
    b_fill = _fill_list(b_q, b_cum, bisect_left(nb_px, -marg_bid),
                        bisect_left(nb_px, math.nextafter(-marg_bid, math.inf)), volume)
    ask_fills = [0] * na
    for i, f in zip(a_ord, a_fill, strict=True):
        ask_fills[i] = f
    bid_fills = [0] * nb
    for i, f in zip(b_ord, b_fill, strict=True):
        bid_fills[i] = f
    overhang = mkt_units - min(volume, mkt_units)
    return float(price), volume, ask_fills, bid_fills, overhang, best_bid


def clear_book(aq: list, ap: list, bq: list, bp: list, k: float) -> tuple:
    """:func:`call_auction` for the model, on orders it builds itself as Python lists
    (int units, finite non-negative float prices, equal lengths: not checked, as with
    ``validate=False``): ``(price, volume, ask_fills, bid_fills, unfilled_market_units,
    best_bid)`` with the fills as lists of ints. Small books are cleared on the lists as
    they are (:func:`_clear_small`), larger ones by :func:`_clear_arrays` on the same values
    as int64 / float64 arrays: the same rule and the same result as :func:`call_auction`,
    without converting the orders to arrays and the fills back."""
    if not 0.0 <= k <= 1.0:  # also rejects nan
        raise ValueError(f"k must be in [0, 1], got {k!r}")
    if len(aq) + len(bq) <= _SMALL_BOOK:
        return _clear_small(aq, ap, bq, bp, k)
    res = _clear_arrays(np.array(aq, dtype=np.int64), np.array(ap, dtype=np.float64),
                        np.array(bq, dtype=np.int64), np.array(bp, dtype=np.float64), k)
    return (res.price, res.volume, res.ask_fills.tolist(), res.bid_fills.tolist(),
            res.unfilled_market_units, res.best_bid)


def parametric_price(p0, sold, stock, alpha):
    """Exponential inverse demand: ``p0 * exp(-alpha * sold / stock)``.

    The price-impact function of Cifuentes, Shin & Ferrucci (2005), evaluated by
    :func:`sim.core.contagion.exponential_impact` on the fraction of the stock sold.
    ``alpha = -ln(0.9) = 1.0536`` means that selling 10 % of the stock takes 10 % off the
    price. Where ``stock <= 0`` the price is ``p0`` (nothing to sell against). All arguments
    broadcast; scalar arguments give a Python float.
    """
    stock = np.asarray(stock, dtype=np.float64)
    pos = stock > 0.0
    frac = np.where(pos, np.asarray(sold, dtype=np.float64) / np.where(pos, stock, 1.0), 0.0)
    out = np.asarray(p0, dtype=np.float64) * exponential_impact(frac, alpha)
    return float(out) if np.ndim(out) == 0 else out


def exponential_bids(
    p0: float, alpha: float, stock: int, n_buyers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ladder of limit bids whose step demand curve is the exponential inverse demand.

    The stock is cut into ``n = min(n_buyers, stock)`` blocks of equal size (integer
    boundaries ``c_m = floor(m * stock / n)``, ``m = 0..n``).  Buyer ``m`` bids for the
    ``c_m - c_{m-1}`` units of the block of sold fraction ``(c_{m-1}/stock, c_m/stock]`` at
    the curve's price at the block's right end, ``p0 * exp(-alpha * c_m / stock)`` (the
    inverse demand of Cifuentes, Shin & Ferrucci 2005).

    Feeding ``sold`` market-order units into :func:`call_auction` against this ladder gives
    ``V = sold`` (for ``sold <= stock``); the marginal bid is the block containing unit
    ``sold``, so the price is the curve evaluated at most one block to the right of
    ``sold / stock`` (between that block's price and the next block's at a block
    boundary).  The auction price therefore never exceeds :func:`parametric_price` and
    falls short of it by at most ``1 - exp(-alpha * w)``, where ``w = ceil(stock / n) /
    stock`` is the widest block.  Equal blocks are optimal for this relative error because
    the curve's relative drop over a block depends only on the block's width.  For
    ``alpha = 1.0536`` and a stock in the thousands the error is below 2 % once
    ``n_buyers >= 53``; with one buyer per unit (``n_buyers = stock``) and ``k = 0.5`` it is
    about ``alpha / (2 stock)``.  Two edge cases: ``sold == 0`` is no trade (price ``nan``),
    and at ``sold == stock`` the whole ladder is exhausted and the auction price is
    ``k * p0 * exp(-alpha)``, because no unfilled bid remains to support it.

    Returns ``(bid_qty, bid_price)``: int64 quantities (all ``>= 1``) and float64 prices in
    descending order.
    """
    if not (np.isfinite(p0) and p0 >= 0):
        raise ValueError(f"p0 must be finite and non-negative, got {p0!r}")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be finite and non-negative, got {alpha!r}")
    if int(stock) != stock or stock < 1:
        raise ValueError(f"stock must be a positive integer, got {stock!r}")
    if int(n_buyers) != n_buyers or n_buyers < 1:
        raise ValueError(f"n_buyers must be a positive integer, got {n_buyers!r}")
    stock = int(stock)
    n = min(int(n_buyers), stock)
    bounds = (np.arange(n + 1, dtype=np.int64) * stock) // n
    qty = np.diff(bounds)
    price = p0 * nm.exp(-alpha * bounds[1:] / stock)
    return qty, price


# The outside-demand ladder of :func:`outside_bids`: bid steps per depth, and depths covered
# before the rest of the supply is bid at the scrap value (e^-4 = 1.8 % of the span is left).
OUTSIDE_STEPS_PER_DEPTH = 8
OUTSIDE_DEPTHS = 4


def outside_bids(top: float, scrap: float, depth: float, supply: int,
                 scrap_block: bool = True) -> tuple[list, list]:
    """Bid steps of the outside demand (out-of-sector and overseas buyers) for one month.

    Continuous inverse demand for the ``q``-th unit bought by outside buyers,

        p(q) = scrap + (top - scrap) * exp(-q / depth),

    discretised into at most ``OUTSIDE_STEPS_PER_DEPTH * OUTSIDE_DEPTHS`` = 32 blocks with
    integer right ends ``c_m = min(floor(m * depth / 8), supply + 1)``, ``m = 1..32`` (blocks
    of no unit are dropped; the ladder reaches one unit beyond the supply, so the first
    unfilled bid, the k-rule's lower end, is the curve's next step); block ``m`` bids for
    the ``c_m - c_{m-1}`` units at the curve's price at its right end, ``p(c_m)``, so the
    step curve never lies above ``p`` (as :func:`exponential_bids`). With ``scrap_block``
    the units left up to ``supply + 1`` are bid at ``scrap`` (parts and metal buyers take
    any quantity at the scrap value: every offered unit finds a bid, and the k-rule's lower
    end never falls below ``scrap``).
    A bigger dump therefore clears lower, and a seller who spreads a sale over months (the
    schedule is fresh every month: outside buyers absorb a flow) gets more.
    The functional form is the exponential inverse demand of Cifuentes, Shin & Ferrucci
    (2005); its level and depth are calibrated in docs/calibration.md ("Outside demand").

    ``top >= scrap >= 0`` and ``depth > 0`` (a ``top`` below ``scrap`` is raised to it);
    ``supply`` is the units offered. Returns ``(qty, price)`` as Python lists, prices
    non-increasing, quantities positive and summing to ``supply + 1`` with the scrap block,
    at most ``supply + 1`` without it.
    """
    supply = int(supply)
    if supply <= 0:
        return [], []
    top = max(top, scrap)
    n = OUTSIDE_STEPS_PER_DEPTH * OUTSIDE_DEPTHS
    # one unit beyond the supply: the first unfilled bid (the k-rule's lower end) is then the
    # curve's next step, not an artefact of where the ladder was cut
    ends = np.minimum(np.floor(np.arange(1, n + 1) * (depth / OUTSIDE_STEPS_PER_DEPTH)),
                      supply + 1).astype(np.int64)
    prices = scrap + (top - scrap) * nm.exp(-ends / depth)
    qty, price, prev = [], [], 0
    for c, p in zip(ends.tolist(), prices.tolist(), strict=True):
        if c > prev:
            qty.append(c - prev)
            price.append(p)
            prev = c
    if scrap_block and prev <= supply:
        # scrap demand is perfectly elastic: up to one unit more than is offered, so that
        # the next unfilled bid (the k-rule's lower end) is the scrap value, never 0
        qty.append(supply + 1 - prev)
        price.append(float(scrap))
    return qty, price
