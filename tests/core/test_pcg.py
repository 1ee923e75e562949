"""sim.core.pcg: numpy's PCG64 over a state array gives numpy's draws bit for bit, compiled
and in Python, alone, interleaved with numpy through state round trips, and R at a time."""

import warnings

import numpy as np
import pytest

from sim.core import numerics as nm
from sim.core import pcg
from sim.core.jit import kernel
from sim.world.model import LiquidationModel

SEEDS = [*range(40), 12345, 2**31 - 1, 2**32 + 5, 2**63 + 11, 2**127 + 3,
         [1, 2, 3], 0xDEADBEEFCAFEF00D]


@kernel
def _raw(s, n):
    out = np.empty(n, np.uint64)
    for i in range(n):
        out[i] = pcg.next_uint64(s)
    return out


@kernel
def _uint32(s, n):
    out = np.empty(n, np.uint64)
    for i in range(n):
        out[i] = pcg.next_uint32(s)
    return out


@kernel
def _random(s, out):
    pcg.random_fill(s, out)


@kernel
def _random_one(s):
    return pcg.next_double(s)


@kernel
def _open_uniform(s, out):
    pcg.open_uniform_fill(s, out)


@kernel
def _open_uniform_one(s):
    return pcg.next_open_uniform(s)


@kernel
def _normal(s, out):
    pcg.standard_normal_fill(s, out)


@kernel
def _stacked_raw(states, n):
    """n draws of each of R generators, the runs interleaved draw by draw (the order a batched
    engine steps them in): draw i of run 0, of run 1, ..., then draw i + 1."""
    out = np.empty((states.shape[0], n), np.uint64)
    for i in range(n):
        for r in range(states.shape[0]):
            out[r, i] = pcg.next_uint64(states[r])
    return out


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def _children() -> list[np.random.Generator]:
    """Spawned children, as the model makes them (``rng.spawn(1)[0]``), and grandchildren."""
    out = []
    for seed in (0, 7, 2024):
        parent = _rng(seed)
        child = parent.spawn(1)[0]
        out += [child, parent.spawn(1)[0], child.spawn(1)[0]]
    return out


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _python(f, *args):
    """The uncompiled kernel, with any numpy warning (a wrapping uint64 operation would
    warn "overflow encountered") raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return f.py(*args)


@pytest.mark.parametrize("make", [lambda: [_rng(s) for s in SEEDS], _children],
                         ids=["seeds", "spawned"])
def test_raw_stream_is_numpys(make):
    """next_uint64 is ``random_raw``: 2,000 draws compiled and 30 in Python from each seed's
    state, and the state array afterwards is numpy's state after as many draws."""
    for rng in make():
        s = pcg.get_state(rng)
        s_py = s.copy()
        got = _raw(s, 2000)
        want = rng.bit_generator.random_raw(2000)
        assert _same_bits(got, want)
        assert _same_bits(s, pcg.get_state(rng))
        assert _same_bits(_python(_raw, s_py, 30), want[:30])


def test_the_models_generators():
    """Mesa's model generator and the search stream spawned from it (``LiquidationModel``)."""
    m = LiquidationModel("baseline", months=1)
    for rng in (m.rng, m.search_rng):
        s = pcg.get_state(rng)
        assert _same_bits(_raw(s, 500), rng.bit_generator.random_raw(500))
        u = np.empty(300)
        _random(s, u)
        assert _same_bits(u, rng.random(300))
        _open_uniform(s, u)
        assert _same_bits(u, nm.open_uniform(rng, 300))


