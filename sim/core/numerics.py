"""Floating-point operations whose results do not depend on the CPU.

Why this module exists. IEEE 754 requires ``+ - * /`` and ``sqrt`` to be correctly rounded, so
they give the same bits on every conforming machine, and so do comparisons, ``floor``, ``rint``,
``ldexp``, ``frexp``, ``minimum``/``maximum`` and ``where``. Nothing requires that of ``exp``,
``log``, ``pow`` or of a dot product, and on x86-64 Linux the results do depend on the CPU:

* numpy dispatches its transcendental loops by SIMD level (with AVX-512 it uses vectorised
  kernels that differ from the scalar ones by one unit in the last place in 0.2-10 % of
  values);
* every ``@`` product and ``np.linalg.solve`` goes to OpenBLAS/LAPACK, which picks a kernel
  (block sizes, FMA, summation order) per CPU;
* glibc's libm (``math.exp``, ``math.log``, ``x ** y`` on Python floats, scipy's ``ndtr`` and
  the samplers of ``numpy.random`` that call ``exp``/``log``) has FMA and non-FMA variants
  chosen per CPU that differ in the last bit (measured on glibc 2.36:
  ``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA`` changes ``exp``, ``log1p``, ``expm1``,
  ``pow``, ``erfc``, ``rng.lognormal`` and ``rng.gumbel``).

A one-ulp difference in month 3 can change whether a borrower defaults in month 9, so every
such operation a run makes goes through this module instead. Everything here is built from
the correctly rounded operations above, one operation at a time, in an order fixed by the
source, so there is no room for a fused multiply-add or a reordered sum: the same inputs give
the same bits on any CPU and any SIMD or BLAS setting. Sums use
``np.add.reduce``, whose pairwise order is fixed by numpy's source and the array's shape (not
by the CPU); products that BLAS would do are written as an element-wise multiply and such a
reduction. ``docs/numerics.md`` states the guarantee, its limits and how it is tested.

Algorithms (each cited where it is implemented):

* :func:`exp` and :func:`log`: the argument reductions and minimax polynomials of Sun's
  fdlibm (``e_exp.c``, ``e_log.c``, 1993; Tang 1989, ACM TOMS 15(2) for the method), error
  below 1 ulp;
* :func:`log1p` and :func:`expm1`: Kahan's compensations through :func:`log` and :func:`exp`
  (Goldberg 1991, ACM Computing Surveys 23(1), theorem 4; Higham 2002, *Accuracy and
  Stability of Numerical Algorithms*, 1.14.1);
* :func:`ndtr`: W. J. Cody's rational Chebyshev approximations of the normal distribution
  function (Cody 1969, Math. Comp. 23(107); Algorithm 715, ACM TOMS 19(1), 1993, routine
  ANORM), with the exp(-x^2/2) split that keeps full precision in the tails;
* :func:`ndtri`: Wichura's algorithm AS 241 (Applied Statistics 37(3), 1988), PPND16;
* :func:`solve`: Gaussian elimination with partial pivoting (Golub & Van Loan, *Matrix
  Computations*, 4th ed., algorithm 3.4.1) in row operations;
* samplers: inversion of the uniform draws of a ``numpy.random.Generator`` (whose bit streams
  and ``random``/``integers`` are integer arithmetic, identical everywhere).

Each function is written once, for one float, in the subset of Python that numba compiles
(the scalar versions, ``exp1``, ``log1``, ``ndtr1``, ``black1``, ..., are public: the compiled
phase kernels of :mod:`sim.world.kernels` call them).
A Python float argument runs that code in pure Python (a few microseconds: the model's
per-month scalars); an array goes through a numba kernel compiled from the same code
(:func:`_kernels`: numba is imported and the kernels loaded from its on-disk cache at the first
array call, about 0.4 s a process, so importing the model costs nothing). numba compiles
without fast-math, so LLVM may neither fuse a multiply and an add nor reorder operations, and
both paths give the same bits; ``tests/core/test_numerics.py`` checks that on hundreds of
thousands of inputs, and the accuracy against glibc's and scipy's functions.
"""

