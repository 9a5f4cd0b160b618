"""The property objective: the safety margin of :mod:`mipcert.spec`, as Pyomo expressions.

For a clause ``C y <= d`` (rows r) the margin is ``m = max_r (C_r y - d_r)``; one row is a
linear expression, several rows get an epigraph variable ``t >= C_r y - d_r`` (minimising
``t`` gives the max). A region's margin ``min_k m_k`` is one objective only through binaries
``σ_k`` (choose the clause, ``Σ σ_k = 1``)::

    margin >= m_k - M (1 - σ_k)   for every k,     minimise margin

with ``M`` at least ``max_k ub(m_k) - min_k lb(m_k)``. The property holds (``unsat``) iff the
minimum is > 0.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from ..relaxation import Relaxation

#: relative widening of a clause epigraph variable's bounds. They come from (alpha-)CROWN,
#: which is exact where every ReLU is stable, so the lower bound can sit within 1e-9 of the
#: optimum; HiGHS 1.16's presolve then called such models infeasible (5 of 1915 exported
#: fuzzing regions, a real counterexample among them). A wider bound is as valid.
MARGIN_BOUND_SLACK = 1e-7


def _row_expr(outputs, c_row, d_r, extra_var=None):
    nz = np.flatnonzero(c_row)
    coefs = [float(c_row[i]) for i in nz]
    vs = [outputs[i] for i in nz]
    if extra_var is not None:
        coefs.append(-1.0)
        vs.append(extra_var)
    return LinearExpression(constant=-float(d_r), linear_coefs=coefs, linear_vars=vs)


def clause_margin(block: pyo.Block, clause, name: str, lo: float | None = None,
                  hi: float | None = None):
    """Expression (or epigraph var) equal to the clause margin at the optimum of a minimisation.

    ``block.outputs`` are the output vars; ``lo, hi``: optional bounds of the margin.
    """
    outputs = block.outputs
    if clause.C.shape[0] == 1:
        return _row_expr(outputs, clause.C[0], clause.d[0])
    if lo is not None and np.isfinite(lo):
        lo = lo - MARGIN_BOUND_SLACK * (1.0 + abs(lo))
    if hi is not None and np.isfinite(hi):
        hi = hi + MARGIN_BOUND_SLACK * (1.0 + abs(hi))
    t = pyo.Var(bounds=(lo, hi))
    block.add_component(f"{name}_t", t)
    rows = range(clause.C.shape[0])
    block.add_component(f"{name}_rows", pyo.Constraint(
        rows, rule=lambda _, r: _row_expr(outputs, clause.C[r], clause.d[r], t) <= 0))
    return t


def add_margin_objective(model: pyo.Block, block: pyo.Block, region, margin_lo, margin_hi,
                         relaxation=Relaxation.MILP, name: str = "margin",
                         margins=None) -> pyo.Objective:
    """Add ``minimise margin`` for a whole region (all its clauses) to ``model``.

    ``margin_lo, margin_hi``: ``(n_clauses,)`` sound bounds of each clause margin (e.g. from
    :func:`mipcert.bounds.clause_margin_bounds`), used for the Big-M of the clause choice.
    ``margins``: the clause margins if already built (:func:`clause_margin`), else built here.
    """
    relaxation = Relaxation.parse(relaxation)
    exprs = margins if margins is not None else [
        clause_margin(block, c, f"clause{k}", float(margin_lo[k]), float(margin_hi[k]))
        for k, c in enumerate(region.clauses)]
    if len(exprs) == 1:
        obj = pyo.Objective(expr=exprs[0], sense=pyo.minimize)
    else:
        K = range(len(exprs))
        lo_all, hi_all = float(np.min(margin_lo)), float(np.max(margin_hi))
        big_m = hi_all - lo_all
        domain = pyo.Binary if relaxation.integral else pyo.UnitInterval
        sigma = pyo.Var(K, domain=domain)
        margin = pyo.Var(bounds=(lo_all, hi_all))
        model.add_component(f"{name}_choice", sigma)
        model.add_component(name, margin)
        model.add_component(f"{name}_choose_one", pyo.Constraint(
            expr=LinearExpression(constant=0.0, linear_coefs=[1.0] * len(exprs),
                                  linear_vars=[sigma[k] for k in K]) == 1))
        model.add_component(f"{name}_ge_clause", pyo.Constraint(
            K, rule=lambda _, k: margin - exprs[k] - big_m * sigma[k] >= -big_m))
        obj = pyo.Objective(expr=margin, sense=pyo.minimize)
    model.add_component(f"{name}_objective", obj)
    return obj
