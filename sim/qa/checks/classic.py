"""Check 1: the published three-bank examples of Eisenberg & Noe (2001), Rogers & Veraart (2013)
and DebtRank (Battiston et al. 2012), the fixed numbers of the sourced figures."""

from __future__ import annotations

import numpy as np

from sim.core import contagion as cg
from sim.qa.checks.common import BANDS, CAL, Check

EN_L = np.array([[0.0, 20.0, 10.0], [5.0, 0.0, 24.0], [10.0, 0.0, 0.0]])
EN_E = np.array([10.0, 10.0, 10.0])
RV_L = np.array([[0.0, 30.0, 0.0], [5.0, 0.0, 20.0], [10.0, 0.0, 0.0]])
RV_E = np.array([10.0, 5.0, 5.0])
DR_X = np.array([[0.0, 1.0, 0.0], [10.0, 0.0, 3.0], [3.0, 2.0, 0.0]])  # rows = claimant
DR_BUF = np.array([2.0, 5.0, 2.0])
DR_SIZE = np.array([10.0, 100.0, 30.0])


def _vec_row(cid: str, name: str, key: str, got: np.ndarray, source: str) -> Check:
    want = np.asarray(BANDS[key]["value"], dtype=float)
    tol = BANDS[key]["tol"]
    ok = bool(np.all(np.abs(got - want) <= tol))
    fmt = ", ".join(f"{v:.4f}" for v in got)
    return Check(cid, name, f"({', '.join(f'{v:g}' for v in want)}) within {tol:g}", source,
                 f"({fmt})", ok, {"measured": got.tolist(), "expected": want.tolist()})


def check_classic() -> list[Check]:
    """Check 1: the three-bank examples of the sourced figures ("Classic results the model must
    nest"), the same numbers as tests/core/test_contagion.py."""
    en_src = f"Eisenberg & Noe (2001), Mgmt Sci 47(2); {CAL}"
    rv_src = f"Rogers & Veraart (2013), Mgmt Sci 59(4); {CAL}"
    p = cg.eisenberg_noe(EN_L, EN_E)
    rows = [
        _vec_row("1a", "Eisenberg-Noe clearing vector p*", "en_p", p, en_src),
        _vec_row("1b", "Eisenberg-Noe equity", "en_equity",
                 cg.clearing_equity(EN_L, EN_E, p), en_src),
        _vec_row("1c", "Rogers-Veraart, alpha = beta = 1", "rv_nocost",
                 cg.rogers_veraart(RV_L, RV_E, 1.0, 1.0), rv_src),
        _vec_row("1d", "Rogers-Veraart, alpha = 0.4, beta = 1", "rv_cost",
                 cg.rogers_veraart(RV_L, RV_E, 0.4, 1.0), rv_src),
    ]
    want, tol = BANDS["debtrank"]["value"], BANDS["debtrank"]["tol"]
    got = {}
    for i, name in enumerate("abc"):
        h0 = np.zeros(3)
        h0[i] = 1.0
        got[name] = cg.debtrank_impact(cg.debtrank(DR_X, DR_BUF, DR_SIZE, h0), h0, DR_SIZE)
    ok = all(abs(got[k] - want[k]) <= tol for k in want)
    rows.append(Check(
        "1e", "DebtRank (single hit), shock a / b / c",
        " / ".join(f"{want[k]:g}" for k in "abc") + f" within {tol:g}",
        f"Battiston et al. (2012), Sci Rep 2:541; {CAL}",
        " / ".join(f"{got[k]:.7f}" for k in "abc"), ok, {"measured": got}))
    return rows