from __future__ import annotations

import math
import threading
from numbers import Real

import numpy as np

from sim.core import numba_cache

__all__ = ["black1", "black_call", "dot", "exp", "exp1", "expm1", "expm11", "exponential",
           "gumbel", "log", "log1", "log1p", "log1p1", "lognormal", "matvec", "ndtr", "ndtr1",
           "ndtri", "ndtri1", "open_uniform", "pow1", "power", "solve", "standard_normal"]

# ------------------------------------------------------------------------------------ exp
# fdlibm e_exp.c: exp(x) = 2^k exp(r), x = k ln2 + r, |r| <= ln2 / 2, with ln2 split in a
# high part with trailing zeros (k * _LN2_HI is exact for |k| < 2^11) and a low part, and
# exp(r) = 1 + r + r c / (2 - c), c = r - r^2 (P1 + r^2 (P2 + ...)), a Remez fit on |r| <= ln2/2
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_EXP_OVER = 7.09782712893383973096e+02  # above: exp overflows
_EXP_UNDER = -7.45133219101941108420e+02  # below: exp underflows to 0
_MAGIC = 6755399441055744.0  # 1.5 x 2^52: (x + _MAGIC) - _MAGIC rounds x to an integer
_POW2 = np.ldexp(1.0, np.arange(-1074, 1024))  # 2^k for every k with 2^k representable
_POW2.flags.writeable = False

# fdlibm e_log.c: log(x) = k ln2 + log(1 + f), sqrt(2)/2 <= 1 + f < sqrt(2); with
# s = f / (2 + f), log(1 + f) = f - (f^2/2 - s (f^2/2 + R(s^2))), R a Remez fit in s^2
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_SQRT_HALF = 0.70710678118654757  # sqrt(1/2) rounded: the reduction's switch point


def _rint(x):
    """x rounded to an integer, ties to even, for |x| < 2^51: x + 1.5 x 2^52 has no fraction
    bits left, so the addition rounds x in the current (nearest-even) mode, and subtracting
    the constant back is exact."""
    return (x + _MAGIC) - _MAGIC


def _scale2(y, k):
    """y 2^k for an integral float k in [-1075, 1024] and 0.7 < y < 1.5: a product with the
    power of two from :data:`_POW2` (exact, or one rounding into the subnormal range, as
    ``ldexp``), without a call out of compiled code."""
    i = int(k)
    if i > 1023:
        return (y * 2.0) * float(_POW2[2097])
    if i < -1074:
        return (y * 0.5) * float(_POW2[0])
    return y * float(_POW2[i + 1074])


def exp1(x):
    if not x <= _EXP_OVER:
        return x if x != x else math.inf  # NaN stays NaN
    if x < _EXP_UNDER:
        return 0.0
    k = _rint(x * _INV_LN2)
    hi = x - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    return _scale2(1.0 - ((lo - (r * c) / (2.0 - c)) - hi), k)


def log1(x):
    if not x > 0.0:
        return -math.inf if x == 0.0 else math.nan
    if x == math.inf:
        return x
    m, e = math.frexp(x)  # x = m 2^e, 1/2 <= m < 1
    if m < _SQRT_HALF:
        m = m + m
        e -= 1
    k = float(e)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + (t2 + t1)) + k * _LN2_LO)) - f)


def log1p1(x):
    u = 1.0 + x
    if u == 1.0 or x != x or x == math.inf:
        return x
    if not u > 0.0:
        return log1(u)  # -inf at x = -1, NaN below
    return log1(u) * (x / (u - 1.0))


def expm11(x):
    u = exp1(x)
    if u == 1.0 or x != x:
        return x
    d = u - 1.0
    if d == -1.0 or u == math.inf:
        return d
    return d * x / log1(u)


