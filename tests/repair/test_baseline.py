"""The fine-tuning baselines (mipcert.repair.baseline): the wall-time budget is never overrun
by a step it could foresee, and fine-tuning on the given set alone fits that set."""
from __future__ import annotations

import numpy as np

from mipcert.attacks import fgsm
from mipcert.repair.baseline import pgd_finetune


def _adversarial(net, X, y, n):
    adv = fgsm(net, X, y, 0.1)
    wrong = np.flatnonzero((net.forward(adv).argmax(1) != y) & (net.forward(X).argmax(1) == y))
    return adv[wrong[:n]], y[wrong[:n]]


def test_no_time_means_no_step(digits_mlp, digits_split):
    Xtr, _, ytr, _ = digits_split
    Xa, ya = _adversarial(digits_mlp, Xtr[:300], ytr[:300], 5)
    ft = pgd_finetune(digits_mlp, Xa, ya, Xtr, ytr, eps=0.1, wall_time=0.0)
    assert ft.steps == 0 and ft.stopped_by == "wall_time"
    np.testing.assert_array_equal(ft.w, ft.params.w0)


def test_given_set_fine_tuning_fits_the_given_points(digits_mlp, digits_split):
    Xtr, _, ytr, _ = digits_split
    Xa, ya = _adversarial(digits_mlp, Xtr[:300], ytr[:300], 5)
    assert np.all(digits_mlp.forward(Xa).argmax(1) != ya)
    ft = pgd_finetune(digits_mlp, Xa, ya, Xtr, ytr, eps=0.1, epochs=20, lr=1e-2, pgd_steps=0)
    assert ft.stopped_by == "epochs" and ft.steps == 20 * int(np.ceil(len(Xtr) / 64))
    assert np.mean(ft.network().forward(Xa).argmax(1) == ya) >= 0.8
