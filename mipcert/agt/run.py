"""The training run being certified (FORMULATIONS 3.1), fully explicit and replayable.

A :class:`TrainingRun` holds everything that determines the SGD trajectory: the layer
shapes, ``theta_0``, the training data as used, the fixed batches (index lists), the
per-step learning rates, the loss and the clipping level ``gamma``.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..network import training as ref
from ..network.training import LayerShape
from .data import Dataset
from .instance import Instance


@dataclass
class TrainingRun:
    layers: list[LayerShape]
    theta0: np.ndarray            # (P,)
    X: np.ndarray                 # (n, d) after the feature map
    y: np.ndarray                 # (n,)
    batches: list[np.ndarray]     # T index arrays
    lrs: np.ndarray               # (T,)
    loss: str
    clip: float | None = None
    n_classes: int | None = None
    init: dict | None = None

    @property
    def n_params(self) -> int:
        return ref.param_count(self.layers)

    @property
    def param_names(self) -> list[str]:
        return ref.param_names(self.layers)

    def train(self, X=None, y=None, batches=None) -> np.ndarray:
        """Final parameters of the reference run, optionally on changed data / batches."""
        return ref.train(self.theta0, self.layers, self.X if X is None else X,
                         self.y if y is None else y, self.batches if batches is None else batches,
                         self.lrs, self.loss, self.clip)

    def train_trajectory(self) -> np.ndarray:
        """``(T + 1, P)``: the nominal parameters before every step and after the last."""
        return ref.train(self.theta0, self.layers, self.X, self.y, self.batches, self.lrs,
                         self.loss, self.clip, trajectory=True)

    def as_json(self) -> dict:
        return {"layers": [s.as_json() for s in self.layers], "loss": self.loss,
                "clip": self.clip, "init": self.init, "theta0": self.theta0.tolist(),
                "batches": [b.tolist() for b in self.batches], "lr": self.lrs.tolist(),
                "X": self.X.tolist(), "y": self.y.tolist(), "n_classes": self.n_classes}


def make_layers(n_in: int, hidden: list[int], n_out: int, bias: bool) -> list[LayerShape]:
    sizes = [n_in] + list(hidden) + [n_out]
    return [LayerShape(sizes[i + 1], sizes[i], bias) for i in range(len(sizes) - 1)]


def make_batches(n: int, batch_size: int, epochs: int, order: str, seed: int,
                 drop_last: bool) -> list[np.ndarray]:
    """Fixed batches: consecutive chunks of ``0..n-1`` (``sequential``) or of a fresh seeded
    permutation per epoch (``shuffle``); a final partial batch is kept unless ``drop_last``."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(epochs):
        perm = rng.permutation(n) if order == "shuffle" else np.arange(n)
        for s in range(0, n, batch_size):
            b = perm[s:s + batch_size]
            if drop_last and len(b) < batch_size:
                continue
            batches.append(np.sort(b) if order == "sequential" else b)
    if not batches:
        raise InputError(f"no batches: {n} training samples with batch_size {batch_size} and "
                         "drop_last = true")
    return batches


def init_params(layers: list[LayerShape], inst: Instance) -> np.ndarray:
    """``zeros``; ``normal``: ``W ~ N(0, std^2)`` (std default ``1/sqrt(in)``), biases 0,
    seeded by ``init_seed``; ``file``: the ``theta`` array of an .npz file."""
    m = inst.model
    P = ref.param_count(layers)
    if m.init == "zeros":
        return np.zeros(P)
    if m.init == "file":
        try:
            with np.load(m.init_file) as z:
                theta = np.asarray(z["theta"], dtype=np.float64).reshape(-1)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(f"cannot read 'theta' from init_file {m.init_file} (a .npz): "
                             f"{exc}") from None
        if not np.all(np.isfinite(theta)):
            raise InputError(f"init_file {m.init_file}: theta holds NaN or infinite values")
        if theta.shape != (P,):
            raise InputError(f"init_file holds {theta.size} parameters, the model has {P}")
        return theta
    rng = np.random.default_rng(m.init_seed)
    parts = []
    for s in layers:
        std = m.init_std if m.init_std is not None else 1.0 / np.sqrt(s.inp)
        parts.append(rng.normal(0.0, std, size=s.out * s.inp))
        if s.bias:
            parts.append(np.zeros(s.out))
    return np.concatenate(parts)


def build_run(inst: Instance, data: Dataset) -> TrainingRun:
    """The :class:`TrainingRun` an instance describes, checked against its budget ``k``."""
    t = inst.training
    n_out = data.n_classes if t.loss == "cross_entropy" else 1
    if t.loss in ("hinge", "bce") and data.n_classes != 2:
        raise InputError(f"loss {t.loss!r} is binary but the data has {data.n_classes} classes")
    layers = make_layers(data.n_features, inst.model.hidden, n_out, inst.model.bias)
    batches = make_batches(len(data.X_train), t.batch_size, t.epochs, t.order, t.shuffle_seed,
                           t.drop_last)
    smallest = min(len(b) for b in batches)
    k, kind = inst.perturbation.k, inst.perturbation.kind
    if kind == "removal" and k >= smallest:
        raise InputError(f"removal of k = {k} could empty the smallest batch ({smallest} "
                         "samples): lower k or set [training] drop_last = true")
    lrs = np.array([t.lr / (1.0 + t.lr_decay * s) for s in range(len(batches))])
    m = inst.model
    init = {"kind": m.init, "seed": m.init_seed, "std": m.init_std, "file": m.init_file}
    return TrainingRun(layers=layers, theta0=init_params(layers, inst), X=data.X_train,
                       y=data.y_train, batches=batches, lrs=lrs, loss=t.loss, clip=t.clip,
                       n_classes=data.n_classes, init=init)
