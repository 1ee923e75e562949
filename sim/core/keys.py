"""Every config key with its default, bounds, unit and meaning (``liqsim keys``).

Defaults and bounds are read from the pydantic models in :mod:`sim.core.config`, so they cannot
drift; units and meanings are in :data:`DOCS`, one entry per field of each config class, and a
test checks that every field has one. Keys inside lists and named tables are shown with a
placeholder: ``environment.generations.N.list_price`` (N = 0, 1, ...),
``lenders.types.TYPE.share`` (TYPE = bank, ...), ``shocks.N.size``; their default lists the
value of each default item.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from sim.core.config import Scenario

FRAC = "fraction"
M = "months"
USD = "$"

# {config class: {field: (unit, meaning)}}; sources of the defaults: docs/calibration.md
DOCS: dict[str, dict[str, tuple[str, str]]] = {
    "Scenario": {
        "name": ("", "scenario name; also the results folder results/<name>/"),
        "description": ("", "one line saying what the scenario is (liqsim scenarios)"),
        "months": (M, "months simulated after t0 (start, 2025-12 by default)"),
        "seed": ("", "random seed; the same scenario and seed give identical results"),
        "start": ("YYYY-MM", "calendar month of model month 0 (t0); labels the outputs' dates "
                             "only"),
    },
    "Generation": {
        "name": ("", "GPU generation name (A100, H100, ...)"),
        "launch_month": (M, "launch relative to t0 (negative: already shipping)"),
        "list_price": ("$/GPU", "list price of one new GPU"),
        "kw_per_gpu": ("kW/GPU", "power draw incl. rack overhead, before PUE"),
        "rent0": ("$/GPU-hour", "rent at t0 (or at launch, for a future generation)"),
        "rent_index": ("", "compute: the AI rent process; hashprice: rent follows hashprice "
                           "(mining rigs)"),
        "cooling": ("", "air or liquid: the cooled MW a unit needs (sites.enabled only; "
                        "liquid units fit only liquid-cooled MW)"),
        "system_cost": ("$/GPU", "installed cost of a new GPU (chip, server share, network); "
                                 "0 = installed_multiple x list_price"),
    },
    "EnvironmentCfg": {
        "rent_deflation": ("1/year", "yearly fall of GPU rents"),
        "rent_vol": ("1/sqrt(month)", "monthly volatility of the common rent shock"),
        "step_down": (FRAC, "rent step of every older generation when a new one launches"),
        "utilisation": (FRAC, "spot fleet utilisation"),
        "btc_price0": ("$/BTC", "BTC price at t0"),
        "btc_drift": ("1/year", "annual log drift of BTC"),
        "btc_vol_calm": ("1/sqrt(year)", "annual BTC volatility in calm months"),
        "btc_vol_stress": ("1/sqrt(year)", "annual BTC volatility once stress fires"),
        "btc_random_walk": ("", "false: BTC moves only by btc shocks (a historical path)"),
        "rho_calm": ("", "correlation of BTC and rent shocks, calm"),
        "rho_stress": ("", "correlation of BTC and rent shocks, under stress"),
        "stress_drawdown": (FRAC, "BTC drawdown from its running peak that flags stress"),
        "hashprice0": ("$/PH/day", "hashprice at t0"),
        "difficulty_growth": ("1/year", "network difficulty growth, eroding hashprice"),
        "hashprice_cost": ("$/PH/day", "miners' all-in cost hashprice reverts to (0 = off)"),
        "power_price": ("$/MWh", "price of power"),
        "installed_multiple": ("x", "new-unit price / list price of a generation without "
                                    "its own system_cost"),
        "facility_cost": ("$/kW-month", "facility (colocation) charge per kW of IT load"),
        "launch_rate": ("1/year", "launches a year rent_deflation already contains (trend "
                                  "net of step-downs; 0 = off)"),
        "pue": ("", "power usage effectiveness (facility / IT power)"),
        "rent_path": ("", "observed rent paths, one per named generation (empty = the rent "
                          "process only)"),
        "lead_time_path": ("", "delivery lead times of new units, one path per named "
                               "generation (empty = none: the plain new-unit price cap)"),
        "sofr": ("1/year", "risk-free rate (SOFR)"),
    },
    "RentPath": {
        "generation": ("", "the generation whose rent follows the path (a compute generation)"),
        "points": ("[month, $/GPU-hour]", "dated rents, months from t0 strictly increasing; "
                   "linear between points, the rent process after the last"),
        "scope": ("", "market: the path is the common rent factor and moves every other AI "
                      "generation's rent in proportion over its months; generation: this "
                      "generation only"),
    },
    "LeadTimePath": {
        "generation": ("", "the generation whose new units have the lead time"),
        "points": ("[month, months]", "dated lead times of a new unit, months from t0 "
                   "strictly increasing; linear between points, 0 before the first, the last "
                   "value after the last"),
    },
    "BorrowerType": {
        "count": ("borrowers", "number of borrowers of this type"),
        "fleet_mean": ("GPUs", "mean fleet per borrower (lognormal)"),
        "fleet_sigma": ("", "lognormal sigma of the fleet size"),
        "fleet_mix": ("weights", "fleet shares by generation (shipping generations only)"),
        "ltv": (FRAC, "loan-to-cost at origination"),
        "capex_multiple": ("", "all-in cost per GPU / list price"),
        "spread": ("1/year", "loan spread over SOFR"),
        "term_months": (M, "loan term"),
        "amortisation": ("1/year", "share of original principal repaid a year"),
        "contracted_share": (FRAC, "share of the fleet on contracted rent"),
        "contract_premium": ("", "contracted rent / t0 spot rent"),
        "contract_months_max": (M, "longest remaining contract"),
        "guarantee_prob": (FRAC, "probability a contract has a hyperscaler guarantee"),
        "guarantee_cover": (FRAC, "share of contracted rent the guarantor keeps paying"),
        "cash_months": (M, "opening cash in months of opex + debt service"),
        "payout_months": (M, "cash above this many months is paid out"),
        "revolver_share": (FRAC, "revolver limit as a share of the term facility"),
        "fixed_opex_per_gpu": ("$/GPU-month", "fixed operating cost"),
        "hashrate_mean": ("PH/s", "mean hashrate per miner (miners only)"),
        "mining_cost": ("$/PH/day", "cash cost of mining; curtailed below it"),
        "btc_treasury_mean": ("BTC", "mean BTC treasury per miner"),
        "btc_pledge": (FRAC, "share of the treasury pledged to the GPU lenders"),
        "guarantee_spread_cut": ("1/year", "spread cut for a guaranteed borrower (IG "
                                 "offtaker); 0 = same spread"),
        "guarantee_ltv": (FRAC, "loan-to-cost of a guaranteed borrower; 0 = same as ltv"),
    },
    "Borrowers": {
        "tenant_default_calm": ("1/month", "probability a contracted tenant walks away, calm"),
        "tenant_default_stress": ("1/month", "the same under stress"),
        "loan_age_max": (M, "loans were originated 0..this many months before t0"),
        "voluntary_discount": (FRAC, "voluntary sales ask value in best use less this"),
    },
    "LenderType": {
        "share": (FRAC, "share of the lender population"),
        "capital_ratio": (FRAC, "equity / assets at t0"),
        "interbank_share": (FRAC, "share of assets funded by other lenders"),
        "cash_share": (FRAC, "share of assets held as cash"),
        "mark": ("", "how collateral is marked: book, appraisal or market"),
        "sale_discount": (FRAC, "patience: a normal lender asks mark x (1 - this)"),
        "gpu_share": (FRAC, "GPU loans / all loans at t0 (1 = GPU loans only; the rest is a "
                            "book of other loans)"),
        "other_yield": ("1/year", "interest earned on other (non-GPU) loans"),
        "other_loss_calm": ("1/year", "share of other loans written off a year, calm"),
        "other_loss_stress": ("1/year", "the same under stress"),
    },
    "Lenders": {
        "count": ("lenders", "number of lenders"),
        "ltv_max": ("", "LTV covenant: a breach starts a margin call"),
        "ltv_cure": ("", "a margin call is cured at or below this LTV"),
        "dscr_min": ("", "debt-service cover covenant"),
        "cure_months": (M, "months to cure a breach before default"),
        "cash_sweep": (FRAC, "spare cash swept to prepay after a DSCR breach"),
        "dscr_default_months": (M, "a DSCR breach still open this many months after the "
                                   "cash sweep started is a default (0 = never)"),
        "grace_months": (M, "arrears tolerated before payment default"),
        "refi_ltv": ("", "a maturing loan rolls over only at or below this LTV"),
        "capital_floor": (FRAC, "deleverage below this share of the t0 capital ratio"),
        "run_rate": ("1/month", "share of funding withdrawn from a distressed lender"),
        "holding_cost": ("$/GPU-month", "cost of warehousing repossessed GPUs"),
        "max_hold_months": (M, "months before a repossessed GPU is sold at any price"),
        "appraisal_lag": (M, "window of the appraisal average"),
        "funding_rate_spread": ("1/year", "lenders' funding cost over SOFR"),
    },
    "BuyerType": {
        "count": ("buyers", "number of buyers of this type"),
        "hurdle": ("1/year", "discount rate"),
        "integration_cost": ("$/GPU", "cost of integrating a bought GPU"),
        "capital": (USD, "capital for secondary purchases, each"),
        "spare_mw": ("MW", "powered, cooled space, each"),
        "life_months": (M, "economic life from launch they plan on"),
        "close_days": ("days", "mean days to close a purchase (0 = bids in every auction)"),
    },
    "Buyers": {
        "capacity_scale": ("x", "multiplies every buyer's capital and spare MW"),
        "unlimited": ("", "buyers without capital or power limits (a frictionless market)"),
        "capital_regrowth": ("1/month", "share of the gap to initial capital refilled"),
        "mw_regrowth": ("1/month", "MW added, share of initial spare MW"),
        "adapt": (FRAC, "adaptive-expectations gain on observed price changes"),
        "salvage_floor": (FRAC, "salvage buys anything at this share of list price"),
        "spot_opex_per_gpu": ("$/GPU-month", "running cost buyers expect besides power"),
        "value_cap": ("", "no value or reservation above the new-unit price (with a lead "
                               "time: above it paid at delivery plus the earnings forgone "
                               "while waiting)"),
        "retirement": ("", "life: each type's life_months from launch; economic: earn while "
                           "rent covers running cost, up to physical_life_months"),
        "physical_life_months": (M, "physical life from launch (retirement = economic)"),
    },
    "OutsideDemand": {
        "enabled": ("", "outside demand (out-of-sector buyers) replaces the salvage sink"),
        "top": (FRAC, "first outside bid, share of min(replacement cost, value in best use)"),
        "depth": (FRAC, "units per month over which outside bids fall by 1/e, share of the "
                        "generation's units"),
        "scrap": (FRAC, "scrap value, share of replacement cost: the outside demand's floor"),
    },
    "Sites": {
        "enabled": ("", "borrowers' sites (MW, cooling) are assets: repossessed, hosted, sold"),
        "headroom_min": ("x", "site IT MW / fleet IT load, lower end of the uniform draw"),
        "headroom_max": ("x", "site IT MW / fleet IT load, upper end of the uniform draw"),
        "liquid_prob": (FRAC, "probability a site without liquid-only GPUs is liquid-cooled"),
        "mining_mw_per_ph": ("MW per PH/s", "power of a miner's mining hall per unit hashrate"),
        "buyer_liquid_share": (FRAC, "share of each buyer's spare MW that is liquid-cooled"),
        "build_cost_per_mw": ("$/MW", "AI-ready build cost: the most a buyer pays for site MW"),
        "conversion_cost_per_mw": ("$/MW", "capital to convert air-cooled MW to liquid"),
        "conversion_months": (M, "months from paying for a conversion to liquid MW"),
        "conversion_rate": ("1/month", "share of air spare MW a buyer converts when it pays"),
        "sale_months": (M, "months a lender markets a repossessed site before a sale"),
        "sell_with_fleet": ("", "a site is sold with the lender's units that fit it, at "
                                "the price index"),
        "max_hold_months": (M, "an unsold site is given up (MW retired) after this"),
        "host_in_place": ("", "repossessed GPUs run in place at a host while the site is held"),
        "hosting_per_kw_month": ("$/kW-month", "host's charge for running a GPU in place"),
        "arbitrage": ("", "miners switch mining MW to AI hosting when it pays more"),
        "host_share": (FRAC, "share of a GPU's net rent per MW a hosting miner earns"),
        "switch_cost_per_mw": ("$/MW", "cost of switching one MW between mining and AI"),
        "switch_payback_months": (M, "months over which a switch must pay back its cost"),
        "switch_rate": ("1/month", "share of a mining hall that can be switched a month"),
        "host_demand_mw": ("MW/month", "mining MW all miners together can newly let to AI"),
    },
    "Market": {
        "mode": ("", "auction (agent-based call auction) or parametric (price formula)"),
        "k": ("", "k-double auction price rule (0 = bid side, 1 = ask side)"),
        "alpha": ("", "parametric mode: p = p0 exp(-alpha q / stock)"),
        "unsold_to_salvage": ("", "the salvage buyer bids without limit at the floor"),
    },
    "NetworkCfg": {
        "kind": ("", "erdos_renyi, scale_free, core_periphery or edgelist"),
        "syndicate": ("lenders", "mean lenders per borrower"),
        "funding_degree": ("lenders", "mean funders per lender"),
        "core_share": (FRAC, "core-periphery: share of lenders in the core"),
        "edgelist": ("", "path of a lender->lender funding edge list (kind = edgelist)"),
    },
    "Repo": {
        "enabled": ("", "switch the repo desk (a working repo market) on"),
        "h0": (FRAC, "base haircut"),
        "kappa": ("", "haircut rise per unit of price shortfall"),
        "capacity": (USD, "repo loans + purchases at cost the desk can hold"),
        "penalty_spread": ("1/year", "repo rate over SOFR (lend freely at a penalty rate)"),
        "buy_floor": ("", "the desk also bids at (1 - haircut) x reference value"),
        "design": ("", "legacy (h0/kappa haircut, buys at its floor) or secured (term loan, "
                   "variation margin, no bids)"),
        "z": ("", "secured: quantile of the price move the haircut covers (2.33 = 99 %)"),
        "sigma": ("1/sqrt(month)", "secured: floor on the collateral's monthly price volatility"),
        "vol_window": ("months", "secured: window of the realised price volatility"),
        "liq_months": ("months", "secured: liquidation horizon (margin period of risk)"),
        "liq_addon": (FRAC, "secured: liquidity add-on to the haircut"),
        "term_months": ("months", "secured: term of a repo loan (then repaid or rolled)"),
        "borrowers": ("", "secured: solvent borrowers may borrow against their fleet's equity"),
        "funding_spread": ("1/year", "the desk's cost of capital over SOFR on what it has "
                                     "deployed (loans + GPUs at cost), paid to its funders"),
    },
    "Lolr": {
        "enabled": ("", "switch the buyer of last resort on (outright purchases at a floor)"),
        "floor_share": (FRAC, "its bid, share of the value in best use"),
        "capacity": (USD, "purchases at cost it can hold"),
        "mw": ("MW", "its own powered IT MW (units held need kW)"),
        "hosting_mw": ("MW", "further IT MW under a hosting contract"),
        "hosting_per_kw_month": ("$/kW-month", "hosting fee on the kW it uses beyond its own MW"),
        "hold_months": ("months", "it sells, patiently, units held this long"),
        "funding_spread": ("1/year", "its cost of capital over SOFR on the GPUs it holds at "
                                     "cost, paid to its funders"),
    },
    "Contagion": {
        "alpha": (FRAC, "Rogers-Veraart: share of external assets realised in default"),
        "beta": (FRAC, "Rogers-Veraart: share of interbank claims realised in default"),
    },
    "Metrics": {
        "cascade_counterfactual": ("", "cascade = defaults beyond a same-seed run without the "
                                       "price and funding channels (runs it: ~2x run time)"),
        "losses_at_writeoff": ("", "credit_losses = write-offs net of recoveries at write-off "
                                   "(never falls); later recoveries reported apart"),
        "system_loss": ("", "every party's loss marked to market and the system loss, their "
                            "sum (records loss_*, system_loss*; summary losses); off: the "
                            "records and summary leave them out"),
    },
    "Shock": {
        "month": ("month", "month it lands (1 = the first simulated month)"),
        "kind": ("", "btc, rent, buyer_capital, guarantor_exit, funding or other_loans"),
        "size": (FRAC, "fall as a share (0.5 = halves)"),
        "lender_type": ("", "other_loans shocks: the lender type whose other (non-GPU) loans "
                            "lose size of their value ('' = every type)"),
    },
}


@dataclass(frozen=True)
class KeyRow:
    key: str
    default: str
    bounds: str
    unit: str
    meaning: str


def _model_of(ann: Any) -> tuple[str, type[BaseModel]] | None:
    """('', Model), ('list', Model) or ('dict', Model) for a nested config annotation."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "", ann
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    inner = args[-1] if args else None
    if origin in (list, dict) and isinstance(inner, type) and issubclass(inner, BaseModel):
        return origin.__name__, inner
    return None


