"""HiGHS back-end (highspy >= 1.15): LP, MILP and convex continuous QP.

The standard form is passed in one ``passModel`` call (row-wise CSR). Early stops use the
callback API: ``cbMipImprovingSolution`` sees every improving incumbent (values in the
original column space, objective and dual bound in the user's sense) and
``cbMipInterrupt`` polls the dual bound against ``stop_bound``.
Quadratic constraints are refused (HiGHS has none); a quadratic objective must be convex
(min) / concave (max) and the model continuous.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError, SolverUnavailableError
from ..quiet import new_highs, run_highs
from .backend import Backend, EarlyStop, IncumbentCallback, Timer, finite_or_none
from .outcome import Outcome, infeasible_bound, nothing_proven, safe_bound
from .standard_form import QuadTerms, StandardForm, symmetric_matrix

log = logging.getLogger(__name__)

try:
    import highspy
except ImportError:  # pragma: no cover - highspy is a hard dependency
    highspy = None

_ROWWISE = 2           # MatrixFormat.kRowwise
_TRIANGULAR = 1        # HessianFormat.kTriangular
_SOLUTION_FEASIBLE = 2  # SolutionStatus.kSolutionStatusFeasible
#: a model without columns is feasible iff every row's bounds contain 0 within this tolerance
EMPTY_ROW_TOLERANCE = 1e-9


def require() -> None:
    if highspy is None:
        raise SolverUnavailableError("highspy is not installed: pip install highspy")


def _inf(a: np.ndarray) -> np.ndarray:
    """Map ±inf to HiGHS's infinity (it is inf already, but be explicit and contiguous)."""
    return np.ascontiguousarray(np.clip(a, -highspy.kHighsInf, highspy.kHighsInf), dtype=np.float64)


