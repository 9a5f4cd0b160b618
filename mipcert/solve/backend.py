"""The interface every solver back-end implements, and the registry of back-ends.

A back-end is built once from a :class:`StandardForm` and can then change its objective,
grow new columns (variables first used by a new objective) and re-solve. It returns an
:class:`Outcome` whose bound already carries the safety margin (``outcome.safe_bound``).
"""
from __future__ import annotations

import importlib
import logging
import math
import time
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

from ..errors import SolverError, SolverUnavailableError
from .outcome import bound_passes
from .standard_form import ColumnIndex, QuadTerms, StandardForm

log = logging.getLogger(__name__)

#: the solvers mipcert knows, in order of preference
KNOWN_SOLVERS = ("highs", "scip", "gurobi")

IncumbentCallback = Callable[[Callable[[Any], np.ndarray]], Any]


class Backend(ABC):
    """One solver instance holding one model."""

    name = "?"

    def __init__(self, sf: StandardForm, *, threads: int | None = None,
                 options: dict | None = None, verbose: bool = False):
        self.sense = sf.sense
        self.n_cols = sf.n_cols
        self.is_mip = sf.is_mip
        self.index: ColumnIndex = sf.column_index()
        self.threads, self.options, self.verbose = threads, dict(options or {}), verbose

    @abstractmethod
    def set_objective(self, c: np.ndarray, c0: float, sense: str, quad: QuadTerms | None) -> None:
        """Replace the objective (c has one entry per current column)."""

    @abstractmethod
    def add_columns(self, lo: np.ndarray, hi: np.ndarray, integrality: np.ndarray) -> None:
        """Append columns that appear in no constraint (used only by a new objective)."""

    @abstractmethod
    def solve(self, *, time_limit: float | None = None, stop_bound: float | None = None,
              on_incumbent: IncumbentCallback | None = None) -> Any:
        """Solve and return an Outcome."""

    def add_rows(self, A, lo: np.ndarray, hi: np.ndarray) -> None:
        """Append linear rows ``lo <= A x <= hi`` (``A``: scipy sparse, one column per
        current column) to the model; the next solve sees them."""
        raise SolverError(f"the {self.name} back-end cannot add rows to a built model")

    def reset(self) -> bool:
        """Forget everything the previous solves left (solution, basis, incumbent), keeping
        the model, so that the next solve runs exactly as on a freshly loaded model and its
        answer does not depend on what was solved before (fan-out determinism). Returns
        False where the back-end cannot promise that (the caller then loads a new model)."""
        return False

    def set_start(self, cols: np.ndarray, values: np.ndarray) -> None:
        """Offer a starting point (column indices and values) to the next solve.

        A hint only: the solver checks it and may ignore it; back-ends without support
        ignore it.
        """
        log.debug("%s ignores starting points", self.name)


class EarlyStop:
    """Shared bookkeeping for stop_bound / on_incumbent across back-ends.

    ``incumbent(x, dual)`` is called from a solver callback with the incumbent's column
    values; it runs the user's ``on_incumbent`` and returns True when the solve must stop.
    Exceptions raised by the user callback are kept and re-raised after the solve (a
    callback must never throw into the solver's C code).
    """

    def __init__(self, index: ColumnIndex, sense: str, stop_bound: float | None,
                 on_incumbent: IncumbentCallback | None):
        self.index, self.sense = index, sense
        self.stop_bound, self.on_incumbent = stop_bound, on_incumbent
        self.stopped = False
        self.reason = ""
        self.stop_x: np.ndarray | None = None
        self.stop_value: float | None = None
        self.stop_dual: float | None = None
        self.error: BaseException | None = None

    def check_bound(self, dual: float) -> bool:
        if not self.stopped and bound_passes(dual, self.stop_bound, self.sense):
            self.stopped = True
            self.stop_dual = dual
            self.reason = f"stopped: dual bound {dual:.10g} passed stop_bound {self.stop_bound:.10g}"
        return self.stopped

    def incumbent(self, x: np.ndarray, obj: float, dual: float) -> bool:
        if self.stopped:
            return True
        if self.on_incumbent is None:
            return False
        x = np.array(x, dtype=np.float64, copy=True)
        try:
            answer = self.on_incumbent(lambda variables: self.index.gather(x, variables))
        except BaseException as exc:  # noqa: BLE001 - re-raised after the solve
            self.error = exc
            answer = True
        if answer is True:
            self.stopped = True
            self.stop_x, self.stop_value, self.stop_dual = x, obj, dual
            self.reason = self.reason or "stopped by on_incumbent"
        return self.stopped

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


def backend_class(solver: str) -> type[Backend]:
    """The Backend class for a solver name; SolverUnavailableError if unknown or not installed."""
    key = str(solver).lower()
    if key not in KNOWN_SOLVERS:
        raise SolverUnavailableError(
            f"unknown solver {solver!r}: choose one of {', '.join(available_solvers()) or 'none installed'} "
            f"(mipcert supports {', '.join(KNOWN_SOLVERS)})")
    module = importlib.import_module(f".{key}", __package__)
    module.require()  # raises SolverUnavailableError / SolverLicenseError with the fix
    return module.BACKEND


_AVAILABLE: list[str] | None = None


def available_solvers() -> list[str]:
    """The subset of ``['highs', 'scip', 'gurobi']`` that can be imported and used here."""
    global _AVAILABLE
    if _AVAILABLE is None:
        found = []
        for key in KNOWN_SOLVERS:
            try:
                module = importlib.import_module(f".{key}", __package__)
                module.require()
            except (SolverError, ImportError) as exc:
                log.debug("solver %s unavailable: %s", key, exc)
                continue
            found.append(key)
        _AVAILABLE = found
    return list(_AVAILABLE)


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
