"""ONNX imports remembered: a network imported and checked once loads from a cache after.

Importing an ONNX file means ``import onnx`` (parsing the protobuf), the conversion, and the
check against onnxruntime on probe inputs (``import onnxruntime``, a session): together a few
tenths of a second, which dominate a short ``mipcert verify``. :func:`load_onnx_cached` keeps
the converted, checked network as mipcert ``.npz`` (exact float64) under a key made of

* the SHA-256 of the ONNX file's bytes, and
* the SHA-256 of the importer's own source files (``io``'s ONNX and npz modules and the
  network layers), so that a changed importer never reuses an old conversion.

A cache hit is therefore the same network the checked import gave, bit for bit; soundness of
a verdict does not rest on the cache anyway (witnesses are re-run in float64 and through
onnxruntime itself). The folder is ``$MIPCERT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mipcert``,
else ``~/.cache/mipcert``; ``MIPCERT_NO_CACHE=1`` turns the cache off. A folder that cannot
be written is skipped silently (the import then simply runs every time).
"""
from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

from ..network import Network

log = logging.getLogger(__name__)

_IMPORTER_SOURCES = ("io/onnx_import.py", "io/_onnx_fold.py", "io/_lowering.py",
                     "io/_common.py", "io/npz.py", "network/layers.py", "network/network.py",
                     "network/conv.py")


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when ``MIPCERT_NO_CACHE`` is set."""
    if os.environ.get("MIPCERT_NO_CACHE", "") not in ("", "0"):
        return None
    if os.environ.get("MIPCERT_CACHE_DIR"):
        return Path(os.environ["MIPCERT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mipcert"


@lru_cache(maxsize=1)
def _importer_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in _IMPORTER_SOURCES:
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()[:16]


def cache_key(path: str | os.PathLike) -> str:
    """``<sha256 of the file>-<sha256 of the importer>`` (hex, shortened)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"{h.hexdigest()[:32]}-{_importer_digest()}"


def load_onnx_cached(path: str | os.PathLike) -> Network:
    """:func:`mipcert.io.load_onnx` (with its onnxruntime check), remembered in the cache."""
    from .npz import load_npz, save_npz
    from .onnx_import import load_onnx

    folder = cache_dir()
    path = Path(path)
    if folder is None or not path.is_file():
        return load_onnx(path)
    key = cache_key(path)
    entry = folder / "onnx" / f"{key}.npz"
    if entry.is_file():
        try:
            net = load_npz(entry)
            log.info("loaded %s from the import cache (%s)", path, entry)
            return net
        except Exception as exc:  # a damaged entry: import again and replace it
            log.warning("ignoring damaged cache entry %s: %s", entry, exc)
    net = load_onnx(path)
    if cache_key(path) != key:   # the file changed while it was imported: do not remember
        log.warning("%s changed while it was imported; not caching it", path)
        return net
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        save_npz(net, entry)
    except Exception as exc:  # noqa: BLE001 - caching is only an optimisation
        log.debug("could not write the import cache %s: %s", entry, exc)
    return net
