"""Power and cooling as assets and constraints: borrowers' sites (``sites.enabled``).

Every borrower has a site (docs/model.md, "Power and cooling"): ``gpu_mw`` IT MW of data hall
for its GPUs, air- or liquid-cooled, and, for a miner, ``mine_mw`` MW of mining hall. At set-up

    gpu_mw_i = (sum_g fleet_ig kW_g / 1000) x h_i,    h_i ~ U(headroom_min, headroom_max),
    liquid_i = (fleet_i holds a liquid-cooled generation) or (u_i < liquid_prob),
    mine_mw_i = hashrate_i x mining_mw_per_ph            (miners; 0.02 MW per PH/s = 20 J/TH)

(MW are IT MW, the unit of buyers' spare MW and of kW per GPU; the grid connection is IT MW x
PUE). The draws come from a child stream of the model's generator, so the rest of a seed's
random stream is that of the model without sites.

At default the lead lender takes the data hall with the GPUs (the mining hall stays with the
miner's estate, pledged to its other creditors: MW "to estates"). Each month, for sites held by
lenders (in this order):

* buyers convert air-cooled spare MW to liquid when a liquid MW is worth more to them than an
  air MW by more than the conversion cost (:meth:`agents.buyer.BuyerBook.convert`);
* a site held ``sale_months`` or more is sold to the buyer with the highest valuation of its
  MW that can pay: buyer k values an MW of cooling type c at

      v_kc = max over generations g that fit c of  max(0, P_kg - p_g) x 1000 / kW_g,

  the surplus of filling it with used GPUs bought at the price index p_g (P_kg its
  reservation price), capped at the AI-ready build cost (no buyer pays more than building
  new); the lender sells at p = min(v_kc, build_cost_per_mw) per MW, the buyer pays p x MW
  from its capital and the site's MW join its spare MW of that cooling type. The proceeds are
  recoveries (written-off exposure first, any surplus to the borrower's estate). Without
  ``sell_with_fleet`` the fleet is not part of the sale: the lender sells the GPUs in the
  auction, where the buyer's new MW lets it bid for them; with it, the buyer also buys the
  lender's repossessed units that fit the site at the price index (``SiteBook._sell_fleet``);
* a site unsold after ``max_hold_months`` is given up (MW retired);
* while it holds a site, a lender runs its repossessed GPUs in place at a host (Greenidge for
  NYDIG, 2022): lender l hosts a share s_l = min(1, MW held by l / IT load of l's inventory)
  of its inventory, and a hosted unit of generation g earns
  n_g = max(0, u R_g 730 - power_g) - hosting_per_kw_month x kW_g a month; it runs only
  where n_g > 0 (the shut-down option) and then pays no warehouse holding cost;
* energy arbitrage (miners alive): a mining MW earns r_mine = max(0, hashprice - mining
  cost) x days / mining_mw_per_ph a month, an MW let to AI tenants r_ai = host_share x
  max over air-cooled generations of max(0, u R_g 730 - power_g - spot opex) x 1000 / kW_g.
  An MW let to AI is let on a long lease (the 10-year leases of Cipher's and TeraWulf's
  sites, 8-K 2025) at the r_ai of the month it was let: the miner's hosting rent H_i is locked.
  With c = switch_cost_per_mw and T = switch_payback_months, a miner moves
  dx = min(switch_rate x mine_mw, MW still mining) MW to AI hosting when
  (r_ai - r_mine) x T > c (all miners together at most host_demand_mw MW a month, pro rata:
  tenants' demand for hosted MW is finite), and dx = -min(switch_rate x mine_mw, MW let)
  back to mining when (r_mine - H_i / MW let) x T > c (its average locked rent). Every
  switch, either way, costs c per MW, financed outside the GPU facility (project debt or
  equity, as the miners financed their conversions) and repaid at c / T a month per MW
  switched until repaid; the miner's site income is H_i less that payment.

MW ledger (checked by ``LiquidationModel.invariants``): MW of sites held by borrowers
(data halls and mining halls) + by lenders + buyers' MW (spare air and liquid, in use by the
GPUs they bought, being converted) + MW retired + MW to estates = MW at t0 + MW built by
buyers' regrowth.
"""

