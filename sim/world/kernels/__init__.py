"""The compiled engine: numba kernels for the model's phases (docs/performance.md, "The
compiled engine").

One module per phase module of :mod:`sim.world.phases`, each with the :func:`sim.core.jit.kernel`
functions that phase calls when the model runs on the compiled engine (``model.engine ==
"compiled"``, the default) and the scenario's switches are ones the kernel covers; otherwise the
phase runs its numpy code. The numpy code is the kernels' oracle: ``tests/world/test_engines.py``
(:mod:`sim.qa.oracle`) runs every golden case and the edge cases on both engines and compares
records, events, summaries and the final state bit for bit. Random draws stay in the phases
(numpy's Generator), in the order and number the numpy code makes them.
"""