def _bounds(f: FieldInfo) -> str:
    lo = hi = ""
    for m in f.metadata:
        if isinstance(m, Ge):
            lo = f"{_fmt(m.ge)} <= "
        elif isinstance(m, Gt):
            lo = f"{_fmt(m.gt)} < "
        elif isinstance(m, Le):
            hi = f" <= {_fmt(m.le)}"
        elif isinstance(m, Lt):
            hi = f" < {_fmt(m.lt)}"
    ann = f.annotation
    choices = typing.get_args(ann) if typing.get_origin(ann) is typing.Literal else ()
    if choices:
        return " | ".join(map(str, choices))
    if ann is bool:
        return "true | false"
    return f"{lo}x{hi}" if lo or hi else ""


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int) and v == 2**63 - 1:
        return "2^63-1"
    if v is None:
        return "none"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _walk(model: BaseModel | None, cls: type[BaseModel], prefix: str,
          items: list[tuple[str, BaseModel]] | None = None) -> list[KeyRow]:
    """Rows for the fields of ``cls``; ``items`` are (label, instance) of a list or table."""
    rows = []
    docs = DOCS.get(cls.__name__, {})
    for name, f in cls.model_fields.items():
        nested = _model_of(f.annotation)
        if nested is not None:
            kind, sub = nested
            value = getattr(model, name)
            if kind == "":
                rows += _walk(value, sub, f"{prefix}{name}.")
            elif kind == "list":
                labels = [getattr(v, "name", str(i)) for i, v in enumerate(value)]
                rows += _walk(None, sub, f"{prefix}{name}.N.", list(zip(labels, value,
                                                                         strict=True)))
            else:
                rows += _walk(None, sub, f"{prefix}{name}.TYPE.", list(value.items()))
            continue
        if items is not None:
            default = " · ".join(f"{k} {_fmt(getattr(v, name))}" for k, v in items) or (
                "(none by default)")
        else:
            default = _fmt(getattr(model, name))
        unit, meaning = docs[name]
        rows.append(KeyRow(prefix + name, default, _bounds(f), unit, meaning))
    return rows


