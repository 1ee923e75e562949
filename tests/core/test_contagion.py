"""Tests for sim.core.contagion against hand-computed numbers and independent reference methods."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sim.core.contagion import (
    alpha_for_impact,
    clearing_equity,
    debtrank,
    debtrank_impact,
    debtrank_single_node,
    eisenberg_noe,
    exponential_impact,
    gai_kapadia_network,
    gai_kapadia_trial,
    relative_liabilities,
    rogers_veraart,
    threshold_cascade,
)

# ----------------------------------------------------------------------------------------
# Eisenberg-Noe
# ----------------------------------------------------------------------------------------
EN_L = np.array([[0.0, 20.0, 10.0], [5.0, 0.0, 24.0], [10.0, 0.0, 0.0]])
EN_E = np.array([10.0, 10.0, 10.0])


def test_eisenberg_noe_three_banks_exact():
    # Lbar = (30, 29, 10).  Banks 0 and 1 default, bank 2 pays in full:
    #   p0 = 10 + (5/29) p1 + 10,  p1 = 10 + (2/3) p0
    #   => p0 = 270/11 = 24.5455, p1 = 290/11 = 26.3636, and bank 2 has 40 >= 10.
    p = eisenberg_noe(EN_L, EN_E)
    np.testing.assert_allclose(p, [24.5455, 26.3636, 10.0], atol=1e-4)
    np.testing.assert_allclose(p, [270 / 11, 290 / 11, 10.0], rtol=0, atol=1e-9)


def test_eisenberg_noe_three_banks_equity():
    # equity_i = e_i + sum_j Pi_ji p_j - Lbar_i
    #   bank 0: 10 + (5/29)(290/11) + 10 - 30 = -60/11
    #   bank 1: 10 + (2/3)(270/11) - 29       = -29/11
    #   bank 2: 10 + (1/3)(270/11) + (24/29)(290/11) - 10 = 30
    p = eisenberg_noe(EN_L, EN_E)
    eq = clearing_equity(EN_L, EN_E, p)
    np.testing.assert_allclose(eq, [-5.4545, -2.6364, 30.0], atol=1e-4)
    np.testing.assert_allclose(eq, [-60 / 11, -29 / 11, 30.0], rtol=0, atol=1e-9)


def test_relative_liabilities_zero_row():
    L = np.array([[0.0, 3.0, 1.0], [0.0, 0.0, 0.0], [2.0, 2.0, 0.0]])
    lbar, pi = relative_liabilities(L)
    np.testing.assert_allclose(lbar, [4.0, 0.0, 4.0])
    np.testing.assert_allclose(pi, [[0, 0.75, 0.25], [0, 0, 0], [0.5, 0.5, 0]])


def test_eisenberg_noe_everyone_solvent_pays_in_full():
    # Each bank's external assets alone cover what it owes.
    L = np.array([[0.0, 4.0], [3.0, 0.0]])
    np.testing.assert_array_equal(eisenberg_noe(L, [4.0, 3.0]), [4.0, 3.0])


def test_eisenberg_noe_exact_threshold_counts_as_solvent():
    # Bank 0 owes 10 and has e = 7 plus 3 from bank 1: exactly solvent, pays 10.
    L = np.array([[0.0, 10.0], [3.0, 0.0]])
    np.testing.assert_allclose(eisenberg_noe(L, [7.0, 0.0]), [10.0, 3.0], atol=1e-12)


def _random_system(rng, n, density=0.5, e_scale=3.0):
    L = rng.uniform(0, 10, (n, n)) * (rng.random((n, n)) < density)
    np.fill_diagonal(L, 0.0)
    e = rng.uniform(0, e_scale, n)
    return L, e


def _picard_en(L, e, n_iter=200_000, tol=1e-14):
    """Independent reference: Picard iteration from Lbar (monotone to the greatest p*)."""
    lbar = L.sum(axis=1)
    pi = np.divide(L, lbar[:, None], out=np.zeros_like(L), where=lbar[:, None] > 0)
    p = lbar.copy()
    for _ in range(n_iter):
        p_new = np.minimum(lbar, e + pi.T @ p)
        if np.max(np.abs(p_new - p)) < tol:
            return p_new
        p = p_new
    raise AssertionError("Picard reference did not converge")


@pytest.mark.parametrize("seed", range(8))
def test_eisenberg_noe_matches_picard_and_is_fixed_point(seed):
    rng = np.random.default_rng(seed)
    L, e = _random_system(rng, 12)
    p = eisenberg_noe(L, e)
    lbar, pi = relative_liabilities(L)
    assert np.all(p <= lbar + 1e-12) and np.all(p >= 0)
    np.testing.assert_allclose(p, np.minimum(lbar, e + pi.T @ p), rtol=0, atol=1e-9)
    np.testing.assert_allclose(p, _picard_en(L, e), rtol=0, atol=1e-8)
    assert np.any(p < lbar - 1e-6), "instance should contain at least one default"


# ----------------------------------------------------------------------------------------
# Rogers-Veraart
# ----------------------------------------------------------------------------------------
RV_L = np.array([[0.0, 30.0, 0.0], [5.0, 0.0, 20.0], [10.0, 0.0, 0.0]])
RV_E = np.array([10.0, 5.0, 5.0])


def test_rogers_veraart_no_costs():
    # Lbar = (30, 25, 10).  Bank 0: 10 + 0.2*25 + 10 = 25 < 30 -> pays 25.
    # Bank 1: 5 + 25 = 30 >= 25; bank 2: 5 + 0.8*25 = 25 >= 10.
    np.testing.assert_allclose(rogers_veraart(RV_L, RV_E, 1.0, 1.0), [25, 25, 10], atol=1e-12)
    np.testing.assert_allclose(eisenberg_noe(RV_L, RV_E), [25, 25, 10], atol=1e-12)


def test_rogers_veraart_with_costs_default_spreads():
    # alpha = 0.4: bank 0 pays 0.4*10 + 0.2 p1 + 10.  With bank 1 solvent (p1 = 25) that is
    # 19 < 20 = what bank 1 needs, so bank 1 defaults too: p1 = 0.4*5 + p0 and
    # p0 = 14 + 0.2 (2 + p0)  =>  p0 = 18, p1 = 20; bank 2 has 5 + 16 = 21 >= 10.
    p = rogers_veraart(RV_L, RV_E, 0.4, 1.0)
    np.testing.assert_allclose(p, [18.0, 20.0, 10.0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_rogers_veraart_without_costs_equals_eisenberg_noe(seed):
    rng = np.random.default_rng(100 + seed)
    L, e = _random_system(rng, 15, density=0.4)
    np.testing.assert_allclose(rogers_veraart(L, e, 1, 1), eisenberg_noe(L, e), atol=1e-10)


def _rv_brute_force(L, e, alpha, beta):
    """Enumerate every default set D, keep the self-consistent solutions, return their max."""
    n = L.shape[0]
    lbar, pi = relative_liabilities(L)
    pit = pi.T
    sols = []
    for bits in itertools.product([False, True], repeat=n):
        d = np.array(bits)
        s = ~d
        p = lbar.copy()
        if d.any():
            a = np.eye(d.sum()) - beta * pit[np.ix_(d, d)]
            b = alpha * e[d] + beta * pit[np.ix_(d, s)] @ lbar[s]
            p[d] = np.linalg.solve(a, b)
        assets = e + pit @ p
        if np.all(assets[d] < lbar[d]) and np.all(assets[s] >= lbar[s] - 1e-12):
            sols.append(p)
    assert sols, "the greatest clearing vector always exists"
    top = np.max(sols, axis=0)
    assert any(np.allclose(top, s) for s in sols), "maximum must itself be a clearing vector"
    return top


@pytest.mark.parametrize("seed", range(12))
def test_rogers_veraart_is_greatest_clearing_vector(seed):
    rng = np.random.default_rng(200 + seed)
    L, e = _random_system(rng, 6, density=0.6, e_scale=6.0)
    alpha, beta = rng.uniform(0.2, 0.95, 2)
    p = rogers_veraart(L, e, alpha, beta)
    np.testing.assert_allclose(p, _rv_brute_force(L, e, alpha, beta), rtol=0, atol=1e-9)
    # default costs can only lower payments relative to Eisenberg-Noe
    assert np.all(p <= eisenberg_noe(L, e) + 1e-9)


# ----------------------------------------------------------------------------------------
# DebtRank
# ----------------------------------------------------------------------------------------
DR_X = np.array([[0.0, 1.0, 0.0], [10.0, 0.0, 3.0], [3.0, 2.0, 0.0]])  # rows = claimant
DR_BUF = np.array([2.0, 5.0, 2.0])
DR_SIZE = np.array([10.0, 100.0, 30.0])  # v = (1, 10, 3) / 14


@pytest.mark.parametrize(
    ("shocked", "h_expected", "impact"),
    [
        (0, [1.0, 1.0, 1.0], 13 / 14),  # 0.9285714
        (1, [0.5, 1.0, 1.0], 3.5 / 14),  # 0.25
        (2, [0.3, 0.9, 1.0], 9.3 / 14),  # 0.6642857
    ],
)
def test_debtrank_three_banks(shocked, h_expected, impact):
    h0 = np.zeros(3)
    h0[shocked] = 1.0
    h = debtrank(DR_X, DR_BUF, DR_SIZE, h0)
    np.testing.assert_allclose(h, h_expected, rtol=0, atol=1e-12)
    r = debtrank_impact(h, h0, DR_SIZE)
    assert r == pytest.approx(impact, abs=1e-12)
    assert r == pytest.approx({0: 0.9285714, 1: 0.25, 2: 0.6642857}[shocked], abs=1e-6)


def test_debtrank_single_node_is_each_node_shocked_alone():
    """The published three-bank impacts (13/14, 3.5/14, 9.3/14), in one call and in any node
    order, equal to debtrank + debtrank_impact per node to the bit; bad indices are refused."""
    got = debtrank_single_node(DR_X, DR_BUF, DR_SIZE)
    np.testing.assert_allclose(got, [13 / 14, 3.5 / 14, 9.3 / 14], rtol=0, atol=1e-12)
    for i in range(3):
        h0 = np.eye(3)[i]
        assert got[i] == debtrank_impact(debtrank(DR_X, DR_BUF, DR_SIZE, h0), h0, DR_SIZE)
    np.testing.assert_array_equal(debtrank_single_node(DR_X, DR_BUF, DR_SIZE, [2, 0]),
                                  got[[2, 0]])
    with pytest.raises(ValueError, match="nodes must be"):
        debtrank_single_node(DR_X, DR_BUF, DR_SIZE, [3])


def test_debtrank_single_hit_no_reverberation():
    # W = [[0, .5], [.5, 0]].  Shock a with 0.2: round 1 b = 0.1; round 2 b passes
    # 0.5*0.1 back to a (a = 0.25); both are then inactive, so the echo stops there.
    X = np.array([[0.0, 1.0], [1.0, 0.0]])
    h = debtrank(X, [2.0, 2.0], [1.0, 1.0], [0.2, 0.0])
    np.testing.assert_allclose(h, [0.25, 0.1], rtol=0, atol=1e-15)
    assert debtrank_impact(h, [0.2, 0.0], [1.0, 1.0]) == pytest.approx(0.075, abs=1e-15)


def test_debtrank_failed_buffer_gives_full_impact():
    # Bank b has no buffer: W_b. = (1, 0, 1).  Shock c: b -> 1, then a += 0.5*1 = 0.5,
    # then a's 0.5 saturates nothing new.  h = (0.5, 1, 1), impact = 10.5/14 = 0.75.
    h0 = np.array([0.0, 0.0, 1.0])
    h = debtrank(DR_X, [2.0, 0.0, 2.0], DR_SIZE, h0)
    np.testing.assert_allclose(h, [0.5, 1.0, 1.0], rtol=0, atol=1e-12)
    assert debtrank_impact(h, h0, DR_SIZE) == pytest.approx(0.75, abs=1e-12)


# ----------------------------------------------------------------------------------------
# Gai-Kapadia threshold cascade
# ----------------------------------------------------------------------------------------
# Chain 0 <- 1 <- 2 <- 3: bank k+1 has lent 5 to bank k.
CHAIN_X = np.zeros((4, 4))
CHAIN_X[1, 0] = CHAIN_X[2, 1] = CHAIN_X[3, 2] = 5.0
CHAIN_IB = CHAIN_X.sum(axis=1)
CHAIN_M = np.full(4, 10.0)
FIRST = np.array([True, False, False, False])


@pytest.mark.parametrize(
    ("capital", "recovery", "expected"),
    [
        ([1, 3, 4, 2], 0.0, [1, 1, 1, 1]),  # loss 5 beats every capital
        ([1, 3, 4, 2], 0.3, [1, 1, 0, 0]),  # loss 3.5: > 3 but < 4
        ([1, 3, 4, 2], 0.5, [1, 0, 0, 0]),  # loss 2.5 < 3
        ([1, 3, 4, 2], 0.2, [1, 1, 0, 0]),  # loss 4 == capital 4 is not a failure
        ([1, 3, 6, 10], 0.0, [1, 1, 0, 0]),  # bank 2 absorbs 5 < 6
    ],
)
def test_threshold_cascade_chain(capital, recovery, expected):
    failed = threshold_cascade(
        CHAIN_X, CHAIN_IB, CHAIN_M, np.array(capital, float), FIRST, recovery=recovery
    )
    assert failed.dtype == bool
    np.testing.assert_array_equal(failed, np.array(expected, bool))


def test_threshold_cascade_chain_with_fire_sales():
    # alpha such that q = 0.9 when a quarter of the illiquid assets is sold:
    # round 1 (x=1/4): loss on illiquid 1.0 -> bank 1: 5 + 1 > 3 fails
    # round 2 (x=1/2): q = 0.81, loss 1.9 -> bank 2: 5 + 1.9 > 6 fails
    # round 3 (x=3/4): q = 0.729, loss 2.71 -> bank 3: 5 + 2.71 < 10 survives
    alpha = alpha_for_impact(0.1, 0.25)
    assert alpha == pytest.approx(4 * math.log(10 / 9), rel=1e-14)
    failed = threshold_cascade(
        CHAIN_X, CHAIN_IB, CHAIN_M, np.array([1.0, 3, 6, 10]), FIRST, fire_sale_alpha=alpha
    )
    np.testing.assert_array_equal(failed, [True, True, True, False])


def test_threshold_cascade_pure_fire_sale_and_market_depth():
    # No interbank links at all; failures spread only through the price of illiquid assets.
    X = np.zeros((4, 4))
    capital = np.array([0.0, 0.5, 1.5, 2.5])
    alpha = alpha_for_impact(0.1, 0.25)
    args = (X, np.zeros(4), CHAIN_M, capital, FIRST)
    # losses 1.0 > 0.5, then 1.9 > 1.5, then 2.71 > 2.5: everyone fails
    np.testing.assert_array_equal(threshold_cascade(*args, fire_sale_alpha=alpha), [1, 1, 1, 1])
    # twice as deep a market (80): x = 1/8 -> q = 0.9**0.5, loss 0.513 > 0.5; then x = 1/4,
    # loss 1.0 < 1.5 stops the cascade
    failed = threshold_cascade(*args, fire_sale_alpha=alpha, n_total_illiquid=80.0)
    np.testing.assert_array_equal(failed, [1, 1, 0, 0])
    # without the fire-sale channel nothing spreads
    np.testing.assert_array_equal(threshold_cascade(*args), [1, 0, 0, 0])


def test_gai_kapadia_network_balance_sheets():
    rng = np.random.default_rng(7)
    n, z = 1000, 4.0
    X, a_ib, a_m, k = gai_kapadia_network(n, z, rng)
    assert X.shape == (n, n) and np.all(np.diag(X) == 0)
    deg = (X > 0).sum(axis=1)
    # mean out-degree of a directed ER graph with p = z/(n-1) is z (sd of mean ~ 0.06)
    assert abs(deg.mean() - z) < 0.3
    has = deg > 0
    np.testing.assert_allclose(a_ib[has], 0.2)
    np.testing.assert_allclose(a_ib[~has], 0.0)
    np.testing.assert_allclose(X.sum(axis=1), a_ib, atol=1e-12)
    # evenly split: every positive exposure of bank i equals 0.2 / k_i
    i, j = np.nonzero(X)
    np.testing.assert_allclose(X[i, j], 0.2 / deg[i])
    np.testing.assert_allclose(a_m, 1.0 - a_ib)
    np.testing.assert_allclose(k, 0.04)


def test_gai_kapadia_network_uses_only_given_rng():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - global state must stay put
    a = gai_kapadia_network(200, 3.0, np.random.default_rng(11))
    b = gai_kapadia_network(200, 3.0, np.random.default_rng(11))
    c = gai_kapadia_network(200, 3.0, np.random.default_rng(12))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002


@pytest.mark.slow
def test_gai_kapadia_contagion_window():
    # Reduced version of Gai & Kapadia (2010), Fig. 3 (capital 4 %, interbank 20 %, phi = 0):
    # contagion (>= 5 % of banks failing) is absent at z = 0.5, common at z = 3 and gone at
    # z = 10; when it happens at z >= 4 it takes out almost the whole system.
    rng = np.random.default_rng(2010)
    n, trials = 500, 60

    def run(z):
        return np.array([gai_kapadia_trial(n, z, rng) for _ in range(trials)])

    low, mid, high = run(0.5), run(3.0), run(10.0)
    freq = {z: float(np.mean(f >= 0.05)) for z, f in ((0.5, low), (3.0, mid), (10.0, high))}
    assert freq[0.5] < 0.05
    assert freq[3.0] > 0.5
    assert freq[0.5] < freq[3.0]
    assert freq[10.0] < 0.05
    for z in (4.0, 5.0):
        f = run(z)
        hit = f >= 0.05
        assert hit.sum() >= 10, f"too few contagion events at z={z} to measure extent"
        assert f[hit].mean() > 0.9
        assert f[hit].min() > 0.9


# ----------------------------------------------------------------------------------------
# price impact
# ----------------------------------------------------------------------------------------
def test_exponential_impact_and_inverse():
    assert alpha_for_impact(0.1, 0.1) == pytest.approx(1.0536, abs=1e-4)
    assert alpha_for_impact(0.1, 0.1) == pytest.approx(10 * math.log(10 / 9), rel=1e-14)
    assert exponential_impact(0.1, alpha_for_impact(0.1, 0.1)) == pytest.approx(0.9, rel=1e-14)
    assert exponential_impact(0.0, 3.0) == 1.0
    np.testing.assert_allclose(
        exponential_impact(np.array([0.5, 1.0]), 2 * math.log(2)), [0.5, 0.25], rtol=1e-14
    )
    assert alpha_for_impact(0.0, 0.3) == 0.0


# ----------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------
GOOD_L = np.array([[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: eisenberg_noe(np.ones((2, 3)), [1, 1]), "square"),
        (lambda: eisenberg_noe(np.ones(3), [1, 1, 1]), "square"),
        (lambda: eisenberg_noe([[0, -1], [1, 0]], [1, 1]), "non-negative"),
        (lambda: eisenberg_noe([[0, np.nan], [1, 0]], [1, 1]), "finite"),
        (lambda: eisenberg_noe([[0, np.inf], [1, 0]], [1, 1]), "finite"),
        (lambda: eisenberg_noe(GOOD_L, [1, 1, 1]), "length"),
        (lambda: eisenberg_noe(GOOD_L, [1, -1]), "non-negative"),
        (lambda: eisenberg_noe(GOOD_L, [1, np.nan]), "finite"),
        (lambda: rogers_veraart(GOOD_L, [1, 1], 1.2, 1.0), "alpha"),
        (lambda: rogers_veraart(GOOD_L, [1, 1], 0.5, -0.1), "beta"),
        (lambda: rogers_veraart(GOOD_L, [1, 1], np.nan, 1.0), "alpha"),
        (lambda: clearing_equity(GOOD_L, [1, 1], [1]), "length"),
        (lambda: debtrank(GOOD_L, [1, 1], [1, 1], [1.5, 0]), r"\[0, 1\]"),
        (lambda: debtrank(GOOD_L, [1, 1], [1, 1], [-0.5, 0]), "non-negative"),
        (lambda: debtrank(GOOD_L, [1], [1, 1], [1, 0]), "length"),
        (lambda: debtrank(GOOD_L, [1, 1], [0, 0], [1, 0]), "positive sum"),
        (lambda: debtrank(GOOD_L, [1, 1], [-1, 3], [1, 0]), "non-negative"),
        (lambda: debtrank_impact([1, 0], [1, 0, 0], [1, 1]), "length"),
        (lambda: threshold_cascade(GOOD_L, [1, 1], [1, 1], [1, 1], [1, 0]), "boolean"),
        (lambda: threshold_cascade(GOOD_L, [1, 1], [1, 1], [1, 1], [True]), "shape"),
        (lambda: threshold_cascade(GOOD_L, [0.5, 1], [1, 1], [1, 1], [True, False]), "exceed"),
        (
            lambda: threshold_cascade(GOOD_L, [1, 1], [1, 1], [1, 1], [True, False], recovery=2),
            "recovery",
        ),
        (
            lambda: threshold_cascade(
                GOOD_L, [1, 1], [1, 1], [1, 1], [True, False], fire_sale_alpha=-1
            ),
            "fire_sale_alpha",
        ),
        (
            lambda: threshold_cascade(
                GOOD_L,
                [1, 1],
                [1, 1],
                [1, 1],
                [True, False],
                fire_sale_alpha=1,
                n_total_illiquid=1.0,
            ),
            "n_total_illiquid",
        ),
        (lambda: gai_kapadia_network(1, 1.0, np.random.default_rng(0)), "n must be"),
        (lambda: gai_kapadia_network(10, -1.0, np.random.default_rng(0)), "mean_degree"),
        (lambda: gai_kapadia_network(10, 2.0, np.random.default_rng(0), 1.5), "interbank"),
        (lambda: gai_kapadia_network(10, 2.0, 42), "Generator"),
        (lambda: exponential_impact(-0.1, 1.0), "sold_fraction"),
        (lambda: exponential_impact(0.1, -1.0), "alpha"),
        (lambda: alpha_for_impact(1.0, 0.1), "price_fall"),
        (lambda: alpha_for_impact(0.1, 0.0), "sold_fraction"),
    ],
)
def test_invalid_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_models_one_pass_clearing_equals_rogers_veraart_then_clearing_equity():
    """``rogers_veraart_state`` (used by the model every month) must give, to the bit, the
    public ``rogers_veraart`` vector and ``clearing_equity`` at it, with and without defaults."""
    from sim.core.contagion import clearing_equity, rogers_veraart, rogers_veraart_state

    rng = np.random.default_rng(5)
    defaults_seen = set()
    for _ in range(300):
        n = int(rng.integers(2, 12))
        L = rng.uniform(0, 10, (n, n)) * (rng.random((n, n)) < 0.5)
        np.fill_diagonal(L, 0.0)
        e = rng.uniform(0, 15, n) * (rng.random(n) < 0.8)
        alpha, beta = float(rng.choice([1.0, 0.5, 0.0])), float(rng.choice([1.0, 0.7]))
        p, lbar, eq, solvent = rogers_veraart_state(L, e, alpha, beta)
        ref = rogers_veraart(L, e, alpha, beta)
        assert p.tobytes() == ref.tobytes()
        assert eq.tobytes() == clearing_equity(L, e, ref).tobytes()
        assert lbar.tobytes() == L.sum(axis=1).tobytes()
        assert solvent == bool((ref >= lbar).all())
        defaults_seen.add(solvent)
    assert defaults_seen == {True, False}
