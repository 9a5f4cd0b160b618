"""mipcert.solve: solve any Pyomo model with HiGHS, SCIP or Gurobi and return sound bounds.

``solve`` never knows what the model means: it takes a ConcreteModel (or Block) with exactly
one active Objective, compiles it to a :class:`StandardForm` without Pyomo's solver plugins,
hands it to a back-end and returns an :class:`Outcome` whose ``bound`` is proven (see
``outcome.py`` for the safety margin). ``PersistentSolver`` keeps the solver model and swaps
objectives; ``write_model`` exports .lp/.mps; ``map_solves`` fans out independent solves.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError
from .backend import KNOWN_SOLVERS, Backend, IncumbentCallback, available_solvers, backend_class
from .export import write_model
from .fanout import map_solves
from .outcome import LP_BOUND_SAFETY, Outcome
from .standard_form import QuadTerms, StandardForm, compile_expression, compile_model

log = logging.getLogger(__name__)

__all__ = ["Outcome", "StandardForm", "QuadTerms", "PersistentSolver", "available_solvers", "solve",
           "write_model", "map_solves", "compile_model", "LP_BOUND_SAFETY", "KNOWN_SOLVERS"]


def solve(model: Any, solver: str = "highs", *, time_limit: float | None = None,
          stop_bound: float | None = None, on_incumbent: IncumbentCallback | None = None,
          threads: int | None = None, options: dict | None = None, verbose: bool = False) -> Outcome:
    """Solve ``model`` once with ``solver`` ('highs' | 'scip' | 'gurobi').

    stop_bound: min → stop once the proven bound is > stop_bound, max → once < stop_bound
    (status 'interrupted'). on_incumbent(get): called on every improving MIP incumbent (once
    on the final solution of an LP); ``get(vars)`` gives its values; returning True stops.
    options: passed verbatim to the solver (its own parameter names).
    """
    cls = backend_class(solver)
    sf = compile_model(model)
    backend = cls(sf, threads=threads, options=options, verbose=verbose)
    outcome = backend.solve(time_limit=time_limit, stop_bound=stop_bound, on_incumbent=on_incumbent)
    log.info("%s", outcome)
    return outcome


class PersistentSolver:
    """Build the solver model once; change the objective and re-solve (warm starts kept).

    The model's constraints are compiled at construction; later changes to the Pyomo model
    are *not* seen, except linear constraints handed to :meth:`add_constraints` (cutting
    planes). The model may have no active objective: call ``set_objective`` first.
    """

    def __init__(self, model: Any, solver: str = "highs", *, threads: int | None = None,
                 options: dict | None = None, verbose: bool = False):
        cls = backend_class(solver)
        self.model = model
        self.solver = str(solver).lower()
        self.sf = compile_model(model, require_objective=False)
        self._has_objective = self.sf.objective is not None
        self.backend: Backend = cls(self.sf, threads=threads, options=options, verbose=verbose)

    def _register(self) -> None:
        """Tell the back-end about variables the registry numbered since the last call
        (first used by a new objective or a new row): they become new columns."""
        registry = self.sf.registry
        new = registry.variables[len(self.backend.index._vars):]
        if new:
            lo, hi, integ = registry.bounds_and_integrality(new)
            self.backend.add_columns(lo, hi, integ)
            self.backend.index.extend(new)

    def add_constraints(self, constraints) -> int:
        """Compile linear Pyomo constraints (ConstraintData, e.g. the new members of a
        ConstraintList) and append them to the solver model as rows; returns how many.

        The rows join the persistent model: nothing is rebuilt and the next ``solve`` warm
        starts. Quadratic constraints are refused.
        """
        registry = self.sf.registry
        indptr, indices, data, lo, hi = [0], [], [], [], []
        for con in constraints:
            e = compile_expression(con.body, registry, f"constraint {con.name}")
            if e.quad is not None:
                raise SolverError(f"constraint {con.name} is quadratic: add_constraints takes "
                                  "linear rows only")
            indices.extend(e.cols)
            data.append(np.asarray(e.coefs, float))
            indptr.append(len(indices))
            lo.append(-np.inf if con.lb is None else float(con.lb) - e.constant)
            hi.append(np.inf if con.ub is None else float(con.ub) - e.constant)
        if len(indptr) == 1:
            return 0
        self._register()
        A = sp.csr_matrix((np.concatenate(data), np.asarray(indices, np.int64),
                           np.asarray(indptr, np.int64)),
                          shape=(len(lo), len(registry.variables)))
        A.sum_duplicates()
        self.backend.add_rows(A, np.asarray(lo), np.asarray(hi))
        return len(lo)

    def set_objective(self, expr: Any, sense: str = "min") -> None:
        """Replace the objective with ``expr`` (a Pyomo linear or quadratic expression)."""
        self.use_objective(self.compile_objective(expr, sense))

    def compile_objective(self, expr: Any, sense: str = "min"):
        """``expr`` compiled for :meth:`use_objective`. The two halves of
        :meth:`set_objective`: this one reads the Pyomo model, ``use_objective`` touches
        only the solver, so a model built in one thread can be solved in another."""
        if sense not in ("min", "max"):
            raise SolverError(f"sense must be 'min' or 'max', not {sense!r}")
        registry = self.sf.registry
        e = compile_expression(expr, registry, "objective")
        self._register()
        c = np.zeros(len(registry.variables))
        np.add.at(c, np.asarray(e.cols, np.int64), e.coefs)
        return c, e.constant, sense, e.quad

    def use_objective(self, compiled) -> None:
        """Make a :meth:`compile_objective` result the objective."""
        self.backend.set_objective(*compiled)
        self._has_objective = True

    def reset(self) -> bool:
        """Drop what earlier solves left in the solver (solution, basis, incumbents) but keep
        the model; True when the back-end guarantees the next solve then behaves as on a
        freshly built solver (HiGHS, Gurobi), False otherwise (SCIP keeps the best solutions
        of earlier solves when its transformed problem is freed)."""
        return self.backend.reset()

    def solve(self, *, time_limit: float | None = None, stop_bound: float | None = None,
              on_incumbent: IncumbentCallback | None = None, start=None) -> Outcome:
        """Solve with the current objective; see :func:`solve` for the arguments.

        ``start``: optional ``[(var, value), ...]`` offered to the solver as a starting
        point (a MIP start; variables not in the model are skipped).
        """
        if not self._has_objective:
            raise SolverError("PersistentSolver has no objective: call set_objective(expr, sense) first")
        if start:
            by_id = self.backend.index._by_id
            pairs = [(by_id[id(v)], float(val)) for v, val in start if id(v) in by_id]
            if pairs:
                cols, vals = (np.array(t) for t in zip(*pairs))
                self.backend.set_start(cols, vals)
        outcome = self.backend.solve(time_limit=time_limit, stop_bound=stop_bound, on_incumbent=on_incumbent)
        log.info("%s", outcome)
        return outcome
