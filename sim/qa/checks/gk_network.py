"""Checks 2g-2i: Gai & Kapadia (2010) on the model's own funding network, its builder, funding
book and clearing at t0 (docs/validation.md, "Gai-Kapadia on the model's funding network")."""

from __future__ import annotations

import math

import numpy as np

from sim.core import contagion as cg
from sim.core.network import funding_book, funding_weights
from sim.qa.checks.common import BANDS, ROOT_SEED, Check, baseline, pct
from sim.qa.checks.gai_kapadia import GKConfig, gk_window
from sim.world.model import LiquidationModel

GK_MODEL_SEEDS = 5  # baseline seeds whose t0 lenders are pooled: N = 5 x 20 = 100 lenders
GK_MODEL_Z = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
GK_MODEL_DRAWS = 100  # networks (and failed lenders) per z; SE of P(contagion) <= 0.05
GK_REF_DRAWS = 400  # draws per z of the standalone cascade at the same N (check 2h)
GK_SHEET = {"interbank_assets": 0.20, "capital": 0.04}  # Gai & Kapadia (2010), section 3
GK_MODEL_SRC = ("Gai & Kapadia (2010), Proc R Soc A 466:2401, Fig. 3; docs/validation.md, "
                "\"Gai-Kapadia on the model's funding network\"")


def funding_cascade(external: np.ndarray, share: np.ndarray, capital: np.ndarray,
                    w: np.ndarray, shocked: int, alpha: float, beta: float) -> np.ndarray:
    """Which lenders fail when lender ``shocked`` loses all its external assets (GK's
    idiosyncratic shock), on the model's own funding book and clearing.

    The book is :func:`sim.core.network.funding_book` (what ``LiquidationModel._originate``
    builds at t0): lender i owes its funders ``L[i, j] = s_i e_i W[i, j] / sum_k W[i, k]``, outside
    creditors ``max(a_i (1 - c_i) - s_i e_i, 0)`` (node n, which owes and holds nothing), with
    ``a_i = e_i + sum_k L[k, i]``. Then ``e_shocked = 0`` and the clearing of
    ``sim.world.phases.funding.clear_funding``, Rogers & Veraart (2013) with the given
    ``alpha, beta`` (alpha = beta = 0 is Gai & Kapadia's zero recovery, alpha = beta = 1
    Eisenberg & Noe), gives the greatest clearing vector p; lender i fails, as in the model, when
    it pays less than it owes: ``p_i < Lbar_i (1 - 1e-9)``. Returns the (n,) failed mask (the
    shocked lender included)."""
    n = len(external)
    interbank, outside = funding_book(external, share, capital, w)
    liab = np.zeros((n + 1, n + 1))
    liab[:n, :n] = interbank
    liab[:n, n] = outside
    e = np.zeros(n + 1)
    e[:n] = external
    e[shocked] = 0.0
    p, lbar, _eq, _solvent = cg.rogers_veraart_state(liab, e, alpha, beta)
    return p[:n] < lbar[:n] * (1.0 - 1e-9)


def vulnerable_share(external: np.ndarray, share: np.ndarray, capital: np.ndarray,
                     w: np.ndarray) -> float:
    """Share of lenders that one failed debtor wipes out at zero recovery (Gai & Kapadia's
    vulnerable banks): ``max_i L[i, j] > c_j a_j``, the largest single interbank claim of
    lender j above its capital."""
    interbank, _out = funding_book(external, share, capital, w)
    assets = external + interbank.sum(axis=0)
    return float((interbank.max(axis=0) > capital * assets).mean())


def model_lenders(seeds: int = GK_MODEL_SEEDS) -> dict:
    """The t0 lenders of ``seeds`` baseline runs (seeds ROOT_SEED, ROOT_SEED + 1, ...), pooled:
    external assets (GPU loans + other loans + cash, as ``LiquidationModel._originate`` sums
    them), interbank share and capital ratio of each lender's type, and the scenario."""
    ext, share, cap = [], [], []
    for s in range(seeds):
        m = LiquidationModel(baseline(months=1).model_copy(update={"seed": ROOT_SEED + s}))
        lb = m.lenders
        e = m.loans.by_lender(m.loans.exposure, lb.n) + lb.cash
        ext.append(e + lb.other_loans if lb.has_other else e)
        share.append(lb.interbank_share)
        cap.append(lb.capital_ratio0)
    return {"external": np.concatenate(ext), "share": np.concatenate(share),
            "capital": np.concatenate(cap), "cfg": m.cfg, "seeds": seeds}


