"""Polytope bounds of the final parameters (paper eq. 46) and what they certify.

Faces: for directions ``c_k`` (``(K, P)``), maximise ``c_k^T theta_T`` over the last
window's model; the reachable set lies in ``{theta : c_k^T theta <= d_k}`` intersected
with the box (each ``d_k`` a proven dual bound, so the polytope is an outer bound).

Directions (:func:`face_directions`): for a linear model with one output the test points
nearest the decision boundary give ``c = -sign(z_nom(x)) phi(x) / ||phi(x)||``, the exact
direction whose maximum decides whether that point is certified stable; otherwise seeded
random unit directions.

Certified-stable over the polytope (:func:`polytope_certificates`): minimise the predicted
class's margin over the box and the faces with an LP (the forward pass encoded with the
``LP`` relaxation: exact for a linear model, McCormick and triangle relaxations for an
MLP); stable iff the proven LP bound is > 0.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from ..encode.relu import relu_gate
from ..encode.training import dense
from ..encode.varray import add_rows, const, linear, new_vars
from ..network import training as ref
from ..relaxation import Relaxation

#: seed of the random face directions
FACE_SEED = 0


def face_directions(run, X_test: np.ndarray | None, nominal: np.ndarray, K: int) -> np.ndarray:
    """``(K, P)`` unit directions (see the module docstring)."""
    P = run.n_params
    linear_model = len(run.layers) == 1 and run.layers[0].out == 1
    if linear_model and X_test is not None and len(X_test):
        z = ref.logits(nominal, run.layers, X_test)[:, 0]
        order = np.argsort(np.abs(z), kind="stable")[:K]
        dirs = []
        for i in order:
            phi = np.concatenate([X_test[i], [1.0]]) if run.layers[0].bias else X_test[i]
            sign = 1.0 if z[i] > 0 else -1.0
            dirs.append(-sign * phi / max(np.linalg.norm(phi), 1e-300))
        if len(dirs) == K:
            return np.array(dirs)
    rng = np.random.default_rng(FACE_SEED)
    D = rng.normal(size=(K, P))
    return D / np.linalg.norm(D, axis=1, keepdims=True)


def face_bounds(run, pert, relaxation, boxes, horizon: int, K: int, solver: str,
                time_limit, fanout, directions: np.ndarray | None = None) -> dict:
    """Maximise ``c_k^T theta_T`` on the model of the last window. Returns a JSON-ready dict
    ``{"directions": (K, P), "bounds": (K,), "status": [...]}``; a face whose solve proved
    nothing gets ``d_k = max over the box`` (the box's own support value)."""
    from .guards import model_boxes
    from .mip_agt import solve_job, window_jobs
    T = len(run.batches)
    start = ((T - 1) // horizon) * horizon
    if directions is None:
        directions = face_directions(run, None, run.theta0, K)
    targets = [(np.asarray(c, np.float64), "max") for c in directions]
    jobs = window_jobs(run, pert, relaxation, start, T, model_boxes(boxes), targets, solver,
                       time_limit, 1)
    res = [r for rs, _ in fanout.map(solve_job, jobs) for r in rs]
    lo, hi = boxes[T]
    bounds, status = [], []
    for c, r in zip(directions, res):
        support = float(np.sum(np.maximum(c * lo, c * hi)))
        b = r["bound"] if r["status"] in ("optimal", "time_limit", "interrupted") else np.nan
        bounds.append(support if not np.isfinite(b) else min(b, support))
        status.append(r["status"])
    return {"directions": np.asarray(directions).tolist(), "bounds": bounds, "status": status,
            "window": [start, T]}


def polytope_certificates(run, lower, upper, faces: dict, nominal, X, y,
                          solver: str = "highs") -> dict:
    """Certified stable / correct counts over the polytope ``faces`` ∩ ``[lower, upper]``
    for the test points ``X`` ``(n, d)`` (classification)."""
    from ..solve import PersistentSolver
    m = pyo.ConcreteModel(name="agt_polytope_certify")
    theta = new_vars(m, "theta", lower, upper)
    C = np.asarray(faces["directions"], np.float64)
    d = np.asarray(faces["bounds"], np.float64)
    add_rows(m, "faces", [linear([(float(c), v) for c, v in zip(row, theta.items)], -float(b))
                          <= 0 for row, b in zip(C, d)])
    from .trajectory import split_theta
    params = split_theta(theta, run)
    z_nom = ref.logits(nominal, run.layers, X)
    margins = []
    for i, x in enumerate(np.asarray(X, np.float64)):
        a = const(x)
        for l, (W, b) in enumerate(params):
            h = dense(m, f"x{i}_h{l}", W, a, b, Relaxation.LP, as_vars=l < len(params) - 1)
            if l < len(params) - 1:
                a, _ = relu_gate(m, f"x{i}_a{l}", h, Relaxation.LP)
        if h.shape[0] == 1:
            sign = 1.0 if z_nom[i, 0] > 0 else -1.0
            margins.append([linear([(sign, h.items[0])])])
        else:
            c = int(np.argmax(z_nom[i]))
            margins.append([linear([(1.0, h.items[c]), (-1.0, h.items[j])])
                            for j in range(h.shape[0]) if j != c])
    ps = PersistentSolver(m, solver, threads=1)
    stable = np.zeros(len(X), bool)
    for i, rows in enumerate(margins):
        ok = True
        for e in rows:
            if isinstance(e, float) or len(e.linear_vars) == 0:
                ok = ok and float(e.constant) > 0
                continue
            ps.set_objective(e, "min")
            o = ps.solve()
            # one output: z > 0 is positive, z <= 0 negative; a bound of exactly 0 only
            # certifies the negative side
            ok = ok and (o.bound > 0 or (len(rows) == 1 and z_nom[i, 0] <= 0 and o.bound >= 0))
            if not ok:
                break
        stable[i] = ok
    correct = ref.predict(nominal, run.layers, X, run.loss) == np.asarray(y)
    n = max(len(y), 1)
    return {"polytope_certified_stable": int(stable.sum()),
            "polytope_certified_accuracy": float((stable & correct).sum() / n),
            "polytope_stable_mask": stable}
