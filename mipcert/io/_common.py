"""Helpers shared by the io modules: atomic writes, layer names, import checks."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import ModelFileError

#: An import agrees with its source when ``max|f - g| <= CHECK_RTOL * (1 + max|g|)``.
CHECK_RTOL = 1e-4
#: Number of random probe inputs (uniform in [-1, 1]) used by the checks, plus the zero input.
CHECK_SAMPLES = 8
#: Largest dense matrix (entries) a convolution or reshaping op may be lowered to.
MAX_DENSE_ENTRIES = 50_000_000

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_]")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write(path: str | os.PathLike, writer: Callable) -> Path:
    """Call ``writer(binary_file)`` on a temporary file next to ``path``, then rename it.

    A failure leaves no partial file behind.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ModelFileError(f"cannot write {path}: the folder {folder} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class NameMaker:
    """Readable, unique layer names made of ``[A-Za-z0-9_]`` (never ``input``)."""

    def __init__(self, taken: Iterable[str] = ("input",)):
        self.taken = set(taken)

    def __call__(self, raw: str | None, fallback: str) -> str:
        name = _BAD_CHARS.sub("_", raw or "").strip("_") or fallback
        if name[0].isdigit():
            name = f"n_{name}"
        base, k = name, 2
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name


def probe_inputs(n: int, seed: int = 0) -> np.ndarray:
    """``(CHECK_SAMPLES + 1, n)`` float64 probes: zero, then uniform[-1, 1] samples."""
    rng = np.random.default_rng(seed)
    return np.vstack([np.zeros((1, n)), rng.uniform(-1.0, 1.0, size=(CHECK_SAMPLES, n))])


def compare_outputs(ours: np.ndarray, theirs: np.ndarray, what: str, source: str) -> float:
    """Raise :class:`ModelFileError` unless ``ours`` and ``theirs`` (``(batch, m)``) agree.

    Returns the largest absolute difference.
    """
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64).reshape(ours.shape[0], -1)
    if ours.shape != theirs.shape:
        raise ModelFileError(
            f"{what}: the imported network gives {ours.shape[1]} outputs but {source} gives "
            f"{theirs.shape[1]}; the model uses a construct the importer misread, please report it")
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    if not np.isfinite(diff) or diff > CHECK_RTOL * (1.0 + scale):
        raise ModelFileError(
            f"{what}: the imported network and {source} differ by up to {diff:.3g} on random "
            f"inputs in [-1, 1] (tolerance {CHECK_RTOL * (1 + scale):.3g}); the model uses a "
            "construct the importer misread, please report it (or pass check=False to skip)")
    return diff
