"""The :class:`Network`: a networkx DAG of layers holding float64 numpy arrays.

The numpy forward pass here is the executable semantics every bound and every encoding must
match. For bounds and encodings a network is viewed as a stack of :class:`AffineBlock`
(``h_l = W_l a_{l-1} + b_l``, then ``a_l = relu(h_l)`` when ``relu`` is set), obtained by
multiplying out runs of affine layers (normalisation, flatten, dense).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import networkx as nx
import numpy as np

from ..errors import InputError
from .layers import Affine, Layer, ReLU, Reshape

INPUT_NODE = "input"


@dataclass(frozen=True, eq=False)
class AffineBlock:
    """``h = W a_prev + b`` (``W``: ``(out, in)``), followed by a ReLU when ``relu``."""

    W: np.ndarray
    b: np.ndarray
    relu: bool

    @property
    def in_size(self) -> int:
        return self.W.shape[1]

    @property
    def out_size(self) -> int:
        return self.W.shape[0]


class Network:
    """A feed-forward network as a networkx DAG ``input -> layer_0 -> ... -> layer_{n-1}``.

    Parameters
    ----------
    layers: the layers in order of evaluation.
    input_shape: the logical input shape of one sample (without batch), e.g. ``(784,)`` or
        ``(1, 8, 8)``. Data is always passed flat: ``(batch, prod(input_shape))``.
    names: optional readable layer names (default ``dense0``, ``relu0``, ...).

    Each node carries ``layer`` (a :class:`Layer`) and ``size`` (its flat output size).
    Only chains are built today; the graph form keeps room for skip connections.
    """

    def __init__(self, layers: Sequence[Layer], input_shape, names: Sequence[str] | None = None):
        if not layers:
            raise InputError("a network needs at least one layer")
        self.input_shape = tuple(int(d) for d in np.atleast_1d(input_shape))
        self.input_size = int(np.prod(self.input_shape))
        if names is None:
            counts: dict[str, int] = {}
            names = []
            for layer in layers:
                kind = type(layer).__name__.lower()
                names.append(f"{kind}{counts.get(kind, 0)}")
                counts[kind] = counts.get(kind, 0) + 1
        if len(set(names)) != len(names) or INPUT_NODE in names:
            raise InputError(f"layer names must be unique and not {INPUT_NODE!r}: {list(names)}")
        self.graph = nx.DiGraph()
        self.graph.add_node(INPUT_NODE, layer=None, size=self.input_size)
        prev, size = INPUT_NODE, self.input_size
        for name, layer in zip(names, layers):
            size = layer.out_size(size)
            self.graph.add_node(name, layer=layer, size=size)
            self.graph.add_edge(prev, name)
            prev = name
        self.output_size = size
        self._stack: list[AffineBlock] | None = None

    # ----------------------------------------------------------------- structure
    @property
    def layer_names(self) -> list[str]:
        return [n for n in nx.topological_sort(self.graph) if n != INPUT_NODE]

    @property
    def layers(self) -> list[Layer]:
        return [self.graph.nodes[n]["layer"] for n in self.layer_names]

    def affine_relu_stack(self) -> list[AffineBlock]:
        """The network as ``[AffineBlock]``: runs of affine layers multiplied out.

        A ReLU directly after a ReLU is dropped (``relu`` is idempotent); a ReLU with no
        affine layer before it gets an identity block. Identity maps (the start of a run,
        Reshape) are not multiplied out and an Affine scales rows, so the products are the
        same numbers without the ``O(n^3)`` products with identity matrices (which cost
        80 ms per call on the MNIST CNN, where PGD builds a network per step).
        """
        if self._stack is None:
            blocks: list[AffineBlock] = []
            size = self.input_size
            W = b = None     # the affine map since the last ReLU; None: the identity
            pending = False  # an affine layer met since the last ReLU
            for layer in self.layers:
                if isinstance(layer, ReLU):
                    if pending or not blocks or not blocks[-1].relu:
                        if W is None:
                            W, b = np.eye(size), np.zeros(size)
                        blocks.append(AffineBlock(W, b, relu=True))
                    W, b, pending = None, None, False
                    continue
                pending = True
                if isinstance(layer, Reshape):
                    pass                             # x -> x on flat data
                elif isinstance(layer, Affine):
                    s, c = layer._full(size)
                    W, b = ((np.diag(s), c.copy()) if W is None
                            else (s[:, None] * W, s * b + c))
                else:
                    A, c = layer.as_affine(size)
                    W, b = ((np.array(A, dtype=np.float64), np.array(c, dtype=np.float64))
                            if W is None else (A @ W, A @ b + c))
                    size = W.shape[0]
            if W is None and (pending or not blocks):
                W, b = np.eye(size), np.zeros(size)
            if pending or not blocks:
                blocks.append(AffineBlock(W, b, relu=False))
            self._stack = blocks
        return self._stack

    @property
    def num_relus(self) -> int:
        return sum(blk.out_size for blk in self.affine_relu_stack() if blk.relu)

    def __repr__(self) -> str:
        sizes = [self.input_size] + [blk.out_size for blk in self.affine_relu_stack()]
        return f"Network({'-'.join(map(str, sizes))}, {self.num_relus} ReLUs)"

    # ----------------------------------------------------------------- semantics
    def _as_batch(self, x) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        x = x.reshape(1, -1) if single else x.reshape(x.shape[0], -1)
        if x.shape[1] != self.input_size:
            raise InputError(
                f"input has {x.shape[1]} values per sample but the network takes "
                f"{self.input_size} (shape {self.input_shape})")
        return x, single

    def forward(self, x) -> np.ndarray:
        """Reference forward pass, layer by layer. ``x``: ``(n,)`` or ``(batch, n)``."""
        a, single = self._as_batch(x)
        for layer in self.layers:
            a = layer.forward(a)
        return a[0] if single else a

    def activations(self, x) -> list[np.ndarray]:
        """Pre-activations ``h_l`` of every :class:`AffineBlock`, each ``(batch, n_l)``."""
        a, _ = self._as_batch(x)
        hs = []
        for blk in self.affine_relu_stack():
            h = a @ blk.W.T + blk.b
            hs.append(h)
            a = np.maximum(h, 0.0) if blk.relu else h
        return hs

    def input_gradient(self, x, c) -> tuple[np.ndarray, np.ndarray]:
        """Value and gradient of ``c · f(x)`` w.r.t. ``x`` (reference backward pass).

        ``x``: ``(batch, n)``; ``c``: ``(m,)`` or ``(batch, m)``. Returns ``(value (batch,),
        grad (batch, n))``. The ReLU derivative at 0 is taken as 0.
        """
        a, _ = self._as_batch(x)
        stack = self.affine_relu_stack()
        masks = []
        for blk in stack:
            h = a @ blk.W.T + blk.b
            if blk.relu:
                masks.append(h > 0)
                a = np.maximum(h, 0.0)
            else:
                masks.append(None)
                a = h
        c = np.broadcast_to(np.asarray(c, dtype=np.float64), a.shape)
        value = np.sum(c * a, axis=1)
        g = c.copy()
        for blk, mask in zip(reversed(stack), reversed(masks)):
            if mask is not None:
                g = g * mask
            g = g @ blk.W
        return value, g
