"""What a parameter box certifies on test points (FORMULATIONS 3.6; paper section 8.1).

Logit bounds ``[zl, zu]`` over every parameter vector in the box come from interval
propagation (IBP with the parameters as intervals and the test input as a point).

* one logit (hinge / bce): the nominal prediction is positive iff ``z > 0``; it is
  certified stable iff ``zl > 0`` (positive) or ``zu <= 0`` (negative).
* several logits: nominal class ``c = argmax z``; stable iff ``zl_c > zu_j`` for all
  ``j != c``.
* certified correct = stable and nominally correct; certified accuracy = their fraction.
* regression (squared loss): per point ``(z - y)^2`` is bounded over ``[zl, zu]``; the
  means of these bounds bound the test MSE of every parameter vector in the box.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..bounds import interval as iv
from ..network import training as ref
from ..network.training import LayerShape
from .propagate import forward_bounds, split_params


def logit_bounds(lower: np.ndarray, upper: np.ndarray, layers: Sequence[LayerShape],
                 X: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``(zl, zu)``, each ``(n, m)``, over all parameters in ``[lower, upper]``."""
    dev = iv.resolve_device(device)
    lo = torch.as_tensor(lower, dtype=torch.float64, device=dev)
    hi = torch.as_tensor(upper, dtype=torch.float64, device=dev)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64), device=dev)
    hs, _ = forward_bounds(split_params(lo, hi, layers), Xt, None)
    zl, zu = hs[-1]
    return zl.cpu().numpy(), zu.cpu().numpy()


def stable_mask(zl: np.ndarray, zu: np.ndarray, z_nom: np.ndarray) -> np.ndarray:
    """``(n,)`` booleans: the nominal prediction holds for every parameter in the box."""
    if zl.shape[1] == 1:
        pos = z_nom[:, 0] > 0
        return np.where(pos, zl[:, 0] > 0, zu[:, 0] <= 0)
    c = z_nom.argmax(axis=1)
    rows = np.arange(len(c))
    others = zu.copy()
    others[rows, c] = -np.inf
    return zl[rows, c] > others.max(axis=1)


def classification_certificates(lower, upper, nominal, run, X, y, device="cpu") -> dict:
    """Certified stable / correct fractions and certified accuracy on ``(X, y)``."""
    zl, zu = logit_bounds(lower, upper, run.layers, X, device)
    z_nom = ref.logits(nominal, run.layers, X)
    stable = stable_mask(zl, zu, z_nom)
    # squared loss on +-1 labels classifies by the sign of its one output, as hinge does
    # (and as stable_mask reads it); its own predict returns the value itself
    loss = "hinge" if run.loss == "squared" else run.loss
    correct = ref.predict(nominal, run.layers, X, loss) == np.asarray(y)
    n = max(len(y), 1)
    return {"n_test": int(len(y)), "nominal_accuracy": float(correct.sum() / n),
            "certified_stable": int(stable.sum()),
            "certified_stable_fraction": float(stable.sum() / n),
            "certified_correct": int((stable & correct).sum()),
            "certified_accuracy": float((stable & correct).sum() / n),
            "stable_mask": stable}


def regression_certificates(lower, upper, nominal, run, X, y, device="cpu") -> dict:
    """Bounds on the test MSE over the box (squared loss, one output)."""
    zl, zu = logit_bounds(lower, upper, run.layers, X, device)
    zl, zu = zl[:, 0], zu[:, 0]
    bad = ~(np.isfinite(zl) & np.isfinite(zu))  # overflowed bounds: vacuous
    zl, zu = np.where(bad, -np.inf, zl), np.where(bad, np.inf, zu)
    y = np.asarray(y, dtype=np.float64)
    z_nom = ref.logits(nominal, run.layers, X)[:, 0]
    far = np.maximum((zl - y) ** 2, (zu - y) ** 2)
    near = np.where((zl <= y) & (y <= zu), 0.0, np.minimum((zl - y) ** 2, (zu - y) ** 2))
    return {"n_test": int(len(y)), "nominal_mse": float(np.mean((z_nom - y) ** 2)),
            "certified_mse_lower": float(np.mean(near)),
            "certified_mse_upper": float(np.mean(far)),
            "max_prediction_width": float(np.max(zu - zl)) if len(y) else 0.0}
