"""Check 5: the 2022 crypto-miner episode (``experiments/scenarios/asic_2022.toml``): each rig
class's price fall (5a), the repossessed collateral's market value at hand-over over the exposure
at default (5b), the forced-sale discount (5c), no lender failed by its rig book alone (5d, an
isolating counterfactual), with realised proceeds and the four 2022 settlements as information
rows."""

from __future__ import annotations

import numpy as np

from agents.lender import LenderStatus
from sim.core import numerics as nm
from sim.core.config import load_scenario
from sim.qa.checks.common import BANDS, CAL, Check, band_text, pct, within
from sim.world.metrics import summary
from sim.world.model import LiquidationModel

CAL22 = "docs/calibration.md, \"The 2022 rig episode\""
# the scenario's rig generations and their Hashrate Index efficiency class (the index's tiers:
# efficient below 38 J/TH, mid-tier 38-68, old above 68); S19: 3.25 kW / 100 TH/s = 32.5 J/TH
RIG_CLASS = {"S19": "efficient"}
# the four 2022 in-kind settlements of rig loans (docs/calibration.md, "The 2022 rig episode"):
# (id, case, what happened, collateral value at hand-over / balance (lo, hi) or None, source)
ASIC_CASES = (
    ("5b.1", "Core Scientific -> NYDIG", "27,403 rigs extinguished 38.6 M$; Core could buy the "
     "same rigs for about 25 M$ (about 32 % of the original 77.5 M$)", (25.0 / 38.6,) * 2,
     "Core Scientific court filing (A); CoinDesk (B, Feb 2023)"),
    ("5b.2", "Stronghold -> NYDIG", "about 26,200 rigs returned on a non-recourse loan to "
     "extinguish 67.4 M$; the rigs' market value was not reported", None, "CoinDesk (B, Nov 2022)"),
    ("5b.3", "Greenidge -> NYDIG", "miners and infrastructure sold for a 57-68 M$ reduction of "
     "about 74 M$ of debt, Greenidge hosting them (rigs and infrastructure, not rigs alone)",
     (57.0 / 74.0, 68.0 / 74.0), "Greenidge 8-K (A, Dec 2022)"),
    ("5b.4", "Bitfarms -> BlockFi", "21 M$ settled for 7.75 M$ (37 %) when the collateral was "
     "worth about 5 M$", (5.0 / 21.0,) * 2, "CoinDesk (B, Feb 2023)"),
)
# gpu_share (the rig book's share of every lender type's loan book) for the sensitivity of 5d;
# 0.09 is BlockFi's 160 M$ of miner loans in 1.8 B$ of loans (docs/calibration.md)
RIG_SHARES = (0.05, 0.09, 0.15, 0.3, 0.5, 1.0)


def asic_episode(overrides: tuple = ()) -> dict:
    """Run ``asic_2022`` (with ``overrides``, ``key=value`` strings) and measure the rig price
    fall, the distressed-sale discount and the lenders' recovery.

    Two rig prices are measured. The Luxor ASIC price index (Hashrate Index) is a market price
    of rigs, and distressed auctions cleared 44-63 % *below* it (CoinDesk, B, 2022; both in
    docs/calibration.md), so the index is not an auction price: its analogue in the model is
    the value in best use (``fundamental``, what a buyer with the best use pays with no forced
    seller in the market). The model's auction clearing price (``price``), which is the
    forced-sale price in months with forced sales, is the analogue of those auctions: its
    discount to the value in best use is the summary's ``fire_sale_discount`` (forced proceeds
    over their value in best use, all months). ``falls`` is each generation's index fall, peak
    (t0) to trough, 1 - min_t V_g(t) / V_g(0).
    """
    cfg = load_scenario("asic_2022", overrides=list(overrides))
    m = LiquidationModel(cfg).run()
    s = summary(m)
    n = cfg.months + 1
    fund = m.rec["fundamental"][:n]
    index = fund[:, 0]
    price = m.rec["price"][:n, 0]
    btc = m.rec["btc"][:n]
    hp = m.rec["hashprice"][:n]
    lgd = s["realised_lgd"]
    return {**recovery_paths(m, index),
            "price_fall": float(1 - index.min() / index[0]),
            "falls": {g: float(1 - fund[:, i].min() / fund[0, i])
                      for i, g in enumerate(m.env.names)},
            "auction_price_fall": float(1 - price.min() / price[0]),
            "distressed_discount": s["fire_sale_discount"],
            "recovery": None if lgd is None else float(1 - lgd),
            "btc_fall": float(1 - btc[-1] / btc[0]), "hashprice_fall": float(1 - hp[-1] / hp[0]),
            "defaults": s["defaults"], "lender_failures": s["lender_failures"],
            "lenders": cfg.lenders.count,
            "invariants": m.invariants(),
            "index": index.tolist(), "price": price.tolist(), "hashprice": hp.tolist()}


