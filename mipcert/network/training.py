"""Reference SGD in numpy (float64): the executable semantics of a training run.

FORMULATIONS 3.1: step ``t`` uses the fixed batch ``B_t`` and learning rate ``eta_t``,

    theta_{t+1} = theta_t - eta_t / |B_t| * sum_{i in B_t} clip(g_i(theta_t), -gamma, gamma)

with ``g_i = d loss(f(x_i; theta), y_i) / d theta`` (per-sample gradients; clipping is
elementwise and only applied when ``gamma`` is given).

Parameters are one flat float64 vector, flattened layer by layer: the weight ``W_l`` of
shape ``(out, in)`` row-major, then the bias ``b_l`` (when the layer has one). A model is
``L`` dense layers with a ReLU after every layer but the last (``L = 1``: a linear model).

Losses and their derivative with respect to the logits ``z`` (``delta_L``):

* ``hinge`` (labels ``y`` in {-1, +1}, one logit): ``max(0, 1 - y z)``;
  ``delta = -y * 1[1 - y z > 0]`` -- at the kink ``1 - y z = 0`` the derivative is 0.
* ``squared`` (real labels, one logit): ``(z - y)^2``; ``delta = 2 (z - y)``.
* ``bce`` (labels in {0, 1}, one logit): ``-t log s(z) - (1 - t) log(1 - s(z))``;
  ``delta = sigmoid(z) - t``.
* ``cross_entropy`` (labels in {0..C-1}, C logits): ``delta = softmax(z) - onehot(y)``.

The ReLU derivative at 0 is 0 (``1[h > 0]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError

LOSSES = ("hinge", "squared", "bce", "cross_entropy")


@dataclass(frozen=True)
class LayerShape:
    """One dense layer ``h = W a + b``: ``W`` is ``(out, inp)``; ``b`` exists when ``bias``."""

    out: int
    inp: int
    bias: bool = True

    @property
    def size(self) -> int:
        return self.out * self.inp + (self.out if self.bias else 0)

    def as_json(self) -> dict:
        return {"shape": [self.out, self.inp], "bias": self.bias}


def param_count(layers: Sequence[LayerShape]) -> int:
    return sum(s.size for s in layers)


def param_names(layers: Sequence[LayerShape]) -> list[str]:
    """Readable names in flattening order: ``W0[i,j]`` row-major, then ``b0[i]``, layer by layer."""
    names = []
    for l, s in enumerate(layers):
        names += [f"W{l}[{i},{j}]" for i in range(s.out) for j in range(s.inp)]
        if s.bias:
            names += [f"b{l}[{i}]" for i in range(s.out)]
    return names


def unflatten(theta: np.ndarray, layers: Sequence[LayerShape]):
    """Split a flat ``(P,)`` vector into ``[(W_l (out, in), b_l (out,) or None)]`` (views)."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (param_count(layers),):
        raise InputError(f"parameter vector has shape {theta.shape}, expected "
                         f"({param_count(layers)},) for layers {layers}")
    return split_layers(theta, layers)


def split_layers(theta, layers: Sequence[LayerShape]):
    """:func:`unflatten` for any 1-D sliceable with ``reshape`` (numpy arrays, the encoders'
    ``VArray``), without conversion or checks."""
    out, pos = [], 0
    for s in layers:
        W = theta[pos:pos + s.out * s.inp].reshape(s.out, s.inp)
        pos += s.out * s.inp
        b = None
        if s.bias:
            b = theta[pos:pos + s.out]
            pos += s.out
        out.append((W, b))
    return out


