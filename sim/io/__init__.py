"""One run on disk: files written all or nothing (:mod:`sim.io.atomic`), run directories and
the manifests of runs and sweeps (:mod:`sim.io.store`), the sweep ledger (:mod:`sim.io.ledger`),
the data dictionary (:mod:`sim.io.datadict`)."""
