"""Replicate seeds: the one way liqsim derives many run seeds from one root seed.

Replicate ``r`` of a root seed gets the seed of the ``r``-th spawned child of
``numpy.random.SeedSequence(root)``: :func:`replicate_seed` is
``SeedSequence(root).spawn(r + 1)[r].generate_state(1)[0]``, computed directly as
``SeedSequence(root, spawn_key=(r,)).generate_state(1)[0]`` (numpy's ``spawn`` gives child ``i``
the spawn key ``(i,)``, appended to the parent's, and nothing else). Sweeps (a spec's
``root_seed`` and ``replicates``), ``liqsim compare``, ``liqsim validate`` and the experiments
all use it, so the same root gives the same seeds everywhere.

Why spawn keys: ``SeedSequence.spawn`` is numpy's documented way to make independent streams
from one seed (NumPy reference, "Parallel random number generation", section "SeedSequence
spawning", https://numpy.org/doc/stable/reference/random/parallel.html: spawned children are
"(with very high probability) independent"; each child's entropy pool hashes the root's entropy
together with its own spawn key), and replicate ``r``'s seed depends only on ``root`` and ``r``,
not on how many replicates are drawn: adding replicates to a sweep or seeds to a comparison
never changes the existing runs.

Standard library and numpy only; imports nothing of liqsim's.
"""

from __future__ import annotations

import numpy as np


def replicate_seed(root: int, r: int) -> int:
    """Seed of replicate ``r`` (0-based) of root seed ``root``: the ``r``-th spawned child of
    ``SeedSequence(root)``, its first 32-bit word, as an ``int``."""
    return int(np.random.SeedSequence(root, spawn_key=(r,)).generate_state(1)[0])


def replicate_seeds(root: int, n: int) -> list[int]:
    """The seeds of replicates ``0 .. n-1`` of root seed ``root`` (:func:`replicate_seed`)."""
    return [replicate_seed(root, r) for r in range(n)]
