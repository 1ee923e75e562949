"""Scenario configuration: pydantic models read from TOML.

Every default below is a sourced figure (docs/calibration.md) or a stated modelling assumption;
``docs/calibration.md`` gives the source of each one. Unknown keys and out-of-range values are
rejected with :class:`ConfigError`, whose message names the key, the value and what is allowed.
So are ``true``/``false`` where a number is expected, values above the upper bounds below
(``MAX_PRICE`` and friends) and names that are not one safe folder name (:func:`safe_name`).

A scenario file is laid over the defaults: tables merge key by key (so a
``[lenders.types.hedge_fund]`` table adds a lender type next to the default ones), lists
(generations, shocks) replace the default list whole.

Money is in US dollars, GPUs in integer units, time in months (t0 = 2025-12).
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import stat
import tomllib
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "experiments" / "scenarios"

Frac = Annotated[float, Field(ge=0.0, le=1.0)]


# Upper bounds on money, prices and physical sizes. A finite value near the float limit (1e305)
# passes "finite" but overflows to inf once multiplied by fleet sizes, rates and horizons, and
# the clearing then refuses the non-finite liabilities with a traceback. The money bounds are
# at least 1,000 times the largest calibrated or shipped value, the rate, volatility and ratio
# bounds in the fields below far above any plausible one, so no bound binds a plausible world,
# and products of bounded values (at most ~1e30) stay far inside the float range.
MAX_PRICE = 1e9  # $ per unit: a GPU's list price, a BTC, a buyer's integration cost per GPU
MAX_BUDGET = 1e15  # $ held by one agent (buyer capital, repo capacity): ~30 x US GDP
MAX_RUNNING_COST = 1e6  # $ per GPU-month (opex, holding) or per PH/day, $/MWh, $/GPU-hour
MAX_SPREAD = 1.0  # annual rate over SOFR (10,000 bp; the largest shipped spread is 0.08)

# A scenario's name is a results folder, so it must be one safe path component.
NAME_RULE = "letters, digits, '_', '-' and '.', not starting with '.', at most 200 characters"
_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")


class ConfigError(ValueError):
    """A scenario, override or flag that cannot be used; the message is one line for the user."""


def safe_name(value: Any, what: str = "name") -> str:
    """Return ``value`` if it can name a folder (one path component, see ``NAME_RULE``).

    ``..``, ``.`` and hidden names would write outside or beside the results folder, so they
    are refused; raises :class:`ConfigError` (a ``ValueError``, so it also works inside a
    pydantic validator) naming ``what``.
    """
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ConfigError(f"{what} = {short_repr(value)}: not a usable name; the "
                          f"pattern is {NAME_RULE}")
    return value


def _is_number_type(tp: Any) -> bool:
    """``int``, ``float`` or an optional one (``Annotated`` metadata already stripped)."""
    if get_origin(tp) in (Union, types.UnionType):
        return any(_is_number_type(a) for a in get_args(tp) if a is not type(None))
    return tp in (int, float)


def _bool_for_number(tp: Any, value: Any, where: str = "") -> tuple[str, bool] | None:
    """The first bool standing in ``value`` for a number of type ``tp``: where it is (``""``
    or ``".<index>"`` in a list) and the bool, or None."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if isinstance(value, bool):
        return (where, value) if _is_number_type(tp) else None
    if get_origin(tp) is list and isinstance(value, list):
        for i, item in enumerate(value):
            found = _bool_for_number(get_args(tp)[0], item, f"{where}.{i}")
            if found is not None:
                return found
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse ``true``/``false`` where a number is expected (pydantic's lax mode reads them
        as 1 and 0, so ``months = true`` would run one month); ints still become floats."""
        if not isinstance(value, bool | list):  # the common case: nothing to look up
            return value
        found = _bool_for_number(cls.model_fields[info.field_name].annotation, value)
        if found is not None:
            raise PydanticCustomError("bool_as_number", "expected a number, got {got}",
                                      {"got": str(found[1]).lower(), "where": found[0]})
        return value


# --------------------------------------------------------------------------- environment
class Generation(_Strict):
    """One NVIDIA GPU generation. Launch month is relative to t0 (negative = already shipping)."""

    name: str = Field(min_length=1)
    launch_month: int = Field(ge=-240, le=600)
    list_price: float = Field(gt=0.0, le=MAX_PRICE)
    # incl. rack overhead (network, CPU, cooling fans), before PUE; <= 1 MW a GPU
    kw_per_gpu: float = Field(gt=0.0, le=1000.0)
    # $/GPU-hour at t0 (or at launch, for a future generation)
    rent0: float = Field(gt=0.0, le=MAX_RUNNING_COST)
    # "compute": the AI rent process; "hashprice": rent0 x hashprice / hashprice0 (mining rigs
    # as collateral, e.g. the asic_2022 validation scenario)
    rent_index: Literal["compute", "hashprice"] = "compute"
    # cooling the generation's racks need (sites.enabled only): "liquid" units (GB200 NVL72,
    # ~120 kW racks) can only be installed in liquid-cooled MW; "air" units (H100, ~40 kW
    # racks) in either
    cooling: Literal["air", "liquid"] = "air"
    # installed (system) cost of one new GPU: chip + server share + networking, $/GPU; the
    # new-unit (replacement) price. 0 = environment.installed_multiple x list_price
    system_cost: float = Field(0.0, ge=0.0, le=MAX_PRICE)


def _default_generations() -> list[Generation]:
    return [
        Generation(name="A100", launch_month=-66, list_price=15_000, kw_per_gpu=0.55, rent0=1.20),
        Generation(name="H100", launch_month=-30, list_price=27_500, kw_per_gpu=1.25, rent0=2.00),
        Generation(name="H200", launch_month=-12, list_price=30_000, kw_per_gpu=1.30, rent0=2.60),
        Generation(name="B200", launch_month=-6, list_price=35_000, kw_per_gpu=1.67, rent0=5.00,
                   cooling="liquid"),
        # Rubin's launch rent: the zero-profit rent at which the marginal (tier-2) buyer values
        # a new installed unit at its price (experiments/value_paths.py zero_profit_rent)
        Generation(name="Rubin", launch_month=10, list_price=45_000, kw_per_gpu=2.00, rent0=4.32,
                   cooling="liquid"),
    ]


def _path_error(text: str) -> PydanticCustomError:
    """A rent-path error reported as ``key = value: text`` (``format_error``)."""
    return PydanticCustomError("rent_path", "{text}", {"text": text})


class RentPath(_Strict):
    """An observed rent path of one generation (docs/model.md, "GPU backtest"): dated points
    [month, $/GPU-hour], months counted from t0, strictly increasing integers; the rent is
    linear in $/h between points and the model's own process after the last one.

    ``scope = "market"`` (the default) reads the path as the market's common rent factor, as
    the rent process has one common shock and trend for every AI generation: over the path's
    months every other compute generation's rent moves in proportion to it. ``"generation"``
    moves the named generation only; the others keep their own trend and noise."""

    generation: str = Field(min_length=1)  # the name of a "compute" generation
    points: list[list[float]] = Field(min_length=1, max_length=601)
    scope: Literal["market", "generation"] = "market"

    @field_validator("points")
    @classmethod
    def _points(cls, pts: list[list[float]]) -> list[list[float]]:
        return _dated_points(pts, _path_error, "rent $/GPU-hour",
                             lambda rent: 0.0 < rent <= MAX_RUNNING_COST,
                             f"the rent must be > 0 and <= {MAX_RUNNING_COST:g} $/GPU-hour")


def _dated_points(pts: list[list[float]], error, value: str, ok,
                  bound: str) -> list[list[float]]:
    """Check a dated path [[month, value], ...] (rent paths, lead-time paths): pairs, whole
    months 0-600 strictly increasing, each value ``ok``; else ``error(text)`` naming the
    point (``value`` says what the second number is, ``bound`` what it must be)."""
    for i, p in enumerate(pts):
        if len(p) != 2:
            raise error(f"point {i} = {p}: expected [month, {value}]")
        month, v = p
        if month != int(month) or not 0 <= month <= 600:
            raise error(f"point {i} = {p}: the month must be a whole number 0-600")
        if not ok(v):
            raise error(f"point {i} = {p}: {bound}")
        if i and month <= pts[i - 1][0]:
            raise error(f"point {i} = {p}: months must increase strictly")
    return pts


MAX_LEAD_MONTHS = 60.0  # five years: longer than any quoted wait for a GPU server


class LeadTimePath(_Strict):
    """Delivery lead time of new units of one generation (docs/model.md, "Lead time of new
    units"): dated points [month, months of lead time], months counted from t0, strictly
    increasing whole numbers; linear between points, 0 before the first point (a new unit
    then ships at once) and the last value after the last one."""

    generation: str = Field(min_length=1)  # the name of a generation
    points: list[list[float]] = Field(min_length=1, max_length=601)

    @field_validator("points")
    @classmethod
    def _points(cls, pts: list[list[float]]) -> list[list[float]]:
        return _dated_points(pts, _lead_error, "months of lead time",
                             lambda lead: 0.0 <= lead <= MAX_LEAD_MONTHS,
                             f"the lead time must be >= 0 and <= {MAX_LEAD_MONTHS:g} months")


def _lead_error(text: str) -> PydanticCustomError:
    """A lead-time-path error reported as ``key = value: text`` (``format_error``)."""
    return PydanticCustomError("lead_time_path", "{text}", {"text": text})


class EnvironmentCfg(_Strict):
    """The ``[environment]`` table: the exogenous world's parameters (the runtime world they
    drive is :class:`sim.core.environment.Environment`)."""

    generations: list[Generation] = Field(default_factory=_default_generations, min_length=1)
    # d: one chip's rent falls by d a year, launch steps included (fitted to used H100/A100
    # prices, docs/calibration.md "Installed-unit values")
    rent_deflation: float = Field(0.15, ge=0.0, le=0.99)
    # monthly sigma of the common rent shock; <= 1 keeps exp(sigma z) and its -sigma^2/2 drift
    # over 600 months inside the float range
    rent_vol: float = Field(0.04, ge=0.0, le=1.0)
    # phi: rent step for every older generation at a launch; 0 by default because d already
    # contains the generational steps (a scenario that keeps one nets it with launch_rate);
    # < 1: a step of 100 % would make the netted trend ln(1 - phi) infinite
    step_down: float = Field(0.0, ge=0.0, le=0.99)
    utilisation: Frac = 0.85  # spot fleet utilisation
    # >= 1 $: the BTC path is floored at 1e-9 $ (sim/core/environment.py), far below any start
    btc_price0: float = Field(90_000.0, ge=1.0, le=MAX_PRICE)
    btc_drift: float = Field(0.0, ge=-1.0, le=1.0)  # annual log drift
    btc_vol_calm: float = Field(0.50, ge=0.0, le=5.0)  # annual; <= 5 (1.44 a month)
    btc_vol_stress: float = Field(0.75, ge=0.0, le=5.0)
    # false: BTC moves only by `btc` shocks (a historical episode's path, e.g. asic_2022); the
    # volatilities above still set the risk buyers price into hashprice-linked revenue
    btc_random_walk: StrictBool = True
    rho_calm: float = Field(0.3, ge=-1.0, le=1.0)  # BTC-rent shock correlation, calm
    rho_stress: float = Field(0.8, ge=-1.0, le=1.0)  # ... once the stress indicator fires
    stress_drawdown: Frac = 0.30  # BTC drawdown from its running peak that flags stress
    hashprice0: float = Field(36.0, ge=0.0, le=MAX_RUNNING_COST)  # $/PH/day
    difficulty_growth: float = Field(0.25, ge=0.0, le=5.0)  # a year; erodes hashprice
    # miners' all-in cost, $/PH/day: buyers expect hashprice to revert to it (free entry and
    # exit of hashrate, Prat & Walter 2021); "median cost 44.8", TheMinerMag (B); 0 = off
    hashprice_cost: float = Field(44.8, ge=0.0, le=MAX_RUNNING_COST)
    power_price: float = Field(50.0, ge=0.0, le=MAX_RUNNING_COST)  # $/MWh
    pue: float = Field(1.25, ge=1.0, le=3.0)
    sofr: float = Field(0.043, ge=0.0, le=0.5)
    # installed-unit values: new-unit price / list price of a generation without its own
    # system_cost (server share, networking; 1 = the bare chip)
    installed_multiple: float = Field(1.3, gt=0.0, le=5.0)
    # facility (colocation) charge, $ per kW of IT load a month, on top of power x PUE
    # (CBRE North America Data Center Trends H2 2024: 184.06 $/kW-month, 250-500 kW)
    facility_cost: float = Field(184.0, ge=0.0, le=MAX_RUNNING_COST)
    # launches a year that rent_deflation already contains: the trend between launches is
    # ln(1 - d) - launch_rate ln(1 - step_down), so steps are not counted twice (0 = off)
    launch_rate: float = Field(0.0, ge=0.0, le=12.0)
    # observed rent paths (a backtest): the named generation's rent follows the dated points
    # from its first to its last month, whatever the rent process would do (empty = off)
    rent_path: list[RentPath] = Field(default_factory=list)
    # delivery lead times of new units (time to build): the value cap becomes the new price
    # paid at delivery plus the net earnings forgone while waiting (empty = no lead time)
    lead_time_path: list[LeadTimePath] = Field(default_factory=list)


# --------------------------------------------------------------------------- agents
class BorrowerType(_Strict):
    count: int = Field(ge=0, le=1_000_000)
    fleet_mean: float = Field(gt=0.0, le=1e6)  # GPUs per borrower (lognormal mean)
    fleet_sigma: float = Field(0.6, ge=0.0, le=3.0)  # lognormal sigma
    # weights by generation (existing generations only); <= 1e6 so their sum stays finite
    fleet_mix: list[Annotated[float, Field(ge=0.0, le=1e6)]]
    ltv: float = Field(0.75, gt=0.0, le=1.0)  # loan-to-cost at origination
    # all-in cost per GPU / new-unit (installed) price: fit-out beyond the installed unit
    capex_multiple: float = Field(1.0, ge=1.0, le=5.0)
    spread: float = Field(ge=0.0, le=MAX_SPREAD)  # over SOFR
    term_months: int = Field(36, ge=1, le=240)
    amortisation: Frac = 0.20  # of original principal a year
    contracted_share: Frac
    contract_premium: float = Field(1.2, ge=0.0, le=10.0)  # locked rent / t0 spot rent
    contract_months_max: int = Field(48, ge=1, le=240)
    guarantee_prob: Frac
    guarantee_cover: Frac = 0.5  # share of contracted rent the guarantor keeps paying
    # opening cash, in months of opex + debt service (<= 100 years)
    cash_months: float = Field(3.0, ge=0.0, le=1200.0)
    # cash above this many months is paid out (capex, dividends)
    payout_months: float = Field(6.0, ge=0.0, le=1200.0)
    revolver_share: Frac = 0.10  # revolver limit, share of the term facility
    fixed_opex_per_gpu: float = Field(300.0, ge=0.0, le=MAX_RUNNING_COST)  # $/GPU-month
    # miners only
    hashrate_mean: float = Field(0.0, ge=0.0, le=1e7)  # PH/s
    # cash cost $/PH/day; mining is curtailed below it
    mining_cost: float = Field(32.0, ge=0.0, le=MAX_RUNNING_COST)
    btc_treasury_mean: float = Field(0.0, ge=0.0, le=2.1e7)  # BTC held
    btc_pledge: Frac = 0.0  # share of the treasury pledged to the GPU lenders
    # guaranteed borrowers (an investment-grade offtaker): spread cut and advance rate
    guarantee_spread_cut: float = Field(0.0, ge=0.0, le=MAX_SPREAD)  # 0 = same spread
    guarantee_ltv: Frac = 0.0  # loan-to-cost of a guaranteed borrower; 0 = same as ltv


def _miners() -> BorrowerType:
    # guaranteed: Cipher's 7.125 % all-in (8-K 2025) = SOFR + 2.8 %, 0.4 % under 3.2 %
    return BorrowerType(count=120, fleet_mean=1_500, fleet_mix=[0.10, 0.50, 0.25, 0.15],
                        spread=0.032, contracted_share=0.5, guarantee_prob=0.2,
                        hashrate_mean=8_000, btc_treasury_mean=600, btc_pledge=0.5,
                        guarantee_spread_cut=0.004, guarantee_ltv=0.85)


def _neoclouds() -> BorrowerType:
    # guaranteed: SOFR + 2.25 % with an investment-grade offtaker vs + 4.5 % (CoreWeave)
    return BorrowerType(count=60, fleet_mean=6_000, fleet_mix=[0.05, 0.40, 0.20, 0.35],
                        spread=0.045, contracted_share=0.9, guarantee_prob=0.3,
                        guarantee_spread_cut=0.0225, guarantee_ltv=0.85)


class Borrowers(_Strict):
    miner: BorrowerType = Field(default_factory=_miners)
    neocloud: BorrowerType = Field(default_factory=_neoclouds)
    tenant_default_calm: Frac = 0.002  # monthly probability a contracted tenant walks away
    tenant_default_stress: Frac = 0.02
    loan_age_max: int = Field(24, ge=0, le=240)  # loans were originated 0..max months ago
    voluntary_discount: Frac = 0.15  # voluntary sales ask the value in best use less this


class LenderType(_Strict):
    share: Frac  # share of the lender population
    capital_ratio: float = Field(gt=0.0, le=1.0)  # equity / assets at t0
    interbank_share: Frac  # share of assets funded by other lenders
    cash_share: Frac = 0.05  # share of assets held as cash
    mark: Literal["book", "appraisal", "market"]
    sale_discount: Frac  # patience: a normal lender asks mark * (1 - sale_discount)
    # other (non-GPU) assets: GPU loans are gpu_share of the loan book (1 = GPU loans only)
    gpu_share: float = Field(1.0, gt=0.0, le=1.0)
    other_yield: float = Field(0.0, ge=0.0, le=MAX_SPREAD)  # a year, on other loans
    other_loss_calm: Frac = 0.0  # share of other loans written off a year, calm months
    other_loss_stress: Frac = 0.0  # ... under stress (env.stress)


def _lender_types() -> dict[str, LenderType]:
    return {
        # other loans: sources in docs/calibration.md ("Lenders with other assets")
        "bank": LenderType(share=0.3, capital_ratio=0.10, interbank_share=0.10, mark="appraisal",
                           sale_discount=0.20, gpu_share=0.03, other_yield=0.065,
                           other_loss_calm=0.005, other_loss_stress=0.03),
        "private_credit": LenderType(share=0.5, capital_ratio=0.30, interbank_share=0.45,
                                     mark="book", sale_discount=0.35, gpu_share=0.15,
                                     other_yield=0.10, other_loss_calm=0.011,
                                     other_loss_stress=0.03),
        "abl": LenderType(share=0.2, capital_ratio=0.15, interbank_share=0.30, mark="market",
                          sale_discount=0.10, gpu_share=0.30, other_yield=0.09,
                          other_loss_calm=0.008, other_loss_stress=0.025),
    }


class Lenders(_Strict):
    count: int = Field(20, ge=1, le=100_000)
    types: dict[str, LenderType] = Field(default_factory=_lender_types, min_length=1)
    ltv_max: float = Field(0.85, gt=0.0, le=2.0)  # LTV covenant: a breach starts a margin call
    ltv_cure: float = Field(0.75, gt=0.0, le=2.0)  # the call is cured at or below this LTV
    dscr_min: float = Field(1.0, ge=0.0, le=100.0)  # debt-service cover covenant
    cure_months: int = Field(3, ge=0, le=60)
    cash_sweep: Frac = 0.5  # share of spare cash swept to prepay after a DSCR breach
    # a DSCR breach still open this many months after the sweep started is a default (0 = never)
    # (6: 3 + 6 = 9 months of breach, near the 8 months from loan to default of the Iris Energy
    # SPVs, SEC 6-K)
    dscr_default_months: int = Field(6, ge=0, le=120)
    grace_months: int = Field(1, ge=0, le=60)  # arrears tolerated before payment default
    refi_ltv: float = Field(0.80, gt=0.0, le=2.0)  # a maturing loan rolls only at or below
    capital_floor: Frac = 0.5  # deleverage below this share of the t0 capital ratio
    run_rate: Frac = 0.10  # monthly share of funding withdrawn from a distressed lender
    # $/GPU-month for warehoused repossessed GPUs
    holding_cost: float = Field(60.0, ge=0.0, le=MAX_RUNNING_COST)
    max_hold_months: int = Field(6, ge=0, le=120)
    appraisal_lag: int = Field(3, ge=1, le=24)
    # lenders' funding cost over SOFR
    funding_rate_spread: float = Field(0.01, ge=0.0, le=MAX_SPREAD)


class BuyerType(_Strict):
    count: int = Field(ge=0, le=100_000)
    hurdle: float = Field(ge=0.0, le=2.0)  # annual discount rate
    integration_cost: float = Field(ge=0.0, le=MAX_PRICE)  # $/GPU
    capital: float = Field(ge=0.0, le=MAX_BUDGET)  # $ available for secondary purchases, each
    spare_mw: float = Field(ge=0.0, le=1e6)  # MW of powered, cooled space, each (<= 1 TW)
    life_months: int = Field(ge=1, le=240)  # economic life from launch they plan on
    # mean days to find a sale, diligence, contract and power a fleet: the buyer bids in a
    # D-day sale with probability 1 - exp(-D / close_days); 0 = bids in every auction
    close_days: float = Field(0.0, ge=0.0, le=3650.0)


def _buyer_types() -> dict[str, BuyerType]:
    return {
        "hyperscaler": BuyerType(count=3, hurdle=0.08, integration_cost=1_500,
                                 capital=250e6, spare_mw=15, life_months=72,
                                 close_days=240),
        "tier2": BuyerType(count=10, hurdle=0.15, integration_cost=2_500,
                           capital=60e6, spare_mw=4, life_months=60,
                           close_days=240),
        "broker": BuyerType(count=8, hurdle=0.30, integration_cost=1_000,
                            capital=40e6, spare_mw=3, life_months=48,
                            close_days=18),
    }


class OutsideDemand(_Strict):
    """Downward-sloping outside demand (out-of-sector and overseas buyers) that replaces the
    salvage sink when enabled: bids p(q) = s R + (top min(R, V) - s R) exp(-q / (depth N))
    per generation and month (docs/model.md, "Outside demand")."""
    enabled: StrictBool = True  # off: the salvage sink at salvage_floor (the earlier market)
    top: Frac = 0.65  # first outside bid, share of min(replacement cost, value in best use)
    depth: float = Field(0.05, gt=0.0, le=1e6)  # e-folding units per month, share of stock
    scrap: Frac = 0.02  # scrap value, share of replacement cost (the schedule's floor)


class Buyers(_Strict):
    types: dict[str, BuyerType] = Field(default_factory=_buyer_types)
    capacity_scale: float = Field(1.0, ge=0.0, le=1e6)  # multiplies capital and spare MW
    unlimited: StrictBool = False  # buyers with no capital or power limit (a frictionless market)
    capital_regrowth: Frac = 0.05  # monthly share of the gap to initial capital refilled
    mw_regrowth: Frac = 0.01  # monthly MW added, share of initial spare MW
    adapt: Frac = 0.2  # adaptive-expectations gain on observed price changes
    salvage_floor: Frac = 0.08  # salvage buys anything at this share of list price
    # $/GPU-month buyers expect besides power
    spot_opex_per_gpu: float = Field(150.0, ge=0.0, le=MAX_RUNNING_COST)
    outside_demand: OutsideDemand = Field(default_factory=OutsideDemand)
    # true: no value or reservation above the new-unit price (environment new_unit_price;
    # with a lead time, above it paid at delivery plus the earnings forgone while waiting)
    value_cap: StrictBool = True
    # "life": each type's life_months from launch; "economic": a unit earns while rent covers
    # its running cost (the shut-down option) up to physical_life_months from launch
    retirement: Literal["life", "economic"] = "economic"
    physical_life_months: int = Field(96, ge=1, le=240)


class Market(_Strict):
    mode: Literal["auction", "parametric"] = "auction"
    k: Frac = 0.5  # k-double auction price rule
    alpha: float = Field(1.0536, ge=0.0, le=100.0)  # parametric mode: p = p0 exp(-alpha q / stock)
    unsold_to_salvage: StrictBool = True  # the salvage buyer bids without limit at the floor


class NetworkCfg(_Strict):
    kind: Literal["erdos_renyi", "scale_free", "core_periphery", "edgelist"] = "erdos_renyi"
    syndicate: float = Field(2.0, ge=1.0, le=1000.0)  # mean lenders per borrower
    funding_degree: float = Field(2.0, ge=0.0, le=1000.0)  # mean funders per lender
    core_share: Frac = 0.2  # core-periphery: share of lenders in the core
    edgelist: str | None = None  # path of a lender->lender funding edge list (kind=edgelist)


class Repo(_Strict):
    enabled: StrictBool = False
    h0: Frac = 0.20  # base haircut
    kappa: float = Field(0.5, ge=0.0, le=100.0)  # haircut rise per unit price shortfall
    capacity: float = Field(2.0e9, ge=0.0, le=MAX_BUDGET)  # $ of repo loans + purchases at cost
    # over SOFR (Bagehot: lend freely at a penalty rate)
    penalty_spread: float = Field(0.03, ge=0.0, le=MAX_SPREAD)
    buy_floor: StrictBool = True  # also bid at (1 - h) * reference value in the auction
    # "legacy": the desk above (h0/kappa haircut, buys at its floor); "secured": a secured
    # term loan with variation margin, haircut h = z sigma sqrt(liq_months) + liq_addon
    design: Literal["legacy", "secured"] = "secured"
    z: float = Field(2.33, ge=0.0, le=10.0)  # one-sided 99 % quantile of the price move
    sigma: float = Field(0.10, ge=0.0, le=5.0)  # floor on the monthly price volatility
    vol_window: int = Field(12, ge=2, le=120)  # months of the realised-volatility estimate
    liq_months: float = Field(1.0, ge=0.0, le=24.0)  # liquidation horizon (margin period)
    liq_addon: Frac = 0.05  # liquidity add-on to the haircut
    term_months: int = Field(3, ge=1, le=120)  # term of a secured repo loan
    borrowers: StrictBool = True  # solvent borrowers may borrow against their fleet's equity
    # the desk's cost of capital, over SOFR, on what it has deployed (loans + GPUs at cost),
    # paid to its funders (the public): its P&L carries it
    funding_spread: float = Field(0.0, ge=0.0, le=MAX_SPREAD)


class Lolr(_Strict):
    """Buyer of last resort: outright purchases at a floor (docs/model.md, issue 15)."""

    enabled: StrictBool = False
    floor_share: Frac = 0.5  # bids this share of the value in best use
    capacity: float = Field(2.0e9, ge=0.0, le=MAX_BUDGET)  # $ of purchases at cost
    mw: float = Field(50.0, ge=0.0, le=1.0e5)  # its own powered IT MW
    hosting_mw: float = Field(0.0, ge=0.0, le=1.0e5)  # further IT MW under a hosting contract
    hosting_per_kw_month: float = Field(184.0, ge=0.0, le=1.0e4)  # $ per kW-month hosted
    hold_months: int = Field(12, ge=1, le=600)  # sells (patiently) after this many months
    # its cost of capital, over SOFR, on the GPUs it holds at cost, paid to its funders
    funding_spread: float = Field(0.0, ge=0.0, le=MAX_SPREAD)


class Policy(_Strict):
    repo: Repo = Field(default_factory=Repo)
    lolr: Lolr = Field(default_factory=Lolr)


class Contagion(_Strict):
    alpha: Frac = 1.0  # Rogers-Veraart: share of external assets realised in default
    beta: Frac = 1.0  # ... and of interbank claims


class Metrics(_Strict):
    # cascade = defaults beyond a same-seed run without the price and funding channels
    cascade_counterfactual: StrictBool = True
    # credit_losses = write-offs net of recoveries at write-off (never falls); later
    # recoveries reported separately (summary and records)
    losses_at_writeoff: StrictBool = True
    # every party's loss marked to market and the system loss (docs/model.md, "Losses counted
    # for everyone"): records system_loss* and the summary's "losses" (off: today's outputs)
    system_loss: StrictBool = True


class Shock(_Strict):
    month: int = Field(ge=1, le=600)  # month 1 is the first simulated month (t0 is month 0)
    kind: Literal["btc", "rent", "buyer_capital", "guarantor_exit", "funding", "other_loans"]
    size: float = Field(ge=0.0, le=1.0)  # fall as a share (0.5 = halves)
    # kind "other_loans": the lender type whose other (non-GPU) loans lose ``size`` of their
    # value that month ("" = every type); a loss outside the GPU book (asic_2022: BlockFi's
    # and Celsius's FTX and Three Arrows losses). Unused by the other kinds.
    lender_type: str = ""

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Leave ``lender_type`` out of dumps while it is unset, so that saved configs (and
        their hashes) of scenarios without an ``other_loans`` shock are as before."""
        data = handler(self)
        if isinstance(data, dict) and not self.lender_type:
            data.pop("lender_type", None)
        return data


