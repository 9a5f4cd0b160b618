"""Private prediction with smooth sensitivity bounded by AGT (paper section 10.2).

Smooth sensitivity (Nissim, Raskhodnikova & Smith 2007, Definition 10 of the AGT paper):
``S*_beta(x) = max_{k >= 0} exp(-beta k) A^(k)(x)``, ``A^(k)(x)`` the largest local
sensitivity over data sets within ``k`` substitutions of ``x``. For binary classification
with 0/1 outputs (global sensitivity 1): if the prediction at a test point is certified
stable for every data set within ``K`` substitutions, then ``A^(k) = 0`` for ``k < K``
(a data set within ``k`` and its neighbours are all within ``K``) and ``A^(k) <= 1`` (the
global sensitivity) for ``k >= K``, so ``S*_beta <= exp(-beta K)`` (AGT paper Theorem 11,
from Wicker et al. 2024; FORMULATIONS 3.6). We certify with interval AGT for each ``k`` in
``k_values`` and take, per test point, the largest certified ``k`` (``k* = 0``: no
improvement over global sensitivity, bound 1).

Mechanism: NRS 2007 (STOC), Corollary 2.4 (1-dimensional case; it rests on their lemma
that the density ``h(z) ~ 1/(1 + |z|^gamma)``, ``gamma > 1``, is
``(alpha, beta) = (eps/(2(gamma+1)), eps/(2(gamma+1)))``-admissible with ``delta = 0``):
if ``S`` is a beta-smooth upper bound on the local sensitivity with
``beta <= eps/(2(gamma+1))``, then ``f(x) + (2(gamma+1) S(x)/eps) Z``, ``Z ~ h``, is
eps-differentially private. We use ``gamma = 2`` (``Z`` standard Cauchy), i.e.
``alpha = beta = eps/6`` and noise scale ``S/alpha = 6 S/eps``, as eq. (59) of the AGT
paper and the authors' code (``abstract_gradient_training.privacy_utils``,
``get_calibrated_noise_level``: ``beta = eps/6``, ``Cauchy(6 S/eps)``). Released:
``1[p + (6 S/eps) Z > 1/2]`` (``p`` the 0/1 prediction, post-processing). Like the paper,
we put the certified bound ``exp(-beta k*)`` in the place of ``S``. The global-sensitivity
baseline is the Laplace mechanism with scale ``1 / eps``. Accuracies are *expected*
accuracies, computed exactly from the noise CDFs (no sampling): a point is released
correctly with probability ``F(1/2)`` when its nominal prediction is correct and
``1 - F(1/2)`` otherwise.
"""
from __future__ import annotations

import numpy as np

#: exponent of the noise density ``1/(1 + |z|^gamma)``: 2 is the Cauchy distribution
CAUCHY_GAMMA = 2.0
#: NRS 2007 Corollary 2.4: beta = eps / SMOOTH_FACTOR, Cauchy scale SMOOTH_FACTOR * S / eps
SMOOTH_FACTOR = 2.0 * (CAUCHY_GAMMA + 1.0)  # = 6


def smooth_beta(eps: float) -> float:
    """Smoothness parameter ``beta = eps / 6`` of the Cauchy mechanism at budget ``eps``."""
    return eps / SMOOTH_FACTOR


def cauchy_scale(S, eps: float):
    """Scale ``6 S / eps`` of the Cauchy noise for a (beta-smooth) sensitivity bound ``S``."""
    return SMOOTH_FACTOR * np.asarray(S, dtype=np.float64) / eps


def certified_distance(stable_by_k: dict[int, np.ndarray]) -> np.ndarray:
    """Per point, the largest ``k`` at which it is certified stable (0 if none)."""
    ks = sorted(stable_by_k)
    n = len(next(iter(stable_by_k.values())))
    kstar = np.zeros(n, dtype=np.int64)
    for k in ks:
        kstar = np.where(stable_by_k[k], np.maximum(kstar, k), kstar)
    return kstar


def smooth_sensitivity(kstar: np.ndarray, beta: float) -> np.ndarray:
    """Upper bound ``exp(-beta k*)`` on the beta-smooth sensitivity, per point."""
    return np.exp(-beta * np.asarray(kstar, dtype=np.float64))


def _cauchy_cdf(x: float, scale: np.ndarray) -> np.ndarray:
    return 0.5 + np.arctan(x / scale) / np.pi


def _laplace_cdf_pos(x: float, scale: float) -> float:
    return 1.0 - 0.5 * np.exp(-x / scale)


def private_accuracy(correct: np.ndarray, kstar: np.ndarray, eps: float) -> dict:
    """Expected accuracy of the smooth-sensitivity (Cauchy) and the global (Laplace)
    mechanisms at privacy budget ``eps``; ``correct``: nominal correctness per point."""
    correct = np.asarray(correct, dtype=bool)
    S = smooth_sensitivity(kstar, smooth_beta(eps))
    p_keep = _cauchy_cdf(0.5, cauchy_scale(S, eps))
    smooth = np.where(correct, p_keep, 1.0 - p_keep)
    g_keep = _laplace_cdf_pos(0.5, 1.0 / eps)
    glob = np.where(correct, g_keep, 1.0 - g_keep)
    return {"epsilon": float(eps), "smooth_accuracy": float(smooth.mean()),
            "global_accuracy": float(glob.mean()),
            "mean_smooth_sensitivity": float(S.mean())}
