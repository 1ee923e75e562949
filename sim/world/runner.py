"""Single runs and paired comparisons (the building blocks the CLI and sweeps call)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sim.core.config import Scenario
from sim.core.seeds import replicate_seeds
from sim.world import metrics
from sim.world.model import LiquidationModel


def run_scenario(cfg: Scenario, on_month: Callable[[int], None] | None = None
                 ) -> LiquidationModel:
    """Build and run one model for ``cfg.months`` months (``on_month(month)`` after each)."""
    return LiquidationModel(cfg).run(on_month)


COMPARE_METRICS = ("credit_losses", "defaults", "lender_failures", "max_peak_price_fall")
# with metrics.system_loss on (both sides): the system loss and each party's loss (sim.world.losses)
# (compare's keys: loss_<part>, and sl_<term> for the identity's terms)
LOSS_METRICS = ("system_loss", "system_loss_at_value", "lenders", "desk", "lolr", "buyers",
                "borrowers", "outside", "outside_buyers", "outside_suppliers", "outside_funders",
                "outside_other_borrowers", "lenders_credit", "lenders_recoveries",
                "lenders_net", "lenders_other", "borrowers_wiped_out")
IDENTITY_TERMS = ("value_destroyed", "btc_value_fall", "operating_income", "discount",
                  "discount_outside", "holding_costs")


def _headline(model: LiquidationModel) -> dict[str, float]:
    s = metrics.summary(model)
    falls = s["peak_price_fall"].values()
    out = {"credit_losses": s["credit_losses"], "defaults": s["defaults"],
           "lender_failures": s["lender_failures"],
           "max_peak_price_fall": max(falls) if falls else 0.0}
    if "losses" in s:
        out.update({f"loss_{k}": s["losses"][k] for k in LOSS_METRICS})
        out.update({f"sl_{k}": s["losses"][k] for k in IDENTITY_TERMS})
    return out


def compare(a: Scenario, b: Scenario, n_seeds: int, root_seed: int | None = None,
            on_run: Callable[[], None] | None = None) -> dict:
    """Run A and B on the same seeds, the replicate seeds of ``root_seed`` (A's seed if None;
    :func:`sim.core.seeds.replicate_seeds`, the seeds a sweep with that ``root_seed`` uses);
    paired differences (B - A) with 95 % t intervals."""
    from scipy import stats  # here, not at import: scipy.stats adds ~0.6 s to every process
    # that imports the runner (each sweep worker, each CLI call)

    seeds = replicate_seeds(a.seed if root_seed is None else root_seed, n_seeds)
    rows_a, rows_b = [], []
    for s in seeds:
        for cfg, rows in ((a, rows_a), (b, rows_b)):
            rows.append(_headline(run_scenario(cfg.model_copy(update={"seed": s}))))
            if on_run is not None:
                on_run()
    out = {"seeds": seeds, "a": a.name, "b": b.name, "metrics": {}}
    # the losses only when both sides count them (metrics.system_loss on in A and B)
    keys = [*COMPARE_METRICS, *(k for k in rows_a[0] if k.startswith(("loss_", "sl_"))
                                and k in rows_b[0])]
    for key in keys:
        xa = np.array([r[key] for r in rows_a], dtype=float)
        xb = np.array([r[key] for r in rows_b], dtype=float)
        d = xb - xa
        half = (stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
                if len(d) > 1 else float("nan"))
        out["metrics"][key] = {"mean_a": float(xa.mean()), "mean_b": float(xb.mean()),
                               "diff": float(d.mean()), "ci_low": float(d.mean() - half),
                               "ci_high": float(d.mean() + half)}
    return out
