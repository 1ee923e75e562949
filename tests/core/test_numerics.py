"""sim.core.numerics: accuracy against references, the same bits on both paths, and a guard that
the model's code calls no CPU-dependent floating-point operation."""

from __future__ import annotations

import ast
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr as scipy_ndtr

from sim.core import numerics as nm

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(20251201)


def _ulps(got, ref) -> np.ndarray:
    """|got - ref| in units of the last place of ref."""
    got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
    return np.abs(got - ref) / np.spacing(np.abs(ref))


# ---------------------------------------------------------------- accuracy (references)
def test_exp_and_log_are_within_one_ulp_of_glibc():
    x = np.concatenate([RNG.uniform(-745.0, 709.7, 100_000), RNG.uniform(-1.0, 1.0, 50_000)])
    assert _ulps(nm.exp(x), [math.exp(v) for v in x]).max() <= 1.0
    y = np.concatenate([np.ldexp(RNG.uniform(0.5, 1.0, 100_000),
                                 RNG.integers(-1070, 1020, 100_000)),
                        RNG.uniform(0.5, 2.0, 50_000)])
    assert _ulps(nm.log(y), [math.log(v) for v in y]).max() <= 1.0


def test_log1p_expm1_and_power_are_within_a_few_ulp():
    x = np.concatenate([RNG.uniform(-1 + 1e-9, 5.0, 50_000), RNG.uniform(-1e-5, 1e-5, 50_000)])
    assert _ulps(nm.log1p(x), [math.log1p(v) for v in x]).max() <= 2.0
    assert _ulps(nm.expm1(x), [math.expm1(v) for v in x]).max() <= 4.0
    # the model's powers: (1 + r)^(-m/12) and (1 + g)^(-t/12), |y log x| <= 2
    base = RNG.uniform(1.0, 1.5, 50_000)
    expo = -RNG.random(50_000) * np.minimum(2.0 / np.log(base), 10.0)
    assert _ulps(nm.power(base, expo), [math.pow(b, e) for b, e in zip(base, expo,
                                                                       strict=True)]).max() <= 4.0


def test_ndtr_matches_scipy_and_the_tails_relatively():
    # relative error against scipy (whose own error grows like x^2 in the far tail: it
    # evaluates erfc(-x / sqrt 2), and the rounding of the argument costs 2 z^2 ulp)
    for lo, hi, tol in ((-8.0, 9.0, 3e-14), (-20.0, -8.0, 1.5e-13), (-37.0, -20.0, 5e-13)):
        x = RNG.uniform(lo, hi, 100_000)
        ref = scipy_ndtr(x)
        assert (np.abs(nm.ndtr(x) - ref) / ref).max() < tol, (lo, hi)
    # worked values (Abramowitz & Stegun 26.2; 30-digit values): Phi(0) = 1/2,
    # Phi(1.96) = 0.975002104851780, Phi(-10) = 7.61985302416052607e-24,
    # Phi(-20) = 2.75362411860623370e-89
    assert nm.ndtr(0.0) == 0.5
    assert nm.ndtr(1.96) == pytest.approx(0.9750021048517795, rel=1e-15)
    assert nm.ndtr(-10.0) == pytest.approx(7.61985302416052607e-24, rel=2e-15)
    assert nm.ndtr(-20.0) == pytest.approx(2.75362411860623370e-89, rel=2e-15)


def test_ndtri_matches_pythons_as241():
    p = np.concatenate([RNG.random(100_000), np.ldexp(1.0, -RNG.integers(2, 1000, 1000))])
    ref = [statistics.NormalDist().inv_cdf(v) for v in p]  # AS 241 with glibc's log
    assert _ulps(nm.ndtri(p), ref).max() <= 4.0
    assert nm.ndtri(0.975) == pytest.approx(1.959963984540054, rel=1e-15)


@pytest.mark.parametrize(("fn", "cases"), [
    (nm.exp, [(0.0, 1.0), (-0.0, 1.0), (np.inf, np.inf), (-np.inf, 0.0), (710.0, np.inf),
              (-746.0, 0.0), (1.0, math.e)]),
    (nm.log, [(1.0, 0.0), (0.0, -np.inf), (-1.0, np.nan), (np.inf, np.inf), (math.e, 1.0),
              (5e-324, -744.4400719213812)]),
    (nm.log1p, [(0.0, 0.0), (-1.0, -np.inf), (-2.0, np.nan), (np.inf, np.inf),
                (1e-300, 1e-300)]),
    (nm.expm1, [(0.0, 0.0), (-np.inf, -1.0), (np.inf, np.inf), (1e-300, 1e-300),
                (-800.0, -1.0)]),
    (nm.ndtr, [(np.inf, 1.0), (-np.inf, 0.0), (50.0, 1.0), (-50.0, 0.0)]),
    (nm.ndtri, [(0.5, 0.0), (0.0, -np.inf), (1.0, np.inf), (-0.1, np.nan), (1.5, np.nan)]),
])
def test_special_values_on_both_paths(fn, cases):
    for x, want in cases + [(np.nan, np.nan)]:
        for got in (fn(x), fn(np.array([x]))[0]):
            if np.isnan(want):
                assert np.isnan(got), (fn.__name__, x, got)
            else:
                assert got == pytest.approx(want, rel=1e-15, abs=0.0), (fn.__name__, x, got)


