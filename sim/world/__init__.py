"""The world: :class:`sim.world.model.LiquidationModel`, the state objects a month hands between
its phases (:mod:`sim.world.state`), the phases themselves (:mod:`sim.world.phases`), every
party's loss (:mod:`sim.world.losses`), the run's tables and headline metrics
(:mod:`sim.world.collect`, :mod:`sim.world.metrics`), and single and paired runs
(:mod:`sim.world.runner`)."""