def pow1(x, y):
    if x == 0.0:
        if y > 0.0:
            return 0.0
        return 1.0 if y == 0.0 else math.inf
    return exp1(y * log1(x))


# ----------------------------------------------------------------------------------- ndtr
# Cody (1993), ANORM: three rational approximations of Phi, on |x| <= 0.66291 (in x^2),
# 0.66291 < |x| <= sqrt(32) (in |x|, times exp(-x^2/2)) and |x| > sqrt(32) (in 1/x^2)
_A = (2.2352520354606839287e00, 1.6102823106855587881e02, 1.0676894854603709582e03,
      1.8154981253343561249e04, 6.5682337918207449113e-2)
_B = (4.7202581904688241870e01, 9.7609855173777669322e02, 1.0260932208618978205e04,
      4.5507789335026729956e04)
_C = (3.9894151208813466764e-1, 8.8831497943883759412e00, 9.3506656132177855979e01,
      5.9727027639480026226e02, 2.4945375852903726711e03, 6.8481904505362823326e03,
      1.1602651437647350124e04, 9.8427148383839780218e03, 1.0765576773720192317e-8)
_D = (2.2266688044328115691e01, 2.3538790178262499861e02, 1.5193775994075548050e03,
      6.4855582982667607550e03, 1.8615571640885098091e04, 3.4900952721145977266e04,
      3.8912003286093271411e04, 1.9685429676859990727e04)
_P = (2.1589853405795699e-1, 1.274011611602473639e-1, 2.2235277870649807e-2,
      1.421619193227893466e-3, 2.9112874951168792e-5, 2.307344176494017303e-2)
_Q = (1.28426009614491121e00, 4.68238212480865118e-1, 6.59881378689285515e-2,
      3.78239633202758244e-3, 7.29751555083966205e-5)
_SQRPI = 3.9894228040143267794e-1  # 1 / sqrt(2 pi)
_THRSH = 0.66291
_ROOT32 = 5.656854248
# exp(-(j/16)^2 / 2) for j = 0..640 (ndtr's arguments up to |x| = 40), by exp1 itself
_GAUSS16 = np.array([exp1(-(j / 16.0) * (j / 16.0) * 0.5) for j in range(641)])
_GAUSS16.flags.writeable = False


def ndtr1(x):
    y = abs(x)
    if y <= _THRSH:
        xsq = x * x
        xnum = _A[4] * xsq
        xden = xsq
        for i in range(3):
            xnum = (xnum + _A[i]) * xsq
            xden = (xden + _B[i]) * xsq
        return 0.5 + x * (xnum + _A[3]) / (xden + _B[3])
    if x != x:
        return x
    if x > 8.5:  # Phi(-8.5) = 9.5e-18 < 2^-54: 1 - Phi(-x) rounds to exactly 1
        return 1.0
    if y > 40.0:  # Phi(-40) < 1e-349: 0 to double precision
        return 0.0
    if y <= _ROOT32:
        xnum = _C[8] * y
        xden = y
        for i in range(7):
            xnum = (xnum + _C[i]) * y
            xden = (xden + _D[i]) * y
        tail = (xnum + _C[7]) / (xden + _D[7])
    else:
        xsq = 1.0 / (y * y)
        xnum = _P[5] * xsq
        xden = xsq
        for i in range(4):
            xnum = (xnum + _P[i]) * xsq
            xden = (xden + _Q[i]) * xsq
        tail = (_SQRPI - xsq * (xnum + _P[4]) / (xden + _Q[4])) / y
    # exp(-y^2/2) as exp(-ysq^2/2) exp(-del/2), y^2 = ysq^2 + del with ysq = trunc(16 y) / 16:
    # ysq^2 is exact, so neither factor carries the rounding of y^2 times y^2/2; the first
    # factor is read from _GAUSS16 (the same exp1 of the same argument, computed once)
    j = math.trunc(y * 16.0)
    ysq = float(j) / 16.0
    cum = float(_GAUSS16[j]) * exp1(-((y - ysq) * (y + ysq)) * 0.5) * tail
    return 1.0 - cum if x > 0.0 else cum