def forward(theta, layers, X) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pre-activations ``h_l`` and layer inputs ``a_{l-1}`` (``a_{-1} = X``), each ``(n, .)``."""
    a = np.asarray(X, dtype=np.float64)
    hs, inputs = [], []
    params = unflatten(theta, layers)
    for l, (W, b) in enumerate(params):
        inputs.append(a)
        h = a @ W.T
        if b is not None:
            h = h + b
        hs.append(h)
        a = np.maximum(h, 0.0) if l < len(params) - 1 else h
    return hs, inputs


def logits(theta, layers, X) -> np.ndarray:
    """``z = f(X; theta)``: ``(n, m)``."""
    return forward(theta, layers, X)[0][-1]


def loss_delta(z: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """``d loss / d z`` per sample: ``z`` ``(n, m)``, ``y`` ``(n,)`` -> ``(n, m)``."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if loss == "hinge":
        return (-y * (1.0 - y * z[:, 0] > 0))[:, None]
    if loss == "squared":
        return 2.0 * (z - y[:, None])
    if loss == "bce":
        return (1.0 / (1.0 + np.exp(-z[:, 0])) - y)[:, None]
    if loss == "cross_entropy":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y.astype(int)] -= 1.0
        return p
    raise InputError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def per_sample_grads(theta, layers, X, y, loss: str) -> np.ndarray:
    """Per-sample gradients ``g_i`` (FORMULATIONS 3.3 backward pass): ``(n, P)``.

    ``delta_{l-1} = (W_l^T delta_l) * 1[h_{l-1} > 0]``, ``dW_l = delta_l a_{l-1}^T``,
    ``db_l = delta_l``.
    """
    hs, inputs = forward(theta, layers, X)
    params = unflatten(theta, layers)
    delta = loss_delta(hs[-1], y, loss)
    parts: list[np.ndarray] = []
    for l in range(len(layers) - 1, -1, -1):
        W, b = params[l]
        dW = delta[:, :, None] * inputs[l][:, None, :]
        block = [dW.reshape(len(delta), -1)] + ([delta] if b is not None else [])
        parts = block + parts
        if l > 0:
            delta = (delta @ W) * (hs[l - 1] > 0)
    return np.concatenate(parts, axis=1)


def sgd_step(theta, layers, X, y, batch, lr: float, loss: str, clip: float | None = None):
    """One step of FORMULATIONS 3.1 on the samples ``batch`` (index list). Returns new theta."""
    batch = np.asarray(batch, dtype=np.int64)
    if batch.size == 0:
        raise InputError("a training batch is empty: every batch needs at least one sample")
    G = per_sample_grads(theta, layers, X[batch], np.asarray(y)[batch], loss)
    if clip is not None:
        G = np.clip(G, -clip, clip)
    return theta - lr / len(batch) * G.sum(axis=0)


def train(theta0, layers, X, y, batches, lrs, loss: str, clip: float | None = None,
          trajectory: bool = False):
    """Run SGD over ``batches`` (a list of index lists) with per-step ``lrs``.

    Returns the final ``(P,)`` parameters, or the ``(T + 1, P)`` trajectory when asked.
    """
    if len(lrs) != len(batches):
        raise InputError(f"{len(batches)} batches but {len(lrs)} learning rates")
    theta = np.array(theta0, dtype=np.float64)
    traj = [theta.copy()]
    X = np.asarray(X, dtype=np.float64)
    for batch, lr in zip(batches, lrs):
        theta = sgd_step(theta, layers, X, y, batch, float(lr), loss, clip)
        if trajectory:
            traj.append(theta.copy())
    return np.stack(traj) if trajectory else theta


def predict(theta, layers, X, loss: str) -> np.ndarray:
    """Predicted labels in the loss's label convention (``squared``: the value itself).

    One logit: hinge -> sign (``z > 0`` gives +1, else -1), bce -> ``1[z > 0]``.
    """
    z = logits(theta, layers, X)
    if loss == "hinge":
        return np.where(z[:, 0] > 0, 1.0, -1.0)
    if loss == "bce":
        return (z[:, 0] > 0).astype(np.float64)
    if loss == "cross_entropy":
        return z.argmax(axis=1).astype(np.float64)
    return z[:, 0]