def test_power_of_zero_and_arrays_broadcast():
    assert nm.power(0.0, 2.0) == 0.0 and nm.power(0.0, 0.0) == 1.0
    assert nm.power(0.0, -1.0) == np.inf
    got = nm.power(np.array([[1.1], [1.2]]), -np.arange(1, 4) / 12.0)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, np.array([[1.1], [1.2]]) ** (-np.arange(1, 4) / 12.0),
                               rtol=1e-15)


# ------------------------------------------------ one algorithm: the same bits on both paths
@pytest.mark.parametrize(("fn", "draw"), [
    (nm.exp, lambda n: RNG.uniform(-750.0, 712.0, n)),
    (nm.log, lambda n: np.ldexp(RNG.random(n), RNG.integers(-1080, 1024, n))),
    (nm.log1p, lambda n: RNG.uniform(-1.0, 3.0, n)),
    (nm.expm1, lambda n: RNG.uniform(-40.0, 40.0, n)),
    (nm.ndtr, lambda n: RNG.uniform(-42.0, 42.0, n)),
    (nm.ndtri, lambda n: RNG.random(n)),
])
def test_python_path_and_compiled_path_give_the_same_bits(fn, draw):
    """The pure-Python scalar code and the numba kernel compiled from it agree bit for bit:
    no fused multiply-add, no reordering (numba compiles without fast-math)."""
    x = draw(20_000)
    compiled = fn(x)
    python = np.array([fn(float(v)) for v in x])
    assert compiled.tobytes() == python.tobytes()


def test_compiled_path_keeps_shape_and_accepts_views():
    x = RNG.uniform(-3, 3, (4, 5, 6))
    got = nm.ndtr(x[:, ::2, 1:].transpose(2, 0, 1))
    assert got.shape == (5, 4, 3)
    assert got.tobytes() == nm.ndtr(np.ascontiguousarray(x[:, ::2, 1:].transpose(2, 0, 1))
                                    ).tobytes()
    assert nm.exp(np.zeros((0, 3))).shape == (0, 3)


