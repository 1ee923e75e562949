"""The repo desk: the policy switch for a working repo market in GPUs.

When ``policy.repo.enabled`` it (docs/model.md 7.17):

1. lends cash to lenders against their repossessed GPUs, at the haircut

       h_g = min(1, h0 + kappa * max(0, 1 - p_g / p_ref_g))

   on the price index p_g, with p_ref_g the value in best use, and at SOFR + a penalty spread
   (Bagehot 1873, *Lombard Street*: lend freely, against good collateral, at a penalty rate).
   A lender so financed is not forced to dump: it asks the lower of its patient price (its mark
   less its sale discount) and (1 - h_g) x p_ref_g, never below the salvage floor;
2. if ``buy_floor``, bids in every auction at (1 - h_g) x p_ref_g for as many units as its
   remaining capacity buys, and sells what it bought back at p_ref_g (a standing buyer).

Repo loans plus purchases at cost never exceed ``capacity``, nor the desk's cash. When
disabled it does nothing: that is the missing repo market.
"""

from __future__ import annotations

import numpy as np
from mesa.discrete_space import FixedAgent

from sim import numerics as nm
from sim.config import Repo

# the desk's cash flows by kind (+ in, - out): repo loans made (-), repaid (+), interest
# received (+), GPUs bought (-), GPUs sold (+)
DESK_FLOWS = ("lent", "repaid", "interest", "purchases", "sales")


def haircut(price: np.ndarray, ref: np.ndarray, h0: float, kappa: float) -> np.ndarray:
    """h = h0 + kappa * max(0, 1 - p / p_ref), clipped to [0, 1]."""
    ratio = np.divide(price, ref, out=np.ones_like(price, dtype=float), where=ref > 0)
    return np.clip(h0 + kappa * np.maximum(0.0, 1.0 - ratio), 0.0, 1.0)


class RepoDesk(FixedAgent):
    """A standing lender and buyer against GPU collateral (a single agent)."""

    kind = "repo_desk"

    def __init__(self, model, cfg: Repo, n_gen: int):
        super().__init__(model)
        self.cfg = cfg
        self.enabled = cfg.enabled
        self.cash = cfg.capacity if cfg.enabled else 0.0
        self.holdings = np.zeros(n_gen, dtype=np.int64)
        self.cost_basis = np.zeros(n_gen)
        self.lent = 0.0  # repo loans outstanding (the lenders' repo_debt adds up to this)
        self.cash0 = self.cash
        # cumulative cash flows ($, + into the desk): cash - cash0 = their sum (desk_pnl)
        self.flows = dict.fromkeys(DESK_FLOWS, 0.0)
        # repo interest unpaid and added to the loans (not cash: part of ``lent``)
        self.interest_capitalised = 0.0

    def pnl(self, price: np.ndarray) -> float:
        """Profit and loss marked to market ($): cash flows + repo loans outstanding at face +
        holdings at the price index."""
        return (self.cash - self.cash0) + self.lent + float(nm.dot(self.holdings, price))

    @property
    def used(self) -> float:
        return self.lent + float(self.cost_basis.sum())

    @property
    def room(self) -> float:
        if not self.enabled:
            return 0.0
        return max(min(self.cfg.capacity - self.used, self.cash), 0.0)

    @property
    def state(self) -> str:
        return "active" if self.enabled else "off"

    @property
    def size(self) -> float:
        """Repo loans plus GPUs bought, at cost ($)."""
        return self.used

    def haircuts(self, price: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return haircut(price, ref, self.cfg.h0, self.cfg.kappa)

    def rate(self, sofr: float) -> float:
        return sofr + self.cfg.penalty_spread

    def floor_bid(self, price: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Bid price per generation: (1 - h) x p_ref (0 when disabled or not buying)."""
        if not (self.enabled and self.cfg.buy_floor):
            return np.zeros_like(ref)
        return (1.0 - self.haircuts(price, ref)) * ref
