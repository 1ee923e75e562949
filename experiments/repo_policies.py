"""Issue 15: crypto_winter at a BTC shock (argv[1], default 0.8) under the
legacy desk, the secured repo, the buyer of last resort and none, paired over seeds 1-10:
lenders' credit losses (at write-off and net of later recoveries), the policy's own P&L
marked to market, defaults. ``.venv/bin/python experiments/repo_policies.py 0.8`` (5 s)."""

from __future__ import annotations

import sys

import numpy as np

from sim.model import LiquidationModel

POLICIES = {"none": {}, "legacy": {"policy.repo.enabled": True, "policy.repo.design": "legacy"},
            "secured": {"policy.repo.enabled": True, "policy.repo.design": "secured"},
            "lolr": {"policy.lolr.enabled": True}}
NAMES = ("loss at write-off", "loss net", "policy P&L", "defaults", "repo defaults",
         "repo default loss", "lent", "margin", "interest", "bought")


def one(seed: int, shock: float, overrides: dict) -> tuple:
    m = LiquidationModel("crypto_winter", rng=seed,
                         overrides={"shocks.0.size": shock, **overrides}).run()
    assert not m.invariants()
    r, d = m.rec, m.desk
    at_wo = r["credit_losses"][-1]
    pnl = d.pnl()[-1]
    bought = d.cash_bought.sum()
    if m.lolr is not None:
        lo = m.lolr
        pnl = lo.cash - lo.cfg.capacity + lo.mark[-1]
        bought += lo.cash_bought.sum()
    return (at_wo, at_wo - r["recoveries"][-1], pnl,
            r["defaults_miner"].sum() + r["defaults_neocloud"].sum(), d.defaults.sum(),
            d.default_loss.sum(), d.cash_lent.sum(), d.margin_received.sum(), d.interest.sum(),
            bought)


def ci(x) -> str:
    x = np.asarray(x, float)
    mu, se = x.mean(), x.std(ddof=1) / np.sqrt(len(x))
    return f"{mu / 1e6:8.1f} [{(mu - 2.262 * se) / 1e6:7.1f}, {(mu + 2.262 * se) / 1e6:7.1f}]"


def main(shock: float = 0.8, seeds=range(1, 11)) -> None:
    res = {k: np.array([one(s, shock, o) for s in seeds], float) for k, o in POLICIES.items()}
    print(f"crypto_winter, BTC shock {shock}, seeds {seeds[0]}-{seeds[-1]}; means, M$")
    for k, a in res.items():
        cells = [f"{n}={a[:, i].mean() / (1 if i in (3, 4) else 1e6):.1f}"
                 for i, n in enumerate(NAMES)]
        print(k.ljust(8), " ".join(cells))
    print("paired differences vs none, mean [95 % t-interval], M$ (saving = -d(loss net) + P&L)")
    base = res["none"]
    for k in ("legacy", "secured", "lolr"):
        a = res[k]
        print(k.ljust(8), "loss at write-off", ci(a[:, 0] - base[:, 0]),
              " loss net", ci(a[:, 1] - base[:, 1]), " policy P&L", ci(a[:, 2]),
              " system saving", ci(base[:, 1] - a[:, 1] + a[:, 2]),
              f" defaults {(a[:, 3] - base[:, 3]).mean():+.1f}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.8)
