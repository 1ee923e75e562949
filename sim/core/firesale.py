"""Reduced mode: the classic one-round fire-sale closed form of Greenwood, Landier & Thesmar.

Greenwood, R., Landier, A. & Thesmar, D. (2015), "Vulnerable banks", Journal of Financial
Economics 115(3), 471-485 (GLT); the aggregate-vulnerability and systemicness measures as
applied by Duarte, F. & Eisenbach, T. M. (2021), "Fire-sale spillovers and systemic risk",
Journal of Finance 76(6), 3067-3112 (DE).

Set-up (GLT section 2). N banks, K assets.

* ``a`` (N): total assets of bank n, A = diag(a);
* ``M`` (N x K): portfolio weights, m_nk = share of bank n's assets in asset k (rows sum to 1
  when every asset is listed);
* ``b`` (N): leverage, debt over equity, B = diag(b); equity e_n = a_n / (1 + b_n), aggregate
  equity E = sum_n e_n;
* ``L`` (K x K, diagonal in GLT; here its diagonal ``ell`` (K) or the full matrix): price
  impact, the return of asset k per dollar of asset k net bought (ell_k > 0: a dollar sold
  lowers the price by ell_k);
* ``F`` (K): the asset return shock (negative: a loss).

One round, GLT's three assumptions: (i) the shock F hits, bank n's return is (M F)_n and it
loses a_n (M F)_n; (ii) each bank targets its leverage: it sells b_n a_n |(M F)_n| dollars of
assets (repaying debt), i.e. buys B A M F (signed), in proportion to its holdings (weights M
unchanged), so the net purchases of the assets are phi = M' B A M F; (iii) prices move
linearly, by L phi, and every bank marks its holdings A M to the move. Bank n's first-round
fire-sale (spillover) return, in dollars, is

    A M L M' B A M F                                  (GLT eq. 5, N-vector)

so that

    AV   = 1' A M L M' B A M F / E                     aggregate vulnerability (GLT eq. 6;
                                                       DE's AV), the share of the system's
                                                       equity lost to the spillover;
    IV_n = delta_n' A M L M' B A M F / e_n             bank n's indirect vulnerability
                                                       (GLT eq. 7), its own equity lost;
    S_n  = 1' A M L M' delta_n delta_n' B A M F / E    bank n's systemicness (GLT eq. 8):
                                                       what its own sales cost the system,
                                                       sum_n S_n = AV.

All three are signed as returns (negative for a loss when F < 0), as in GLT.

:func:`glt_closed_form` evaluates these formulas; :func:`glt_simulate` runs the same round as
explicit steps bank by bank and asset by asset (the "reduced mode" of the model's fire sale:
no auction, no clearing, a linear price, one round). With ``linear=True`` (default) the
simulation uses GLT's accounting: sales pro rata to the pre-shock weights M and the price move
marked on the pre-shock positions a_n m_nk; it then agrees with the closed form to rounding
(tests/core/test_firesale.py, to 1e-9). With ``linear=False`` banks sell pro rata to their
post-shock holdings and mark the move on what they still hold after the sale: the closed form
drops these second-order terms (order F x L x sales), and the two differ by them.

Products go through :mod:`sim.core.numerics` (fixed-order sums, no BLAS), as in the model's core.
"""

from __future__ import annotations

import numpy as np

from sim.core import numerics as nm


