"""Layer types of a :class:`~mipcert.network.Network`.

All tensors flowing through a network are *flat* float64 vectors per sample: a batch is an
array of shape ``(batch, n)``. Shape-only layers (Flatten, Reshape) therefore act as the
identity on data and only record the logical shape (C order, as ONNX and torch use).
Convolutions are lowered to :class:`Dense` at import time.
"""
from __future__ import annotations

import abc

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .conv import ConvTying


def _as_float64(name: str, array) -> np.ndarray:
    arr = np.array(array, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(
            f"{name} contains NaN or infinite values: retrain or re-export the network "
            "with finite weights")
    return arr


@dataclass(eq=False)
class Layer(abc.ABC):
    """Base class. ``in_size``/``out_size`` are flat sizes."""

    @abc.abstractmethod
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(batch, in) -> (batch, out)``."""

    @property
    def is_affine(self) -> bool:
        """True when the layer is ``x -> A x + c`` (so it can be merged into a Dense)."""
        return True

    def as_affine(self, in_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(A, c)`` with ``A`` of shape ``(out, in)`` such that ``y = A x + c``."""
        raise InputError(f"{type(self).__name__} is not an affine layer")

    def out_size(self, in_size: int) -> int:
        return in_size


@dataclass(eq=False)
class Dense(Layer):
    """``y = W x + b`` with ``W`` of shape ``(out, in)`` and ``b`` of shape ``(out,)``.

    ``conv``: for a lowered convolution, which entries of ``W`` share a kernel tap
    (:class:`~mipcert.network.conv.ConvTying`; only code that changes parameters uses it).
    A tying that does not describe ``(W, b)`` exactly is refused.
    """

    W: np.ndarray
    b: np.ndarray
    conv: ConvTying | None = field(default=None, repr=False)

    def __post_init__(self):
        self.W = _as_float64("Dense weight", self.W)
        if self.W.ndim != 2:
            raise InputError(f"Dense weight must be 2-D (out, in), got shape {self.W.shape}")
        self.b = _as_float64("Dense bias", self.b).reshape(-1)
        if self.b.shape != (self.W.shape[0],):
            raise InputError(
                f"Dense bias has shape {self.b.shape}, expected ({self.W.shape[0]},) to match "
                f"the weight of shape {self.W.shape}")
        if self.conv is not None and not self.conv.matches(self.W, self.b):
            raise InputError("Dense layer: its convolution tying does not describe its weight "
                             "and bias (the matrix is not the lowering of one kernel)")

    def forward(self, x):
        return x @ self.W.T + self.b

    def as_affine(self, in_size):
        self._check(in_size)
        return self.W, self.b

    def out_size(self, in_size):
        self._check(in_size)
        return self.W.shape[0]

    def _check(self, in_size):
        if self.W.shape[1] != in_size:
            raise InputError(
                f"Dense layer expects {self.W.shape[1]} inputs but receives {in_size}")


@dataclass(eq=False)
class Affine(Layer):
    """Elementwise ``y = scale * x + shift`` (input normalisation: ONNX Sub/Div/Add/Mul)."""

    scale: np.ndarray
    shift: np.ndarray

    def __post_init__(self):
        self.scale = _as_float64("scale", self.scale).reshape(-1)
        self.shift = _as_float64("shift", self.shift).reshape(-1)

    def _full(self, in_size):
        try:
            return (np.broadcast_to(self.scale, (in_size,)),
                    np.broadcast_to(self.shift, (in_size,)))
        except ValueError:
            raise InputError(
                f"elementwise constant of size {self.scale.size}/{self.shift.size} does not "
                f"broadcast to {in_size} inputs") from None

    def forward(self, x):
        s, c = self._full(x.shape[-1])
        return x * s + c

    def as_affine(self, in_size):
        s, c = self._full(in_size)
        return np.diag(s), c.copy()


@dataclass(eq=False)
class ReLU(Layer):
    """``y = max(x, 0)`` elementwise."""

    def forward(self, x):
        return np.maximum(x, 0.0)

    @property
    def is_affine(self):
        return False


@dataclass(eq=False)
class Reshape(Layer):
    """Logical reshape (Flatten is ``Reshape((n,))``): identity on flat data."""

    shape: tuple = field(default=())

    def forward(self, x):
        return x

    def as_affine(self, in_size):
        return np.eye(in_size), np.zeros(in_size)

    def out_size(self, in_size):
        if self.shape and int(np.prod(self.shape)) != in_size:
            raise InputError(f"cannot reshape {in_size} values to {self.shape}")
        return in_size


def Flatten() -> Reshape:  # noqa: N802 - reads like a layer constructor
    """A flatten layer: a reshape to one dimension."""
    return Reshape(())
