"""The compiled engine against its oracle: the same run on the numpy phases and on the
compiled kernels (:mod:`sim.world.kernels`), compared bit for bit.

:func:`engine_mismatches` runs one scenario on both engines and compares the golden
fingerprint (:func:`sim.qa.bench.fingerprint`: every record array, the panel, the event log and
every summary number) and, beyond it, the final state: every array and number held by the
model and its books (borrowers, lenders, buyers, loans, the desk, the environment, the sites
and the buyer of last resort), byte for byte, NaNs and signed zeros included.
:data:`ORACLE_CASES` adds to the golden cases the runs a kernel must also get right: mass
defaults, failing lenders, a run that ends after one month, the secured repo desk's defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from sim.core.config import load_scenario
from sim.qa.bench import GOLDEN_CASES, fingerprint, golden_mismatches
from sim.world.model import LiquidationModel

# (label, scenario, overrides): the golden cases, and runs at the edges of the state space
ORACLE_CASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (*GOLDEN_CASES,
    ("mass_default", "crypto_winter", ("shocks.0.size=0.95", "shocks.1.size=0.6",
                                       "borrowers.miner.cash_months=0.1",
                                       "borrowers.neocloud.cash_months=0.1")),
    ("lenders_fail", "crypto_winter", ("lenders.types.bank.capital_ratio=0.01",
                                       "lenders.types.abl.capital_ratio=0.02",
                                       "contagion.alpha=0.3")),
    ("one_month", "crypto_winter", ("months=1",)),
    # the secured repo desk at its edges: thin haircuts and a small desk in a deep fall, so
    # margin goes unmet and lenders and borrowers default on desk loans (units seized), and
    # loans are rationed by the desk's room (twice at the default seed)
    ("repo_defaults", "crypto_winter", ("policy.repo.enabled=true", "policy.repo.sigma=0.02",
                                        "policy.repo.liq_addon=0.0", "policy.repo.z=1.0",
                                        "policy.repo.capacity=1e8", "shocks.0.size=0.95",
                                        "shocks.1.size=0.6")),
)

_BOOKS = ("borrowers", "lenders", "buyers", "loans", "desk", "env", "sites", "lolr")


def model_state(model: LiquidationModel) -> dict[str, object]:
    """Every numpy array and Python number of the model and its books, by dotted name."""
    out: dict[str, object] = {}
    for owner, obj in (("model", model), *((b, getattr(model, b, None)) for b in _BOOKS)):
        if obj is None:
            continue
        for name, v in vars(obj).items():
            if isinstance(v, np.ndarray) or (isinstance(v, int | float | np.number)
                                             and not isinstance(v, bool)):
                out[f"{owner}.{name}"] = v
    return out


def same_bits(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return (a.dtype == b.dtype and a.shape == b.shape
                and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b) or (a != a and b != b)
    return type(a) is type(b) and a == b


def run_both(scenario: str, overrides: Iterable[str] = (), seed: int | None = None,
             months: int | None = None) -> tuple[LiquidationModel, LiquidationModel]:
    cfg = load_scenario(scenario, list(overrides), seed=seed, months=months)
    return (LiquidationModel(cfg, engine="numpy").run(),
            LiquidationModel(cfg, engine="compiled").run())


def engine_mismatches(scenario: str, overrides: Iterable[str] = (), seed: int | None = None,
                      months: int | None = None) -> list[str]:
    """What differs between the numpy and the compiled run of one scenario (empty: the same
    bits): ``fingerprint: part.key`` and ``state: owner.attribute`` entries."""
    return mismatches(*run_both(scenario, overrides, seed, months))


def mismatches(a: LiquidationModel, b: LiquidationModel) -> list[str]:
    """What differs between two finished runs (:func:`engine_mismatches`)."""
    bad = [f"fingerprint: {x.split(': ', 1)[1]}" for x in
           golden_mismatches({"run": fingerprint(a)}, {"run": fingerprint(b)})]
    sa, sb = model_state(a), model_state(b)
    for k in sorted(set(sa) | set(sb)):
        if k not in sa or k not in sb or not same_bits(sa[k], sb[k]):
            bad.append(f"state: {k}")
    return bad
