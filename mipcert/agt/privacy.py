"""Private prediction with smooth sensitivity bounded by AGT (paper section 10.2).

For binary classification with 0/1 outputs (global sensitivity 1): if the prediction at
``x`` is certified stable for every data set within ``k`` substitutions, the beta-smooth
sensitivity is at most ``exp(-beta k)`` (FORMULATIONS 3.6, Wicker et al. 2024). We
certify with interval AGT for each ``k`` in ``k_values`` and take, per test point, the
largest certified ``k`` (``k* = 0``: no improvement over global sensitivity, bound 1).

Mechanism (Nissim, Raskhodnikova & Smith 2007, noise with density ``~ 1/(1 + z^2)``,
i.e. Cauchy, gamma = 2): with ``beta = eps / 6``, releasing ``1[p + (6 S / eps) Z > 1/2]``
(``p`` the 0/1 prediction, ``S`` the smooth-sensitivity bound, ``Z`` standard Cauchy) is
eps-differentially private. The global-sensitivity baseline is the Laplace mechanism with
scale ``1 / eps``. Accuracies are *expected* accuracies, computed exactly from the noise
CDFs (no sampling): a point is released correctly with probability ``F(1/2)`` when its
nominal prediction is correct and ``1 - F(1/2)`` otherwise.
"""
from __future__ import annotations

import numpy as np

#: beta = eps / SMOOTH_FACTOR and the Cauchy scale is SMOOTH_FACTOR * S / eps
SMOOTH_FACTOR = 6.0


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
    S = smooth_sensitivity(kstar, eps / SMOOTH_FACTOR)
    p_keep = _cauchy_cdf(0.5, SMOOTH_FACTOR * S / eps)
    smooth = np.where(correct, p_keep, 1.0 - p_keep)
    g_keep = _laplace_cdf_pos(0.5, 1.0 / eps)
    glob = np.where(correct, g_keep, 1.0 - g_keep)
    return {"epsilon": float(eps), "smooth_accuracy": float(smooth.mean()),
            "global_accuracy": float(glob.mean()),
            "mean_smooth_sensitivity": float(S.mean())}
