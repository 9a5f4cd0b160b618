"""Linearised poisoning attacks: a cheap inner bound beside the random samples.

For every parameter ``j`` and direction ``s = +-1`` the attack differentiates ``theta_T[j]``
through the whole unrolled SGD run (:func:`unrolled_train`, the numpy reference's
formulas in torch, so autograd follows the same active sets and clipping) with respect to
the features ``X``, the label targets and the sample weights ``w`` (removal), ranks the
samples by the first-order gain of their best admissible change, changes the ``k`` best,

* bounded: ``x_i' = x_i + eps sign(s dtheta_T[j]/dx_i)`` (an inf-norm corner), ``y_i' =
  y_i + nu sign(...)``, a flip when its linearised gain is positive;
* substitution: each feature at the end of the data's feature range the gradient points to,
  the best label;
* label_flip / removal: the flips / removals with the largest positive linearised gain,

and repeats the step at the perturbed data (``rounds`` times, keeping every round). The
greedy variant changes one sample at a time, *training* every candidate (the linearised
best change of each sample not yet changed) and keeping the truly best, ``k`` times. The
attacks are heuristics: what they reach is reached (replayed in float64), nothing more.
"""
from __future__ import annotations

import logging

import numpy as np

from .instance import PerturbationConfig
from .perturb import label_space, perturbed_data, used_samples
from .run import TrainingRun

log = logging.getLogger(__name__)

#: above this many parameters the attacks are skipped (one backward pass per parameter)
MAX_ATTACK_PARAMS = 256


def unrolled_train(run: TrainingRun, X, target, w):
    """``theta_T`` ``(P,)`` as a torch function of ``X`` ``(n, d)``, ``target`` (labels
    ``(n,)``, or one-hot ``(n, C)`` for cross-entropy) and weights ``w`` ``(n,)``:
    FORMULATIONS 3.1 with ``sum_i w_i clip(g_i) / sum_i w_i`` per batch."""
    import torch

    theta = torch.as_tensor(run.theta0, dtype=torch.float64)
    for batch, lr in zip(run.batches, run.lrs):
        idx = torch.as_tensor(np.asarray(batch), dtype=torch.long)
        a, t, wb = X[idx], target[idx], w[idx]
        params, pos, hs, inputs = [], 0, [], []
        for s in run.layers:
            W = theta[pos:pos + s.out * s.inp].reshape(s.out, s.inp)
            pos += s.out * s.inp
            b = theta[pos:pos + s.out] if s.bias else None
            pos += s.out if s.bias else 0
            params.append((W, b))
        for l, (W, b) in enumerate(params):
            inputs.append(a)
            h = a @ W.T + (b if b is not None else 0.0)
            hs.append(h)
            a = torch.relu(h) if l < len(params) - 1 else h
        delta = _loss_delta(hs[-1], t, run.loss)
        parts = []
        for l in range(len(params) - 1, -1, -1):
            W, b = params[l]
            g = delta[:, :, None] * inputs[l][:, None, :]
            block = [g.reshape(len(delta), -1)] + ([delta] if b is not None else [])
            parts = block + parts
            if l > 0:
                delta = (delta @ W) * (hs[l - 1] > 0).to(delta.dtype)
        G = torch.cat(parts, dim=1)
        if run.clip is not None:
            G = torch.clamp(G, -run.clip, run.clip)
        theta = theta - float(lr) / wb.sum() * (wb[:, None] * G).sum(dim=0)
    return theta


def _loss_delta(z, t, loss: str):
    import torch

    if loss == "hinge":
        y = t
        return (-y * (1.0 - y * z[:, 0] > 0).to(z.dtype))[:, None]
    if loss == "squared":
        return 2.0 * (z - t[:, None])
    if loss == "bce":
        return (torch.sigmoid(z[:, 0]) - t)[:, None]
    return torch.softmax(z, dim=1) - t


