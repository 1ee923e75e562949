"""The core: the validated scenario, CPU-independent numerics, the version, the replicate seeds
and the building blocks (environment, loan book, auction, clearing, network, the fire-sale
closed form). Imports nothing of the project above it."""
