"""The correction QP (or LP) of one cutting-plane run, kept in one persistent solver model.

Variables: the change ``d = w - w0`` of the chosen parameters (``P`` of them), free, or within
``[-max_change, max_change]`` when a trust region is asked for. HiGHS's active-set QP solver
is several times faster with free variables (it starts at ``d = 0`` instead of a vertex of
the box) but ended with "Solve error" on some feasible cut QPs of the digits MLP that SCIP
solves; so when a solve ends in an error the box ``|d_j| <= fallback_change`` is added as
rows (``add_constraints``, like any cut) and the QP is solved again. Cut rows are scaled to a
largest coefficient of 1, which the solver also needs.
Objective, ``norm =``

* ``"l2"`` (Zhao & Kronqvist): ``min sum_j d_j^2`` -- a convex QP;
* ``"linf_l1"`` (the LP objective of the provable-repair tools PRDNN / APRNN):
  ``min t + (1/P) sum_j s_j`` with ``-t <= d_j <= t`` and ``-s_j <= d_j <= s_j``, i.e. the
  largest plus the normalised total absolute weight change.

Cut rows (:class:`~mipcert.repair.cuts.CutRows`) are appended to a Pyomo ``ConstraintList``
and handed to :meth:`mipcert.solve.PersistentSolver.add_constraints`: the solver model is
built once and grows, never rebuilt.
"""
from __future__ import annotations

import logging

import numpy as np
import pyomo.environ as pe
from pyomo.core.expr.numeric_expr import LinearExpression

from ..errors import InputError

log = logging.getLogger(__name__)

NORMS = ("l2", "linf_l1")
#: solvers of the correction QP: the Pyomo back-ends, and "nnls" (the l2 QP's dual, ldp.py;
#: it has no LP: with it the linf_l1 LP goes to HiGHS)
QP_SOLVERS = ("highs", "scip", "gurobi", "nnls")
#: coefficients below this (relative to the row's largest) are dropped from a cut row
COEF_DROP = 1e-13


class CorrectionQP:
    """``min ||d||`` over the cuts added so far; ``solve`` returns ``(outcome, d or None)``."""

    def __init__(self, size: int, *, norm: str = "l2", solver: str = "highs",
                 max_change: float | None = None, fallback_change: float = 10.0,
                 threads: int | None = None, options: dict | None = None):
        from ..solve import PersistentSolver

        if norm not in NORMS:
            raise InputError(f"norm = {norm!r}: choose one of {', '.join(NORMS)}")
        if max_change is not None and not max_change > 0:
            raise InputError(f"max_change = {max_change} must be positive")
        self.size, self.norm = int(size), norm
        self.max_change = None if max_change is None else float(max_change)
        self.fallback_change = float(fallback_change)
        #: the round-independent box |d_j| <= box was added (max_change or the fallback)
        self.box: float | None = None
        m = self.model = pe.ConcreteModel(name="adversary_correction")
        m.J = pe.RangeSet(0, self.size - 1)
        m.d = pe.Var(m.J, initialize=0.0)
        m.box = pe.ConstraintList()
        m.cuts = pe.ConstraintList()
        self._d = [m.d[j] for j in range(self.size)]
        if norm == "l2":
            objective = sum(v * v for v in self._d)
        else:
            m.t = pe.Var(bounds=(0, None))
            m.s = pe.Var(m.J, bounds=(0, None))
            m.abs_t = pe.ConstraintList()
            m.abs_s = pe.ConstraintList()
            for j, v in enumerate(self._d):
                m.abs_t.add((None, v - m.t, 0.0))
                m.abs_t.add((None, -v - m.t, 0.0))
                m.abs_s.add((None, v - m.s[j], 0.0))
                m.abs_s.add((None, -v - m.s[j], 0.0))
            objective = m.t + sum(m.s[j] for j in range(self.size)) / self.size
        m.objective = pe.Objective(expr=objective, sense=pe.minimize)
        self.engine = PersistentSolver(m, solver, threads=threads, options=options)
        self.rows = 0
        if self.max_change is not None:
            self._add_box(self.max_change)

    def _add_box(self, bound: float) -> None:
        new = [self.model.box.add((-bound, v, bound)) for v in self._d]
        self.rows += self.engine.add_constraints(new)
        self.box = bound

    def add(self, cuts) -> int:
        """Append the rows ``cuts.lo <= cuts.A d <= cuts.hi``; returns how many."""
        new = []
        for a, lo, hi in zip(cuts.A, cuts.lo, cuts.hi):
            scale = np.abs(a).max(initial=0.0)
            if scale > 0:  # rows of unit largest coefficient: the QP solver needs the scaling
                a, lo, hi, scale = a / scale, lo / scale, hi / scale, 1.0
            # an all-zero row keeps one zero coefficient: the solver then decides 0 in [lo, hi]
            nz = np.flatnonzero(np.abs(a) > COEF_DROP * scale) if scale > 0 else [0]
            expr = LinearExpression(constant=0.0, linear_coefs=[float(a[j]) for j in nz],
                                    linear_vars=[self._d[j] for j in nz])
            new.append(self.model.cuts.add((None if np.isinf(lo) else float(lo), expr,
                                            None if np.isinf(hi) else float(hi))))
        self.rows += self.engine.add_constraints(new)
        return len(new)

    def solve(self, time_limit: float | None = None):
        """Solve; on a solver error without a box, add the fallback box and solve again."""
        out = self.engine.solve(time_limit=time_limit)
        if out.status == "error" and self.box is None:
            log.warning("the QP solver failed (%s); solving again with |d_j| <= %g",
                        out.message, self.fallback_change)
            self._add_box(self.fallback_change)
            out = self.engine.solve(time_limit=time_limit)
        d = out.values(self._d) if out.status == "optimal" and out.has_solution else None
        if d is not None and not np.all(np.isfinite(d)):
            out.status, out.message, d = "error", "the solver returned non-finite values", None
        return out, d


def make_qp(size: int, *, norm: str = "l2", solver: str = "highs",
            max_change: float | None = None, fallback_change: float = 10.0,
            threads: int | None = None):
    """The QP of one correction run: :class:`CorrectionQP` on a solver back-end, or, for
    ``solver = "nnls"`` and ``norm = "l2"``, :class:`~mipcert.repair.ldp.LeastDistanceQP`
    (the l2 QP's dual; the ``linf_l1`` LP then goes to HiGHS)."""
    if solver not in QP_SOLVERS:
        raise InputError(f"solver = {solver!r}: choose one of {', '.join(QP_SOLVERS)}")
    if solver == "nnls" and norm == "linf_l1":
        solver = "highs"
    if solver == "nnls":
        from .ldp import LeastDistanceQP

        return LeastDistanceQP(size, norm=norm, max_change=max_change)
    return CorrectionQP(size, norm=norm, solver=solver, max_change=max_change,
                        fallback_change=fallback_change, threads=threads)
