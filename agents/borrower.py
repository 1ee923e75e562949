"""Borrowers: GPU owners financed with secured debt. Miners and neo-clouds.

State lives in :class:`BorrowerBook` (one array per balance-sheet line, one entry per borrower);
the Mesa agents :class:`Miner` and :class:`NeoCloud` are views on one row of it.

Monthly behaviour (docs/model.md 7.2-7.5), all vectorised over borrowers:

* revenue = contracted GPUs x locked rent x 730 h (take-or-pay) + spot GPUs x spot rent x 730 h x
  utilisation (+ for miners: hashrate x max(0, hashprice - cash cost) x days, i.e. rigs are
  curtailed when mining does not cover its cash cost);
* opex = GPUs x kW x PUE x 730 h x power price + fixed opex per GPU;
* a contracted tenant walks away with a small monthly probability (larger in stress); a
  hyperscaler guarantee keeps ``guarantee_cover`` of the locked rent paid (the Google backstops
  of ~half a lease's value, 8-K 2025); expired contracts renew at the spot rent;
* if cash falls short of debt service the pecking order is: cash, BTC treasury (miners; unpledged
  coins), the revolver, voluntary GPU sales (limit orders in the month's auction), and only then
  arrears; arrears older than the grace period are a payment default (see ``sim.world.model``).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from mesa.discrete_space import FixedAgent

from sim.core import numerics as nm
from sim.core.config import BorrowerType, ConfigError, Scenario
from sim.core.environment import DAYS_PER_MONTH, HOURS_PER_MONTH, Environment
from sim.core.market import MAX_UNITS

MINER, NEOCLOUD = 0, 1
KIND_NAMES = ("miner", "neocloud")


class BorrowerStatus(IntEnum):
    """A borrower's status code: ``BorrowerBook.status`` (an int8 array) and the borrowers'
    columns of ``model.panel["state"]`` (where a borrower under a margin call or in arrears shows
    as DISTRESSED; the book itself holds HEALTHY or DEFAULTED)."""

    HEALTHY = 0
    DISTRESSED = 1
    DEFAULTED = 2

    @property
    def label(self) -> str:
        """The state's name in the outputs (``panel.parquet``) and the Mesa view."""
        return self.name.lower()



