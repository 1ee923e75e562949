"""The price of compute at the frontier and declines per year, shared by check 4 (calibration)
and check 8 (the GPU backtest)."""

from __future__ import annotations

import numpy as np

from sim.core import numerics as nm

# Dense BF16 tensor TFLOPS per GPU, the unit of compute of check 4a (docs/calibration.md,
# "Sourced figures": NVIDIA datasheets, C; Rubin: NVIDIA GTC 2025, 1.2 EF FP8 training for
# the 72-GPU Vera Rubin NVL144, BF16 taken as half of FP8 (derived))
TFLOPS_BF16: dict[str, float] = {"A100": 312.0, "H100": 989.0, "H200": 989.0,
                                 "B200": 2250.0, "Rubin": 8333.0}


def compute_price_path(rent: np.ndarray, launch: np.ndarray, tflops: np.ndarray) -> np.ndarray:
    """Price of a unit of compute at the frontier, $ per PFLOP-hour, month by month (T,):

        c(t) = min over generations g shipping at t (launch_g <= t) with tflops_g > 0 of
               1000 R_g(t) / tflops_g,

    ``rent`` (T, G) the rent paths ($/GPU-hour), month t = row t. A new generation lowers c
    the month it ships if it rents for less per FLOP: the decline of c is the decline of the
    price of compute across generations (the quantity of "inference price falls 20-40 %/yr
    per unit of compute", SemiAnalysis/Epoch AI), not one chip's rent."""
    rent, tflops = np.asarray(rent, dtype=float), np.asarray(tflops, dtype=float)
    t = np.arange(rent.shape[0])[:, None]
    ok = (np.asarray(launch)[None, :] <= t) & (np.asarray(tflops)[None, :] > 0)
    per = np.where(ok, 1000.0 * rent / np.where(tflops > 0, tflops, 1.0)[None, :], np.inf)
    return per.min(axis=1)


def annual_decline(path: np.ndarray, first: int = 0, last: int | None = None) -> float:
    """1 - (p[last] / p[first])^(12 / (last - first)): the constant yearly fall that takes
    ``path`` from month ``first`` to month ``last`` (default: its last month)."""
    last = len(path) - 1 if last is None else last
    return decline_per_year(nm.log(path[last] / path[first]), last - first)


def decline_per_year(log_change: float, months: float) -> float:
    """1 - exp(12 x / T): the constant yearly fall of a quantity whose log changes by
    ``log_change`` = x over ``months`` = T months (a mean of log changes over seeds, so that
    seeds average in logs: checks 4a, 4e and 8d)."""
    return float(-nm.expm1(12.0 * log_change / months))