class Sites(_Strict):
    """Power and cooling as assets and constraints (docs/model.md, "Power and cooling");
    ``enabled = false`` is the model without sites (a defaulted borrower's site vanishes)."""

    enabled: StrictBool = True
    # a borrower's site, in IT MW, is its fleet's IT load x U(headroom_min, headroom_max)
    headroom_min: float = Field(1.1, ge=1.0, le=10.0)
    headroom_max: float = Field(1.5, ge=1.0, le=10.0)
    # probability a site whose fleet needs no liquid cooling is liquid-cooled anyway
    liquid_prob: Frac = 0.3
    # MW of a miner's mining hall per PH/s of hashrate (20 J/TH: 0.02 MW per PH/s)
    mining_mw_per_ph: float = Field(0.02, ge=0.0, le=1.0)
    # share of each buyer's spare MW that is liquid-cooled
    buyer_liquid_share: Frac = 0.3
    # replacement cost of AI-ready (liquid-cooled) MW, the most a buyer pays for a site's MW
    build_cost_per_mw: float = Field(9.5e6, ge=0.0, le=MAX_BUDGET)
    # capital to convert one air-cooled MW to liquid, and the months it takes
    conversion_cost_per_mw: float = Field(9.5e6, ge=0.0, le=MAX_BUDGET)
    conversion_months: int = Field(6, ge=0, le=120)
    # monthly share of its air spare MW a buyer converts when conversion pays
    conversion_rate: Frac = 0.1
    # months a lender markets a repossessed site before it can close a sale
    sale_months: int = Field(3, ge=0, le=120)
    # a site is sold with the lender's repossessed units that fit it (at the price index)
    sell_with_fleet: StrictBool = True
    # months after which a lender gives an unsold site up (its MW retired)
    max_hold_months: int = Field(24, ge=1, le=600)
    # run repossessed GPUs in place at a host while the site is held
    host_in_place: StrictBool = True
    # $/kW-month a host charges for running a repossessed GPU in place (colocation)
    hosting_per_kw_month: float = Field(150.0, ge=0.0, le=MAX_RUNNING_COST)
    # energy arbitrage: a miner switches mining MW to AI hosting (and back)
    arbitrage: StrictBool = True
    # share of a GPU's net rent per MW a miner earns by hosting tenants' GPUs on its MW
    host_share: Frac = 0.14
    # $ per MW switched between mining and AI hosting (either way)
    switch_cost_per_mw: float = Field(9.5e6, ge=0.0, le=MAX_BUDGET)
    # months over which a switch must pay back its cost
    switch_payback_months: int = Field(120, ge=1, le=600)
    # monthly share of a miner's mining hall it can switch
    switch_rate: Frac = 0.01
    # MW of mining halls all miners together can newly let to AI tenants a month (demand)
    host_demand_mw: float = Field(10.0, ge=0.0, le=1e6)

    @model_validator(mode="after")
    def _ordered(self) -> Sites:
        if self.headroom_max < self.headroom_min:
            raise ValueError(f"sites.headroom_max = {self.headroom_max} must be >= "
                             f"sites.headroom_min = {self.headroom_min}")
        return self


