"""Check 7: the Greenwood, Landier & Thesmar (2015) first-round fire-sale closed form, reproduced
by the reduced mode of ``sim.core.firesale``, and the aggregate vulnerability of Duarte &
Eisenbach (2021) of the baseline's lender network at t0 (information rows: no sourced band)."""

from __future__ import annotations

import numpy as np

from agents.buyer import replacement_cost
from sim.core import firesale as fs
from sim.core.config import load_scenario
from sim.qa.checks.common import BANDS, ROOT_SEED, Check, pct
from sim.world.model import LiquidationModel

FS_CLASSES = ("GPU loans", "other loans", "cash", "interbank claims")
GLT_ELL_OTHER = 1e-13  # per dollar: GLT's 10 bp per 10 bn $ (their calibration), other loans
FS_SHOCK = 0.01  # a 1 % fall; AV is linear in the shock
GLT_SRC = ("Greenwood, Landier & Thesmar (2015), JFE 115(3), eqs. 5-8; docs/validation.md, "
           "\"Classic fire-sale closed form\"")
DE_SRC = ("Duarte & Eisenbach (2021), JF 76(6) (AV, systemicness); no sourced band for GPU "
          "lenders: information; docs/validation.md, \"Classic fire-sale closed form\"")


def gpu_price_impact(m) -> dict:
    """Price impact per dollar of GPU collateral sold, from the outside demand at t0.

    Assumption (docs/validation.md, "Classic fire-sale closed form"): a forced seller's
    marginal buyer is the outside demand (docs/model.md, "Outside demand"), whose inverse
    demand p_g(q) = s_g + (a_g - s_g) exp(-q / D_g) falls by (a_g - s_g) / D_g per unit at
    q = 0. Selling x dollars of generation g (x / V_g units, V_g the value in best use, the
    t0 price) moves its price by ell_g x with ell_g = (a_g - s_g) / (D_g V_g^2) (a return per
    dollar). A dollar of GPU collateral sold is spread over the generations by their value
    shares w_g = N_g V_g / sum N V, so the return of the GPU book is sum_g w_g ell_g (w_g x):
    ell_GPU = sum_g w_g^2 ell_g. A dollar of GPU loans sold is taken to be a dollar of GPU
    collateral sold, and GPU loans are marked one for one with the collateral."""
    od, env = m.cfg.buyers.outside_demand, m.env
    ref, val = replacement_cost(env), np.asarray(m.fundamental, dtype=float)
    units = np.asarray(m.units0, dtype=float)
    scrap = od.scrap * ref
    top = np.maximum(od.top * np.minimum(ref, val), scrap)
    depth = od.depth * np.maximum(units, 1.0)
    live = (units > 0) & (val > 0)
    ell = np.where(live, (top - scrap) / (depth * np.where(live, val * val, 1.0)), 0.0)
    w = np.where(live, units * val, 0.0)
    w = w / w.sum()
    return {"ell_gpu": float((w * w * ell).sum()),
            "by_generation": {n: {"ell": float(ell[g]), "value_share": float(w[g])}
                              for g, n in enumerate(env.names)}}


def lender_fire_sale_inputs(m=None) -> dict:
    """The baseline's lenders at t0 (after ``LiquidationModel.__init__``) as GLT/DE inputs:
    holdings by class (GPU loans, other loans, cash, interbank claims), leverage = debt over
    equity with equity the t0 clearing equity, price impacts per dollar (GPU loans:
    :func:`gpu_price_impact`; other loans: ``GLT_ELL_OTHER``; cash and interbank claims: 0,
    they are not sold into a market)."""
    if m is None:
        m = LiquidationModel(load_scenario("baseline"))
    lb = m.lenders
    gpu = m.loans.by_lender(m.loans.exposure, lb.n)
    other = lb.other_loans if lb.has_other else np.zeros(lb.n)
    hold = np.column_stack([gpu, other, lb.cash, np.add.reduce(m.interbank, axis=0)])
    a = hold.sum(axis=1)
    e = np.asarray(lb.equity, dtype=float)
    imp = gpu_price_impact(m)
    return {"M": hold / a[:, None], "a": a, "b": (a - e) / e,
            "ell": np.array([imp["ell_gpu"], GLT_ELL_OTHER, 0.0, 0.0]),
            "kind": [str(k) for k in lb.kind], "types": list(lb.type_names),
            "assets_gap": float(np.abs(a - lb.assets).max()), "impact": imp,
            "holdings": hold.sum(axis=0)}


