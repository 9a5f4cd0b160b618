"""Properties to verify: an input set and an *unsafe* output set (the VNNLIB reading).

A :class:`Specification` is a list of :class:`Region`; a region is an input box plus a
disjunction of :class:`Clause`; a clause is a conjunction of linear rows ``C y <= d``.
The network violates the property (``sat``: a counterexample exists) iff for some region
there is an ``x`` in its box whose output ``y = f(x)`` satisfies every row of some clause.

Margins (the objective every encoder minimises)::

    clause margin   m_k(y) = max_r (C_k y - d_k)_r       (<= 0  <=>  clause holds: unsafe)
    region margin   m(y)   = min_k m_k(y)
    property holds (unsat)  <=>  min over regions and x in the box of m(f(x)) > 0

Non-strict and strict inequalities are both read as non-strict (the unsafe set is closed),
which can only turn a boundary point into a counterexample, never hide one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SpecificationError


@dataclass(eq=False)
class Clause:
    """Conjunction ``C y <= d``; ``C``: ``(rows, n_outputs)``, ``d``: ``(rows,)``."""

    C: np.ndarray
    d: np.ndarray

    def __post_init__(self):
        self.C = np.atleast_2d(np.asarray(self.C, dtype=np.float64))
        self.d = np.asarray(self.d, dtype=np.float64).reshape(-1)
        if self.C.shape[0] != self.d.shape[0]:
            raise SpecificationError(
                f"clause has {self.C.shape[0]} rows but {self.d.shape[0]} right-hand sides")

    def margin(self, y: np.ndarray) -> np.ndarray:
        """``max_r (C y - d)_r`` for ``y``: ``(batch, m)`` → ``(batch,)``."""
        y = np.atleast_2d(y)
        return np.max(y @ self.C.T - self.d, axis=1)


@dataclass(eq=False)
class Region:
    """Input box ``lo <= x <= hi`` (each ``(n,)``) and an output disjunction of clauses."""

    lo: np.ndarray
    hi: np.ndarray
    clauses: list[Clause] = field(default_factory=list)

    def __post_init__(self):
        self.lo = np.asarray(self.lo, dtype=np.float64).reshape(-1)
        self.hi = np.asarray(self.hi, dtype=np.float64).reshape(-1)
        if self.lo.shape != self.hi.shape:
            raise SpecificationError("input box bounds have different sizes")
        if not (np.all(np.isfinite(self.lo)) and np.all(np.isfinite(self.hi))):
            raise SpecificationError(
                "every input needs a finite lower and upper bound; add the missing "
                "(assert (>= X_i ...)) / (assert (<= X_i ...)) lines")
        if np.any(self.lo > self.hi):
            i = int(np.argmax(self.lo > self.hi))
            raise SpecificationError(
                f"the input set is empty: X_{i} must be >= {self.lo[i]} and <= {self.hi[i]}")
        if not self.clauses:
            raise SpecificationError("the region has no output constraint to check")

    def margin(self, y: np.ndarray) -> np.ndarray:
        """Region margin ``min_k m_k(y)``, ``(batch,)``."""
        return np.min(np.stack([c.margin(y) for c in self.clauses]), axis=0)

    def contains(self, x: np.ndarray, tol: float = 0.0) -> np.ndarray:
        x = np.atleast_2d(x)
        return np.all((x >= self.lo - tol) & (x <= self.hi + tol), axis=1)


@dataclass(eq=False)
class Specification:
    """A property over a network with ``n_inputs`` inputs and ``n_outputs`` outputs."""

    regions: list[Region]
    n_inputs: int
    n_outputs: int
    name: str = "property"

    def __post_init__(self):
        if not self.regions:
            raise SpecificationError(f"{self.name}: the specification has no input region")
        for r in self.regions:
            if r.lo.size != self.n_inputs:
                raise SpecificationError(
                    f"{self.name}: an input box has {r.lo.size} variables, expected {self.n_inputs}")
            for c in r.clauses:
                if c.C.shape[1] != self.n_outputs:
                    raise SpecificationError(
                        f"{self.name}: an output constraint has {c.C.shape[1]} columns, "
                        f"expected {self.n_outputs}")

    def check_network(self, network) -> None:
        """Raise a clear error when the network's sizes do not match this property."""
        if network.input_size != self.n_inputs or network.output_size != self.n_outputs:
            raise SpecificationError(
                f"{self.name} speaks of {self.n_inputs} inputs and {self.n_outputs} outputs "
                f"but the network has {network.input_size} inputs and {network.output_size} "
                "outputs: pair the property with the network it was written for")


def robustness_spec(x0, label: int, eps: float, n_outputs: int, *, target: int | None = None,
                    input_lo: float | np.ndarray = -np.inf, input_hi: float | np.ndarray = np.inf,
                    name: str | None = None) -> Specification:
    """Classification robustness (FORMULATIONS 2) of ``x0`` with true class ``label``.

    Input set: ``[x0 - eps, x0 + eps] ∩ [input_lo, input_hi]``. Untargeted (CR): one clause
    ``z_label - z_t <= 0`` per ``t != label``; targeted: only ``t = target``.
    """
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    if not np.isfinite(eps) or eps < 0:
        raise SpecificationError(f"eps must be a finite number >= 0, got {eps}")
    if not 0 <= label < n_outputs:
        raise SpecificationError(f"label {label} is not a class index in [0, {n_outputs})")
    targets = [t for t in range(n_outputs) if t != label] if target is None else [target]
    if target is not None and (target == label or not 0 <= target < n_outputs):
        raise SpecificationError(f"target {target} must be a class other than the label {label}")
    lo = np.maximum(x0 - eps, input_lo)
    hi = np.minimum(x0 + eps, input_hi)
    if np.any(lo > hi):
        raise SpecificationError("x0 lies outside the input domain")
    clauses = []
    for t in targets:
        C = np.zeros((1, n_outputs))
        C[0, label], C[0, t] = 1.0, -1.0
        clauses.append(Clause(C, np.zeros(1)))
    return Specification([Region(lo, hi, clauses)], x0.size, n_outputs,
                         name=name or f"robustness(label={label}, eps={eps})")
