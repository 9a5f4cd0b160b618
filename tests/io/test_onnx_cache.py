"""The ONNX import cache: a hit is the checked import, bit for bit; any change re-imports."""
import numpy as np
import pytest

from mipcert.io import load_onnx, save_onnx
from mipcert.io.onnx_cache import cache_key, load_onnx_cached
from mipcert.network import mlp


@pytest.fixture
def onnx_file(tmp_path):
    rng = np.random.default_rng(0)
    net = mlp([rng.normal(size=(4, 3)), rng.normal(size=(2, 4))], [rng.normal(size=4), np.zeros(2)])
    path = tmp_path / "net.onnx"
    save_onnx(net, path)
    return path


def _same(a, b):
    x = np.random.default_rng(1).normal(size=(16, a.input_size))
    assert a.layer_names == b.layer_names
    assert np.array_equal(a.forward(x), b.forward(x))


def test_hit_gives_the_checked_import(onnx_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MIPCERT_CACHE_DIR", str(tmp_path / "cache"))
    first = load_onnx_cached(onnx_file)
    entries = list((tmp_path / "cache" / "onnx").glob("*.npz"))
    assert len(entries) == 1 and entries[0].stem == cache_key(onnx_file)
    _same(first, load_onnx(onnx_file))
    _same(load_onnx_cached(onnx_file), first)   # from the cache


def test_changed_file_is_imported_again(onnx_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MIPCERT_CACHE_DIR", str(tmp_path / "cache"))
    load_onnx_cached(onnx_file)
    key = cache_key(onnx_file)
    rng = np.random.default_rng(5)
    save_onnx(mlp([rng.normal(size=(4, 3)), rng.normal(size=(2, 4))], [np.zeros(4), np.zeros(2)]),
              onnx_file)
    assert cache_key(onnx_file) != key
    _same(load_onnx_cached(onnx_file), load_onnx(onnx_file))


def test_damaged_entry_is_replaced_and_cache_can_be_off(onnx_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MIPCERT_CACHE_DIR", str(tmp_path / "cache"))
    load_onnx_cached(onnx_file)
    entry = tmp_path / "cache" / "onnx" / f"{cache_key(onnx_file)}.npz"
    entry.write_bytes(b"not a zip file")
    _same(load_onnx_cached(onnx_file), load_onnx(onnx_file))
    assert entry.stat().st_size > 100     # rewritten
    monkeypatch.setenv("MIPCERT_NO_CACHE", "1")
    monkeypatch.setenv("MIPCERT_CACHE_DIR", str(tmp_path / "other"))
    load_onnx_cached(onnx_file)
    assert not (tmp_path / "other").exists()
