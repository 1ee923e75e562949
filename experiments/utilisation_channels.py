"""Why fleet utilisation moves losses both ways (docs/calibration.md section 13, "Utilisation").

Usage: python experiments/utilisation_channels.py [--scenario crypto_winter] [--seeds 100]
                                                  [--values 0.70 0.85 0.95]

``environment.utilisation`` (the share of spot capacity that is rented) enters the model twice:

* the borrowers' revenue (rent x hours x utilisation): lower utilisation, less income, more
  defaults;
* the value of a GPU in best use to the secondary buyers (the same rent at the same
  utilisation, less running costs), which is also the collateral mark at t0: the world at t0
  has no loan in breach, so a facility whose amortised balance exceeds ``lenders.ltv_cure`` x
  its collateral's t0 mark starts restructured down to it (``LiquidationModel._originate``).
  Lower utilisation, lower marks, smaller loans.

The facility itself (``ltv0`` x installed cost) does not depend on utilisation, so the GPU
debt at t0 differs between utilisations only through that cap. For each value the scenario
runs on the same paired seeds (``sim.core.seeds.replicate_seeds`` of the scenario's seed, as
``experiments/sensitivity.py`` does) and the script prints the means of: GPU debt at t0,
defaults, exposure at default (EAD) and per default, and credit losses at write-off and net of
later recoveries. Writes nothing.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from sim.core.config import ConfigError, load_scenario
from sim.core.seeds import replicate_seeds
from sim.world import metrics
from sim.world.model import LiquidationModel

KEYS = ("defaults", "credit_losses", "net_credit_losses")


def channels(scenario: str, value: float, seeds: list[int]) -> dict[str, float]:
    """Means over ``seeds`` of the t0 debt, defaults, EAD and losses at utilisation ``value``."""
    rows = []
    for seed in seeds:
        m = LiquidationModel(load_scenario(scenario, [f"environment.utilisation={value}"],
                                           seed=seed))
        debt0 = float(m.loans.exposure.sum())
        m.run()
        s = metrics.summary(m, keys=KEYS)
        rows.append((debt0, s["defaults"], m.ead_total, s["credit_losses"],
                     s["net_credit_losses"]))
    debt0, defaults, ead, losses, net = np.mean(rows, axis=0)
    return {"debt0": debt0, "defaults": defaults, "ead": ead,
            "ead_per_default": ead / defaults if defaults else float("nan"),
            "losses": losses, "net": net}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="crypto_winter")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--values", type=float, nargs="+", default=[0.70, 0.85, 0.95])
    args = parser.parse_args()
    try:
        seeds = replicate_seeds(load_scenario(args.scenario).seed, args.seeds)
        print(f"{args.scenario}, {args.seeds} paired seeds (means; M$)")
        print("utilisation  GPU debt t0  defaults     EAD  EAD/default  losses   net")
        for u in args.values:
            c = channels(args.scenario, u, seeds)
            print(f"{u:11.2f}  {c['debt0'] / 1e6:11.1f}  {c['defaults']:8.1f}  "
                  f"{c['ead'] / 1e6:6.1f}  {c['ead_per_default'] / 1e6:11.2f}  "
                  f"{c['losses'] / 1e6:6.1f}  {c['net'] / 1e6:5.1f}")
    except ConfigError as e:
        sys.exit(f"utilisation_channels: {e}")


if __name__ == "__main__":
    main()
