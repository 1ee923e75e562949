"""Value paths of installed GPUs by generation, today's defaults vs the recommended values of
issue 14 part A (installed-unit values, economic retirement, no double-counted rent decline).

Usage: python experiments/value_paths.py [--scenario NAME ...] [--seed N] [--seeds N]
[--json PATH]

For each scenario (default: baseline) and each configuration (``current``: the shipped
defaults; ``recommended``: :data:`RECOMMENDED` on top) it runs the model once and prints, per
generation, the new-unit (installed) price, the value in best use at t0 (or at launch for a
generation launching later) and its ratio to the new-unit price, the value 12, 24 and 36 months
later, the months the value sits on the salvage floor (shipping months only) and the largest
value / new-unit price over the run. ``recommended`` sets Rubin's launch rent to the
zero-profit rent (:func:`zero_profit_rent`): the rent at which the marginal buyer's (tier-2,
15 %/yr hurdle) value of a new Rubin at launch equals its installed price.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from agents.buyer import BuyerBook
from sim.core.config import load_scenario
from sim.core.environment import Environment
from sim.core.seeds import replicate_seeds

# the values the lead flips the defaults to (sources: docs/calibration.md, "Installed-unit
# values and a value path set by economics"); Rubin's rent0 is solved by zero_profit_rent
RECOMMENDED: dict[str, object] = {
    "environment.installed_multiple": 1.3,  # system cost / chip list price (capex_multiple)
    "environment.facility_cost": 184.0,  # $/kW-month, CBRE NA Data Center Trends H2 2024
    "environment.rent_deflation": 0.15,  # per-chip rent decline a year, launch steps included
    "environment.step_down": 0.0,  # ... so no separate step at a launch
    "buyers.retirement": "economic",
    "buyers.physical_life_months": 96,
    "buyers.value_cap": True,
}
HORIZONS = (12, 24, 36)
# the marginal buyer of new units whose hurdle prices entry: tier-2 clouds (15 %/yr)
MARGINAL = "tier2"


def zero_profit_rent(overrides: dict, gen: int, scenario: str = "baseline",
                     marginal: str = MARGINAL) -> float:
    """Launch rent ($/GPU-hour) of generation ``gen`` at which the marginal buyer type's value
    of a new unit at launch (no cap, expectations on fundamentals) equals its new-unit price:
    zero-profit entry at the marginal buyer's hurdle. Buyers with a lower hurdle (the
    hyperscalers) value it above the price and are capped at it. Bisection on rent0 (the value
    is increasing in it) to 1e-6 $/h."""

    def gap(rent0: float) -> float:
        over = dict(overrides, **{f"environment.generations.{gen}.rent0": rent0,
                                  "buyers.value_cap": False})
        cfg = load_scenario(scenario, overrides=over)
        env = Environment(cfg, np.random.default_rng(0))  # no draw: rents wait for the launch
        env.t = max(int(env.launch[gen]), 0)
        book = BuyerBook(cfg, env)
        by_type = book.values_by_type(env, np.zeros(env.n_gen))[0]
        value = by_type[book.type_names.index(marginal), gen]
        return float(value - env.new_unit_price[gen])

    lo, hi = 0.01, 100.0
    while hi - lo > 1e-6:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return round(0.5 * (lo + hi), 4)


def recommended(scenario: str = "baseline") -> dict:
    """:data:`RECOMMENDED` plus the zero-profit launch rent of every generation launching
    after t0 (Rubin in the baseline)."""
    over = dict(RECOMMENDED)
    cfg = load_scenario(scenario, overrides=over)
    for g, gen in enumerate(cfg.environment.generations):
        if gen.launch_month > 0 and gen.rent_index == "compute":
            over[f"environment.generations.{g}.rent0"] = zero_profit_rent(over, g, scenario)
    return over


def value_table(scenario: str, overrides: dict, seed: int | None = None,
                n_seeds: int = 1) -> list[dict]:
    """Run ``scenario`` with ``overrides``; one row per generation (see module doc). With
    ``n_seeds`` > 1 the runs use ``replicate_seeds(seed, n_seeds)`` and the value path is their
    mean (floor months: the mean count)."""
    from sim.world.model import LiquidationModel

    cfg = load_scenario(scenario, overrides=overrides, seed=seed)
    seeds = [cfg.seed] if n_seeds <= 1 else replicate_seeds(cfg.seed, n_seeds)
    paths = []
    for s in seeds:
        m = LiquidationModel(cfg.model_copy(update={"seed": s}))
        m.run()
        paths.append(m.rec["fundamental"])
    env, value = m.env, np.mean(paths, axis=0)
    floor = cfg.buyers.salvage_floor * env.list_price
    on_floor = np.mean([p <= 1.001 * floor for p in paths], axis=0)  # share of runs, (T, G)
    rows = []
    for g, name in enumerate(env.names):
        t_ref = max(int(env.launch[g]), 0)
        live = np.arange(cfg.months + 1) >= env.launch[g]
        price = float(env.new_unit_price[g])
        row = {"generation": name, "new_unit_price": price, "month": t_ref,
               "value": float(value[t_ref, g]), "value/price": float(value[t_ref, g] / price),
               "floor_months": float(np.sum(on_floor[live, g])),
               "max_value/price": float(np.max(value[live, g]) / price)}
        for h in HORIZONS:
            row[f"value_{h}"] = (float(value[t_ref + h, g]) if t_ref + h <= cfg.months
                                 else float("nan"))
        rows.append(row)
    return rows


def _print(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print("| gen | new-unit price | t | value at t | / price | +12 | +24 | +36 | floor months "
          "| max value / price |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        later = " | ".join(f"{r[f'value_{h}']:,.0f}" for h in HORIZONS)
        print(f"| {r['generation']} | {r['new_unit_price']:,.0f} | {r['month']} | "
              f"{r['value']:,.0f} | {r['value/price']:.2f} | {later} | {r['floor_months']:.1f} | "
              f"{r['max_value/price']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", nargs="*", default=["baseline"])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=1, help="mean path over this many seeds")
    ap.add_argument("--json", default=None, help="also write the tables to this JSON file")
    a = ap.parse_args(argv)
    out = {}
    for sc in a.scenario:
        rec = recommended(sc)
        print(f"\n## {sc}: recommended overrides {rec}")
        for label, over in (("current", {}), ("recommended", rec)):
            rows = value_table(sc, over, a.seed, a.seeds)
            out[f"{sc}/{label}"] = rows
            _print(f"{sc}, {label}", rows)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