def recovery_paths(m, index: np.ndarray) -> dict:
    """Where the lenders' recovery went, from the run's event log.

    ``collateral_at_index`` is check 5b's measure: the repossessed collateral's market value
    when it was handed over over the exposure at default,

        sum_t u_t V(t) / EAD,

    u_t the units repossessed in month t, V(t) = ``index`` the value in best use that month
    (the analogue of the Luxor rig index, the market price of rigs) and EAD the exposure at
    default of every defaulted loan (``m.ead_total``); seized cash is left out (an in-kind
    settlement hands over rigs). ``lender_sales`` lists each month in which lenders sold: the
    units they sold; ``price``, the clearing price of the month's first sale or salvage
    purchase event (the auction clears one price a month per generation, and the scenario has
    one generation); and ``to_salvage``, every unit the salvage sink bought that month, whoever
    sold it, not only lenders' units. ``unsold_units`` stayed in lenders' inventory.
    """
    repossessed = np.zeros(len(index))
    sales: dict[int, list] = {}
    for t, name, agent, _i, _g, units, _amount, price in m.events:
        if name == "repossession":
            repossessed[t] += units
        elif name == "sale" and agent == "lender":
            sales.setdefault(t, [0, price, 0])[0] += units
        elif name == "purchase" and agent == "salvage":
            sales.setdefault(t, [0, price, 0])[2] += units
    at_index = nm.dot(repossessed, index) / m.ead_total if m.ead_total > 0 else float("nan")
    return {"repossessed_units": int(repossessed.sum()), "collateral_at_index": at_index,
            "lender_sales": [{"month": t, "units": u, "price": float(p), "to_salvage": v}
                             for t, (u, p, v) in sorted(sales.items()) if u],
            "unsold_units": int(m.lenders.inventory.sum())}


def rig_class_band(cls: str) -> dict:
    """Check 5a's band for one rig class: the class's sourced fall +- ``tol`` (ours)."""
    b = BANDS["asic_price_fall"]
    f = b["classes"][cls]
    return {"lo": f - b["tol"], "hi": f + b["tol"], "figure": f}