def test_carries_through_all_ones_halves():
    """States and increments whose halves are all ones or zero, where every carry of the
    128-bit multiply and add is taken; numpy takes any state and increment."""
    top = 2**64 - 1
    for state in (0, 1, top, top << 64, 2**128 - 1, (top << 64) | 1, 2**127):
        for inc in (1, top, 2**128 - 1, (1 << 64) | 1):
            rng = _rng(0)
            rng.bit_generator.state = {"bit_generator": "PCG64",
                                       "state": {"state": state, "inc": inc},
                                       "has_uint32": 0, "uinteger": 0}
            s = pcg.get_state(rng)
            s_py = s.copy()
            want = rng.bit_generator.random_raw(50)
            assert _same_bits(_raw(s, 50), want)
            assert _same_bits(_python(_raw, s_py, 50), want)


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_random_n_is_numpys(n):
    """``random_fill`` of n entries is ``Generator.random(n)``, and leaves the state where
    numpy leaves it; ``next_double`` is ``Generator.random()``."""
    for seed in SEEDS:
        rng = _rng(seed)
        s = pcg.get_state(rng)
        s_py = s.copy()
        got, got_py = np.empty(n), np.empty(min(n, 7))
        _random(s, got)
        _python(_random, s_py, got_py)
        want = rng.random(n)
        assert _same_bits(got, want)
        assert _same_bits(got_py, want[:7])
        assert _same_bits(s, pcg.get_state(rng))
        assert _random_one(s) == rng.random()


def test_open_uniform_and_standard_normal_are_numerics():
    """``open_uniform_fill`` and ``standard_normal_fill`` give sim.core.numerics'
    ``open_uniform`` and ``standard_normal`` (its array path, compiled ndtri, and its scalar
    path, ndtri in Python), compiled and in Python."""
    for seed in SEEDS:
        rng = _rng(seed)
        s = pcg.get_state(rng)
        got = np.empty(1000)
        _open_uniform(s, got)
        want = nm.open_uniform(rng, 1000)
        assert _same_bits(got, want)
        assert 0.0 < got.min() and got.max() < 1.0
        assert _open_uniform_one(s) == nm.open_uniform(rng)
        few = np.empty(5)
        _python(_normal, s.copy(), few)
        _normal(s, got)
        assert _same_bits(got, nm.standard_normal(rng, 1000))
        assert _same_bits(few, got[:5])
        assert _same_bits(s, pcg.get_state(rng))
        assert _python(_open_uniform_one, s.copy()) == _open_uniform_one(s) == nm.open_uniform(rng)
        assert pcg.next_standard_normal(s) == nm.standard_normal(rng)  # Python, scalar path


def test_interleaved_with_numpy_through_round_trips():
    """k draws compiled, the state written back, then numpy's own draws from it, and again:
    the same numbers and the same final state as numpy making every draw (random(), random(n),
    open_uniform, standard_normal, raw)."""
    for seed in [*SEEDS[:10], *range(100, 110)]:
        alone = _rng(seed)
        mixed = _rng(seed)
        want, got = [], []
        for k in (0, 1, 2, 7, 31, 100):
            want.append(alone.random(k))
            s = pcg.get_state(mixed)
            u = np.empty(k)
            _random(s, u)
            got.append(u.copy())
            want.append(alone.bit_generator.random_raw(k))
            got.append(_raw(s, k))
            want.append(nm.open_uniform(alone, k))
            _open_uniform(s, u)
            got.append(u.copy())
            pcg.set_state(mixed, s)
            for _ in range(2):  # then numpy, from the written state
                want.append(np.array([alone.random(), nm.standard_normal(alone)]))
                got.append(np.array([mixed.random(), nm.standard_normal(mixed)]))
            want.append(alone.random(k))
            got.append(mixed.random(k))
        assert all(_same_bits(a, b) for a, b in zip(got, want, strict=True))
        assert mixed.bit_generator.state == alone.bit_generator.state


