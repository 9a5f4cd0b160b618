"""Small models with known optima for the solve tests (helpers; fixtures live in conftest.py)."""
from __future__ import annotations

import numpy as np
import pyomo.environ as pe

from mipcert.solve import available_solvers

SOLVERS = available_solvers()
QUAD_SOLVERS = [s for s in SOLVERS if s in ("scip", "gurobi")]

#: tolerance when comparing an optimal bound / value with a known optimum
TOL = 1e-6


def lp_model() -> pe.ConcreteModel:
    """min -x - 2y s.t. x + y <= 4, x + 3y <= 6, 0 <= x <= 3, y >= 0, plus a ranged row.

    Optimum at (3, 1): -5; the objective constant 10 makes it 5.
    """
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, 3))
    m.y = pe.Var(within=pe.NonNegativeReals)
    m.c1 = pe.Constraint(expr=m.x + m.y <= 4)
    m.c2 = pe.Constraint(expr=m.x + 3 * m.y <= 6)
    m.r = pe.Constraint(expr=pe.inequality(-10, m.x - m.y, 10))
    m.obj = pe.Objective(expr=-m.x - 2 * m.y + 10)
    return m


LP_OPT = 5.0


def knapsack(values=(10, 13, 7, 8, 4), weights=(5, 7, 4, 5, 3), cap=12) -> pe.ConcreteModel:
    """max Σ v x s.t. Σ w x <= cap, x binary. Optimum 23 (items 0, 1); LP relaxation 23.857..."""
    m = pe.ConcreteModel()
    m.I = pe.RangeSet(0, len(values) - 1)
    m.x = pe.Var(m.I, domain=pe.Binary)
    m.cap = pe.Constraint(expr=sum(weights[i] * m.x[i] for i in m.I) <= cap)
    m.obj = pe.Objective(expr=sum(values[i] * m.x[i] for i in m.I), sense=pe.maximize)
    return m


KNAP_OPT = 23.0
def fractional_knapsack() -> pe.ConcreteModel:
    """A 0/1 knapsack whose LP relaxation (10.5) is weaker than its optimum (10)."""
    return knapsack(values=(6, 5, 4), weights=(4, 3, 2), cap=6)


# values (6, 5, 4), weights (4, 3, 2), cap 6: MILP optimum 10 (x0 + x2 = 6 → 10, or x1 + x2: 9);
# LP relaxation: ratios 1.5, 1.667, 2 → x2 = 1 (w 2), x1 = 1 (w 5), x0 = 1/4 → 4 + 5 + 1.5 = 10.5
FRAC_OPT, FRAC_LP = 10.0, 10.5


def hard_knapsack(n: int = 30, m: int = 5, seed: int = 0) -> pe.ConcreteModel:
    """Strongly correlated multi-dimensional 0/1 knapsack: HiGHS needs a few seconds."""
    rng = np.random.default_rng(seed)
    W = rng.integers(20, 100, (m, n))
    v = W.sum(axis=0) // m + rng.integers(0, 10, n)
    M = pe.ConcreteModel()
    M.J = pe.RangeSet(0, n - 1)
    M.K = pe.RangeSet(0, m - 1)
    M.x = pe.Var(M.J, domain=pe.Binary)
    M.cap = pe.Constraint(M.K, rule=lambda M, k: sum(int(W[k, j]) * M.x[j] for j in M.J) <= int(W[k].sum() // 2))
    M.obj = pe.Objective(expr=sum(int(v[j]) * M.x[j] for j in M.J), sense=pe.maximize)
    return M


def infeasible_model() -> pe.ConcreteModel:
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, 1))
    m.y = pe.Var(domain=pe.Binary)
    m.c = pe.Constraint(expr=m.x + m.y >= 3)
    m.obj = pe.Objective(expr=m.x)
    return m


def bilinear_model() -> pe.ConcreteModel:
    """max z s.t. z == x * y, x + y <= 3, x, y in [0, 2]: optimum 2.25 at x = y = 1.5 (nonconvex)."""
    q = pe.ConcreteModel()
    q.x = pe.Var(bounds=(0, 2))
    q.y = pe.Var(bounds=(0, 2))
    q.z = pe.Var(bounds=(-10, 10))
    q.prod = pe.Constraint(expr=q.x * q.y == q.z)
    q.s = pe.Constraint(expr=q.x + q.y <= 3)
    q.obj = pe.Objective(expr=q.z, sense=pe.maximize)
    return q


BILINEAR_OPT = 2.25


def market_split(m: int = 4, n: int = 30, seed: int = 0) -> pe.ConcreteModel:
    """Market split (Cornuéjols & Dawande) with a planted solution: optimum exactly 0.

    min Σ_k (s⁺_k + s⁻_k) s.t. Σ_j a_kj x_j + s⁺_k - s⁻_k = d_k, x binary, d = A x* for a
    random binary x*. Its LP bound is 0 everywhere, and proving/finding 0 takes every
    solver well over a second at this size.
    """
    rng = np.random.default_rng(seed)
    A = rng.integers(0, 100, (m, n))
    d = A @ rng.integers(0, 2, n)
    M = pe.ConcreteModel()
    M.J = pe.RangeSet(0, n - 1)
    M.K = pe.RangeSet(0, m - 1)
    M.x = pe.Var(M.J, domain=pe.Binary)
    M.sp = pe.Var(M.K, within=pe.NonNegativeReals)
    M.sm = pe.Var(M.K, within=pe.NonNegativeReals)
    M.split = pe.Constraint(M.K, rule=lambda M, k: sum(int(A[k, j]) * M.x[j] for j in M.J)
                            + M.sp[k] - M.sm[k] == int(d[k]))
    M.obj = pe.Objective(expr=sum(M.sp[k] + M.sm[k] for k in M.K))
    return M


MARKET_SPLIT_OPT = 0.0
