"""mipcert's own ``.npz`` network format (exact float64, no pickles).

Layout: ``__meta__`` holds a JSON string ``{"format": "mipcert-network", "version": 1,
"input_shape": [...], "layers": [{"kind": ..., "name": ..., "shape": [...]}]}``; layer ``i``
stores its arrays as ``L{i}.W`` / ``L{i}.b`` (Dense) or ``L{i}.scale`` / ``L{i}.shift`` (Affine).
A Dense that is a lowered convolution also has ``"conv": {"kernel_shape", "in_shape",
"strides", "pads", "dilations"}`` in its entry (its weight sharing,
:class:`~mipcert.network.conv.ConvTying`; files without it load as before).
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelFileError, UnsupportedError
from ..network import Affine, Dense, Network, ReLU, Reshape
from ..network.conv import ConvTying
from ._common import atomic_write

log = logging.getLogger(__name__)

__all__ = ["save_npz", "load_npz"]

FORMAT, VERSION = "mipcert-network", 1
_ARRAYS = {"Dense": ("W", "b"), "Affine": ("scale", "shift"), "ReLU": (), "Reshape": ()}
#: what a Dense that is a lowered convolution records in its layer entry (its weight sharing)
_CONV_KEYS = ("kernel_shape", "in_shape", "strides", "pads", "dilations")


def save_npz(network: Network, path: str | os.PathLike) -> Path:
    """Write ``network`` to ``path`` (``.npz``, float64 arrays; atomic write)."""
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, (name, layer) in enumerate(zip(network.layer_names, network.layers)):
        kind = type(layer).__name__
        if kind not in _ARRAYS:
            raise UnsupportedError(f"layer {name!r} of type {kind} cannot be saved to .npz")
        entry = {"kind": kind, "name": name}
        if isinstance(layer, Reshape):
            entry["shape"] = [int(d) for d in layer.shape]
        if isinstance(layer, Dense) and layer.conv is not None:   # a lowered convolution
            t = layer.conv
            entry["conv"] = {k: [int(v) for v in getattr(t, k)] for k in _CONV_KEYS}
        for field in _ARRAYS[kind]:
            arrays[f"L{i}.{field}"] = np.asarray(getattr(layer, field), dtype=np.float64)
        layers.append(entry)
    meta = {"format": FORMAT, "version": VERSION,
            "input_shape": list(network.input_shape), "layers": layers}
    arrays["__meta__"] = np.array(json.dumps(meta))
    out = atomic_write(path, lambda fh: np.savez(fh, **arrays))
    log.info("wrote %s (%d layers)", out, len(layers))
    return out


def load_npz(path: str | os.PathLike) -> Network:
    """Read a network written by :func:`save_npz`."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file; check the path")
    bad = f"{path} is not a mipcert network file"
    try:
        with np.load(path, allow_pickle=False) as data:
            if "__meta__" not in data.files:
                raise ModelFileError(
                    f"{bad} (no __meta__ entry); write it with mipcert.io.save_npz")
            meta = json.loads(str(data["__meta__"]))
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ModelFileError(
                    f"{bad}: format {meta.get('format')!r} version {meta.get('version')!r}, "
                    f"expected {FORMAT!r} version {VERSION}")
            layers, names = [], []
            for i, entry in enumerate(meta["layers"]):
                kind = entry["kind"]
                if kind not in _ARRAYS:
                    raise ModelFileError(f"{bad}: unknown layer kind {kind!r}")
                arrs = [data[f"L{i}.{f}"] for f in _ARRAYS[kind]]
                if kind == "Dense":
                    conv = entry.get("conv")
                    tying = None if conv is None else ConvTying.of_conv2d(
                        *(conv[k] for k in _CONV_KEYS))
                    layers.append(Dense(*arrs, conv=tying))
                elif kind == "Affine":
                    layers.append(Affine(*arrs))
                elif kind == "ReLU":
                    layers.append(ReLU())
                else:
                    layers.append(Reshape(tuple(entry.get("shape", ()))))
                names.append(entry["name"])
            return Network(layers, tuple(meta["input_shape"]), names=names)
    except ModelFileError:
        raise
    except InputError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise ModelFileError(
            f"{bad} or is damaged ({type(exc).__name__}: {exc}); write it again with "
            "mipcert.io.save_npz") from exc
