"""``Network.affine_relu_stack`` (every bound and encoder reads it) against the network's own
layer-by-layer forward pass and against the plain product of every layer's affine matrix
(identities and diagonal matrices multiplied out, the definition)."""
from __future__ import annotations

import numpy as np
import pytest

from mipcert.network import Affine, AffineBlock, Dense, Network, ReLU, Reshape


def _by_definition(net):
    blocks, W, b, pending = [], np.eye(net.input_size), np.zeros(net.input_size), False
    for layer in net.layers:
        if isinstance(layer, ReLU):
            if pending or not blocks or not blocks[-1].relu:
                blocks.append(AffineBlock(W, b, relu=True))
            W, b, pending = np.eye(W.shape[0]), np.zeros(W.shape[0]), False
        else:
            A, c = layer.as_affine(W.shape[0])
            W, b, pending = A @ W, A @ b + c, True
    if pending or not blocks:
        blocks.append(AffineBlock(W, b, relu=False))
    return blocks


def _random_network(rng, kinds):
    n = 5
    layers = []
    for kind in kinds:
        if kind == "dense":
            m = int(rng.integers(2, 7))
            layers.append(Dense(rng.normal(size=(m, n)), rng.normal(size=m)))
            n = m
        elif kind == "affine":
            layers.append(Affine(rng.uniform(0.5, 2.0, n), rng.normal(size=n)))
        elif kind == "reshape":
            layers.append(Reshape((n,)))
        else:
            layers.append(ReLU())
    return Network(layers, (5,))


@pytest.mark.parametrize("kinds", [
    ["dense", "relu", "dense"],
    ["affine", "reshape", "dense", "relu", "dense", "relu", "dense"],
    ["relu", "dense", "relu", "relu", "dense"],          # ReLU first, ReLU twice
    ["dense", "relu", "reshape", "relu", "dense"],       # a Reshape between two ReLUs
    ["dense", "affine", "relu", "affine", "dense", "relu"],   # ends with a ReLU
    ["reshape", "affine"],                              # no Dense at all
    ["relu"],
])
def test_stack_is_the_product_of_the_layers_and_runs_like_the_network(kinds):
    rng = np.random.default_rng(len(kinds))
    net = _random_network(rng, kinds)
    stack, ref = net.affine_relu_stack(), _by_definition(net)
    assert [blk.relu for blk in stack] == [blk.relu for blk in ref]
    for blk, r in zip(stack, ref):
        np.testing.assert_array_equal(blk.W, r.W)
        np.testing.assert_array_equal(blk.b, r.b)
    X = rng.normal(size=(9, 5))
    a = X
    for blk in stack:
        a = a @ blk.W.T + blk.b
        a = np.maximum(a, 0.0) if blk.relu else a
    np.testing.assert_allclose(a, net.forward(X), rtol=1e-12, atol=1e-12)


def test_stack_blocks_do_not_alias_the_layers():
    rng = np.random.default_rng(0)
    """A block's matrix is its own array: changing it cannot change the network."""
    net = _random_network(rng, ["dense", "relu", "dense"])
    before = net.layers[0].W.copy()
    net.affine_relu_stack()[0].W[:] = 0.0
    np.testing.assert_array_equal(net.layers[0].W, before)
