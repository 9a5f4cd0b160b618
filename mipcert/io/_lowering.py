"""Lowering of structured linear ops (2-D convolution) to dense matrices on flat C-order data."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UnsupportedError
from ..network.conv import ConvTying, conv2d_output_hw
from ._common import MAX_DENSE_ENTRIES


def check_dense_size(rows: int, cols: int, what: str) -> None:
    """Refuse a lowering whose dense matrix would have more than ``MAX_DENSE_ENTRIES`` entries."""
    if rows * cols > MAX_DENSE_ENTRIES:
        raise UnsupportedError(
            f"{what} would become a dense {rows} x {cols} matrix ({rows * cols:,} entries, limit "
            f"{MAX_DENSE_ENTRIES:,}); mipcert lowers convolutions to dense layers and only does "
            "so for small inputs: use a smaller input or a fully connected network")


def conv2d_to_dense(weight: np.ndarray, bias: np.ndarray | None, in_shape: Sequence[int],
                    strides: Sequence[int] = (1, 1), pads: Sequence[int] = (0, 0, 0, 0),
                    dilations: Sequence[int] = (1, 1), what: str = "convolution",
                    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], ConvTying]:
    """Dense form of a 2-D cross-correlation (ONNX Conv / torch Conv2d, one group).

    ``weight``: ``(M, C, kh, kw)``; ``bias``: ``(M,)`` or None; ``in_shape``: ``(C, H, W)``;
    ``pads``: ``(top, left, bottom, right)`` zero padding. Returns ``(W, b, (M, Ho, Wo), tying)`` with
    ``W`` of shape ``(M*Ho*Wo, C*H*W)`` acting on C-order flattened inputs:
    ``y[m, oy, ox] = b[m] + sum_{c,ky,kx} w[m,c,ky,kx] x[c, oy*s0 - p0 + ky*d0, ox*s1 - p1 + kx*d1]``;
    ``tying`` (:class:`~mipcert.network.conv.ConvTying`) says which entries share a tap.
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
    tying = ConvTying.of_conv2d(weight.shape, in_shape, strides, pads, dilations)
    dense, b = tying.dense(weight, np.zeros(M) if bias is None else bias)
    return dense, b, (M, Ho, Wo), tying
