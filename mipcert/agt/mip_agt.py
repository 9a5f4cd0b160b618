"""Optimisation-based AGT: per-parameter (and polytope) bounds of a training run from
MIQCP / MILP / QCP / LP models, with rolling-horizon windows (FORMULATIONS 3.4).

Sound-answer rules, stated once:

1. Every bound is a solver's *proven* dual bound (``Outcome.bound``: the dual bound with
   the safety margin; at a time limit still the dual bound), never an incumbent. A solve
   that fails or proves nothing gives the interval AGT bound instead, and the record says so.
2. Every box is intersected with the interval AGT box of the same step, so a method never
   reports anything looser than IBP. Every proved box is checked against known reachable
   points (every perturbed run where a discrete threat has at most 5000, else the nominal
   run and 16 replayed random ones): a bound that excludes one is a wrong solver answer
   (seen with HiGHS and SCIP on these models), and the previous valid bound is kept.
3. A window ``[s, e)`` starts from the box proved at step ``s`` (for ``s = 0`` the point
   ``theta_0``) and gets the whole budget ``k``: a sound relaxation of one budget over the
   run, exact for the full horizon.
4. Progressive tightening: inside a window the boxes of steps ``s + 1 .. e`` are proved in
   turn on the models of steps ``s .. t - 1``; each proved box replaces the interval box of
   its step and the interval boxes after it are recomputed from it (intersected with the
   old), so later models get tighter Big-M and McCormick constants. Only valid boxes ever
   feed a model, so every model stays a relaxation of the reachable set.

Independent solves (the ``2P`` objectives of one model) are cut into jobs of
``params_per_job`` parameters (default one: a window's solves differ in length by 10x, and
small jobs let the workers share them out evenly). A worker builds each window model once
and swaps objectives in a persistent solver for every job of that window it runs; at the
start of a job the solver is reset to its freshly loaded state (or the model is rebuilt
where the solver cannot promise that), so no answer depends on which worker ran which job
or what it solved before, and the boxes are the same for any number of workers. Jobs run
on local processes, serially or on a Dask cluster.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np

from ..encode.varray import linear
from ..errors import InputError, SolverError
from ..relaxation import AGT_METHODS as METHODS, Relaxation
from .instance import PerturbationConfig
from .interval_agt import interval_boxes
from .run import TrainingRun
from .guards import check_against_known, model_boxes, reachable_trajectories
from .trajectory import build_window

log = logging.getLogger(__name__)

#: relative and absolute MIP gap asked of the solvers (the bound is the dual bound anyway)
MIP_REL_GAP = 1e-7
MIP_ABS_GAP = 1e-9
#: the solver each method uses unless told otherwise
DEFAULT_SOLVER = {"lp": "highs", "milp": "highs", "qcp": "scip", "miqcp": "scip"}


@dataclass
class SolveRecord:
    """One objective solved: ``target`` is a parameter name or ``face{k}``."""

    step: int
    target: str
    sense: str
    status: str
    bound: float
    interval_bound: float
    used: float
    gap: float | None
    seconds: float
    note: str = ""
    # the target's value on the reference run of the incumbent's perturbation (windows
    # from step 0 only, :mod:`.witness`): reached by a real run, so bound vs attained is
    # the remaining gap of this bound
    attained: float | None = None


@dataclass
class WindowRecord:
    start: int
    stop: int
    seconds: float
    size: dict
    width: float
    solves: list[SolveRecord] = field(default_factory=list)


@dataclass
class MIPResult:
    """The box after the last step, the boxes at every window end, and the solve records."""

    method: str
    horizon: int
    lower: np.ndarray
    upper: np.ndarray
    seconds: float
    windows: list[WindowRecord]
    boxes: list[tuple[np.ndarray, np.ndarray]]
    solver: str = ""
    faces: dict | None = None
    widths: list[float] = field(default_factory=list)
    # per parameter, the widest values replayed witnesses of the last step reach (the
    # nominal run included): an inner box; None where no witness exists (rolling windows)
    inner_lower: np.ndarray | None = None
    inner_upper: np.ndarray | None = None

    @property
    def inner_total_width(self) -> float | None:
        if self.inner_lower is None:
            return None
        return float(np.sum(self.inner_upper - self.inner_lower))

    def bounds_attained(self, rel: float = 1e-6) -> int | None:
        """How many of the 2P bounds a replayed witness reaches to ``rel`` (relative)."""
        if self.inner_lower is None:
            return None
        tol = rel * (1.0 + np.maximum(np.abs(self.lower), np.abs(self.upper)))
        return int(np.sum(self.inner_lower - self.lower <= tol)
                   + np.sum(self.upper - self.inner_upper <= tol))

    @property
    def total_width(self) -> float:
        return float(np.sum(self.upper - self.lower))

    def contains(self, theta: np.ndarray, tol: float = 0.0) -> bool:
        return bool(np.all(self.lower - tol <= theta) and np.all(theta <= self.upper + tol))

    def as_json(self) -> dict:
        return {"method": self.method, "horizon": self.horizon, "solver": self.solver,
                "total_width": self.total_width, "mip_seconds": self.seconds,
                "windows": [{**{k: v for k, v in asdict(w).items() if k != "solves"},
                             "solves": [asdict(s) for s in w.solves]} for w in self.windows],
                "faces": self.faces,
                "inner_lower": None if self.inner_lower is None else self.inner_lower.tolist(),
                "inner_upper": None if self.inner_upper is None else self.inner_upper.tolist(),
                "inner_total_width": self.inner_total_width,
                "bounds_attained": self.bounds_attained()}


def parse_horizon(horizon, n_steps: int) -> int:
    """``'full'`` -> ``n_steps``; an integer >= 1 (capped at ``n_steps``)."""
    if isinstance(horizon, str):
        if horizon.lower() == "full":
            return n_steps
        try:
            horizon = int(horizon)
        except ValueError:
            raise InputError(f"horizon {horizon!r}: give a number of steps >= 1 or 'full'") from None
    if horizon < 1:
        raise InputError(f"horizon {horizon}: give a number of steps >= 1 or 'full'")
    return min(int(horizon), n_steps)


def has_bilinear(run: TrainingRun, pert: PerturbationConfig) -> bool:
    """True when the model multiplies two continuous variables: hidden layers (weights times
    activations, weights times deltas) or poisoned features (weights times features)."""
    return len(run.layers) > 1 or (pert.kind == "bounded" and pert.eps > 0 and pert.k > 0)


def _solver_options(solver: str) -> dict:
    if solver == "highs":
        # HiGHS's defaults otherwise: with small_matrix_value = 1e-12 or
        # mip_feasibility_tolerance = 1e-9, HiGHS 1.16's presolve returned "optimal" maxima
        # below a feasible point's value on the half-moons SVM (tests/agt_mip check the
        # boxes against enumeration)
        return {"mip_rel_gap": MIP_REL_GAP, "mip_abs_gap": MIP_ABS_GAP}
    if solver == "scip":
        # SCIP 10's presolve returned a wrong "optimal" minimum on a 2-step hinge MLP MIQCP
        # (0.16 where a feasible point, checked row by row, has 0.041;
        # tests/agt_mip/test_hull_ladder.py); without presolve it is right
        return {"limits/gap": MIP_REL_GAP, "limits/absgap": MIP_ABS_GAP,
                "presolving/maxrounds": 0}
    if solver == "gurobi":
        return {"MIPGap": MIP_REL_GAP, "MIPGapAbs": MIP_ABS_GAP, "NonConvex": 2}
    return {}


@dataclass
class _Job:
    """Objectives to solve on one window model: ``(index, sense)`` of a parameter, or
    ``(direction (P,), 'max')`` of a face. ``key`` names the model (the same key, the same
    model), so that a worker that already holds it swaps objectives instead of rebuilding."""

    run: TrainingRun
    pert: PerturbationConfig
    relaxation: str
    start: int
    stop: int
    boxes: list
    targets: list
    solver: str
    time_limit: float | None
    key: tuple = ()


# The last window model built in this process (per thread, for Dask workers with threads):
# ``(key, window, persistent solver, size)``.
_HELD = threading.local()


def _window_solver(job: _Job):
    """The window model of ``job`` in a persistent solver: the one this worker already
    holds when the key matches and the solver can be reset to a fresh state (HiGHS,
    Gurobi), else a newly built one. Either way the solves that follow start from the same
    state, so their answers do not depend on which worker ran which job."""
    from ..solve import PersistentSolver

    held = getattr(_HELD, "value", None)
    if held is not None and job.key and held[0] == job.key and held[2].reset():
        return held[1], held[2], held[3]
    _HELD.value = None
    window = build_window(job.run, job.pert, job.relaxation, job.start, job.stop, job.boxes)
    # a model the solver cannot load (a licence limit, a quadratic row for HiGHS) is an
    # error the user must see, not a bound to fall back from
    ps = PersistentSolver(window.model, job.solver, threads=1,
                          options=_solver_options(job.solver))
    size = window.size()
    if job.key:
        _HELD.value = (job.key, window, ps, size)
    return window, ps, size


def solve_job(job: _Job) -> tuple[list[dict], dict]:
    """Solve every target of ``job`` on its window model, swapping objectives in a
    persistent solver. Module-level so that process pools and Dask can run it. Returns
    per-target results and the model size."""
    window, ps, size = _window_solver(job)
    theta = window.theta_end
    out = []
    for target, sense in job.targets:
        if isinstance(target, (int, np.integer)):
            item = theta.items[int(target)]
            if isinstance(item, float):  # a constant parameter: nothing to solve
                out.append({"status": "constant", "bound": item, "gap": 0.0, "seconds": 0.0,
                            "note": ""})
                continue
            expr = linear([(1.0, item)])
        else:  # a face direction (P,)
            expr = linear([(float(c), v) for c, v in zip(target, theta.items)])
        ps.set_objective(expr, sense)
        try:
            o = ps.solve(time_limit=job.time_limit)
        except SolverError as exc:
            out.append({"status": "error", "bound": math.nan, "gap": None, "seconds": 0.0,
                        "note": str(exc)})
            continue
        out.append({"status": o.status, "bound": float(o.bound), "gap": o.gap,
                    "seconds": float(o.seconds), "note": o.message,
                    "attained": _attained(job, window, o, target)})
    return out, size


def _attained(job: _Job, window, outcome, target) -> float | None:
    """The target's value after step ``stop - 1`` on the reference run of the incumbent's
    perturbation (:mod:`.witness`), for windows that start at step 0."""
    from .witness import best_replay, witness_desc

    if job.start != 0:
        return None
    desc = witness_desc(outcome, window.samples, job.run, job.pert)
    if desc is None:
        return None
    if isinstance(target, (int, np.integer)):
        objective = np.zeros(job.run.n_params)
        objective[int(target)] = 1.0
    else:
        objective = np.asarray(target, dtype=np.float64)
    return best_replay(job.run, job.pert, desc, job.stop, objective, outcome.sense)


def window_jobs(run, pert, relaxation, start, stop, boxes, targets, solver, time_limit,
                per_job: int) -> list[_Job]:
    """Cut ``targets`` into jobs of ``per_job`` consecutive targets on the model of steps
    ``start .. stop - 1`` with ``boxes``, all with one fresh key. Small jobs balance the
    workers (a window's solves differ in length by 10x); the key lets each worker build
    the model once per window."""
    key = (uuid.uuid4().hex, start, stop)
    chunks = [targets[i:i + per_job] for i in range(0, len(targets), per_job)]
    return [_Job(run, pert, relaxation.label, start, stop, boxes, c, solver, time_limit, key)
            for c in chunks]


class _Fanout:
    """Runs jobs: serially, on ``workers`` local processes (one pool for the whole run, so
    workers start once), or on a Dask cluster at ``scheduler``."""

    def __init__(self, workers: int | None, scheduler: str | None):
        self.workers, self.scheduler, self.client, self.pool = workers, scheduler, None, None
        if workers is not None and workers < 1:
            raise InputError(f"--workers {workers}: give at least 1")
        if scheduler:
            try:
                from dask.distributed import Client
            except ImportError:  # pragma: no cover - distributed is a dependency
                raise InputError("--scheduler needs dask.distributed: pip install distributed") from None
            try:
                self.client = Client(scheduler, timeout=30)
            except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a bad address
                raise InputError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}; "
                                 "start one with `dask scheduler` or drop --scheduler") from None
        elif (workers or 1) > 1:
            import concurrent.futures as cf
            import multiprocessing as mp

            from ..solve.fanout import _START_METHOD
            self.pool = cf.ProcessPoolExecutor(max_workers=workers,
                                               mp_context=mp.get_context(_START_METHOD))

    def map(self, fn, jobs):
        if self.client is not None:
            futures = self.client.map(fn, jobs, pure=False)
            return self.client.gather(futures)
        if self.pool is not None and len(jobs) > 1:
            return list(self.pool.map(fn, jobs))
        return [fn(j) for j in jobs]

    def close(self):
        if self.client is not None:
            self.client.close()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _intersect(a, b):
    return np.maximum(a[0], b[0]), np.minimum(a[1], b[1])


def _prove_box(run, pert, relaxation, start, stop, boxes, solver, time_limit, fanout,
               per_job, names) -> tuple[tuple[np.ndarray, np.ndarray], WindowRecord]:
    """Min and max of every parameter after step ``stop - 1`` on the model of steps
    ``start .. stop - 1``; the result intersected with ``boxes[stop]``."""
    t0 = time.perf_counter()
    P = run.n_params
    ilo, ihi = boxes[stop]
    targets = [(j, s) for j in range(P) for s in ("min", "max")]
    jobs = window_jobs(run, pert, relaxation, start, stop, model_boxes(boxes), targets, solver,
                       time_limit, 2 * per_job)
    results = fanout.map(solve_job, jobs)
    flat = [r for res, _ in results for r in res]
    size = results[0][1] if results else {}
    lo, hi = ilo.copy(), ihi.copy()
    record = WindowRecord(start=start, stop=stop, seconds=0.0, size=size, width=0.0)
    for (j, sense), r in zip(targets, flat):
        ib = float(ilo[j] if sense == "min" else ihi[j])
        bound, note = r["bound"], r["note"]
        ok = r["status"] in ("optimal", "time_limit", "interrupted", "constant") \
            and not math.isnan(bound)
        if r["status"] == "infeasible":
            raise SolverError(f"the model of steps {start}..{stop - 1} is infeasible, but the "
                              "nominal run is a feasible point: this is a bug, please report it")
        if not ok:
            note = f"fell back to the interval bound ({r['status']}{': ' + note if note else ''})"
            log.warning("step %d %s %s: %s", stop, names[j], sense, note)
            bound = ib
        used = max(bound, ib) if sense == "min" else min(bound, ib)
        if sense == "min":
            lo[j] = used
        else:
            hi[j] = used
        record.solves.append(SolveRecord(step=stop, target=names[j], sense=sense,
                                         status=r["status"], bound=bound, interval_bound=ib,
                                         used=used, gap=r["gap"], seconds=r["seconds"],
                                         note=note, attained=r.get("attained")))
    if np.any(lo > hi):
        bad = int(np.flatnonzero(lo > hi)[0])
        raise SolverError(f"proved bounds cross for {names[bad]} at step {stop} "
                          f"({lo[bad]} > {hi[bad]}): numerical trouble; report this bug")
    record.seconds = time.perf_counter() - t0
    record.width = float(np.sum(hi - lo))
    return (lo, hi), record


def _inner_box(record: WindowRecord, nominal: np.ndarray, names) -> tuple[np.ndarray, np.ndarray]:
    """Per parameter, the smallest and largest values that the nominal run and the replayed
    witnesses of ``record``'s solves reach. Each of its bounds is attained by an admissible
    run, so it lies inside the true hull's bounding box: an inner bound to set beside the
    proved outer box."""
    lo, hi = nominal.copy(), nominal.copy()
    col = {n: j for j, n in enumerate(names)}
    for s in record.solves:
        value = s.bound if s.status == "constant" else s.attained
        if s.target in col and value is not None and np.isfinite(value):
            j = col[s.target]
            lo[j], hi[j] = min(lo[j], value), max(hi[j], value)
    return lo, hi


def _check_gurobi_licence(run, pert, relaxation, H: int, boxes) -> None:
    """Refuse, before any solve, a run with a window model over the size-limited Gurobi
    licence (pip's). Every window is built once with the interval boxes: the boxes proved
    during the run are inside them and can only make a model smaller (stable gates drop
    rows), so a run that passes never meets the limit later."""
    from ..errors import SolverLicenseError
    from ..solve import standard_form
    from ..solve.gurobi import check_licence_size
    T = len(run.batches)
    for start in range(0, T, H):
        stop = min(start + H, T)
        window = build_window(run, pert, relaxation, start, stop, model_boxes(boxes))
        sf = standard_form.compile_model(window.model, require_objective=False)
        try:
            check_licence_size(sf.n_cols, sf.n_rows, sf.is_quadratic)
        except SolverLicenseError as err:
            raise SolverLicenseError(f"the window of steps {start}..{stop - 1} (horizon {H}): "
                                     f"{err}; or a shorter --horizon") from None


def _retighten(run, pert, boxes, t, box, device):
    """Replace ``boxes[t]`` by ``box`` and intersect the later boxes with interval AGT
    restarted from it (progressive tightening)."""
    boxes[t] = box
    if t < len(run.batches):
        fresh = interval_boxes(run, pert, device, start=t, lower=box[0], upper=box[1])
        for s, b in enumerate(fresh[1:], start=t + 1):
            boxes[s] = _intersect(boxes[s], b)


def mip_agt(run: TrainingRun, pert: PerturbationConfig, method: str = "milp",
            horizon="full", solver: str | None = None, time_limit: float | None = None,
            workers: int | None = None, scheduler: str | None = None, faces: int = 0,
            device: str = "cpu", tighten: bool = True, params_per_job: int = 1,
            progress=None, face_dirs: np.ndarray | None = None,
            tighten_every: int = 1) -> MIPResult:
    """Bound every parameter reachable by the run under ``pert`` (module docstring).

    ``method``: lp | qcp | milp | miqcp; ``horizon``: steps per window or 'full';
    ``time_limit``: seconds per solve; ``faces``: extra polytope directions at the end
    (:mod:`.polytope`; ``face_dirs`` ``(faces, P)`` chooses them); ``progress(message)``:
    called after every proved box; ``tighten``: progressive tightening inside windows,
    proving the box of every ``tighten_every``-th step (and of the window's end).
    """
    if method not in METHODS or method == "ibp":
        raise InputError(f"unknown optimisation method {method!r}: choose lp, qcp, milp or miqcp")
    relaxation = Relaxation.parse(method)
    if solver is None:
        # without a product of two continuous variables the quadratic methods build the
        # same linear model as their McCormick twins: HiGHS solves it
        solver = DEFAULT_SOLVER[method] if has_bilinear(run, pert) else "highs"
    solver = solver.lower()
    if time_limit is not None and time_limit <= 0:
        raise InputError(f"time limit {time_limit}: give a positive number of seconds")
    if tighten_every < 1:
        raise InputError(f"tighten_every {tighten_every}: give a number of steps >= 1")
    if params_per_job < 1:
        raise InputError("params_per_job must be >= 1")
    from ..solve import backend_class
    backend_class(solver)  # a missing solver fails here, before any work
    if solver == "highs" and relaxation.exact_products and has_bilinear(run, pert):
        raise InputError(f"{method} keeps the products of weights and activations as quadratic "
                         "constraints, which HiGHS cannot solve: use --solver scip (or gurobi), "
                         f"or the McCormick method {'milp' if relaxation.integral else 'lp'}")
    if pert.flips and not pert.is_zero:
        from .perturb import flipped_labels
        flipped_labels(run, run.y[0])  # label flips need classification labels
    T = len(run.batches)
    H = parse_horizon(horizon, T)
    t0 = time.perf_counter()
    boxes = interval_boxes(run, pert, device)
    if solver == "gurobi":
        _check_gurobi_licence(run, pert, relaxation, H, boxes)
    names = run.param_names
    known = reachable_trajectories(run, pert)
    fanout = _Fanout(workers, scheduler)
    records: list[WindowRecord] = []
    widths = []
    try:
        for start in range(0, T, H):
            stop = min(start + H, T)
            ends = [t for t in range(start + 1, stop + 1)
                    if t == stop or (tighten and (t - start) % tighten_every == 0)]
            for t in ends:
                box, rec = _prove_box(run, pert, relaxation, start, t, boxes, solver,
                                      time_limit, fanout, params_per_job, names)
                box = check_against_known(box, known[:, t], boxes[t], rec, names)
                _retighten(run, pert, boxes, t, box, device)
                if t == stop:
                    records.append(rec)
                    widths.append(rec.width)
                if progress is not None:
                    progress(f"{method} H={H}: step {t}/{T} proved (window {start}..{stop - 1}),"
                             f" width {rec.width:.6g}, {rec.seconds:.1f} s")
        result = MIPResult(method=method, horizon=H, lower=boxes[T][0], upper=boxes[T][1],
                           seconds=0.0, windows=records, boxes=boxes, solver=solver,
                           widths=widths)
        if records and records[-1].start == 0:
            result.inner_lower, result.inner_upper = _inner_box(records[-1], known[0, T],
                                                                names)
        if faces:
            from .polytope import face_bounds
            result.faces = face_bounds(run, pert, relaxation, boxes, H, faces, solver,
                                       time_limit, fanout, face_dirs)
    finally:
        fanout.close()
        _HELD.value = None  # the serial path held the last model in this process
    result.seconds = time.perf_counter() - t0
    return result
