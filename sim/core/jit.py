"""Compiled kernels for the model's phases, and the reductions they share with numpy.

A phase kernel is a plain Python function over arrays, written in the subset of Python that
numba compiles (nopython, no fast-math: LLVM may neither fuse a multiply and an add nor
reorder operations), decorated with :func:`kernel`. Nothing is compiled, and numba is not even
imported, until the first call: importing the model stays cheap, and numba (about 0.4 s a
process) is paid only by a process that runs a month. Compiled code is cached on disk
(``cache=True``) in a directory per version of the sources (:mod:`sim.core.numba_cache`: numba
alone would not see an edited helper in another file), so a fresh machine, or a changed
source, compiles each kernel once (about 40 s of CPU for all of them); the directories of
versions unused for a few days are deleted.

The compiled engine must give the numpy engine's bits (the numpy phases are its oracle), so a
kernel adds numbers in the order numpy does. :func:`psum` is numpy's pairwise summation,
which ``np.add.reduce`` (``ndarray.sum``) uses over a contiguous 1-D float64 array; a
``bincount`` with weights, a sum over axis 0 of a C-ordered array and a scatter-add ``out[i]
+= w`` add one term at a time in index order, which a plain loop does too.
``tests/core/test_jit.py`` checks :func:`psum` against numpy to the bit at every length up to
a few thousand, and the kernel machinery with and without compilation.

Helpers that kernels call are marked :func:`jitable`; the scalar functions of
:mod:`sim.core.numerics` (exp, log, the normal CDF, Black's call) are callable too. Where a
numpy phase computes with Python floats rather than numpy (``max``/``min`` of two floats, a
float ``//``, the builtin ``sum`` of floats), a kernel uses :func:`pymax`, :func:`pymin`,
:func:`floordiv`, :func:`pysum_terms` and :func:`pysum`, which give CPython's bits (numpy's
``maximum``, ``floor_divide`` and ``add.reduce`` differ from them on NaN, signed zeros,
rounding and summation order); ``tests/core/test_jit.py`` checks them against Python on
hand-picked values.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from sim.core import numba_cache, numerics

_JITABLE: list[Callable] = []
_lock = threading.Lock()
_registered = False

# numpy's unroll factor and block size in its pairwise summation (numpy/_core/src/umath/
# loops_utils.h.src, ``pairwise_sum``): below 8 terms a plain sum, up to 128 eight
# accumulators, above that the halves (cut at a multiple of 8) summed recursively
_UNROLL = 8
_BLOCK = 128


def jitable(f: Callable) -> Callable:
    """Mark ``f`` (numba-compatible Python) as callable from compiled kernels; it stays an
    ordinary Python function."""
    _JITABLE.append(f)
    return f


def _register() -> None:
    """Make every :func:`jitable` helper and :mod:`sim.core.numerics`' scalar functions
    callable from compiled code (once a process)."""
    global _registered
    if _registered:
        return
    from numba.extending import register_jitable  # lazy: numba costs ~0.3 s a process

    numerics.register_compiled()
    for f in _JITABLE:
        register_jitable(f)
    _registered = True


class Kernel:
    """A function compiled by numba at its first call (:func:`kernel`). ``kernel.py`` is the
    uncompiled function, which runs the same code in Python (slowly: tests, debugging)."""

    def __init__(self, f: Callable) -> None:
        self.py = f
        self.__name__ = f.__name__
        self.__doc__ = f.__doc__
        self.__wrapped__ = f
        self._compiled: Callable | None = None

    def compiled(self) -> Callable:
        """The numba dispatcher, which compiles (or loads from the cache) a version for each
        new set of argument types at its first use, under :func:`_sigint_deferred`."""
        if self._compiled is None:
            with _lock:
                if self._compiled is None:
                    numba_cache.prepare()  # before numba's import (sim.core.numba_cache)
                    import numba  # lazy: numba costs ~0.3 s a process

                    _register()
                    d = numba.njit(cache=True, nogil=True)(self.py)
                    # numba's C dispatcher calls the instance's _compile_for_args when no
                    # compiled version fits the arguments (numba/_dispatcher.cpp,
                    # compile_and_invoke), and only then: a call that finds one never sees it
                    d._compile_for_args = _guard_compiles(d._compile_for_args)
                    self._compiled = d
        return self._compiled

    def __call__(self, *args: Any) -> Any:
        f = self._compiled
        if f is None:
            f = self.compiled()
        return f(*args)


def _guard_compiles(compile_for_args: Callable) -> Callable:
    """``compile_for_args`` (a numba dispatcher's ``_compile_for_args``: a compile or a load
    from the cache for new argument types, about 5 s of CPU for a phase on a fresh machine)
    run under :func:`_sigint_deferred`."""
    def guarded(*args: Any, **kws: Any) -> Any:
        return _sigint_deferred(compile_for_args, args, kws)
    return guarded


def _sigint_deferred(f: Callable, args: tuple, kws: dict) -> Any:
    """``f(*args, **kws)`` with a Ctrl-C held back until it returns. A KeyboardInterrupt raised
    inside llvmlite's ctypes callback during compilation (``ExecutionEngine.
    _raw_object_cache_notify``) is printed as "Exception ignored on calling ctypes callback
    function" and dropped (a SIGINT 1.5 s into a series of compiles was dropped in 1 of 4
    tries), so in the main thread SIGINT is only noted while the call lasts, and delivered to
    the process's own handler (Python's KeyboardInterrupt, or the sweep's) as soon as it
    returns. (Other threads receive no signals: there ``f`` just runs. Nested calls, as
    numba's re-entry for literal arguments, pass a noted SIGINT on to the outer one.)"""
    if threading.current_thread() is not threading.main_thread():
        return f(*args, **kws)
    noted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: noted.append(signum))
    try:
        out = f(*args, **kws)
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted and callable(previous):
        previous(signal.SIGINT, None)
    elif noted and previous == signal.SIG_DFL:
        signal.default_int_handler(signal.SIGINT, None)
    return out


