"""Perturbation models and the SGD update as Pyomo constraints (FORMULATIONS 3.1, 3.2).

The adversary acts once on the data set: one set of decision variables per *sample*,
shared by every step in which the sample appears, with one budget ``k`` over the model:

- ``label_flip``: indicator ``flip[i]`` (1 = the label is changed), ``sum_i flip[i] <= k``;
- ``bounded``: indicator ``poison[i]``, ``sum_i poison[i] <= k``, feature shifts
  ``|x_shift[i, j]| <= eps poison[i]`` (``x' = x + x_shift``), label shifts
  ``|y_shift[i]| <= nu poison[i]`` and, with flips, ``flip[i] <= poison[i]``;
- ``removal``: indicator ``removed[i]``, ``sum_i removed[i] <= k``; the step divides by the
  batch size actually used, selected exactly by indicators ``q[t, j]`` (:func:`sgd_update`);
- ``substitution``: indicator ``substituted[i]``, ``sum_i substituted[i] <= k``; a replaced
  sample contributes any clipped gradient: ``g_eff = g + d`` with ``|d| <= 2 gamma
  substituted[i]`` and ``g_eff`` in ``[-gamma, gamma]``.

The update of step ``t`` with batch ``B`` and learning rate ``eta``::

    theta_{t+1} = theta_t - eta / |B| * sum_{i in B} g_i                   (no removal)
    theta_{t+1} = theta_t - eta * sum_j q_j / (|B| - j) * S,   S = sum_{i in B} (1 - r_i) g_i
    sum_j q_j = 1,   sum_j j q_j = sum_{i in B} r_i                         (removal)

where ``q_j * S`` and ``r_i * g_i`` are indicator products (exact Big-M, FORMULATIONS 1.3).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from ..errors import InputError
from ..relaxation import Relaxation
from .products import product
from .varray import VArray, add_rows, const, define, linear, new_vars, widen

KINDS = ("none", "bounded", "label_flip", "removal", "substitution")


@dataclass
class SampleVars:
    """One training sample under the threat model: ``x`` ``(d,)`` features (constants or
    ``x + x_shift``), and 1-entry VArrays (or None) for its label flip, label shift,
    removal and substitution indicators."""

    x: VArray
    y: float
    flip: VArray | None = None
    shift: VArray | None = None
    removed: VArray | None = None
    substituted: VArray | None = None


def perturbation_vars(block: pyo.Block, kind: str, k: int, X: np.ndarray, y: np.ndarray,
                      samples, relaxation: Relaxation, eps: float = 0.0, nu: float = 0.0,
                      flips: bool = False) -> dict[int, SampleVars]:
    """The adversary's variables for ``samples`` (indices into ``X``, ``(n, d)``) and the
    one budget row ``budget``. Returns ``{i: SampleVars}``."""
    relaxation = Relaxation.parse(relaxation)
    if kind not in KINDS:
        raise InputError(f"unknown perturbation kind {kind!r}: choose one of {', '.join(KINDS)}")
    samples = sorted(int(i) for i in samples)
    out = {i: SampleVars(x=const(X[i]), y=float(y[i])) for i in samples}
    if kind == "none" or k == 0 or not samples:
        return out
    if kind == "bounded" and eps == 0 and nu == 0 and not flips:
        return out
    integral = relaxation.integral
    n = len(samples)
    name = {"label_flip": "flip", "bounded": "poison", "removal": "removed",
            "substitution": "substituted"}[kind]
    ind = new_vars(block, name, np.zeros(n), np.ones(n), indicator=True, integral=integral)
    add_rows(block, "budget", [linear([(1.0, v) for v in ind.items], -float(k)) <= 0])
    for t, i in enumerate(samples):
        one = ind[t:t + 1]
        if kind == "label_flip":
            out[i].flip = one
        elif kind == "removal":
            out[i].removed = one
        elif kind == "substitution":
            out[i].substituted = one
    if kind != "bounded":
        return out
    d = X.shape[1]
    rows = []
    if eps > 0:
        e = new_vars(block, "x_shift", np.full((n, d), -eps), np.full((n, d), eps))
        for t, i in enumerate(samples):
            for j in range(d):
                rows.append(linear([(1.0, e.items[t, j]), (-eps, ind.items[t])]) <= 0)
                rows.append(linear([(-1.0, e.items[t, j]), (-eps, ind.items[t])]) <= 0)
            items = np.array([linear([(1.0, e.items[t, j])], float(X[i, j])) for j in range(d)],
                             dtype=object)
            out[i].x = VArray(items, X[i] - eps, X[i] + eps, np.zeros(d, bool))
    if nu > 0:
        v = new_vars(block, "y_shift", np.full(n, -nu), np.full(n, nu))
        for t, i in enumerate(samples):
            rows.append(linear([(1.0, v.items[t]), (-nu, ind.items[t])]) <= 0)
            rows.append(linear([(-1.0, v.items[t]), (-nu, ind.items[t])]) <= 0)
            out[i].shift = v[t:t + 1]
    if flips:
        f = new_vars(block, "flip", np.zeros(n), np.ones(n), indicator=True, integral=integral)
        for t, i in enumerate(samples):
            rows.append(linear([(1.0, f.items[t]), (-1.0, ind.items[t])]) <= 0)
            out[i].flip = f[t:t + 1]
    add_rows(block, "poison_link", rows)
    return out


def substitute(block: pyo.Block, name: str, g: VArray, substituted: VArray,
               gamma: float) -> VArray:
    """``g_eff = g + d``, ``|d| <= 2 gamma substituted``, ``g_eff`` in ``[-gamma, gamma]``
    (``g``: a clipped gradient ``(P,)``)."""
    P = g.shape[0]
    d_lo = np.maximum(-2.0 * gamma, -gamma - g.hi)
    d_hi = np.minimum(2.0 * gamma, gamma - g.lo)
    d = new_vars(block, f"{name}_d", np.minimum(d_lo, 0.0), np.maximum(d_hi, 0.0))
    p = substituted.items[0]
    rows = []
    for j in range(P):
        rows.append(linear([(1.0, d.items[j]), (-2.0 * gamma, p)]) <= 0)
        rows.append(linear([(-1.0, d.items[j]), (-2.0 * gamma, p)]) <= 0)
    add_rows(block, f"{name}_d_budget", rows)
    exprs = [linear([(1.0, g.items[j]), (1.0, d.items[j])]) for j in range(P)]
    return define(block, name, exprs, np.full(P, -gamma), np.full(P, gamma), force_vars=True)


def sgd_update(block: pyo.Block, name: str, theta: VArray, grads: dict[int, VArray],
               lr: float, next_lo: np.ndarray, next_hi: np.ndarray,
               relaxation: Relaxation, removed: dict[int, VArray] | None = None,
               k: int = 0) -> VArray:
    """``theta_{t+1}`` ``(P,)``: variables ``name[j]`` in ``[next_lo, next_hi]`` (a valid
    outer box, e.g. interval AGT's) linked to ``theta_t`` by the update of the module
    docstring. ``grads``: per-sample gradients of the batch; ``removed``: their removal
    indicators (removal only) with budget ``k``."""
    relaxation = Relaxation.parse(relaxation)
    P, B = theta.shape[0], len(grads)
    samples = sorted(grads)
    if B == 0:
        raise InputError(f"{name}: a training batch is empty")
    if not removed:
        exprs = [linear([(1.0, theta.items[j])] + [(-lr / B, grads[i].items[j])
                                                     for i in samples]) for j in range(P)]
    else:
        exprs = _removal_step(block, name, theta, grads, samples, lr, relaxation, removed, k)
    nxt = new_vars(block, name, next_lo, next_hi)
    add_rows(block, f"{name}_update", [
        linear([(1.0, nxt.items[j])] + [(-1.0, exprs[j])]) == 0 for j in range(P)])
    return nxt


def _removal_step(block, name, theta, grads, samples, lr, relaxation, removed, k):
    """The removal update's right-hand side, one linear expression per parameter."""
    P, B = theta.shape[0], len(samples)
    kept = []
    for i in samples:
        r = removed[i]
        R = VArray(np.repeat(r.items, P), np.repeat(r.lo, P), np.repeat(r.hi, P),
                   np.repeat(r.indicator, P))
        rg = product(block, f"{name}_s{i}_removed_g", R, grads[i], relaxation)
        kept.append((grads[i], rg))
    s_lo = sum(np.minimum(g.lo, 0.0) for g, _ in kept)
    s_hi = sum(np.maximum(g.hi, 0.0) for g, _ in kept)
    S = define(block, f"{name}_kept_sum",
               [linear([(1.0, g.items[j]) for g, _ in kept] + [(-1.0, rg.items[j])
                                                              for _, rg in kept])
                for j in range(P)], *widen(s_lo, s_hi), force_vars=True)
    J = min(k, B - 1)
    q = new_vars(block, f"{name}_q", np.zeros(J + 1), np.ones(J + 1), indicator=True,
                 integral=relaxation.integral)
    add_rows(block, f"{name}_q_select", [
        linear([(1.0, v) for v in q.items], -1.0) == 0,
        linear([(float(j), q.items[j]) for j in range(J + 1)]
               + [(-1.0, removed[i].items[0]) for i in samples]) == 0])
    terms = [[(1.0, theta.items[j])] for j in range(P)]
    for j in range(J + 1):
        Q = VArray(np.repeat(q.items[j:j + 1], P), np.zeros(P), np.ones(P), np.ones(P, bool))
        qs = product(block, f"{name}_qS{j}", Q, S, relaxation)
        for p in range(P):
            terms[p].append((-lr / (B - j), qs.items[p]))
    return [linear(t) for t in terms]