def describe_keys(prefix: str | None = None) -> list[KeyRow]:
    """Every config key (defaults of the built-in scenario), or those starting with
    ``prefix``."""
    rows = _walk(Scenario(), Scenario, "")
    if prefix:
        rows = [r for r in rows if r.key.startswith(prefix.strip())]
    return rows


SHOCK_NAMES = {"btc": "BTC", "rent": "rent", "buyer_capital": "buyer capital",
               "guarantor_exit": "guarantor exit", "funding": "funding",
               "other_loans": "other-loan loss"}


def _meaning(key: str) -> tuple[str, str] | None:
    """(unit, meaning) of a dotted key with real indices and names
    (``lenders.types.bank.share``, ``shocks.0.size``), or None."""
    parts = key.split(".")
    cls: type[BaseModel] = Scenario
    i = 0
    while i < len(parts):
        f = cls.model_fields.get(parts[i])
        if f is None:
            return None
        nested = _model_of(f.annotation)
        if nested is None:
            return DOCS.get(cls.__name__, {}).get(parts[i]) if i == len(parts) - 1 else None
        kind, cls = nested
        i += 2 if kind else 1  # a list index or a table's name follows a list or a table
    return None


def human_key(key: str, base: dict | None = None) -> str:
    """A figure label for a config key: ``shocks.0.size`` -> ``BTC shock in month 3`` (the
    base scenario's shock 0), ``policy.repo.enabled`` -> ``switch the repo desk ... on``;
    the meaning of ``liqsim keys``, with its unit. Unknown keys are returned as they are."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "shocks" and parts[1].isdigit():
        shocks = (base or {}).get("shocks") or []
        i = int(parts[1])
        if i < len(shocks) and isinstance(shocks[i], dict):
            s = shocks[i]
            kind = SHOCK_NAMES.get(s.get("kind"), s.get("kind"))
            name = f"{kind} shock in month {s.get('month')}"
            return name if parts[2] == "size" else f"{name}: {parts[2]}"
    if len(parts) == 4 and parts[:2] == ["environment", "generations"] and parts[2].isdigit():
        gens = ((base or {}).get("environment") or {}).get("generations") or []
        i = int(parts[2])
        found = _meaning(key)
        if i < len(gens) and found:
            return f"{gens[i].get('name')} {found[1]}" + (f" ({found[0]})" if found[0] else "")
    if key in SHORT:
        return SHORT[key]
    found = _meaning(key)
    if found is None:
        return key
    unit, meaning = found
    who = next((p for p in parts[1:-1] if p in ("miner", "neocloud")), None)
    if len(parts) == 4 and parts[1] == "types":
        who = parts[2]
    return (f"{who}: " if who else "") + meaning + (f" ({unit})" if unit else "")


# shorter labels for the keys sweeps vary most
SHORT = {"policy.repo.enabled": "repo desk on", "buyers.capacity_scale":
         "buyer capacity (x scenario)", "environment.rent_deflation": "rent deflation (1/year)",
         "environment.rho_stress": "BTC-rent correlation under stress",
         "environment.rho_calm": "BTC-rent correlation, calm"}