class Scenario(_Strict):
    # the results folder (results/<name>/); a scenario file without one takes its file stem
    name: str = "baseline"
    description: str = ""
    months: int = Field(60, ge=1, le=600)
    seed: int = Field(20251201, ge=0, le=2**63 - 1)
    # calendar month of model month 0 (t0), "YYYY-MM": labels the outputs only
    start: str = "2025-12"
    environment: EnvironmentCfg = Field(default_factory=EnvironmentCfg)
    borrowers: Borrowers = Field(default_factory=Borrowers)
    lenders: Lenders = Field(default_factory=Lenders)
    buyers: Buyers = Field(default_factory=Buyers)
    market: Market = Field(default_factory=Market)
    network: NetworkCfg = Field(default_factory=NetworkCfg)
    policy: Policy = Field(default_factory=Policy)
    contagion: Contagion = Field(default_factory=Contagion)
    metrics: Metrics = Field(default_factory=Metrics)
    shocks: list[Shock] = Field(default_factory=list)
    sites: Sites = Field(default_factory=Sites)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return safe_name(value)

    @field_validator("start")
    @classmethod
    def _start_month(cls, value: str) -> str:
        m = re.fullmatch(r"(\d{4})-(\d{2})", value)
        if not m or not 1 <= int(m.group(2)) <= 12 or not 1900 <= int(m.group(1)) <= 2200:
            raise PydanticCustomError("start", "expected a calendar month 'YYYY-MM' (years "
                                      "1900-2200), e.g. '2025-12'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        n_gen = len(self.environment.generations)
        names = [g.name for g in self.environment.generations]
        if len(set(names)) != n_gen:
            raise ValueError(f"environment.generations: duplicate names {names}")
        if min(g.launch_month for g in self.environment.generations) > 0:
            raise ValueError("environment.generations: at least one generation must have "
                             "launch_month <= 0 (borrowers' fleets are GPUs shipping at t0)")
        for kind in ("miner", "neocloud"):
            mix = getattr(self.borrowers, kind).fleet_mix
            if len(mix) > n_gen or sum(mix) <= 0:
                raise ValueError(
                    f"borrowers.{kind}.fleet_mix: {mix} must have at most {n_gen} weights "
                    "(one per generation) with a positive sum")
        _check_rent_paths(self.environment, self.shocks)
        _one_path_per_generation(self.environment.lead_time_path, "lead_time_path",
                                 {g.name: g for g in self.environment.generations})
        if self.lenders.ltv_cure > self.lenders.ltv_max:
            raise ValueError(f"lenders.ltv_cure = {self.lenders.ltv_cure} must be <= "
                             f"lenders.ltv_max = {self.lenders.ltv_max}")
        if sum(t.share for t in self.lenders.types.values()) <= 0:
            raise ValueError("lenders.types: the shares must have a positive sum")
        for i, s in enumerate(self.shocks):
            if s.lender_type and s.lender_type not in self.lenders.types:
                raise ValueError(f"shocks.{i}.lender_type = {s.lender_type!r}: not a lender "
                                 f"type; expected one of {sorted(self.lenders.types)} or ''")
        if self.network.kind == "edgelist" and not self.network.edgelist:
            raise ValueError("network.edgelist: a path is required when network.kind = 'edgelist'")
        _check_world_size(self)
        return self


def _check_rent_paths(e: EnvironmentCfg, shocks: list[Shock] = ()) -> None:
    """Every observed rent path names one "compute" generation, at most one path each, and
    starts no later than the month the generation first trades (max(launch_month, 0)); at
    most one market path, and no ``rent`` shock inside its months (it would be cancelled
    silently: the market path sets every AI generation's rent then)."""
    gens = {g.name: g for g in e.generations}
    _one_path_per_generation(e.rent_path, "rent_path", gens)
    for i, p in enumerate(e.rent_path):
        where = f"environment.rent_path.{i}"
        g = gens[p.generation]
        if g.rent_index != "compute":
            raise ValueError(f"{where}.generation = {p.generation!r}: a hashprice-linked "
                             "generation's rent follows hashprice, it cannot take a rent path")
        if p.scope == "market" and shocks:
            first, last = p.points[0][0], p.points[-1][0]
            for j, s in enumerate(shocks):
                if s.kind == "rent" and first < s.month <= last:
                    raise ValueError(
                        f"shocks.{j}: a rent shock in month {s.month}, inside the market rent "
                        f"path {where} (months {first:g}-{last:g}): the observed path already "
                        "contains what moved rents then; move the shock after month "
                        f"{last:g} or give the path scope = 'generation'")
        if p.scope == "market" and any(q.scope == "market" for q in e.rent_path[:i]):
            raise ValueError(f"{where}.scope = 'market': a second market path (the market "
                             "has one common rent factor; give the others scope = "
                             "'generation')")
        start = max(g.launch_month, 0)
        if p.points[0][0] > start:
            raise ValueError(f"{where}.points: the first point is month "
                             f"{p.points[0][0]:g}, after month {start} in which "
                             f"{p.generation} first trades")


def _one_path_per_generation(paths: list, key: str, gens: dict) -> None:
    """Every path of ``environment.<key>`` names a generation of ``gens``, at most one path
    each (rent paths, lead-time paths)."""
    seen = set()
    for i, p in enumerate(paths):
        where = f"environment.{key}.{i}.generation = {p.generation!r}"
        if p.generation not in gens:
            raise ValueError(f"{where}: no such generation (known: {', '.join(gens)})")
        if p.generation in seen:
            raise ValueError(f"{where}: a second path for the same generation")
        seen.add(p.generation)


# Memory limits of one run (all state is dense numpy): the funding matrices are n_L x n_L,
# the syndicate draws n_B x n_L, the agent panel (months + 1) x agents; beyond these a run
# exhausts memory (a MemoryError or the OOM killer) or takes hours, so it is refused up front.
MAX_LENDERS, MAX_BORROWERS = 5_000, 200_000
MAX_SYNDICATE_CELLS, MAX_PANEL_CELLS = 100_000_000, 60_000_000


def _check_world_size(s: Scenario) -> None:
    n_b = s.borrowers.miner.count + s.borrowers.neocloud.count
    n_l = s.lenders.count
    agents = n_b + n_l + sum(t.count for t in s.buyers.types.values())
    for what, value, limit in (
            (f"lenders.count = {n_l}", n_l, MAX_LENDERS),
            (f"borrowers (miner + neocloud count) = {n_b:,}", n_b, MAX_BORROWERS),
            (f"borrowers x lenders = {n_b:,} x {n_l:,}", n_b * n_l, MAX_SYNDICATE_CELLS),
            (f"(months + 1) x agents = {s.months + 1} x {agents:,}", (s.months + 1) * agents,
             MAX_PANEL_CELLS)):
        if value > limit:
            raise ValueError(f"{what}: the world is too large for one run (at most {limit:,})")


# --------------------------------------------------------------------------- loading
def one_line(text: str, limit: int | None = None) -> str:
    """Collapse whitespace (newlines included) and cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters. An integer of more than 4,300
    digits has no repr (Python refuses the conversion: ValueError), so it is described by its
    size instead (a TOML file may hold one: ``months = 0xfff...``)."""
    try:
        text = repr(value)
    except ValueError:
        text = (f"<an integer of {value.bit_length():,} bits>" if isinstance(value, int)
                else f"<a {type(value).__name__} too large to show>")
    return one_line(text, limit)


def format_error(err: ValidationError) -> str:
    """The first validation error as one line: ``key = value: what is allowed``."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "scenario"
    msg = one_line(first["msg"].removeprefix("Value error, "))
    if first["type"] == "extra_forbidden":
        *parent, last = first["loc"]
        return f"unknown key '{loc}'{did_you_mean(last, _known(parent), parent)}"
    if first["type"] == "missing":
        return f"missing key '{loc}' (required)"
    if first["type"] == "value_error":
        return msg
    if first["type"] == "bool_as_number":
        return f"{loc}{first['ctx']['where']}: {msg}"
    return f"{loc} = {short_repr(first.get('input'))}: {msg}"


def _known(loc: tuple) -> Any:
    """The default scenario's table at ``loc`` (a list's first item, a named table's first
    entry where the name is the user's, e.g. a new lender type), for "did you mean"."""
    node: Any = Scenario().model_dump()
    for part in loc:
        if isinstance(node, list):
            node = node[0] if node else None
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and node and all(isinstance(v, dict) for v in node.values()):
            node = next(iter(node.values()))
        else:
            return None
    return node


def parse_value(text: str) -> Any:
    """Read an override's value as a TOML literal (numbers, booleans, strings, lists, inline
    tables, inf); Python's ``True`` and ``False`` are read as booleans too."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(base[k], v) if isinstance(v, dict) and isinstance(
            base.get(k), dict) else v
    return out


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``key.path=value`` override (list items by index) to the resolved dict;
    ``key.path+=value`` appends to a list (``shocks+={month=3, kind="btc", size=0.5}``)."""
    key, eq, raw = assignment.partition("=")
    if not eq or not all(key.strip().removesuffix("+").split(".")):
        raise ConfigError(f"--set '{assignment}': expected key=value, e.g. lenders.count=30")
    set_path(data, key, parse_value(raw.strip()))


def apply_overrides(data: dict, overrides: Mapping[str, Any] | Iterable[str] | str) -> None:
    """Apply overrides to the resolved dict: ``key=value`` strings (values read as TOML, as
    ``--set`` reads them) or a mapping of keys to typed values (``{"policy.repo.enabled":
    True}``; ``__`` may stand for ``.``, and a key ending in ``+`` appends to a list)."""
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if not isinstance(key, str) or not all(
                    _key_parts(key.removesuffix("+"))):
                raise ConfigError(f"override {key!r}: expected a key such as lenders.count")
            set_path(data, ".".join(_key_parts(key.removesuffix("+")))
                     + ("+" if key.endswith("+") else ""), value)
        return
    for o in overrides:
        if not isinstance(o, str):
            raise ConfigError(f"override {o!r}: expected 'key=value' text or a mapping "
                              "{key: value}")
        apply_override(data, o)


def _key_parts(key: str) -> list[str]:
    return key.strip().replace("__", ".").split(".")


def did_you_mean(part: str, node: Any, parent: list | tuple = ()) -> str:
    """`` (did you mean 'parent.key'?)`` for the key of ``node`` closest to ``part``, or ''."""
    if not isinstance(node, dict):
        return ""
    close = difflib.get_close_matches(str(part), [str(k) for k in node], n=1, cutoff=0.6)
    return f" (did you mean '{'.'.join([*map(str, parent), close[0]])}'?)" if close else ""


def set_path(data: dict, key: str, value: Any) -> None:
    """Set ``data[key.path] = value`` (list items by index); an unknown path is a ConfigError.

    The last part may name a new table key: validating the result rejects an unknown one.
    A key ending in ``+`` appends ``value`` to the list it names.
    """
    append = key.strip().endswith("+")
    parts = key.strip().removesuffix("+").split(".")
    node: Any = data
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if append and i == len(parts) - 1:
            target = node.get(part) if isinstance(node, dict) else None
            if not isinstance(target, list):
                hint = "" if part in (node or {}) else did_you_mean(part, node, parts[:i])
                raise ConfigError(f"'{here}+': only a list can be appended to{hint}")
            target.append(value)
            return
        if isinstance(node, list):
            if not node:
                raise ConfigError(f"unknown key '{here}': the list is empty")
            if not part.isdigit():
                raise ConfigError(f"unknown key '{here}': expected a list index "
                                  f"0..{len(node) - 1}")
            if int(part) >= len(node):
                raise ConfigError(f"unknown key '{here}': index out of range 0..{len(node) - 1}")
            part = int(part)
        elif not isinstance(node, dict) or not part or (
                part not in node and i < len(parts) - 1):
            raise ConfigError(f"unknown key '{here}'{did_you_mean(part, node, parts[:i])}")
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


# Size limits of the TOML files liqsim reads, checked before a byte is parsed (docs/sweeps.md,
# README). The largest shipped scenario is 5 KB and the largest shipped spec 2 KB; 1 MiB holds a
# spec with an explicit axis of 100,000 short values. tomllib takes about 1 s a MiB, and time
# quadratic in the parts of one dotted key (40,000 parts took 33 s), so keys are limited too.
MAX_TOML_BYTES = 2**20
MAX_KEY_PARTS = 32  # parts of one dotted key or table header (a scenario's deepest key has 4)
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages: 'a directory', 'a FIFO (named pipe)', ..."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _stat_problem(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "not found"
    if e.errno == errno.ELOOP:
        return "is a symbolic link loop"
    return f"cannot read: {e.strerror or one_line(e)}"


def read_regular(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``; ConfigError (one line, starting ``what``) if it
    is missing, a symbolic link loop, unreadable, not a regular file (a directory, FIFO,
    device or socket: refused from its ``stat``, without opening it, so a FIFO never blocks
    and /dev/zero is never read) or larger than ``limit`` bytes (checked before reading, and
    again while reading, since /proc files report a size of 0)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} is {file_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise ConfigError(f"{what} is {_size(st.st_size)}; the limit is {_size(limit)}")
        # O_NONBLOCK: if the path became a FIFO since the stat, open does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{what} is {file_kind(os.fstat(fd).st_mode)}, not a regular "
                                  "file")
            data = fh.read(limit + 1)
    except OSError as e:
        raise ConfigError(f"{what} {_stat_problem(e)}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} is larger than {_size(limit)} (the limit)")
    return data


def _size(n: int) -> str:
    """A size for messages: whole MiB as such, large sizes in MiB, others in bytes (so that a
    file just over a limit does not read as equal to it)."""
    if n % 2**20 == 0 or n >= 100 * 2**20:
        return f"{n / 2**20:,.0f} MiB"
    return f"{n:,} bytes"


# A dotted key is a run of bare or quoted parts joined by dots. Strings and comments are first
# replaced by one bare character (linear: each alternative consumes its token whole, closed or
# not, so the scan never restarts inside one); the runs of bare parts are then found by a regex
# that only starts at the beginning of a word (linear too).
_STRINGS = re.compile(r'"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
                      r'|"(?:[^"\\\n]|\\.)*"?|\'[^\'\n]*\'?|#[^\n]*')
_LONG_KEY = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_-]+)"
                       f"{{{MAX_KEY_PARTS}}}")