def kernel(f: Callable) -> Kernel:
    """Decorate a phase kernel: compiled by numba (nopython, no fast-math, cached on disk) at
    its first call."""
    return Kernel(f)


@jitable
def _psum_block(a, lo, hi):
    """numpy's pairwise sum of at most 128 terms: a plain sum below 8, else 8 accumulators
    over rows of 8, combined as a tree, then the remainder one by one."""
    n = hi - lo
    if n < _UNROLL:
        res = 0.0
        for i in range(lo, hi):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = lo + 8
    stop = hi - n % 8
    while i < stop:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < hi:
        res += a[i]
        i += 1
    return res


@jitable
def psum(a, lo, hi):
    """sum(a[lo:hi]) in numpy's pairwise order: the bits of ``np.add.reduce(a[lo:hi])`` for a
    contiguous float64 array (Higham 1993, "The accuracy of floating point summation", SIAM
    J. Sci. Comput. 14(4), the pairwise method; numpy's variant unrolled by 8). Above 128
    terms numpy sums the two halves (the first cut down to a multiple of 8) recursively and
    adds them; here the same tree is walked with an explicit stack (numba compiles no
    recursion through a registered helper), depth at most 64. numpy's reduction starts from
    the identity +0.0 and adds the pairwise sum to it: 0.0 + x is x except for x = -0.0 (a
    slice of -0.0s only gives +0.0), so the result is 0.0 + the tree's sum."""
    if hi - lo <= _BLOCK:
        return 0.0 + _psum_block(a, lo, hi)
    los = np.empty(64, np.int64)
    his = np.empty(64, np.int64)
    stage = np.zeros(64, np.int64)  # 0: expand the left half, 1: the right, 2: add them
    vals = np.empty(64)
    sp, vp = 0, 0
    los[0], his[0] = lo, hi
    while sp >= 0:
        left, h = los[sp], his[sp]
        if h - left <= _BLOCK:
            vals[vp] = _psum_block(a, left, h)
            vp += 1
            sp -= 1
            continue
        half = (h - left) // 2
        half -= half % _UNROLL
        if stage[sp] == 0:
            stage[sp] = 1
            sp += 1
            los[sp], his[sp], stage[sp] = left, left + half, 0
        elif stage[sp] == 1:
            stage[sp] = 2
            sp += 1
            los[sp], his[sp], stage[sp] = left + half, h, 0
        else:
            vals[vp - 2] = vals[vp - 2] + vals[vp - 1]
            vp -= 1
            sp -= 1
    return 0.0 + vals[0]


@jitable
def maximum(a, b):
    """``np.maximum(a, b)`` of two floats, bit for bit: NaN if either is NaN, and ``b`` when
    they compare equal (``np.maximum(0.0, -0.0)`` is -0.0, ``np.maximum(-0.0, 0.0)`` 0.0)."""
    return a if (a > b or a != a) else b


@jitable
def minimum(a, b):
    """``np.minimum(a, b)`` of two floats, bit for bit (NaN if either is; ``b`` when equal)."""
    return a if (a < b or a != a) else b