# ---------------------------------------------------------------------------------- ndtri
# Wichura (1988), AS 241 PPND16: rational approximations of Phi^{-1}(p) on |p - 1/2| <= 0.425
# (in r = 0.180625 - q^2) and, with r = sqrt(-log(min(p, 1 - p))), on r <= 5 and r > 5
_AS_A = (3.3871328727963666080e0, 1.3314166789178437745e+2, 1.9715909503065514427e+3,
         1.3731693765509461125e+4, 4.5921953931549871457e+4, 6.7265770927008700853e+4,
         3.3430575583588128105e+4, 2.5090809287301226727e+3)
_AS_B = (1.0, 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
         2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4,
         5.2264952788528545610e+3)
_AS_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0,
         3.64784832476320460504e0, 1.27045825245236838258e0, 2.41780725177450611770e-1,
         2.27238449892691845833e-2, 7.74545014278341407640e-4)
_AS_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
         1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
         1.05075007164441684324e-9)
_AS_E = (6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0,
         2.96560571828504891230e-1, 2.65321895265761230930e-2, 1.24266094738807843860e-3,
         2.71155556874348757815e-5, 2.01033439929228813265e-7)
_AS_F = (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
         7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
         2.04426310338993978564e-15)


def _poly7(c, r):
    """c[0] + c[1] r + ... + c[7] r^7 by Horner's rule, innermost first (AS 241's order)."""
    acc = c[7] * r
    for k in range(6, 0, -1):
        acc = (acc + c[k]) * r
    return acc + c[0]


def ndtri1(p):
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _poly7(_AS_A, r) / _poly7(_AS_B, r)
    if not (p > 0.0 and p < 1.0):
        if p == 0.0:
            return -math.inf
        return math.inf if p == 1.0 else math.nan
    r = math.sqrt(0.0 - log1(p if q < 0.0 else 1.0 - p))
    if r <= 5.0:
        r = r - 1.6
        z = _poly7(_AS_C, r) / _poly7(_AS_D, r)
    else:
        r = r - 5.0
        z = _poly7(_AS_E, r) / _poly7(_AS_F, r)
    return -z if q < 0.0 else z


# ---------------------------------------------------------------------- Black's call
def black1(f, k, s):
    """Black's (1976) undiscounted call on the forward: F Phi(d1) - K Phi(d1 - s),
    d1 = (ln(F/K) + s^2/2) / s, floored at 0, when F, K, s > 0; else max(F - K, 0). Each
    ``max(c, 0)`` is numpy's ``maximum(c, 0.0)``: c when c > 0 or c is NaN, else +0.0."""
    if s > 0.0 and k > 0.0 and f > 0.0:
        d1 = (log1(f / k) + 0.5 * s * s) / s
        c = f * ndtr1(d1) - k * ndtr1(d1 - s)
    else:
        c = f - k
    return c if (c > 0.0 or c != c) else 0.0


# --------------------------------------------------- the same code compiled for arrays
_EXP, _LOG, _LOG1P, _EXPM1, _POW, _NDTR, _NDTRI, _BLACK = range(8)
_SCALAR = (exp1, log1, log1p1, expm11, pow1, ndtr1, ndtri1, black1)  # jitted callees


