"""numpy's PCG64 bit generator over a state array, callable from compiled kernels.

Why this module exists. A batched engine that runs R runs at once keeps one random
``Generator`` per run, so that every run of a batch is, bit for bit, the run it would be alone
(issue 19). A compiled loop over the R runs cannot call R ``numpy.random.Generator`` objects;
it can step R PCG64 states held in a ``(R, STATE_SIZE)`` uint64 array. This module reads a
Generator's state into such an array (:func:`get_state`, :func:`get_states`), steps it in
compiled code or in Python (the :func:`sim.core.jit.jitable` functions below) and writes it back
(:func:`set_state`, :func:`set_states`), so that numpy, continuing from the written state, draws
what it would have drawn had it made every draw itself.

The generator. The model's Generators are numpy's ``PCG64`` (``np.random.default_rng(seed)``,
made by Mesa, and its children ``rng.spawn(1)``): O'Neill's PCG-XSL-RR 128/64 (M. E. O'Neill
2014, "PCG: A Family of Simple Fast Space-Efficient Statistically Good Algorithms for Random
Number Generation", Harvey Mudd College HMC-CS-2014-0905, sections 4.3.3 and 6.3), as numpy
implements it in ``numpy/random/src/pcg64/pcg64.h`` (``pcg_setseq_128_xsl_rr_64_random_r``).
The state is a 128-bit number s and an odd 128-bit increment c (the stream); a 64-bit draw
first steps the linear congruential generator, then outputs a function of the *new* state:

    s' = (a s + c) mod 2^128,  a = PCG_DEFAULT_MULTIPLIER_128
       = 2549297995355413924 * 2^64 + 4865540595714422341,
    x  = rotr64(hi(s') xor lo(s'), hi(s') >> 58),

hi and lo the top and bottom 64 bits, rotr64(v, r) = (v >> r) | (v << ((-r) mod 64)) the
64-bit right rotation (XSL-RR: "xorshift low, random rotation"; the 6 top bits of the state,
its best bits, pick the rotation). numpy's ``next_raw`` (``random_raw``) and ``next_uint64``
are this x; ``next_double`` (``Generator.random``) is (x >> 11) 2^-53, the top 53 bits on a
grid of 2^-53; ``next_uint32`` returns the low half of a fresh x and keeps the high half in a
buffer (``has_uint32``, ``uinteger``) for the next 32-bit call. The 64-bit draws neither read
nor change that buffer; it is part of the state array so that a round trip keeps it.

The state array (uint64, :data:`STATE_SIZE` entries, indices :data:`S_HI` ...): the state's
high and low halves, the increment's high and low halves, ``has_uint32`` (0 or 1) and
``uinteger``.

Arithmetic. 128-bit numbers are pairs of uint64 halves: a s mod 2^128 is
lo(s_lo a_lo) + 2^64 (hi(s_lo a_lo) + s_hi a_lo + s_lo a_hi mod 2^64) (numpy's emulated
``pcg128_mult``), the full 64 x 64 product of the low halves from 32-bit halves (numpy's
``_pcg_mult64``), the addition with a carry from the low to the high word. Every operation is
written so that it never wraps around: products of 32-bit halves, sums whose true value is
below 2^64 (the partial sums of a 64 x 64 product, sums of 32-bit halves), and left shifts,
which discard the bits above 2^64 without an overflow. numpy warns on a wrapping uint64 scalar
operation ("overflow encountered in scalar multiply", "... scalar add"), so the same code runs
in Python without warnings and compiled by numba with the same bits. The price, compiled, is
about 2 ns a draw over wrapping arithmetic (5.5 against 3.5 ns, numpy's own 2.3 ns, measured
in one process on a loaded 2-core machine). Every constant is an ``np.uint64``: numba
turns arithmetic that mixes uint64 and int64 (an integer literal) into float64, which would
lose bits. ``tests/core/test_pcg.py`` checks the draws against numpy, compiled and in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sim.core.jit import jitable
from sim.core.numerics import ndtri1

__all__ = ["S_HI", "S_LO", "INC_HI", "INC_LO", "HAS_UINT32", "UINTEGER", "STATE_SIZE",
           "get_state", "set_state", "get_states", "set_states", "next_uint64",
           "next_uint32", "next_double", "random_fill", "next_open_uniform",
           "open_uniform_fill", "next_standard_normal", "standard_normal_fill"]

# indices of the state array
S_HI, S_LO, INC_HI, INC_LO, HAS_UINT32, UINTEGER = 0, 1, 2, 3, 4, 5
STATE_SIZE = 6

_MASK64 = (1 << 64) - 1
# numpy's PCG_DEFAULT_MULTIPLIER_128 (pcg64.h), high and low halves
_MULT_HI = np.uint64(2549297995355413924)
_MULT_LO = np.uint64(4865540595714422341)
_M32 = np.uint64(0xFFFFFFFF)
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U11 = np.uint64(11)
_U12 = np.uint64(12)
_U32 = np.uint64(32)
_U58 = np.uint64(58)
_U63 = np.uint64(63)
_U64 = np.uint64(64)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2^-53, numpy's next_double constant


# ------------------------------------------------------------------ Generator <-> array
def _bit_generator(rng) -> np.random.PCG64:
    """The PCG64 bit generator of a Generator (or the bit generator itself)."""
    bg = getattr(rng, "bit_generator", rng)
    if not isinstance(bg, np.random.PCG64):
        raise TypeError(f"needs numpy's PCG64, got {type(bg).__name__}")
    return bg


def _fill_state(out: np.ndarray, rng) -> None:
    d = _bit_generator(rng).state
    s, inc = d["state"]["state"], d["state"]["inc"]
    out[S_HI], out[S_LO] = s >> 64, s & _MASK64
    out[INC_HI], out[INC_LO] = inc >> 64, inc & _MASK64
    out[HAS_UINT32], out[UINTEGER] = int(d["has_uint32"]), int(d["uinteger"])


def get_state(rng) -> np.ndarray:
    """The PCG64 state of ``rng`` (a Generator or its bit generator) as a new uint64 array of
    :data:`STATE_SIZE` entries (module docstring); ``rng`` is not advanced."""
    out = np.empty(STATE_SIZE, np.uint64)
    _fill_state(out, rng)
    return out


def get_states(rngs: Sequence) -> np.ndarray:
    """The states of R generators stacked: a new ``(R, STATE_SIZE)`` uint64 array whose row r
    is :func:`get_state` of ``rngs[r]``."""
    out = np.empty((len(rngs), STATE_SIZE), np.uint64)
    for r, rng in enumerate(rngs):
        _fill_state(out[r], rng)
    return out


def set_state(rng, state: np.ndarray) -> None:
    """Make ``state`` (a state array, :func:`get_state`) the state of ``rng`` (a Generator or
    its bit generator): numpy continues from it."""
    bg = _bit_generator(rng)
    st = [int(v) for v in state[:STATE_SIZE]]
    if len(st) != STATE_SIZE or st[HAS_UINT32] > 1 or st[UINTEGER] > 0xFFFFFFFF:
        raise ValueError(f"not a PCG64 state array: {state!r}")
    bg.state = {"bit_generator": "PCG64",
                "state": {"state": (st[S_HI] << 64) | st[S_LO],
                          "inc": (st[INC_HI] << 64) | st[INC_LO]},
                "has_uint32": st[HAS_UINT32], "uinteger": st[UINTEGER]}


def set_states(rngs: Sequence, states: np.ndarray) -> None:
    """Write row r of ``states`` (R, STATE_SIZE) into ``rngs[r]`` (:func:`set_state`)."""
    if states.ndim != 2 or states.shape[0] != len(rngs):
        raise ValueError(f"{len(rngs)} generators, states of shape {states.shape}")
    for r, rng in enumerate(rngs):
        set_state(rng, states[r])


# ------------------------------------------------------------------- 64-bit arithmetic
@jitable
def _add64(a, b):
    """(a + b) mod 2^64 and the carry (0 or 1), for uint64 a and b, from 32-bit halves (no
    operation wraps)."""
    lo = (a & _M32) + (b & _M32)
    hi = (a >> _U32) + (b >> _U32) + (lo >> _U32)
    return (hi << _U32) | (lo & _M32), hi >> _U32


@jitable
def _mul64(x, y):
    """The 128-bit product x y of uint64 x and y as (high, low) halves: numpy's
    ``_pcg_mult64`` (pcg64.h), with x = x1 2^32 + x0, y = y1 2^32 + y0,
    x y = x1 y1 2^64 + (x1 y0 + x0 y1) 2^32 + x0 y0; the low half is assembled from the
    partial sums instead of numpy's wrapping ``x * y`` (the same bits)."""
    x0, x1 = x & _M32, x >> _U32
    y0, y1 = y & _M32, y >> _U32
    w0 = x0 * y0
    t = x1 * y0 + (w0 >> _U32)
    w1 = (t & _M32) + x0 * y1
    hi = x1 * y1 + (t >> _U32) + (w1 >> _U32)
    return hi, (w1 << _U32) | (w0 & _M32)


