"""Compile a Pyomo model into a solver-neutral standard form.

The standard form is::

    min / max   cᵀx + c0 + Σ_k q_obj.vals[k] · x[q_obj.rows[k]] · x[q_obj.cols[k]]
    s.t.        row_lo <= A x + Σ_k q_rows[r].vals[k] · x[..] · x[..] <= row_hi   (row r)
                col_lo <= x <= col_hi,   x_j integral where integrality[j] == 1

``A`` holds the *linear* part of every row (a scipy CSR matrix, shape (m, n)); rows with
quadratic terms additionally appear in ``q_rows``. Columns are numbered in order of first
appearance (constraints in ``component_data_objects`` order, then the objective), so the
same model always compiles to the same form. Fixed variables are folded into constants and
are never columns; variables used nowhere are not columns either.

Linear constraints whose body is a ``LinearExpression`` are read directly from
``linear_coefs`` / ``linear_vars`` / ``constant`` (fast path); every other body goes through
``pyomo.repn.generate_standard_repn`` (quadratic terms allowed, anything else rejected).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from pyomo.common.gc_manager import PauseGC
from pyomo.core.base.label import cpxlp_label_from_name
from pyomo.core.expr.numeric_expr import LinearExpression
from pyomo.environ import Constraint, Objective, maximize, value
from pyomo.repn import generate_standard_repn

from ..errors import SolverError

log = logging.getLogger(__name__)

#: marker in the column map for a fixed variable (folded into constants)
FIXED = -1


@dataclass
class QuadTerms:
    """Σ_k vals[k] · x[rows[k]] · x[cols[k]] (column indices; int64, int64, float64; shape (k,))."""

    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray

    @classmethod
    def empty(cls) -> "QuadTerms":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    def __len__(self) -> int:
        return len(self.vals)

    def is_convex_min(self, n: int) -> bool:
        """True when xᵀQx (Q the symmetrised matrix, size n) is convex (PSD)."""
        if len(self) == 0:
            return True
        if np.all(self.rows == self.cols):  # separable (e.g. ||w - w0||²): check the diagonal
            diag = np.zeros(n)
            np.add.at(diag, self.rows, self.vals)
            return bool(diag.min() >= 0.0)
        q = symmetric_matrix(self, n).tocsr()
        used = np.unique(np.concatenate([self.rows, self.cols]))
        if len(used) > PSD_CHECK_MAX_DIM:
            log.debug("quadratic form over %d variables: convexity left to the solver", len(used))
            return True
        sub = q[used][:, used].toarray()
        return bool(np.linalg.eigvalsh(sub).min() >= -PSD_TOLERANCE * max(1.0, np.abs(sub).max()))


#: eigenvalue tolerance (relative to the largest |entry|) when checking a Hessian is PSD
PSD_TOLERANCE = 1e-9
#: above this many variables in a non-separable quadratic form the dense PSD check is skipped
PSD_CHECK_MAX_DIM = 2000


def symmetric_matrix(q: QuadTerms, n: int) -> sp.csc_matrix:
    """The symmetric Q (n × n) with xᵀQx = Σ_k vals[k] x_rows[k] x_cols[k]."""
    m = sp.coo_matrix((q.vals, (q.rows, q.cols)), shape=(n, n)).tocsc()
    return ((m + m.T) * 0.5).tocsc()


@dataclass
class StandardForm:
    """A Pyomo model as arrays (see the module docstring for the equations)."""

    c: np.ndarray              # (n,) objective coefficients
    c0: float                  # objective constant
    sense: str                 # 'min' | 'max'
    A: sp.csr_matrix           # (m, n) linear part of the rows
    row_lo: np.ndarray         # (m,) -inf where absent
    row_hi: np.ndarray         # (m,) +inf where absent
    col_lo: np.ndarray         # (n,)
    col_hi: np.ndarray         # (n,)
    integrality: np.ndarray    # (n,) int8: 0 continuous, 1 integer (binaries are integers in [0, 1])
    variables: list            # (n,) the Pyomo VarData of each column
    constraints: list          # (m,) the Pyomo ConstraintData of each row
    q_obj: QuadTerms | None = None
    q_rows: dict[int, QuadTerms] = field(default_factory=dict)
    objective: Any = None      # the Pyomo ObjectiveData compiled, if any
    _col_names: list[str] | None = field(default=None, repr=False)
    _row_names: list[str] | None = field(default=None, repr=False)
    registry: Any = field(default=None, repr=False)  # the column registry, to compile later objectives

    @property
    def n_cols(self) -> int:
        return len(self.c)

    @property
    def n_rows(self) -> int:
        return self.A.shape[0]

    @property
    def is_mip(self) -> bool:
        return bool(self.integrality.any())

    @property
    def is_quadratic(self) -> bool:
        return bool(self.q_rows) or (self.q_obj is not None and len(self.q_obj) > 0)

    @property
    def col_names(self) -> list[str]:
        """Pyomo full names of the columns (computed once, on first use: it is slow)."""
        if self._col_names is None:
            self._col_names = [v.name for v in self.variables]
        return self._col_names

    @property
    def row_names(self) -> list[str]:
        if self._row_names is None:
            self._row_names = [c.name for c in self.constraints]
        return self._row_names

    def lp_col_names(self) -> list[str]:
        """Column names sanitised for LP/MPS files, e.g. ``x[3,1]`` → ``x(3_1)``."""
        return _unique([cpxlp_label_from_name(s) for s in self.col_names])

    def lp_row_names(self) -> list[str]:
        return _unique([cpxlp_label_from_name(s) for s in self.row_names])

    def column_index(self) -> "ColumnIndex":
        return ColumnIndex(self)


def _unique(names: list[str]) -> list[str]:
    """Make sanitised names unique (two Pyomo names may map to one label)."""
    seen: dict[str, int] = {}
    out = []
    for s in names:
        if s in seen:
            seen[s] += 1
            s = f"{s}_{seen[s]}"
        seen.setdefault(s, 0)
        out.append(s)
    return out


class ColumnIndex:
    """Maps Pyomo VarData to columns, to read solution vectors back.

    Looked up by ``id`` while in the process that compiled the model; after pickling (for
    example a result returned from a worker process) the id map is dropped and variables are
    matched by their full Pyomo name instead.
    """

    def __init__(self, sf: StandardForm | None = None):
        self._by_id: dict[int, int] = {}
        self._names: list[str] | None = None
        self._by_name: dict[str, int] | None = None
        self._vars: list = []
        if sf is not None:
            self._vars = list(sf.variables)
            self._by_id = {id(v): j for j, v in enumerate(sf.variables)}

    def extend(self, variables: Sequence) -> None:
        start = len(self._vars)
        self._vars = self._vars + list(variables)
        for j, v in enumerate(variables):
            self._by_id[id(v)] = start + j

    def __getstate__(self) -> dict:
        names = self._names if self._names is not None else [v.name for v in self._vars]
        return {"_by_id": {}, "_names": names, "_by_name": None, "_vars": []}

    def gather(self, x: np.ndarray, variables: Iterable) -> np.ndarray:
        """x[col(v)] for each v; fixed or unused variables give their own value (see module doc)."""
        variables = _as_vardata_list(variables)
        out = np.empty(len(variables))
        by_id = self._by_id
        for i, v in enumerate(variables):
            j = by_id.get(id(v)) if by_id else self._name_lookup(v)
            out[i] = x[j] if j is not None else _off_model_value(v)
        return out

    def _name_lookup(self, v: Any) -> int | None:
        if self._by_name is None:
            self._by_name = {s: j for j, s in enumerate(self._names or [])}
        return self._by_name.get(v.name)


def _as_vardata_list(variables: Iterable) -> list:
    if getattr(variables, "is_indexed", None) is not None and variables.is_indexed():
        return list(variables.values())
    if hasattr(variables, "is_indexed"):
        return [variables]
    return list(variables)


def _off_model_value(v: Any) -> float:
    """Value of a variable that is not a column: fixed → its value; unused → any point of its domain."""
    if v.fixed:
        return float(value(v))
    lo = -math.inf if v.lb is None else v.lb
    hi = math.inf if v.ub is None else v.ub
    x = min(max(0.0, lo), hi)
    return float(math.ceil(x) if v.is_integer() else x)


class _Columns:
    """Growing column registry used while compiling."""

    def __init__(self) -> None:
        self.col_of: dict[int, int] = {}
        self.variables: list = []
        self.fixed_value: dict[int, float] = {}

    def index(self, v: Any) -> int:
        j = self.col_of.get(id(v))
        if j is not None:
            return j
        if v.fixed:
            self.col_of[id(v)] = FIXED
            self.fixed_value[id(v)] = float(value(v))
            return FIXED
        j = len(self.variables)
        self.col_of[id(v)] = j
        self.variables.append(v)
        return j

    def bounds_and_integrality(self, variables: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(variables)
        lo, hi = np.empty(n), np.empty(n)
        integ = np.zeros(n, np.int8)
        for j, v in enumerate(variables):
            lb, ub = v.lb, v.ub
            lo[j] = -math.inf if lb is None else lb
            hi[j] = math.inf if ub is None else ub
            if v.is_integer():
                integ[j] = 1
            elif not v.is_continuous():
                raise SolverError(f"variable {v.name} has an unsupported domain {v.domain}: use Reals, Integers or Binary")
        return lo, hi, integ


def _floats(seq: Sequence) -> np.ndarray:
    try:
        return np.asarray(seq, dtype=np.float64)
    except Exception:  # mutable Params or expressions among the coefficients
        return np.asarray([value(a) for a in seq], dtype=np.float64)


@dataclass
class _Expr:
    """A compiled expression: linear columns/coefficients, constant, quadratic terms."""

    cols: list[int]
    coefs: np.ndarray
    constant: float
    quad: QuadTerms | None


def compile_expression(expr: Any, columns: _Columns, what: str) -> _Expr:
    """Linear (+ quadratic) form of a Pyomo expression, registering new columns in ``columns``."""
    if type(expr) is LinearExpression:
        cols = [columns.index(v) for v in expr.linear_vars]
        coefs = _floats(expr.linear_coefs)
        const = float(value(expr.constant))
        if cols and min(cols) < 0:
            keep = [k for k, j in enumerate(cols) if j >= 0]
            for k, v in enumerate(expr.linear_vars):
                if cols[k] < 0:
                    const += coefs[k] * columns.fixed_value[id(v)]
            cols = [cols[k] for k in keep]
            coefs = coefs[keep]
        return _Expr(cols, coefs, const, None)
    repn = generate_standard_repn(expr, quadratic=True, compute_values=True)
    if repn.nonlinear_expr is not None:
        raise SolverError(
            f"{what} is nonlinear beyond quadratic ({repn.nonlinear_expr}); "
            "mipcert solves only linear and quadratic models: reformulate it")
    cols = [columns.index(v) for v in repn.linear_vars]
    coefs = _floats(repn.linear_coefs)
    quad = None
    if repn.quadratic_vars:
        qr = np.array([columns.index(a) for a, _ in repn.quadratic_vars], np.int64)
        qc = np.array([columns.index(b) for _, b in repn.quadratic_vars], np.int64)
        quad = QuadTerms(qr, qc, _floats(repn.quadratic_coefs))
    return _Expr(cols, coefs, float(value(repn.constant)), quad)


#: matrix entries at or below this magnitude are absorbed into the row bounds (HiGHS drops
#: |a| <= 1e-9 by default and SCIP treats such values as zero: silently, which changes the
#: model; absorbing them keeps every feasible point feasible)
TINY_COEFFICIENT = 1e-9


def absorb_tiny_coefficients(A: sp.csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray,
                             col_lo: np.ndarray, col_hi: np.ndarray):
    """Remove entries with ``0 < |a_rj| <= TINY_COEFFICIENT`` of bounded columns, widening
    row ``r`` by ``|a_rj| max(|lo_j|, |hi_j|)`` on both sides: the row then only relaxes
    (a sound relaxation), where a solver dropping the entry could cut off feasible points.
    Entries of unbounded columns are kept. Returns ``(A, row_lo, row_hi)`` (new arrays)."""
    if A.nnz == 0:
        return A, row_lo, row_hi
    coo = A.tocoo()
    mag = np.maximum(np.abs(col_lo), np.abs(col_hi))[coo.col]
    tiny = (np.abs(coo.data) <= TINY_COEFFICIENT) & (coo.data != 0) & np.isfinite(mag)
    if not tiny.any():
        return A, row_lo, row_hi
    slack = np.zeros(A.shape[0])
    np.add.at(slack, coo.row[tiny], np.abs(coo.data[tiny]) * mag[tiny])
    slack *= 1.0 + 1e-12
    keep = ~tiny
    A2 = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=A.shape)
    log.debug("absorbed %d tiny coefficients into the bounds of %d rows", int(tiny.sum()),
              int((slack > 0).sum()))
    return A2, row_lo - slack, row_hi + slack


def active_objectives(model: Any) -> list:
    return list(model.component_data_objects(Objective, active=True, descend_into=True))


def compile_model(model: Any, *, require_objective: bool = True) -> StandardForm:
    """Compile every active constraint and the single active objective of ``model``.

    Raises :class:`SolverError` when there is not exactly one active objective (zero is
    allowed with ``require_objective=False``: the objective is then 0, sense 'min').
    Garbage collection is paused meanwhile (as Pyomo's own writers do).
    """
    with PauseGC():
        return _compile_model(model, require_objective)


def _compile_model(model: Any, require_objective: bool) -> StandardForm:
    objectives = active_objectives(model)
    if len(objectives) > 1 or (require_objective and not objectives):
        names = ", ".join(o.name for o in objectives[:5]) or "none"
        raise SolverError(
            f"the model must have exactly one active Objective, it has {len(objectives)} ({names}); "
            "deactivate the others with obj.deactivate() or add one with "
            "model.obj = Objective(expr=..., sense=minimize)")
    columns = _Columns()
    indptr, indices, data = [0], [], []
    lo_list, hi_list, cons = [], [], []
    q_rows: dict[int, QuadTerms] = {}
    for con in model.component_data_objects(Constraint, active=True, descend_into=True):
        e = compile_expression(con.body, columns, f"constraint {con.name}")
        lb, ub = con.lb, con.ub
        if e.quad is not None:
            q_rows[len(cons)] = e.quad
        indices.extend(e.cols)
        data.append(e.coefs)
        indptr.append(len(indices))
        lo_list.append(-math.inf if lb is None else float(lb) - e.constant)
        hi_list.append(math.inf if ub is None else float(ub) - e.constant)
        cons.append(con)
    c0, sense, q_obj, obj_cols, obj_coefs, objective = 0.0, "min", None, [], np.zeros(0), None
    if objectives:
        objective = objectives[0]
        e = compile_expression(objective.expr, columns, f"objective {objective.name}")
        c0, q_obj, obj_cols, obj_coefs = e.constant, e.quad, e.cols, e.coefs
        sense = "max" if objective.sense == maximize else "min"
    n = len(columns.variables)
    c = np.zeros(n)
    np.add.at(c, np.asarray(obj_cols, np.int64), obj_coefs)
    A = sp.csr_matrix(
        (np.concatenate(data) if data else np.zeros(0), np.asarray(indices, np.int64), np.asarray(indptr, np.int64)),
        shape=(len(cons), n))
    A.sum_duplicates()
    col_lo, col_hi, integ = columns.bounds_and_integrality(columns.variables)
    row_lo, row_hi = np.asarray(lo_list, float), np.asarray(hi_list, float)
    A, row_lo, row_hi = absorb_tiny_coefficients(A, row_lo, row_hi, col_lo, col_hi)
    sf = StandardForm(c=c, c0=c0, sense=sense, A=A, row_lo=row_lo,
                      row_hi=row_hi, col_lo=col_lo, col_hi=col_hi,
                      integrality=integ, variables=columns.variables, constraints=cons,
                      q_obj=q_obj, q_rows=q_rows, objective=objective, registry=columns)
    log.debug("compiled %d rows, %d columns, %d nonzeros (%d quadratic rows)", len(cons), n, A.nnz, len(q_rows))
    return sf
