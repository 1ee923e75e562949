"""Lenders: banks, private-credit funds and asset-based lenders (ABL specialists).

Balance sheet of lender i (all in :class:`LenderBook`):

    assets      = cash + loans (exposure of its loan rows) + other (non-GPU) loans
                  + repossessed GPUs at its mark
                  + claims on other lenders (valued by the month's clearing vector)
    liabilities = funding from other lenders (the funding network) + outside funding + repo
    equity      = assets - liabilities   (set by the month's clearing, ``equity``)

Marks (the "collateral illusion": paper LTV versus realised recovery):

* ``book``: straight-line depreciation of the new-unit (installed) price over a 6-year
  accounting life (the lives used by CoreWeave, Microsoft and Alphabet, filings 2025);
* ``appraisal``: the mean of the traded price index over the last ``appraisal_lag`` months, i.e.
  a lagged, smoothed appraisal (Geltner 1993, J. Real Estate Research 8(3), on appraisal lag);
* ``market``: the last price index.

Decisions: sell repossessed GPUs patiently (limit orders at mark x (1 - sale_discount)) while the
lender is sound and the GPUs are recent; sell at any price above salvage (forced) when it is
deleveraging or failed or the GPUs have been held ``max_hold_months``. With
``buyers.outside_demand.enabled`` forced sellers take the clearing price (market orders
against the outside demand, which bids down to scrap) and patient asks are capped at the
value in best use (``sim.world.phases.orders``, phase 5; docs/model.md "Outside demand").
Below ``capital_floor`` x its initial capital ratio a lender deleverages: no rollovers, no
revolver draws, forced sales. Negative clearing equity means failure
(``sim.world.phases.funding`` runs Rogers-Veraart clearing).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from mesa.discrete_space import FixedAgent

from sim.core.config import Scenario


class LenderStatus(IntEnum):
    """A lender's status code: ``LenderBook.status`` (an int8 array) and the lenders' columns of
    ``model.panel["state"]``."""

    NORMAL = 0
    DELEVERAGING = 1  # below capital_floor x its initial capital ratio
    FAILED = 2  # negative clearing equity

    @property
    def label(self) -> str:
        """The state's name in the outputs (``panel.parquet``) and the Mesa view."""
        return self.name.lower()


MARKS = ("book", "appraisal", "market")
ACCOUNTING_LIFE_MONTHS = 72