@jitable
def _mullo64(x, y):
    """(x y) mod 2^64 for uint64 x and y: x0 y0 + ((x1 y0 + x0 y1) mod 2^32) 2^32, mod 2^64."""
    x0, x1 = x & _M32, x >> _U32
    y0, y1 = y & _M32, y >> _U32
    cross = ((x1 * y0) & _M32) + ((x0 * y1) & _M32)
    return _add64(x0 * y0, cross << _U32)[0]


# ------------------------------------------------------------------------------ draws
@jitable
def next_uint64(s):
    """One 64-bit draw of the PCG64 state array ``s`` (advanced in place): numpy's
    ``pcg64_next64`` (``random_raw``). The LCG step first,
    s' = (a s + c) mod 2^128 (a = PCG_DEFAULT_MULTIPLIER_128, c the increment), then the
    XSL-RR output of the new state, rotr64(hi(s') xor lo(s'), hi(s') >> 58) (O'Neill 2014;
    module docstring)."""
    s_hi, s_lo = s[S_HI], s[S_LO]
    # a s mod 2^128 = lo(s_lo a_lo) + 2^64 (hi(s_lo a_lo) + s_hi a_lo + s_lo a_hi)
    p_hi, p_lo = _mul64(s_lo, _MULT_LO)
    p_hi = _add64(p_hi, _add64(_mullo64(s_hi, _MULT_LO), _mullo64(s_lo, _MULT_HI))[0])[0]
    # + c, the low halves' carry into the high half
    n_lo, carry = _add64(p_lo, s[INC_LO])
    n_hi = _add64(_add64(p_hi, s[INC_HI])[0], carry)[0]
    s[S_HI], s[S_LO] = n_hi, n_lo
    v = n_hi ^ n_lo
    rot = n_hi >> _U58
    return (v >> rot) | (v << ((_U64 - rot) & _U63))


