"""Fixtures of the adversary-correction tests: the bundled digits models and their data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="session")
def digits_split():
    """``(X_train, X_test, y_train, y_test)`` of the split the bundled models were trained on."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="session")
def digits_mlp():
    from mipcert.io import load_npz

    return load_npz(MODELS / "digits_mlp.npz")


def bundled(name: str):
    from mipcert.io import load_npz

    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{path} not built")
    return load_npz(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