def _check_key_parts(text: str, where: Path) -> None:
    """Refuse a dotted key (or table header) of more than MAX_KEY_PARTS parts before tomllib
    sees it (its time grows with the square of the parts)."""
    plain = _STRINGS.sub(lambda m: "" if m.group().startswith("#") else "s", text)
    m = _LONG_KEY.search(plain)
    if m:
        line = plain.count("\n", 0, m.start()) + 1
        raise ConfigError(f"{where}: line {line}: a dotted key of more than {MAX_KEY_PARTS} "
                          "parts (the limit)")


def locate(path: str | Path) -> Path:
    """The TOML file ``path`` names: a regular file, or the name of a shipped scenario.

    A name is a shipped scenario only if it is one exactly (``list_scenarios``), so a name
    never reaches outside ``SCENARIO_DIR``. Anything that exists but is not a regular file
    (a directory, a FIFO, a device) is refused without being opened.
    """
    if not str(path).strip():
        raise ConfigError(f"scenario '{path}': empty name {_choices()}")
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        mode, problem = None, e
    if mode is not None and stat.S_ISREG(mode):
        return p
    if str(path) in list_scenarios():
        return SCENARIO_DIR / f"{path}.toml"
    if mode is not None and stat.S_ISDIR(mode):
        raise ConfigError(f"scenario '{path}' is a directory, not a TOML file")
    if mode is not None:
        raise ConfigError(f"scenario '{path}' is {file_kind(mode)}, not a regular file")
    if isinstance(problem, OSError) and problem.errno not in (errno.ENOENT, errno.ENOTDIR):
        raise ConfigError(f"scenario '{path}' {_stat_problem(problem)}")
    raise ConfigError(f"scenario '{path}' not found {_choices()}")


