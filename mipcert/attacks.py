"""Gradient attacks in numpy, shared by the verifier's falsifier and adversary correction.

Everything works on flat float64 batches ``x`` of shape ``(B, n)`` and uses the network's
reference backward pass (:meth:`~mipcert.network.Network.input_gradient`); no torch.

* :func:`projected_sign_descent` is the one loop both users share: signed-gradient steps on
  a per-sample objective, each followed by the projection onto a box ``[lo, hi]`` (which may
  differ per sample), keeping the best point seen.
* :func:`fgsm` (FORMULATIONS 5): ``x' = clip(x + eps sign(grad_x loss(x, y)), box)``.
* :func:`pgd` (FORMULATIONS 5): from a uniform random start in ``B_eps(x) ∩ box``, repeat
  ``x <- proj(x + alpha sign(grad_x loss))`` and keep the iterate of highest loss.

Losses (``loss=``): ``"ce"`` -- the cross-entropy ``-log softmax(z)_y``, whose gradient in
the logits is ``softmax(z) - e_y``; ``"margin"`` -- the Carlini-Wagner margin
``max_{t != y} z_t - z_y`` (positive iff misclassified), gradient ``e_{t*} - e_y``.

The projection onto ``{x' : |x' - x|_inf <= eps} ∩ [box_lo, box_hi]`` is the clip to
``[max(x - eps, box_lo), min(x + eps, box_hi)]`` (both sets are boxes).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import InputError

LOSSES = ("ce", "margin")
#: default number of PGD steps and step size as a share of eps (alpha = 2.5 eps / steps)
PGD_STEPS = 20
PGD_ALPHA_FACTOR = 2.5


def projected_sign_descent(value_and_grad: Callable, x: np.ndarray, lo: np.ndarray,
                           hi: np.ndarray, steps: int, step_size: Callable[[int], np.ndarray]):
    """Minimise a per-sample objective by signed-gradient steps projected onto ``[lo, hi]``.

    ``value_and_grad(x (B, n)) -> (v (B,), g (B, n))``; ``lo``/``hi``: ``(n,)`` or ``(B, n)``;
    ``step_size(it)``: a scalar or an array broadcasting to ``(B, n)``. Iterates
    ``x <- clip(x - step_size(it) sign(g), lo, hi)`` ``steps`` times from ``clip(x)``.
    Returns ``(best_x (B, n), best_v (B,))``: per sample, the point of lowest objective among
    the start, every iterate and the last point.
    """
    x = np.clip(np.array(x, dtype=np.float64), lo, hi)
    best_x, best_v = x.copy(), np.full(x.shape[0], np.inf)
    for it in range(steps + 1):
        v, g = value_and_grad(x)
        better = v < best_v
        best_x[better], best_v[better] = x[better], v[better]
        if it < steps:
            x = np.clip(x - step_size(it) * np.sign(g), lo, hi)
    return best_x, best_v


def _onehot(y: np.ndarray, m: int) -> np.ndarray:
    e = np.zeros((len(y), m))
    e[np.arange(len(y)), y] = 1.0
    return e


def loss_and_input_grad(network, x, y, loss: str = "ce"):
    """Attack loss ``(B,)`` and its gradient in the input ``(B, n)`` (see the module doc)."""
    if loss not in LOSSES:
        raise InputError(f"unknown attack loss {loss!r}; choose one of {', '.join(LOSSES)}")
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    z = network.forward(x)
    e_y = _onehot(y, z.shape[1])
    if loss == "ce":
        zs = z - z.max(axis=1, keepdims=True)
        logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
        c = np.exp(logp) - e_y
        value = -logp[np.arange(len(y)), y]
    else:
        other = np.where(e_y > 0, -np.inf, z)
        t = other.argmax(axis=1)
        c = _onehot(t, z.shape[1]) - e_y
        value = other[np.arange(len(y)), t] - z[np.arange(len(y)), y]
    _, g = network.input_gradient(x, c)
    return value, g


def ball_box(x, eps: float, box_lo=0.0, box_hi=1.0):
    """``(lo, hi)`` ``(B, n)`` of ``B_eps(x) ∩ [box_lo, box_hi]`` (l_inf ball)."""
    if not np.isfinite(eps) or eps < 0:
        raise InputError(f"eps must be a finite number >= 0, got {eps}")
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return np.maximum(x - eps, box_lo), np.minimum(x + eps, box_hi)


def fgsm(network, x, y, eps: float, *, box_lo=0.0, box_hi=1.0, loss: str = "ce"):
    """Fast gradient sign method: ``clip(x + eps sign(grad_x loss), B_eps(x) ∩ box)``, ``(B, n)``."""
    lo, hi = ball_box(x, eps, box_lo, box_hi)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    _, g = loss_and_input_grad(network, x, y, loss)
    return np.clip(x + eps * np.sign(g), lo, hi)


def pgd(network, x, y, eps: float, *, steps: int = PGD_STEPS, alpha: float | None = None,
        box_lo=0.0, box_hi=1.0, loss: str = "ce", rng: np.random.Generator | None = None,
        random_start: bool = True):
    """Projected gradient descent on the attack loss (maximised), ``(B, n)``.

    ``alpha`` defaults to ``PGD_ALPHA_FACTOR * eps / steps``; the start is uniform in
    ``B_eps(x) ∩ box`` (``rng``, default seed 0) or ``x`` itself. Returns, per sample, the
    iterate with the highest loss.
    """
    if steps < 1:
        raise InputError(f"PGD needs at least one step, got steps = {steps}")
    lo, hi = ball_box(x, eps, box_lo, box_hi)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    alpha = PGD_ALPHA_FACTOR * eps / steps if alpha is None else float(alpha)
    if alpha < 0:
        raise InputError(f"the PGD step alpha must be >= 0, got {alpha}")
    if random_start:
        rng = np.random.default_rng(0) if rng is None else rng
        x = lo + (hi - lo) * rng.random(x.shape)

    def negated(xb):
        v, g = loss_and_input_grad(network, xb, y, loss)
        return -v, -g

    best, _ = projected_sign_descent(negated, x, lo, hi, steps, lambda it: alpha)
    return best


def accuracy(network, x, y) -> float:
    """Share of rows of ``x`` ``(B, n)`` classified as ``y``."""
    if len(y) == 0:
        return float("nan")
    return float(np.mean(network.forward(x).argmax(axis=1) == np.asarray(y)))
