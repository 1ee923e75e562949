"""The policies' monthly operations (docs/model.md, "A secured repo and a buyer of last
resort"): the buyer of last resort runs what it holds (after phase 2), and the repo desk and the
buyer of last resort pay their cost of capital (after phase 8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.core.environment import HOURS_PER_MONTH

if TYPE_CHECKING:
    from sim.world.model import LiquidationModel


def pay_funding(m: LiquidationModel) -> None:
    """The repo desk's and the buyer of last resort's cost of capital this month
    (:func:`agents.repo_desk.cost_of_capital`: SOFR + ``funding_spread`` on what each has
    deployed), paid to their funders (the outside flow ``policy_funding``)."""
    sofr, t = m.cfg.environment.sofr, m.env.t
    paid = m.desk.pay_funding(t, sofr)
    if m.lolr is not None:
        paid += m.lolr.pay_funding(t, sofr)
    if paid:
        m.add_outside_flow("policy_funding", -paid)


def lolr_operate(m: LiquidationModel) -> None:
    """The buyer of last resort runs what it holds: spot rent at the fleet utilisation
    (tenants) less power, spot opex, the facility charge on its own MW and hosting beyond
    it (opex), the running costs buyers' valuations use."""
    env, lo = m.env, m.lolr
    rent_month = HOURS_PER_MONTH * m.cfg.environment.utilisation * env.rent
    run_cost = env.power_cost_per_gpu() + m.cfg.buyers.spot_opex_per_gpu
    rent, cost = lo.operate(env.t, rent_month, run_cost, env.kw, env.cfg.facility_cost)
    m.add_outside_flow("tenants", rent)
    m.add_outside_flow("opex", -cost)