def asic_rows(a: dict) -> list[Check]:
    """Check 5's rows from an :func:`asic_episode` result (and :func:`rig_book_test`'s under
    ``a["rig_book"]`` if present): 5a, 5b, 5c, 5d, the sensitivity of 5d, and the information
    rows (realised proceeds, the four 2022 settlements)."""
    b = BANDS["asic_price_fall"]
    ctx = (f"BTC -{pct(a['btc_fall'])}, hashprice -{pct(a['hashprice_fall'])}, "
           f"{a['defaults']} defaults")
    parts, ok, expected = [], not a["invariants"], []
    for g, fall in a["falls"].items():
        cls = RIG_CLASS.get(g)
        if cls is None:
            parts.append(f"{g}: {pct(fall)} (no class figure)")
            ok = False
            continue
        band = rig_class_band(cls)
        expected.append(f"{g} ({cls}, -{pct(band['figure'])}): {pct(band['lo'])} to "
                        f"{pct(band['hi'])}")
        parts.append(f"{g}: {pct(fall)}")
        ok = ok and within(fall, band)
    figures = ", ".join(f"{k.replace('_', '-')} -{pct(v)}" for k, v in b["classes"].items())
    rows = [Check(
        "5a", "asic_2022: each rig class's value in best use (analogue of the Hashrate Index "
        "rig price) fall, peak to trough, against its class figure",
        "; ".join(expected) + f" (the class figure +-{100 * b['tol']:.0f} pp, the tolerance is "
        "ours)",
        f"{CAL22}: rig prices by class {figures}, May 2021 -> Dec 2022 (Hashrate Index, B); "
        f"about -{pct(b['year'])} in a year (Luxor via CoinDesk, B, Feb 2023)",
        f"{'; '.join(parts)} ({ctx}; auction clearing price -{pct(a['auction_price_fall'])})",
        bool(ok))]
    b = BANDS["asic_recovery"]
    rec = a["collateral_at_index"]
    rows.append(Check(
        "5b", "asic_2022: repossessed rigs' market value when handed over (units x value in "
        "best use that month) over the exposure at default", band_text(b),
        f"{CAL22}: in-kind settlements valued at the collateral's market value when handed over, "
        "about 30-65 % of the balance (court filings, 8-K, CoinDesk, A/B, 2022-23; cases 5b.1-4)",
        f"{pct(rec)} ({a['lender_failures']} of {a['lenders']} lenders failed; "
        f"{_recovery_text(a)})", within(rec, b)))
    b = BANDS["asic_distressed"]
    disc = a["distressed_discount"]
    rows.append(Check(
        "5c", "asic_2022: forced sales' discount to the value in best use (analogue of the "
        "Luxor rig index)", band_text(b),
        f"{CAL}: crypto-rig distressed auctions 44-63 % below index (CoinDesk, B, 2022)",
        pct(disc) if disc is not None else "no forced sale in the 12 months",
        disc is not None and within(disc, b)))
    rb = a.get("rig_book")
    if rb is not None:
        rows += rig_book_rows(rb)
    proceeds = a["recovery"] if a["recovery"] is not None else float("nan")
    rows.append(Check(
        "5b.i", "asic_2022: realised recovery within the 12 months (sale proceeds and seized "
        "cash, 1 - realised LGD)", "information (not a check)", CAL22, pct(proceeds), True,
        info=True))
    for cid, case, what, ratio, src in ASIC_CASES:
        got = ("n/a" if ratio is None else pct(ratio[0]) if ratio[0] == ratio[1]
               else f"{pct(ratio[0])}-{pct(ratio[1])}")
        rows.append(Check(cid, f"2022 case: {case}", "information: collateral value at hand-over "
                          "/ balance", f"{src}; {CAL22}", f"{got}: {what}", True, info=True))
    return rows


def check_asic() -> tuple[list[Check], dict]:
    """Check 5: the 2022 crypto-miner episode against the observed bands."""
    a = asic_episode()
    a["rig_book"] = rig_book_test()
    return asic_rows(a), a


def _recovery_text(a: dict) -> str:
    """The recovery's decomposition for the report row (see :func:`recovery_paths`)."""
    sold = "; ".join(
        f"month {x['month']}: {x['units']:,} sold at {x['price']:,.0f} $"
        + (f" ({x['to_salvage']:,} to salvage)" if x["to_salvage"] else "")
        for x in a["lender_sales"])
    return (f"{a['repossessed_units']:,} rigs repossessed, worth {pct(a['collateral_at_index'])} "
            f"of the exposure at the index when taken; lender sales: {sold or 'none'}; "
            f"{a['unsold_units']:,} unsold at the end")


def lender_run(cfg) -> dict:
    """One run of ``cfg`` and each lender's rig-book outcome.

    Solvent at t0: equity E_i(0) > 0 after the t0 clearing. The rig-book loss of lender i is
    its write-offs on defaulted rig loans net of all recoveries (seized cash, sale proceeds)
    and of the repossessed rigs it still holds at its own mark, L_i = W_i - R_i - sum_g
    inv_ig mark_ig, over E_i(0)."""
    m = LiquidationModel(cfg)
    lb = m.lenders
    e0 = np.asarray(lb.equity, dtype=float).copy()
    m.run()
    marks = lb.marks(m.env, m.price_hist, m.env.t, cfg.lenders.appraisal_lag)
    loss = lb.writeoffs - lb.recoveries - np.add.reduce(lb.inventory * marks, axis=1)
    solvent = e0 > 0
    failed = lb.status == LenderStatus.FAILED
    ratio = np.divide(loss, e0, out=np.zeros(lb.n), where=solvent)
    return {"solvent0": int(solvent.sum()), "failed": int(failed.sum()),
            "failed_solvent": int((failed & solvent).sum()),
            "max_loss_over_e0": float(ratio.max()) if lb.n else 0.0}


