"""The functions adversary correction constrains, their true values and their gradient cuts.

FORMULATIONS 5. For parameters ``w`` (a :class:`~mipcert.network.Parameters` vector),
adversarial points ``x_i`` with true labels ``y_i`` (``i = 1..n``) and clean data:

    margin       m_{i,t}(w) = z_{y_i}(x_i; w) - z_t(x_i; w)      for every class t != y_i
    clean loss   L(w)       = mean cross-entropy over the clean data
    violation    V(w)       = sum_{i, t != y_i} max(0, delta - m_{i,t}(w))

The gradient cut of ``m_{i,t}`` at a point ``v`` is ``m(v) + grad m(v)ᵀ (w - v) >= delta``, of
the loss ``L(v) + grad L(v)ᵀ (w - v) <= (1 + rho) L(w0)``. In the correction QP the variable
is the change ``d = w - w0``, so a cut is stored as a row ``a · d`` against a right-hand side:
``a = grad(v)``, ``rhs = bound - f(v) - grad(v)ᵀ (w0 - v)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


def _others(y: np.ndarray, m: int) -> np.ndarray:
    """``(n, m - 1)`` the classes ``t != y_i`` of every point, in increasing order."""
    idx = np.tile(np.arange(m), (len(y), 1))
    return idx[idx != y[:, None]].reshape(len(y), m - 1)


@dataclass
class CutRows:
    """Rows ``lo <= A d <= hi`` in the change ``d = w - w0``: ``A`` ``(k, P)``."""

    A: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


class CorrectionFunctions:
    """Margins, violation and clean loss of one correction problem, and their cuts.

    ``X_adv`` ``(n, d)``, ``y_adv`` ``(n,)``: the adversarial points and their true labels;
    ``X_clean``, ``y_clean``: the clean (training) data of the loss; ``delta``: the required
    margin; ``rho``: the allowed relative increase of the clean loss.
    """

    def __init__(self, params, X_adv, y_adv, X_clean, y_clean, *, delta: float, rho: float):
        if delta < 0 or not np.isfinite(delta):
            raise InputError(f"delta = {delta} must be a finite number >= 0")
        if rho < 0 or not np.isfinite(rho):
            raise InputError(f"rho = {rho} must be a finite number >= 0")
        self.params = params
        self.X_adv = np.atleast_2d(np.asarray(X_adv, dtype=np.float64))
        self.y_adv = np.asarray(y_adv, dtype=np.int64).reshape(-1)
        self.X_clean = np.atleast_2d(np.asarray(X_clean, dtype=np.float64))
        self.y_clean = np.asarray(y_clean, dtype=np.int64).reshape(-1)
        m = params.network.output_size
        for name, y in (("adversarial", self.y_adv), ("clean", self.y_clean)):
            if len(y) and (y.min() < 0 or y.max() >= m):
                raise InputError(f"{name} labels must lie in 0..{m - 1} for a network with "
                                 f"{m} outputs")
        if len(self.y_adv) != len(self.X_adv) or len(self.y_clean) != len(self.X_clean):
            raise InputError("every point needs exactly one label")
        if len(self.y_adv) == 0:
            raise InputError("adversary correction needs at least one adversarial point")
        if len(self.y_clean) == 0:
            raise InputError("adversary correction needs clean data for the loss constraint")
        self.delta, self.rho = float(delta), float(rho)
        self.others = _others(self.y_adv, m)
        # the fixed layers below the corrected ones run once, not in every round
        self.H_adv, self.H_clean = params.features(self.X_adv), params.features(self.X_clean)
        self.loss0 = params.loss(params.w0, self.H_clean, self.y_clean, features=True)
        self.loss_bound = (1.0 + self.rho) * self.loss0

    # ----------------------------------------------------------------- true values
    def margins(self, w) -> np.ndarray:
        """``m_{i,t}(w)`` ``(n, m - 1)`` (forward pass only)."""
        z = self.params.logits(w, self.H_adv, features=True)
        rows = np.arange(len(z))[:, None]
        return z[rows, self.y_adv[:, None]] - z[rows, self.others]

    def violation(self, w) -> float:
        """``V(w) = sum max(0, delta - m_{i,t}(w))``."""
        return float(np.maximum(self.delta - self.margins(w), 0.0).sum())

    def loss(self, w) -> float:
        """Clean loss ``L(w)``."""
        return self.params.loss(w, self.H_clean, self.y_clean, features=True)

    # ----------------------------------------------------------------- cuts
    def margin_cuts(self, v, slack: float = 0.0) -> CutRows:
        """One row per margin: ``grad m(v) · d >= delta + slack - m(v) - grad m(v)ᵀ (w0 - v)``."""
        z, J = self.params.logits_jacobian(v, self.H_adv, features=True)
        rows = np.arange(len(z))[:, None]
        m = z[rows, self.y_adv[:, None]] - z[rows, self.others]          # (n, m-1)
        G = J[rows, self.y_adv[:, None]] - J[rows, self.others]          # (n, m-1, P)
        G = G.reshape(-1, self.params.size)
        lo = self.delta + slack - m.ravel() - G @ (self.params.w0 - v)
        return CutRows(G, lo, np.full(len(lo), np.inf))

    def loss_cut(self, v) -> CutRows:
        """``grad L(v) · d <= (1 + rho) L(w0) - L(v) - grad L(v)ᵀ (w0 - v)``."""
        L, g = self.params.loss_and_grad(v, self.H_clean, self.y_clean, features=True)
        hi = self.loss_bound - L - g @ (self.params.w0 - v)
        return CutRows(g[None, :], np.array([-np.inf]), np.array([hi]))
