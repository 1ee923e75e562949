"""The event log's tuples (model.log_events): (t, name, agent, idx, gen, units, amount, price)
with exactly Python's int, str and float, whatever the call shape (the fast path for one name
and an amount per event, and the general one), in idx's order."""

import numpy as np
import pytest

from sim.world.model import LiquidationModel


@pytest.fixture(scope="module")
def model():
    return LiquidationModel(months=2)


TYPES = (int, str, str, int, int, int, float, float)


def _logged(m, *args, **kwargs):
    m.events.clear()
    m.log_events(*args, **kwargs)
    assert all(tuple(map(type, e)) == TYPES for e in m.events)
    return list(m.events)


def test_one_name_and_an_amount_per_event(model):
    t = model.env.t
    got = _logged(model, "deleveraging", "lender", np.array([4, 1]),
                  amount=np.array([1.5, -0.0]))
    assert repr(got) == repr([(t, "deleveraging", "lender", 4, -1, 0, 1.5, 0.0),
                              (t, "deleveraging", "lender", 1, -1, 0, -0.0, 0.0)])
    # other dtypes are converted as before: int32 indices, float32 and integer amounts
    got = _logged(model, "margin_call", ["miner", "neocloud"], np.array([3, 2], np.int32),
                  amount=np.array([2.5, 1.0], np.float32))
    assert got == [(t, "margin_call", "miner", 3, -1, 0, 2.5, 0.0),
                   (t, "margin_call", "neocloud", 2, -1, 0, 1.0, 0.0)]
    got = _logged(model, "fraud", ["miner", "neocloud"], np.array([3, 2]),
                  amount=np.array([2.5, 1.0]), price=np.array([0.5, 1]))
    assert got == [(t, "fraud", "miner", 3, -1, 0, 2.5, 0.5),
                   (t, "fraud", "neocloud", 2, -1, 0, 1.0, 1.0)]
    got = _logged(model, "x", "lender", np.array([0]), gen=2, units=7, amount=np.array([3]),
                  price=0.5)
    assert got == [(t, "x", "lender", 0, 2, 7, 3.0, 0.5)]


def test_other_shapes(model):
    t = model.env.t
    # arrays for gen and units, numpy scalars, a list of names: the general path
    got = _logged(model, ["a", "b"], "lender", np.array([1, 2]), np.array([0, 3]),
                  np.array([5, 6]), amount=np.float64(2.0), price=np.float64(0.25))
    assert got == [(t, "a", "lender", 1, 0, 5, 2.0, 0.25), (t, "b", "lender", 2, 3, 6, 2.0, 0.25)]
    got = _logged(model, "repossession", "lender", np.array([1, 2]), np.int64(1), 4)
    assert got == [(t, "repossession", "lender", 1, 1, 4, 0.0, 0.0),
                   (t, "repossession", "lender", 2, 1, 4, 0.0, 0.0)]
    assert _logged(model, "none", "lender", np.array([], np.int64),
                   amount=np.array([])) == []
    with pytest.raises(ValueError):  # lengths that do not match
        model.log_events("x", "lender", np.array([1, 2]), amount=np.array([1.0]))


def test_a_generation_and_units_per_event(model):
    # the repossessions' shape (one name and agent, arrays for gen and units, float amount and
    # price): the tuples of the general path, int32 arrays converted, -0.0 kept
    t = model.env.t
    got = _logged(model, "repossession", "lender", np.array([3, 0]), np.array([1, 2]),
                  np.array([40, 7]))
    assert repr(got) == repr([(t, "repossession", "lender", 3, 1, 40, 0.0, 0.0),
                              (t, "repossession", "lender", 0, 2, 7, 0.0, 0.0)])
    got = _logged(model, "y", "buyer", np.array([5], np.int32), np.array([0], np.int32),
                  np.array([9], np.int32), amount=-0.0, price=2.5)
    assert repr(got) == repr([(t, "y", "buyer", 5, 0, 9, -0.0, 2.5)])
    with pytest.raises(ValueError):  # lengths that do not match
        model.log_events("x", "lender", np.array([1, 2]), np.array([1]), np.array([1, 2]))
