"""sim.core.jit: numpy's pairwise sum to the bit, and kernels compiled at their first call."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from sim.core import numerics as nm
from sim.core.jit import Kernel, kernel, maximum, minimum, psum


@kernel
def _total(a):
    return psum(a, 0, a.shape[0])


@kernel
def _window(a, lo, hi):
    return psum(a, lo, hi)


def _pairwise_by_hand(a: list[float]) -> float:
    """The 16-term case written out: eight accumulators over two rows of 8, then the tree."""
    r = [a[j] + a[8 + j] for j in range(8)]
    return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))


def test_psum_is_numpys_sum_at_every_length():
    """Lengths 0..2,100 (every branch: < 8 terms, 8..128 with and without a remainder, the
    recursive halves) and a few large ones, on terms spread over 16 orders of magnitude so that
    any change of order changes the bits."""
    rng = np.random.default_rng(7)
    for n in [*range(0, 2101), 4096, 10_001, 65_537]:
        a = rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)
        want = np.add.reduce(a)
        assert _total(a) == want, n
        if n <= 300:
            assert _total.py(a) == want, n  # the same code, uncompiled


def test_psum_of_negative_zeros_is_numpys_positive_zero():
    """numpy's reduction adds the pairwise sum to +0.0: a slice of -0.0s sums to +0.0 at
    every length (eight accumulators of -0.0 alone would give -0.0); signed zeros mixed with
    numbers too."""
    rng = np.random.default_rng(9)
    for n in range(0, 400):
        a = np.full(n, -0.0)
        assert _total(a).hex() == np.add.reduce(a).hex() == (0.0).hex(), n
        b = np.where(rng.random(n) < 0.5, -0.0, rng.standard_normal(n))
        assert _total(b).hex() == np.add.reduce(b).hex(), n


def test_psum_window_is_the_slice_sum():
    rng = np.random.default_rng(8)
    a = rng.standard_normal(1000) * 10.0 ** rng.uniform(-8, 8, 1000)
    for lo, hi in [(0, 0), (3, 10), (17, 145), (100, 999), (1, 1000)]:
        assert _window(a, lo, hi) == np.add.reduce(a[lo:hi])


def test_psum_order_by_hand():
    """At 16 terms numpy adds a[j] + a[8 + j] first, so the two 1s are added to 0.0 and each
    other (2.0); left to right, 1e16 + 1 rounds to 1e16 and only the last 1 survives (1.0)."""
    a = [1e16, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1e16, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    x = np.array(a)
    assert _pairwise_by_hand(a) == 2.0
    assert np.add.reduce(x) == 2.0
    assert _total(x) == 2.0
    seq = 0.0
    for v in a:
        seq += v
    assert seq == 1.0  # so the test can tell the two orders apart


def test_kernel_is_lazy_and_keeps_the_python_function():
    assert isinstance(_total, Kernel)
    assert _total.py.__name__ == "_total"
    # importing sim.core.jit (and the model) loads no numba
    code = ("import sys; import sim.core.jit, sim.world.model; "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("n", [5, 50, 500])
def test_scalar_numerics_callable_from_a_kernel(n):
    """A kernel can call the CPU-independent scalar functions of sim.core.numerics."""
    @kernel
    def exps(x, out):
        for i in range(x.shape[0]):
            out[i] = nm.exp1(x[i])

    x = np.linspace(-5, 5, n)
    out = np.empty(n)
    exps(x, out)
    assert np.array_equal(out, nm.exp(x))


@kernel
def _maxmin(a, b, mx, mn):
    for i in range(a.shape[0]):
        mx[i] = maximum(a[i], b[i])
        mn[i] = minimum(a[i], b[i])


@pytest.mark.parametrize("reps", [1, 64])  # one pass and long enough for numpy's SIMD loops
def test_maximum_minimum_are_numpys_bits(reps):
    """Every pair of 0.0, -0.0, +-1, NaN, +-inf: the same bits as np.maximum / np.minimum,
    signed zeros and NaNs included (a plain max() or a >= b test gets the zeros wrong)."""
    vals = np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf])
    a = np.tile(np.repeat(vals, 7), reps)
    b = np.tile(np.tile(vals, 7), reps)
    mx, mn = np.empty_like(a), np.empty_like(a)
    _maxmin(a, b, mx, mn)
    assert mx.tobytes() == np.maximum(a, b).tobytes()
    assert mn.tobytes() == np.minimum(a, b).tobytes()
    assert np.signbit(np.maximum(0.0, -0.0)) and not np.signbit(np.maximum(-0.0, 0.0))


def test_a_ctrl_c_during_the_first_call_is_delivered_after_it():
    """numba's compilation swallowed a SIGINT (a fresh machine's first run ignored Ctrl-C):
    during a kernel's first call SIGINT is noted and delivered when the call returns. Here the
    'compiler' sends SIGINT to the process and swallows the KeyboardInterrupt, as numba did."""
    def swallowing(*_args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        except KeyboardInterrupt:
            pass
        return 7

    k = Kernel(lambda: None)
    k.compiled = lambda: swallowing  # the first call goes through the guard
    # Python's own handler, whatever the suite inherited (started in the background by a
    # shell, it inherits SIGINT ignored, and then a Ctrl-C rightly goes nowhere)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            k()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, inherited)
    calm = Kernel(lambda: None)
    calm.compiled = lambda: (lambda: 3)
    assert calm() == 3
