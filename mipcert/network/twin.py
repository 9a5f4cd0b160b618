"""Two copies of one network in a single :class:`Network`, sharing some of their inputs.

Relational properties (Lipschitz robustness, individual fairness; FORMULATIONS 2) speak of
two inputs ``x`` and ``x'`` at once. Stacking two copies of the network block-diagonally
turns them into an ordinary property of one bigger network, so bounds, encodings,
falsification and the verifier apply unchanged, and the two copies live in one model.

Layout for ``twin = twin_network(net, shared)`` with ``n`` inputs, ``m`` outputs and
``shared`` a boolean mask ``(n,)``::

    twin input  u = (x_A (n,), x_B[~shared] (n - n_shared,))
    copy A      x   = x_A
    copy B      x'  = x_A on shared entries, the own entries of u elsewhere
    twin output (z(x) (m,), z(x') (m,))

Each block of the stack becomes ``[[W, 0], [0, W]]`` (the first one reads ``x'`` through a
selection matrix), so ``twin.forward(u) == (net.forward(x), net.forward(x'))`` (up to the
summation order).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .layers import Dense, ReLU
from .network import Network


def _shared_mask(n: int, shared) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    if shared is None:
        return mask
    shared = np.asarray(shared)
    if shared.dtype == bool:
        if shared.shape != (n,):
            raise InputError(f"shared mask has shape {shared.shape}, expected ({n},)")
        return shared.copy()
    idx = shared.astype(np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InputError(f"shared input indices must lie in [0, {n}), got {idx.tolist()}")
    mask[idx] = True
    return mask


def copy_b_selector(n: int, shared) -> np.ndarray:
    """``P`` ``(n, n + n_own)`` with ``x' = P u`` for the twin input ``u`` (module doc)."""
    mask = _shared_mask(n, shared)
    own = np.flatnonzero(~mask)
    P = np.zeros((n, n + own.size))
    P[np.flatnonzero(mask), np.flatnonzero(mask)] = 1.0
    P[own, n + np.arange(own.size)] = 1.0
    return P


def twin_network(network: Network, shared=None) -> Network:
    """The two-copy network of the module docstring.

    ``shared``: indices (or a boolean mask ``(n,)``) of the inputs both copies read from
    ``x_A``; ``None`` shares nothing (twin input ``(x, x')``, size ``2 n``).
    """
    n = network.input_size
    P = copy_b_selector(n, shared)
    stack = network.affine_relu_stack()
    layers = []
    for l, blk in enumerate(stack):
        W, b = blk.W, blk.b
        if l == 0:
            WA = np.hstack([W, np.zeros((W.shape[0], P.shape[1] - n))])
            WB = W @ P
            Wt = np.vstack([WA, WB])
        else:
            Z = np.zeros_like(W)
            Wt = np.block([[W, Z], [Z, W]])
        layers.append(Dense(Wt, np.concatenate([b, b])))
        if blk.relu:
            layers.append(ReLU())
    return Network(layers, (P.shape[1],))


def split_twin_input(u, n: int, shared=None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, x')`` from twin inputs ``u`` ``(B, n + n_own)``, each ``(B, n)``."""
    u = np.atleast_2d(np.asarray(u, dtype=np.float64))
    return u[:, :n], u @ copy_b_selector(n, shared).T


def join_twin_input(x, x2, shared=None) -> np.ndarray:
    """The twin input ``u`` ``(B, n + n_own)`` of pairs ``x, x'`` ``(B, n)`` (``x'``'s shared
    entries are taken from ``x``)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    x2 = np.atleast_2d(np.asarray(x2, dtype=np.float64))
    mask = _shared_mask(x.shape[1], shared)
    return np.hstack([x, x2[:, ~mask]])
