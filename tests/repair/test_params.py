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
    with pytest.raises(InputError, match="not a dense or convolution layer 'relu0'"):
        Parameters(net, ["relu0"])
    with pytest.raises(InputError, match="last"):
        Parameters(net, "first")


# ---------------------------------------------------------------- tied convolutions
def _torch_cnn(seed, stride=2, padding=1, batchnorm=False, dilation=1):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    layers = [torch.nn.Conv2d(2, 3, 3, stride=stride, padding=padding, dilation=dilation)]
    if batchnorm:
        bn = torch.nn.BatchNorm2d(3)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        layers.append(bn)
    layers += [torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4)]
    model = torch.nn.Sequential(*layers)
    model(torch.zeros(1, 2, 7, 6))   # materialise the lazy layer
    return model.eval()


def _imported(model, tmp_path, via="onnx", **export):
    """The float32 model through ONNX (the importer under test records the kernel tying);
    the model is then turned to float64 in place (its float32 weights are exact there), for
    the oracle's passes."""
    import torch

    from mipcert.io import from_torch, load_network
    if via == "torch":
        model.double()
        return from_torch(model, (2, 7, 6))
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, torch.zeros(1, 2, 7, 6), str(path), dynamo=False, **export)
    model.double()
    return load_network(path)


@pytest.mark.parametrize("stride,padding,dilation,via", [
    (1, 0, 1, "onnx"), (2, 1, 1, "onnx"), (1, 2, 2, "onnx"), (2, 1, 1, "torch")])
