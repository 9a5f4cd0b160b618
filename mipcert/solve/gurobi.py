"""Gurobi back-end (gurobipy, optional): LP, MILP, QP, (nonconvex) quadratic constraints.

The model is built with the matrix API (``addMVar`` / ``addMConstr`` / ``addMQConstr``).
The size-limited licence that ships with ``pip install gurobipy`` is detected before the
model is built (a one-off probe, cached), so the user gets a :class:`SolverLicenseError`
naming the model's size and the fix instead of Gurobi's error 10010 mid-run.
"""
from __future__ import annotations

import logging
import math
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError, SolverLicenseError, SolverUnavailableError
from .backend import Backend, EarlyStop, IncumbentCallback, Timer, finite_or_none
from .outcome import LP_BOUND_SAFETY, Outcome, infeasible_bound, nothing_proven, safe_bound
from .scip import STOP_MARGIN
from .standard_form import QuadTerms, StandardForm

log = logging.getLogger(__name__)

try:
    import gurobipy as gp
    from gurobipy import GRB
except ImportError:
    gp = None

#: limits of Gurobi's size-limited (pip) licence
RESTRICTED_MAX_SIZE = 2000
RESTRICTED_MAX_SIZE_QUADRATIC = 200
_MODEL_TOO_LARGE = 10010


def require() -> None:
    if gp is None:
        raise SolverUnavailableError("gurobipy is not installed: pip install gurobipy, or use --solver highs|scip")
    _env()


@lru_cache(maxsize=1)
def _env():
    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    try:
        env.start()
    except gp.GurobiError as exc:
        raise SolverLicenseError(f"Gurobi could not start ({exc}); check GRB_LICENSE_FILE, "
                                 "or use --solver highs|scip") from exc
    return env


@lru_cache(maxsize=1)
def licence_is_size_limited() -> bool:
    """Solve a probe just over the restricted size once; True if Gurobi refuses it."""
    m = gp.Model(env=_env())
    x = m.addMVar(RESTRICTED_MAX_SIZE + 1, lb=0.0, ub=1.0)
    m.setObjective(x.sum())
    try:
        m.optimize()
    except gp.GurobiError as exc:
        if exc.errno == _MODEL_TOO_LARGE:
            return True
        raise
    finally:
        m.dispose()
    return False


def _licence_error(n_vars: int, n_cons: int, quadratic: bool) -> SolverLicenseError:
    limit = RESTRICTED_MAX_SIZE_QUADRATIC if quadratic else RESTRICTED_MAX_SIZE
    return SolverLicenseError(
        f"the model has {n_vars} variables and {n_cons} constraints{' and quadratic terms' if quadratic else ''}, "
        f"but this Gurobi licence is the size-limited one shipped with pip install gurobipy: it allows at most "
        f"{RESTRICTED_MAX_SIZE} variables and {RESTRICTED_MAX_SIZE} constraints "
        f"({RESTRICTED_MAX_SIZE_QUADRATIC} when the model has quadratic constraints or a quadratic objective; "
        f"limit here {limit}). "
        "Use --solver highs or --solver scip, or install a full or academic licence and point "
        "GRB_LICENSE_FILE at it")


def check_licence_size(n_vars: int, n_cons: int, quadratic: bool) -> None:
    """Raise SolverLicenseError when a model of this size is over the size-limited licence
    that ``pip install gurobipy`` ships (and that licence is the one in use)."""
    limit = RESTRICTED_MAX_SIZE_QUADRATIC if quadratic else RESTRICTED_MAX_SIZE
    if (n_vars > limit or n_cons > limit) and licence_is_size_limited():
        raise _licence_error(n_vars, n_cons, quadratic)


def _attr(m, name: str) -> float | None:
    """A model attribute, or None where Gurobi has none for this status."""
    try:
        return float(getattr(m, name))
    except (AttributeError, gp.GurobiError):
        return None


_STATUS = {}
if gp is not None:
    _STATUS = {GRB.OPTIMAL: "optimal", GRB.INFEASIBLE: "infeasible", GRB.UNBOUNDED: "unbounded",
               GRB.TIME_LIMIT: "time_limit", GRB.INTERRUPTED: "interrupted",
               GRB.USER_OBJ_LIMIT: "interrupted", GRB.NODE_LIMIT: "interrupted",
               GRB.SOLUTION_LIMIT: "interrupted", GRB.ITERATION_LIMIT: "interrupted",
               GRB.SUBOPTIMAL: "interrupted", GRB.WORK_LIMIT: "interrupted"}


