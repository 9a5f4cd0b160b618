"""The reference SGD run (FORMULATIONS 3.1) on many perturbed data sets at once.

:func:`train_many` runs ``R`` copies of a :class:`~mipcert.agt.run.TrainingRun` side by
side, copy ``r`` on its own data: features ``X[r]`` ``(n, d)``, labels ``Y[r]`` ``(n,)`` and
sample weights ``Wt[r]`` ``(n,)`` in ``{0, 1}`` (0: the sample was removed and leaves every
batch it was in). Step ``t`` of copy ``r`` is

    theta_{t+1} = theta_t - eta_t / n_t * sum_{i in B_t} w_i clip(g_i(theta_t), -gamma, gamma),
    n_t = sum_{i in B_t} w_i,

the formulas of :mod:`mipcert.network.training` with a leading run axis, so that a hull
over thousands of label flips costs a few numpy calls per step instead of thousands of
Python-level runs. The result agrees with :meth:`TrainingRun.train` on the same data up to
floating-point summation order (tests check ``rtol = 1e-10``); :mod:`.enumerate` replays the
runs that attain a bound through the reference itself.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..network import training as ref
from .run import TrainingRun

#: bytes of per-step work arrays one chunk of runs may use
CHUNK_BYTES = 64 * 2**20


def chunk_size(run: TrainingRun, per_run_data: bool) -> int:
    """How many runs :func:`train_many` should take at once to stay near
    :data:`CHUNK_BYTES` (per run: the widest activations, and the per-sample gradients
    when they are clipped, of the largest batch; plus its own data set)."""
    b = max(len(bt) for bt in run.batches)
    widest = max(max(s.out, s.inp) for s in run.layers)
    per_run = b * (widest * (2 * len(run.layers) + 2) + (run.n_params if run.clip else 0))
    if per_run_data:
        per_run += run.X.size + 2 * len(run.y)
    return max(1, int(CHUNK_BYTES // (8 * per_run)))


def train_many(run: TrainingRun, X: np.ndarray | None = None, Y: np.ndarray | None = None,
               Wt: np.ndarray | None = None) -> np.ndarray:
    """Final parameters ``(R, P)`` of ``R`` runs on the given data (None: the run's own).

    ``X``: ``(R, n, d)``; ``Y``: ``(R, n)``; ``Wt``: ``(R, n)`` weights in {0, 1}. At least
    one of them sets ``R``. A batch whose weights sum to 0 is refused (an empty step)."""
    R = next((len(a) for a in (X, Y, Wt) if a is not None), None)
    if R is None:
        return run.train()[None, :]
    for name, a, shape in (("X", X, (R,) + run.X.shape), ("Y", Y, (R, len(run.y))),
                           ("Wt", Wt, (R, len(run.y)))):
        if a is not None and a.shape != shape:
            raise InputError(f"train_many: {name} has shape {a.shape}, expected {shape}")
    y_all = np.broadcast_to(run.y, (R, len(run.y))) if Y is None else Y
    theta = np.tile(np.asarray(run.theta0, dtype=np.float64), (R, 1))
    for batch, lr in zip(run.batches, run.lrs):
        batch = np.asarray(batch, dtype=np.int64)
        a0 = run.X[batch] if X is None else X[:, batch]           # (b, d) or (R, b, d)
        w = None if Wt is None else Wt[:, batch].astype(np.float64)  # (R, b)
        if w is None:
            count = np.full(R, float(len(batch)))
        else:
            count = w.sum(axis=1)
            if np.any(count == 0):
                raise InputError("a perturbation removes every sample of a batch: lower k")
        gsum = _batch_gradient_sum(theta, run, a0, y_all[:, batch], w)
        theta = theta - (float(lr) / count)[:, None] * gsum
    return theta


def _unflatten_many(theta: np.ndarray, layers):
    """``[(W (R, out, in), b (R, out) or None)]`` views of ``(R, P)`` parameters."""
    out, pos = [], 0
    R = theta.shape[0]
    for s in layers:
        W = theta[:, pos:pos + s.out * s.inp].reshape(R, s.out, s.inp)
        pos += s.out * s.inp
        b = None
        if s.bias:
            b = theta[:, pos:pos + s.out]
            pos += s.out
        out.append((W, b))
    return out


def _batch_gradient_sum(theta, run: TrainingRun, a0, yb, w) -> np.ndarray:
    """``sum_{i in B} w_i clip(g_i)`` for every run: ``(R, P)``. Forward and backward as in
    :func:`mipcert.network.training.per_sample_grads`, with the run axis in front."""
    R = theta.shape[0]
    params = _unflatten_many(theta, run.layers)
    a, hs, inputs = a0, [], []
    for l, (W, b) in enumerate(params):
        inputs.append(a)
        h = np.matmul(a, W.transpose(0, 2, 1))                   # (R, b, out)
        if b is not None:
            h = h + b[:, None, :]
        hs.append(h)
        a = np.maximum(h, 0.0) if l < len(params) - 1 else h
    z = hs[-1]
    nb, m = z.shape[1], z.shape[2]
    delta = ref.loss_delta(z.reshape(R * nb, m), yb.reshape(-1), run.loss).reshape(R, nb, m)
    parts: list[np.ndarray] = []
    for l in range(len(run.layers) - 1, -1, -1):
        W, b = params[l]
        inp = inputs[l] if inputs[l].ndim == 3 else np.broadcast_to(inputs[l], (R,) + inputs[l].shape)
        if run.clip is None:
            dw = delta if w is None else delta * w[:, :, None]
            block = [np.matmul(dw.transpose(0, 2, 1), inp).reshape(R, -1)]
            if b is not None:
                block.append(dw.sum(axis=1))
        else:
            g = np.clip(delta[:, :, :, None] * inp[:, :, None, :], -run.clip, run.clip)
            gb = np.clip(delta, -run.clip, run.clip)
            if w is not None:
                g, gb = g * w[:, :, None, None], gb * w[:, :, None]
            block = [g.sum(axis=1).reshape(R, -1)] + ([gb.sum(axis=1)] if b is not None else [])
        parts = block + parts
        if l > 0:
            delta = np.matmul(delta, W) * (hs[l - 1] > 0)
    return np.concatenate(parts, axis=1)
