"""Training data as an AGT instance describes it: source, split, scaling, features, labels.

Pipeline (all float64): raw data -> seeded train/test split -> scaling of the raw features
(fitted on the training split) -> feature map (``identity``, or every monomial up to degree
2 / 3 including the constant) -> label encoding (``pm1``: two classes as -1/+1, ``index``:
classes as 0..C-1, ``value``: real targets, optionally standardised).
"""
from __future__ import annotations

import itertools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from .instance import DataConfig


@dataclass
class Dataset:
    """``X_*``: ``(n, d)`` model inputs after the feature map; ``y_*``: ``(n,)`` labels."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None          # None for regression
    raw_dim: int
    transform: Callable[[np.ndarray], np.ndarray]  # raw (n, raw_dim) -> model inputs
    raw_train: np.ndarray

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def _load_raw(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as skd

    g = cfg.generator
    for key in ("n_samples", "centers", "n_features"):
        if key in g and int(g[key]) < 1:
            raise InputError(f"[data] {key} = {g[key]} must be >= 1")
    for key in ("noise", "cluster_std"):
        if key in g and float(g[key]) < 0:
            raise InputError(f"[data] {key} = {g[key]} must be >= 0")
    if cfg.source == "moons":
        return skd.make_moons(n_samples=int(g.get("n_samples", 200)),
                              noise=float(g.get("noise", 0.1)),
                              random_state=int(g.get("random_state", 0)))
    if cfg.source == "blobs":
        return skd.make_blobs(n_samples=int(g.get("n_samples", 200)),
                              centers=int(g.get("centers", 2)),
                              n_features=int(g.get("n_features", 2)),
                              cluster_std=float(g.get("cluster_std", 1.0)),
                              random_state=int(g.get("random_state", 0)))
    if cfg.source == "digits":
        X, y = skd.load_digits(return_X_y=True)
        classes = g.get("classes")
        if classes is not None:
            keep = np.isin(y, classes)
            if not keep.any():
                raise InputError(f"[data] classes = {classes} selects no digits (0..9)")
            X, y = X[keep], y[keep]
        return X, y
    if cfg.source == "breast_cancer":
        return skd.load_breast_cancer(return_X_y=True)
    if cfg.source == "diabetes":
        return skd.load_diabetes(return_X_y=True)
    return _load_file(Path(cfg.path), g.get("target_column", -1))


def _load_file(path: Path, target_column: int) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise InputError(f"[data] source file {path} does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "X" not in z or "y" not in z:
                    raise InputError(f"{path} must hold arrays 'X' (n, d) and 'y' (n,)")
                X, y = np.asarray(z["X"], float), np.asarray(z["y"], float).reshape(-1)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(f"[data] cannot read {path} (a .npz with X and y): {exc}") from None
        if X.ndim == 0 or len(X) == 0 or len(y) != len(X):
            raise InputError(f"[data] {path}: X must hold n >= 1 rows and y one label per row "
                             f"({0 if X.ndim == 0 else len(X)} rows, {len(y)} labels)")
        return _finite(X.reshape(len(X), -1), y, path)
    try:
        M = np.genfromtxt(path, delimiter=",", dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{path} is not a numeric CSV file: {exc}") from None
    if M.ndim == 2 and np.isnan(M[0]).all():
        M = M[1:]  # a header row
    if M.ndim != 2 or np.isnan(M).any():
        raise InputError(f"{path} must be a numeric CSV table (one header row allowed)")
    if not -M.shape[1] <= target_column < M.shape[1]:
        raise InputError(f"[data] target_column = {target_column} but {path} has "
                         f"{M.shape[1]} columns")
    y = M[:, target_column]
    return _finite(np.delete(M, target_column % M.shape[1], axis=1), y, path)


def _finite(X, y, path):
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise InputError(f"[data] {path} holds NaN or infinite values")
    return X, y


def monomials(X: np.ndarray, degree: int) -> np.ndarray:
    """All monomials of the columns of ``X`` up to ``degree``, the constant 1 first.

    Order: by degree, then lexicographic in the variable indices (``1, x0, x1, x0^2,
    x0 x1, x1^2, ...``); 2 inputs and degree 3 give 10 features.
    """
    n, d = X.shape
    cols = [np.ones(n)]
    for deg in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(d), deg):
            cols.append(np.prod(X[:, list(combo)], axis=1))
    return np.stack(cols, axis=1)


def _split(n: int, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    n_test = cfg.n_test if cfg.n_test is not None else int(round(cfg.test_fraction * n))
    if n_test >= n:
        raise InputError(f"[data] a test split of {n_test} leaves no training data "
                         f"(the source has {n} samples)")
    perm = np.random.default_rng(cfg.split_seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load, split, scale, expand and encode (see module docstring)."""
    X, y = _load_raw(cfg)
    X = np.asarray(X, dtype=np.float64)
    tr, te = _split(len(X), cfg)
    if cfg.scale == "standard":
        mu, sd = X[tr].mean(0), X[tr].std(0)
        sd = np.where(sd > 0, sd, 1.0)
        scale = lambda A: (A - mu) / sd  # noqa: E731
    elif cfg.scale == "minmax":
        lo, hi = X[tr].min(0), X[tr].max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        scale = lambda A: (A - lo) / span  # noqa: E731
    else:
        scale = lambda A: A  # noqa: E731
    degree = {"identity": 0, "poly2": 2, "poly3": 3}[cfg.features]

    def transform(raw: np.ndarray) -> np.ndarray:
        A = scale(np.asarray(raw, dtype=np.float64))
        return monomials(A, degree) if degree else A

    if cfg.labels == "value":
        yv = np.asarray(y, dtype=np.float64)
        if cfg.scale_y:
            y_mu, y_sd = yv[tr].mean(), yv[tr].std() or 1.0
            yv = (yv - y_mu) / y_sd
        n_classes = None
    else:
        classes = np.unique(y)
        if cfg.labels == "pm1" and len(classes) != 2:
            raise InputError(f"labels = 'pm1' needs exactly two classes, the data has "
                             f"{len(classes)}; use labels = 'index' or select two classes")
        idx = np.searchsorted(classes, y).astype(np.float64)
        yv = 2.0 * idx - 1.0 if cfg.labels == "pm1" else idx
        n_classes = len(classes)
    return Dataset(X_train=transform(X[tr]), y_train=yv[tr], X_test=transform(X[te]),
                   y_test=yv[te], n_classes=n_classes, raw_dim=X.shape[1],
                   transform=transform, raw_train=X[tr])