# ------------------------------------------------------------------------ linear algebra
def test_solve_hand_worked_and_against_lapack():
    # 2x - y = 1, x + 3y = 11 -> x = 2, y = 3 (a pivot swap is not needed; the next case is)
    np.testing.assert_array_equal(nm.solve(np.array([[2.0, -1.0], [1.0, 3.0]]),
                                           np.array([1.0, 11.0])), [2.0, 3.0])
    # a zero in the first pivot position needs the row swap
    np.testing.assert_array_equal(nm.solve(np.array([[0.0, 1.0], [2.0, 0.0]]),
                                           np.array([3.0, 4.0])), [2.0, 3.0])
    for n in (1, 3, 8, 40):
        a = np.eye(n) - 0.9 * RNG.dirichlet(np.ones(n), n).T  # I - beta Pi^T, as the clearing
        b = RNG.uniform(0.0, 10.0, n)
        np.testing.assert_allclose(nm.solve(a, b), np.linalg.solve(a, b), rtol=1e-11)
    with pytest.raises(np.linalg.LinAlgError):
        nm.solve(np.array([[1.0, 2.0], [2.0, 4.0]]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="solve needs"):
        nm.solve(np.ones((2, 3)), np.ones(2))


def sum_in_order(v) -> float:
    acc = 0.0
    for t in v:
        acc += float(t)
    return acc


def test_products_equal_blas_to_rounding_and_integers_exactly():
    a, x = RNG.uniform(-1, 1, (50, 7)), RNG.uniform(-1, 1, 7)
    np.testing.assert_allclose(nm.matvec(a, x), a @ x, rtol=1e-13, atol=1e-15)
    # the order is numpy's pairwise sum of each row, which for fewer than 8 terms is the
    # plain sum from 0.0: the compiled short rows and numpy's long rows agree with it
    for k in (1, 5, 7, 8, 9, 40, 300):
        b, y = RNG.uniform(-1, 1, (60, k)) * 10.0 ** RNG.integers(-3, 3, (60, k)), \
            RNG.uniform(-1, 1, k)
        want = np.add.reduce(b * y, axis=-1)
        assert nm.matvec(b, y).tobytes() == want.tobytes(), k
        if k < 8:
            assert want.tobytes() == np.array([sum_in_order(r * y) for r in b]).tobytes()
    assert nm.matvec(a.reshape(5, 10, 7), x).shape == (5, 10)
    assert nm.matvec(np.zeros((3, 0)), np.zeros(0)).tolist() == [0.0, 0.0, 0.0]
    assert nm.matvec(np.zeros((0, 4)), np.ones(4)).shape == (0,)
    assert nm.dot(x, x) == pytest.approx(float(x @ x), rel=1e-14)
    fleet = RNG.integers(0, 10_000, (30, 5))
    np.testing.assert_array_equal(nm.matvec(fleet, np.ones(5)), fleet.sum(axis=1))


# ------------------------------------------------------------------------------ samplers
def test_samplers_have_the_right_moments_and_never_draw_the_ends():
    rng = np.random.default_rng(1)
    u = nm.open_uniform(rng, 200_000)
    assert u.min() > 0.0 and u.max() < 1.0
    z = nm.standard_normal(rng, 200_000)
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1.0) < 0.01
    assert abs(np.mean(z < -1.959963984540054) - 0.025) < 0.002
    e = nm.exponential(rng, 200_000)
    assert e.min() >= 0.0 and abs(e.mean() - 1.0) < 0.01
    g = nm.gumbel(rng, 200_000)
    assert abs(g.mean() - 0.5772156649) < 0.01  # Euler-Mascheroni
    ln = nm.lognormal(rng, -0.5 * 0.36, 0.6, 200_000)  # mean exp(mu + s^2/2) = 1
    assert abs(ln.mean() - 1.0) < 0.01
    # k is numpy's rng.integers(0, 2**52) of the same draws, and leaves the same state
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    ks = r1.integers(0, 2**52, size=1000, dtype=np.int64)
    np.testing.assert_array_equal(nm.open_uniform(r2, 1000), (ks * 2.0 + 1.0) * 2.0**-53)
    assert r1.random() == r2.random()
    # a scalar draw is the same as the first of an array draw from the same state
    assert nm.standard_normal(np.random.default_rng(5)) == \
        nm.standard_normal(np.random.default_rng(5), 3)[0]


class _RawStream:
    """A stand-in for a Generator whose bit generator returns the given raw 64-bit draws,
    as numpy's does: a Python int for size None, else a uint64 array."""

    def __init__(self, raws):
        self.raws = list(raws)
        self.bit_generator = self

    def random_raw(self, size=None):
        if size is None:
            return self.raws.pop(0)
        out, self.raws = np.array(self.raws[:size], dtype=np.uint64), self.raws[size:]
        return out


def test_open_uniform_is_the_midpoint_of_the_draws_top_52_bits():
    # (2k + 1) 2^-53, k = raw >> 12: the ends of the grid, the middle, and the low 12 bits
    # of a draw ignored; one draw of each by hand
    raws = [0, 4095, 4096, 2**63, 2**63 - 1, 2**64 - 1, 3 << 12 | 5]
    want = [2.0**-53, 2.0**-53, 3 * 2.0**-53, 0.5 + 2.0**-53, 0.5 - 2.0**-53, 1.0 - 2.0**-53,
            7 * 2.0**-53]
    assert [nm.open_uniform(_RawStream(raws[i:])) for i in range(len(raws))] == want
    got = nm.open_uniform(_RawStream(raws), len(raws))
    assert got.dtype == np.float64 and got.tolist() == want
    # the complement of a draw's bits gives 1 - u, exactly (symmetric about 1/2)
    raw = np.random.default_rng(3).bit_generator.random_raw(10_000)
    u, v = nm.open_uniform(_RawStream(raw.tolist()), raw.size), \
        nm.open_uniform(_RawStream((~raw).tolist()), raw.size)
    assert (u + v).tolist() == [1.0] * raw.size and 0.0 < u.min() and u.max() < 1.0
    # a real generator: a scalar draw is the first of an array draw from the same state
    assert nm.open_uniform(np.random.default_rng(4)) == \
        nm.open_uniform(np.random.default_rng(4), 3)[0]


# ---------------------------------------------------- guard: nothing CPU-dependent creeps in
# the code a run executes: the agents, the world (the model, its phases, records, losses,
# metrics, runner) and the core's building blocks (numerics itself is where the calls may be),
# and validation's own arithmetic
CORE = sorted([*(ROOT / "agents").glob("*.py"),
               *(ROOT / "sim" / "world").rglob("*.py"),
               *(p for p in (ROOT / "sim" / "core").glob("*.py") if p.name != "numerics.py"),
               ROOT / "sim" / "qa" / "validate.py",
               *(ROOT / "sim" / "qa" / "checks").glob("*.py")])
