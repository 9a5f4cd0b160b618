"""The l2 correction QP solved through its dual: least-distance programming by NNLS.

Every round of the l2 correction is a *projection*: ``min ||d||^2 s.t. G d >= g`` with ``P``
variables (the corrected parameters) but only ``K`` cut rows (``K`` = margins x rounds + one
loss cut per round; 91 per round for 10 points of a 10-class network). HiGHS's primal
active-set QP works in the null space of the active rows, of dimension about ``P``, with a
dense reduced Hessian: ``O(P^2)`` memory and work per iteration. On the digits CNN's last
layer (``P`` = 1450) ten rounds took 13.4 s; over all its layers (``P`` = 10 810) they did not
finish in 200 s. The dual has ``K`` nonnegative variables instead.

Lawson & Hanson's least-distance programming (*Solving Least Squares Problems*, 1974, ch. 23)
solves it exactly with one nonnegative least-squares problem: with ``E = [Gᵀ; gᵀ]``
``(P + 1, K)`` and ``f = (0, ..., 0, 1)``, let ``u >= 0`` minimise ``||E u - f||`` and
``r = E u - f``. Then ``r_{P+1} = -||r||^2`` and

* ``||r|| = 0``: the rows are inconsistent (infeasible);
* otherwise ``d = -r_{1..P} / r_{P+1}`` is the minimum-norm point, ``||d||^2 = 1/||r||^2 - 1``.

``scipy.optimize.nnls`` (an active-set method on the ``K`` columns) solves it. The solution
is re-checked against every row (``G d >= g`` within :data:`FEAS_TOL`); a miss is reported as
a solver error, never as a solution. The dual is solved from scratch each round (no warm
start): ``K`` stays in the hundreds.

Only ``norm = "l2"`` and no ``max_change`` box (``2 P`` more rows would defeat the purpose);
there is no time limit inside one solve (the correction checks it between rounds).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: a row counts as met when ``G d >= g - FEAS_TOL`` (rows scaled to unit largest coefficient)
FEAS_TOL = 1e-6
#: ``||r||^2`` below this means the rows are inconsistent (a minimum-norm point beyond 1e6)
INFEASIBLE_R2 = 1e-12


@dataclass
class LdpOutcome:
    """What one solve ended with: ``status`` in optimal | infeasible | error, and why."""

    status: str
    message: str = ""


class LeastDistanceQP:
    """``min ||d||^2`` over the cuts added so far, by NNLS on the dual (see the module doc).

    Same interface as :class:`~mipcert.repair.qp.CorrectionQP`: ``add(cuts)``, ``solve()``
    returning ``(outcome, d or None)``, ``rows`` and ``box`` (always None).
    """

    def __init__(self, size: int, *, norm: str = "l2", max_change: float | None = None):
        if norm != "l2":
            raise InputError(f"solver = \"nnls\" solves the l2 QP only, not norm = {norm!r}: "
                             "use solver = \"highs\" for it")
        if max_change is not None:
            raise InputError("solver = \"nnls\" takes no max_change box: drop max_change or "
                             "use solver = \"highs\"")
        self.size = int(size)
        self.box = None
        self._G: list[np.ndarray] = []
        self._g: list[np.ndarray] = []
        self._inconsistent = 0   # all-zero rows asking 0 >= g with g > FEAS_TOL
        self.rows = 0

    def add(self, cuts) -> int:
        """Append ``cuts.lo <= cuts.A d <= cuts.hi`` as rows ``G d >= g``; returns how many."""
        A = np.atleast_2d(np.asarray(cuts.A, dtype=np.float64))
        parts = [(A, cuts.lo, np.isfinite(cuts.lo)), (-A, -np.asarray(cuts.hi),
                                                       np.isfinite(cuts.hi))]
        for G, g, keep in parts:
            G, g = G[keep], np.asarray(g, dtype=np.float64)[keep]
            scale = np.abs(G).max(axis=1, initial=0.0)
            zero = scale == 0
            self._inconsistent += int((g[zero] > FEAS_TOL).sum())
            G, g = G[~zero] / scale[~zero, None], g[~zero] / scale[~zero]
            self._G.append(G)
            self._g.append(g)
        self.rows += len(A)
        return len(A)

    def solve(self, time_limit: float | None = None):
        """Solve the dual by NNLS; ``time_limit`` is accepted and ignored (one solve)."""
        from scipy.optimize import nnls

        if self._inconsistent:
            return LdpOutcome("infeasible", "a cut with no coefficients asks 0 >= a positive "
                                            "number"), None
        G, g = np.vstack(self._G), np.concatenate(self._g)
        if len(g) == 0 or g.max() <= 0:
            return LdpOutcome("optimal"), np.zeros(self.size)   # d = 0 meets every row
        E = np.vstack([G.T, g[None, :]])
        f = np.zeros(self.size + 1)
        f[-1] = 1.0
        try:
            u, _ = nnls(E, f, maxiter=max(100, 10 * E.shape[1]))
        except RuntimeError as exc:  # scipy: iteration limit reached
            return LdpOutcome("error", f"NNLS: {exc}"), None
        r = E @ u - f
        if -r[-1] <= INFEASIBLE_R2:
            return LdpOutcome("infeasible", "NNLS residual 0: the cut rows are inconsistent"), None
        d = -r[:-1] / r[-1]
        worst = float((g - G @ d).max())
        if not np.all(np.isfinite(d)) or worst > FEAS_TOL * (1.0 + np.abs(g).max()):
            return LdpOutcome("error", f"NNLS point misses a row by {worst:.3g}"), None
        return LdpOutcome("optimal"), d
