"""Check 3: the parametric market is exp(-alpha x) (Cifuentes, Shin & Ferrucci 2005), and the
call auction against buyers laid out on that curve reproduces it within 2 %."""

from __future__ import annotations

import numpy as np

from sim.core import numerics as nm
from sim.core.market import call_auction, exponential_bids, parametric_price
from sim.qa.checks.common import BANDS, CAL, Check, pct


def nesting_curves(alpha: float = 1.0536, stock: int = 100_000, n_buyers: int = 100,
                   x: np.ndarray | None = None) -> dict:
    """Parametric price and call-auction price against the fraction sold.

    The auction sells ``x * stock`` units as market orders (ask price 0, as a forced seller)
    into the bids of :func:`sim.core.market.exponential_bids` (``n_buyers`` buyers laid out on the
    curve) with the model's k-double rule (k = 0.5); the parametric price is
    :func:`sim.core.market.parametric_price`, the function the model's parametric mode calls.
    """
    x = np.round(np.arange(0.02, 0.961, 0.02), 4) if x is None else np.asarray(x)
    par = np.asarray(parametric_price(1.0, x * stock, stock, alpha), dtype=float)
    bq, bp = exponential_bids(1.0, alpha, stock, n_buyers)
    auc = []
    for xi in x:
        sold = round(xi * stock)
        res = call_auction(np.array([sold]), np.array([0.0]), bq, bp, k=0.5)
        auc.append(res.price)
    return {"x": x.tolist(), "parametric": par.tolist(), "auction": auc,
            "exact": nm.exp(-alpha * x).tolist(), "alpha": alpha, "stock": stock,
            "n_buyers": n_buyers}


def check_nesting(alpha: float = 1.0536) -> tuple[list[Check], dict]:
    """Check 3: the parametric market nests exp(-alpha x); the auction reproduces it."""
    cur = nesting_curves(alpha)
    x, par, auc = np.array(cur["x"]), np.array(cur["parametric"]), np.array(cur["auction"])
    exact = nm.exp(-alpha * x)
    err_par = float(np.max(np.abs(par - exact)))
    p10 = float(parametric_price(1.0, 10, 100, alpha))
    tol = BANDS["nest_parametric"]["tol"]
    src = f"Cifuentes, Shin & Ferrucci (2005), JEEA 3(2-3); {CAL}"
    rows = [Check("3a", "Parametric mode: price = exp(-alpha x), alpha = 1.0536",
                  f"10 % sold -> 10 % off; max |p - exp(-alpha x)| <= {tol:g}", src,
                  f"10 % sold -> {pct(1 - p10)} off; max error {err_par:.1e}",
                  bool(err_par <= tol and abs(p10 - 0.9) < 1e-4))]
    rel = np.abs(auc / exact - 1.0)
    tol = BANDS["nest_auction"]["tol"]
    rows.append(Check(
        "3b", f"Call auction vs exp(-alpha x) ({cur['n_buyers']} buyers on the curve, "
        f"x = {x[0]:g}..{x[-1]:g})", f"within {tol:.0%} at every x", src,
        f"max relative error {pct(float(rel.max()))}", bool(rel.max() <= tol)))
    return rows, cur
