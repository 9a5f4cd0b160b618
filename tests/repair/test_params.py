"""The reference backward pass w.r.t. chosen parameters (mipcert.network.Parameters)
against central finite differences and the network's own forward pass."""
from __future__ import annotations

import numpy as np
import pytest

from mipcert.errors import InputError
from mipcert.network import Affine, Dense, Network, Parameters, ReLU, Reshape

from .conftest import bundled


def _net(rng):
    layers = [Affine(rng.uniform(0.5, 2, 6), rng.normal(size=6)), Reshape((6,)),
              Dense(rng.normal(size=(5, 6)), rng.normal(size=5)), ReLU(),
              Dense(rng.normal(size=(4, 5)), rng.normal(size=4)), ReLU(),
              Dense(rng.normal(size=(3, 4)), rng.normal(size=3))]
    return Network(layers, (6,))


def _fd(f, w, h=1e-6):
    out = []
    for j in range(len(w)):
        e = np.zeros_like(w)
        e[j] = h
        out.append((f(w + e) - f(w - e)) / (2 * h))
    return np.stack(out, axis=-1)


@pytest.mark.parametrize("layers", ["last", "all", ["dense1"], ["dense0", "dense2"]])
def test_jacobian_and_loss_gradient_match_finite_differences(rng, layers):
    net = _net(rng)
    p = Parameters(net, layers)
    X, y = rng.normal(size=(7, 6)), rng.integers(0, 3, 7)
    w = p.w0 + 0.01 * rng.normal(size=p.size)
    z, J = p.logits_jacobian(w, X)
    np.testing.assert_allclose(z, p.network_with(w).forward(X), rtol=1e-12)
    np.testing.assert_allclose(J, _fd(lambda v: p.logits(v, X), w), rtol=1e-5, atol=1e-7)
    L, g = p.loss_and_grad(w, X, y)
    assert L == pytest.approx(p.loss(w, X, y), rel=1e-12)
    np.testing.assert_allclose(g, _fd(lambda v: p.loss(v, X, y), w), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("layers", ["last", ["dense1"], ["dense1", "dense2"]])
def test_features_skip_the_fixed_layers_and_change_nothing(rng, layers):
    """The passes from precomputed features (the fixed prefix run once) equal the passes from
    the inputs; the oracle is the network's own forward pass and finite differences."""
    net = _net(rng)
    p = Parameters(net, layers)
    X, y = rng.normal(size=(7, 6)), rng.integers(0, 3, 7)
    H = p.features(X)
    first = net.layer_names.index(p.layer_names[0])
    np.testing.assert_allclose(H, Network(net.layers[:first], (6,)).forward(X), rtol=1e-14)
    w = p.w0 + 0.01 * rng.normal(size=p.size)
    np.testing.assert_allclose(p.logits(w, H, features=True), p.network_with(w).forward(X),
                               rtol=1e-12)
    z, J = p.logits_jacobian(w, X)
    zf, Jf = p.logits_jacobian(w, H, features=True)
    np.testing.assert_allclose(zf, z, rtol=1e-12)
    np.testing.assert_allclose(Jf, J, rtol=1e-12, atol=1e-14)
    L, g = p.loss_and_grad(w, X, y)
    Lf, gf = p.loss_and_grad(w, H, y, features=True)
    assert Lf == pytest.approx(L, rel=1e-12) == p.loss(w, H, y, features=True)
    np.testing.assert_allclose(gf, _fd(lambda v: p.loss(v, X, y), w), rtol=1e-5, atol=1e-8)
    with pytest.raises(InputError, match=f"features have {H.shape[1] + 1} columns"):
        p.logits(w, np.c_[H, H[:, :1]], features=True)


def test_vector_round_trip_and_names(rng):
    net = _net(rng)
    p = Parameters(net, "all")
    assert p.size == 5 * 6 + 5 + 4 * 5 + 4 + 3 * 4 + 3 == len(p.names())
    np.testing.assert_array_equal(p.vector(p.network_with(p.w0)), p.w0)
    assert p.names()[0] == "dense0.W[0,0]" and p.names()[-1] == "dense2.b[2]"


def test_bundled_cnn_last_layer(digits_split):
    net = bundled("digits_cnn.npz")
    p = Parameters(net)
    _, Xte, _, yte = digits_split
    z, J = p.logits_jacobian(p.w0, Xte[:4])
    np.testing.assert_allclose(z, net.forward(Xte[:4]))
    w = p.w0.copy()
    np.testing.assert_allclose(J[:, :, :5], _fd(lambda v: p.logits(np.r_[v, w[5:]], Xte[:4]),
                                                w[:5]), rtol=1e-5, atol=1e-7)


def test_bad_layer_names(rng):
    net = _net(rng)
    with pytest.raises(InputError, match="unknown layer 'nope'"):
        Parameters(net, ["nope"])
    with pytest.raises(InputError, match="not a dense layer 'relu0'"):
        Parameters(net, ["relu0"])
    with pytest.raises(InputError, match="last"):
        Parameters(net, "first")