class BorrowerBook:
    """Balance sheets and contract state of all borrowers (struct of arrays).

    ``cash`` may be negative for a living borrower: unpaid power and running bills (trade
    payables). Such a borrower cannot pay its debt service, so it is in arrears and defaults
    after the grace period; at default its unpaid bills are written off by the suppliers.
    """

    def __init__(self, cfg: Scenario, env: Environment, rng: np.random.Generator):
        types: list[tuple[int, BorrowerType]] = [
            (MINER, cfg.borrowers.miner), (NEOCLOUD, cfg.borrowers.neocloud)]
        n_gen = env.n_gen
        kinds, fleets, params = [], [], []
        for code, bt in types:
            n = bt.count
            if n == 0:
                continue
            sig = bt.fleet_sigma
            size = bt.fleet_mean * nm.lognormal(rng, -0.5 * (sig * sig), sig, n)
            size = np.maximum(np.rint(size), 1).astype(np.int64)
            mix = np.zeros(n_gen)
            mix[: len(bt.fleet_mix)] = bt.fleet_mix
            mix[~env.shipping] = 0.0
            if mix.sum() <= 0:
                mix[np.flatnonzero(env.shipping)[-1:]] = 1.0
            fleets.append(rng.multinomial(size, mix / mix.sum()))
            kinds.append(np.full(n, code, dtype=np.int8))
            params.append((bt, n))
        self.n = int(sum(n for _, n in params))
        self.kind = np.concatenate(kinds) if kinds else np.zeros(0, dtype=np.int8)
        self.fleet = (np.vstack(fleets) if fleets else np.zeros((0, n_gen))).astype(np.int64)
        units = self.fleet.sum(axis=0)
        if units.size and units.max() > MAX_UNITS:
            # the call auction's unit arithmetic is exact in int64 up to 2**31 - 1 ask units
            # (sim/core/market.py), and every GPU of a generation may be offered in one month
            raise ConfigError(f"the drawn fleets hold {int(units.max()):,} GPUs of one "
                              f"generation; at most {MAX_UNITS:,} can be traded: lower "
                              "borrowers' count or fleet_mean")

        def per(attr):
            return np.concatenate([np.full(n, float(getattr(bt, attr))) for bt, n in params]) \
                if params else np.zeros(0)

        def draw_lognormal(attr):
            return np.concatenate([
                getattr(bt, attr) * nm.lognormal(rng, -0.18, 0.6, n) for bt, n in params]) \
                if params else np.zeros(0)

        self.ltv0 = per("ltv")
        self.capex_multiple = per("capex_multiple")
        self.spread = per("spread")
        self.term = per("term_months").astype(np.int64)
        self.amort_rate = per("amortisation")
        self.contracted_share = per("contracted_share")
        self.guarantee_cover = per("guarantee_cover")
        self.revolver_share = per("revolver_share")
        self.fixed_opex = per("fixed_opex_per_gpu")
        self.mining_cost = per("mining_cost")
        self.btc_pledge = per("btc_pledge")
        self.cash_months = per("cash_months")
        self.payout_months = per("payout_months")
        self.hashrate = draw_lognormal("hashrate_mean")
        self.btc = draw_lognormal("btc_treasury_mean")
        self.btc_pledged = self.btc * self.btc_pledge  # coins held by the lenders as collateral
        premium = per("contract_premium")
        cmax = per("contract_months_max").astype(np.int64)
        self.contract_rent = premium[:, None] * env.rent[None, :]
        self.contract_end = rng.integers(1, np.maximum(cmax, 1) + 1)
        self.contract_months = cmax
        self.guaranteed = rng.random(self.n) < per("guarantee_prob")
        # a guaranteed borrower (investment-grade offtaker) borrows at a lower spread and a
        # higher advance rate (docs/model.md, "Lenders with other assets ..."); its LTV
        # covenants scale with its advance rate: cov_scale = guarantee_ltv / ltv (None: off)
        self.spread_base = self.spread.copy()  # the spread without a guarantee
        self.cov_scale = None
        cut = per("guarantee_spread_cut")
        if np.count_nonzero(cut):
            self.spread = np.where(self.guaranteed, np.maximum(self.spread - cut, 0.0),
                                   self.spread)
        g_ltv = per("guarantee_ltv")
        if np.count_nonzero(g_ltv):
            raised = self.guaranteed & (g_ltv > 0.0)
            self.cov_scale = np.where(raised, g_ltv / self.ltv0, 1.0)
            self.ltv0 = np.where(raised, g_ltv, self.ltv0)
        self.tenant_gone = np.zeros(self.n, dtype=bool)
        self.cash = np.zeros(self.n)
        self.status = np.full(self.n, BorrowerStatus.HEALTHY, dtype=np.int8)
        self.arrears_months = np.zeros(self.n, dtype=np.int64)
        self.call_months = np.full(self.n, -1, dtype=np.int64)  # -1: no margin call open
        self.dscr_breach = np.zeros(self.n, dtype=np.int64)
        self.dscr = np.full(self.n, 2.0)
        self.revenue = np.zeros(self.n)
        self.opex = np.zeros(self.n)
        # energy arbitrage (sites.arbitrage, agents/sites.py): the share of each mining hall
        # still mining and the AI hosting income of the rest; None without sites
        self.mining_share: np.ndarray | None = None
        self.site_income: np.ndarray | None = None

    @property
    def pledged_btc(self) -> np.ndarray:
        return self.btc_pledged

    @property
    def alive(self) -> np.ndarray:
        return self.status != BorrowerStatus.DEFAULTED

    def cost_basis(self, env: Environment) -> np.ndarray:
        """All-in purchase cost of each fleet: new-unit (installed) prices x capex multiple
        (any fit-out beyond the installed unit); facilities are sized on it (loan-to-cost).
        ``env.new_unit_price`` already holds the server share and networking
        (``installed_multiple``), so ``capex_multiple`` is 1 when that is set."""
        return nm.matvec(self.fleet, env.new_unit_price) * self.capex_multiple

    def operating(self, env: Environment) -> tuple[np.ndarray, np.ndarray]:
        """Revenue and opex of the month (docs/model.md 7.2), one entry per borrower."""
        in_term = env.t < self.contract_end
        contracted = in_term & ~self.tenant_gone
        cover = np.where(self.tenant_gone & self.guaranteed & in_term, self.guarantee_cover, 0.0)
        # contracted capacity earns the locked rent; once a tenant has gone, the capacity is
        # re-let at spot and a guarantor pays ``cover`` of the locked rent on top
        locked_share = self.contracted_share * np.where(contracted, 1.0, cover)
        spot_share = 1.0 - self.contracted_share * contracted
        u = env.cfg.utilisation
        gpu_rev = HOURS_PER_MONTH * (
            locked_share * np.add.reduce(self.fleet * self.contract_rent, axis=1)
            + spot_share * u * nm.matvec(self.fleet, env.rent))
        mining = self.hashrate * np.maximum(env.hashprice - self.mining_cost, 0.0) * DAYS_PER_MONTH
        if self.mining_share is not None:  # part of the mining hall is let to AI tenants
            mining = mining * self.mining_share + self.site_income
        # GPUs per borrower: an integer row sum (exact)
        opex = (nm.matvec(self.fleet, env.power_cost_per_gpu())
                + np.add.reduce(self.fleet, axis=1) * self.fixed_opex)
        alive = self.alive
        self.revenue = np.where(alive, gpu_rev + mining, 0.0)
        self.opex = np.where(alive, opex, 0.0)
        return self.revenue, self.opex

    def update_contracts(self, env: Environment, rng: np.random.Generator,
                         p_tenant_default: float) -> None:
        """Tenants walk away at random; expired contracts renew at the current spot rent."""
        in_term = env.t < self.contract_end
        walk = (rng.random(self.n) < p_tenant_default) & in_term
        self.tenant_gone |= walk & self.alive
        lapsed = ~in_term | (self.tenant_gone & ~self.guaranteed)
        rows = lapsed.nonzero()[0]  # the mask converted once, not by each assignment
        if len(rows):
            self.contract_rent[rows] = env.rent[None, :]
            self.contract_end[rows] = env.t + self.contract_months[rows]
            self.tenant_gone[rows] = False

    # ---------------------------------------------------------------- decision rules
    # Vectorised over borrowers; each reads the book (and market signals) and returns an
    # intent or a flag; the phases of sim/world/phases/ move the cash and units.
    def free_btc_sale(self, need: np.ndarray, btc_price: float) -> np.ndarray:
        """Coins each miner sells (outside market) to raise up to ``need`` $: min(unpledged
        coins, need / BTC price) (the treasury comes before the revolver in the pecking
        order)."""
        return np.minimum(self.btc - self.pledged_btc, need / btc_price)

    def revolver_request(self, short: np.ndarray, room: np.ndarray,
                         lead_normal: np.ndarray) -> np.ndarray:
        """What each borrower asks of its revolver: min(short, undrawn room), if its lead
        lender is sound (``lead_normal``, the lead's status NORMAL) and it is alive, else 0
        (the revolver comes after the BTC treasury in the pecking order; the lender may ration
        the draw to its cash)."""
        return np.minimum(short, room) * lead_normal * self.alive

    def revolver_repayment(self, principal: np.ndarray, overdue: np.ndarray,
                           rows: np.ndarray | None = None) -> np.ndarray:
        """Revolver principal repaid from cash above three months of opex:
        max(0, min(max(cash - 3 opex, 0), principal - overdue)), for every borrower or, with
        ``rows``, for the borrowers of those revolver rows."""
        cash, opex = (self.cash, self.opex) if rows is None else (self.cash[rows], self.opex[rows])
        spare = np.maximum(cash - 3.0 * opex, 0.0)
        return np.maximum(np.minimum(spare, principal - overdue), 0.0)

    def count_arrears(self, arrears: np.ndarray) -> None:
        """Months in arrears: one more for a living borrower owing more than 1 $ of arrears
        after this month's payments, else 0 (a payment default after grace_months)."""
        late = (arrears > 1.0) & self.alive
        self.arrears_months = np.where(late, self.arrears_months + 1, 0)

    def update_dscr(self, noi: np.ndarray, scheduled: np.ndarray) -> None:
        """The smoothed debt-service cover of each living borrower: DSCR <- 0.5 DSCR + 0.5
        clip(NOI / scheduled debt service, -10, 10) (10 when nothing is scheduled)."""
        with np.errstate(over="ignore"):  # a near-repaid loan: NOI / tiny -> inf, clipped
            ratio = np.divide(noi, scheduled, out=np.full(self.n, 10.0), where=scheduled > 0)
        clipped = np.minimum(np.maximum(ratio, -10.0), 10.0)
        self.dscr = np.where(self.alive, 0.5 * self.dscr + 0.5 * clipped, self.dscr)

    def new_margin_calls(self, ltv: np.ndarray, ltv_max: float | np.ndarray) -> np.ndarray:
        """Margin calls opened this month: alive, no call open, LTV > ltv_max (the covenant,
        scaled for a guaranteed borrower with a raised advance rate)."""
        return self.alive & (self.call_months < 0) & (ltv > ltv_max)

    def call_months_after(self, open_call: np.ndarray, ltv: np.ndarray,
                          ltv_cure: float | np.ndarray) -> np.ndarray:
        """Months each margin call has been open after this month's payments: -1 where the
        call is cured (LTV <= ltv_cure, with 1e-12 of slack: paying exactly what was asked can
        leave the debt 1 ulp above ltv_cure x collateral) or none is open, else one more."""
        cured = open_call & (ltv <= ltv_cure * (1.0 + 1e-12))
        return np.where(cured, -1, np.where(open_call, self.call_months + 1, -1))

    def dscr_breach_after(self, dscr_min: float) -> np.ndarray:
        """Months of DSCR breach after this month: one more while a living borrower's smoothed
        DSCR is below ``dscr_min``, else 0."""
        return np.where(self.alive & (self.dscr < dscr_min), self.dscr_breach + 1, 0)

    def default_triggers(self, grace_months: int, cure_months: int,
                         dscr_default_months: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(late, triggered, dscr_default): ``late`` = arrears older than ``grace_months``
        (a payment default); ``triggered`` = a living borrower that is late or under a margin
        call open longer than ``cure_months``; ``dscr_default`` (None unless
        ``dscr_default_months`` > 0) = a living borrower neither, whose DSCR breach is still
        open ``dscr_default_months`` after its cash sweep started (breach months > cure_months
        + dscr_default_months): its facility is called."""
        late = self.arrears_months > grace_months
        trig = self.alive & (late | (self.call_months > cure_months))
        dscr_default = None
        if dscr_default_months:
            dscr_default = (self.alive
                            & (self.dscr_breach > cure_months + dscr_default_months) & ~trig)
        return late, trig, dscr_default

    def payouts(self, alive: np.ndarray, due: np.ndarray) -> np.ndarray:
        """Cash leaving each firm (growth capex, dividends, buybacks): what a living borrower
        under no margin call holds above payout_months x (opex + debt service ``due``)."""
        keep = self.payout_months * (self.opex + due)
        return np.where(alive & (self.call_months < 0), np.maximum(self.cash - keep, 0.0), 0.0)

    def voluntary_sales(self, need: np.ndarray, ask: np.ndarray) -> np.ndarray:
        """Units each borrower offers (borrower x generation) to raise ``need`` $ at ``ask``
        per GPU: ceil(min(need / (fleet . ask), 1) x fleet), never more than its fleet; none
        when no borrower needs anything."""
        fleet = self.fleet
        if np.count_nonzero(need):
            fleet_value = nm.matvec(fleet, ask)
            frac = np.divide(need, fleet_value, out=np.zeros(self.n), where=fleet_value > 0)
            return np.minimum(np.ceil(np.minimum(frac, 1.0)[:, None] * fleet),
                              fleet).astype(np.int64)
        # frac = 0 everywhere: ceil(0 x units) = 0 units offered by every borrower
        return np.zeros(fleet.shape, dtype=np.int64)


class Borrower(FixedAgent):
    """A GPU owner with secured debt: a view on row ``idx`` of the model's BorrowerBook."""

    def __init__(self, model, idx: int):
        super().__init__(model)
        self.idx = idx

    @property
    def book(self) -> BorrowerBook:
        return self.model.borrowers

    @property
    def kind(self) -> str:
        return KIND_NAMES[self.book.kind[self.idx]]

    @property
    def cash(self) -> float:
        return float(self.book.cash[self.idx])

    @property
    def fleet(self) -> dict[str, int]:
        return dict(zip(self.model.env.names, self.book.fleet[self.idx].tolist(), strict=True))

    @property
    def gpus(self) -> int:
        return int(self.book.fleet[self.idx].sum())

    @property
    def debt(self) -> float:
        loans = self.model.loans
        return float(loans.exposure[loans.borrower == self.idx].sum())

    @property
    def state(self) -> str:
        return BorrowerStatus(self.book.status[self.idx]).label

    @property
    def guaranteed(self) -> bool:
        return bool(self.book.guaranteed[self.idx])

    @property
    def size(self) -> float:
        """Fleet at the price index plus BTC ($)."""
        b, m = self.book, self.model
        return float(nm.dot(b.fleet[self.idx], m.price) + b.btc[self.idx] * m.env.btc)

    @property
    def net_worth(self) -> float:
        """Cash + BTC + fleet at the price index - debt (a market-value balance sheet)."""
        b, m = self.book, self.model
        return float(b.cash[self.idx] + b.btc[self.idx] * m.env.btc
                     + nm.dot(b.fleet[self.idx], m.price) - self.debt)


class Miner(Borrower):
    """A Bitcoin miner turned AI landlord: BTC treasury and hashrate on top of the GPU fleet."""

    @property
    def btc(self) -> float:
        return float(self.book.btc[self.idx])

    @property
    def hashrate(self) -> float:
        return float(self.book.hashrate[self.idx])


class NeoCloud(Borrower):
    """A GPU cloud: larger fleet, mostly take-or-pay contracted revenue, guarantees possible."""