def _impact(L: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """L phi for L given as its diagonal (K) or as a K x K matrix."""
    L = np.asarray(L, dtype=float)
    return L * phi if L.ndim == 1 else nm.matvec(L, phi)


def _impact_t(L: np.ndarray, c: np.ndarray) -> np.ndarray:
    """L' c (the row vector c' L)."""
    L = np.asarray(L, dtype=float)
    return L * c if L.ndim == 1 else nm.matvec(np.ascontiguousarray(L.T), c)


def _inputs(M, a, b, L, F):
    M = np.asarray(M, dtype=float)
    a, b, F = (np.asarray(v, dtype=float) for v in (a, b, F))
    L = np.asarray(L, dtype=float)
    n, k = M.shape
    if a.shape != (n,) or b.shape != (n,) or F.shape != (k,) \
            or L.shape not in ((k,), (k, k)):
        raise ValueError(f"need M (N, K), a (N), b (N), L (K) or (K, K), F (K); got "
                         f"{M.shape}, {a.shape}, {b.shape}, {L.shape}, {F.shape}")
    if np.any(b < 0) or np.any(a < 0):
        raise ValueError("assets and leverage must be non-negative")
    return M, a, b, L, F


def glt_closed_form(M, a, b, L, F) -> dict:
    """GLT's first-round fire-sale closed form (module docstring; GLT 2015 eqs. 5-8).

    ``M`` (N x K) weights, ``a`` (N) assets, ``b`` (N) leverage (debt / equity), ``L`` the
    price impact per dollar (diagonal ``(K,)`` or ``(K, K)``), ``F`` (K) the return shock.
    Returns ``spillover`` = A M L M' B A M F (N, dollars), ``sales`` = M' B A M F (K, net
    dollars bought), ``price_move`` = L M' B A M F (K), ``equity`` e (N), ``AV``,
    ``IV`` (N), ``S`` (N, sum = AV) and the direct loss A M F (N)."""
    M, a, b, L, F = _inputs(M, a, b, L, F)
    e = a / (1.0 + b)
    E = float(e.sum())
    r = nm.matvec(M, F)  # M F: each bank's return on the shock
    trade = b * a * r  # B A M F: dollars each bank buys (< 0: sells) to restore b_n
    phi = nm.matvec(np.ascontiguousarray(M.T), trade)  # M' B A M F
    dp = _impact(L, phi)  # L M' B A M F
    spill = a * nm.matvec(M, dp)  # A M L M' B A M F
    held = nm.matvec(np.ascontiguousarray(M.T), a)  # 1' A M: dollars held of each asset
    w = _impact_t(L, held)  # 1' A M L
    S = nm.matvec(M, w) * trade / E  # (1' A M L M' delta_n)(delta_n' B A M F) / E
    return {"spillover": spill, "sales": phi, "price_move": dp, "equity": e,
            "direct": a * r, "AV": float(spill.sum()) / E, "IV": spill / e, "S": S, "E": E}


def glt_simulate(M, a, b, L, F, linear: bool = True) -> dict:
    """The same round as explicit steps (the reduced mode; module docstring).

    1. each bank holds h_nk = a_n m_nk dollars of asset k, debt d_n = a_n - e_n with
       e_n = a_n / (1 + b_n); the shock F moves each holding by h_nk F_k and equity by the sum;
    2. each bank sells s_n = d_n - b_n e_n' dollars (e_n' its equity after the shock), which
       brings debt / equity back to b_n, spread over the assets pro rata to its holdings
       (``linear``: the pre-shock weights m_nk, GLT's assumption; else its post-shock
       holdings);
    3. each asset's price moves by -sum_j L_kj q_j, q the net dollars sold;
    4. each bank marks the move on its holdings (``linear``: the pre-shock positions h_nk, as
       GLT; else what it holds after the shock and the sale).

    Returns ``spillover`` (N, dollars), ``sales`` (K, net dollars bought, as the closed
    form), ``price_move`` (K), ``AV``, ``IV``, ``S`` (each bank's sales alone, marked on
    every bank's holdings, over E) and ``direct``."""
    M, a, b, L, F = _inputs(M, a, b, L, F)
    n, k = M.shape
    Lm = np.diag(L) if L.ndim == 1 else L
    e = a / (1.0 + b)
    E = float(e.sum())
    hold = np.zeros((n, k))
    direct = np.zeros(n)
    sold = np.zeros((n, k))
    for i in range(n):
        debt = a[i] - e[i]
        loss = 0.0
        for j in range(k):
            hold[i, j] = a[i] * M[i, j]
            loss += hold[i, j] * F[j]
        direct[i] = loss
        sell = debt - b[i] * (e[i] + loss)  # restores (debt - sell) / (e + loss) = b
        after = [hold[i, j] * (1.0 + F[j]) for j in range(k)]
        total = sum(after)
        for j in range(k):
            share = M[i, j] if linear else (after[j] / total if total > 0 else 0.0)
            sold[i, j] = sell * share

    def move(q: np.ndarray) -> np.ndarray:
        return np.array([-sum(Lm[j, jj] * q[jj] for jj in range(k)) for j in range(k)])

    def mark(dp: np.ndarray) -> np.ndarray:
        out = np.zeros(n)
        for i in range(n):
            for j in range(k):
                pos = hold[i, j] if linear else hold[i, j] * (1.0 + F[j]) - sold[i, j]
                out[i] += pos * dp[j]
        return out

    q = sold.sum(axis=0)
    dp = move(q)
    spill = mark(dp)
    S = np.array([mark(move(sold[i])).sum() / E for i in range(n)])
    return {"spillover": spill, "sales": -q, "price_move": dp, "equity": e, "direct": direct,
            "AV": float(spill.sum()) / E, "IV": spill / e, "S": S, "E": E}
