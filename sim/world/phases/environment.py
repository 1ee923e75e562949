"""Phase 1, the environment: the month advances (rents, BTC, hashprice, launches, stress),
the value in best use is recomputed and the scenario's shocks land (docs/model.md section 3,
"Shocks"). Returns the month's :class:`~sim.world.state.MonthState`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.world.phases import funding
from sim.world.state import MonthState

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def run(m: LiquidationModel) -> MonthState:
    """Advance the environment one month, recompute the value in best use V_t (buyers'
    fundamental, :meth:`agents.buyer.BuyerBook.fundamental`) and apply this month's shocks;
    returns the month's state with last month's V_{t-1} (phase 7's reference)."""
    m.env.step()
    t = m.env.t
    # value in best use depends on the environment only: it is this month's reference
    month = MonthState(t, m.fundamental)
    m.fundamental = m.buyers.fundamental(m.env)
    for s in m.cfg.shocks:
        if s.month != t:
            continue
        if s.kind == "buyer_capital":
            before = m.buyers.capital.sum()
            m.buyers.shock_capital(s.size)
            if not m.buyers.unlimited:  # unlimited buyers' capital is off the books
                m.add_outside_flow("buyer_capital", m.buyers.capital.sum() - before)
        elif s.kind == "guarantor_exit":
            hit = m.borrowers.guaranteed & (m.rng.random(m.borrowers.n) < s.size)
            m.borrowers.guaranteed &= ~hit
            # loans that roll over from now on are priced without the guarantee
            m.borrowers.spread[hit] = m.borrowers.spread_base[hit]
            m.borrowers.tenant_gone |= hit
            for i in hit.nonzero()[0]:
                m.log_event("guarantee_withdrawn", "borrower", i)
        elif s.kind == "funding":
            funding.run_on(m, np.ones(m.lenders.n, bool), s.size, outside_only=True)
        elif s.kind == "other_loans":
            m.lenders.shock_other_loans(s.size, s.lender_type)
    return month
