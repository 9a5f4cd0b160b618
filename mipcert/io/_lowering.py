"""Lowering of structured linear ops (2-D convolution) to dense matrices on flat C-order data."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UnsupportedError
from ._common import MAX_DENSE_ENTRIES


def check_dense_size(rows: int, cols: int, what: str) -> None:
    """Refuse a lowering whose dense matrix would have more than ``MAX_DENSE_ENTRIES`` entries."""
    if rows * cols > MAX_DENSE_ENTRIES:
        raise UnsupportedError(
            f"{what} would become a dense {rows} x {cols} matrix ({rows * cols:,} entries, limit "
            f"{MAX_DENSE_ENTRIES:,}); mipcert lowers convolutions to dense layers and only does "
            "so for small inputs: use a smaller input or a fully connected network")


def conv2d_output_hw(hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                     pads: Sequence[int], dilations: Sequence[int]) -> tuple[int, int]:
    """Output height/width; ``pads`` is ``(top, left, bottom, right)``."""
    out = []
    for i in range(2):
        span = dilations[i] * (kernel[i] - 1) + 1
        size = (hw[i] + pads[i] + pads[i + 2] - span) // strides[i] + 1
        out.append(int(size))
    return out[0], out[1]


def conv2d_to_dense(weight: np.ndarray, bias: np.ndarray | None, in_shape: Sequence[int],
                    strides: Sequence[int] = (1, 1), pads: Sequence[int] = (0, 0, 0, 0),
                    dilations: Sequence[int] = (1, 1), what: str = "convolution",
                    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Dense form of a 2-D cross-correlation (ONNX Conv / torch Conv2d, one group).

    ``weight``: ``(M, C, kh, kw)``; ``bias``: ``(M,)`` or None; ``in_shape``: ``(C, H, W)``;
    ``pads``: ``(top, left, bottom, right)`` zero padding. Returns ``(W, b, (M, Ho, Wo))`` with
    ``W`` of shape ``(M*Ho*Wo, C*H*W)`` acting on C-order flattened inputs:
    ``y[m, oy, ox] = b[m] + sum_{c,ky,kx} w[m,c,ky,kx] x[c, oy*s0 - p0 + ky*d0, ox*s1 - p1 + kx*d1]``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise UnsupportedError(f"{what}: only 2-D convolutions are supported (weight shape {weight.shape})")
    M, C, kh, kw = weight.shape
    c_in, H, W = (int(v) for v in in_shape)
    if c_in != C:
        raise UnsupportedError(
            f"{what}: the weight expects {C} input channels but the input has {c_in} "
            "(grouped convolutions are not supported)")
    Ho, Wo = conv2d_output_hw((H, W), (kh, kw), strides, pads, dilations)
    if Ho <= 0 or Wo <= 0:
        raise UnsupportedError(f"{what}: the output would be empty ({Ho} x {Wo})")
    check_dense_size(M * Ho * Wo, C * H * W, what)
    m, c, ky, kx, oy, ox = np.meshgrid(np.arange(M), np.arange(C), np.arange(kh), np.arange(kw),
                                       np.arange(Ho), np.arange(Wo), indexing="ij")
    iy = oy * strides[0] - pads[0] + ky * dilations[0]
    ix = ox * strides[1] - pads[1] + kx * dilations[1]
    ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    rows = ((m * Ho + oy) * Wo + ox)[ok]
    cols = ((c * H + iy) * W + ix)[ok]
    dense = np.zeros((M * Ho * Wo, C * H * W))
    # each (output, input) pair is reached by exactly one kernel tap, so plain assignment is exact
    dense[rows, cols] = weight[m[ok], c[ok], ky[ok], kx[ok]]
    b = np.zeros(M) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    return dense, np.repeat(b, Ho * Wo), (M, Ho, Wo)