def rig_book_test(overrides: tuple = (), shares: tuple = RIG_SHARES) -> dict:
    """Check 5d: do rig-book losses alone fail a lender that was solvent at t0?

    The isolating counterfactual is the same episode, seed and lenders with every lender
    type's other-loan losses set to zero (``other_loss_calm = other_loss_stress = 0``, and no
    ``other_loans`` shock: BlockFi's and Celsius's FTX and Three Arrows losses): the rig book
    is then the only loss any lender takes (directly, or through another lender's rig book in
    the funding network). ``alone`` counts the lenders solvent at t0 that fail in
    it; ``episode`` is the run as specified (other-loan losses too). ``sensitivity`` repeats
    the counterfactual with every type's ``gpu_share`` (the rig book's share of its loans) at
    each value in ``shares``."""
    over = list(overrides)
    types = list(load_scenario("asic_2022", overrides=over).lenders.types)
    iso = [f"lenders.types.{t}.{k}=0.0" for t in types
           for k in ("other_loss_calm", "other_loss_stress")]

    def alone(extra: list):
        cfg = load_scenario("asic_2022", overrides=over + iso + extra)
        return cfg.model_copy(update={"shocks": [s for s in cfg.shocks
                                                 if s.kind != "other_loans"]})

    sens = {}
    for s in shares:
        sens[str(s)] = lender_run(alone([f"lenders.types.{t}.gpu_share={s}" for t in types]))
    return {"alone": lender_run(alone([])),
            "episode": lender_run(load_scenario("asic_2022", overrides=over)),
            "gpu_share": {t: float(v.gpu_share) for t, v in
                          load_scenario("asic_2022", overrides=over).lenders.types.items()},
            "sensitivity": sens}


def rig_book_rows(rb: dict) -> list[Check]:
    b = BANDS["rig_book_failures"]
    al, ep = rb["alone"], rb["episode"]
    shares = ", ".join(f"{t} {v:g}" for t, v in rb["gpu_share"].items())
    src = (f"{CAL22}: BlockFi and Celsius failed through FTX and Three Arrows, not their rig "
           "loans (BlockFi and Celsius Chapter 11 filings, A, 2022); rig loans 160 M$ of "
           "BlockFi's 1.8 B$ of loans (Bloomberg, B, Jan 2023; BlockFi via Protos, B, Nov 2022)")
    rows = [Check(
        "5d", "asic_2022: no lender solvent at t0 fails from its rig book alone (same episode "
        "and seed, other-loan losses set to zero)", f"<= {b['max']} lenders", src,
        f"{al['failed_solvent']} of {al['solvent0']} solvent lenders fail (largest rig-book "
        f"loss {pct(al['max_loss_over_e0'])} of a lender's t0 equity; rig share of loans: "
        f"{shares}); the episode as specified, other-loan losses too: {ep['failed']} fail",
        al["failed_solvent"] <= b["max"])]
    sens = rb["sensitivity"]
    first = next((s for s, v in sens.items() if v["failed_solvent"] > b["max"]), None)
    rows.append(Check(
        "5d.s", "5d's sensitivity to the rig book's share of every lender type's loans "
        "(gpu_share; modelling assumption but for BlockFi's ~9 %)", "information",
        CAL22, "; ".join(f"{s}: {v['failed_solvent']} fail, largest loss "
                         f"{pct(v['max_loss_over_e0'])} of equity" for s, v in sens.items())
        + (f"; first failure at gpu_share {first}" if first else "; no failure at any share"),
        True, info=True))
    return rows