class GurobiBackend(Backend):
    name = "gurobi"

    def __init__(self, sf: StandardForm, *, threads: int | None = None,
                 options: dict | None = None, verbose: bool = False):
        super().__init__(sf, threads=threads, options=options, verbose=verbose)
        check_licence_size(sf.n_cols, sf.n_rows, sf.is_quadratic)
        self._counts = (sf.n_cols, sf.n_rows, sf.is_quadratic)
        self._quad_rows = bool(sf.q_rows)
        m = self.m = gp.Model("mipcert", env=_env())
        m.setParam("OutputFlag", 1 if verbose else 0)
        if threads is not None:
            m.setParam("Threads", int(threads))
        for key, val in self.options.items():
            try:
                m.setParam(str(key), val)
            except gp.GurobiError as exc:
                raise SolverError(f"Gurobi does not accept parameter {key}={val!r}: {exc}") from exc
        self.xs: list = []
        self.add_columns(sf.col_lo, sf.col_hi, sf.integrality)
        self._add_rows(sf)
        self.set_objective(sf.c, sf.c0, sf.sense, sf.q_obj)

    @property
    def x(self):
        return self.xs[0] if len(self.xs) == 1 else gp.MVar.fromlist(sum((v.tolist() for v in self.xs), []))

    def add_columns(self, lo: np.ndarray, hi: np.ndarray, integrality: np.ndarray) -> None:
        if len(lo) == 0:
            return
        vtype = np.where(integrality > 0, GRB.INTEGER, GRB.CONTINUOUS)
        self.xs.append(self.m.addMVar(len(lo), lb=np.asarray(lo, float), ub=np.asarray(hi, float), vtype=vtype))
        if integrality.any():
            self.is_mip = True
        self.n_cols = sum(v.shape[0] for v in self.xs)

    def add_rows(self, A, lo: np.ndarray, hi: np.ndarray) -> None:
        A = sp.csr_matrix(A)
        n_vars, n_cons, quadratic = self._counts
        n_cons += A.shape[0]
        check_licence_size(n_vars, n_cons, quadratic)
        self._counts = (n_vars, n_cons, quadratic)
        self._linear_rows(A, np.ones(A.shape[0], bool), np.asarray(lo, float),
                          np.asarray(hi, float))

    def _linear_rows(self, A, lin, lo, hi) -> None:
        x = self.x
        eq = lin & (lo == hi)
        le = lin & ~eq & np.isfinite(hi)
        ge = lin & ~eq & np.isfinite(lo)
        for mask, sense, rhs in ((eq, GRB.EQUAL, hi), (le, GRB.LESS_EQUAL, hi), (ge, GRB.GREATER_EQUAL, lo)):
            if mask.any():
                self.m.addMConstr(A[mask], x, sense, rhs[mask])

    def _add_rows(self, sf: StandardForm) -> None:
        A, x = sf.A.tocsr(), self.x
        lin = np.array([r not in sf.q_rows for r in range(sf.n_rows)], bool)
        lo, hi = sf.row_lo, sf.row_hi
        self._linear_rows(A, lin, lo, hi)
        n = sf.n_cols
        for r, q in sf.q_rows.items():
            Q = sp.coo_matrix((q.vals, (q.rows, q.cols)), shape=(n, n)).tocsr()
            c = A[r].toarray().ravel()
            for sense, rhs in ((GRB.EQUAL, hi[r]),) if lo[r] == hi[r] else (
                    (GRB.LESS_EQUAL, hi[r]), (GRB.GREATER_EQUAL, lo[r])):
                if math.isfinite(rhs):
                    self.m.addMQConstr(Q, c, sense, float(rhs), x, x, x)

    def set_objective(self, c: np.ndarray, c0: float, sense: str, quad: QuadTerms | None) -> None:
        n, x = self.n_cols, self.x
        gsense = GRB.MINIMIZE if sense == "min" else GRB.MAXIMIZE
        Q = None
        if quad is not None and len(quad):
            Q = sp.coo_matrix((quad.vals, (quad.rows, quad.cols)), shape=(n, n)).tocsr()
        self.m.setMObjective(Q, np.asarray(c, float), float(c0), x if Q is not None else None,
                             x if Q is not None else None, x, gsense)
        self.sense = sense
        if Q is not None and hasattr(self, "_counts"):
            self._counts = (self._counts[0], self._counts[1], True)

    def reset(self) -> bool:
        self.m.reset(1)  # clearall: solution, basis and MIP start information
        return True

    def set_start(self, cols: np.ndarray, values: np.ndarray) -> None:
        start = np.full(self.n_cols, GRB.UNDEFINED)
        start[np.asarray(cols, np.int64)] = values
        self.x.Start = start

    def solve(self, *, time_limit: float | None = None, stop_bound: float | None = None,
              on_incumbent: IncumbentCallback | None = None) -> Outcome:
        m, sense = self.m, self.sense
        m.setParam("TimeLimit", float(time_limit) if time_limit is not None else GRB.INFINITY)
        if stop_bound is not None:
            shift = STOP_MARGIN * LP_BOUND_SAFETY * (1.0 + abs(stop_bound))
            m.setParam("BestBdStop", stop_bound + shift if sense == "min" else stop_bound - shift)
        else:
            m.setParam("BestBdStop", GRB.INFINITY if sense == "min" else -GRB.INFINITY)
        stop = EarlyStop(self.index, sense, stop_bound, on_incumbent)
        x = self.x
        mip_like = self.is_mip or self._quad_rows

        def callback(model, where) -> None:
            if where == GRB.Callback.MIPSOL and on_incumbent is not None:
                vals = np.asarray(model.cbGetSolution(x), dtype=np.float64)
                obj = model.cbGet(GRB.Callback.MIPSOL_OBJ)
                dual = safe_bound(model.cbGet(GRB.Callback.MIPSOL_OBJBND), sense)
                if stop.incumbent(vals, obj, dual):
                    model.terminate()

        timer = Timer()
        try:
            m.optimize(callback if (mip_like and on_incumbent is not None) else None)
        except gp.GurobiError as exc:
            if exc.errno == _MODEL_TOO_LARGE:
                raise _licence_error(self.n_cols, self._counts[1], self._counts[2]) from exc
            raise SolverError(f"Gurobi failed: {exc}") from exc
        seconds = timer()
        stop.reraise()
        if m.Status == GRB.INF_OR_UNBD:
            m.setParam("DualReductions", 0)
            try:
                m.optimize()
            finally:
                m.setParam("DualReductions", 1)
            seconds = timer()
        outcome = self._outcome(seconds, stop, mip_like)
        if not mip_like and on_incumbent is not None and outcome.has_solution:
            stop.incumbent(outcome._x, outcome.value, outcome.bound)
            stop.reraise()
        return outcome

    def _outcome(self, seconds: float, stop: EarlyStop, mip_like: bool) -> Outcome:
        m, sense = self.m, self.sense
        st = m.Status
        status = _STATUS.get(st, "error")
        x = value = None
        if m.SolCount > 0:
            try:
                x = np.asarray(self.x.X, dtype=np.float64)
                value = float(m.ObjVal)
            except (AttributeError, gp.GurobiError):
                x = value = None
        if mip_like:
            dual = safe_bound(_attr(m, "ObjBound"), sense) if status != "infeasible" else None
        else:
            dual = safe_bound(_attr(m, "ObjVal"), sense) if status == "optimal" else nothing_proven(sense)
        message = f"gurobi status {st}"
        if status == "infeasible":
            dual, x, value = infeasible_bound(sense), None, None
        elif status == "unbounded":
            dual = nothing_proven(sense)
        elif st == GRB.INF_OR_UNBD:
            status, dual, message = "unbounded", nothing_proven(sense), "unbounded or infeasible"
        elif status == "interrupted" or stop.stopped:
            status = "interrupted"
            message = stop.reason or ("stopped: dual bound passed stop_bound" if st == GRB.USER_OBJ_LIMIT else message)
            if stop.stop_x is not None:
                x, value = stop.stop_x, float(stop.stop_value)
        elif status == "error":
            dual = nothing_proven(sense)
            log.warning("Gurobi ended with status %s", st)
        gap = finite_or_none(_attr(m, "MIPGap")) if mip_like and x is not None else None
        nodes = _attr(m, "NodeCount") if mip_like else None
        nodes = None if nodes is None else int(nodes)
        return Outcome(status=status, sense=sense, bound=dual, value=value, seconds=seconds,
                       solver=self.name, gap=gap, nodes=nodes, message=message,
                       _x=x, _index=self.index if x is not None else None)


BACKEND = GurobiBackend
