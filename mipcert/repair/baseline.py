"""The baseline adversary correction is compared with: PGD adversarial fine-tuning.

Fine-tunes the same parameters (:class:`~mipcert.network.Parameters`) with Adam on the mean
cross-entropy of, per step, a mini-batch of clean points, PGD adversarial examples of that
mini-batch made against the current network (``pgd_steps`` steps at ``eps``; 0 skips them),
and the given adversarial examples (the set the correction fixes). It stops after ``epochs``
epochs or when the next step would end past ``wall_time`` seconds (judged by the longest step
so far), whichever comes first, so that it never gets more than the correction's time. All in
numpy (reference backward pass), no torch. With ``pgd_steps = 0`` it sees exactly the data the
correction sees (the given adversarial examples and the clean points); with ``pgd_steps > 0``
it also makes fresh PGD examples of every clean mini-batch (adversarial training).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..attacks import pgd
from ..errors import InputError
from ..network import Parameters

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass
class FineTuneResult:
    w: np.ndarray
    params: Parameters
    steps: int
    epochs: float
    seconds: float
    stopped_by: str   # "epochs" | "wall_time"

    def network(self):
        return self.params.network_with(self.w)


def pgd_finetune(network, X_adv, y_adv, X_clean, y_clean, *, layers="last", eps: float,
                 epochs: int = 50, lr: float = 1e-3, batch: int = 64, pgd_steps: int = 5,
                 wall_time: float | None = None, seed: int = 0) -> FineTuneResult:
    """Run the baseline (see the module doc); returns the fine-tuned parameters."""
    if epochs < 1 or batch < 1 or lr <= 0:
        raise InputError("fine-tuning needs epochs >= 1, batch >= 1 and lr > 0")
    start = time.perf_counter()
    params = Parameters(network, layers)
    rng = np.random.default_rng(seed)
    X_adv, y_adv = np.atleast_2d(X_adv), np.asarray(y_adv, np.int64)
    X_clean, y_clean = np.atleast_2d(X_clean), np.asarray(y_clean, np.int64)
    w = params.w0.copy()
    m1, m2 = np.zeros_like(w), np.zeros_like(w)
    b1, b2 = ADAM_BETAS
    steps, stopped_by, n, longest = 0, "epochs", len(X_clean), 0.0
    per_epoch = max(1, -(-n // batch))
    for _ in range(epochs):
        order = rng.permutation(n)
        for k in range(0, n, batch):
            step_start = time.perf_counter()
            if wall_time is not None and step_start - start + longest > wall_time:
                stopped_by = "wall_time"
                break
            idx = order[k:k + batch]
            parts_X, parts_y = [X_clean[idx], X_adv], [y_clean[idx], y_adv]
            if pgd_steps > 0:
                current = params.network_with(w)
                parts_X.append(pgd(current, X_clean[idx], y_clean[idx], eps, steps=pgd_steps,
                                   rng=rng))
                parts_y.append(y_clean[idx])
            _, g = params.loss_and_grad(w, np.vstack(parts_X), np.concatenate(parts_y))
            steps += 1
            m1 = b1 * m1 + (1 - b1) * g
            m2 = b2 * m2 + (1 - b2) * g * g
            w = w - lr * (m1 / (1 - b1 ** steps)) / (np.sqrt(m2 / (1 - b2 ** steps)) + ADAM_EPS)
            longest = max(longest, time.perf_counter() - step_start)
        if stopped_by == "wall_time":
            break
    return FineTuneResult(w, params, steps, steps / per_epoch, time.perf_counter() - start,
                          stopped_by)
