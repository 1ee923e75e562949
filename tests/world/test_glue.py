"""The Python around the compiled kernels (issue 19): month arrays handed out from per-run
tables or buffers keep the values and the semantics of the arrays made new each month."""

import copy
import pickle

import numpy as np
import pytest

from sim.core.config import load_scenario
from sim.core.environment import Environment


@pytest.fixture(scope="module")
def cfg():
    return load_scenario("crypto_winter").model_copy(update={"months": 12})


def test_shipping_and_age_are_each_months_values_in_resident_arrays(cfg):
    """The same two read-only arrays every month (a batched engine's stacked rows), written
    in place with the month's values; so too in a copy of the environment (deepcopy,
    pickle), whose arrays are its own."""
    env = Environment(cfg, np.random.default_rng(1))
    ship0, age0 = env.shipping, env.age
    for _ in range(cfg.months):
        ship, age = env.shipping, env.age
        assert ship is ship0 and age is age0
        assert ship.dtype == bool and age.dtype == np.int64
        assert np.array_equal(ship, env.launch <= env.t)
        assert np.array_equal(age, env.t - env.launch)
        assert not ship.flags.writeable and not age.flags.writeable
        for c in (copy.deepcopy(env), pickle.loads(pickle.dumps(env))):
            c.step()  # a copy's month writes its own arrays, not the original's
            assert c.age is not age0 and c.shipping is not ship0
            assert np.array_equal(c.age, c.t - c.launch) and c.t == env.t + 1
            assert np.array_equal(c.shipping, c.launch <= c.t)
            assert not c.shipping.flags.writeable and not c.age.flags.writeable
            assert np.array_equal(age0, env.t - env.launch)
        env.step()
    assert env.t == cfg.months and np.array_equal(env.age, cfg.months - env.launch)
    assert env.age is age0 and np.array_equal(age0, cfg.months - env.launch)


def test_shipping_beyond_the_horizon_is_computed(cfg):
    env = Environment(cfg, np.random.default_rng(1))
    assert env.shipping.shape == env.launch.shape
    env.t = cfg.months + 30
    assert np.array_equal(env.shipping, env.launch <= cfg.months + 30)
    assert np.array_equal(env.age, cfg.months + 30 - env.launch)
    assert not env.shipping.flags.writeable


def test_lead_times_are_each_months_values_in_one_resident_array():
    """``lead_time()``: the same read-only array every month, written in place with the
    month's lead times (straight lines between the path's points, 0 before its first, its
    last value after its last); a copy's its own."""
    over = {"environment.lead_time_path": [{"generation": "H100",
                                            "points": [[2, 6.0], [4, 2.0], [6, 1.0]]}]}
    cfg = load_scenario("baseline", overrides=over, months=8)
    env = Environment(cfg, np.random.default_rng(1))
    h = env.names.index("H100")
    lead0 = env.lead_time()
    want = [0.0, 0.0, 6.0, 4.0, 2.0, 1.5, 1.0, 1.0, 1.0]
    for t in range(cfg.months + 1):
        lead = env.lead_time()
        assert lead is lead0 and not lead.flags.writeable
        assert lead[h] == want[t] and np.count_nonzero(lead) == (want[t] != 0.0)
        c = copy.deepcopy(env)
        c.step()
        assert c.lead_time() is not lead0 and c.lead_time()[h] == want[min(t + 1, 8)]
        assert lead0[h] == want[t]  # the copy's month left the original's array alone
        env.step()
