"""The few array operations bound propagation needs, for numpy arrays and torch tensors alike.

Bounds of one box on the CPU are computed in numpy: the work is a handful of small matrix
products, and ``import torch`` (about a second) would dominate a short ``mipcert verify``.
Batches of boxes (input splitting) and GPU work use torch. :func:`ops` picks the namespace
from an array; numpy's namespace is given torch's names and signatures here, so that
:mod:`.propagate` is written once.
"""
from __future__ import annotations

import numpy as np


class _NumpyOps:
    """torch-like names over numpy (float64, CPU)."""

    float64 = np.float64
    where = staticmethod(np.where)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    stack = staticmethod(np.stack)

    @staticmethod
    def as_tensor(x, dtype=None, device=None):
        return np.asarray(x, dtype=np.float64)

    @staticmethod
    def cat(arrays, dim=0):
        return np.concatenate(arrays, axis=dim)

    @staticmethod
    def eye(n, dtype=None, device=None):
        return np.eye(n)

    @staticmethod
    def zeros(*shape, dtype=None, device=None):
        return np.zeros(shape)

    @staticmethod
    def ones_like(x):
        return np.ones_like(x)

    @staticmethod
    def zeros_like(x):
        return np.zeros_like(x)

    @staticmethod
    def broadcast(x, shape):
        return np.broadcast_to(x, shape)

    @staticmethod
    def row_max(x):
        return x.max(axis=1)

    @staticmethod
    def to_numpy(x):
        return np.asarray(x)


NUMPY = _NumpyOps()


class _TorchOps:
    """The torch functions :mod:`.propagate` uses, and the few whose names differ."""

    def __init__(self):
        import torch

        self._torch = torch
        self.float64 = torch.float64
        for name in ("where", "maximum", "minimum", "stack", "as_tensor", "cat", "eye", "zeros",
                     "ones_like", "zeros_like"):
            setattr(self, name, getattr(torch, name))

    @staticmethod
    def broadcast(x, shape):
        return x.expand(*shape)

    @staticmethod
    def row_max(x):
        return x.max(dim=1).values

    @staticmethod
    def to_numpy(x):
        return x.cpu().numpy()


_TORCH: _TorchOps | None = None


def ops(x):
    """The namespace for ``x``: numpy's for an ``np.ndarray``, torch's for a tensor."""
    global _TORCH
    if isinstance(x, np.ndarray):
        return NUMPY
    if _TORCH is None:
        _TORCH = _TorchOps()
    return _TORCH


def device_of(x):
    """``x.device`` for a tensor, ``None`` for a numpy array."""
    return None if isinstance(x, np.ndarray) else x.device
