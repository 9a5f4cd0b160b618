"""What a solve proved and what it found (ARCHITECTURE "Sound outcomes", FORMULATIONS 1.5).

``bound`` is the only number a certificate may use. It is the solver's proven dual bound
(min: a lower bound on the optimum; max: an upper bound), moved outward by
:data:`LP_BOUND_SAFETY` because every solver proves it only up to floating-point tolerances:

    min:  bound = dual - LP_BOUND_SAFETY * (1 + |dual|)
    max:  bound = dual + LP_BOUND_SAFETY * (1 + |dual|)

The same margin is applied to LP optima (the objective of an optimal simplex basis, optimal
only within the feasibility / optimality tolerances) and to MIP dual bounds, by every back-end.
Infeasible: +inf (min) / -inf (max). Nothing proven: -inf (min) / +inf (max).
``value`` is the best incumbent's objective: never a certificate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import SolverError

#: relative outward margin applied to every finite proven bound (see the module docstring)
LP_BOUND_SAFETY = 1e-9

STATUSES = ("optimal", "infeasible", "time_limit", "interrupted", "unbounded", "error")


def safe_bound(dual: float, sense: str) -> float:
    """Move a solver's dual bound outward by LP_BOUND_SAFETY; ±inf and nan handled."""
    if dual is None or math.isnan(dual):
        return nothing_proven(sense)
    if math.isinf(dual):
        return dual
    margin = LP_BOUND_SAFETY * (1.0 + abs(dual))
    return dual - margin if sense == "min" else dual + margin


def nothing_proven(sense: str) -> float:
    """The trivial bound: -inf for a minimisation, +inf for a maximisation."""
    return -math.inf if sense == "min" else math.inf


def infeasible_bound(sense: str) -> float:
    """The bound of an empty feasible set: +inf for a minimisation, -inf for a maximisation."""
    return math.inf if sense == "min" else -math.inf


def bound_passes(bound: float, stop_bound: float | None, sense: str) -> bool:
    """True when ``bound`` proves the optimum is beyond ``stop_bound`` (min: >, max: <)."""
    if stop_bound is None or bound is None or math.isnan(bound):
        return False
    return bound > stop_bound if sense == "min" else bound < stop_bound


@dataclass
class Outcome:
    """The result of one solve. Only ``bound`` is proven; see the module docstring."""

    status: str            # one of STATUSES
    sense: str             # 'min' | 'max'
    bound: float           # proven dual bound (safety margin applied)
    value: float | None    # best incumbent objective, None without one
    seconds: float
    solver: str
    gap: float | None = None
    nodes: int | None = None
    message: str = ""
    _x: np.ndarray | None = field(default=None, repr=False, compare=False)
    _index: Any = field(default=None, repr=False, compare=False)

    @property
    def has_solution(self) -> bool:
        """True when the solver returned an incumbent (a feasible point, not a certificate)."""
        return self._x is not None

    def values(self, variables: Iterable) -> np.ndarray:
        """Incumbent values (float64, one per variable) of a sequence of Pyomo VarData.

        Fixed variables give their fixed value; variables in no constraint nor the objective
        give a point of their domain (0 clipped to their bounds). Raises SolverError without
        an incumbent.
        """
        if self._x is None or self._index is None:
            raise SolverError(
                f"no incumbent to read: the {self.solver} solve ended with status '{self.status}'"
                f"{' (' + self.message + ')' if self.message else ''}; check outcome.has_solution first")
        return self._index.gather(self._x, variables)

    @property
    def proven_infeasible(self) -> bool:
        return self.status == "infeasible"

    def __str__(self) -> str:
        val = "none" if self.value is None else f"{self.value:.10g}"
        return (f"{self.solver}: {self.status}, {self.sense} bound {self.bound:.10g}, incumbent {val}, "
                f"{self.seconds:.2f}s")
