"""Constants of the smooth-sensitivity private prediction (mipcert.agt.privacy).

Nissim, Raskhodnikova & Smith 2007, Corollary 2.4 with gamma = 2 (Cauchy): beta = eps/6 and
noise scale 6 S / eps give eps-DP; the AGT bound on the smooth sensitivity is exp(-beta k*).
"""
from __future__ import annotations

import numpy as np
import pytest

from mipcert.agt import privacy
from mipcert.agt.privacy import (cauchy_scale, certified_distance, private_accuracy,
                                 smooth_beta, smooth_sensitivity)


def test_cauchy_constants_are_nrs_corollary_2_4_with_gamma_2():
    assert privacy.SMOOTH_FACTOR == 2 * (2 + 1) == 6
    for eps in (0.05, 0.5, 1.0, 3.0):
        assert smooth_beta(eps) == pytest.approx(eps / 6)
        assert np.allclose(cauchy_scale([1.0, 0.25], eps), [6 / eps, 1.5 / eps])


def test_private_accuracy_numbers():
    eps = 1.0
    kstar = np.array([0, 6, 12, 12])
    correct = np.array([True, True, True, False])
    S = np.exp(-(eps / 6) * kstar)                       # [1, e^-1, e^-2, e^-2]
    keep = 0.5 + np.arctan(0.5 / (6 * S / eps)) / np.pi  # P(Cauchy(6 S/eps) < 1/2)
    expect = np.where(correct, keep, 1 - keep).mean()
    r = private_accuracy(correct, kstar, eps)
    assert r["smooth_accuracy"] == pytest.approx(expect, rel=1e-14)
    assert r["mean_smooth_sensitivity"] == pytest.approx(S.mean(), rel=1e-14)
    # by hand: k* = 0 gives S = 1, scale 6, P(keep) = 1/2 + arctan(1/12)/pi
    r0 = private_accuracy([True], [0], eps)
    assert r0["smooth_accuracy"] == pytest.approx(0.5 + np.arctan(1 / 12) / np.pi, rel=1e-14)
    # global baseline: Laplace(1/eps), P(keep) = 1 - exp(-eps/2)/2
    g = 1 - 0.5 * np.exp(-eps / 2)
    assert r["global_accuracy"] == pytest.approx((3 * g + (1 - g)) / 4, rel=1e-14)


def test_cauchy_density_is_admissible_at_eps_over_6():
    """NRS admissibility of h(z) = 1/(1+z^2) with alpha = beta = eps/6: sliding by
    |d| <= alpha and dilation by e^lam, |lam| <= beta, each change the density by at
    most e^(eps/2) (so shift + dilation together give eps-DP)."""
    z = np.concatenate([-np.logspace(-4, 4, 4001)[::-1], [0.0], np.logspace(-4, 4, 4001)])
    logh = lambda t: -np.log1p(t * t)  # noqa: E731
    for eps in (0.1, 1.0, 3.0):
        a = b = eps / 6
        for d in np.linspace(-a, a, 41):
            assert np.max(np.abs(logh(z) - logh(z + d))) <= eps / 2 + 1e-12
        for lam in np.linspace(-b, b, 41):
            # density of e^lam Z at z is e^-lam h(e^-lam z)
            assert np.max(np.abs(logh(z) - (-lam + logh(np.exp(-lam) * z)))) <= eps / 2 + 1e-12


def test_bound_matches_exact_smooth_sensitivity_of_a_threshold():
    """f(D) = 1[#ones(D) >= t] on n bits; one substitution moves the count by 1. The exact
    S*_beta = max_k e^(-beta k) A^(k) is never above exp(-beta k*) for any certified k*
    (and equals it at the exact stability distance)."""
    n, t, beta = 40, 17, 0.3
    f = lambda c: (np.asarray(c) >= t).astype(float)  # noqa: E731
    counts = np.arange(n + 1)
    ls = np.array([max(abs(f(c) - f(cc)) for cc in (c - 1, c + 1) if 0 <= cc <= n)
                   for c in counts])
    exact = np.array([max(np.exp(-beta * k) * ls[max(c - k, 0):min(c + k, n) + 1].max()
                          for k in range(n + 1)) for c in counts])
    # exact stability distance: largest K with f constant on all counts within K of c
    K = np.array([next(k for k in range(n + 2)
                       if k == n + 1 or len(set(f(range(max(c - k - 1, 0),
                                                       min(c + k + 1, n) + 1)))) > 1)
                  for c in counts])
    assert np.allclose(exact, np.exp(-beta * K))
    k_values = [1, 2, 5, 9]
    kstar = certified_distance({k: K >= k for k in k_values})
    assert np.all(kstar <= K)
    assert np.all(exact <= smooth_sensitivity(kstar, beta) + 1e-15)
