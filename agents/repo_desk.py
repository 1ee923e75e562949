"""The repo desk and the buyer of last resort: the policy switches of docs/model.md, "A secured
repo and a buyer of last resort".

When ``policy.repo.enabled`` the desk is, by default (``policy.repo.design = "secured"``), a
secured term lender: it lends to lenders against their repossessed GPUs and to solvent
borrowers against their fleet's equity, at the haircut

    h_g = min(1, z sigma_g sqrt(liq_months) + liq_addon)

(the margin-period-of-risk haircut of CCPs and Basel's supervisory haircuts; sigma_g the
realised volatility of the price index, floored at ``sigma``), at SOFR + ``penalty_spread``,
for ``term_months``, with variation margin every month; an owner that can meet neither a call
nor a repayment defaults and the desk takes and sells the pledged units. It bids nothing in
the auction. When disabled it does nothing: that is the missing repo market.

``design = "legacy"`` keeps the first issues' desk (docs/model.md 7.17): it lends to lenders
against repossessed GPUs at h_g = h0 + kappa * max(0, 1 - p_g / p_ref_g) (Bagehot 1873,
*Lombard Street*: lend freely, against good collateral, at a penalty rate), and, if
``buy_floor``, bids (1 - h_g) x p_ref_g in every auction and re-offers what it bought at
p_ref_g (a standing buyer that holds GPUs unpowered).

Repo loans plus purchases at cost never exceed ``capacity``, nor the desk's cash. Both designs
and :class:`LastResortBuyer` (the separate ``policy.lolr`` switch) pay their cost of capital
(:func:`cost_of_capital`) to their funders.
"""

from __future__ import annotations

import numpy as np
from mesa.discrete_space import FixedAgent

from sim.core import numerics as nm
from sim.core.config import Repo


def pay_capital_cost(holder, t: int, cost: float) -> float:
    """Pay this month's cost of capital, and any left unpaid before, out of the holder's cash
    (never below 0); what its cash cannot pay accrues in ``funding_due``, a debt to its funders
    carried in its P&L. Returns the cash paid."""
    owed = cost + holder.funding_due
    paid = min(owed, max(holder.cash, 0.0))
    holder.cash -= paid
    holder.funding_due = owed - paid
    holder.funding[t] += paid
    return paid


def cost_of_capital(deployed: float, sofr: float, spread: float) -> float:
    """A month's cost of the capital a policy has deployed ($): deployed x (SOFR + spread) / 12.

    Public money lent or spent on GPUs is not free: it is raised at (at least) the risk-free
    rate, so the policy's P&L carries that rate on what it has deployed, paid to its funders
    (the outside sector), a transfer that leaves the system loss unchanged (docs/model.md,
    "The policies' cost of capital")."""
    return max(deployed, 0.0) * (sofr + spread) / 12.0


def haircut(price: np.ndarray, ref: np.ndarray, h0: float, kappa: float) -> np.ndarray:
    """h = h0 + kappa * max(0, 1 - p / p_ref), clipped to [0, 1]."""
    ratio = np.divide(price, ref, out=np.ones_like(price, dtype=float), where=ref > 0)
    return np.clip(h0 + kappa * np.maximum(0.0, 1.0 - ratio), 0.0, 1.0)