def _av_summary(inp: dict, F: np.ndarray) -> dict:
    cf = fs.glt_closed_form(inp["M"], inp["a"], inp["b"], inp["ell"], F)
    sim = fs.glt_simulate(inp["M"], inp["a"], inp["b"], inp["ell"], F)
    kind = np.array(inp["kind"], dtype=object)
    by_type = {t: {"systemicness": float(cf["S"][kind == t].sum()),
                   "mean_IV": float(cf["IV"][kind == t].mean()),
                   "lenders": int((kind == t).sum())} for t in inp["types"]}
    return {"AV": cf["AV"], "AV_simulated": sim["AV"], "direct": float(cf["direct"].sum())
            / cf["E"], "price_move": cf["price_move"].tolist(), "by_type": by_type,
            "gap": abs(cf["AV"] - sim["AV"]), "E": cf["E"]}


def check_fire_sale_closed_form(draws: int = 8) -> tuple[list[Check], dict]:
    """Check 7: the reduced mode reproduces GLT's closed form (lender network and random
    balance sheets); DE's aggregate vulnerability of the baseline's lenders (information)."""
    inp = lender_fire_sale_inputs()
    gpu = _av_summary(inp, np.array([-FS_SHOCK, 0.0, 0.0, 0.0]))
    loans = _av_summary(inp, np.array([-FS_SHOCK, -FS_SHOCK, 0.0, 0.0]))
    rng = np.random.default_rng(np.random.SeedSequence([ROOT_SEED, 7]))
    gaps = [gpu["gap"] / max(1.0, abs(gpu["AV"])), loans["gap"] / max(1.0, abs(loans["AV"]))]
    for _ in range(draws):
        n, k = int(rng.integers(2, 40)), int(rng.integers(1, 10))
        M = rng.dirichlet(np.ones(k), n)
        a, b = rng.uniform(1.0, 100.0, n), rng.uniform(1.0, 20.0, n)
        ell, F = rng.uniform(0.0, 1e-3, k), rng.uniform(-0.05, 0.01, k)
        cf, sim = fs.glt_closed_form(M, a, b, ell, F), fs.glt_simulate(M, a, b, ell, F)
        gaps.append(abs(cf["AV"] - sim["AV"]) / max(1.0, abs(cf["AV"])))
    tol = BANDS["glt_exact"]["tol"]
    gap = float(max(gaps))

    def types(r: dict) -> str:
        return "; ".join(f"{t} ({v['lenders']}): S = {pct(v['systemicness'])}, mean IV = "
                         f"{pct(v['mean_IV'])}" for t, v in r["by_type"].items())

    rows = [
        Check("7a", "GLT first-round fire-sale loss: reduced-mode simulation vs closed form "
              f"(lender network at t0, two shocks, and {draws} random balance sheets)",
              f"|AV_sim - AV_closed| <= {tol:g} (AV is a share of equity)", GLT_SRC,
              f"max gap {gap:.1e}", bool(gap <= tol)),
        Check("7b", "DE aggregate vulnerability AV of the baseline's lenders at t0, GPU loans "
              f"-{FS_SHOCK:.0%}", "information (no sourced band)", DE_SRC,
              f"AV = {pct(gpu['AV'])} of lender equity (direct loss {pct(gpu['direct'])}; "
              f"GPU price move {pct(gpu['price_move'][0])}); {types(gpu)}", True, info=True),
        Check("7c", f"DE aggregate vulnerability AV, all loans -{FS_SHOCK:.0%} (GPU and other)",
              "information (no sourced band)", DE_SRC,
              f"AV = {pct(loans['AV'])} of lender equity (direct loss "
              f"{pct(loans['direct'])}); {types(loans)}", True, info=True),
    ]
    data = {"gpu_shock": gpu, "loan_shock": loans, "max_gap": gap,
            "ell": inp["ell"].tolist(), "classes": list(FS_CLASSES),
            "holdings": inp["holdings"].tolist(), "assets_gap": inp["assets_gap"],
            "impact": inp["impact"], "leverage_mean": float(inp["b"].mean())}
    return rows, data