def _tensors(run: TrainingRun, X, y, removed):
    import torch

    space, C = label_space(run)
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    if space == "classes":
        T = torch.nn.functional.one_hot(torch.as_tensor(y, dtype=torch.long), C)
        T = T.to(torch.float64).requires_grad_(True)
    else:
        T = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    w = torch.ones(len(y), dtype=torch.float64)
    w[list(removed)] = 0.0
    return Xt, T, w.requires_grad_(True)


def _gradients(run, desc, j):
    """``d theta_T[j] / d (X, target, w)`` at the data ``desc`` describes (numpy)."""
    import torch

    X, y, _ = perturbed_data(run, desc)
    removed = desc.get("samples", []) if desc.get("kind") == "removal" else []
    Xt, T, w = _tensors(run, X, y, removed)
    theta = unrolled_train(run, Xt, T, w)
    gx, gt, gw = torch.autograd.grad(theta[j], [Xt, T, w], allow_unused=True)
    z = lambda g, ref: np.zeros(ref.shape) if g is None else g.numpy()  # noqa: E731
    return z(gx, Xt), z(gt, T), z(gw, w)


def _best_labels(run, pert, s, y, gt):
    """Per sample: the admissible label with the largest linearised gain of
    ``s theta_T[j]`` and that gain (the label itself and 0 when none helps; for
    ``label_flip`` always a changed label, its gain possibly negative)."""
    space, C = label_space(run)
    must = pert.kind == "label_flip"
    if pert.kind == "substitution":
        if space == "value":  # real targets: the end of their range
            new = np.where(s * gt > 0, run.y.max(), run.y.min())
            return new, s * gt * (new - y)
        options = {"pm1": [-1.0, 1.0], "binary01": [0.0, 1.0]}.get(space)
    elif pert.kind == "label_flip" or pert.flips:
        if space != "classes":
            flipped = -y if space == "pm1" else 1.0 - y
            g = s * gt * (flipped - y)
            if must:  # label_flip: a changed sample is flipped, whatever the gain
                return flipped, g
            return np.where(g > 0, flipped, y), np.maximum(g, 0.0)
        options = None
    elif pert.nu > 0:
        return y + pert.nu * np.sign(s * gt), pert.nu * np.abs(gt)
    else:
        return y.astype(np.float64).copy(), np.zeros(len(y))
    if space == "classes":  # gt: (n, C) gradient w.r.t. the one-hot target
        cur = gt[np.arange(len(y)), y.astype(int)]
        g = s * (gt - cur[:, None])
        if must:
            g[np.arange(len(y)), y.astype(int)] = -np.inf
        best = g.argmax(axis=1)
        gain = g[np.arange(len(y)), best]
        return best.astype(np.float64), gain if must else np.maximum(gain, 0.0)
    g = np.stack([s * gt * (o - y) for o in options], axis=1)
    best = g.argmax(axis=1)
    return np.asarray(options)[best], np.maximum(g[np.arange(len(y)), best], 0.0)


def _proposals(run, pert, desc, j, s, U):
    """Per sample of ``U``: its best admissible change by the linearisation of
    ``s theta_T[j]`` at the data ``desc`` describes, and the first-order gain of it:
    ``(gain (|U|,), new_x (|U|, d) or None, new_labels (|U|,) or None)``."""
    gx, gt, gw = _gradients(run, desc, j)
    X0, y0 = run.X[U], run.y[U]
    if pert.kind == "removal":
        return -s * gw[U], None, None
    new_y, gain = _best_labels(run, pert, s, y0, gt[U])
    new_x = None
    if pert.kind == "substitution":
        lo, hi = run.X.min(axis=0), run.X.max(axis=0)
        new_x = np.where(s * gx[U] > 0, hi, lo)
        gain = gain + np.sum(s * gx[U] * (new_x - X0), axis=1)
    elif pert.eps > 0:
        new_x = X0 + pert.eps * np.where(s * gx[U] >= 0, 1.0, -1.0)
        gain = gain + pert.eps * np.abs(gx[U]).sum(axis=1)
    return gain, new_x, new_y