def _apply(op, x, y, z, out):
    """out[i] = f(x[i]) (pow(x[i], y[j]); Black's call of x[i], y[j], z[l]) for the function
    ``op`` names, over 1-D contiguous float64 arrays, j = i mod len(y) and l = i mod len(z)
    (an argument that is a trailing block of x's shape repeats over the leading axes): the
    body numba compiles (:func:`_kernels`)."""
    n, ny, nz = x.shape[0], y.shape[0], z.shape[0]
    if op == _EXP:
        for i in range(n):
            out[i] = exp1(x[i])
    elif op == _LOG:
        for i in range(n):
            out[i] = log1(x[i])
    elif op == _LOG1P:
        for i in range(n):
            out[i] = log1p1(x[i])
    elif op == _EXPM1:
        for i in range(n):
            out[i] = expm11(x[i])
    elif op == _POW:
        for i in range(n):
            out[i] = pow1(x[i], y[i % ny])
    elif op == _NDTR:
        for i in range(n):
            out[i] = ndtr1(x[i])
    elif op == _NDTRI:
        for i in range(n):
            out[i] = ndtri1(x[i])
    else:
        for i in range(n):
            out[i] = black1(x[i], y[i % ny], z[i % nz])


def _matvec_loop(a, x, out):
    """out[i] = sum_j a[i, j] x[j], summed in order j = 0, 1, ... starting from 0.0: numpy's
    pairwise sum of a row of fewer than 8 terms (:func:`matvec`); a may hold integers, each
    converted exactly as ``@`` would."""
    n, k = a.shape
    for i in range(n):
        acc = 0.0
        for j in range(k):
            acc += a[i, j] * x[j]
        out[i] = acc


_compiled = None
_compile_lock = threading.Lock()


def _kernels():
    """(:func:`_apply`, :func:`_matvec_loop`) compiled by numba (nopython, no fast-math,
    cached on disk in a directory per version of the sources, :mod:`sim.core.numba_cache`),
    built at the first call."""
    global _compiled
    if _compiled is None:
        with _compile_lock:
            if _compiled is None:
                numba_cache.prepare()  # before numba's import: a cache per source version
                import numba  # here, not at import: numba costs ~0.3 s a process
                from numba.extending import register_jitable

                for f in (_rint, _scale2, _poly7, *_SCALAR):
                    register_jitable(f)  # callable from compiled code, unchanged in Python
                jit = numba.njit(cache=True, nogil=True)
                _compiled = (jit(_apply), jit(_matvec_loop))
    return _compiled


def register_compiled() -> None:
    """Make the scalar functions (``exp1``, ``ndtr1``, ``black1``, ...) callable from
    other compiled code (the phase kernels of :mod:`sim.core.jit`); compiles this module's
    kernels if they are not yet."""
    _kernels()


def _core(shape: tuple) -> tuple:
    """A shape without its leading 1s."""
    i = 0
    while i < len(shape) and shape[i] == 1:
        i += 1
    return shape[i:]


def _map(op: int, x, *more) -> np.ndarray:
    """The compiled kernel over arrays of any shape (further arguments broadcast with x; one
    whose shape, leading 1s aside, is a trailing block of the result's is passed as it is,
    without a broadcast copy)."""
    x = np.asarray(x, dtype=float)
    args = []
    if more:
        more = [np.asarray(a, dtype=float) for a in more]
        shape = x.shape
        cores = [_core(a.shape) for a in more]
        if not all(c and shape[len(shape) - len(c):] == c for c in cores):
            shape = np.broadcast_shapes(shape, *(a.shape for a in more))
            x = np.broadcast_to(x, shape)
        for a, c in zip(more, cores, strict=True):
            if not (c and shape[len(shape) - len(c):] == c):
                a = np.broadcast_to(a, shape)
            args.append(np.ascontiguousarray(a).reshape(-1))
    flat = np.ascontiguousarray(x).reshape(-1)
    args += [flat] * (2 - len(args))
    out = np.empty(flat.shape[0])
    _kernels()[0](op, flat, args[0], args[1], out)
    return out.reshape(x.shape)


def _is_scalar(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, np.ndarray)


def exp(x):
    """e^x, error below 1 ulp (fdlibm's algorithm; module docstring); inf above 709.78, 0
    below -745.13."""
    return exp1(float(x)) if _is_scalar(x) else _map(_EXP, x)