@jitable
def next_uint32(s):
    """One 32-bit draw (as a uint64 below 2^32): numpy's ``pcg64_next32``. The buffered high
    half of the last 64-bit draw made by this function if there is one (``has_uint32``),
    else the low half of a new 64-bit draw, whose high half is buffered."""
    if s[HAS_UINT32] != _U0:
        s[HAS_UINT32] = _U0
        return s[UINTEGER]
    x = next_uint64(s)
    s[HAS_UINT32] = _U1
    s[UINTEGER] = x >> _U32
    return x & _M32


@jitable
def next_double(s):
    """One draw of ``Generator.random()``: numpy's ``next_double``, (x >> 11) 2^-53 for x a
    64-bit draw (:func:`next_uint64`), in [0, 1) on a grid of 2^-53 (the top 53 bits, exact
    in a double)."""
    return float(next_uint64(s) >> _U11) * _TWO_M53


@jitable
def random_fill(s, out):
    """``out[:] = Generator.random(len(out))``: one :func:`next_double` per entry, in order
    (numpy's ``random_standard_uniform_fill``)."""
    for i in range(out.shape[0]):
        out[i] = next_double(s)


@jitable
def next_open_uniform(s):
    """One draw of :func:`sim.core.numerics.open_uniform`: (2k + 1) 2^-53 for k = x >> 12 the
    top 52 bits of a 64-bit draw x (the raw stream, :func:`next_uint64`), in (0, 1)."""
    return (float(next_uint64(s) >> _U12) * 2.0 + 1.0) * _TWO_M53


@jitable
def open_uniform_fill(s, out):
    """``out[:] = open_uniform(rng, len(out))``: one :func:`next_open_uniform` per entry."""
    for i in range(out.shape[0]):
        out[i] = next_open_uniform(s)


@jitable
def next_standard_normal(s):
    """One draw of :func:`sim.core.numerics.standard_normal`: Phi^{-1}(U) (``ndtri1``) of one
    :func:`next_open_uniform` U."""
    return ndtri1(next_open_uniform(s))


@jitable
def standard_normal_fill(s, out):
    """``out[:] = standard_normal(rng, len(out))``: one :func:`next_standard_normal` per
    entry."""
    for i in range(out.shape[0]):
        out[i] = next_standard_normal(s)