@jitable
def pymax(a, b):
    """Python's ``max(a, b)`` of two floats, bit for bit: the builtin keeps its first argument
    and replaces it only by an item that compares greater (``b > a``), so it returns ``a`` on
    ties and whenever a NaN makes the comparison false: ``max(0.0, -0.0)`` is 0.0 but
    ``max(-0.0, 0.0)`` is -0.0, ``max(nan, 1.0)`` is NaN but ``max(1.0, nan)`` is 1.0.
    (:func:`maximum`, numpy's rule, returns NaN if either is NaN and ``b`` on ties.)"""
    return b if b > a else a


@jitable
def pymin(a, b):
    """Python's ``min(a, b)`` of two floats, bit for bit: ``b`` only if ``b < a``, else ``a``
    (ties, signed zeros and NaNs as in :func:`pymax`)."""
    return b if b < a else a


@jitable
def floordiv(vx, wx):
    """Python's float ``vx // wx``, bit for bit, for ``wx`` nonzero (Python raises
    ZeroDivisionError at 0; here the result would be NaN). CPython's ``float_floor_div``
    (Objects/floatobject.c, ``_float_div_mod``) is not ``floor(vx / wx)``: it takes
    ``fmod(vx, wx)``, divides ``vx - mod`` (exact) by ``wx``, steps down by one when the
    remainder's sign differs from the divisor's, then floors and corrects a quotient that
    rounding left just below an integer; a zero quotient takes the sign of ``vx / wx``. So
    ``1.0 // 0.1`` is 9.0 (0.1 is a little above 1/10) where ``floor(1.0 / 0.1)`` is 10.0,
    and ``-0.0 // 3.0`` is -0.0. (numpy's ``floor_divide`` follows the same algorithm but is
    not what the phases that call this use.)"""
    mod = np.fmod(vx, wx)
    div = (vx - mod) / wx
    if mod != 0.0:
        if (wx < 0.0) != (mod < 0.0):
            div -= 1.0
    if div != 0.0:
        fd = np.floor(div)
        if div - fd > 0.5:
            fd += 1.0
    else:
        fd = math.copysign(0.0, vx / wx)
    return fd


@jitable
def pysum_terms(fill, rows, value, g, n, neumaier):
    """Python's builtin ``sum(u * value[r, g] for r, u in zip(rows[:n], fill[:n]))`` over
    Python ints ``u`` and floats ``value[r, g]`` (``n`` >= 1), bit for bit: what a numpy phase
    computes when it sums products of list items with ``sum()`` (phase 6's forced sales valued
    at repossession, :func:`sim.world.phases.market.record_trade`). Each term is
    ``float(u) * value`` (exact conversion: the units are far below 2**53). The builtin
    starts from the int 0, so the first partial sum is ``0.0 + x`` (-0.0 becomes +0.0);
    then, from CPython 3.12 on (``neumaier`` true; gh-100425, ``builtin_sum_impl``), it
    adds floats with Neumaier's compensated summation (Neumaier 1974, ZAMM 54(1),
    "Rundungsfehleranalyse einiger Verfahren zur Summation endlicher Summen"): a running
    compensation of each addition's rounding error, added to the total at the end if it is
    nonzero and finite; before 3.12 (``neumaier`` false) a plain left-to-right sum. Neither
    is numpy's pairwise :func:`psum`: ``sum([1e16, 1.0, -1e16])`` is 1.0 on 3.12, 0.0 on a
    plain left-to-right sum."""
    f = 0.0 + float(fill[0]) * value[rows[0], g]
    c = 0.0
    for j in range(1, n):
        x = float(fill[j]) * value[rows[j], g]
        if not neumaier:
            f += x
            continue
        f, c = neumaier_add(f, c, x)
    return neumaier_total(f, c)


@jitable
def pysum(x):
    """Python's builtin ``sum(x)`` of a 1-D float array with at least one entry, as CPython
    3.12 adds floats (the first term to the int 0, then Neumaier's compensated summation;
    see :func:`pysum_terms`), bit for bit: what a numpy phase computes when it sums a dict's
    or a list's floats with ``sum()`` (phase 9's desk cash flows, ``sim.world.losses``)."""
    f = 0.0 + x[0]
    c = 0.0
    for k in range(1, x.shape[0]):
        f, c = neumaier_add(f, c, x[k])
    return neumaier_total(f, c)


@jitable
def neumaier_add(f, c, x):
    """One addition of CPython 3.12's float ``sum()``: the new total ``f + x`` and the
    compensation ``c`` plus that addition's rounding error (Neumaier 1974)."""
    t = f + x
    if abs(f) >= abs(x):
        c += (f - t) + x
    else:
        c += (x - t) + f
    return t, c


@jitable
def neumaier_total(f, c):
    """The end of CPython 3.12's float ``sum()``: the compensation is added to the total only
    when it is nonzero and finite."""
    if c != 0.0 and math.isfinite(c):
        f += c
    return f