def gk_model_window(lenders: dict, z_grid=GK_MODEL_Z, draws: int = GK_MODEL_DRAWS,
                    seed: int = ROOT_SEED) -> dict:
    """The Gai-Kapadia experiment on the model's funding network (the reduced mode of
    docs/validation.md, "Gai-Kapadia on the model's funding network").

    For each mean funding degree z: ``draws`` times, draw the funding weights with the model's
    builder (:func:`sim.core.network.funding_weights`, the scenario's ``network`` with
    ``funding_degree = z``), draw the failed lender uniformly, and run :func:`funding_cascade`
    on the same network and shock in five modes:

    * ``model``: the model's balance sheets and its clearing (``contagion.alpha``, ``.beta``);
    * ``model_zero_recovery``: the model's balance sheets, alpha = beta = 0;
    * ``gk``: GK's balance sheets (equal external assets, interbank claims 20 % of assets,
      i.e. ``interbank_share`` = 0.2 / 0.8 = 0.25 of external assets, capital 4 %), zero
      recovery;
    * ``gk_model_clearing``: GK's balance sheets with the model's clearing;
    * ``model_gk_capital``: the model's external assets and interbank shares with GK's 4 %
      capital, zero recovery (which of GK's two numbers makes the difference).

    A draw is contagion when at least 5 % of the lenders fail (GK's definition). Returns per
    mode P(contagion), its SE, the mean share failed given contagion, the number of contagion
    draws, the largest share failed and the mean share of vulnerable lenders."""
    ext, n, cfg = lenders["external"], len(lenders["external"]), lenders["cfg"]
    s_gk = GK_SHEET["interbank_assets"] / (1.0 - GK_SHEET["interbank_assets"])
    gk_sheet = (np.full(n, float(ext.mean())), np.full(n, s_gk), np.full(n, GK_SHEET["capital"]))
    sheets = {"model": (ext, lenders["share"], lenders["capital"]), "gk": gk_sheet,
              "model_gk_capital": (ext, lenders["share"], np.full(n, GK_SHEET["capital"]))}
    a, b = cfg.contagion.alpha, cfg.contagion.beta
    modes = {"model": ("model", a, b), "model_zero_recovery": ("model", 0.0, 0.0),
             "gk": ("gk", 0.0, 0.0), "gk_model_clearing": ("gk", a, b),
             "model_gk_capital": ("model_gk_capital", 0.0, 0.0)}
    out = {k: {"prob": [], "prob_se": [], "extent": [], "hits": [], "max_failed": []}
           for k in modes}
    vul = {k: [] for k in sheets}
    seqs = np.random.SeedSequence([seed, 2, 7]).spawn(len(z_grid))
    for z, ss in zip(z_grid, seqs, strict=True):
        rng = np.random.default_rng(ss)
        net = cfg.network.model_copy(update={"funding_degree": float(z)})
        f = {k: np.empty(draws) for k in modes}
        v = {k: np.empty(draws) for k in sheets}
        for d in range(draws):
            w = funding_weights(n, net, rng)
            hit = int(rng.integers(n))
            for k, sh in sheets.items():
                v[k][d] = vulnerable_share(*sh, w)
            for k, (sh, al, be) in modes.items():
                f[k][d] = float(funding_cascade(*sheets[sh], w, hit, al, be).mean())
        for k in modes:
            x = f[k]
            on = x >= 0.05
            p = float(on.mean())
            o = out[k]
            o["prob"].append(p)
            o["prob_se"].append(math.sqrt(max(p * (1 - p), 0.25 / draws) / draws))
            o["extent"].append(float(x[on].mean()) if on.any() else float("nan"))
            o["hits"].append(int(on.sum()))
            o["max_failed"].append(float(x.max()))
        for k in sheets:
            vul[k].append(float(v[k].mean()))
    return {"z": [float(z) for z in z_grid], "n": n, "draws": draws, "modes": out,
            "vulnerable": vul, "alpha": a, "beta": b,
            "interbank_share_gk": s_gk, "capital_gk": GK_SHEET["capital"]}


def model_sheet_facts(lenders: dict) -> dict:
    """The model's lenders against GK's balance sheet at the baseline's own t0 network:
    interbank claims and capital as shares of total assets (aggregate), and by type."""
    cfg, ext = lenders["cfg"], lenders["external"]
    n = len(ext)
    rng = np.random.default_rng(np.random.SeedSequence([ROOT_SEED, 2, 8]))
    w = funding_weights(n, cfg.network, rng)
    interbank, _out = funding_book(ext, lenders["share"], lenders["capital"], w)
    claims = interbank.sum(axis=0)
    assets = ext + claims
    return {"claims_share": float(claims.sum() / assets.sum()),
            "capital_share": float((lenders["capital"] * assets).sum() / assets.sum()),
            "size_ratio": float(ext.max() / ext.min()),
            "funding_degree": float(cfg.network.funding_degree)}


