"""The three policies of issue 15 on crypto_winter at a BTC shock (default 0.8), paired over
seeds 1-10 against none (both off): lenders' credit losses, the policy's own P&L marked to
market, every party's loss and the system loss (``sim.world.losses``); and, with ``--sensitivity``,
how much the system-loss difference moves when one assumption of a policy is set low or high.

    .venv/bin/python experiments/repo_policies.py [SHOCK] [--sensitivity]   (10 s; 2 min)

The sensitivity table is the one in docs/calibration.md ("A secured repo and a buyer of last
resort"); the flagship sweeps (experiments/sweeps/flagship_repo*.toml, flagship_lolr.toml)
give the same comparison at every shock size with 20 seeds.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import stats

from sim.world.losses import PARTS
from sim.world.model import LiquidationModel

SECURED = {"policy.repo.enabled": True, "policy.repo.design": "secured"}
LEGACY = {"policy.repo.enabled": True, "policy.repo.design": "legacy"}
LOLR = {"policy.lolr.enabled": True}
POLICIES = {"none": {}, "secured": SECURED, "lolr": LOLR, "legacy": LEGACY}
# (policy, key, low, high): the policy assumptions without a sourced value
SENSITIVITY = (
    ("secured", "policy.repo.sigma", 0.05, 0.20),
    ("secured", "policy.repo.liq_addon", 0.0, 0.15),
    ("secured", "policy.repo.term_months", 1, 6),
    ("secured", "policy.repo.capacity", 1.0e9, 4.0e9),
    ("secured", "policy.repo.penalty_spread", 0.01, 0.06),
    ("secured", "policy.repo.borrowers", False, True),
    ("lolr", "policy.lolr.floor_share", 0.3, 0.7),
    ("lolr", "policy.lolr.mw", 25.0, 100.0),
    ("lolr", "policy.lolr.hold_months", 6, 24),
    ("lolr", "policy.lolr.capacity", 1.0e9, 4.0e9),
    ("lolr", "policy.lolr.funding_spread", 0.0, 0.03),
)
COLUMNS = ("credit losses at write-off", "net credit losses", "policy P&L", "defaults",
           "system loss", *(f"loss {p}" for p in PARTS), "operating income", "discount")


def one(seed: int, shock: float, overrides: dict) -> np.ndarray:
    m = LiquidationModel("crypto_winter", rng=seed,
                         overrides={"shocks.0.size": shock, **overrides}).run()
    assert not m.invariants()
    r = m.rec
    pnl = -(r["loss_desk"][-1] + r["loss_lolr"][-1])
    return np.array([r["credit_losses"][-1], r["credit_losses"][-1] - r["recoveries"][-1], pnl,
                     r["defaults_miner"].sum() + r["defaults_neocloud"].sum(),
                     r["system_loss"][-1], *(r[f"loss_{p}"][-1] for p in PARTS),
                     r["sl_operating_income"][-1], r["sl_discount"][-1]])


def ci(x) -> tuple[float, float, float]:
    """Mean and 95 % t-interval, as ``liqsim compare`` (sim.world.runner.compare) reports them."""
    x = np.asarray(x, float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def fmt(x, scale=1e6) -> str:
    mu, lo, hi = ci(np.asarray(x) / scale)
    return f"{mu:8.1f} [{lo:7.1f}, {hi:7.1f}]"


def table(shock: float, seeds=range(1, 11)) -> dict[str, np.ndarray]:
    res = {k: np.array([one(s, shock, o) for s in seeds]) for k, o in POLICIES.items()}
    print(f"crypto_winter, BTC shock {shock}, seeds {seeds[0]}-{seeds[-1]}: paired differences "
          "policy - none, mean [95 % t-interval], M$ (defaults: count); negative = less loss")
    base = res["none"]
    for k in ("secured", "lolr", "legacy"):
        d = res[k] - base
        print(f"  {k}: " + "; ".join(
            f"{name} {fmt(d[:, i], 1.0 if name == 'defaults' else 1e6)}"
            for i, name in enumerate(COLUMNS) if name != "policy P&L")
            + f"; policy P&L {fmt(res[k][:, 2])}")
    return res


def sensitivity(shock: float, seeds=range(1, 11)) -> None:
    base = np.array([one(s, shock, {})[4] for s in seeds])
    print(f"\nsensitivity of the system-loss difference (policy - none), BTC shock {shock}, "
          f"seeds {seeds[0]}-{seeds[-1]}, M$ (mean [95 % t-interval]); flag: moves > 20 %")
    default = {}
    for policy in ("secured", "lolr"):
        d = np.array([one(s, shock, POLICIES[policy])[4] for s in seeds]) - base
        default[policy] = d.mean()
        print(f"  {policy} at its defaults: {fmt(d)}")
    for policy, key, low, high in SENSITIVITY:
        cells = []
        moved = False
        for v in (low, high):
            d = np.array([one(s, shock, {**POLICIES[policy], key: v})[4] for s in seeds]) - base
            rel = d.mean() / default[policy] - 1.0 if default[policy] else float("nan")
            moved |= abs(rel) > 0.2
            cells.append(f"{v}: {fmt(d)} ({rel:+.0%})")
        print(f"  {policy} {key}: " + "; ".join(cells) + ("  yes" if moved else "  no"))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    s = float(args[0]) if args else 0.8
    table(s)
    if "--sensitivity" in sys.argv:
        sensitivity(s)