def test_32_bit_buffer_is_numpys_and_survives_a_round_trip():
    """``next_uint32`` is numpy's ``pcg64_next32`` (seen through ``random(dtype=float32)``,
    (next32 >> 8) 2^-24): the low half of a 64-bit draw, then its buffered high half. 64-bit
    draws leave the buffer alone, in numpy and here, so a round trip in the middle of a pair
    keeps the pending half."""
    for seed in SEEDS:
        alone, mixed = _rng(seed), _rng(seed)
        s = pcg.get_state(mixed)
        got = _uint32(s, 9)
        want = alone.random(9, dtype=np.float32)
        assert _same_bits((got >> np.uint64(8)).astype(np.float32) * np.float32(2.0**-24), want)
        assert s[pcg.HAS_UINT32] == 1 and alone.bit_generator.state["has_uint32"] == 1
        assert _same_bits(s, pcg.get_state(alone))
        raw = _raw(s, 5)  # the buffered half waits through 64-bit draws
        pcg.set_state(mixed, s)
        assert _same_bits(raw, alone.bit_generator.random_raw(5))
        assert mixed.random(3, dtype=np.float32).tobytes() == alone.random(
            3, dtype=np.float32).tobytes()
        assert mixed.bit_generator.state == alone.bit_generator.state
        s_py = pcg.get_state(alone)
        assert _same_bits(_python(_uint32, s_py, 4), _uint32(pcg.get_state(alone), 4))


def test_state_round_trip_is_exact():
    """get_state then set_state gives numpy's state dict back, buffer included; the array
    holds the 128-bit numbers' halves."""
    for rng in [*(_rng(s) for s in SEEDS), *_children()]:
        rng.random(3, dtype=np.float32)  # a pending 32-bit half
        before = rng.bit_generator.state
        s = pcg.get_state(rng)
        assert s.dtype == np.uint64 and s.shape == (pcg.STATE_SIZE,)
        assert (int(s[pcg.S_HI]) << 64) | int(s[pcg.S_LO]) == before["state"]["state"]
        assert (int(s[pcg.INC_HI]) << 64) | int(s[pcg.INC_LO]) == before["state"]["inc"]
        assert (s[pcg.HAS_UINT32], s[pcg.UINTEGER]) == (1, before["uinteger"])
        other = _rng(99)
        pcg.set_state(other, s)
        assert other.bit_generator.state == before
        assert rng.bit_generator.state == before  # reading draws nothing


def test_stacked_states_step_each_generator_in_one_loop():
    """R generators' states in one (R, k) array, stepped in one compiled loop that alternates
    the runs draw by draw: each row is its own generator's numpy stream, and set_states hands
    every generator on where numpy alone would be."""
    rngs = [*(_rng(s) for s in SEEDS), *_children()]
    twins = [*(_rng(s) for s in SEEDS), *_children()]
    states = pcg.get_states(rngs)
    assert states.shape == (len(rngs), pcg.STATE_SIZE) and states.dtype == np.uint64
    assert all(_same_bits(states[r], pcg.get_state(g)) for r, g in enumerate(rngs))
    got = _stacked_raw(states, 300)
    py = _python(_stacked_raw, pcg.get_states(twins), 3)
    for r, twin in enumerate(twins):
        want = twin.bit_generator.random_raw(300)
        assert _same_bits(got[r], want)
        assert _same_bits(py[r], want[:3])
    pcg.set_states(rngs, states)
    for rng, twin in zip(rngs, twins, strict=True):
        assert rng.bit_generator.state == twin.bit_generator.state
        assert rng.random() == twin.random()


def test_rejects_what_is_not_a_pcg64_state():
    with pytest.raises(TypeError, match="PCG64"):
        pcg.get_state(np.random.Generator(np.random.Philox(1)))
    with pytest.raises(TypeError, match="PCG64"):
        pcg.set_state(np.random.Generator(np.random.PCG64DXSM(1)), pcg.get_state(_rng(1)))
    s = pcg.get_state(_rng(1))
    for bad in (s[:5], np.where(np.arange(6) == pcg.HAS_UINT32, 2, s).astype(np.uint64),
                np.where(np.arange(6) == pcg.UINTEGER, 2**32, s).astype(np.uint64)):
        with pytest.raises(ValueError, match="PCG64 state"):
            pcg.set_state(_rng(1), bad)
    with pytest.raises(ValueError, match="2 generators"):
        pcg.set_states([_rng(1), _rng(2)], pcg.get_states([_rng(1)]))
