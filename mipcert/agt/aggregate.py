"""Sound aggregation of per-sample gradient bounds into descent-direction bounds.

FORMULATIONS 3.5 (paper theorems 6, 8, 9), with a budget of ``k`` samples *per batch* (a
relaxation of a whole-data-set budget ``k``: a different set may be chosen in every batch,
so the bounds also hold for the whole-data-set threat model). Inputs are ``(b, P)`` bounds
on the batch's per-sample gradients (already clipped when clipping is on); outputs are
``(P,)`` bounds on the averaged descent direction, per coordinate.

Soundness notes (checked by brute force over all subsets in ``tests/agt``):

* removal divides by the number of samples left, ``b - j`` for ``j <= k`` removed. The
  mean of the ``m`` largest upper bounds is non-increasing in ``m`` (each added value is no
  larger than those already in), so ``max_{j <= k}`` of "mean of the ``b - j`` largest" is
  attained at ``j = k``: FORMULATIONS's "mean of the ``b - k`` largest" is sound for every
  subset of size ``>= b - k`` (and symmetrically for the lower bound).
* substitution keeps ``b`` samples; replacing ``j <= k`` of them gives a sum of at least
  "``b - j`` smallest ``gl`` minus ``j gamma``", which is ``>=`` "``b - k`` smallest minus
  ``k gamma``" because every clipped ``gl >= -gamma``.
* bounded poisoning: each poisoned sample contributes within ``[gpl_i, gpu_i]`` which
  contains ``[gl_i, gu_i]`` (the unchanged sample is admissible); the ``min(0, .)`` below
  enforces that, so choosing the ``k`` most negative differences is a lower bound for any
  set of up to ``k`` poisoned samples.
"""
from __future__ import annotations

import torch

from ..errors import InputError

Tensor = torch.Tensor


def topk_sum(x: Tensor, k: int, dim: int = 0, largest: bool = True,
             nonneg: bool = False) -> Tensor:
    """Sum of the ``k`` largest (or smallest) entries of ``x`` along ``dim``.

    ``nonneg``: clamp the selected entries at 0 before summing (the k largest of
    ``max(x, 0)``, since clamping is monotone, without clamping the whole array first).
    """
    n = x.shape[dim]
    if k <= 0:
        return x.new_zeros(x.shape[:dim] + x.shape[dim + 1:])
    vals = x if k >= n else torch.topk(x, k, dim=dim, largest=largest, sorted=False).values
    return (vals.clamp_min(0.0) if nonneg else vals).sum(dim)


def sum_smallest(x: Tensor, k: int) -> Tensor:
    """Per column, the sum of the ``k`` smallest entries of ``x`` (``(b, P)`` -> ``(P,)``)."""
    return topk_sum(x, k, dim=0, largest=False)


def sum_largest(x: Tensor, k: int) -> Tensor:
    """Per column, the sum of the ``k`` largest entries of ``x``."""
    return topk_sum(x, k, dim=0, largest=True)


def nominal(gl: Tensor, gu: Tensor) -> tuple[Tensor, Tensor]:
    """No perturbation: the plain mean of the bounds."""
    b = gl.shape[0]
    return gl.sum(0) / b, gu.sum(0) / b


def bounded(gl: Tensor, gu: Tensor, gpl: Tensor, gpu: Tensor, k: int):
    """Theorem 9: ``lower = (1/b)[sum gl + sum of k smallest (gpl - gl)]``, upper alike."""
    b = gl.shape[0]
    k = min(k, b)
    lo = (gl.sum(0) + sum_smallest(torch.clamp_max(gpl - gl, 0.0), k)) / b
    hi = (gu.sum(0) + sum_largest(torch.clamp_min(gpu - gu, 0.0), k)) / b
    return lo, hi


def removal(gl: Tensor, gu: Tensor, k: int):
    """Theorem 6: ``lower = mean of the b - k smallest gl``, ``upper = mean of the b - k
    largest gu`` (sound for every removal of ``j <= k``; see the module docstring)."""
    b = gl.shape[0]
    if k >= b:
        raise InputError(f"removal of k = {k} could empty a batch of {b} samples")
    lo = (gl.sum(0) - sum_largest(gl, k)) / (b - k)
    hi = (gu.sum(0) - sum_smallest(gu, k)) / (b - k)
    return lo, hi


def substitution(gl: Tensor, gu: Tensor, k: int, gamma: float):
    """Theorem 8: ``lower = (1/b)[sum of the b - k smallest gl - k gamma]``, upper alike.

    ``gl``/``gu`` must already be clipped to ``[-gamma, gamma]``."""
    b = gl.shape[0]
    k = min(k, b)
    lo = (gl.sum(0) - sum_largest(gl, k) - k * gamma) / b
    hi = (gu.sum(0) - sum_smallest(gu, k) + k * gamma) / b
    return lo, hi