def log(x):
    """Natural logarithm, error below 1 ulp (fdlibm's algorithm); log(0) = -inf, NaN for
    x < 0."""
    return log1(float(x)) if _is_scalar(x) else _map(_LOG, x)


def log1p(x):
    """log(1 + x), accurate for small x: with u = 1 + x rounded, log(u) x / (u - 1), or x
    when u == 1 (Kahan; Goldberg 1991, theorem 4); within a few ulp."""
    return log1p1(float(x)) if _is_scalar(x) else _map(_LOG1P, x)


def expm1(x):
    """e^x - 1, accurate for small x: with u = exp(x), (u - 1) x / log(u), x when u == 1
    and -1 when u - 1 == -1 (Kahan; Higham 2002, 1.14.1); within a few ulp."""
    return expm11(float(x)) if _is_scalar(x) else _map(_EXPM1, x)


def power(x, y):
    """x^y for x >= 0 as exp(y log x) (0^y = 0 for y > 0, 1 for y = 0, inf for y < 0).

    The error grows with |y log x|: 2-3 ulp for the model's discount factors (1 + r)^(-m/12)
    and difficulty growth, where |y log x| < 2."""
    if _is_scalar(x) and _is_scalar(y):
        return pow1(float(x), float(y))
    return _map(_POW, x, y)


def ndtr(x):
    """The standard normal distribution function Phi(x) (Cody's ANORM; module docstring),
    within a few ulp, relative also in the lower tail (down to Phi(-37.5) ~ 1e-308)."""
    return ndtr1(float(x)) if _is_scalar(x) else _map(_NDTR, x)


def black_call(forward, strike, logvol):
    """E[max(X - K, 0)] for a lognormal X with mean ``forward`` and log standard deviation
    ``logvol``: Black's (1976, J. Financ. Econ. 3) formula F Phi(d1) - K Phi(d1 - s),
    d1 = (ln(F/K) + s^2/2) / s, undiscounted; max(F - K, 0) where F, K or s is not positive.
    Arguments broadcast; one compiled pass (:func:`sim.core.finance.lognormal_call` uses it)."""
    if _is_scalar(forward) and _is_scalar(strike) and _is_scalar(logvol):
        return black1(float(forward), float(strike), float(logvol))
    return _map(_BLACK, forward, strike, logvol)


def ndtri(p):
    """Phi^{-1}(p) for 0 < p < 1 (Wichura's AS 241, relative error about 1e-16); -inf and
    +inf at 0 and 1, NaN outside."""
    return ndtri1(float(p)) if _is_scalar(p) else _map(_NDTRI, p)


# ------------------------------------------------------------------------------- samplers
_GRID = 2.0 ** -53


def open_uniform(rng: np.random.Generator, size=None):
    """Uniform draws on the open interval (0, 1), one raw 64-bit draw of ``rng``'s bit
    generator each: (2k + 1) 2^-53 for k the draw's top 52 bits, i.e. the midpoint of one of
    2^52 equal cells of (0, 1). A Python float if ``size`` is None, else an array of float64.

    Why: the samplers invert a distribution function (:func:`standard_normal` takes
    Phi^{-1}(U)), which is infinite at 0 and 1, and ``rng.random()`` can return 0. Here
    neither end is ever drawn (the least draw is 2^-53, the greatest 1 - 2^-53), the draws are
    symmetric about 1/2 (the complement of a draw's bits gives 1 - u, exactly), and every step
    is exact integer or float arithmetic (2k + 1 < 2^53; the shift, the product by 2 and by a
    power of two are exact), so the bits are the same on every CPU. Its source is the bit
    generator's raw stream (``random_raw``, the integers behind every ``Generator`` method):
    k is the number ``rng.integers(0, 2**52)`` returns from the same draw (numpy's bounded
    integers keep the top bits: tested), at a fifteenth of its cost, and a draw advances
    ``rng`` as that call does."""
    raw = rng.bit_generator.random_raw(size)
    if size is None:
        return (float(int(raw) >> 12) * 2.0 + 1.0) * _GRID
    return ((raw >> np.uint64(12)).astype(float) * 2.0 + 1.0) * _GRID


