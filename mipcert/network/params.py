"""A chosen subset of a network's parameters as one flat vector, and the reference backward
pass with respect to it (numpy, float64).

:class:`Parameters` picks Dense layers of a :class:`~mipcert.network.Network` (``"last"``,
``"all"`` or a list of layer names); its vector ``w`` (shape ``(P,)``) holds, layer by layer
in network order, the weight ``W_l`` ``(out, in)`` row-major and then the bias ``b_l``. The
other layers stay fixed. A convolution is a Dense layer after import; when the layer still
knows its kernel (:class:`~mipcert.network.conv.ConvTying`, set by the ONNX and torch
importers) its parameters are the kernel ``(M, C, kh, kw)`` row-major and the bias ``(M,)``
(weight sharing kept: the corrected layer is still a convolution), else, or with
``tie_convolutions=False``, the entries of its lowered matrix.

Backward pass (the chain rule through the layer list, ReLU derivative at 0 taken as 0)::

    g_out of a Dense layer  ->  dW = g_out a_inᵀ,  db = g_out,  g_in = g_out W
    a tied convolution      ->  d kernel[t] = sum of dW over the entries holding tap t,
                                d bias[m] = sum of db over channel m's positions
    ReLU: g_in = g_out * 1[a_in > 0];  Affine: g_in = g_out * scale;  Reshape: g_in = g_out

:meth:`Parameters.logits_jacobian` seeds it with the unit vectors of every logit
(``dz_k / dw`` for every sample and class), :meth:`Parameters.loss_and_grad` with
``(softmax(z) - e_y) / B`` (the mean cross-entropy).
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from ..errors import InputError
from .conv import ConvTying
from .layers import Affine, Dense, ReLU, Reshape
from .network import Network


class _TiedConv:
    """A chosen convolution inside the passes: the forward pass by im2col
    (:meth:`ConvTying.forward`, no lowered matrix), the matrix only when a gradient has to go
    through the layer to a chosen layer below it."""

    def __init__(self, tying: ConvTying, kernel: np.ndarray, bias: np.ndarray):
        self.tying, self.kernel, self.bias = tying, kernel, bias

    def forward(self, a: np.ndarray) -> np.ndarray:
        return self.tying.forward(a, self.kernel, self.bias)

    @cached_property
    def W(self) -> np.ndarray:
        return self.tying.dense(self.kernel, self.bias)[0]


class Parameters:
    """The parameters of the Dense layers ``layers`` of ``network`` as a flat vector.

    ``layers``: ``"last"`` (default: the last Dense layer), ``"all"`` (every Dense layer) or
    a list of layer names (each must be a Dense layer of ``network``); ``tie_convolutions``:
    a lowered convolution's parameters are its kernel and bias (default) or its matrix.
    """

    def __init__(self, network: Network, layers="last", tie_convolutions: bool = True):
        self.network = network
        names = network.layer_names
        dense = [n for n, l in zip(names, network.layers) if isinstance(l, Dense)]
        if not dense:
            raise InputError("the network has no dense layer whose parameters could change")
        if layers == "last":
            chosen = [dense[-1]]
        elif layers == "all":
            chosen = list(dense)
        elif isinstance(layers, str):
            raise InputError(f"layers = {layers!r}: use \"last\", \"all\" or a list of layer "
                             f"names from {dense}")
        else:
            chosen = list(layers)
            if not chosen:
                raise InputError(f"layers is an empty list: name at least one of {dense}")
            for n in chosen:
                if n not in dense:
                    kind = "not a dense or convolution layer" if n in names else "unknown layer"
                    raise InputError(f"{kind} {n!r} in layers: choose among the layers with "
                                     f"parameters {dense} (or \"last\" / \"all\")")
        self.layer_names = [n for n in dense if n in set(chosen)]  # network order
        # name -> (weight slice, bias slice, W's shape, ConvTying or None)
        self._slices: dict[str, tuple[slice, slice, tuple[int, int], ConvTying | None]] = {}
        pos = 0
        for n in self.layer_names:
            layer = network.graph.nodes[n]["layer"]
            tying = layer.conv if tie_convolutions else None
            nw, nb = ((tying.kernel_size, tying.channels) if tying is not None
                      else (layer.W.size, layer.W.shape[0]))
            sw = slice(pos, pos + nw)
            sb = slice(sw.stop, sw.stop + nb)
            self._slices[n] = (sw, sb, layer.W.shape, tying)
            pos = sb.stop
        self.size = pos
        self._first = names.index(self.layer_names[0])
        self._width = network.graph.nodes[self.layer_names[0]]["layer"].W.shape[1]
        self.w0 = self.vector(network)

    # ----------------------------------------------------------------- vectors
    def vector(self, network: Network) -> np.ndarray:
        """The chosen parameters of ``network`` (same architecture) as ``(P,)``."""
        w = np.empty(self.size)
        for n, (sw, sb, _, tying) in self._slices.items():
            layer = network.graph.nodes[n]["layer"]
            if tying is None:
                w[sw], w[sb] = layer.W.ravel(), layer.b
            else:
                w[sw], w[sb] = tying.parameters(layer.W, layer.b)
        return w

    def names(self) -> list[str]:
        """Readable names ``layer.W[i,j]`` / ``layer.b[i]`` (a tied convolution:
        ``layer.kernel[m,c,y,x]`` / ``layer.bias[m]``) in vector order."""
        out = []
        for n, (_, _, (r, c), tying) in self._slices.items():
            if tying is None:
                out += [f"{n}.W[{i},{j}]" for i in range(r) for j in range(c)]
                out += [f"{n}.b[{i}]" for i in range(r)]
            else:
                out += [f"{n}.kernel[{','.join(map(str, ix))}]"
                        for ix in np.ndindex(*tying.kernel_shape)]
                out += [f"{n}.bias[{m}]" for m in range(tying.channels)]
        return out

    def _layers_with(self, w, lazy: bool = False) -> list:
        """The layers with the chosen parameters ``w``; with ``lazy`` a tied convolution is a
        :class:`_TiedConv` (the passes' fast form) instead of a Dense with its matrix."""
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.size,):
            raise InputError(f"parameter vector has shape {w.shape}, expected ({self.size},)")
        out = []
        for n, layer in zip(self.network.layer_names, self.network.layers):
            if n in self._slices:
                sw, sb, shape, tying = self._slices[n]
                if tying is None:
                    layer = Dense(w[sw].reshape(shape), w[sb])
                elif lazy:
                    layer = _TiedConv(tying, w[sw], w[sb])
                else:
                    layer = Dense(*tying.dense(w[sw], w[sb]), conv=tying)
            out.append(layer)
        return out

    def network_with(self, w) -> Network:
        """A new :class:`Network` with the chosen parameters set to ``w`` (others shared)."""
        return Network(self._layers_with(w), self.network.input_shape,
                       names=self.network.layer_names)

    # ----------------------------------------------------------------- passes
    def features(self, X) -> np.ndarray:
        """The input of the first chosen layer, ``(B, n)``: the output of the fixed layers
        below it, which no ``w`` changes. Pass it with ``features=True`` to the passes below
        to skip those layers (a convolution lowered to a large dense matrix, say)."""
        a, _ = self.network._as_batch(X)
        for layer in self.network.layers[: self._first]:
            a = layer.forward(a)
        return a

    def _forward(self, w, X, features: bool = False):
        layers = self._layers_with(w, lazy=True)
        if features:
            a, start = np.atleast_2d(np.asarray(X, dtype=np.float64)), self._first
            if a.shape[1] != self._width:
                raise InputError(f"features have {a.shape[1]} columns; the first chosen layer "
                                 f"{self.layer_names[0]!r} takes {self._width}")
        else:
            (a, _), start = self.network._as_batch(X), 0
        inputs = [None] * start          # the backward pass stops at the first chosen layer
        for layer in layers[start:]:
            inputs.append(a)
            a = layer.forward(a)
        return layers, inputs, a

    def _backward(self, layers, inputs, g, rows, per_row: bool) -> np.ndarray:
        """Gradient of ``sum_r g[r] · z[rows[r]]`` w.r.t. ``w``: ``(R, P)`` per row, or ``(P,)``.

        ``g``: ``(R, m)`` seeds on the logits; ``rows``: ``(R,)`` sample index of each seed.
        """
        out = np.zeros((len(g), self.size)) if per_row else np.zeros(self.size)
        first = self._first
        for idx in range(len(layers) - 1, first - 1, -1):
            name, layer, a_in = self.network.layer_names[idx], layers[idx], inputs[idx][rows]
            if isinstance(layer, (Dense, _TiedConv)):
                if name in self._slices:
                    sw, sb, _, tying = self._slices[name]
                    if tying is not None:
                        out[..., sw] = tying.kernel_grad(g, a_in, per_row)
                        out[..., sb] = tying.bias_grad(g, per_row)
                    elif per_row:
                        out[:, sw] = (g[:, :, None] * a_in[:, None, :]).reshape(len(g), -1)
                        out[:, sb] = g
                    else:
                        out[sw], out[sb] = (g.T @ a_in).ravel(), g.sum(axis=0)
                if idx > first:
                    g = g @ layer.W
            elif isinstance(layer, ReLU):
                g = g * (a_in > 0)
            elif isinstance(layer, Affine):
                g = g * layer._full(a_in.shape[1])[0]
            elif not isinstance(layer, Reshape):
                raise InputError(f"no backward pass for layer {name!r} of type "
                                 f"{type(layer).__name__}")
        return out

    # Every pass takes ``X`` as network inputs, or with ``features=True`` as the output of
    # :meth:`features` (the same values, without re-running the fixed layers).
    def logits(self, w, X, features: bool = False) -> np.ndarray:
        """``z = f(X; w)``: ``(B, m)``."""
        return self._forward(w, X, features)[2]

    def logits_jacobian(self, w, X, features: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(z (B, m), J (B, m, P))`` with ``J[i, k] = d z_k(x_i; w) / d w``."""
        layers, inputs, z = self._forward(w, X, features)
        B, m = z.shape
        seeds = np.tile(np.eye(m), (B, 1))
        rows = np.repeat(np.arange(B), m)
        J = self._backward(layers, inputs, seeds, rows, per_row=True)
        return z, J.reshape(B, m, self.size)

    def loss_and_grad(self, w, X, y, features: bool = False) -> tuple[float, np.ndarray]:
        """Mean cross-entropy ``(1/B) sum_i -log softmax(z_i)_{y_i}`` and its gradient ``(P,)``."""
        layers, inputs, z = self._forward(w, X, features)
        y = np.asarray(y, dtype=np.int64).reshape(-1)
        zs = z - z.max(axis=1, keepdims=True)
        logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
        B = len(y)
        seed = np.exp(logp)
        seed[np.arange(B), y] -= 1.0
        grad = self._backward(layers, inputs, seed / B, np.arange(B), per_row=False)
        return float(-logp[np.arange(B), y].mean()), grad

    def loss(self, w, X, y, features: bool = False) -> float:
        """Mean cross-entropy only (no backward pass)."""
        z = self.logits(w, X, features)
        zs = z - z.max(axis=1, keepdims=True)
        logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(z)), np.asarray(y, dtype=np.int64)].mean())