def _with(desc: dict, pert, U, rows, props) -> dict:
    """``desc`` (possibly nominal) with the proposed changes of ``U[rows]`` added."""
    _, new_x, new_y = props
    out = {"kind": pert.kind, "samples": list(desc.get("samples", []))}
    out["samples"] += [int(U[r]) for r in rows]
    if pert.kind != "removal":
        out["labels"] = list(desc.get("labels", [])) + [float(new_y[r]) for r in rows]
        if new_x is not None:
            out["x"] = list(desc.get("x", [])) + [new_x[r].tolist() for r in rows]
    return out


def _linearised(run, pert, j, s, U, rounds, seen, out):
    """Change the ``k`` samples of largest positive first-order gain; repeat at the result."""
    desc = {"nominal": True}
    for _ in range(rounds):
        props = _proposals(run, pert, desc, j, s, U)
        rows = [r for r in np.argsort(-props[0], kind="stable")[:pert.k] if props[0][r] > 0]
        if not rows:
            return
        desc = _with({}, pert, U, sorted(rows, key=lambda r: U[r]), props)
        if repr(desc) in seen:
            return
        seen.add(repr(desc))
        out.append(desc)


def _greedy(run, pert, j, s, U, evaluate, n_corners=64):
    """Add one sample at a time: every not-yet-changed sample with its linearised best
    change is *trained* (``evaluate``), the best true gain of ``s theta_T[j]`` is kept."""
    desc, best = {"nominal": True}, s * run.train()[j]
    for _ in range(pert.k):
        props = _proposals(run, pert, desc, j, s, U)
        taken = set(desc.get("samples", []))
        rows = [r for r in range(len(U)) if int(U[r]) not in taken]
        if not rows:
            return
        cands = [_with(desc, pert, U, [r], props) for r in rows]
        vals = s * evaluate(cands)[:, j]
        r = int(np.argmax(vals))
        if vals[r] <= best:
            break
        desc, best = cands[r], vals[r]
    if pert.kind == "bounded" and pert.eps > 0 and "x" in desc and n_corners > 0:
        # the linearisation misses activation changes: try random corners of the same samples
        rng = np.random.default_rng(2 * j + (s > 0))
        idx = np.asarray(desc["samples"])
        signs = rng.choice((-1.0, 1.0), size=(n_corners,) + run.X[idx].shape)
        evaluate([dict(desc, x=(run.X[idx] + pert.eps * sg).tolist()) for sg in signs])


def attack_descs(run: TrainingRun, pert: PerturbationConfig, rounds: int = 2,
                 evaluate=None, max_greedy_runs: int = 100_000) -> list[dict]:
    """Linearised attacks (up to ``2 P rounds`` data sets, returned) and, when
    ``evaluate(descs) -> (R, P) thetas`` is given and ``2 P k |U| <= max_greedy_runs``,
    greedy attacks whose every candidate goes through ``evaluate`` (the caller keeps them).
    Nothing for zero perturbations or more than :data:`MAX_ATTACK_PARAMS` parameters."""
    if pert.is_zero:
        return []
    if run.n_params > MAX_ATTACK_PARAMS:
        log.info("linearised attacks skipped: %d parameters > %d", run.n_params,
                 MAX_ATTACK_PARAMS)
        return []
    import torch

    U = used_samples(run)
    greedy = evaluate is not None and 2 * run.n_params * pert.k * len(U) <= max_greedy_runs
    out, seen = [], set()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a thread team costs 10-40x more than the work
    try:
        for j in range(run.n_params):
            for s in (1.0, -1.0):
                _linearised(run, pert, j, s, U, rounds, seen, out)
                if greedy:
                    _greedy(run, pert, j, s, U, evaluate)
    finally:
        torch.set_num_threads(threads)
    return out