_NP_BANNED = {"exp", "log", "log1p", "expm1", "log2", "log10", "exp2", "power", "float_power",
              "sin", "cos", "tan", "tanh", "arctan", "arcsin", "arccos", "sinh", "cosh",
              "dot", "matmul", "inner", "vdot", "tensordot", "einsum", "polyval", "cbrt"}
_MATH_BANNED = {"exp", "log", "log1p", "expm1", "log2", "log10", "pow", "erf", "erfc", "sin",
                "cos", "tan", "atan", "atan2", "gamma", "lgamma", "cbrt", "exp2"}
_RNG_BANNED = {"lognormal", "normal", "standard_normal", "gumbel", "exponential",
               "standard_exponential", "gamma", "beta", "standard_t", "weibull", "pareto"}


def _violations(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.MatMult):
            out.append(f"{where}: @ (BLAS)")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            ints = all(isinstance(v, ast.Constant) and type(v.value) is int
                       for v in (node.left, node.right))
            if not ints:
                out.append(f"{where}: ** (libm pow / numpy power)")
        if isinstance(node, ast.Attribute):
            base = node.value
            name = base.id if isinstance(base, ast.Name) else (
                base.attr if isinstance(base, ast.Attribute) else "")
            if name == "np" and node.attr in _NP_BANNED or name == "linalg" \
                    or name == "math" and node.attr in _MATH_BANNED:
                out.append(f"{where}: {name}.{node.attr}")
            if node.attr in _RNG_BANNED and name in {"rng", "search_rng", "_rng"}:
                out.append(f"{where}: {name}.{node.attr} (numpy's sampler calls libm)")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scipy"):
            if node.module != "scipy" and "sparse" not in node.module:
                out.append(f"{where}: from {node.module} import ... (libm inside)")
    return out


@pytest.mark.slow
def test_the_model_calls_no_cpu_dependent_operation():
    """Every transcendental function, product and linear solve of a run goes through
    sim.core.numerics: no ``@``, no non-integer ``**``, no np.exp/np.log/np.linalg/math.log and no
    numpy sampler that returns libm values, in the modules a run, its build and its summary
    execute."""
    bad = [v for path in CORE for v in _violations(path)]
    assert bad == []


def test_the_guard_sees_each_kind_of_violation(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("import numpy as np\nimport math\na = b @ c\nd = e ** 0.5\nf = np.exp(g)\n"
                   "h = np.linalg.solve(a, b)\ni = math.log(2)\nj = rng.lognormal(0, 1)\n"
                   "k = 2 ** 31\n", encoding="utf-8")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        found = _violations(src)
    finally:
        ROOT = old
    assert [f.split(": ", 1)[1] for f in found] == [
        "@ (BLAS)", "** (libm pow / numpy power)", "np.exp", "linalg.solve", "math.log",
        "rng.lognormal (numpy's sampler calls libm)"]


def test_black_call_hand_value_branches_and_the_composed_formula():
    # at the money, s = 0.2: F (2 Phi(0.1) - 1) = 7.965567455405804 for F = K = 100
    assert nm.black_call(100.0, 100.0, 0.2) == pytest.approx(7.965567455405804, rel=1e-14)
    # not live: max(F - K, 0) (s = 0, K <= 0, F <= 0), and numpy's maximum on NaN
    assert nm.black_call(5.0, 3.0, 0.0) == 2.0 and nm.black_call(3.0, 5.0, 0.0) == 0.0
    assert nm.black_call(5.0, -1.0, 0.3) == 6.0 and nm.black_call(0.0, 1.0, 0.3) == 0.0
    assert np.isnan(nm.black_call(np.nan, 1.0, 0.0))
    # the one compiled pass equals the formula composed from the helpers, bit for bit
    f, k = RNG.uniform(0.0, 200.0, 20_000), RNG.uniform(-10.0, 200.0, 20_000)
    s = np.where(RNG.random(20_000) < 0.1, 0.0, RNG.uniform(0.0, 2.0, 20_000))
    live = (s > 0) & (k > 0) & (f > 0)
    fs, ks, ss = np.where(live, f, 1.0), np.where(live, k, 1.0), np.where(live, s, 1.0)
    d1 = (nm.log(fs / ks) + 0.5 * ss * ss) / ss
    composed = np.where(live, np.maximum(fs * nm.ndtr(d1) - ks * nm.ndtr(d1 - ss), 0.0),
                        np.maximum(f - k, 0.0))
    got = nm.black_call(f, k, s)
    assert got.tobytes() == composed.tobytes()
    assert got.tobytes() == np.array([nm.black_call(*map(float, v)) for v in zip(f, k, s,
                                                                              strict=True)]
                                     ).tobytes()
