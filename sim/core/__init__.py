"""The core: the validated scenario, CPU-independent numerics, the version, and the building blocks
(environment, loan book, auction, clearing, network, the fire-sale closed form). Imports nothing
of the project above it."""