def check_gk_model(seeds: int | None = None, z_grid: tuple | None = None,
                   draws: int | None = None, ref_draws: int | None = None
                   ) -> tuple[list[Check], dict]:
    """Checks 2g-2i: Gai & Kapadia on the model's own funding network (builder, balance
    sheets, clearing), next to the standalone cascade of checks 2a-2d at the same N.
    Arguments left None take ``GK_MODEL_SEEDS``, ``GK_MODEL_Z``, ``GK_MODEL_DRAWS`` and
    ``GK_REF_DRAWS``."""
    lenders = model_lenders(GK_MODEL_SEEDS if seeds is None else seeds)
    res = gk_model_window(lenders, GK_MODEL_Z if z_grid is None else z_grid,
                          GK_MODEL_DRAWS if draws is None else draws)
    n, z = res["n"], np.array(res["z"])
    ref_draws = GK_REF_DRAWS if ref_draws is None else ref_draws
    ref = gk_window(GKConfig(n=n, z=tuple(res["z"]), draws=ref_draws), False,
                    seed=ROOT_SEED + 1)
    facts = model_sheet_facts(lenders)
    gk = res["modes"]["gk"]
    p, se, ext = np.array(gk["prob"]), np.array(gk["prob_se"]), np.array(gk["extent"])
    setup = (f"N = {n} lenders (the t0 lenders of {lenders['seeds']} baseline seeds), "
             f"{res['draws']} networks per z")
    b_top, b_ext = BANDS["gk_model_peak"], BANDS["gk_extent_high_z"]
    inside = (z >= 1) & (z <= 8)
    peak = float(p[inside].max())
    z_peak = float(z[inside][np.argmax(p[inside])])
    p_top = float(p[-1])
    sel = (z >= 4) & (np.array(gk["hits"]) >= 10)
    emin = float(ext[sel].min()) if sel.any() else float("nan")
    ok = (peak >= b_top["min"] and p_top <= b_top["top_max"]
          and np.isfinite(emin) and emin >= b_ext["min"])
    rows = [Check(
        "2g", "GK on the model's funding network (reduced mode: the model's builder and "
        f"clearing, GK's balance sheets: interbank claims {GK_SHEET['interbank_assets']:.0%} "
        f"of assets, capital {GK_SHEET['capital']:.0%}, zero recovery; {setup})",
        f"a window: P(contagion) >= {b_top['min']:g} at some z in [1, 8], <= "
        f"{b_top['top_max']:g} at z = {z[-1]:g}, extent given contagion >= {b_ext['min']:.0%} "
        "at z >= 4 (z with >= 10 contagion draws)", GK_MODEL_SRC,
        f"P = {' / '.join(f'{x:.2f}' for x in p)} at z = {' / '.join(f'{x:g}' for x in z)}; "
        f"peak {peak:.2f} at z = {z_peak:g}; min extent {pct(emin)}", bool(ok))]
    rp, rse = np.array(ref["prob"]), np.array(ref["prob_se"])
    gap = np.abs(p - rp) / np.hypot(se, rse)
    rows.append(Check(
        "2h", "GK: the model's builder and clearing at GK's sheets (2g) next to the standalone "
        f"GK cascade (sim.core.contagion, checks 2a-2d) at the same N = {n}",
        "information: the builders differ (the model splits a lender's borrowing evenly over "
        "its funders, GK split a bank's lending evenly over its debtors), so no agreement is "
        "claimed", GK_MODEL_SRC,
        f"standalone P = {' / '.join(f'{x:.2f}' for x in rp)} ({ref_draws} draws); "
        f"largest gap {float(gap.max()):.1f} combined SE at z = {float(z[np.argmax(gap)]):g}",
        True, info=True))
    mo, mz = res["modes"]["model"], res["modes"]["model_zero_recovery"]
    gm, mc = res["modes"]["gk_model_clearing"], res["modes"]["model_gk_capital"]
    vm, vg = np.array(res["vulnerable"]["model"]), np.array(res["vulnerable"]["gk"])
    rows.append(Check(
        "2i", "GK at the model's calibration: the baseline's lenders (types' interbank_share "
        f"and capital_ratio, clearing alpha = {res['alpha']:g}, beta = {res['beta']:g}) on "
        f"the same networks ({setup})", "information (no sourced band: the model's balance "
        "sheets are not GK's)", GK_MODEL_SRC,
        f"max P(contagion) over z = {max(mo['prob']):.2f} (largest share failed "
        f"{pct(max(mo['max_failed']))}); with zero recovery {max(mz['prob']):.2f} "
        f"(largest {pct(max(mz['max_failed']))}): no window. Interbank claims are "
        f"{pct(facts['claims_share'])} of assets (GK {GK_SHEET['interbank_assets']:.0%}), "
        f"capital {pct(facts['capital_share'])} (GK {GK_SHEET['capital']:.0%}); vulnerable "
        f"lenders (largest claim > capital) at most {pct(float(vm.max()))} (GK sheets "
        f"{pct(float(vg.max()))}); z x vulnerable share at most {float((z * vm).max()):.2f} "
        f"(GK sheets {float((z * vg).max()):.2f}; a cascade needs about > 1); GK sheets "
        "with the model's clearing: max P "
        f"{max(gm['prob']):.2f}; the model's sheets with GK's 4 % capital (zero recovery): "
        f"P = {' / '.join(f'{x:.2f}' for x in mc['prob'])}", True, info=True))
    return rows, {"model_network": res, "standalone": ref, "facts": facts}
