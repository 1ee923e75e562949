"""The phases of a month (docs/model.md section 3), one module each, in the order
:meth:`sim.world.model.LiquidationModel.step` calls them: :mod:`~sim.world.phases.environment`
(1), :mod:`~sim.world.phases.borrowers` (2), :mod:`~sim.world.phases.lenders` (3),
:mod:`~sim.world.phases.defaults` (4), :mod:`~sim.world.phases.orders` (5),
:mod:`~sim.world.phases.market` (6), :mod:`~sim.world.phases.prices` (7),
:mod:`~sim.world.phases.funding` (8), :mod:`~sim.world.phases.record` (9), and the policies'
operations (:mod:`~sim.world.phases.policies`) and the borrowers' sites' month between 4 and 5
(:mod:`~sim.world.phases.sites`). Each takes the model (its books) and the month's
state objects (:mod:`sim.world.state`) and returns what a later phase needs."""

from sim.world.phases import (
    borrowers,
    defaults,
    environment,
    funding,
    lenders,
    market,
    orders,
    policies,
    prices,
    record,
    sites,
)

__all__ = ["borrowers", "defaults", "environment", "funding", "lenders", "market", "orders",
           "policies", "prices", "record", "sites"]
