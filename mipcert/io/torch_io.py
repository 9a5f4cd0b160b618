"""torch ``nn.Sequential`` ↔ :class:`~mipcert.network.Network` (torch is imported lazily)."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..errors import InputError, UnsupportedError
from ..network import Affine, Dense, Network, ReLU, Reshape
from ._common import NameMaker, compare_outputs, probe_inputs
from ._lowering import check_dense_size, conv2d_to_dense

log = logging.getLogger(__name__)

__all__ = ["from_torch", "to_torch"]

_SUPPORTED = "Sequential, Linear, ReLU, Flatten, Conv2d (groups=1, zero padding), Identity"


def _flatten_modules(module, prefix: str, out: list) -> None:
    import torch.nn as nn

    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            _flatten_modules(child, f"{prefix}_{name}" if prefix else name, out)
    else:
        out.append((prefix or type(module).__name__.lower(), module))


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def from_torch(module, input_shape: Sequence[int] | int) -> Network:
    """Import a torch ``nn.Sequential`` (nested allowed) as a :class:`Network`.

    ``input_shape``: the shape of one sample without the batch dimension, e.g. ``(784,)`` or
    ``(1, 8, 8)``. Supported modules: Linear, ReLU, Flatten, Conv2d (lowered to Dense),
    Identity. The result is compared with ``module``'s own forward pass on zero and 8
    uniform[-1, 1] inputs (tolerance ``1e-4 * (1 + max|y|)``); a mismatch raises
    :class:`~mipcert.errors.ModelFileError`.
    """
    import torch
    import torch.nn as nn

    in_shape = tuple(int(d) for d in np.atleast_1d(input_shape))
    shape = in_shape
    entries: list = []
    _flatten_modules(module, "", entries)
    layers, names = [], []
    make_name = NameMaker()
    for raw, m in entries:
        n = int(np.prod(shape))
        if isinstance(m, nn.Identity):
            continue
        if isinstance(m, nn.ReLU):
            layer = ReLU()
        elif isinstance(m, nn.Linear):
            if shape[-1] != m.in_features:
                raise InputError(
                    f"module {raw!r}: Linear expects {m.in_features} features but receives a "
                    f"tensor of shape {shape}; check input_shape or add a Flatten")
            W = _np(m.weight)
            b = _np(m.bias) if m.bias is not None else np.zeros(m.out_features)
            rep = n // m.in_features  # Linear acts on the last axis
            if rep > 1:
                check_dense_size(rep * m.out_features, n, f"module {raw!r}")
                W, b = np.kron(np.eye(rep), W), np.tile(b, rep)
            layer, shape = Dense(W, b), shape[:-1] + (m.out_features,)
        elif isinstance(m, nn.Flatten):
            full = (1,) + shape
            start = m.start_dim % len(full)
            end = m.end_dim % len(full)
            shape = full[:start] + (int(np.prod(full[start:end + 1])),) + full[end + 1:]
            shape = shape[1:]
            layer = Reshape(shape)
        elif isinstance(m, nn.Conv2d):
            layer, shape = _conv(m, raw, shape)
        else:
            raise UnsupportedError(
                f"module {raw!r} of type {type(m).__name__} is not supported; supported: {_SUPPORTED}")
        layers.append(layer)
        kind = type(m).__name__.lower()
        names.append(make_name(f"{kind}_{raw}" if raw[:1].isdigit() else raw, kind))
    if not layers:
        layers, names = [Reshape(in_shape)], ["identity"]
    net = Network(layers, in_shape, names=names)

    x = probe_inputs(net.input_size)
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None else torch.float64
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            y = module(torch.as_tensor(x.reshape(-1, *in_shape), dtype=dtype))
    except RuntimeError as exc:
        raise InputError(f"the module cannot run on inputs of shape {in_shape}: {exc}") from exc
    finally:
        module.train(was_training)
    compare_outputs(net.forward(x), y.detach().double().reshape(len(x), -1).numpy(),
                    "torch import", "the module's own forward pass")
    return net


def _conv(m, raw: str, shape: tuple):
    if len(shape) != 3:
        raise InputError(f"module {raw!r}: Conv2d needs a (C, H, W) input, got {shape}")
    if m.groups != 1 or m.padding_mode != "zeros":
        raise UnsupportedError(
            f"module {raw!r}: only Conv2d with groups=1 and zero padding is supported")
    kh, kw = m.kernel_size
    if isinstance(m.padding, str):
        if m.padding == "valid":
            pads = (0, 0, 0, 0)
        else:  # 'same' with stride 1: torch puts the extra padding at the end
            tot = [m.dilation[i] * (k - 1) for i, k in enumerate((kh, kw))]
            pads = (tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2)
    else:
        pads = (m.padding[0], m.padding[1], m.padding[0], m.padding[1])
    bias = _np(m.bias) if m.bias is not None else None
    W, b, out, tying = conv2d_to_dense(_np(m.weight), bias, shape, m.stride, pads, m.dilation,
                                       what=f"module {raw!r}")
    return Dense(W, b, conv=tying), out


def to_torch(network: Network, dtype=None):
    """The network as a torch ``nn.Sequential`` of Linear / ReLU on flat ``(batch, n)`` inputs.

    Shape-only layers are dropped; an :class:`Affine` is folded into the Dense after it
    (or becomes a diagonal Linear when none follows). ``dtype``: default ``torch.float64``
    (exactly the reference semantics).
    """
    import torch
    import torch.nn as nn

    dtype = torch.float64 if dtype is None else dtype
    plan: list[tuple[str, object]] = []  # ("dense", (name, W, b)) / ("relu", name)
    pending: tuple[str, np.ndarray, np.ndarray] | None = None  # Affine waiting for a Dense
    size = network.input_size
    for name, layer in zip(network.layer_names, network.layers):
        if isinstance(layer, Reshape):
            continue
        if isinstance(layer, Affine):
            s = np.broadcast_to(layer.scale, (size,)).astype(np.float64)
            c = np.broadcast_to(layer.shift, (size,)).astype(np.float64)
            if pending is not None:
                pending = (pending[0], s * pending[1], s * pending[2] + c)
            else:
                pending = (name, s, c)
            continue
        if isinstance(layer, Dense):
            W, b = layer.W, layer.b
            if pending is not None:  # W (s x + c) + b
                W, b = W * pending[1][None, :], W @ pending[2] + b
                pending = None
            plan.append(("dense", (name, W, b)))
        elif isinstance(layer, ReLU):
            if pending is not None:
                plan.append(("dense", (pending[0], np.diag(pending[1]), pending[2])))
                pending = None
            plan.append(("relu", name))
        else:
            raise UnsupportedError(f"layer {name!r} of type {type(layer).__name__} cannot be exported to torch")
        size = layer.out_size(size)
    if pending is not None:
        plan.append(("dense", (pending[0], np.diag(pending[1]), pending[2])))
    modules = []
    make_name = NameMaker(())
    for kind, item in plan:
        if kind == "relu":
            modules.append((make_name(item, "relu"), nn.ReLU()))
            continue
        name, W, b = item
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(W, dtype=dtype))
            lin.bias.copy_(torch.as_tensor(b, dtype=dtype))
        modules.append((make_name(name, "linear"), lin))
    if not modules:
        modules = [("identity", nn.Identity())]
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(modules))