class HighsBackend(Backend):
    name = "highs"

    def __init__(self, sf: StandardForm, *, threads: int | None = None,
                 options: dict | None = None, verbose: bool = False):
        super().__init__(sf, threads=threads, options=options, verbose=verbose)
        if sf.q_rows:
            first = sf.constraints[next(iter(sf.q_rows))].name
            raise SolverError(
                f"HiGHS cannot solve quadratic constraints ({len(sf.q_rows)} of them, e.g. {first}): "
                "use solver='scip' or solver='gurobi', or relax the products (McCormick)")
        self.h = new_highs(self.verbose)
        self._set_options()
        A = sf.A.tocsr()
        status = self.h.passModel(
            sf.n_cols, sf.n_rows, A.nnz, _ROWWISE, 1 if sf.sense == "min" else -1, float(sf.c0),
            _inf(sf.c), _inf(sf.col_lo), _inf(sf.col_hi), _inf(sf.row_lo), _inf(sf.row_hi),
            A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data.astype(np.float64),
            sf.integrality.astype(np.int32))
        if status == highspy.HighsStatus.kError:
            raise SolverError("HiGHS rejected the model (passModel failed); run with verbose=True to see why")
        self.has_hessian = False
        self._c0 = float(sf.c0)
        self._rows_hold_at_zero = bool(np.all(sf.row_lo <= EMPTY_ROW_TOLERANCE) and
                                       np.all(sf.row_hi >= -EMPTY_ROW_TOLERANCE))
        if sf.q_obj is not None and len(sf.q_obj):
            self._pass_hessian(sf.q_obj, sf.sense)

    def _set_options(self) -> None:
        h = self.h
        h.setOptionValue("output_flag", bool(self.verbose))
        for key, val in self.options.items():
            if h.setOptionValue(str(key), val) == highspy.HighsStatus.kError:
                raise SolverError(f"HiGHS does not accept option {key}={val!r}: see the HiGHS options list")

    def _pass_hessian(self, quad: QuadTerms, sense: str) -> None:
        if self.is_mip:
            raise SolverError("HiGHS cannot solve a quadratic objective with integer variables: "
                              "use solver='scip' or solver='gurobi'")
        sign = 1.0 if sense == "min" else -1.0
        if not QuadTerms(quad.rows, quad.cols, sign * quad.vals).is_convex_min(self.n_cols):
            kind = "convex" if sense == "min" else "concave"
            raise SolverError(f"HiGHS needs a {kind} quadratic objective for a {sense}imisation: "
                              "use solver='scip' or solver='gurobi' for nonconvex objectives")
        # HiGHS minimises cᵀx + ½ xᵀQx with the lower triangle of Q stored column-wise
        q = sp.tril(2.0 * symmetric_matrix(quad, self.n_cols)).tocsc()
        q.sort_indices()
        self.h.passHessian(self.n_cols, q.nnz, _TRIANGULAR, q.indptr.astype(np.int32),
                           q.indices.astype(np.int32), q.data.astype(np.float64))
        self.has_hessian = True

    def set_objective(self, c: np.ndarray, c0: float, sense: str, quad: QuadTerms | None) -> None:
        n = self.n_cols
        self.h.changeObjectiveSense(highspy.ObjSense.kMinimize if sense == "min" else highspy.ObjSense.kMaximize)
        self.h.changeColsCost(n, np.arange(n, dtype=np.int32), _inf(c))
        self.h.changeObjectiveOffset(float(c0))
        self._c0 = float(c0)
        self.sense = sense
        if quad is not None and len(quad):
            self._pass_hessian(quad, sense)
        elif self.has_hessian:
            self.h.passHessian(n, 0, _TRIANGULAR, np.zeros(n + 1, np.int32), np.zeros(0, np.int32), np.zeros(0))
            self.has_hessian = False

    def reset(self) -> bool:
        self.h.clearSolver()  # solution, basis and MIP data go; the model and options stay
        return True

    def add_columns(self, lo: np.ndarray, hi: np.ndarray, integrality: np.ndarray) -> None:
        k = len(lo)
        if k == 0:
            return
        self.h.addCols(k, np.zeros(k), _inf(lo), _inf(hi), 0, np.zeros(0, np.int32),
                       np.zeros(0, np.int32), np.zeros(0))
        if integrality.any():
            cols = np.arange(self.n_cols, self.n_cols + k, dtype=np.int32)
            self.h.changeColsIntegrality(k, cols, integrality.astype(np.uint8))
            self.is_mip = True
        self.n_cols += k

    def add_rows(self, A, lo: np.ndarray, hi: np.ndarray) -> None:
        A = sp.csr_matrix(A)
        if A.shape[0] == 0:
            return
        A.sort_indices()
        status = self.h.addRows(A.shape[0], _inf(lo), _inf(hi), A.nnz, A.indptr[:-1].astype(np.int32),
                                A.indices.astype(np.int32), A.data.astype(np.float64))
        if status == highspy.HighsStatus.kError:
            raise SolverError("HiGHS rejected the new rows (addRows failed)")
        self._rows_hold_at_zero &= bool(np.all(np.asarray(lo) <= EMPTY_ROW_TOLERANCE) and
                                        np.all(np.asarray(hi) >= -EMPTY_ROW_TOLERANCE))

    def set_start(self, cols: np.ndarray, values: np.ndarray) -> None:
        if self.is_mip and len(cols):
            self.h.setSolution(len(cols), np.asarray(cols, np.int32), np.asarray(values, np.float64))

    def solve(self, *, time_limit: float | None = None, stop_bound: float | None = None,
              on_incumbent: IncumbentCallback | None = None) -> Outcome:
        h, sense = self.h, self.sense
        # HiGHS 1.16 checks an LP's or QP's time_limit against the instance's run clock, which
        # keeps counting over every run of this (persistent) instance: offset it by the time
        # already used. The MIP solver times each run from zero: no offset there (with one,
        # the limit of the n-th solve of a persistent MIP grew like 2^n).
        offset = 0.0 if self.is_mip else h.getRunTime()
        h.setOptionValue("time_limit", float(time_limit) + offset
                         if time_limit is not None else highspy.kHighsInf)
        stop = EarlyStop(self.index, sense, stop_bound, on_incumbent)
        # A guard on the wall clock besides HiGHS's own limit, enforced at the interrupt poll:
        # a 50 s limit once took 164 s on a 784-256x2 margin MILP on a busy machine (much of it
        # the 2^n offset fixed above, but HiGHS's presolve does not check its limit either)
        wall_end = None if time_limit is None else time.perf_counter() + float(time_limit)

        timed_out = []

        def late() -> bool:
            if wall_end is not None and time.perf_counter() > wall_end:
                timed_out.append(True)
                return True
            return False

        def improving(e) -> None:
            if late():
                e.interrupt()
                return
            d = e.data_out
            if stop.incumbent(d.mip_solution, d.objective_function_value, d.mip_dual_bound):
                e.interrupt()

        def interrupt(e) -> None:
            # HiGHS keeps the callback's input data between runs: a flag set to stop the
            # previous solve would stop this one at its first poll unless written every time.
            e.interrupt(stop.stopped or late()
                        or stop.check_bound(safe_bound(e.data_out.mip_dual_bound, sense)))

        subscribed = []
        if self.is_mip and on_incumbent is not None:
            h.cbMipImprovingSolution.subscribe(improving)
            subscribed.append((h.cbMipImprovingSolution, improving))
        if self.is_mip and (stop_bound is not None or on_incumbent is not None
                            or time_limit is not None):
            # e.interrupt() inside cbMipImprovingSolution is not honoured by HiGHS 1.15:
            # the stop flag is acted on at the next interrupt poll
            h.cbMipInterrupt.subscribe(interrupt)
            subscribed.append((h.cbMipInterrupt, interrupt))
        timer = Timer()
        try:
            self._run()
        finally:
            for event, fn in subscribed:
                event.unsubscribe(fn)
        seconds = timer()
        stop.reraise()
        outcome = self._outcome(seconds, stop)
        if timed_out and outcome.status == "interrupted" and not stop.stopped:
            outcome.status = "time_limit"   # stopped by the wall-clock guard: a time limit
        if not self.is_mip and on_incumbent is not None and outcome.has_solution:
            x = outcome._x
            stop.incumbent(x, outcome.value, outcome.bound)
            stop.reraise()
        return outcome

    def _outcome(self, seconds: float, stop: EarlyStop) -> Outcome:
        h, sense = self.h, self.sense
        ms = h.getModelStatus()
        S = highspy.HighsModelStatus
        info = h.getInfo()
        has_x = info.primal_solution_status == _SOLUTION_FEASIBLE
        value = float(info.objective_function_value) if has_x else None
        x = np.asarray(h.getSolution().col_value, dtype=np.float64) if has_x else None
        gap = nodes = None
        if self.is_mip:
            dual = safe_bound(info.mip_dual_bound, sense)
            gap, nodes = finite_or_none(info.mip_gap), int(info.mip_node_count)
        elif ms == S.kOptimal:
            dual = safe_bound(float(info.objective_function_value), sense)
        else:
            dual = nothing_proven(sense)
        message = h.modelStatusToString(ms)
        if ms == S.kOptimal:
            status = "optimal"
        elif ms == S.kInfeasible and self._presolve_on():
            return self._confirm_infeasible(seconds)
        elif ms == S.kInfeasible:
            status, dual, value, x = "infeasible", infeasible_bound(sense), None, None
        elif ms == S.kUnbounded:
            status, dual = "unbounded", nothing_proven(sense)
        elif ms == S.kModelEmpty:  # no columns: the objective is its constant
            if self._rows_hold_at_zero:
                status, dual, value, x = "optimal", self._c0, self._c0, np.zeros(0)
            else:
                status, dual, value, x = "infeasible", infeasible_bound(sense), None, None
        elif ms == S.kUnboundedOrInfeasible:
            return self._disambiguate(seconds)
        elif ms == S.kTimeLimit:
            status = "time_limit"
        elif ms == S.kInterrupt or stop.stopped:
            status, message = "interrupted", stop.reason or message
            if stop.stop_x is not None:  # report the incumbent that triggered the stop
                x, value = stop.stop_x, float(stop.stop_value)
        elif ms in (S.kIterationLimit, S.kSolutionLimit, S.kObjectiveBound, S.kObjectiveTarget):
            status = "interrupted"
        else:
            status, dual = "error", nothing_proven(sense)
        if status == "error":
            log.warning("HiGHS ended with model status %s", message)
        return Outcome(status=status, sense=sense, bound=dual, value=value, seconds=seconds,
                       solver=self.name, gap=gap, nodes=nodes, message=message,
                       _x=x, _index=self.index if x is not None else None)

    def _run(self) -> None:
        """``h.run()`` inside the process-wide thread-pool guard."""
        run_highs(self.h, self.threads)

    def _presolve_on(self) -> bool:
        _, presolve = self.h.getOptionValue("presolve")
        return presolve != "off"

    @contextmanager
    def _presolve_off(self):
        """Run the body with HiGHS's presolve off, restoring the option after."""
        _, presolve = self.h.getOptionValue("presolve")
        self.h.setOptionValue("presolve", "off")
        try:
            yield
        finally:
            self.h.setOptionValue("presolve", presolve)

    def _confirm_infeasible(self, seconds: float) -> Outcome:
        """Presolve said 'infeasible': re-solve without presolve before believing it.

        An infeasible model proves anything (its bound is +inf for a min), so the claim must
        be right. HiGHS 1.16's presolve declared a feasible LP infeasible (the two-copy
        Lipschitz model of a 2-4-3-3 network with every ReLU stable: x = x' is feasible, the
        simplex without presolve finds the optimum 6.6e-4), which certified a false Lipschitz
        property; a re-solve costs one more run only where the answer is 'infeasible'."""
        timer = Timer()
        with self._presolve_off():
            self._run()
            if self.h.getModelStatus() != highspy.HighsModelStatus.kInfeasible:
                log.debug("HiGHS: presolve said infeasible, the solve without it did not")
            # read with presolve still off, so that a confirmed 'infeasible' is taken as is
            return self._outcome(seconds + timer(), EarlyStop(self.index, self.sense, None, None))

    def _disambiguate(self, seconds: float) -> Outcome:
        """Presolve said 'unbounded or infeasible': re-solve without presolve to tell which."""
        timer = Timer()
        with self._presolve_off():   # its answer is read with presolve off, as it was found
            self._run()
            if self.h.getModelStatus() == highspy.HighsModelStatus.kUnboundedOrInfeasible:
                return Outcome(status="unbounded", sense=self.sense,
                               bound=nothing_proven(self.sense), value=None,
                               seconds=seconds + timer(), solver=self.name,
                               message="unbounded or infeasible (HiGHS could not tell which)")
            return self._outcome(seconds + timer(), EarlyStop(self.index, self.sense, None, None))


BACKEND = HighsBackend
