"""Fixtures for the compare tests: the bundled digits model, its test points, one shared run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
INSTANCE = REPO / "instances" / "digits_mlp_robustness.toml"

#: test points used by the invariant tests: 0 (MILP-only certificate at eps 0.03, falsified
#: at 0.05), 7 (MILP-only at 0.05), 12 (misclassified), 14 (falsified at 0.05), 19 (easy)
PICK = [0, 7, 12, 14, 19]
EPS = [0.01, 0.03, 0.05]


@pytest.fixture(scope="session")
def network():
    from mipcert.io import load_npz

    return load_npz(MODELS / "digits_mlp.npz")


@pytest.fixture(scope="session")
def test_points():
    """All 450 test points ``(X (450, 64), y (450,))`` of the instance's split."""
    from mipcert.verify.instance import DataConfig, load_points

    return load_points(DataConfig())


@pytest.fixture(scope="session")
def picked(test_points):
    X, y = test_points
    return X[PICK], y[PICK]


@pytest.fixture(scope="session")
def result(network, picked):
    """One comparison of every method on the picked points at EPS (HiGHS)."""
    from mipcert.verify.compare import compare

    X, y = picked
    return compare(network, X, y, EPS, timeout=60, seed=0, name="test")


def ball(x0: np.ndarray, eps: float, lo: float = 0.0, hi: float = 1.0):
    return np.clip(x0 - eps, lo, hi), np.clip(x0 + eps, lo, hi)
