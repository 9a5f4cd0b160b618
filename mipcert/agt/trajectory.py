"""A window of an SGD training run as one Pyomo model (FORMULATIONS 3.3, 3.4).

``build_window(run, pert, relaxation, start, stop, boxes)`` encodes steps
``start .. stop - 1``: the parameters ``theta{start}`` range over the box before step
``start``; every sample of every batch goes through the forward pass, the loss gradient,
the backward pass and (optionally) clipping with the encoders of :mod:`mipcert.encode`;
the SGD update links ``theta{t}`` to ``theta{t+1}``. The threat model's variables belong to
samples, not steps, so a sample perturbed in one step is perturbed the same way in all of
them, under one budget ``k`` for the window (each window gets the whole budget: a sound
relaxation of one budget over the run, exact for the full horizon).

Names: ``theta{t}[j]`` (flat parameters, ordered like ``run.param_names``), and per sample
``step{t}_s{i}_h{l}[j]`` (pre-activations), ``_a{l}`` / ``_a{l}_s`` (ReLU and its gate),
``_loss_r`` / ``_loss_c`` / ``_loss_delta`` (hinge margin, gate, loss gradient),
``_d{l}`` (backward deltas), ``_g{l}_dW`` (weight gradients), ``_clip`` (clipping).

Every variable is bounded: the parameters by ``boxes`` (outer boxes valid for every
reachable parameter vector, from interval AGT, tightened by boxes proved for earlier
windows), everything else by interval arithmetic on those.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo
from pyomo.common.gc_manager import PauseGC

from ..encode.relu import relu_gate
from ..encode.sgd import perturbation_vars, sgd_update, substitute
from ..encode.training import backward, clip, dense, layer_gradient, loss_gradient
from ..encode.varray import VArray, concat, const, new_vars
from ..errors import InputError
from ..network.training import split_layers
from ..relaxation import Relaxation
from .instance import PerturbationConfig
from .run import TrainingRun

log = logging.getLogger(__name__)


@dataclass
class Window:
    """A built window model and the handles an orchestrator needs."""

    model: pyo.ConcreteModel
    start: int
    stop: int
    theta_end: VArray          # (P,) parameters after step stop - 1
    relaxation: Relaxation
    samples: dict | None = None  # {i: SampleVars}: the adversary's variables per sample

    def size(self) -> dict:
        """Variables, binaries, constraints and quadratic constraints of the model."""
        from pyomo.core.expr.numeric_expr import LinearExpression
        n_vars = n_bin = 0
        for v in self.model.component_data_objects(pyo.Var, descend_into=True):
            n_vars += 1
            n_bin += int(v.is_binary())
        n_cons = n_quad = 0
        for c in self.model.component_data_objects(pyo.Constraint, active=True):
            n_cons += 1
            if type(c.body) is not LinearExpression and c.body.polynomial_degree() == 2:
                n_quad += 1
        return {"variables": n_vars, "binaries": n_bin, "constraints": n_cons,
                "quadratic_constraints": n_quad}


def split_theta(theta: VArray, run: TrainingRun) -> list[tuple[VArray, VArray | None]]:
    """``[(W_l (out, in), b_l (out,) or None)]`` views of a flat ``(P,)`` VArray."""
    return split_layers(theta, run.layers)


def theta_vars(block, name: str, lo: np.ndarray, hi: np.ndarray) -> VArray:
    """Parameters in the box ``[lo, hi]``: constants where the box is a point."""
    if np.array_equal(lo, hi):
        return const(lo)
    return new_vars(block, name, lo, hi)


def sample_gradient(block, prefix: str, theta: VArray, run: TrainingRun, sample,
                    relaxation: Relaxation) -> VArray:
    """One sample's (clipped) gradient ``(P,)`` at parameters ``theta``: forward, loss
    gradient, backward (FORMULATIONS 3.3)."""
    params = split_theta(theta, run)
    L = len(params)
    a, acts, gates = sample.x, [sample.x], []
    z = None
    for l, (W, b) in enumerate(params):
        h = dense(block, f"{prefix}_h{l}", W, a, b, relaxation, as_vars=l < L - 1)
        if l < L - 1:
            a, s = relu_gate(block, f"{prefix}_a{l}", h, relaxation)
            acts.append(a)
            gates.append(s)
        else:
            z = h
    delta = loss_gradient(block, f"{prefix}_loss", z, sample.y, run.loss, relaxation,
                          flip=sample.flip, shift=sample.shift, n_classes=run.n_classes)
    grads: list[VArray] = []
    for l in range(L - 1, -1, -1):
        W, b = params[l]
        grads.insert(0, layer_gradient(block, f"{prefix}_g{l}", delta, acts[l], b is not None,
                                       relaxation))
        if l > 0:
            delta = backward(block, f"{prefix}_d{l - 1}", W, delta, gates[l - 1], relaxation)
    g = concat(grads)
    if run.clip is not None:
        g = clip(block, f"{prefix}_clip", g, run.clip, relaxation)
    return g


def build_window(run: TrainingRun, pert: PerturbationConfig, relaxation, start: int,
                 stop: int, boxes: list[tuple[np.ndarray, np.ndarray]]) -> Window:
    """The model of steps ``start .. stop - 1`` (see the module docstring).

    ``boxes[t]`` is a valid box ``(lo, hi)`` for the parameters before step ``t``
    (``t = 0 .. T``).
    """
    relaxation = Relaxation.parse(relaxation)
    T = len(run.batches)
    if not 0 <= start < stop <= T:
        raise InputError(f"window [{start}, {stop}) is not inside the run's {T} steps")
    if len(boxes) != T + 1:
        raise InputError(f"need a box before every step and after the last ({T + 1}), "
                         f"got {len(boxes)}")
    with PauseGC():
        m = pyo.ConcreteModel(name=f"agt_{relaxation.label}_steps_{start}_{stop}")
        samples = sorted({int(i) for t in range(start, stop) for i in run.batches[t]})
        svars = perturbation_vars(m, pert.kind, pert.k, run.X, run.y, samples, relaxation,
                                  eps=pert.eps, nu=pert.nu, flips=pert.flips)
        theta = theta_vars(m, f"theta{start}", *boxes[start])
        for t in range(start, stop):
            grads, removed = {}, {}
            for i in (int(i) for i in run.batches[t]):
                sv = svars[i]
                g = sample_gradient(m, f"step{t}_s{i}", theta, run, sv, relaxation)
                if sv.substituted is not None:
                    g = substitute(m, f"step{t}_s{i}_subst", g, sv.substituted, run.clip)
                grads[i] = g
                if sv.removed is not None:
                    removed[i] = sv.removed
            theta = sgd_update(m, f"theta{t + 1}", theta, grads, float(run.lrs[t]),
                               *boxes[t + 1], relaxation, removed or None, pert.k)
    log.debug("built window [%d, %d) with %s", start, stop, relaxation.label)
    return Window(model=m, start=start, stop=stop, theta_end=theta, relaxation=relaxation,
                  samples=svars)
