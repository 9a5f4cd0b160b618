"""SCIP back-end (pyscipopt >= 5): LP, MILP, and (nonconvex) quadratic constraints/objectives.

Rows are added as ``ExprCons`` built directly from term dictionaries (no operator overloading
per coefficient). A quadratic objective becomes ``min t`` with ``q(x) + cᵀx + c0 <= t`` (``>=``
for max), since SCIP objectives are linear. ``stop_bound`` uses SCIP's ``limits/dual``
(stop once the dual bound is at least as good as the value); incumbents are seen by an event
handler on BESTSOLFOUND, which calls ``interruptSolve`` when ``on_incumbent`` says stop.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError, SolverUnavailableError
from .backend import Backend, EarlyStop, IncumbentCallback, Timer, finite_or_none
from .outcome import LP_BOUND_SAFETY, Outcome, infeasible_bound, nothing_proven, safe_bound
from .standard_form import QuadTerms, StandardForm

log = logging.getLogger(__name__)

try:
    import pyscipopt
    from pyscipopt.scip import Expr, ExprCons, Term
except ImportError:
    pyscipopt = None

#: how far past stop_bound (relative, in units of LP_BOUND_SAFETY) limits/dual is set, so that
#: the dual bound SCIP stops at still passes stop_bound after the safety margin
STOP_MARGIN = 3.0


def require() -> None:
    if pyscipopt is None:
        raise SolverUnavailableError("pyscipopt is not installed: pip install pyscipopt, or use --solver highs")


def _scip_bound(x: float, inf: float) -> float:
    return math.inf if x >= inf else (-math.inf if x <= -inf else float(x))


if pyscipopt is not None:
    class _Events(pyscipopt.Eventhdlr):
        """Sees every new best solution; asks the current EarlyStop whether to interrupt."""

        def __init__(self, backend: "ScipBackend"):
            super().__init__()
            self.backend = backend
            self.stop: EarlyStop | None = None

        def eventinit(self) -> None:
            self.model.catchEvent(pyscipopt.SCIP_EVENTTYPE.BESTSOLFOUND, self)

        def eventexit(self) -> None:
            self.model.dropEvent(pyscipopt.SCIP_EVENTTYPE.BESTSOLFOUND, self)

        def eventexec(self, event) -> None:
            stop = self.stop
            if stop is None or stop.on_incumbent is None or stop.stopped:
                return
            m = self.model
            sol = m.getBestSol()
            x = np.array([m.getSolVal(sol, v) for v in self.backend.vars], dtype=np.float64)
            dual = safe_bound(_scip_bound(m.getDualbound(), m.infinity()), self.backend.sense)
            if stop.incumbent(x, float(m.getSolObjVal(sol)), dual):
                m.interruptSolve()


class ScipBackend(Backend):
    name = "scip"

    def __init__(self, sf: StandardForm, *, threads: int | None = None,
                 options: dict | None = None, verbose: bool = False):
        super().__init__(sf, threads=threads, options=options, verbose=verbose)
        self.has_quad_rows = bool(sf.q_rows)
        m = self.m = pyscipopt.Model("mipcert")
        if not verbose:
            m.hideOutput()
        if threads not in (None, 1):
            log.debug("SCIP solves with one thread; threads=%s ignored", threads)
        for key, val in self.options.items():
            try:
                m.setParam(str(key), val)
            except Exception as exc:  # pyscipopt raises KeyError / LookupError
                raise SolverError(f"SCIP does not accept parameter {key}={val!r}: {exc}") from exc
        self.vars: list = []
        self.add_columns(sf.col_lo, sf.col_hi, sf.integrality)
        self._add_rows(sf)
        self._aux = None        # epigraph variable of a quadratic objective
        self._starts = 0        # partial solutions given to SCIP so far (it keeps them all)
        self._aux_cons = None
        self.events = _Events(self)
        m.includeEventhdlr(self.events, "mipcert_incumbents", "mipcert early stops")
        self._objective_set = False
        self.set_objective(sf.c, sf.c0, sf.sense, sf.q_obj)

    def _var(self, j: int, lo: float, hi: float, integer: bool):
        vtype = "I" if integer else "C"
        if integer and lo >= 0 and hi <= 1:
            vtype = "B"
        lb = None if math.isinf(lo) else float(lo)
        ub = None if math.isinf(hi) else float(hi)
        return self.m.addVar(name=f"x{j}", vtype=vtype, lb=lb, ub=ub)

    def add_columns(self, lo: np.ndarray, hi: np.ndarray, integrality: np.ndarray) -> None:
        if len(lo) and getattr(self, "_objective_set", False):
            self.m.freeTransform()
        start = len(self.vars)
        for k in range(len(lo)):
            self.vars.append(self._var(start + k, lo[k], hi[k], bool(integrality[k])))
        if integrality.any():
            self.is_mip = True
        self.n_cols = len(self.vars)

    def add_rows(self, A, lo: np.ndarray, hi: np.ndarray) -> None:
        if self.m.getStage() > 1:  # beyond PROBLEM: rows can only go into the original problem
            self.m.freeTransform()
        first = self._n_rows
        self._rows(sp.csr_matrix(A), np.asarray(lo, float), np.asarray(hi, float), {}, first)

    def _add_rows(self, sf: StandardForm) -> None:
        self._n_rows = 0
        self._rows(sf.A.tocsr(), sf.row_lo, sf.row_hi, sf.q_rows, 0)

    def _rows(self, A, row_lo, row_hi, q_rows, first: int) -> None:
        v = self.vars
        indptr, indices, data = A.indptr, A.indices.tolist(), A.data.tolist()
        for r in range(A.shape[0]):
            terms = {}
            for k in range(indptr[r], indptr[r + 1]):
                terms[Term(v[indices[k]])] = data[k]
            q = q_rows.get(r)
            if q is not None:
                for a, b, c in zip(q.rows.tolist(), q.cols.tolist(), q.vals.tolist()):
                    t = Term(v[a], v[b])
                    terms[t] = terms.get(t, 0.0) + c
            lo, hi = row_lo[r], row_hi[r]
            self.m.addCons(ExprCons(Expr(terms), lhs=None if math.isinf(lo) else float(lo),
                                    rhs=None if math.isinf(hi) else float(hi)),
                           name=f"r{first + r}")
        self._n_rows = first + A.shape[0]

    def set_objective(self, c: np.ndarray, c0: float, sense: str, quad: QuadTerms | None) -> None:
        m, v = self.m, self.vars
        if self._objective_set:
            m.freeTransform()
        if self._aux_cons is not None:
            m.delCons(self._aux_cons)
            self._aux_cons = None
        terms = {Term(v[j]): float(c[j]) for j in np.flatnonzero(c)}
        if quad is not None and len(quad):
            for a, b, q in zip(quad.rows.tolist(), quad.cols.tolist(), quad.vals.tolist()):
                t = Term(v[a], v[b])
                terms[t] = terms.get(t, 0.0) + q
            if self._aux is None:
                self._aux = m.addVar(name="objective_epigraph", vtype="C", lb=None, ub=None)
            m.chgVarLb(self._aux, -m.infinity())
            m.chgVarUb(self._aux, m.infinity())
            terms[Term(self._aux)] = -1.0
            lhs, rhs = (None, -float(c0)) if sense == "min" else (-float(c0), None)
            self._aux_cons = m.addCons(ExprCons(Expr(terms), lhs=lhs, rhs=rhs), name="objective_epigraph")
            m.setObjective(Expr({Term(self._aux): 1.0}), "minimize" if sense == "min" else "maximize")
        else:
            if self._aux is not None:
                m.chgVarLb(self._aux, 0.0)
                m.chgVarUb(self._aux, 0.0)
            if c0:
                terms[Term()] = float(c0)  # setObjective turns the constant into the objective offset
            m.setObjective(Expr(terms), "minimize" if sense == "min" else "maximize")
        self.sense = sense
        self._objective_set = True

    def set_start(self, cols: np.ndarray, values: np.ndarray) -> None:
        self._start = (np.asarray(cols), np.asarray(values, np.float64))

    def solve(self, *, time_limit: float | None = None, stop_bound: float | None = None,
              on_incumbent: IncumbentCallback | None = None) -> Outcome:
        m, sense = self.m, self.sense
        if m.getStage() > 1:  # beyond PROBLEM: drop the previous solve's transformed problem
            m.freeTransform()
        start = getattr(self, "_start", None)
        # SCIP keeps every partial solution given to a persistent model across solves and
        # refuses (with an error) more than ``limits/maxorigsol`` of them: a start is only a
        # hint, so later solves go without one
        if start is not None and self.is_mip and self._starts < m.getParam("limits/maxorigsol"):
            sol = m.createPartialSol()
            for j, v in zip(*start):
                m.setSolVal(sol, self.vars[int(j)], float(v))
            try:
                m.addSol(sol)
                self._starts += 1
            except Exception as exc:  # noqa: BLE001 -- a hint not taken: solve without it
                log.debug("scip: start solution not taken (%s)", exc)
                self._starts = m.getParam("limits/maxorigsol")
        self._start = None
        m.setParam("limits/time", float(time_limit) if time_limit is not None else 1e20)
        if stop_bound is not None:
            shift = STOP_MARGIN * LP_BOUND_SAFETY * (1.0 + abs(stop_bound))
            m.setParam("limits/dual", stop_bound + shift if sense == "min" else stop_bound - shift)
        else:
            m.setParam("limits/dual", 1e99 if sense == "min" else -1e99)
        stop = EarlyStop(self.index, sense, stop_bound, on_incumbent)
        incremental = self.is_mip or self.has_quad_rows or self._aux_cons is not None
        self.events.stop = stop if incremental else None
        timer = Timer()
        try:
            m.optimize()
        finally:
            self.events.stop = None
        seconds = timer()
        stop.reraise()
        outcome = self._outcome(seconds, stop)
        if not incremental and on_incumbent is not None and outcome.has_solution:
            stop.incumbent(outcome._x, outcome.value, outcome.bound)
            stop.reraise()
        return outcome

    def _outcome(self, seconds: float, stop: EarlyStop) -> Outcome:
        m, sense = self.m, self.sense
        inf = m.infinity()
        st = m.getStatus()
        dual = safe_bound(_scip_bound(m.getDualbound(), inf), sense)
        x = value = None
        if m.getNSols() > 0:
            sol = m.getBestSol()
            x = np.array([m.getSolVal(sol, v) for v in self.vars], dtype=np.float64)
            value = float(m.getSolObjVal(sol))
        message = st
        if st in ("optimal", "gaplimit"):
            status = "optimal"
        elif st == "infeasible":
            status, dual, x, value = "infeasible", infeasible_bound(sense), None, None
        elif st in ("unbounded", "inforunbd"):
            status, dual = "unbounded", nothing_proven(sense)
            message = "unbounded" if st == "unbounded" else "unbounded or infeasible"
        elif st == "timelimit":
            status = "time_limit"
        elif st == "duallimit":
            status = "interrupted"
            message = f"stopped: dual bound {dual:.10g} passed stop_bound {stop.stop_bound:.10g}"
        elif st == "userinterrupt" or stop.stopped:
            status, message = "interrupted", stop.reason or st
            if stop.stop_x is not None:
                x, value = stop.stop_x, float(stop.stop_value)
        elif st in ("nodelimit", "totalnodelimit", "stallnodelimit", "sollimit", "bestsollimit",
                    "primallimit", "restartlimit", "memlimit"):
            status = "interrupted"
        else:
            status, dual = "error", nothing_proven(sense)
            log.warning("SCIP ended with status %s", st)
        gap = finite_or_none(m.getGap()) if x is not None else None
        return Outcome(status=status, sense=sense, bound=dual, value=value, seconds=seconds,
                       solver=self.name, gap=gap, nodes=int(m.getNNodes()), message=message,
                       _x=x, _index=self.index if x is not None else None)


BACKEND = ScipBackend