def standard_normal(rng: np.random.Generator, size=None):
    """Standard normal draws by inversion, Phi^{-1}(U) (:func:`ndtri`), one 64-bit draw of
    ``rng`` each. (numpy's own ziggurat returns libm's ``log1p`` in its tail, whose last bit
    depends on the CPU.)"""
    return ndtri(open_uniform(rng, size))


def lognormal(rng: np.random.Generator, mean, sigma, size=None):
    """exp(mean + sigma Z), Z standard normal (:func:`standard_normal`)."""
    return exp(mean + sigma * standard_normal(rng, size))


def exponential(rng: np.random.Generator, size=None):
    """Unit exponential draws by inversion, -log(1 - U) with U = ``rng.random()`` in [0, 1)
    (1 - U is exact, so a draw lies in [0, 53 ln 2])."""
    return 0.0 - log(1.0 - rng.random(size))


def gumbel(rng: np.random.Generator, size=None):
    """Standard Gumbel draws, -log(E) for E unit exponential (:func:`exponential`; E = 0,
    with probability 2^-53, gives +inf)."""
    return 0.0 - log(exponential(rng, size))


# ------------------------------------------------------------------------ linear algebra
def matvec(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A x for A (..., k) and x (k,): each row's products a_ij x_j added by pairwise
    summation in numpy's order (``np.add.reduce`` of the row: a fixed tree of blocks of 8
    partial sums, fixed by k alone; Higham 1993, SIAM J. Sci. Comput. 14(4)), which for
    k < 8 is the plain sum j = 0, 1, ... from 0.0. Rows of fewer than 8 terms (fleets over
    generations) run in one compiled pass (:func:`_matvec_loop`), longer ones (the funding
    network's rows) through numpy's element-wise product and reduction: the same order, so
    the same bits either way. An integer A (a fleet of GPUs) is multiplied as float64, as
    ``@`` would."""
    a = np.asarray(a)
    x = np.ascontiguousarray(x, dtype=float)
    if a.shape[-1:] != x.shape or x.ndim != 1:
        raise ValueError(f"matvec needs A (..., k) and x (k,), got {a.shape} and {x.shape}")
    if x.shape[0] >= 8 or x.shape[0] == 0:  # (an empty row sums to 0.0, as numpy's)
        return np.add.reduce(np.multiply(a, x), axis=-1)
    if a.dtype.kind not in "iu":
        a = a.astype(float, copy=False)
    rows = np.ascontiguousarray(a).reshape(-1, x.shape[0])
    out = np.empty(rows.shape[0])
    _kernels()[1](rows, x, out)
    return out.reshape(a.shape[:-1])


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """sum_i a_i b_i, added as :func:`matvec` adds a row."""
    return float(matvec(np.asarray(a)[None, :], b)[0])


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with A x = b for a square, non-singular A (n small: the clearing's defaulted set).

    Gaussian elimination with partial pivoting (Golub & Van Loan, algorithm 3.4.1): at step k
    the row with the largest |a_ik| (the first such) is swapped up and the rows below are
    reduced by an element-wise rank-one update; back substitution sums each row's products
    in a fixed order. Every operation is element-wise or a fixed-order sum, unlike LAPACK's
    blocked ``dgesv``, whose BLAS kernels depend on the CPU. Raises
    ``numpy.linalg.LinAlgError`` on an exactly singular pivot, as ``np.linalg.solve`` does."""
    u = np.array(a, dtype=float)
    y = np.array(b, dtype=float)
    n = u.shape[0] if u.ndim else 0
    if u.shape != (n, n) or y.shape != (n,):
        raise ValueError(f"solve needs an (n, n) matrix and an (n,) vector, got {u.shape} "
                         f"and {y.shape}")
    for k in range(n):
        p = k + int(np.argmax(np.abs(u[k:, k])))
        if p != k:
            u[[k, p]] = u[[p, k]]
            y[[k, p]] = y[[p, k]]
        if u[k, k] == 0.0:
            raise np.linalg.LinAlgError("Singular matrix")
        f = u[k + 1:, k] / u[k, k]
        u[k + 1:, k + 1:] -= np.multiply.outer(f, u[k, k + 1:])
        y[k + 1:] -= f * y[k]
    x = np.zeros(n)
    for i in range(n - 1, -1, -1):
        x[i] = (y[i] - np.add.reduce(u[i, i + 1:] * x[i + 1:])) / u[i, i]
    return x


# ------------------------------------------------------------------------------ platform
# what the guarantee depends on: results are identical wherever these are equal (and the
# platform is x86-64 Linux, where it is tested); the CPU's SIMD features and the BLAS kernel
# are recorded but are not part of it
GUARANTEE_PACKAGES = ("numpy", "networkx", "numba", "llvmlite")
GUARANTEED = {"system": "Linux", "machine": "x86_64"}
_OVERRIDES = ("NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES", "OPENBLAS_CORETYPE",
              "GLIBC_TUNABLES", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")
_platform_cache: dict | None = None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def platform_info() -> dict:
    """The numeric platform of this process: OS, architecture, C library, the versions the
    guarantee depends on (:data:`GUARANTEE_PACKAGES`), and, for the record, the CPU, the SIMD
    targets numpy dispatches to, the BLAS library and the environment variables that change
    either. Cheap after the first call (cached; numba is not imported)."""
    global _platform_cache
    if _platform_cache is None:
        import os
        import platform
        from importlib.metadata import PackageNotFoundError, version

        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

        def ver(name: str) -> str | None:
            try:
                return version(name)
            except PackageNotFoundError:
                return None

        libc = " ".join(platform.libc_ver()).strip() or None
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            blas = f"{blas.get('name')} {blas.get('version')}"
        except (KeyError, TypeError, AttributeError):
            blas = None
        _platform_cache = {
            "system": platform.system(), "machine": platform.machine(), "libc": libc,
            "python": platform.python_version(),
            "packages": {p: ver(p) for p in GUARANTEE_PACKAGES},
            "cpu": _cpu_model(),
            "simd": [t for t in __cpu_dispatch__ if __cpu_features__.get(t)],
            "blas": blas,
            "env": {k: os.environ[k] for k in _OVERRIDES if k in os.environ},
        }
    return _platform_cache


def outside_guarantee(then: dict | None, now: dict | None = None) -> list[str]:
    """Why results made on platform ``then`` are not guaranteed to be reproduced on ``now``
    (this process by default), one phrase per reason; empty when the guarantee holds.

    The guarantee (``docs/numerics.md``): the same liqsim code on x86-64 Linux with the same
    versions of :data:`GUARANTEE_PACKAGES` gives identical results whatever the CPU, its SIMD
    level, the BLAS kernel or the C library's variant. A platform record that lacks the
    fields (written before they existed) is reported as unknown."""
    now = platform_info() if now is None else now
    if not isinstance(then, dict) or not isinstance(then.get("packages"), dict):
        return ["the run's numeric platform is not recorded"]
    out = []
    for side, p in (("at the run", then), ("here", now)):
        where = f"{p.get('system')} {p.get('machine')}"
        if any(p.get(k) != v for k, v in GUARANTEED.items()):
            out.append(f"{where} {side} (the guarantee covers x86-64 Linux)")
    for name in GUARANTEE_PACKAGES:
        a, b = then["packages"].get(name), (now.get("packages") or {}).get(name)
        if a != b:
            out.append(f"{name} {a} at the run, {b} here")
    return out
