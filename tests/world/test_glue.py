"""The Python around the compiled kernels (issue 19): month arrays handed out from per-run
tables or buffers keep the values and the semantics of the arrays made new each month."""

import numpy as np
import pytest

from sim.core.config import load_scenario
from sim.core.environment import Environment


@pytest.fixture(scope="module")
def cfg():
    return load_scenario("crypto_winter").model_copy(update={"months": 12})


def test_shipping_and_age_are_each_months_values_and_stay_put(cfg):
    env = Environment(cfg, np.random.default_rng(1))
    held = []
    for _ in range(cfg.months):
        ship, age = env.shipping, env.age
        assert ship.dtype == bool and age.dtype == np.int64
        assert np.array_equal(ship, env.launch <= env.t)
        assert np.array_equal(age, env.t - env.launch)
        assert not ship.flags.writeable and not age.flags.writeable
        held.append((env.t, ship, age))
        env.step()
    # an array handed out in an earlier month still holds that month's values
    for t, ship, age in held:
        assert np.array_equal(ship, env.launch <= t)
        assert np.array_equal(age, t - env.launch)
    assert env.t == cfg.months and np.array_equal(env.age, cfg.months - env.launch)


def test_shipping_beyond_the_horizon_is_computed(cfg):
    env = Environment(cfg, np.random.default_rng(1))
    assert env.shipping.shape == env.launch.shape  # the tables are made
    env.t = cfg.months + 30
    assert np.array_equal(env.shipping, env.launch <= cfg.months + 30)
    assert np.array_equal(env.age, cfg.months + 30 - env.launch)
    assert not env.shipping.flags.writeable
