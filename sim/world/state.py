"""What one phase of a month hands to a later one: :class:`MonthState` and :class:`SellOrders`.

Everything else lives on the model and its books (``model.borrowers``, ``model.lenders``, ...);
these two objects carry the month's intermediate results explicitly from the phase that makes
them to the phases that read them (docs/architecture.md, "One month"), instead of attributes
set in one phase and read in another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class MonthState:
    """One month's hand-overs between phases.

    * ``t``: the month (set by phase 1, the environment);
    * ``prev_fundamental``: last month's value in best use per generation ($ per GPU), the
      reference phase 7 carries an untraded price with (set by phase 1);
    * ``marks``: the lenders' collateral marks, lender x generation ($ per GPU; phase 3);
    * ``debt``: each borrower's debt as phase 3 left it ($), or None when a prepayment (a
      cash sweep, an accelerated payoff) moved it since: phases 4 and 5 then recompute it;
    * ``coll``: each borrower's collateral at its lead lender's mark plus pledged BTC ($;
      phase 3, re-evaluated by phase 4 when pledged coins are sold), or None once phase 5
      has read it (phase 6 moves fleets: the evaluation is spent).

    ``debt`` and ``coll`` are valid for every borrower alive when phase 3 ended (see
    :func:`sim.world.phases.lenders.month_debt_coll`). On the compiled engine phases 3 and 4
    hand over ``marks``, ``debt`` and ``coll`` in the same resident arrays every month
    (:func:`sim.world.phases.lenders.hand_over_arrays`), written in place.
    """

    t: int
    prev_fundamental: np.ndarray
    marks: np.ndarray | None = None
    debt: np.ndarray | None = None
    coll: np.ndarray | None = None


@dataclass(slots=True)
class SellOrders:
    """Phase 5's sell orders, read by phase 6's call auctions (lender x generation arrays in
    units and $ per GPU, borrower x generation for the borrowers):

    * ``forced``: units forced lenders sell at any price (down to the salvage floor);
    * ``patient``: units patient lenders (and lines financed by repo) offer;
    * ``patient_price``: the patient lenders' asks;
    * ``floor``: the salvage price per generation (the forced asks without the outside demand);
    * ``b_units``: units distressed borrowers offer (voluntary sales);
    * ``b_price``: the borrowers' ask per generation;
    * ``offered``: whether ``forced``, ``patient`` or ``b_units`` has a nonzero entry, when
      the compiled phase 5 has found out (phase 6's test for a month without orders); None
      when not known.
    """

    forced: np.ndarray
    patient: np.ndarray
    patient_price: np.ndarray
    floor: np.ndarray
    b_units: np.ndarray
    b_price: np.ndarray
    offered: bool | None = None
