"""Classic network-finance contagion algorithms (numpy in, numpy out).

Every function here is a direct implementation of one published model:

* :func:`eisenberg_noe` -- clearing payments of Eisenberg & Noe (2001).
* :func:`rogers_veraart` -- clearing payments with default costs, Rogers & Veraart (2013);
  :func:`rogers_veraart_state` also returns the obligations, equity and solvency in one pass
  (the model's monthly clearing).
* :func:`debtrank` / :func:`debtrank_impact` -- DebtRank, Battiston et al. (2012).
* :func:`threshold_cascade`, :func:`gai_kapadia_network`, :func:`gai_kapadia_trial` --
  the default cascade on random interbank networks of Gai & Kapadia (2010).
* :func:`exponential_impact`, :func:`alpha_for_impact` -- the exponential inverse demand
  (price impact) function of Cifuentes, Shin & Ferrucci (2005).

Conventions
-----------
* Clearing models take ``liabilities[i, j]`` = nominal amount bank ``i`` owes bank ``j``.
* DebtRank and the threshold cascade take ``exposures[i, j]`` = bank ``i``'s claim on bank
  ``j`` (what ``j`` owes ``i``), i.e. ``exposures = liabilities.T``.

All inputs are validated: matrices must be square, finite and non-negative, vectors must
have one entry per node; a :class:`ValueError` with an explanatory message is raised
otherwise. No function touches the global numpy random state.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse as sp

from sim.core import numerics as nm

__all__ = [
    "alpha_for_impact",
    "clearing_equity",
    "debtrank",
    "debtrank_impact",
    "debtrank_single_node",
    "eisenberg_noe",
    "exponential_impact",
    "gai_kapadia_network",
    "gai_kapadia_trial",
    "relative_liabilities",
    "rogers_veraart",
    "rogers_veraart_state",
    "threshold_cascade",
]

# Relative slack used in solvency comparisons so that a bank whose assets equal its
# obligations up to floating-point rounding is treated as solvent (greatest solution).
_REL_TOL = 1e-12


# ----------------------------------------------------------------------------------------
# input validation helpers
# ----------------------------------------------------------------------------------------
def _square_matrix(x: object, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} must have at least one node")
    if np.minimum.reduce(a, axis=None) >= 0 and np.maximum.reduce(a, axis=None) < np.inf:
        return a  # finite and non-negative (a NaN makes the minimum NaN and fails the test)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must contain only finite values")
    if (a < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return a


def _exposure_matrix(x: object, name: str) -> np.ndarray | sp.csr_array:
    """A square, finite, non-negative matrix, dense or ``scipy.sparse`` (kept sparse, CSR)."""
    if not sp.issparse(x):
        return _square_matrix(x, name)
    a = sp.csr_array(x, dtype=float)
    if a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a.data)):
        raise ValueError(f"{name} must contain only finite values")
    if np.any(a.data < 0):
        raise ValueError(f"{name} must be non-negative")
    return a


def _vector(x: object, name: str, n: int, *, nonneg: bool = True) -> np.ndarray:
    v = np.asarray(x, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector, got shape {v.shape}")
    if v.shape[0] != n:
        raise ValueError(f"{name} has length {v.shape[0]} but the matrix has {n} nodes")
    if nonneg and v.shape[0] and np.minimum.reduce(v) >= 0 and np.maximum.reduce(v) < np.inf:
        return v  # finite and non-negative (a NaN makes the minimum NaN and fails the test)
    if not np.isfinite(v).all():
        raise ValueError(f"{name} must contain only finite values")
    if nonneg and (v < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return v


def _unit_interval(x: float, name: str) -> float:
    try:
        val = float(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number, got {x!r}") from exc
    if not math.isfinite(val) or val < 0.0 or val > 1.0:  # val is a Python float
        raise ValueError(f"{name} must lie in [0, 1], got {x!r}")
    return val


def _check_iter_args(tol: float, max_iter: int) -> None:
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite non-negative number, got {tol!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")


# ----------------------------------------------------------------------------------------
# Eisenberg-Noe and Rogers-Veraart clearing
# ----------------------------------------------------------------------------------------
def relative_liabilities(liabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total obligations and the relative-liabilities matrix of Eisenberg & Noe (2001).

    ``Lbar_i = sum_j L_ij`` and ``Pi_ij = L_ij / Lbar_i`` (a zero row when ``Lbar_i = 0``).

    Eisenberg, L. and Noe, T. H. (2001). Systemic Risk in Financial Systems.
    Management Science 47(2):236-249.

    Returns ``(Lbar, Pi)``.
    """
    L = _square_matrix(liabilities, "liabilities")
    lbar = L.sum(axis=1)
    safe = np.where(lbar > 0, lbar, 1.0)
    pi = L / safe[:, None]
    return lbar, pi


