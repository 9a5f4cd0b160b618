"""Compare relaxations on a robustness instance: IBP, CROWN, the LP relaxation and the MILP.

For a test point ``x0`` with label ``y`` and radius ``eps`` the ball is
``B = [x0 - eps, x0 + eps] ∩ [input_lo, input_hi]`` and the *margin* is

    m* = min over x in B of  min over t != y of  (z_y(x) - z_t(x))

(untargeted classification robustness, FORMULATIONS 2: robust iff ``m* > 0``). Every method
reports a proven lower bound of ``m*``:

- ``ibp``: interval bounds of every layer, the margin rows folded into the last layer;
- ``crown``: linear back-substitution over CROWN pre-activation bounds (each layer already
  intersected with IBP), intersected with the interval bound over those same pre-activation
  bounds (both are sound, so the max is too). IBP and CROWN run batched over all points of
  one eps at once; the time of a point is the batch time divided by the number of points;
- ``lp``: the triangle relaxation (FORMULATIONS 1.2) over the CROWN bounds, minimised once
  per target class in a persistent solver (objectives swapped), min over the targets;
- ``milp``: :func:`mipcert.verify.verify` with the Big-M MILP. It stops as soon as the
  proven bound passes 0, so its bound is a certificate, not the optimum; for ``sat`` it is
  the margin of its float64-checked witness.

A batched PGD attack (shared by all methods) runs first: a point with a validated
counterexample is *falsified* for every method. Otherwise a method *certifies* a point when
its bound is ``> 0`` and leaves it *open* otherwise. A point whose nominal margin is ``<= 0``
is *misclassified* (not robust at any eps >= 0): it is counted but never certified, and LP /
MILP are not run on it. A bound ``> 0`` on a falsified or misclassified point would be a
soundness bug: it is logged as an error and reported as ``conflict``.
"""
from __future__ import annotations

import logging
import math
import time
import numpy as np

from ..errors import InputError
from ..spec import robustness_spec
from .compare_result import STATUSES  # noqa: F401  (re-exported: the status names)
from .compare_result import CompareResult, MethodResult, PointResult, Progress, _num
from .instance import METHODS, RobustnessInstance

log = logging.getLogger(__name__)

#: PGD settings of the shared attack: steps, random restarts per target class, step fraction
ATTACK_STEPS, ATTACK_RESTARTS, ATTACK_STEP_FRAC = 40, 1, 0.25


def margin_matrix(labels: np.ndarray, m: int) -> np.ndarray:
    """``C`` ``(n, m - 1, m)`` with rows ``e_y - e_t`` for every ``t != y`` (targets ascending)."""
    n = len(labels)
    C = np.zeros((n, m - 1, m))
    for i, y in enumerate(labels):
        for r, t in enumerate([t for t in range(m) if t != y]):
            C[i, r, y], C[i, r, t] = 1.0, -1.0
    return C