from __future__ import annotations

import numpy as np

from agents.borrower import MINER
from sim.core import numerics as nm
from sim.core.environment import DAYS_PER_MONTH, HOURS_PER_MONTH

BORROWER, LENDER, SOLD, RETIRED = 0, 1, 2, 3
HOLDER_NAMES = ("borrower", "lender", "sold", "retired")


def mw_values(reservation: np.ndarray, price: np.ndarray, kw: np.ndarray,
              liquid_gen: np.ndarray, shipping: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(v_liquid, v_air), $/MW per buyer: v_kc = max over the generations g that fit cooling c
    (every shipping generation for liquid MW, the air-cooled ones for air MW) of
    max(0, P_kg - p_g) x 1000 / kW_g; 0 where none fits."""
    surplus = np.maximum(reservation - price[None, :], 0.0) * (1000.0 / kw)[None, :]
    surplus = np.where(shipping[None, :], surplus, 0.0)
    v_liq = np.maximum.reduce(surplus, axis=1, initial=0.0)
    v_air = np.maximum.reduce(np.where(liquid_gen[None, :], 0.0, surplus), axis=1, initial=0.0)
    return v_liq, v_air


def ai_rent_per_mw(env, spot_opex: float, liquid_gen: np.ndarray) -> float:
    """max over shipping air-cooled generations of max(0, u R_g 730 - power_g - spot opex)
    x 1000 / kW_g: the net rent an air-cooled MW of AI capacity earns a month ($/MW-month)."""
    net = (env.cfg.utilisation * env.rent * HOURS_PER_MONTH - env.power_cost_per_gpu()
           - spot_opex) * (1000.0 / env.kw)
    ok = env.shipping & ~liquid_gen
    return float(np.maximum.reduce(np.where(ok, np.maximum(net, 0.0), 0.0), initial=0.0))


class SiteBook:
    """Every borrower's site (struct of arrays, one entry per borrower) and the MW ledger."""

    def __init__(self, cfg, env, borrowers, buyers, rng: np.random.Generator):
        s = cfg.sites
        self.cfg = s
        n = borrowers.n
        self.liquid_gen = np.array([g.cooling == "liquid" for g in cfg.environment.generations])
        load = nm.matvec(borrowers.fleet.astype(float), env.kw) / 1000.0
        head = rng.uniform(s.headroom_min, s.headroom_max, n)
        self.gpu_mw = load * head
        needs = (borrowers.fleet[:, self.liquid_gen] > 0).any(axis=1)
        self.liquid = needs | (rng.random(n) < s.liquid_prob)
        self.mine_mw = np.where(borrowers.kind == MINER, borrowers.hashrate * s.mining_mw_per_ph,
                                0.0)
        self.host_mw = np.zeros(n)  # mining MW let to AI tenants (arbitrage)
        self.host_rent = np.zeros(n)  # their locked rent, $/month
        self.switch_debt = np.zeros(n)  # switching cost still to repay, $
        self.switch_pay = np.zeros(n)  # its monthly payment, $/month
        self.holder = np.zeros(n, dtype=np.int8)
        self.lender = np.full(n, -1, dtype=np.int64)
        self.buyer = np.full(n, -1, dtype=np.int64)
        self.since = np.full(n, -1, dtype=np.int64)
        self.retired_mw = 0.0
        self.estate_mw = 0.0
        self.repossessed_mw = 0.0
        self.sold_mw = 0.0
        self.sale_proceeds = 0.0
        self.hosting_income = 0.0
        self.converted_mw = 0.0
        self.fleet_units_sold = 0  # units sold with their sites (sell_with_fleet)
        self.hosted_units = np.zeros(cfg.lenders.count)
        buyers.enable_sites(s.buyer_liquid_share, s.conversion_months)
        self.mw0 = self.ledger(buyers)

    def ledger(self, buyers) -> float:
        """All MW held by borrowers, lenders, buyers, retired and passed to estates."""
        h = self.holder
        return float(self.gpu_mw[(h == BORROWER) | (h == LENDER)].sum()
                     + self.mine_mw[h == BORROWER].sum() + buyers.mw_held()
                     + self.retired_mw + self.estate_mw)

    def imbalance(self, buyers) -> float:
        """Ledger - (MW at t0 + MW built): 0 up to rounding."""
        return self.ledger(buyers) - (self.mw0 + buyers.mw_built)

    def by_holder(self, buyers) -> dict[str, float]:
        h = self.holder
        return {"borrowers": float(self.gpu_mw[h == BORROWER].sum()
                                   + self.mine_mw[h == BORROWER].sum()),
                "lenders": float(self.gpu_mw[h == LENDER].sum()),
                "buyers": buyers.mw_held(), "retired": self.retired_mw,
                "estates": self.estate_mw}

    # ------------------------------------------------------------ phase 4
    def repossess(self, dead: np.ndarray, lead: np.ndarray, t: int) -> None:
        """The lead lender of each defaulted borrower takes its data hall; the mining hall goes
        to the estate."""
        self.holder[dead] = LENDER
        self.lender[dead] = lead
        self.since[dead] = t
        self.repossessed_mw += float(self.gpu_mw[dead].sum())
        self.estate_mw += float(self.mine_mw[dead].sum())
        self.host_mw[dead] = 0.0

    # ------------------------------------------------------------ the month
    def month(self, m) -> None:
        """Conversion, site sales, retirement, hosting in place and arbitrage (module doc)."""
        s, env, buyers = self.cfg, m.env, m.buyers
        if buyers.n:
            res = buyers.reservation(env)
            v_liq, v_air = mw_values(res, m.price, env.kw, self.liquid_gen, env.shipping)
            if not buyers.unlimited and s.conversion_rate > 0:
                x = buyers.convert(v_liq - v_air, s.conversion_cost_per_mw, s.conversion_rate,
                                   s.conversion_months)
                if x.any():
                    self.converted_mw += float(x.sum())
                    m.add_outside_flow("buyer_capital", -float(x.sum()) * s.conversion_cost_per_mw)
            self._sell(m, v_liq, v_air, res)
        held = self.holder == LENDER
        old = held & (env.t - self.since >= s.max_hold_months)
        if old.any():
            self.retired_mw += float(self.gpu_mw[old].sum())
            self.holder[old] = RETIRED
            m.log_events("site_retired", "lender", self.lender[old], amount=self.gpu_mw[old])
        self._host(m)
        if s.arbitrage:
            self._arbitrage(m)

    def _sell(self, m, v_liq: np.ndarray, v_air: np.ndarray,
              reservation: np.ndarray | None = None) -> None:
        s, buyers, lb, t = self.cfg, m.buyers, m.lenders, m.env.t
        ready = ((self.holder == LENDER) & (t - self.since >= s.sale_months)).nonzero()[0]
        cap = s.build_cost_per_mw
        p_liq, p_air = np.minimum(v_liq, cap), np.minimum(v_air, cap)
        for i in ready.tolist():  # one sale at a time: each moves a buyer's capital
            mw = float(self.gpu_mw[i])
            p = p_liq if self.liquid[i] else p_air
            ok = p > 0.0
            if not buyers.unlimited:
                ok &= buyers.capital >= p * mw
            if mw <= 0.0 or not ok.any():
                continue
            k = int(np.argmax(np.where(ok, p, -1.0)))
            amount = float(p[k]) * mw
            if buyers.unlimited:
                m.add_outside_flow("buyer_capital", amount)
            else:
                buyers.capital[k] = max(buyers.capital[k] - amount, 0.0)
            if self.liquid[i]:
                buyers.mw_liq[k] += mw
            else:
                buyers.mw[k] += mw
            l_ = int(self.lender[i])
            proceeds = np.zeros(lb.n)
            proceeds[l_] = amount
            rec, surplus = lb.apply_recovery(proceeds)
            lb.cash += rec
            m.recovered_total += float(rec.sum())
            m.add_outside_flow("estate_surplus", -float(surplus.sum()))
            self.holder[i] = SOLD
            self.buyer[i] = k
            self.sold_mw += mw
            self.sale_proceeds += amount
            m.log_event("site_sale", "lender", l_, units=0, amount=amount, price=float(p[k]))
            if s.sell_with_fleet and reservation is not None:
                self._sell_fleet(m, i, k, l_, reservation[k])

    def _sell_fleet(self, m, i: int, k: int, l_: int, res_k: np.ndarray) -> None:
        """The site is sold with the fleet (``sell_with_fleet``): buyer k also buys the selling
        lender's repossessed units, newest generation first, that fit the site's cooling and
        MW, at the price index p_g, where p_g <= its reservation price P_kg and as far as its
        capital reaches:

            n_g = min(inventory_lg, floor(MW left x 1000 / kW_g), floor(capital_k / p_g)).

        The units are installed in the site's MW (MW in use); the proceeds are recoveries
        (repaying the lender's repo first, as an auction sale's do)."""
        env, lb, buyers, desk = m.env, m.lenders, m.buyers, m.desk
        room = float(self.gpu_mw[i])
        liquid_site = bool(self.liquid[i])
        for g in m.newest_first:
            units = int(lb.inventory[l_, g])
            price = float(m.price[g])
            if (not units or not env.shipping[g] or price <= 0.0 or res_k[g] < price
                    or (self.liquid_gen[g] and not liquid_site)):
                continue
            kw = float(env.kw[g])
            n = min(units, int(room * 1000.0 / kw + 1e-9))
            if not buyers.unlimited:
                n = min(n, int(buyers.capital[k] / price + 1e-9))
            if n <= 0:
                continue
            pay = n * price
            if buyers.unlimited:
                m.add_outside_flow("buyer_capital", pay)
            else:
                buyers.capital[k] = max(buyers.capital[k] - pay, 0.0)
            buyers.holdings[k, g] += n
            mw = n * kw / 1000.0
            room -= mw
            pool = buyers.mw_liq if liquid_site else buyers.mw
            used = min(mw, float(pool[k]))
            pool[k] -= used
            buyers.mw_used[k] += used
            sold = np.zeros(lb.inventory.shape, dtype=np.int64)
            sold[l_, g] = n
            lb.remove_inventory(sold)
            proceeds = np.zeros(lb.n)
            proceeds[l_] = pay
            rec, surplus = lb.apply_recovery(proceeds)
            m.recovered_total += float(rec.sum())
            repay = np.minimum(lb.repo_debt, rec)
            lb.repo_debt -= repay
            desk.lent -= float(repay.sum())
            desk.cash += float(repay.sum())
            desk.cash_repaid[m.env.t] += float(repay.sum())  # the desk's one ledger
            lb.cash += rec - repay
            m.add_outside_flow("estate_surplus", -float(surplus.sum()))
            self.fleet_units_sold += n
            m.log_event("site_fleet_sale", "lender", l_, g, n, pay, price)

    def _host(self, m) -> None:
        """Repossessed GPUs run in place at a host while their lender holds a site."""
        lb, env = m.lenders, m.env
        self.hosted_units = np.zeros(lb.n)
        if not self.cfg.host_in_place:
            return
        held = self.holder == LENDER
        if not held.any():
            return
        mw_l = np.bincount(self.lender[held], weights=self.gpu_mw[held], minlength=lb.n)
        load = nm.matvec(lb.inventory.astype(float), env.kw) / 1000.0
        share = np.minimum(np.divide(mw_l, load, out=np.zeros(lb.n), where=load > 0), 1.0)
        revenue = np.maximum(env.cfg.utilisation * env.rent * HOURS_PER_MONTH
                             - env.power_cost_per_gpu(), 0.0)
        fee = self.cfg.hosting_per_kw_month * env.kw
        run = env.shipping & (revenue - fee > 0.0)
        units = lb.inventory * share[:, None] * run[None, :]
        if not units.any():
            return
        income = nm.matvec(units, revenue - fee)
        lb.cash += income
        m.add_outside_flow("tenants", float(nm.matvec(units, revenue).sum()))
        m.add_outside_flow("opex", -float(nm.matvec(units, fee).sum()))
        self.hosted_units = units.sum(axis=1)
        self.hosting_income += float(income.sum())

    def _arbitrage(self, m) -> None:
        """Miners move MW between mining and AI hosting (module doc); sets the borrowers'
        ``mining_share`` and ``site_income`` read by ``BorrowerBook.operating``."""
        s, b, env = self.cfg, m.borrowers, m.env
        if s.mining_mw_per_ph <= 0.0:
            return
        live = b.alive & (self.mine_mw > 0)
        if not live.any():
            return
        r_mine = np.maximum(env.hashprice - b.mining_cost, 0.0) * DAYS_PER_MONTH \
            / s.mining_mw_per_ph
        r_ai = s.host_share * ai_rent_per_mw(env, m.buyers.cfg.spot_opex_per_gpu,
                                             self.liquid_gen)
        avg = np.divide(self.host_rent, self.host_mw, out=np.zeros(b.n), where=self.host_mw > 0)
        dx = switch_mw(r_mine, r_ai, avg, self.mine_mw, self.host_mw, live, s)
        if dx.any():
            self.host_rent = self.host_rent + np.where(dx > 0, dx * r_ai, dx * avg)
            self.host_mw = self.host_mw + dx
            cost = np.abs(dx) * s.switch_cost_per_mw
            self.switch_debt = self.switch_debt + cost
            self.switch_pay = self.switch_pay + cost / s.switch_payback_months
        pay = np.minimum(self.switch_pay, self.switch_debt)
        self.switch_debt = self.switch_debt - pay
        self.switch_pay = np.where(self.switch_debt > 0.0, self.switch_pay, 0.0)
        share = np.divide(self.mine_mw - self.host_mw, self.mine_mw, out=np.ones(b.n),
                          where=self.mine_mw > 0)
        b.mining_share = share
        b.site_income = self.host_rent - pay


def switch_mw(r_mine: np.ndarray, r_ai: float, r_let: np.ndarray, mine_mw: np.ndarray,
              host_mw: np.ndarray, live: np.ndarray, s) -> np.ndarray:
    """MW each miner moves to AI hosting (> 0) or back to mining (< 0) this month:
    dx = +min(switch_rate x mine_mw, mine_mw - host_mw) if (r_ai - r_mine) x T > c (all
    such moves scaled down pro rata to at most host_demand_mw MW in total, tenants' demand),
    dx = -min(switch_rate x mine_mw, host_mw) if (r_mine - r_let) x T > c, else 0,
    with c = switch_cost_per_mw, T = switch_payback_months, r_let the locked rent of the MW
    already let ($/MW-month revenues)."""
    c, T = s.switch_cost_per_mw, s.switch_payback_months
    step = s.switch_rate * mine_mw
    dx = np.where(live & ((r_ai - r_mine) * T > c), np.minimum(step, mine_mw - host_mw), 0.0)
    total = float(dx.sum())
    if total > s.host_demand_mw:  # tenants take at most host_demand_mw a month: pro rata
        dx = dx * (s.host_demand_mw / total)
    back = live & (host_mw > 0) & ((r_mine - r_let) * T > c)
    return np.where(back, -np.minimum(step, host_mw), dx)
