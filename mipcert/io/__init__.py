"""mipcert.io: networks and properties in and out.

ONNX (:func:`load_onnx`, :func:`save_onnx`, :func:`onnx_forward`), torch
(:func:`from_torch`, :func:`to_torch`), ``.npz`` (:func:`save_npz`, :func:`load_npz`) and
VNNLIB (:func:`parse_vnnlib`, :func:`write_vnnlib`). Every import is checked against the
source framework's own forward pass. Heavy dependencies (onnx, onnxruntime, torch) are
imported only when a function needs them.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelFileError
from ..network import Network
from .npz import load_npz, save_npz
from .onnx_export import save_onnx
from .onnx_import import load_onnx
from .onnx_runtime import onnx_forward
from .torch_io import from_torch, to_torch
from .vnnlib import parse_vnnlib, write_vnnlib

__all__ = ["from_torch", "load_network", "load_npz", "load_onnx", "onnx_forward",
           "parse_vnnlib", "save_npz", "save_onnx", "to_torch", "write_vnnlib"]

_LOADERS = {".onnx": load_onnx, ".npz": load_npz}


def load_network(path: str | os.PathLike) -> Network:
    """Load a network from ``.onnx`` (checked against onnxruntime) or mipcert ``.npz``."""
    suffix = Path(path).suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise ModelFileError(
            f"{path}: unknown network file type {suffix or '(no suffix)'!r}; mipcert reads "
            ".onnx and .npz files (convert torch models with mipcert.io.from_torch or export "
            "them to ONNX)")
    return loader(path)