def true_margins(network, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``min_{t != y} z_y(x) - z_t(x)`` in float64 for ``X`` ``(n, d)`` → ``(n,)``."""
    z = network.forward(np.atleast_2d(X))
    zy = z[np.arange(len(z)), labels]
    other = z.copy()
    other[np.arange(len(z)), labels] = -np.inf
    return zy - other.max(axis=1)


def batched_attack(network, X0, labels, lo, hi, rng, steps: int = ATTACK_STEPS,
                   restarts: int = ATTACK_RESTARTS) -> tuple[np.ndarray, np.ndarray]:
    """PGD on every targeted margin ``z_y - z_t`` of every point at once (signed gradients,
    projected on each point's box). ``X0, lo, hi``: ``(n, d)``. Returns the best points
    ``(n, d)`` and their untargeted margins ``(n,)`` (upper bounds of ``m*``)."""
    n, d = X0.shape
    m = network.output_size
    C = margin_matrix(labels, m)                                  # (n, m-1, m)
    starts = [X0] + [lo + (hi - lo) * rng.random((n, d)) for _ in range(restarts)]
    x = np.concatenate([np.repeat(s, m - 1, axis=0) for s in starts])   # (S n (m-1), d)
    owner = np.tile(np.repeat(np.arange(n), m - 1), len(starts))
    c = np.tile(C.reshape(n * (m - 1), m), (len(starts), 1))
    rlo, rhi = lo[owner], hi[owner]
    width = rhi - rlo
    best_x, best_m = X0.copy(), true_margins(network, X0, labels)
    for it in range(steps + 1):
        margins = true_margins(network, x, labels[owner])
        for i in np.flatnonzero(margins < best_m[owner]):   # few rows improve per step
            if margins[i] < best_m[owner[i]]:
                best_m[owner[i]], best_x[owner[i]] = margins[i], x[i]
        if it == steps:
            break
        _, g = network.input_gradient(x, c)
        alpha = ATTACK_STEP_FRAC * width * (1.0 - it / steps) + 1e-3 * width
        x = np.clip(x - alpha * np.sign(g), rlo, rhi)
    return best_x, best_m


def _status(bound: float | None, broken: bool, misclassified: bool = False) -> str:
    certified = bound is not None and bound > 0
    if broken or misclassified:
        return "conflict" if certified else ("misclassified" if misclassified else "falsified")
    return "certified" if certified else "open"


def _batch_bounds(network, lo, hi, labels, method: str):
    """Margin lower bounds ``(n,)`` of ``method`` for all boxes, its pre-activation bounds
    (list of ``(l, u)`` numpy ``(n, n_l)``), the seconds, and the ReLUs proved stable ``(n,)``."""
    import torch

    from ..bounds import batch_pre_bounds
    from ..bounds.propagate import linear_lower_bound

    start = time.perf_counter()
    stack = network.affine_relu_stack()
    C = margin_matrix(labels, network.output_size)
    d = np.zeros(C.shape[:2])
    pre, lo_t, hi_t = batch_pre_bounds(network, lo, hi, method, device="cpu")
    with torch.no_grad():
        lb = linear_lower_bound(stack, pre, lo_t, hi_t, C, d, method)
        if method == "crown":  # intersect with the interval bound over the same bounds
            lb = torch.maximum(lb, linear_lower_bound(stack, pre, lo_t, hi_t, C, d, "ibp"))
    bound = lb.min(dim=1).values.cpu().numpy()
    pre_np = [(l.cpu().numpy(), u.cpu().numpy()) for l, u in pre]
    seconds = time.perf_counter() - start
    stable = sum(((u <= 0) | (l >= 0)).sum(axis=1) for (l, u), blk in zip(pre_np, stack)
                 if blk.relu)
    return bound, pre_np, seconds, np.asarray(stable, dtype=np.int64).reshape(-1)


def lp_margin_bound(network, bounds, region, solver: str = "highs", threads: int | None = 1,
                    time_limit: float | None = None) -> float:
    """Proven lower bound of ``min_k`` clause margin over the triangle LP: one persistent
    model, one solve per clause (target class). ``-inf`` when a solve proves nothing."""
    from ..encode import build_margin_model
    from ..relaxation import Relaxation
    from ..solve import PersistentSolver

    model, margins = build_margin_model(network, bounds, region, Relaxation.LP)
    engine = PersistentSolver(model, solver, threads=threads)
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    best = math.inf
    for expr in margins:
        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        engine.set_objective(expr, sense="min")
        best = min(best, engine.solve(time_limit=left).bound)
    return best


def _exact_job(job: dict) -> tuple[dict[str, MethodResult], np.ndarray | None]:
    """The LP and MILP of one point at one eps (a module-level function, so that it can run
    in another process or on a Dask worker); returns the method results and the MILP's
    counterexample (or ``None``)."""
    from ..bounds import Bounds
    from .verifier import verify

    network, spec, broken = job["network"], job["spec"], job["broken"]
    region = spec.regions[0]
    solver, timeout, threads = job["solver"], job["timeout"], job["threads"]
    out, cex = {}, None
    if "lp" in job["methods"]:
        t1 = time.perf_counter()
        bnd = Bounds(region.lo, region.hi, job["pre"], "crown", 0.0, job["relus"])
        lb = lp_margin_bound(network, bnd, region, solver, threads, timeout)
        out["lp"] = MethodResult(_num(lb), time.perf_counter() - t1 + job["crown_seconds"],
                                 _status(lb, broken), stable=job["stable"])
    if "milp" in job["methods"]:
        r = verify(network, spec, solver=solver, relaxation="milp", bounds="crown",
                   timeout=timeout, reference=job["reference"], attack=False, seed=job["seed"],
                   threads=threads, device="cpu")
        bound = r.margin if r.verdict == "sat" else r.bound
        status = _status(bound, broken)
        if r.verdict == "sat":
            status, cex = "falsified", r.counterexample[0]
        elif r.verdict in ("unknown", "timed-out") and not broken:
            status = "open"
        regions = r.stats.get("regions") or [{}]
        out["milp"] = MethodResult(_num(bound), r.seconds, status, r.verdict,
                                   stable=regions[0].get("stable"))
    return out, cex


def compare(network, X, labels, eps_values, methods=METHODS, *, input_lo: float = 0.0,
            input_hi: float = 1.0, solver: str = "highs", timeout: float | None = 30.0,
            threads: int | None = 1, seed: int = 0, reference=None, name: str = "compare",
            network_name: str = "", progress: Progress | None = None,
            workers: int | None = None, scheduler: str | None = None) -> CompareResult:
    """Run every method on every point ``X`` ``(n, d)`` / ``labels`` ``(n,)`` at every eps.

    ``timeout``: seconds per LP (all its targets) and per MILP, for one point at one eps.
    ``reference(x (B, d)) -> z (B, m)``: an independent forward pass (onnxruntime) a
    counterexample must also fail. ``progress(done, total, text)`` is called after each
    eps. ``workers`` / ``scheduler``: where the per-point LPs and MILPs run
    (:func:`mipcert.verify.pointjobs.run_jobs`). See the module docstring for every number.
    """
    from .pointjobs import run_jobs
    from .verifier import Witness

    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    methods = [m for m in METHODS if m in set(methods)]
    if len(X) != len(labels) or X.shape[1] != network.input_size:
        raise InputError(f"{len(X)} points of {X.shape[1]} values with {len(labels)} labels do "
                         f"not fit a network with {network.input_size} inputs")
    if labels.min() < 0 or labels.max() >= network.output_size:
        raise InputError(f"labels must be class indices in [0, {network.output_size})")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    relus = [blk.relu for blk in network.affine_relu_stack()]
    nominal = true_margins(network, X, labels)
    predicted = network.forward(X).argmax(axis=1)
    n, total = len(X), len(X) * len(eps_values)
    points: list[PointResult] = []
    jobs: list[dict] = []
    for eps in eps_values:
        lo, hi = np.clip(X - eps, input_lo, input_hi), np.clip(X + eps, input_lo, input_hi)
        t0 = time.perf_counter()
        best_x, best_m = batched_attack(network, X, labels, lo, hi, rng)
        t_attack = (time.perf_counter() - t0) / n
        batch = {m: _batch_bounds(network, lo, hi, labels, m)
                 for m in ("ibp", "crown") if m in methods or (m == "crown" and "lp" in methods)}
        todo = []
        for i in range(n):
            spec = robustness_spec(X[i], int(labels[i]), eps, network.output_size,
                                   input_lo=input_lo, input_hi=input_hi, name=f"point{i}")
            region = spec.regions[0]
            p = PointResult(int(i), int(labels[i]), int(predicted[i]), float(eps),
                            float(nominal[i]), float(best_m[i]), t_attack, False)
            if p.misclassified:
                p.falsified, p.counterexample = True, X[i].copy()
            elif best_m[i] <= 0 and Witness(network, region, reference)(best_x[i]):
                p.falsified, p.counterexample = True, best_x[i].copy()
            for m in ("ibp", "crown"):
                if m in methods:
                    b, _, sec, stable = batch[m]
                    p.methods[m] = MethodResult(float(b[i]), sec / n,
                                                _status(b[i], p.falsified, p.misclassified),
                                                stable=int(stable[i]))
            for m in ("lp", "milp"):
                if m in methods and p.misclassified:
                    p.methods[m] = MethodResult(None, 0.0, "misclassified", "not run")
            todo.append(p)
            if not p.misclassified and ("lp" in methods or "milp" in methods):
                crown = batch.get("crown")
                jobs.append(dict(
                    spec=spec, eps=float(eps), methods=methods, broken=p.falsified, relus=relus,
                    pre=None if crown is None else [(l[i], u[i]) for l, u in crown[1]],
                    crown_seconds=0.0 if crown is None else crown[2] / n,
                    stable=None if crown is None else int(crown[3][i])))
        points += todo
    shared = dict(network=network, solver=solver, timeout=timeout, threads=threads, seed=seed,
                  reference=reference)
    results = run_jobs(_exact_job, [dict(j, **shared) for j in jobs], workers=workers,
                       scheduler=scheduler, progress=progress, done=total - len(jobs),
                       total=total)
    by_name = {(j["eps"], j["spec"].name): r for j, r in zip(jobs, results)}
    for p in points:
        found = by_name.get((p.eps, f"point{p.index}"))
        if found is not None:
            exact, cex = found
            p.methods.update(exact)
            if cex is not None and not p.falsified:
                p.counterexample = cex
        p.methods = {m: p.methods[m] for m in methods}
        for m, res in p.methods.items():
            if res.status == "conflict":
                log.error("SOUNDNESS CONFLICT: %s proves margin %.6g > 0 for point %d at eps "
                          "%g, but a validated counterexample has margin %.6g", m, res.bound,
                          p.index, p.eps, min(p.attack_margin, p.nominal_margin))
    return CompareResult(name, network_name, [float(e) for e in eps_values], methods, points,
                         solver, timeout, time.perf_counter() - start, network.num_relus)


def compare_instance(instance: RobustnessInstance, *, methods=None, first: int | None = None,
                     timeout: float | None = None, solver: str | None = None,
                     progress: Progress | None = None, workers: int | None = None,
                     scheduler: str | None = None) -> CompareResult:
    """:func:`compare` (or, for a property other than CR, :func:`~mipcert.verify.props.
    compare.compare_property`) on an instance file's network and points; arguments override it."""
    network, X, y, kwargs = instance_run(instance, first=first, timeout=timeout, solver=solver)
    kwargs.update(progress=progress, workers=workers, scheduler=scheduler)
    if instance.kind != "cr":
        from .props.compare import compare_property

        return compare_property(network, X, y, instance.eps, instance.prop,
                                methods or instance.methods, **kwargs)
    return compare(network, X, y, instance.eps, methods or instance.methods, **kwargs)


def instance_run(instance: RobustnessInstance, *, first=None, timeout=None, solver=None):
    """``(network, X, y, kwargs)`` for a run on an instance file: its network, its points (the
    first ``first``), and the keyword arguments shared by :func:`compare`,
    ``compare_property`` and ``metrics`` (``timeout`` and ``solver`` override the file's)."""
    from ..io import load_network
    from .pointjobs import OnnxReference

    if timeout is not None and not timeout > 0:
        raise InputError(f"--timeout {timeout}: must be > 0 seconds")
    network = load_network(instance.network_path)
    X, y = instance_points(instance, first)
    bad = (y < 0) | (y >= network.output_size)
    if bad.any():
        raise InputError(f"[data] label {int(y[bad][0])} of point {int(np.flatnonzero(bad)[0])} "
                         f"is not a class of the network (0 to {network.output_size - 1})")
    reference = OnnxReference(instance.network_path) \
        if instance.network_path.lower().endswith(".onnx") else None
    kwargs = dict(input_lo=instance.input_lo, input_hi=instance.input_hi,
                  solver=solver or instance.solver,
                  timeout=timeout if timeout is not None else instance.timeout,
                  threads=instance.threads, seed=instance.seed, reference=reference,
                  name=instance.name, network_name=instance.network_path)
    return network, X, y, kwargs


def instance_points(instance: RobustnessInstance, first: int | None = None):
    """The instance's test points ``(X (n, d), y (n,))``, cut to the first ``first``."""
    from dataclasses import replace

    if first is None:
        return instance.load_points()
    if first < 1:
        raise InputError(f"--first {first}: need at least one point")
    return RobustnessInstance.load_points(replace(instance, data=replace(instance.data,
                                                                         first=first)))