class LenderBook:
    """Balance sheets of all lenders (struct of arrays)."""

    def __init__(self, cfg: Scenario, n_gen: int, rng: np.random.Generator):
        lc = cfg.lenders
        n = lc.count
        self.n = n
        self.type_names = list(lc.types)
        types = list(lc.types.values())
        weights = np.array([t.share for t in types], dtype=float)
        # deterministic apportionment of types, then shuffled so ids carry no type order
        counts = np.floor(weights / weights.sum() * n).astype(int)
        counts[np.argsort(-(weights / weights.sum() * n - counts), kind="stable")[
            : n - counts.sum()]] += 1
        tidx = np.repeat(np.arange(len(types)), counts)
        self.type_idx = rng.permutation(tidx)
        pick = np.array([[t.capital_ratio, t.interbank_share, t.cash_share, t.sale_discount]
                         for t in types])[self.type_idx]
        self.capital_ratio0, self.interbank_share, self.cash_share, self.sale_discount = pick.T
        self.mark_rule = np.array([MARKS.index(t.mark) for t in types])[self.type_idx]
        # the book of other (non-GPU) loans: sized at t0 so that GPU loans are gpu_share of
        # the loan book, other = gpu_loans x (1 - gpu_share) / gpu_share (``sim.world.model``)
        other = np.array([[t.gpu_share, t.other_yield, t.other_loss_calm, t.other_loss_stress]
                          for t in types])[self.type_idx]
        self.gpu_share, self.other_yield, self.other_loss_calm, self.other_loss_stress = other.T
        self.has_other = bool((self.gpu_share < 1.0).any())
        self.other_loans = np.zeros(n)
        self.other_losses = np.zeros(n)  # cumulative write-offs of other loans
        self.status = np.full(n, LenderStatus.NORMAL, dtype=np.int8)
        self.cash = np.zeros(n)
        self.outside = np.zeros(n)  # outside funding (deposits, notes, LP leverage)
        self.repo_debt = np.zeros(n)
        self.repo_units = np.zeros((n, n_gen), dtype=np.int64)  # inventory financed by repo
        self.inventory = np.zeros((n, n_gen), dtype=np.int64)
        self.inv_since = np.full((n, n_gen), -1, dtype=np.int64)
        self.claim_pool = np.zeros(n)  # written-off exposure not yet recovered
        self.writeoffs = np.zeros(n)
        self.recoveries = np.zeros(n)  # all recoveries: seized at default + later sales
        self.later_recoveries = np.zeros(n)  # recoveries after the write-off (sales)
        self.equity = np.zeros(n)
        self.assets = np.zeros(n)
        self._book_key: tuple | None = None  # (environment, month) of the cached book marks
        self._table = np.zeros((3, n_gen))  # book, appraisal and market marks (see marks)

    @property
    def kind(self) -> np.ndarray:
        return np.array(self.type_names, dtype=object)[self.type_idx]

    @property
    def credit_losses(self) -> np.ndarray:
        """Write-offs minus recoveries, per lender."""
        return self.writeoffs - self.recoveries

    @property
    def losses_at_writeoff(self) -> np.ndarray:
        """Write-offs net of the cash seized at the write-off only, per lender: it never
        falls (recoveries by later sales are ``later_recoveries``)."""
        return self.writeoffs - (self.recoveries - self.later_recoveries)

    def other_loans_month(self, stress: bool) -> tuple[np.ndarray, np.ndarray]:
        """One month of the other-loan book: interest y/12 x B on the opening balance B, and a
        write-off l/12 x B with l the calm or stress annual loss rate (charge-off rates:
        docs/calibration.md); maturing loans are re-lent (the book is constant but for
        losses). Returns (interest, loss) per lender; the caller pays the interest in cash."""
        rate = self.other_loss_stress if stress else self.other_loss_calm
        income = self.other_loans * self.other_yield / 12.0
        loss = self.other_loans * rate / 12.0
        self.other_loans -= loss
        self.other_losses += loss
        return income, loss

    def shock_other_loans(self, size: float, lender_type: str = "") -> np.ndarray:
        """An ``other_loans`` shock: lenders of ``lender_type`` ("" = all) write off ``size``
        of their other loans at once, loss_i = size x B_i (B_i the balance), booked like the
        monthly write-offs of :meth:`other_loans_month`. Returns the loss per lender."""
        hit = (np.ones(self.n, dtype=bool) if not lender_type
               else self.type_idx == self.type_names.index(lender_type))
        loss = np.where(hit, self.other_loans * size, 0.0)
        self.other_loans -= loss
        self.other_losses += loss
        return loss

    def marks(self, env, price_hist: np.ndarray, t: int, lag: int) -> np.ndarray:
        """Per-lender, per-generation value of one GPU under the lender's marking rule.

        ``price_hist[s]`` is the price index at the end of month s (row 0 = t0).
        """
        # (3, G) rows: book, appraisal, market; filled in place (the values np.array of the
        # three rows would hold); the result is a fresh array (fancy indexing copies)
        table = self._table
        if self._book_key != (env, env.t):  # book values depend on the month only: once a month
            table[0] = env.new_unit_price * np.clip(
                1.0 - np.maximum(env.age, 0) / ACCOUNTING_LIFE_MONTHS, 0.0, 1.0)
            self._book_key = (env, env.t)
        window = price_hist[max(0, t - lag + 1): t + 1]
        appraisal = np.add.reduce(window, axis=0, out=table[1])  # the mean, without its wrapper
        appraisal /= len(window)
        table[2] = price_hist[t]
        return table[self.mark_rule]

    @property
    def mark_table(self) -> np.ndarray:
        """The (3, G) table of book, appraisal and market marks :meth:`marks` fills in place
        (for the compiled phases, which fill it as :meth:`marks` does)."""
        return self._table

    def book_marks_current(self, env) -> bool:
        """Whether the table's book row is already ``env``'s month's."""
        return self._book_key == (env, env.t)

    def marks_table(self, env) -> tuple[np.ndarray, bool]:
        """For a caller that computes :meth:`marks` itself (the compiled phase 3,
        :func:`sim.world.kernels.lenders.lenders_month`): the (3, G) table :meth:`marks` fills
        in place, and whether its book row is stale for ``env``'s month. The caller fills the
        table as :meth:`marks` does (the book row only if stale); from this call on the book
        row counts as filled for the month."""
        stale = self._book_key != (env, env.t)
        self._book_key = (env, env.t)
        return self._table, stale

    def add_inventory(self, units: np.ndarray, t: int) -> None:
        """Repossessed GPUs join the warehouse; the clock starts for a line that was empty."""
        fresh = (self.inventory == 0) & (units > 0)
        self.inv_since[fresh] = t
        self.inventory += units

    def remove_inventory(self, units: np.ndarray) -> None:
        self.inventory -= units
        self.inv_since[self.inventory == 0] = -1
        self.repo_units = np.minimum(self.repo_units, self.inventory)

    def apply_recovery(self, proceeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sale proceeds first recover written-off exposure; any surplus belongs to the
        defaulted borrowers' estates (an outside flow). Returns (recovered, surplus)."""
        rec = np.minimum(proceeds, self.claim_pool)
        self.claim_pool -= rec
        self.recoveries += rec
        self.later_recoveries += rec
        return rec, proceeds - rec

    # ---------------------------------------------------------------- decision rules
    def forced_lines(self, t: int, max_hold_months: int) -> np.ndarray:
        """Inventory lines (lender x generation) sold at any price: held by a lender that is
        not NORMAL (deleveraging or failed), or held ``max_hold_months`` or longer."""
        held = np.where(self.inv_since >= 0, t - self.inv_since, 0)
        return ((self.status != LenderStatus.NORMAL)[:, None] | (held >= max_hold_months)) \
            & (self.inventory > 0)

    def patient_asks(self, marks: np.ndarray, floor: np.ndarray,
                     cap: np.ndarray | None = None) -> np.ndarray:
        """A patient lender's ask (lender x generation): max(mark x (1 - sale_discount),
        floor); with ``cap`` (the value in best use, under the outside demand) never above it
        (no buyer pays more: an ask above it only waits while the GPU ages) nor below floor."""
        ask = np.maximum(marks * (1.0 - self.sale_discount)[:, None], floor[None, :])
        if cap is not None:
            ask = np.maximum(np.minimum(ask, cap[None, :]), floor[None, :])
        return ask

    def outside_repayment(self) -> np.ndarray:
        """Outside funding each sound (NORMAL) lender repays from cash above its liquidity
        target cash_share x assets: min(max(cash - target, 0), outside funding); 0 for the
        others."""
        target = self.cash_share * np.maximum(self.assets, 0.0)
        # np.clip(x, 0, hi) is minimum(maximum(x, 0), hi) (without clip's Python wrapper), and
        # zeroing the rows of lenders not NORMAL in place gives what np.where gave
        rep = np.minimum(np.maximum(self.cash - target, 0.0), self.outside)
        rep[self.status != LenderStatus.NORMAL] = 0.0
        return rep

    def capital_ratio(self) -> np.ndarray:
        """Equity over assets after the clearing (0 where assets are 0)."""
        return np.divide(self.equity, self.assets, out=np.zeros(self.n), where=self.assets > 0)

    def starts_deleveraging(self, ratio: np.ndarray, floor: np.ndarray) -> np.ndarray:
        """Sound lenders whose capital ratio fell below ``floor`` (capital_floor x their
        initial ratio): they deleverage (no rollovers, no revolver draws, forced sales)."""
        return (self.status == LenderStatus.NORMAL) & (ratio < floor)

    def heals(self, ratio: np.ndarray, floor: np.ndarray) -> np.ndarray:
        """Deleveraging lenders back above 1.2 x their floor (hysteresis): NORMAL again."""
        return (self.status == LenderStatus.DELEVERAGING) & (ratio >= 1.2 * floor)

    def rolls_over(self, lender: np.ndarray, ltv: np.ndarray, refi_ltv: float | np.ndarray,
                   dscr: np.ndarray, dscr_min: float, arrears_months: np.ndarray) -> np.ndarray:
        """Whether each loan maturing next month (its ``lender`` and its borrower's ``ltv``,
        ``dscr``, ``arrears_months``) rolls over: only if it still qualifies, LTV <= refi_ltv,
        DSCR >= dscr_min, no arrears, and its lender is sound (NORMAL)."""
        return ((ltv <= refi_ltv) & (dscr >= dscr_min) & (arrears_months == 0)
                & (self.status[lender] == LenderStatus.NORMAL))


class Lender(FixedAgent):
    """A bank, private-credit fund or ABL: a view on row ``idx`` of the model's LenderBook."""

    def __init__(self, model, idx: int):
        super().__init__(model)
        self.idx = idx

    @property
    def book(self) -> LenderBook:
        return self.model.lenders

    @property
    def kind(self) -> str:
        return self.book.type_names[self.book.type_idx[self.idx]]

    @property
    def cash(self) -> float:
        return float(self.book.cash[self.idx])

    @property
    def equity(self) -> float:
        return float(self.book.equity[self.idx])

    @property
    def inventory(self) -> dict[str, int]:
        return dict(zip(self.model.env.names, self.book.inventory[self.idx].tolist(),
                        strict=True))

    @property
    def credit_losses(self) -> float:
        return float(self.book.credit_losses[self.idx])

    @property
    def mark_rule(self) -> str:
        return MARKS[self.book.mark_rule[self.idx]]

    @property
    def size(self) -> float:
        """Total assets after the month's clearing ($)."""
        return float(self.book.assets[self.idx])

    @property
    def state(self) -> str:
        return LenderStatus(self.book.status[self.idx]).label
