"""sim.core.jit: numpy's pairwise sum to the bit, and kernels compiled at their first call."""

import math
import os
import signal
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

from sim.core import jit, numba_cache
from sim.core import numerics as nm
from sim.core.jit import (
    Kernel,
    floordiv,
    kernel,
    maximum,
    minimum,
    psum,
    pymax,
    pymin,
    pysum,
    pysum_terms,
)


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


def _add(a, b):
    return a + b


def _swallowing_sigint():
    """What numba's compiler did to a Ctrl-C: SIGINT sent to the process, and the
    KeyboardInterrupt it raises swallowed."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
    except KeyboardInterrupt:
        pass


def test_every_compile_and_only_a_compile_goes_through_the_guard(monkeypatch):
    """numba's C dispatcher calls the instance's _compile_for_args on a miss: the first call,
    and a later call with new argument types, pass through the guard; a call that finds a
    compiled version does not (the fast path is numba's own)."""
    guarded = []
    real = jit._sigint_deferred

    def counting(f, args, kws):
        guarded.append(tuple(type(a).__name__ for a in args))
        return real(f, args, kws)

    monkeypatch.setattr(jit, "_sigint_deferred", counting)
    k = Kernel(_add)
    assert k(1, 2) == 3 and guarded == [("int", "int")]
    assert k(1, 2) == 3 and k(5, 6) == 11 and len(guarded) == 1
    assert k(1.5, 2.0) == 3.5 and guarded == [("int", "int"), ("float", "float")]
    assert k(2.5, 2.0) == 4.5 and k(1, 2) == 3 and len(guarded) == 2
    assert len(k.compiled().signatures) == 2
    # in another thread (no signals there) a compile just runs
    out = []
    t = threading.Thread(target=lambda: out.append(k(np.int32(1), np.int32(2))))
    t.start()
    t.join()
    assert out == [3] and len(guarded) == 3


def test_a_ctrl_c_during_any_compile_is_delivered_after_it(monkeypatch):
    """numba's compilation swallowed a SIGINT (a fresh machine's first run ignored Ctrl-C):
    while a kernel compiles, at its first call or at a later one with new argument types,
    SIGINT is noted and delivered when the compile returns. Here numba's _compile_for_args
    first sends SIGINT to the process and swallows the KeyboardInterrupt, as numba did."""
    numba_cache.prepare()  # before numba's import, as the kernels do
    from numba.core.dispatcher import Dispatcher  # lazy: after the cache directory is set

    real = Dispatcher._compile_for_args

    def swallowing(self, *args, **kws):
        _swallowing_sigint()
        return real(self, *args, **kws)

    monkeypatch.setattr(Dispatcher, "_compile_for_args", swallowing)
    # Python's own handler, whatever the suite inherited (started in the background by a
    # shell, it inherits SIGINT ignored, and then a Ctrl-C rightly goes nowhere)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        k = Kernel(_add)
        with pytest.raises(KeyboardInterrupt):
            k(1, 2)  # the first call
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
        assert k(1, 2) == 3  # compiled: no compile, no SIGINT
        with pytest.raises(KeyboardInterrupt):
            k(1.5, 2.0)  # new argument types: a compile again
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert k(1.5, 2.0) == 3.5 and k(1, 2) == 3
    finally:
        signal.signal(signal.SIGINT, inherited)


# ------------------------------------------------------------------ Python's float semantics

# hand-picked: signed zeros, infinities, NaN, a value whose decimal is not its double (0.1),
# negative divisors, tiny and huge magnitudes
_PICKED = [0.0, -0.0, 1.0, -1.0, 0.1, -0.1, 3.0, -3.0, 2.5, 7.0, 1e-300, 5e-324, 1e300,
           -1e300, math.inf, -math.inf, math.nan]


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _pairs():
    a = np.array([x for x in _PICKED for _ in _PICKED])
    b = np.array([y for _ in _PICKED for y in _PICKED])
    return a, b


@kernel
def _py_ops(a, b, mx, mn, fd):
    for i in range(a.shape[0]):
        mx[i] = pymax(a[i], b[i])
        mn[i] = pymin(a[i], b[i])
        if b[i] != 0.0:
            fd[i] = floordiv(a[i], b[i])


@pytest.mark.parametrize("compiled", [True, False])
def test_pymax_pymin_are_pythons_bits(compiled):
    """Every pair of the hand-picked values: the bits of Python's max(a, b) / min(a, b), which
    differ from numpy's (maximum/minimum) on ties of signed zeros and on NaN."""
    a, b = _pairs()
    mx, mn, fd = np.empty_like(a), np.empty_like(a), np.empty_like(a)
    with np.errstate(all="ignore"):  # uncompiled, the helpers compute on numpy scalars
        (_py_ops if compiled else _py_ops.py)(a, b, mx, mn, fd)
    for x, y, got_max, got_min in zip(a.tolist(), b.tolist(), mx.tolist(), mn.tolist(),
                                      strict=True):
        assert _bits(got_max) == _bits(max(x, y)), (x, y)
        assert _bits(got_min) == _bits(min(x, y)), (x, y)
    # the cases where Python and numpy part: the first argument wins a tie and a NaN second
    assert _bits(pymax(-0.0, 0.0)) == _bits(-0.0) != _bits(np.maximum(-0.0, 0.0))
    assert _bits(pymin(0.0, -0.0)) == _bits(0.0) != _bits(np.minimum(0.0, -0.0))
    assert pymax(1.0, math.nan) == 1.0 and math.isnan(np.maximum(1.0, math.nan))
    assert math.isnan(pymax(math.nan, 1.0)) and pymin(2.0, math.nan) == 2.0


@pytest.mark.parametrize("compiled", [True, False])
def test_floordiv_is_pythons_bits(compiled):
    """Every pair of the hand-picked values with a nonzero divisor: the bits of Python's
    ``a // b`` (a NaN result only as NaN: its sign bit is the C library's), including
    negative divisors, infinities and signed zero quotients."""
    a, b = _pairs()
    mx, mn, fd = np.empty_like(a), np.empty_like(a), np.empty_like(a)
    with np.errstate(all="ignore"):  # uncompiled, the helpers compute on numpy scalars
        (_py_ops if compiled else _py_ops.py)(a, b, mx, mn, fd)
    checked = 0
    for x, y, got in zip(a.tolist(), b.tolist(), fd.tolist(), strict=True):
        if y == 0.0:
            continue
        want = x // y
        if math.isnan(want):
            assert math.isnan(got), (x, y)
        else:
            assert _bits(got) == _bits(want), (x, y, got, want)
        checked += 1
    assert checked == len(_PICKED) * (len(_PICKED) - 2)
    # worked by hand: 0.1 is a little above 1/10, so 1.0 // 0.1 is 9.0 (1.0 / 0.1 rounds to
    # 10.0); a negative remainder against a positive divisor steps down; zeros keep a sign
    assert floordiv(1.0, 0.1) == 9.0 == 1.0 // 0.1 and math.floor(1.0 / 0.1) == 10
    assert floordiv(-7.0, 2.0) == -4.0 and floordiv(7.0, -2.0) == -4.0
    assert floordiv(-7.0, -2.0) == 3.0
    assert _bits(floordiv(-0.0, 3.0)) == _bits(-0.0) and _bits(floordiv(0.0, -3.0)) == _bits(-0.0)
    assert floordiv(-1.0, math.inf) == -1.0 and _bits(floordiv(1.0, math.inf)) == _bits(0.0)


@kernel
def _floordiv_k(a, b):
    return floordiv(a, b)


def test_floordiv_on_random_values():
    rng = np.random.default_rng(4)
    a = rng.uniform(-1e9, 1e9, 3000) * 10.0 ** rng.integers(-6, 6, 3000)
    b = rng.uniform(-1e5, 1e5, 3000) * 10.0 ** rng.integers(-6, 6, 3000)
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        assert _bits(_floordiv_k(x, y)) == _bits(x // y), (x, y)


@kernel
def _pysum_k(fill, value, neumaier):
    rows = np.arange(len(fill))
    return pysum_terms(fill, rows, value, 0, len(fill), neumaier)


def _sum_like_python(fill, value):
    return sum(u * x for u, x in zip(fill.tolist(), value[:, 0].tolist(), strict=True))


@pytest.mark.parametrize("compiled", [True, False])
def test_pysum_terms_cancellation_by_hand(compiled):
    """Cases a plain left-to-right sum gets wrong and Python 3.12's sum() gets right (its
    compensation carries the units 1e16 + 1 rounds away), and the int start 0."""
    f = _pysum_k if compiled else _pysum_k.py
    neumaier = sys.version_info >= (3, 12)
    cases = [([1, 1, 1], [1e16, 1.0, -1e16]),  # 3.12: 1.0; plain: 0.0
             ([1, 1, 1, 1], [1.0, 1e100, 1.0, -1e100]),  # 3.12: 2.0; plain: 0.0
             ([3, 2, 1], [0.1, 0.2, -0.7]),  # rounding in every term
             ([1, 1], [1e308, 1e308]),  # overflow: inf, the compensation is not finite
             ([1, 1, 1], [math.inf, 1.0, -1.0]),
             ([2, 5], [-0.0, -0.0]),  # 0 + -0.0 is +0.0
             ([1], [-0.0]),
             ([0, 4], [1.5, -2.25])]
    for fill, vals in cases:
        fill_a, value = np.array(fill), np.array(vals)[:, None]
        with np.errstate(all="ignore"):  # uncompiled, the helper computes on numpy scalars
            got = f(fill_a, value, neumaier)
        assert _bits(got) == _bits(_sum_like_python(fill_a, value)), vals
    one = np.array([1, 1, 1]), np.array([[1e16], [1.0], [-1e16]])
    assert f(*one, True) == 1.0 and f(*one, False) == 0.0  # the two rules differ here
    if neumaier:
        assert sum([1e16, 1.0, -1e16]) == 1.0
    with np.errstate(all="ignore"):
        nan = f(np.array([1, 1]), np.array([[math.inf], [-math.inf]]), neumaier)
    assert math.isnan(nan) and math.isnan(_sum_like_python(np.array([1, 1]),
                                                           np.array([[math.inf], [-math.inf]])))


def test_pysum_terms_is_pythons_sum_on_random_values():
    neumaier = sys.version_info >= (3, 12)
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        f = rng.integers(0, 50, n)
        v = rng.standard_normal((n, 1)) * 10.0 ** rng.integers(-3, 16, (n, 1))
        assert _bits(_pysum_k(f, v, neumaier)) == _bits(_sum_like_python(f, v))


@kernel
def _pysum_rows_k(fill, rows, value, g, n, neumaier):
    return pysum_terms(fill, rows, value, g, n, neumaier)


def test_pysum_terms_reads_rows_column_and_prefix():
    """``rows`` index the rows of ``value``, ``g`` its column, and only the first ``n`` terms
    count."""
    value = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    fill, rows = np.array([3, 5, 7]), np.array([2, 0, 1])
    assert _pysum_rows_k(fill, rows, value, 1, 2, True) == 3 * 40.0 + 5 * 10.0
    assert _pysum_rows_k(fill, rows, value, 0, 3, False) == 3 * 4.0 + 5 * 1.0 + 7 * 2.0


def _pysum_cases():
    rng = np.random.default_rng(5)
    yield [1e16, 1.0, -1e16, 1.0, 3.0, -2.0]  # compensation changes the result
    yield [-0.0, -0.0, -0.0, -0.0, -0.0, -0.0]  # 0 + -0.0 = 0.0
    yield [0.1, 0.2, 0.3, -0.6, 1e-17, 0.0]
    yield [1e308, 1e308, -1e308, 1.0, 0.0, 0.0]  # overflow: the compensation is not finite
    yield [np.inf, 1.0, 2.0, 0.0, 0.0, 0.0]
    yield [np.nan, 1.0, 2.0, 0.0, 0.0, 0.0]
    for _ in range(200):
        yield (rng.standard_normal(6) * 10.0 ** rng.integers(-3, 17, 6)).tolist()


def test_pysum_is_pythons_sum():
    """``pysum`` is Python's ``sum`` of a float array (compensated since 3.12; phase 9's
    kernel sums the desk's cash flows with it, as ``losses.record`` does with
    ``sum(desk.flows.values())``), bit for bit, compiled and not."""
    compiled = kernel(_sum_kernel)
    cases = [np.array(c) for c in _pysum_cases()]
    plain = 0.0
    for x in cases[0].tolist():
        plain += x
    assert plain != sum(cases[0].tolist())  # (the case where a plain sum differs)
    for x in cases:
        want = sum(x.tolist())
        with np.errstate(over="ignore", invalid="ignore"):  # (the inf and NaN cases)
            assert _bits(float(pysum(x))) == _bits(want)
        assert _bits(float(compiled(x))) == _bits(want)


def _sum_kernel(x):
    return pysum(x)