def parse_toml(data: bytes, p: Path) -> dict:
    """The table of TOML ``data`` read from ``p`` (for messages); any problem is a ConfigError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start})") from None
    _check_key_parts(text, p)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: malformed TOML: {one_line(e)}") from None
    except RecursionError:
        raise ConfigError(f"{p}: malformed TOML: nested too deeply") from None
    except ValueError as e:  # an integer of more than 4,300 digits
        raise ConfigError(f"{p}: unreadable TOML value: {one_line(e, 120)}") from None


def read_toml(path: str | Path) -> dict:
    """The table of the TOML file ``path`` (see :func:`locate`), at most ``MAX_TOML_BYTES``;
    any problem is a ConfigError."""
    p = locate(path)
    return parse_toml(read_regular(p, MAX_TOML_BYTES, str(p)), p)


def _choices() -> str:
    return f"(a TOML file, or one of: {', '.join(list_scenarios())})"


def list_scenarios() -> list[str]:
    return sorted(f.stem for f in SCENARIO_DIR.glob("*.toml"))


def build(data: dict) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_error(e)) from None


def _absolute_edgelist(data: dict, base: Path) -> None:
    """Make a relative ``network.edgelist`` path absolute, resolved against ``base``.

    The resolved config (config.json, the manifest) then names the file wherever
    ``liqsim verify`` runs from.
    """
    net = data.get("network")
    path = net.get("edgelist") if isinstance(net, dict) else None
    if isinstance(path, str) and path.strip():
        net["edgelist"] = _absolute(base, path)


def _absolute(base: Path, path: str) -> str:
    """``path`` resolved against ``base`` (symbolic links resolved), or only made absolute
    where resolving fails or names nothing that exists: a symbolic link loop (RuntimeError in
    Python 3.12), ~ without a home directory, a NUL byte, or /dev/stdin on a pipe (whose
    target, ``pipe:[N]``, is no path). Reading the file then says what it is."""
    try:
        target = base / Path(path).expanduser()
        resolved = target.resolve()
        if resolved.exists() or not target.exists():
            return str(resolved)
    except (OSError, RuntimeError, ValueError):
        pass
    return os.path.abspath(base / path)


def load_scenario(source: str | Path | None = None,
                  overrides: Mapping[str, Any] | Iterable[str] | str = (),
                  seed: int | None = None, months: int | None = None) -> Scenario:
    """Read a scenario (a path, a shipped name, or None for the baseline) and apply overrides:
    ``key=value`` strings read as TOML (``["lenders.count=40", "policy.repo.enabled=true"]``,
    as ``liqsim run --set`` does) or a mapping of keys to typed Python values
    (``{"lenders.count": 40, "policy.repo.enabled": True}``); ``seed`` and ``months`` last.
    Raises :class:`ConfigError` with a one-line message for anything that cannot be used.

    A file without ``name`` takes its file stem (``runs/deep_crash.toml`` -> ``deep_crash``),
    so it never writes into another scenario's results folder. A relative ``network.edgelist``
    in the file is resolved against the file's folder, one set by ``--set`` against the
    current directory; the config keeps the absolute path.
    """
    path = locate("baseline" if source is None else source)
    top = read_toml(path)
    if "name" not in top:
        try:
            top["name"] = safe_name(path.stem)
        except ConfigError:
            raise ConfigError(f"{path}: the file has no 'name' and its file name "
                              f"'{path.stem}' cannot be one ({NAME_RULE}); add a line "
                              "name = \"...\"") from None
    _absolute_edgelist(top, path.parent)
    data = _deep_merge(Scenario().model_dump(), top)
    return _finish(data, overrides, seed, months)


def _finish(data: dict, overrides, seed: int | None, months: int | None) -> Scenario:
    apply_overrides(data, overrides)
    _absolute_edgelist(data, Path.cwd())
    if seed is not None:
        data["seed"] = seed
    if months is not None:
        data["months"] = months
    return build(data)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        out = {}
        for i, v in enumerate(node):
            out.update(_leaves(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: node}


def changed_keys(cfg: Scenario) -> dict[str, Any]:
    """The config keys in which ``cfg`` differs from the scenario it is named after (a
    shipped scenario of that name, else the built-in defaults), leaving out name, description,
    seed and months: the overrides of a run. A key of a list that grew or shrank is the list.
    """
    try:
        ref = load_scenario(cfg.name) if cfg.name in list_scenarios() else Scenario()
    except ConfigError:
        ref = Scenario()
    a, b = cfg.model_dump(mode="json"), ref.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key in a:
        if key in ("name", "description", "seed", "months") or a[key] == b.get(key):
            continue
        if isinstance(a[key], list) and len(a[key]) != len(b.get(key) or []):
            out[key] = a[key]
            continue
        mine, theirs = _leaves(a[key], f"{key}."), _leaves(b.get(key), f"{key}.")
        out.update({k: v for k, v in mine.items() if theirs.get(k, object()) != v})
    return out


def resolve(scenario: Scenario | str | Path | None = None,
            overrides: Mapping[str, Any] | Iterable[str] | str | None = None,
            seed: int | None = None, months: int | None = None) -> Scenario:
    """A validated :class:`Scenario` from a :class:`Scenario`, a shipped name or a TOML path
    (None: the baseline), with overrides (``key=value`` strings or a mapping of keys to typed
    values, see :func:`apply_overrides`), ``seed`` and ``months`` applied.

    A :class:`Scenario` with nothing to change is returned as it is.
    """
    if isinstance(scenario, Scenario):
        if not overrides and seed is None and months is None:
            return scenario
        return _finish(scenario.model_dump(), overrides or (), seed, months)
    if scenario is not None and not isinstance(scenario, str | Path):
        raise ConfigError(f"scenario {one_line(repr(scenario), 80)}: expected a shipped "
                          "name, a TOML path or a Scenario")
    return load_scenario(scenario, overrides or (), seed=seed, months=months)
