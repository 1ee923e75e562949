"""Headline metrics (docs/model.md section 4) and the tables of a finished run.

The per-month records are numpy arrays filled during the run; :mod:`sim.world.collect` turns them
into DataFrames once (``series``, ``panel``, ``events``, re-exported here under their
documented names ``sim.world.metrics.series`` etc.). They live there, below
:mod:`sim.world.model`, because
the model's ``datacollector`` reads them, while :func:`cascade` here runs a model.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core.config import Scenario
from sim.core.contagion import debtrank, debtrank_impact, debtrank_single_node
from sim.core.version import liqsim_version
from sim.world import losses
from sim.world.collect import (  # noqa: F401 - re-exported (see the module's docstring)
    STATES,
    events,
    panel,
    series,
)
from sim.world.model import LiquidationModel

MAX_DEBTRANK_SEEDS = 50


def peak_price_fall(model: LiquidationModel, adjusted: bool = True) -> dict[str, float]:
    """Largest peak-to-trough fall per generation, over the months it ships.

    ``adjusted`` (the headline): the fall of the price index *relative to the value in best use*
    (p / V), i.e. net of the depreciation a buyer in best use expects from rent deflation and
    ageing; over 60 months raw prices of every generation fall ~90 % by ageing alone, which would
    hide the fire sale. ``adjusted=False``: the raw price index.
    """
    out = {}
    n = model.env.t + 1
    price, value = model.rec["price"][:n], model.rec["fundamental"][:n]
    for g, name in enumerate(model.env.names):
        live = slice(max(0, int(model.env.launch[g])), n)
        p, v = price[live, g], value[live, g]
        ok = (p > 0) & (v > 0)
        x = (p[ok] / v[ok]) if adjusted else p[ok]
        if len(x) < 2:
            continue
        out[name] = float(np.max(1.0 - x / np.maximum.accumulate(x)))
    return out


def debtrank_metrics(model: LiquidationModel) -> dict[str, float]:
    """DebtRank (Battiston et al. 2012) on the t0 funding network.

    ``max_single``: the largest systemic impact of one lender's full distress;
    ``realised``: the impact of the lenders' realised credit losses (as a share of t0 equity)
    propagated through the funding network.
    """
    lb = model.lenders
    exposures = model.interbank0.T  # exposures[i, j]: i's claim on j
    buffers, sizes = model.equity0, np.maximum(model.assets0, 0.0)
    if lb.n == 0 or sizes.sum() <= 0:
        return {"max_single": 0.0, "realised": 0.0}
    seeds = np.argsort(-sizes, kind="stable")[:MAX_DEBTRANK_SEEDS]
    best = max(0.0, float(debtrank_single_node(exposures, buffers, sizes, seeds).max()))
    h0 = np.clip(np.divide(lb.credit_losses, buffers, out=np.zeros(lb.n), where=buffers > 0),
                 0.0, 1.0)
    realised = debtrank_impact(debtrank(exposures, buffers, sizes, h0), h0, sizes)
    return {"max_single": float(best), "realised": float(realised)}


def counterfactual_scenario(cfg):
    """The same scenario without the price and funding channels (docs/model.md, "Lenders with
    other assets ..."): unlimited buyers (no fire-sale discount: prices follow value), no
    interbank funding (every lender type's interbank_share = 0), no runs (run_rate = 0, funding
    shocks dropped) and no deleveraging (capital_floor = 0). Same seed: the borrowers, fleets,
    loans and the environment's draws are the same."""
    data = cfg.model_dump()
    data["buyers"]["unlimited"] = True
    for t in data["lenders"]["types"].values():
        t["interbank_share"] = 0.0
    data["lenders"]["run_rate"] = 0.0
    data["lenders"]["capital_floor"] = 0.0
    data["shocks"] = [s for s in data["shocks"] if s["kind"] != "funding"]
    data["metrics"]["cascade_counterfactual"] = False
    return Scenario.model_validate(data)


def cascade(model: LiquidationModel) -> dict:
    """Contagion: the borrowers that defaulted in the run but not in the same-seed
    counterfactual (:func:`counterfactual_scenario`) run over the same months. Runs the
    counterfactual once per model (cached): about the cost of the run itself."""
    cached = model.__dict__.get("_cascade")
    if cached is not None and cached[0] == model.env.t:
        return cached[1]
    dead = model.borrowers.status == BorrowerStatus.DEFAULTED
    if model.env.t == 0:  # nothing has run: no default either way
        return {"contagion": 0, "counterfactual": 0, "avoided": 0}
    cf = LiquidationModel(counterfactual_scenario(model.cfg), months=model.env.t,
                          engine=model.engine).run()
    dead_cf = cf.borrowers.status == BorrowerStatus.DEFAULTED
    out = {"contagion": int((dead & ~dead_cf).sum()), "counterfactual": int(dead_cf.sum()),
           "avoided": int((dead_cf & ~dead).sum())}
    model._cascade = (model.env.t, out)
    return out


def defaults_by_cause(model: LiquidationModel) -> dict[str, int]:
    """Borrower defaults by cause: payment (arrears past grace), ltv (margin call uncured past
    its cure period), dscr (a DSCR breach open past the cash sweep)."""
    names = {"default_payment": "payment", "default_covenant": "ltv", "default_dscr": "dscr"}
    return {cause: model.events.count_named(name) for name, cause in names.items()}


# the keys that need the cascade counterfactual run (with metrics.cascade_counterfactual on)
CASCADE_KEYS = ("cascade_size", "defaults_counterfactual")


def wanted(keys: Collection[str] | None, *names: str) -> bool:
    """Whether a caller reading the flat keys ``keys`` (None: all) reads one of ``names`` or a
    key under it (``debtrank`` covers ``debtrank.max_single``)."""
    return keys is None or any(k == n or k.startswith(n + ".") for k in keys for n in names)


def summary(model: LiquidationModel, keys: Collection[str] | None = None) -> dict:
    """Headline metrics of one run.

    ``keys``: the flat keys the caller will read (:func:`sim.batch.sweep.flat_metrics`'s
    names, e.g. a sweep's metrics); None reads all. The two costly parts are computed only if
    one of their keys is read, and their keys are left out otherwise: the cascade against a
    same-seed counterfactual run (``metrics.cascade_counterfactual``, :func:`cascade`; about a
    run's cost; :data:`CASCADE_KEYS`) and DebtRank (``debtrank.*``, one propagation per large
    lender, :func:`debtrank_metrics`). Every other number is computed as always."""
    r, lb, t = model.rec, model.lenders, model.env.t
    dm, dn = int(r["defaults_miner"][: t + 1].sum()), int(r["defaults_neocloud"][: t + 1].sum())
    first = np.flatnonzero(r["defaults_miner"][: t + 1] + r["defaults_neocloud"][: t + 1])
    first_wave = 0
    if len(first):
        first_wave = int(r["defaults_miner"][first[0]] + r["defaults_neocloud"][first[0]])
    ead = model.ead_total
    forced_fund = r["forced_fundamental"][t]
    inventory_value = float((lb.inventory * model.price[None, :]).sum())
    out = {
        "scenario": model.cfg.name,
        "seed": int(model.cfg.seed),
        "months": int(t),
        "liqsim_version": liqsim_version(),
        "repo_enabled": bool(model.cfg.policy.repo.enabled),
        "credit_losses": float(lb.credit_losses.sum()),
        "writeoffs": float(lb.writeoffs.sum()),
        "recoveries": float(lb.recoveries.sum()),
        "defaults_by_type": {"miner": dm, "neocloud": dn},
        "defaults": dm + dn,
        "borrowers": int(model.borrowers.n),
        "cascade_size": dm + dn - first_wave,
        "lender_failures": int((lb.status == LenderStatus.FAILED).sum()),
        "peak_price_fall": peak_price_fall(model),
        "peak_price_fall_raw": peak_price_fall(model, adjusted=False),
        "fire_sale_discount": (float(1.0 - r["forced_value"][t] / forced_fund)
                               if forced_fund > 0 else None),
        "realised_lgd": float(1.0 - model.recovered_total / ead) if ead > 0 else None,
        "paper_lgd": float(1.0 - model.paper_recovery / ead) if ead > 0 else None,
        "unsold_inventory_units": int(lb.inventory.sum()),
        "unsold_inventory_value": inventory_value,
        "salvage_units": int(model.salvage_units.sum()),
        "margin_calls": model.events.count_named("margin_call"),
        "repo_peak_lent": float(r["repo_lent"][: t + 1].max()),
    }
    if wanted(keys, "debtrank"):
        out["debtrank"] = debtrank_metrics(model)
    # issue 14 part D: new or redefined keys, each behind its switch (the golden record)
    mc = model.cfg.metrics
    if mc.losses_at_writeoff:
        out["credit_losses"] = float(lb.losses_at_writeoff.sum())
        out["recoveries"] = float(lb.later_recoveries.sum())
        out["net_credit_losses"] = float(lb.credit_losses.sum())
    if mc.cascade_counterfactual and wanted(keys, *CASCADE_KEYS):
        c = cascade(model)
        out["cascade_size"] = c["contagion"]
        out["defaults_counterfactual"] = c["counterfactual"]
    elif mc.cascade_counterfactual:  # not measured: no first-wave count under its name
        del out["cascade_size"]
    if model.cfg.lenders.dscr_default_months:
        out["defaults_by_cause"] = defaults_by_cause(model)
    if mc.system_loss:  # issue 15: every party's loss marked to market (sim.world.losses)
        out["losses"] = losses.summary(model)
    if lb.has_other:
        out["other_loan_losses"] = float(lb.other_losses.sum())
    if model.cfg.buyers.outside_demand.enabled:
        # with the outside demand the fire-sale discount is measured against the value in
        # best use at repossession; the old measure (value at the sale) is kept beside it
        rep = r["forced_repossession_value"][t]
        out["fire_sale_discount_at_sale"] = out["fire_sale_discount"]
        out["fire_sale_discount"] = (float(1.0 - r["forced_value"][t] / rep) if rep > 0
                                     else None)
        out["outside_units"] = out["salvage_units"]
        out["outside_pinned_months"] = int(r["outside_pinned"][: t + 1].any(axis=1).sum())
    return out