def margin_and_term(has: np.ndarray, debt: np.ndarray, allowed: np.ndarray,
                    repay: np.ndarray, cash: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The secured repo's monthly terms for each owner with a loan (``has``): the variation
    margin call = max(debt - allowed, 0) (``allowed``: what the pledged collateral supports
    after the haircut), and what is due, pay = debt where the owner repays at term (``repay``)
    else the call; an owner is in good standing (``ok``) when its cash (>= 0) covers pay.
    Returns (call, pay, ok); an owner not ``ok`` defaults (docs/model.md, "A secured repo")."""
    call = np.where(has, np.maximum(debt - allowed, 0.0), 0.0)
    pay = np.where(repay, debt, call)
    ok = cash >= pay
    return call, pay, ok


def units_to_seize(fleet: np.ndarray, debt: np.ndarray, price: np.ndarray,
                   bad: np.ndarray) -> np.ndarray:
    """A defaulting borrower's pledged units (borrower x generation): the share of its fleet
    the debt is worth at ``price``, ceil(min(debt / (fleet . price), 1) x fleet) (all of it
    when the fleet is worth nothing), for each borrower in ``bad``; 0 elsewhere."""
    value = nm.matvec(fleet, price)
    frac = np.minimum(np.divide(debt, value, out=np.ones(len(debt)), where=value > 0), 1.0)
    return np.where(bad[:, None], np.minimum(np.ceil(frac[:, None] * fleet), fleet), 0
                    ).astype(np.int64)


class RepoDesk(FixedAgent):
    """A standing lender and buyer against GPU collateral (a single agent)."""

    kind = "repo_desk"

    def __init__(self, model, cfg: Repo, n_gen: int, months: int = 0, n_borrowers: int = 0):
        super().__init__(model)
        self.cfg = cfg
        self.enabled = cfg.enabled
        self.secured = cfg.enabled and cfg.design == "secured"
        self.cash = cfg.capacity if cfg.enabled else 0.0
        self.holdings = np.zeros(n_gen, dtype=np.int64)
        self.cost_basis = np.zeros(n_gen)
        self.lent = 0.0  # repo loans outstanding (lenders' repo_debt, plus b_debt when secured)
        # secured design: borrowers' repo loans against their fleets' equity, and every
        # loan's maturity month (lenders' loans in ``maturity_l``)
        self.b_debt = np.zeros(n_borrowers)
        self.b_maturity = np.zeros(n_borrowers, dtype=np.int64)
        self.maturity_l = None  # set by the model (one entry per lender)
        n = months + 1
        #: The desk's P&L pieces, one entry per month (month 0 is t0), in $ (flows within the
        #: month, stocks at its end); read by the system-loss accounting:
        #: ``cash_lent``: new repo loans paid out; ``cash_repaid``: repo principal repaid
        #: (sales, term repayments and margin posted in cash);
        self.cash_lent, self.cash_repaid = np.zeros(n), np.zeros(n)
        #: ``cash_bought`` / ``cash_sold``: GPUs bought / sold in the auction (price x units);
        self.cash_bought, self.cash_sold = np.zeros(n), np.zeros(n)
        #: ``interest``: repo interest received in cash (capitalised interest is not cash);
        self.interest = np.zeros(n)
        #: ``funding``: its cost of capital paid in cash (:func:`cost_of_capital` on loans + GPUs
        #: at cost at the month's end, after phase 8: docs/model.md, "The policies' cost of
        #: capital"); ``funding_due``: what its cash could not pay yet, a debt to its funders;
        self.funding = np.zeros(n)
        self.funding_due = 0.0
        #: ``margin_received``: variation margin posted in cash by repo borrowers (it pays
        #: the loan down, so it is also in ``cash_repaid``);
        self.margin_received = np.zeros(n)
        #: ``default_loss``: losses on repo defaults (loan outstanding less what the seized
        #: collateral sold for, at its sale; a borrower's unsecured remainder at its default);
        self.default_loss = np.zeros(n)
        #: ``defaults``: repo defaults (owners that neither posted margin nor repaid);
        self.defaults = np.zeros(n, dtype=np.int64)
        #: ``holdings_cost``: GPUs held at cost; ``mark``: held GPUs x the price index;
        #: ``loans``: repo loans outstanding; ``cash_balance``: the desk's cash (all at month end).
        self.holdings_cost, self.mark = np.zeros(n), np.zeros(n)
        self.loans, self.cash_balance = np.zeros(n), np.zeros(n)
        #: ``due``: its cost of capital unpaid at month end (``funding_due``).
        self.due = np.zeros(n)
        self.cash0 = self.cash  # opening cash: cash - cash0 = the sum of ``flows``
        # repo interest unpaid and added to the loans (not cash: part of ``lent``)
        self.interest_capitalised = 0.0

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

    def pay_funding(self, t: int, sofr: float) -> float:
        """Pay this month's cost of capital on what is deployed (0 when disabled); returns the
        cash paid (:func:`pay_capital_cost`)."""
        if not self.enabled:
            return 0.0
        return pay_capital_cost(self, t, cost_of_capital(self.used, sofr,
                                                         self.cfg.funding_spread))

    def floor_bid(self, price: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Bid price per generation: (1 - h) x p_ref (0 when disabled, not buying, or
        secured: a secured repo desk never buys in the auction)."""
        if not (self.enabled and self.cfg.buy_floor) or self.secured:
            return np.zeros_like(ref)
        return (1.0 - self.haircuts(price, ref)) * ref

    def secured_haircuts(self, price_hist: np.ndarray, t: int) -> np.ndarray:
        """Secured design: h_g = min(1, z sigma_g sqrt(liq_months) + liq_addon), with
        sigma_g = max(sigma, the standard deviation of the simple monthly returns of the price
        index over the last ``vol_window`` months): the margin-period-of-risk haircut of
        CCPs and Basel's supervisory haircuts scaled by sqrt(holding period)."""
        c = self.cfg
        lo = max(t - c.vol_window, 0)
        hist = price_hist[lo: t + 1]
        sig = np.full(hist.shape[1], c.sigma)
        if len(hist) >= 3:
            prev = hist[:-1]
            ret = np.divide(hist[1:], prev, out=np.ones_like(prev), where=prev > 0) - 1.0
            sig = np.maximum(sig, ret.std(axis=0, ddof=1))
        return np.minimum(c.z * sig * np.sqrt(c.liq_months) + c.liq_addon, 1.0)

    # ---------------------------------------------------------------- its decisions
    def pledge(self, fresh: np.ndarray, lend_price: np.ndarray) -> np.ndarray | None:
        """The units the desk lends against out of the lenders' ``fresh`` units (lender x
        generation) at ``lend_price`` per unit, pro rata when its room is short: each line
        pledges floor(units x min(1, room / wanted) + 1e-9). None when nothing is wanted."""
        want = (fresh * lend_price[None, :]).sum(axis=1)
        total = want.sum()
        if not total > 0:
            return None
        frac = min(1.0, self.room / total)
        return np.floor(fresh * frac + 1e-9).astype(np.int64)

    def ration(self, want: np.ndarray) -> np.ndarray | None:
        """New loans for the amounts ``want`` ($ per borrower), scaled pro rata by
        min(1, room / total wanted); None when nothing is wanted."""
        total = want.sum()
        if not total > 0:
            return None
        return want * min(1.0, self.room / total)

    # ---------------------------------------------------------------- the desk's ledger
    # Every move of the desk's cash, loans and GPUs goes through these methods, so that its
    # cash, ``lent`` and the monthly P&L arrays (one ledger: ``flows``) move together.
    def lend(self, amount: float, t: int) -> None:
        """Pay out new repo loans of ``amount`` $ in month ``t``: lent += amount, cash -= amount."""
        self.lent += amount
        self.cash -= amount
        self.cash_lent[t] += amount

    def receive_repayment(self, amount: float, t: int, margin: float | None = None) -> None:
        """Repo principal repaid in cash (sales, term repayments, margin, estates): lent -=
        amount, cash += amount; ``margin``, the part of it posted as variation margin (the
        secured design), is also counted in ``margin_received``."""
        self.lent -= amount
        self.cash += amount
        self.cash_repaid[t] += amount
        if margin is not None:
            self.margin_received[t] += margin

    def receive_interest(self, amount: float, t: int) -> None:
        """Repo interest paid in cash."""
        self.cash += amount
        self.interest[t] += amount

    def capitalise(self, amount: float) -> None:
        """Repo interest left unpaid: added to the loans (``lent``), not cash."""
        self.lent += amount
        self.interest_capitalised += amount

    def write_off(self, amount: float, n: int, t: int) -> None:
        """``n`` repo loans of ``amount`` $ in all lost with no collateral to take (a borrower
        whose fleet a defaulted facility took)."""
        self.default_loss[t] += amount
        self.defaults[t] += n
        self.lent -= amount

    def foreclose(self, seized: np.ndarray, debt: np.ndarray, price: np.ndarray,
                  t: int) -> None:
        """A repo default: the loans ``debt`` (one per owner) are discharged and the desk takes
        ``seized`` units (owner x generation). Its cost basis is the debt, spread over each
        owner's units by value at ``price``, basis_g += sum_i seized_ig x price_g x debt_i /
        value_i; a debt with no collateral left (value_i = 0) is lost at once."""
        self.lent -= debt.sum()
        val = nm.matvec(seized, price)
        w = np.divide(debt, val, out=np.zeros_like(debt), where=val > 0)
        self.holdings += seized.sum(axis=0)
        self.cost_basis += (seized * w[:, None]).sum(axis=0) * price
        self.default_loss[t] += np.where(val > 0, 0.0, debt).sum()
        self.defaults[t] += np.count_nonzero(debt > 0)

    def buy(self, g: int, units: int, price: float, t: int) -> None:
        """The legacy desk's floor bid filled: ``units`` of generation ``g`` at ``price``."""
        self.holdings[g] += units
        self.cost_basis[g] += units * price
        self.cash -= units * price
        self.cash_bought[t] += units * price

    def sell(self, g: int, units: int, price: float, t: int) -> None:
        """``units`` of generation ``g`` sold at ``price``; the cost basis leaves pro rata. A
        secured desk sells collateral it took in a repo default: the loss (basis - proceeds)
        is realised then."""
        basis = self.cost_basis[g] * units / self.holdings[g]
        self.holdings[g] -= units
        self.cost_basis[g] -= basis
        self.cash += units * price
        self.cash_sold[t] += units * price
        if self.secured:
            self.default_loss[t] += basis - units * price

    def record(self, t: int, price: np.ndarray) -> None:
        """The month-end stocks of the P&L arrays."""
        self.holdings_cost[t] = float(self.cost_basis.sum())
        self.mark[t] = float((self.holdings * price).sum())
        self.loans[t] = self.lent
        self.cash_balance[t] = self.cash
        self.due[t] = self.funding_due

    @property
    def flows(self) -> dict[str, float]:
        """The desk's cumulative cash flows by kind ($, + into the desk: repo loans made (-),
        repaid (+), interest received (+), GPUs bought (-), GPUs sold (+), its cost of capital
        paid to its funders (-)),
        summed from the monthly P&L arrays (the one ledger): ``cash - cash0`` is their sum.
        Margin posted in cash is in ``repaid``; repo-default sales are in ``sales``."""
        return {"lent": -float(self.cash_lent.sum()), "repaid": float(self.cash_repaid.sum()),
                "interest": float(self.interest.sum()),
                "purchases": -float(self.cash_bought.sum()),
                "sales": float(self.cash_sold.sum()),
                "funding": -float(self.funding.sum())}

    def pnl(self, price: np.ndarray | None = None):
        """Profit and loss marked to market ($): cash less opening cash (the cash flows), plus
        repo loans outstanding at face, plus holdings at the price index (interest received,
        sales and margin are in the cash; defaults' losses show as collateral sold below the
        loan). With ``price``: now, at that price (a float); without: at each month end (the
        recorded array)."""
        if price is not None:
            return ((self.cash - self.cash0) + self.lent + float(nm.dot(self.holdings, price))
                    - self.funding_due)
        return self.cash_balance - self.cash0 + self.loans + self.mark - self.due


class LastResortBuyer:
    """Buyer of last resort (``policy.lolr.enabled``): bids ``floor_share`` x the value in
    best use for what its capacity ($ at cost) and its powered space (own MW plus hosting MW)
    hold; runs what it holds (earns spot rent at the fleet utilisation, pays power and spot
    opex per GPU, the facility charge per kW on its own MW and, on the kW beyond its own MW,
    hosting per kW-month); offers a generation held
    ``hold_months`` (units-weighted since purchase) at the price index, never below the
    salvage floor, until sold. Not a Mesa agent (it joins no network)."""

    kind = "lolr"

    def __init__(self, cfg, n_gen: int, months: int):
        self.cfg = cfg
        self.cash = cfg.capacity
        self.holdings = np.zeros(n_gen, dtype=np.int64)
        self.cost_basis = np.zeros(n_gen)
        self.since = np.zeros(n_gen)  # units-weighted purchase month per generation
        n = months + 1
        #: per month ($): purchases, sales, rent earned, power + hosting paid; month-end
        #: holdings at cost and at the price index, kW in use
        self.cash_bought, self.cash_sold = np.zeros(n), np.zeros(n)
        self.rent, self.costs = np.zeros(n), np.zeros(n)
        self.funding = np.zeros(n)  # its cost of capital paid in cash (cost_of_capital)
        self.funding_due = 0.0  # its cost of capital its cash could not pay yet (a debt)
        self.holdings_cost, self.mark, self.kw_used = np.zeros(n), np.zeros(n), np.zeros(n)

    def kw_room(self, kw: np.ndarray) -> float:
        used = float((self.holdings * kw).sum())
        return max((self.cfg.mw + self.cfg.hosting_mw) * 1000.0 - used, 0.0)

    def room(self) -> float:
        return max(min(self.cfg.capacity - float(self.cost_basis.sum()), self.cash), 0.0)

    def bid(self, ref: np.ndarray) -> np.ndarray:
        return self.cfg.floor_share * ref

    def buy(self, g: int, units: int, price: float, t: int) -> None:
        h = self.holdings[g]
        self.since[g] = (self.since[g] * h + t * units) / (h + units)
        self.holdings[g] += units
        self.cost_basis[g] += units * price
        self.cash -= units * price
        self.cash_bought[t] += units * price

    def sell(self, g: int, units: int, price: float, t: int) -> None:
        self.cost_basis[g] -= self.cost_basis[g] * units / self.holdings[g]
        self.holdings[g] -= units
        self.cash += units * price
        self.cash_sold[t] += units * price

    def for_sale(self, t: int) -> np.ndarray:
        return np.where(t - self.since >= self.cfg.hold_months, self.holdings, 0)

    def operate(self, t: int, rent_month: np.ndarray, run_cost: np.ndarray, kw: np.ndarray,
                own_per_kw: float) -> tuple[float, float]:
        """Rent earned and costs paid this month on what it holds (all of it runs): power and
        spot opex per GPU (``run_cost``), ``own_per_kw`` $ per kW-month on the kW in its own
        MW (the facility charge buyers' valuations use) and the hosting fee beyond it."""
        rent = float((self.holdings * rent_month).sum())
        used = float((self.holdings * kw).sum())
        own = self.cfg.mw * 1000.0
        cost = float((self.holdings * run_cost).sum()) + min(used, own) * own_per_kw \
            + max(used - own, 0.0) * self.cfg.hosting_per_kw_month
        self.cash += rent - cost
        self.rent[t], self.costs[t], self.kw_used[t] = rent, cost, used
        return rent, cost

    def pay_funding(self, t: int, sofr: float) -> float:
        """Pay this month's cost of capital on the GPUs held at cost; returns the cash paid
        (:func:`pay_capital_cost`)."""
        return pay_capital_cost(self, t, cost_of_capital(float(self.cost_basis.sum()), sofr,
                                                         self.cfg.funding_spread))

    def record(self, t: int, price: np.ndarray) -> None:
        self.holdings_cost[t] = float(self.cost_basis.sum())
        self.mark[t] = float((self.holdings * price).sum())