def test_tied_convolution_gradients_equal_torch_autograd(rng, tmp_path, stride, padding,
                                                         dilation, via):
    """The kernel/bias gradients of the logits and of the loss equal torch's autograd of the
    same Conv2d (an oracle mipcert did not write); the parameters read back are torch's.
    Through ONNX and through ``from_torch``."""
    import torch

    model = _torch_cnn(0, stride, padding, dilation=dilation)
    net = _imported(model, tmp_path, via)
    conv = net.layer_names[0]
    assert net.layers[0].conv is not None
    p = Parameters(net, [conv, net.layer_names[-1]])
    conv_t, lin_t = model[0], model[-1]
    assert p.size == conv_t.weight.numel() + 3 + lin_t.weight.numel() + 4
    k = conv_t.weight.numel()
    np.testing.assert_array_equal(p.w0[:k], conv_t.weight.detach().numpy().ravel())
    np.testing.assert_array_equal(p.w0[k:k + 3], conv_t.bias.detach().numpy())
    X, y = rng.uniform(size=(5, 84)), rng.integers(0, 4, 5)
    z, J = p.logits_jacobian(p.w0, X)
    Xt = torch.tensor(X.reshape(5, 2, 7, 6))
    for i in range(5):
        for c in range(4):
            model.zero_grad()
            model(Xt[i:i + 1])[0, c].backward()
            np.testing.assert_allclose(J[i, c, :k], conv_t.weight.grad.numpy().ravel(),
                                       rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(J[i, c, k:k + 3], conv_t.bias.grad.numpy(),
                                       rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(z, model(Xt).detach().numpy(), rtol=1e-10)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(Xt), torch.tensor(y)).backward()
    L, g = p.loss_and_grad(p.w0, X, y)
    np.testing.assert_allclose(g[:k], conv_t.weight.grad.numpy().ravel(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g[k:k + 3], conv_t.bias.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_tied_convolution_changes_stay_a_convolution(rng, tmp_path):
    """A changed kernel gives the network torch computes with that kernel; finite differences
    of the tied passes match their gradients; untied, the same layer has its matrix entries."""
    import torch

    model = _torch_cnn(1)
    net = _imported(model, tmp_path)
    conv = net.layer_names[0]
    p = Parameters(net, [conv])
    w = p.w0 + 0.05 * rng.normal(size=p.size)
    changed = p.network_with(w)
    assert changed.layers[0].conv is net.layers[0].conv
    np.testing.assert_allclose(p.vector(changed), w, rtol=0, atol=0)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(w[:54].reshape(3, 2, 3, 3)))
        model[0].bias.copy_(torch.tensor(w[54:]))
        X = rng.uniform(size=(6, 84))
        ref = model(torch.tensor(X.reshape(6, 2, 7, 6))).numpy()
    np.testing.assert_allclose(changed.forward(X), ref, rtol=1e-10)
    y = rng.integers(0, 4, 6)
    z, J = p.logits_jacobian(w, X)
    np.testing.assert_allclose(J, _fd(lambda v: p.logits(v, X), w), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p.loss_and_grad(w, X, y)[1], _fd(lambda v: p.loss(v, X, y), w),
                               rtol=1e-5, atol=1e-8)
    untied = Parameters(net, [conv], tie_convolutions=False)
    assert untied.size == net.layers[0].W.size + net.layers[0].W.shape[0]
    assert p.names()[0] == f"{conv}.kernel[0,0,0,0]" and p.names()[-1] == f"{conv}.bias[2]"


def test_batchnorm_folded_into_a_convolution_keeps_the_tying(rng, tmp_path):
    """BatchNormalization after a convolution is folded into it per channel: still a
    convolution, whose kernel is torch's folded kernel."""
    import torch

    import onnx

    model = _torch_cnn(2, batchnorm=True)
    net = _imported(model, tmp_path, do_constant_folding=False)   # keeps the BN node
    assert "BatchNormalization" in [n.op_type for n in onnx.load(tmp_path / "cnn.onnx").graph.node]
    dense = [l for l in net.layers if isinstance(l, Dense)]
    assert dense[0].conv is not None
    X = rng.uniform(size=(4, 84))
    with torch.no_grad():
        ref = model(torch.tensor(X.reshape(4, 2, 7, 6))).numpy()
    np.testing.assert_allclose(net.forward(X), ref, rtol=1e-9, atol=1e-12)
    p = Parameters(net, [net.layer_names[net.layers.index(dense[0])]])
    assert p.size == 54 + 3


def test_a_tying_that_does_not_describe_the_matrix_is_refused():
    from mipcert.network.conv import ConvTying

    tying = ConvTying.of_conv2d((1, 1, 2, 2), (1, 3, 3))
    W, b = tying.dense(np.arange(1.0, 5.0), np.array([0.5]))
    Dense(W, b, conv=tying)
    off = W.copy()
    off[0, 8] = 1.0                      # output (0, 0) does not see input (2, 2)
    other = W.copy()
    other[0, 0] += 1e-3                  # one copy of tap 0 differs from the others
    for bad_W, bad_b in ((off, b), (other, b), (W, b + np.arange(4.0))):
        with pytest.raises(InputError, match="tying does not describe"):
            Dense(bad_W, bad_b, conv=tying)


def test_a_changed_convolution_is_written_as_a_conv_node_and_read_back_tied(rng, tmp_path):
    """The exported file runs in onnxruntime like the network (save_onnx checks it), holds
    a Conv node, and its re-import has the changed kernel as its parameters."""
    import onnx

    from mipcert.io import load_network, onnx_forward, save_onnx

    net = _imported(_torch_cnn(3), tmp_path)
    p = Parameters(net, [net.layer_names[0]])
    changed = p.network_with(p.w0 + 0.1 * rng.normal(size=p.size))
    path = save_onnx(changed, tmp_path / "changed.onnx")
    assert "Conv" in [n.op_type for n in onnx.load(path).graph.node]
    back = load_network(path)
    X = rng.uniform(size=(5, 84))
    np.testing.assert_allclose(onnx_forward(path, X), changed.forward(X), rtol=1e-5, atol=1e-6)
    conv = next(l for l in back.layers if isinstance(l, Dense))
    assert conv.conv is not None
    np.testing.assert_allclose(conv.conv.parameters(conv.W, conv.b)[0],
                               p.vector(changed)[:54], rtol=1e-6)


def test_npz_keeps_the_convolution_tying(tmp_path):
    """The bundled digits CNN (.npz) and its ONNX twin give the same tied parameters, and a
    save/load round trip keeps them."""
    from mipcert.io import load_network, load_npz, save_npz

    from .conftest import MODELS

    net = bundled("digits_cnn.npz")
    twin = load_network(MODELS / "digits_cnn.onnx")
    assert net.layers[0].conv is not None
    np.testing.assert_array_equal(Parameters(net, "all").w0, Parameters(twin, "all").w0)
    assert Parameters(net, "all").size == 4 * 9 + 4 + 10 * 144 + 10
    back = load_npz(save_npz(net, tmp_path / "cnn.npz"))
    np.testing.assert_array_equal(Parameters(back, "all").w0, Parameters(net, "all").w0)
