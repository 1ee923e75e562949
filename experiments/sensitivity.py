"""How much each modelling assumption moves the headline losses (docs/calibration.md section 13).

Usage: python experiments/sensitivity.py [--scenario crypto_winter] [--seeds 100] [--workers 2]
                                          [--out results/sensitivity]

For every assumption in :data:`ASSUMPTIONS` the scenario runs on the same ``--seeds`` paired
seeds (``sim.core.seeds.replicate_seeds`` of the scenario's seed) at the default and at a low and a
high value. Reported per variant: mean credit losses, defaults and lender failures, and the
relative change of mean credit losses against the default with a 95 % t interval of the paired
differences. An assumption that moves credit losses by more than 20 % either way is flagged
(``moves_20pct``): the issue's referee standard asks for each of them to be listed with its
measured sensitivity. Writes ``sensitivity.json`` and ``sensitivity.md`` (the table pasted into
docs/calibration.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sim.core.config import ConfigError, load_scenario
from sim.core.seeds import replicate_seeds
from sim.world.runner import run_scenario

# (key, low, high, what it is): the assumptions a referee would ask about, each at a low and a
# high value around its default (about half and double, within its bounds, or the two ends of
# its sourced range)
ASSUMPTIONS: tuple[tuple[str, object, object, str], ...] = (
    ("buyers.adapt", 0.0, 0.4, "adaptive-expectations gain"),
    ("buyers.capacity_scale", 0.5, 2.0, "buyers' capital and spare MW"),
    ("buyers.mw_regrowth", 0.005, 0.02, "monthly regrowth of buyers' spare MW"),
    ("buyers.capital_regrowth", 0.025, 0.10, "monthly refill of buyers' capital"),
    ("buyers.spot_opex_per_gpu", 75.0, 300.0, "buyers' running cost besides power"),
    ("buyers.physical_life_months", 72, 120, "physical life of a unit from launch"),
    ("buyers.outside_demand.top", 0.45, 0.85, "outside demand's first bid"),
    ("buyers.outside_demand.depth", 0.025, 0.10, "outside demand's depth"),
    ("buyers.outside_demand.scrap", 0.01, 0.05, "scrap value, share of replacement cost"),
    ("environment.rent_deflation", 0.10, 0.25, "yearly rent decline of one chip"),
    ("environment.installed_multiple", 1.15, 1.5, "installed price / list price"),
    ("environment.facility_cost", 120.0, 250.0, "facility charge $/kW-month"),
    ("environment.rent_vol", 0.02, 0.08, "monthly rent volatility"),
    ("environment.utilisation", 0.70, 0.95, "fleet utilisation"),
    ("environment.power_price", 35.0, 80.0, "power price $/MWh"),
    ("lenders.ltv_max", 0.80, 0.90, "LTV covenant"),
    ("lenders.cure_months", 1, 6, "months to cure a margin call"),
    ("lenders.dscr_default_months", 3, 12, "months past the sweep before a DSCR default"),
    ("lenders.max_hold_months", 3, 12, "months before repossessed GPUs are forced out"),
    ("lenders.holding_cost", 30.0, 120.0, "warehouse cost of repossessed GPUs"),
    ("lenders.appraisal_lag", 1, 6, "appraisal smoothing window"),
    ("lenders.run_rate", 0.05, 0.20, "monthly run on a distressed lender"),
    ("borrowers.tenant_default_stress", 0.01, 0.04, "tenant default rate under stress"),
    ("borrowers.voluntary_discount", 0.075, 0.30, "discount of voluntary sales"),
    ("network.funding_degree", 1.0, 6.0, "funders per lender"),
    ("network.syndicate", 1.0, 4.0, "lenders per borrower"),
    ("sites.build_cost_per_mw", 4.75e6, 11e6, "most a buyer pays for a site's MW"),
    ("sites.sale_months", 1, 12, "months before a repossessed site can be sold"),
    ("sites.hosting_per_kw_month", 75.0, 300.0, "hosting charge for GPUs run in place"),
)
METRICS = ("credit_losses", "net_credit_losses", "defaults", "lender_failures")


def _one(args: tuple[str, list[str], int]) -> dict[str, float]:
    from sim.world import metrics

    scenario, overrides, seed = args
    cfg = load_scenario(scenario, overrides).model_copy(update={"seed": seed})
    # only the metrics read here (no cascade counterfactual run, no DebtRank)
    s = metrics.summary(run_scenario(cfg), keys=METRICS)
    # net of later recoveries (equal to credit_losses when metrics.losses_at_writeoff is off)
    return {k: float(s.get(k, s["credit_losses"])) for k in METRICS}


def _fmt(v: object) -> str:
    return json.dumps(v) if isinstance(v, bool | str) else str(v)


def run(scenario: str, n_seeds: int, workers: int, assumptions=ASSUMPTIONS) -> dict:
    from scipy import stats

    base_cfg = load_scenario(scenario)
    seeds = replicate_seeds(base_cfg.seed, n_seeds)
    variants = [("default", [])]
    for key, low, high, _ in assumptions:
        for value in (low, high):
            over = [f"{key}={_fmt(value)}"]
            load_scenario(scenario, over)  # a bad key or value stops here, with its message
            variants.append((f"{key}={_fmt(value)}", over))
    jobs = [(scenario, over, s) for _, over in variants for s in seeds]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(_one, jobs, chunksize=4))
    by_variant = {name: rows[i * n_seeds:(i + 1) * n_seeds] for i, (name, _) in
                  enumerate(variants)}
    base = np.array([r["credit_losses"] for r in by_variant["default"]])
    out = {"scenario": scenario, "seeds": seeds, "base": {
        k: float(np.mean([r[k] for r in by_variant["default"]])) for k in METRICS},
        "assumptions": []}
    t = stats.t.ppf(0.975, n_seeds - 1) if n_seeds > 1 else math.nan
    for key, low, high, what in assumptions:
        entry = {"key": key, "what": what, "variants": []}
        for value in (low, high):
            rows_v = by_variant[f"{key}={_fmt(value)}"]
            x = np.array([r["credit_losses"] for r in rows_v])
            d = x - base
            half = t * d.std(ddof=1) / math.sqrt(n_seeds) if n_seeds > 1 else math.nan
            rel = d.mean() / base.mean() if base.mean() > 0 else math.nan
            net_b = np.array([r["net_credit_losses"] for r in by_variant["default"]])
            net_x = np.array([r["net_credit_losses"] for r in rows_v])
            rel_net = ((net_x - net_b).mean() / net_b.mean() if net_b.mean() > 0
                       else math.nan)
            entry["variants"].append({
                "value": value, **{k: float(np.mean([r[k] for r in rows_v])) for k in METRICS},
                "rel_change": float(rel), "rel_change_net": float(rel_net),
                "rel_ci": [float((d.mean() - half) / base.mean()),
                           float((d.mean() + half) / base.mean())] if base.mean() > 0 else None})
        entry["moves_20pct"] = any(abs(v["rel_change"]) > 0.20 or abs(v["rel_change_net"]) > 0.20
                                   for v in entry["variants"])
        out["assumptions"].append(entry)
    return out


def table(res: dict) -> str:
    b = res["base"]
    lines = [f"Scenario `{res['scenario']}`, {len(res['seeds'])} paired seeds; default: credit "
             f"losses (at write-off) {b['credit_losses'] / 1e6:,.0f} M$, net of later "
             f"recoveries {b['net_credit_losses'] / 1e6:,.0f} M$, {b['defaults']:.1f} "
             f"defaults, {b['lender_failures']:.1f} lender failures (means).", "",
             "| assumption | low | losses; net (change) | high | losses; net (change) | > 20 % |",
             "|---|---|---|---|---|---|"]
    for a in sorted(res["assumptions"], key=lambda a: -max(
            max(abs(v["rel_change"]), abs(v["rel_change_net"])) for v in a["variants"])):
        cells = []
        for v in a["variants"]:
            cells += [f"{v['value']}", f"{v['credit_losses'] / 1e6:,.0f} M$ "
                      f"({v['rel_change']:+.0%}); {v['net_credit_losses'] / 1e6:,.0f} M$ "
                      f"({v['rel_change_net']:+.0%})"]
        lines.append(f"| `{a['key']}` ({a['what']}) | " + " | ".join(cells)
                     + f" | {'yes' if a['moves_20pct'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="crypto_winter")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/sensitivity"))
    a = p.parse_args(argv)
    if a.seeds < 2 or a.workers < 1:
        print("sensitivity: --seeds must be >= 2 and --workers >= 1", file=sys.stderr)
        return 2
    try:
        res = run(a.scenario, a.seeds, a.workers)
    except ConfigError as e:
        print(f"sensitivity: {e}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "sensitivity.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    md = table(res)
    (a.out / "sensitivity.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
