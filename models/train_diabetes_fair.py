"""Train the bundled diabetes classifier (10-16-8-2 ReLU) used by the fairness instance.

Data: ``sklearn.datasets.load_diabetes`` (442 patients, 10 features: age, sex, bmi, blood
pressure, six serum measurements), each feature min-max scaled to [0, 1] over the whole set,
so ``sex`` (input 1) takes exactly the two values 0 and 1. Label: disease progression after
one year above its median (class 1) or not (class 0). Split: ``train_test_split(test_size=0.25,
random_state=0, stratify=y)``. Training: sklearn ``MLPClassifier`` (ReLU, hidden (16, 8),
Adam, alpha 1e-3, 2000 iterations, random_state 0); its two-class softmax output is the
logit pair ``(0, s)``, written as a 2-output last layer ``[-w/2; w/2]`` (same class, same
softmax).

Run from the repository root::

    python models/train_diabetes_fair.py    # writes models/diabetes_mlp.npz, diabetes_points.npz

``diabetes_points.npz`` holds the first 20 test points (``X (20, 10)``, ``y (20,)``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from mipcert.io import save_npz
    from mipcert.network import mlp

    X, t = load_diabetes(return_X_y=True)
    X = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))
    y = (t > np.median(t)).astype(np.int64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), activation="relu", alpha=1e-3,
                        max_iter=2000, random_state=0).fit(Xtr, ytr)
    W = [c.T for c in clf.coefs_]
    b = [c.copy() for c in clf.intercepts_]
    W[-1] = np.vstack([-W[-1] / 2, W[-1] / 2])        # logits (-s/2, s/2): softmax unchanged
    b[-1] = np.concatenate([-b[-1] / 2, b[-1] / 2])
    net = mlp(W, b)
    assert np.array_equal(net.forward(Xte).argmax(axis=1), clf.predict(Xte))
    save_npz(net, HERE / "diabetes_mlp.npz")
    np.savez(HERE / "diabetes_points.npz", X=Xte[:20], y=yte[:20])
    print(f"train accuracy {clf.score(Xtr, ytr):.4f}, test accuracy {clf.score(Xte, yte):.4f}")
    print("sex values:", np.unique(X[:, 1]))


if __name__ == "__main__":
    main()
