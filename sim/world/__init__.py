"""The world: :class:`sim.world.model.LiquidationModel`, the state objects a month hands between
its phases (:mod:`sim.world.state`) and the phases themselves (:mod:`sim.world.phases`)."""
