"""FGSM / PGD (mipcert.attacks): they stay in the eps ball and the input box, their input
gradients match finite differences, and PGD is at least as strong as FGSM."""
from __future__ import annotations

import numpy as np
import pytest

from mipcert.attacks import accuracy, fgsm, loss_and_input_grad, pgd
from mipcert.errors import InputError

from .conftest import bundled


@pytest.fixture(params=["digits_mlp.npz", "digits_cnn.npz"])
def model(request):
    return bundled(request.param)


@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_input_gradient_matches_finite_differences(digits_mlp, digits_split, loss):
    _, Xte, _, yte = digits_split
    x, y = Xte[:3], yte[:3]
    _, g = loss_and_input_grad(digits_mlp, x, y, loss)
    h = 1e-6
    for j in (0, 20, 37):
        e = np.zeros(x.shape[1])
        e[j] = h
        fd = (loss_and_input_grad(digits_mlp, x + e, y, loss)[0]
              - loss_and_input_grad(digits_mlp, x - e, y, loss)[0]) / (2 * h)
        np.testing.assert_allclose(g[:, j], fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.3])
def test_attacks_stay_in_ball_and_box(model, digits_split, eps):
    _, Xte, _, yte = digits_split
    x, y = Xte[:60], yte[:60]
    for adv in (fgsm(model, x, y, eps), pgd(model, x, y, eps, steps=10),
                pgd(model, x, y, eps, steps=5, alpha=10 * eps + 0.1, loss="margin")):
        assert adv.shape == x.shape
        assert np.all(np.abs(adv - x) <= eps + 1e-12)
        assert np.all((adv >= 0.0) & (adv <= 1.0))


def test_pgd_at_least_as_strong_as_fgsm(model, digits_split):
    _, Xte, _, yte = digits_split
    for eps in (0.05, 0.1):
        acc_fgsm = accuracy(model, fgsm(model, Xte, yte, eps), yte)
        acc_pgd = accuracy(model, pgd(model, Xte, yte, eps, steps=20), yte)
        assert acc_pgd <= acc_fgsm
        assert acc_fgsm < accuracy(model, Xte, yte)  # the attack does something


def test_fgsm_is_one_signed_step(digits_mlp, digits_split):
    _, Xte, _, yte = digits_split
    x, y = Xte[:5], yte[:5]
    _, g = loss_and_input_grad(digits_mlp, x, y)
    np.testing.assert_array_equal(fgsm(digits_mlp, x, y, 0.1), np.clip(x + 0.1 * np.sign(g), 0, 1))


def test_bad_eps_and_loss(digits_mlp, digits_split):
    _, Xte, _, yte = digits_split
    with pytest.raises(InputError, match="eps"):
        fgsm(digits_mlp, Xte[:2], yte[:2], -0.1)
    with pytest.raises(InputError, match="loss"):
        pgd(digits_mlp, Xte[:2], yte[:2], 0.1, loss="hinge")
