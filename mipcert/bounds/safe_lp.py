"""Rigorous LP bounds from any dual vector (Neumaier & Shcherbina style).

For ``min cᵀx`` s.t. ``row_lo <= A x <= row_hi``, ``col_lo <= x <= col_hi`` (all column
bounds finite), *every* ``y`` gives the valid lower bound (Lagrangian duality)::

    L(y) = Σ_i min(y_i row_lo_i, y_i row_hi_i) + Σ_j min((c - Aᵀy)_j col_lo_j, (c - Aᵀy)_j col_hi_j)

so a solver's slightly infeasible dual can only make the bound weaker, never wrong.
A dual entry whose row side is infinite is clipped to 0 first.
"""
from __future__ import annotations

import numpy as np

# Relative slack for the float64 evaluation of L(y) itself.
EVAL_SLACK = 1e-12


def dual_lower_bound(c, A, row_lo, row_hi, col_lo, col_hi, y) -> float:
    """``L(y)`` above; ``A``: scipy sparse ``(m, n)``; vectors as numpy arrays."""
    y = np.asarray(y, dtype=np.float64).copy()
    y[(y > 0) & ~np.isfinite(row_lo)] = 0.0
    y[(y < 0) & ~np.isfinite(row_hi)] = 0.0
    rows = np.where(y > 0, y * np.where(np.isfinite(row_lo), row_lo, 0.0),
                    y * np.where(np.isfinite(row_hi), row_hi, 0.0))
    red = c - A.T @ y
    cols = np.minimum(red * col_lo, red * col_hi)
    total = rows.sum() + cols.sum()
    scale = np.abs(rows).sum() + np.abs(cols).sum()
    return float(total - EVAL_SLACK * (1.0 + scale))