def clearing_equity(
    liabilities: np.ndarray, external_assets: np.ndarray, payments: np.ndarray
) -> np.ndarray:
    """Net worth of each node at a payment vector (Eisenberg & Noe 2001, section 2).

    ``equity_i = e_i + sum_j Pi_ji p_j - Lbar_i``; negative values are the shortfall of a
    defaulting node (the part of its obligations it does not pay).

    Eisenberg, L. and Noe, T. H. (2001). Systemic Risk in Financial Systems.
    Management Science 47(2):236-249.
    """
    lbar, pi = relative_liabilities(liabilities)
    n = lbar.shape[0]
    e = _vector(external_assets, "external_assets", n)
    p = _vector(payments, "payments", n)
    # (Pi^T p) as the clearing computes it: the rows of a contiguous Pi^T, summed pairwise
    return e + nm.matvec(np.ascontiguousarray(pi.T), p) - lbar


def _clearing_rounds(
    L: np.ndarray, e: np.ndarray, alpha: float, beta: float, tol: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Defaulting-set iteration of Rogers-Veraart (Eisenberg-Noe: alpha=beta=1).

    Start with every node solvent (``p = Lbar``).  In each round compute the set ``D`` of
    nodes whose assets ``e_i + (Pi^T p)_i`` fall short of ``Lbar_i``; given ``D`` the
    clearing condition is linear:

        p_S = Lbar_S,
        (I - beta Pi_DD^T) p_D = alpha e_D + beta Pi_SD^T Lbar_S.

    ``D`` only grows, so the procedure stops after at most ``n`` rounds with the greatest
    clearing vector.  The linear system is non-singular: for ``beta < 1`` the spectral
    radius of ``beta Pi_DD^T`` is < 1; for ``beta = 1`` a singular block would require a
    closed group of nodes (owing only to each other) to enter ``D`` together, which
    non-negative external assets rule out.

    Returns ``(p, lbar, pi_t, assets)``: ``assets = e + pi_t @ lbar`` when no node defaults
    (then ``D`` is empty after the first round and ``p = Lbar``), else ``None``.
    """
    n = L.shape[0]
    lbar = np.add.reduce(L, axis=1)  # L.sum(axis=1), without the method's wrapper
    safe = np.where(lbar > 0, lbar, 1.0)
    # pi_t[i, j] = Pi_ji, the share of j's payments that go to i (contiguous: its rows are
    # summed by numerics.matvec)
    pi_t = np.ascontiguousarray((L / safe[:, None]).T)
    scale = max(1.0, float(np.maximum.reduce(lbar)), float(np.maximum.reduce(e)))
    slack = tol * scale

    p = lbar.copy()
    assets = e + nm.matvec(pi_t, p)
    short = assets < lbar - slack
    if not short.any():  # nobody defaults: the rounds below would stop at the first test
        return p, lbar, pi_t, assets
    defaulting = np.zeros(n, dtype=bool)
    for _ in range(int(max_iter)):
        new_default = defaulting | short
        if np.array_equal(new_default, defaulting):
            break
        defaulting = new_default
        d = defaulting
        s = ~defaulting
        p = lbar.copy()
        if d.any() and beta == 0.0:  # no recovery on claims: I p_D = alpha e_D, no system
            p[d] = alpha * e[d]
        elif d.any():
            a = np.eye(int(d.sum())) - beta * pi_t[np.ix_(d, d)]
            b = alpha * e[d] + beta * nm.matvec(pi_t[np.ix_(d, s)], lbar[s])
            p[d] = nm.solve(a, b)
        short = e + nm.matvec(pi_t, p) < lbar - slack
    else:  # only reachable when max_iter <= n: the set iteration needs at most n + 1 rounds
        raise RuntimeError(f"clearing did not converge in {max_iter} rounds")
    # Guard against rounding pushing a payment out of [0, Lbar].
    return np.clip(p, 0.0, lbar), lbar, pi_t, None


# the default relative slack of the solvency test and bound on the rounds of the clearing
CLEARING_TOL, CLEARING_MAX_ITER = 1e-12, 10_000


def rogers_veraart_state(
    liabilities: np.ndarray,
    external_assets: np.ndarray,
    alpha: float,
    beta: float,
    tol: float = CLEARING_TOL,
    max_iter: int = CLEARING_MAX_ITER,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """:func:`rogers_veraart` and :func:`clearing_equity` at its vector, in one pass.

    Returns ``(p, Lbar, equity, solvent)``: the greatest clearing vector, total obligations,
    ``equity = e + Pi^T p - Lbar`` (Eisenberg & Noe 2001, section 2) and whether no node
    defaults (then ``p = Lbar``).  :func:`rogers_veraart` returns its ``p``; ``equity`` has
    the same floating-point operations on the same values as ``clearing_equity(L, e, p)``,
    so the same bits: ``Pi`` is built once instead of twice, and when no node defaults
    ``e + Pi^T Lbar`` is the assets vector of the first round, already computed.
    """
    L = _square_matrix(liabilities, "liabilities")
    e = _vector(external_assets, "external_assets", L.shape[0])
    a = _unit_interval(alpha, "alpha")
    b = _unit_interval(beta, "beta")
    _check_iter_args(tol, max_iter)
    p, lbar, pi_t, assets = _clearing_rounds(L, e, a, b, tol, max_iter)
    if assets is not None:
        return p, lbar, assets - lbar, True
    return p, lbar, e + nm.matvec(pi_t, p) - lbar, False


def eisenberg_noe(
    liabilities: np.ndarray,
    external_assets: np.ndarray,
    tol: float = CLEARING_TOL,
    max_iter: int = CLEARING_MAX_ITER,
) -> np.ndarray:
    """Greatest clearing payment vector of Eisenberg & Noe (2001).

    ``liabilities[i, j]`` is the nominal amount node ``i`` owes node ``j``; ``e`` are the
    external (non-network) assets.  With ``Lbar_i = sum_j L_ij`` and relative liabilities
    ``Pi_ij = L_ij / Lbar_i`` (zero rows for nodes that owe nothing), a clearing vector is a
    fixed point of

        p = min(Lbar, e + Pi^T p),

    i.e. every node pays its obligations in full or pays out all it has (limited liability,
    proportional repayment, absolute priority of debt).  The greatest such ``p*`` is
    computed exactly with the fictitious-default algorithm of Eisenberg & Noe (2001,
    section 3.1): iterate the set of defaulting nodes, solving the linear system
    ``(I - Pi_DD^T) p_D = e_D + Pi_SD^T Lbar_S`` for the defaulting block with
    :func:`sim.core.numerics.solve`; at most ``n`` rounds are needed.

    ``tol`` is the relative slack in the solvency test ``e_i + (Pi^T p)_i >= Lbar_i``
    (rounding never turns a node that exactly meets its obligations into a defaulter);
    ``max_iter`` bounds the number of rounds (``RuntimeError`` if it is reached; any
    ``max_iter > n`` suffices).

    Eisenberg, L. and Noe, T. H. (2001). Systemic Risk in Financial Systems.
    Management Science 47(2):236-249. doi:10.1287/mnsc.47.2.236.9835
    """
    return rogers_veraart(liabilities, external_assets, 1.0, 1.0, tol, max_iter)


def rogers_veraart(
    liabilities: np.ndarray,
    external_assets: np.ndarray,
    alpha: float,
    beta: float,
    tol: float = CLEARING_TOL,
    max_iter: int = CLEARING_MAX_ITER,
) -> np.ndarray:
    """Greatest clearing vector with default costs of Rogers & Veraart (2013).

    Same network conventions as :func:`eisenberg_noe`.  A defaulting node realises only a
    fraction ``alpha`` of its external assets and ``beta`` of its interbank claims:

        p_i = Lbar_i                              if e_i + sum_j Pi_ji p_j >= Lbar_i,
        p_i = alpha e_i + beta sum_j Pi_ji p_j    otherwise,

    with ``alpha, beta`` in [0, 1].  The greatest clearing vector is computed with the
    Greatest Clearing Vector Algorithm of Rogers & Veraart (2013, section 3): start from
    ``p = Lbar`` with no defaults, find the insolvent set ``D``, solve

        (I - beta Pi_DD^T) p_D = alpha e_D + beta Pi_SD^T Lbar_S,   p_S = Lbar_S,

    and repeat until ``D`` no longer grows (at most ``n`` rounds).  With
    ``alpha = beta = 1`` this is exactly the Eisenberg-Noe clearing vector.

    Rogers, L. C. G. and Veraart, L. A. M. (2013). Failure and Rescue in an Interbank
    Network. Management Science 59(4):882-898. doi:10.1287/mnsc.1120.1569
    """
    return rogers_veraart_state(liabilities, external_assets, alpha, beta, tol, max_iter)[0]


# ----------------------------------------------------------------------------------------
# DebtRank
# ----------------------------------------------------------------------------------------
def _relative_sizes(sizes: object, n: int) -> np.ndarray:
    v = _vector(sizes, "sizes", n)
    total = v.sum()
    if total <= 0:
        raise ValueError("sizes must have a positive sum")
    return v / total


def debtrank(
    exposures: np.ndarray,
    buffers: np.ndarray,
    sizes: np.ndarray,
    initial_stress: np.ndarray,
) -> np.ndarray:
    """Final stress vector ``h`` of (single-hit) DebtRank, Battiston et al. (2012).

    ``exposures[i, j]`` is node ``i``'s claim on node ``j`` (what ``j`` owes ``i``);
    ``buffers[i]`` is ``i``'s capital (equity).  The impact of ``j`` on ``i`` is

        W_ij = min(1, exposures[i, j] / buffers[i]),

    and a node with ``buffers[i] <= 0`` is already failed, so ``W_ij = 1`` wherever
    ``exposures[i, j] > 0``.  Each node is undistressed (U), distressed (D) or inactive
    (I); the nodes with ``h_i(0) > 0`` start in D, all others in U.  Then

        h_i(t) = min(1, h_i(t-1) + sum_{j : s_j(t-1) = D} W_ij h_j(t-1)),
        s_i(t) = D  if h_i(t) > 0 and s_i(t-1) != I,
                 I  if s_i(t-1) = D,
                 s_i(t-1) otherwise,

    so every node propagates its stress exactly once (in the round after it becomes
    distressed) and then becomes inactive.  Iterates until no node is distressed.

    ``sizes`` is only validated here (it enters :func:`debtrank_impact`); it is part of the
    signature so callers pass one consistent set of inputs.

    Battiston, S., Puliga, M., Kaushik, R., Tasca, P. and Caldarelli, G. (2012). DebtRank:
    Too Central to Fail? Financial Networks, the FED and Systemic Risk. Scientific Reports
    2:541. doi:10.1038/srep00541
    """
    X = _square_matrix(exposures, "exposures")
    n = X.shape[0]
    buf = _vector(buffers, "buffers", n, nonneg=False)
    _relative_sizes(sizes, n)
    h = _vector(initial_stress, "initial_stress", n)
    if np.any(h > 1):
        raise ValueError("initial_stress must lie in [0, 1]")

    return _debtrank_propagate(_debtrank_weights(X, buf), h)


def _debtrank_weights(X: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """The impact matrix ``W`` of :func:`debtrank` from validated exposures and buffers."""
    failed = buf <= 0
    safe = np.where(failed, 1.0, buf)
    W = np.minimum(1.0, X / safe[:, None])
    W[failed] = (X[failed] > 0).astype(float)
    return W


def _debtrank_propagate(W: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The rounds of :func:`debtrank` from its impact matrix ``W`` and a validated ``h(0)``
    (callers that shock one network many times build ``W`` once)."""
    n = W.shape[0]
    h = h.copy()
    distressed = h > 0
    inactive = np.zeros(n, dtype=bool)
    for _ in range(n + 1):  # each node is distressed in at most one round
        if not distressed.any():
            break
        h_new = np.minimum(1.0, h + nm.matvec(W[:, distressed], h[distressed]))
        inactive = inactive | distressed
        distressed = (h_new > 0) & ~inactive
        h = h_new
    return h


def debtrank_impact(h: np.ndarray, initial_stress: np.ndarray, sizes: np.ndarray) -> float:
    """DebtRank of a shock: stress induced beyond the initial stress (Battiston et al. 2012).

        R = sum_j h_j v_j - sum_j h_j(0) v_j,   v_j = sizes_j / sum_k sizes_k.

    Battiston, S., Puliga, M., Kaushik, R., Tasca, P. and Caldarelli, G. (2012). DebtRank:
    Too Central to Fail? Financial Networks, the FED and Systemic Risk. Scientific Reports
    2:541. doi:10.1038/srep00541
    """
    hv = np.asarray(h, dtype=float)
    if hv.ndim != 1:
        raise ValueError(f"h must be a 1-D vector, got shape {hv.shape}")
    n = hv.shape[0]
    hv = _vector(hv, "h", n)
    h0 = _vector(initial_stress, "initial_stress", n)
    v = _relative_sizes(sizes, n)
    return nm.dot(hv, v) - nm.dot(h0, v)


def debtrank_single_node(
    exposures: np.ndarray,
    buffers: np.ndarray,
    sizes: np.ndarray,
    nodes: np.ndarray | None = None,
) -> np.ndarray:
    """DebtRank of each node's own full distress (Battiston et al. 2012, their R_i):
    ``out[k]`` = :func:`debtrank_impact` of the shock ``h(0) = e_i`` for ``i = nodes[k]``
    (default: every node), on one network.

    The same numbers as calling :func:`debtrank` and :func:`debtrank_impact` once per node,
    but the network is validated and the impact matrix ``W`` built once.

    Battiston, S., Puliga, M., Kaushik, R., Tasca, P. and Caldarelli, G. (2012). DebtRank:
    Too Central to Fail? Financial Networks, the FED and Systemic Risk. Scientific Reports
    2:541. doi:10.1038/srep00541
    """
    X = _square_matrix(exposures, "exposures")
    n = X.shape[0]
    W = _debtrank_weights(X, _vector(buffers, "buffers", n, nonneg=False))
    v = _relative_sizes(sizes, n)
    idx = np.arange(n) if nodes is None else np.asarray(nodes, dtype=np.int64)
    if idx.ndim != 1 or ((idx < 0) | (idx >= n)).any():
        raise ValueError(f"nodes must be a 1-D array of indices in [0, {n})")
    out = np.empty(len(idx))
    for k, i in enumerate(idx.tolist()):
        h0 = np.zeros(n)
        h0[i] = 1.0
        out[k] = nm.dot(_debtrank_propagate(W, h0), v) - nm.dot(h0, v)
    return out


# ----------------------------------------------------------------------------------------
# Gai-Kapadia threshold cascade
# ----------------------------------------------------------------------------------------
def threshold_cascade(
    exposures: np.ndarray,
    interbank_assets: np.ndarray,
    illiquid_assets: np.ndarray,
    capital: np.ndarray,
    initially_failed: np.ndarray,
    recovery: float = 0.0,
    fire_sale_alpha: float | None = None,
    n_total_illiquid: float | None = None,
) -> np.ndarray:
    """Default cascade of Gai & Kapadia (2010); returns a boolean mask of failed banks.

    ``exposures[i, j] > 0`` is bank ``i``'s claim on its debtor ``j``.  Bank ``i`` fails
    when its losses exceed its capital ``K_i``:

        (1 - phi) sum_{j failed} exposures[i, j] + (1 - q) A^M_i > K_i,

    where ``phi`` is the recovery rate and ``A^M_i`` the illiquid assets.  Without
    ``fire_sale_alpha`` the price of illiquid assets stays at ``q = 1``; with it, the
    illiquid assets of failed banks are dumped on the market and

        q = exp(-fire_sale_alpha * sum_{j failed} A^M_j / A^M_total)

    (the asset-price extension of Gai & Kapadia 2010, using the exponential inverse demand
    of Cifuentes, Shin & Ferrucci 2005).  ``A^M_total`` is ``n_total_illiquid`` if given,
    otherwise ``sum(illiquid_assets)``.  Failures are applied in synchronous rounds until
    none is added.  ``interbank_assets`` is the balance-sheet total ``A^IB_i``; the claims
    in ``exposures`` must not exceed it (checked).  ``exposures`` may be a dense array or a
    ``scipy.sparse`` matrix (e.g. from ``gai_kapadia_network(..., sparse=True)``); each round
    costs one matrix-vector product, so a sparse 1000-bank network cascades in milliseconds.

    Gai, P. and Kapadia, S. (2010). Contagion in financial networks. Proceedings of the
    Royal Society A 466(2120):2401-2423. doi:10.1098/rspa.2009.0410
    """
    X = _exposure_matrix(exposures, "exposures")
    n = X.shape[0]
    a_ib = _vector(interbank_assets, "interbank_assets", n)
    a_m = _vector(illiquid_assets, "illiquid_assets", n)
    k = _vector(capital, "capital", n, nonneg=False)
    failed0 = np.asarray(initially_failed)
    if failed0.dtype != bool:
        raise ValueError("initially_failed must be a boolean mask")
    if failed0.shape != (n,):
        raise ValueError(f"initially_failed has shape {failed0.shape}, expected ({n},)")
    phi = _unit_interval(recovery, "recovery")
    claims = np.asarray(X.sum(axis=1)).ravel()
    if np.any(claims > a_ib * (1 + 1e-9) + 1e-12):
        raise ValueError("row sums of exposures exceed interbank_assets")
    if fire_sale_alpha is not None:
        fire_alpha = float(fire_sale_alpha)
        if not np.isfinite(fire_alpha) or fire_alpha < 0:
            raise ValueError(f"fire_sale_alpha must be finite and >= 0, got {fire_sale_alpha!r}")
        total_m = float(a_m.sum()) if n_total_illiquid is None else float(n_total_illiquid)
        if not np.isfinite(total_m) or total_m <= 0:
            raise ValueError("total illiquid assets (n_total_illiquid) must be positive")
        if total_m < a_m.sum() * (1 - 1e-12):
            raise ValueError("n_total_illiquid is smaller than the banks' illiquid assets")
    slack = _REL_TOL * np.maximum(1.0, np.abs(k))

    failed = failed0.copy()
    for _ in range(n + 1):  # at least one new failure per round, so at most n rounds
        hit = failed.astype(float)  # sparse X: scipy's CSR product sums each row in order
        loss = (1.0 - phi) * (X.dot(hit) if sp.issparse(X) else nm.matvec(X, hit))
        if fire_sale_alpha is not None:
            q = nm.exp(-fire_alpha * a_m[failed].sum() / total_m)
            loss = loss + (1.0 - q) * a_m
        new = ~failed & (loss > k + slack)
        if not new.any():
            break
        failed |= new
    return failed


def gai_kapadia_network(
    n: int,
    mean_degree: float,
    rng: np.random.Generator,
    interbank_share: float = 0.2,
    capital_ratio: float = 0.04,
    total_assets: float = 1.0,
    sparse: bool = False,
) -> tuple[np.ndarray | sp.csr_array, np.ndarray, np.ndarray, np.ndarray]:
    """Random interbank network of Gai & Kapadia (2010).

    Directed Erdos-Renyi graph: every ordered pair ``i != j`` is linked independently with
    probability ``z / (n - 1)`` (``z`` = ``mean_degree``), a link ``i -> j`` meaning ``i``
    lends to ``j``.  Every bank has balance sheet ``total_assets``; a bank with ``k_i > 0``
    debtors holds interbank assets ``A^IB_i = interbank_share * total_assets`` split evenly,

        exposures[i, j] = A^IB_i / k_i   for each debtor j,

    so its interbank liabilities ``sum_i exposures[i, j]`` follow from the links.  A bank
    with no debtors has no interbank assets.  Illiquid assets are the rest,
    ``A^M_i = total_assets - A^IB_i``, and capital is ``K_i = capital_ratio * total_assets``.
    Uses only ``rng`` (no global random state).

    With ``sparse=True`` the same graph law is drawn without an ``n x n`` array of uniforms:
    the number of links is ``Binomial(n (n - 1), z / (n - 1))`` and the links are that many
    distinct ordered pairs drawn uniformly (so every pair is linked independently with
    probability ``z / (n - 1)``, as above); ``exposures`` is then a ``scipy.sparse.csr_array``.
    The two modes consume ``rng`` differently, so the same seed gives different graphs.

    Returns ``(exposures, interbank_assets, illiquid_assets, capital)``.

    Gai, P. and Kapadia, S. (2010). Contagion in financial networks. Proceedings of the
    Royal Society A 466(2120):2401-2423. doi:10.1098/rspa.2009.0410
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    z = float(mean_degree)
    if not np.isfinite(z) or z < 0 or z > n - 1:
        raise ValueError(f"mean_degree must lie in [0, n - 1], got {mean_degree!r}")
    share = _unit_interval(interbank_share, "interbank_share")
    ratio = _unit_interval(capital_ratio, "capital_ratio")
    total = float(total_assets)
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"total_assets must be positive, got {total_assets!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator")

    if sparse:
        pairs = n * (n - 1)
        m = int(rng.binomial(pairs, z / (n - 1)))
        code = rng.choice(pairs, size=m, replace=False)
        src, off = np.divmod(code, n - 1)
        dst = off + (off >= src)  # skip the diagonal
        k = np.bincount(src, minlength=n)
    else:
        adj = rng.random((n, n)) < z / (n - 1)
        np.fill_diagonal(adj, False)
        k = adj.sum(axis=1)
    interbank = np.where(k > 0, share * total, 0.0)
    per_link = interbank / np.maximum(k, 1)
    if sparse:
        exposures = sp.csr_array((per_link[src], (src, dst)), shape=(n, n))
    else:
        exposures = adj * per_link[:, None]
    illiquid = total - interbank
    capital = np.full(n, ratio * total)
    return exposures, interbank, illiquid, capital


def gai_kapadia_trial(
    n: int,
    mean_degree: float,
    rng: np.random.Generator,
    interbank_share: float = 0.2,
    capital_ratio: float = 0.04,
    total_assets: float = 1.0,
    recovery: float = 0.0,
    fire_sale_alpha: float | None = None,
    sparse: bool = False,
) -> float:
    """One Gai & Kapadia (2010) experiment: fraction of banks failed after one random failure.

    Builds :func:`gai_kapadia_network`, fails one bank drawn uniformly with ``rng`` and
    runs :func:`threshold_cascade`.  The returned fraction includes the initial failure;
    Gai & Kapadia call a trial "contagion" when at least 5 % of the banks fail.
    ``sparse`` is passed to :func:`gai_kapadia_network` (use it for large ``n``).

    Gai, P. and Kapadia, S. (2010). Contagion in financial networks. Proceedings of the
    Royal Society A 466(2120):2401-2423. doi:10.1098/rspa.2009.0410
    """
    X, a_ib, a_m, k = gai_kapadia_network(
        n, mean_degree, rng, interbank_share, capital_ratio, total_assets, sparse=sparse
    )
    failed0 = np.zeros(X.shape[0], dtype=bool)
    failed0[rng.integers(X.shape[0])] = True
    failed = threshold_cascade(
        X, a_ib, a_m, k, failed0, recovery=recovery, fire_sale_alpha=fire_sale_alpha
    )
    return float(failed.mean())


# ----------------------------------------------------------------------------------------
# price impact
# ----------------------------------------------------------------------------------------
def exponential_impact(sold_fraction: float | np.ndarray, alpha: float) -> float | np.ndarray:
    """Exponential inverse demand of Cifuentes, Shin & Ferrucci (2005).

        q(x) = exp(-alpha * x),

    the price of the illiquid asset (normalised to 1 before sales) when a fraction ``x``
    of the asset has been sold.  ``x`` and ``alpha`` broadcast; returns a float for scalar
    input, an array otherwise.

    Cifuentes, R., Shin, H. S. and Ferrucci, G. (2005). Liquidity Risk and Contagion.
    Journal of the European Economic Association 3(2-3):556-566.
    doi:10.1162/jeea.2005.3.2-3.556
    """
    x = np.asarray(sold_fraction, dtype=float)
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("sold_fraction must be finite and non-negative")
    a = np.asarray(alpha, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alpha must be finite and non-negative, got {alpha!r}")
    q = nm.exp(-a * x)
    return float(q) if np.ndim(q) == 0 else q


def alpha_for_impact(price_fall: float, sold_fraction: float) -> float:
    """Impact parameter giving a ``price_fall`` when ``sold_fraction`` is sold (CSF 2005).

    Inverts ``1 - price_fall = exp(-alpha * x)``:

        alpha = -ln(1 - price_fall) / x,

    e.g. a 10 % fall when 10 % of the asset is sold gives alpha = 1.0536.

    Cifuentes, R., Shin, H. S. and Ferrucci, G. (2005). Liquidity Risk and Contagion.
    Journal of the European Economic Association 3(2-3):556-566.
    doi:10.1162/jeea.2005.3.2-3.556
    """
    f = float(price_fall)
    x = float(sold_fraction)
    if not np.isfinite(f) or f < 0 or f >= 1:
        raise ValueError(f"price_fall must lie in [0, 1), got {price_fall!r}")
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"sold_fraction must be positive, got {sold_fraction!r}")
    return float(-nm.log1p(-f) / x)
