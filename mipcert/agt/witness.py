"""Witnesses: the perturbation a solver's incumbent describes, replayed as real training.

A bound proved on a window that starts at step 0 comes with an incumbent: values of the
adversary's variables (flip / poison / removed indicators, poisoned inputs ``x + x_shift``,
label shifts) under which the model reaches (nearly) the bound. Read as a data set and
retrained with the numpy reference (:func:`mipcert.network.training.train`), it gives a
parameter vector that some admissible perturbation *really* reaches: an inner point that
rests on nothing the solver claimed. Beside the proved (outer) bound it measures how exact
the box is, for continuous threats too, where no enumeration exists.

Reading rule (so that the witness is admissible whatever the solver's tolerances): a
sample is perturbed when its indicator is above 1/2 or its inputs or label moved by more
than 1e-9; if more than ``k`` samples qualify, the ``k`` with the largest indicator values
are kept; inputs are clipped to the ``eps`` ball and label shifts to ``[-nu, nu]``.
Substitutions (gradients, not data) and multi-class flips (the binary does not say which
class) give no witness.

Kinks: the exact models encode every ``if`` of the reference (a hinge's active margin, a
ReLU's sign, a clip) by its closure, so at a boundary both branches are feasible. With
continuous threats an optimum often sits exactly on one (a sample's margin at exactly 1):
the bound is then a supremum, approached by runs on the favourable side, while the
reference takes the other branch at the boundary itself. :func:`best_replay` therefore
also replays the witness with its poisoned inputs nudged by 1e-9 .. 1e-5 in random sign
patterns (inside the ``eps`` ball) and keeps the best run.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.visitor import identify_variables

from .instance import PerturbationConfig
from .run import TrainingRun

#: an input or label move smaller than this is read as no move
MOVE_TOL = 1e-9


def _values(outcome, exprs) -> list[float]:
    """Incumbent values of Pyomo expressions (or floats) in ``exprs``."""
    exprs = list(exprs)
    variables = list({id(v): v for e in exprs if not isinstance(e, float)
                      for v in identify_variables(e)}.values())
    if variables:
        for v, x in zip(variables, outcome.values(variables)):
            v.set_value(float(x), skip_validation=True)
    return [float(e) if isinstance(e, float) else float(pyo.value(e)) for e in exprs]


def witness_desc(outcome, samples: dict, run: TrainingRun,
                 pert: PerturbationConfig) -> dict | None:
    """The perturbation (:mod:`.perturb` description) of ``outcome``'s incumbent, or None.

    ``samples``: ``{i: SampleVars}`` of the window model (:func:`mipcert.encode.sgd.
    perturbation_vars`)."""
    from .perturb import NOMINAL, label_space

    if not outcome.has_solution or pert.kind == "substitution":
        return None
    space, _ = label_space(run)
    chosen = []  # (strength, i, x, label)
    for i, sv in sorted(samples.items()):
        flip = _values(outcome, sv.flip.items)[0] if sv.flip is not None else 0.0
        removed = _values(outcome, sv.removed.items)[0] if sv.removed is not None else 0.0
        strength = max(flip, removed)
        x0, y0 = run.X[i], float(run.y[i])
        x = np.asarray(_values(outcome, sv.x.items)) if pert.eps > 0 else x0
        moved = float(np.max(np.abs(x - x0))) if pert.eps > 0 else 0.0
        label = y0
        if flip > 0.5:
            if space not in ("pm1", "binary01"):
                return None
            label = -y0 if space == "pm1" else 1.0 - y0
        if sv.shift is not None:
            shift = float(np.clip(_values(outcome, sv.shift.items)[0], -pert.nu, pert.nu))
            moved = max(moved, abs(shift))
            label = label + shift
        if strength > 0.5 or moved > MOVE_TOL:
            chosen.append((max(strength, moved), i, np.clip(x, x0 - pert.eps, x0 + pert.eps),
                           label))
    chosen = sorted(chosen, key=lambda c: -c[0])[:pert.k]
    if not chosen:
        return dict(NOMINAL)
    idx = [c[1] for c in chosen]
    if pert.kind == "removal":
        return {"kind": "removal", "samples": idx}
    desc = {"kind": pert.kind, "samples": idx, "labels": [c[3] for c in chosen]}
    if pert.kind == "bounded":
        desc["x"] = [c[2].tolist() for c in chosen]
    return desc


def best_replay(run: TrainingRun, pert: PerturbationConfig, desc: dict, stop: int,
                objective: np.ndarray, sense: str, tries: int = 16,
                seed: int = 0) -> float:
    """The best value of ``objective . theta_stop`` over the reference runs of ``desc`` and
    of its nudged copies (module docstring); every run replayed is admissible."""
    sign = 1.0 if sense == "max" else -1.0
    best = float(objective @ replay_trajectory(run, desc)[stop])
    if desc.get("kind") != "bounded" or pert.eps <= 0 or "x" not in desc:
        return best
    rng = np.random.default_rng(seed)
    idx = np.asarray(desc["samples"])
    x, x0 = np.asarray(desc["x"], dtype=np.float64), run.X[idx]
    for scale in (1e-9, 1e-7, 1e-5):
        for _ in range(tries):
            nudged = np.clip(x + scale * rng.choice((-1.0, 1.0), size=x.shape),
                             x0 - pert.eps, x0 + pert.eps)
            value = float(objective @ replay_trajectory(run, {**desc, "x": nudged})[stop])
            if sign * value > sign * best:
                best = value
    return best


def replay_trajectory(run: TrainingRun, desc: dict) -> np.ndarray:
    """``(T + 1, P)``: the reference run on ``desc``'s data set."""
    from ..network import training as ref
    from .perturb import perturbed_data

    X, y, batches = perturbed_data(run, desc)
    return ref.train(run.theta0, run.layers, X, y, batches, run.lrs, run.loss, run.clip,
                     trajectory=True)
