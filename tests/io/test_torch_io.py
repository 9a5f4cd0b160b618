"""torch ↔ Network: conv lowering checked against torch, to_torch, refusals, lazy import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from mipcert.errors import InputError, UnsupportedError
from mipcert.io import from_torch, to_torch
from mipcert.network import Affine, Dense, Network, ReLU, Reshape

REPO = Path(__file__).resolve().parents[2]


def _random_cnn(seed: int, padding) -> nn.Sequential:
    torch.manual_seed(seed)
    conv = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=1 if padding == "same" else 2, padding=padding),
        nn.ReLU(),
        nn.Conv2d(4, 3, (2, 3), dilation=(1, 2), bias=False),
        nn.ReLU(),
    )
    with torch.no_grad():
        n = conv(torch.zeros(1, 2, 11, 12)).numel()
    return nn.Sequential(conv, nn.Flatten(), nn.Identity(), nn.Linear(n, 6), nn.ReLU(),
                         nn.Sequential(nn.Linear(6, 3)))


@pytest.mark.parametrize("seed, padding", [(0, 0), (1, 1), (2, "same"), (3, "valid"), (4, (2, 1))])
def test_cnn_forward_equals_torch(seed, padding):
    module = _random_cnn(seed, padding)
    net = from_torch(module, (2, 11, 12))
    assert net.input_shape == (2, 11, 12)
    assert net.layer_names[:2] == ["conv2d_0_0", "relu_0_1"]
    x = np.random.default_rng(seed).uniform(-2, 2, size=(7, net.input_size))
    with torch.no_grad():
        ref = module(torch.as_tensor(x, dtype=torch.float32).reshape(7, 2, 11, 12)).double().numpy()
    assert np.max(np.abs(net.forward(x) - ref)) < 1e-4 * (1 + np.abs(ref).max())
    back = to_torch(net)
    with torch.no_grad():
        again = back(torch.as_tensor(x)).numpy()
    assert np.allclose(again, net.forward(x), rtol=0, atol=1e-12)
    assert from_torch(back, net.input_size).num_relus == net.num_relus


def test_training_mode_is_restored_and_float64_modules():
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double().train()
    net = from_torch(module, 3)
    assert module.training and net.output_size == 2


def test_to_torch_folds_affine_layers():
    rng = np.random.default_rng(0)
    net = Network([Affine(rng.uniform(1, 2, 4), rng.normal(size=4)), Reshape((4,)),
                   Dense(rng.normal(size=(5, 4)), rng.normal(size=5)), ReLU(),
                   Affine(2.0, -1.0), ReLU(), Dense(rng.normal(size=(2, 5)), np.zeros(2)),
                   Affine(-1.0, 3.0)], (2, 2))
    seq = to_torch(net)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Linear"]
    x = rng.uniform(-1, 1, size=(6, 4))
    with torch.no_grad():
        assert np.allclose(seq(torch.as_tensor(x)).numpy(), net.forward(x), atol=1e-12)
    assert to_torch(net, dtype=torch.float32)[0].weight.dtype == torch.float32


def test_unsupported_modules_and_bad_shapes():
    with pytest.raises(UnsupportedError, match=r"'1'.*Sigmoid.*supported: Sequential"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()), 2)
    with pytest.raises(UnsupportedError, match="groups=1"):
        from_torch(nn.Sequential(nn.Conv2d(2, 2, 1, groups=2)), (2, 3, 3))
    with pytest.raises(InputError, match="Linear expects 5 features"):
        from_torch(nn.Sequential(nn.Linear(5, 2)), 4)


def test_importing_mipcert_io_does_not_import_torch():
    code = ("import sys, mipcert.io; "
            "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
