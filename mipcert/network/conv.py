"""Where a convolution's kernel sits in the dense matrix it is lowered to (weight sharing).

mipcert lowers a 2-D cross-correlation to a :class:`~mipcert.network.Dense` layer at import
(every encoder and bound then sees one kind of affine layer). The lowered matrix
``W (M*Ho*Wo, C*H*W)`` holds each kernel tap many times::

    W[rows[e], cols[e]] = kernel.ravel()[taps[e]]     e = 0 .. nnz-1, every other entry 0
    b[m*Ho*Wo + p]      = bias[m]                     every output position p of channel m

:class:`ConvTying` records ``rows, cols, taps`` so that code which changes parameters (the
adversary correction, fine-tuning: :class:`~mipcert.network.Parameters`) can change the
``M*C*kh*kw + M`` parameters of the convolution instead of the ``M*Ho*Wo*C*H*W`` entries
of its matrix, and the result stays a convolution. The gradient with respect to a tap is the
sum of the gradients of the entries that hold it::

    d/d kernel[t] = sum_{e: taps[e] = t} dW[rows[e], cols[e]],   d/d bias[m] = sum_p db[m, p]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np


def conv2d_output_hw(hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                     pads: Sequence[int], dilations: Sequence[int]) -> tuple[int, int]:
    """Output height/width; ``pads`` is ``(top, left, bottom, right)``."""
    out = []
    for i in range(2):
        span = dilations[i] * (kernel[i] - 1) + 1
        size = (hw[i] + pads[i] + pads[i + 2] - span) // strides[i] + 1
        out.append(int(size))
    return out[0], out[1]


@dataclass(eq=False)
class ConvTying:
    """The weight sharing of one lowered convolution (see the module doc).

    ``kernel_shape`` ``(M, C, kh, kw)``; ``in_shape`` ``(C, H, W)``; ``out_shape``
    ``(M, Ho, Wo)``; ``strides``, ``pads`` ``(top, left, bottom, right)``, ``dilations`` as
    ONNX's Conv has them; ``rows``, ``cols``, ``taps``: ``(nnz,)`` integer arrays, sorted by
    ``taps``.
    """

    kernel_shape: tuple
    in_shape: tuple
    out_shape: tuple
    strides: tuple
    pads: tuple
    dilations: tuple
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)
    taps: np.ndarray = field(repr=False)

    @classmethod
    def of_conv2d(cls, kernel_shape, in_shape, strides=(1, 1), pads=(0, 0, 0, 0),
                  dilations=(1, 1)) -> "ConvTying":
        """The tying of ``y[m, oy, ox] = b[m] + sum_{c,ky,kx} w[m,c,ky,kx]
        x[c, oy*s0 - p0 + ky*d0, ox*s1 - p1 + kx*d1]`` on a C-order ``(C, H, W)`` input with
        zero padding ``pads = (top, left, bottom, right)``."""
        M, C, kh, kw = (int(v) for v in kernel_shape)
        _, H, W = (int(v) for v in in_shape)
        Ho, Wo = conv2d_output_hw((H, W), (kh, kw), strides, pads, dilations)
        m, c, ky, kx, oy, ox = np.meshgrid(np.arange(M), np.arange(C), np.arange(kh),
                                           np.arange(kw), np.arange(Ho), np.arange(Wo),
                                           indexing="ij")
        iy = oy * strides[0] - pads[0] + ky * dilations[0]
        ix = ox * strides[1] - pads[1] + kx * dilations[1]
        ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)   # taps on the zero padding drop out
        # int32: a lowered matrix has at most MAX_DENSE_ENTRIES (5e7) entries
        rows = ((m * Ho + oy) * Wo + ox)[ok].astype(np.int32)
        cols = ((c * H + iy) * W + ix)[ok].astype(np.int32)
        taps = (((m * C + c) * kh + ky) * kw + kx)[ok].astype(np.int32)   # already sorted
        return cls((M, C, kh, kw), (C, H, W), (M, Ho, Wo), tuple(int(s) for s in strides),
                   tuple(int(p) for p in pads), tuple(int(d) for d in dilations),
                   rows, cols, taps)

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def kernel_size(self) -> int:
        return int(np.prod(self.kernel_shape))

    @property
    def channels(self) -> int:
        return int(self.out_shape[0])

    @property
    def positions(self) -> int:
        """Output positions per channel, ``Ho * Wo``."""
        return int(self.out_shape[1] * self.out_shape[2])

    @property
    def out_size(self) -> int:
        return self.channels * self.positions

    def dense(self, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The lowered ``(W, b)`` of ``kernel`` (any shape with ``kernel_size`` entries) and
        ``bias`` ``(M,)``."""
        W = np.zeros((self.out_size, self.in_size))
        # each (output, input) pair is reached by exactly one tap: plain assignment is exact
        W[self.rows, self.cols] = np.asarray(kernel, dtype=np.float64).reshape(-1)[self.taps]
        return W, np.repeat(np.asarray(bias, dtype=np.float64).reshape(-1), self.positions)

    def parameters(self, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(kernel (M*C*kh*kw,), bias (M,))`` read back from a lowered ``(W, b)`` (a tap
        that reaches no input, all padding, reads 0)."""
        kernel = np.zeros(self.kernel_size)
        kernel[self.taps[::-1]] = W[self.rows[::-1], self.cols[::-1]]   # first entry wins
        return kernel, np.asarray(b, dtype=np.float64)[:: self.positions].copy()

    def matches(self, W: np.ndarray, b: np.ndarray) -> bool:
        """True when ``(W, b)`` is exactly the lowering of some kernel and bias (so the tying
        still describes a layer that was rescaled or edited since)."""
        if W.shape != (self.out_size, self.in_size) or b.shape != (self.out_size,):
            return False
        kernel, bias = self.parameters(W, b)
        on = W[self.rows, self.cols]                 # the entries of the pattern (distinct)
        return bool(np.array_equal(on, kernel[self.taps])
                    and np.count_nonzero(W) == np.count_nonzero(on)   # nothing off it
                    and np.array_equal(b, np.repeat(bias, self.positions)))

    @cached_property
    def patch_index(self) -> np.ndarray:
        """``(C*kh*kw, Ho*Wo)`` input index of every tap and output position of one channel
        (``in_size``, a zero column, where the tap falls on the padding): im2col."""
        P, J = self.positions, self.kernel_size // self.channels
        index = np.full((J, P), self.in_size, dtype=np.int64)
        index[self.taps % J, self.rows % P] = self.cols   # the same for every channel
        return index

    def _patches(self, a: np.ndarray) -> np.ndarray:
        """``(B, C*kh*kw, Ho*Wo)`` input patches of ``a`` ``(B, C*H*W)``."""
        padded = np.concatenate([a, np.zeros((len(a), 1))], axis=1)
        return padded[:, self.patch_index]

    def _chunks(self, n: int):
        """Row chunks that keep the patches of a chunk within 64 MiB."""
        step = max(1, int(2**23 // max(self.patch_index.size, 1)))
        return (slice(s, s + step) for s in range(0, n, step))

    def forward(self, a: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """``W a + b`` of the lowering of ``kernel``/``bias`` without forming ``W``:
        ``(B, C*H*W) -> (B, M*Ho*Wo)`` (the same values as the dense product up to the order
        of the float sums)."""
        K = np.asarray(kernel, dtype=np.float64).reshape(self.channels, -1)
        out = np.empty((len(a), self.out_size))
        for s in self._chunks(len(a)):
            y = np.matmul(K, self._patches(a[s]))                     # (b, M, P)
            out[s] = y.reshape(len(y), -1)
        return out + np.repeat(np.asarray(bias, dtype=np.float64), self.positions)

    def kernel_grad(self, g: np.ndarray, a: np.ndarray, per_row: bool) -> np.ndarray:
        """Gradient with respect to the kernel of ``sum_r g[r] . (W a[r])``: for tap ``j`` of
        channel ``m``, ``sum_p g[r, m, p] patch[r, p, j]``.

        ``g`` ``(R, M*Ho*Wo)``: seeds on the layer's outputs; ``a`` ``(R, C*H*W)``: its
        inputs. Returns ``(R, kernel_size)`` (one gradient per row) or ``(kernel_size,)``."""
        M, P = self.channels, self.positions
        out = np.zeros((len(g), self.kernel_size) if per_row else self.kernel_size)
        for s in self._chunks(len(g)):
            gs, patches = g[s].reshape(-1, M, P), self._patches(a[s])  # (b, M, P), (b, J, P)
            if per_row:
                out[s] = np.matmul(gs, patches.transpose(0, 2, 1)).reshape(len(gs), -1)
            else:
                out += np.tensordot(gs, patches, axes=([0, 2], [0, 2])).ravel()
        return out

    def bias_grad(self, g: np.ndarray, per_row: bool) -> np.ndarray:
        """Gradient with respect to the bias ``(M,)`` of ``sum_r g[r] . b``: ``(R, M)`` or
        ``(M,)``."""
        per = g.reshape(len(g), self.channels, self.positions).sum(axis=2)
        return per if per_row else per.sum(axis=0)
