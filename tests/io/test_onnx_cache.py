"""The ONNX import cache: a hit is the checked import, bit for bit; any change re-imports."""
import numpy as np
import pytest

from mipcert.io import load_onnx, save_onnx
from mipcert.io.onnx_cache import cache_key, load_onnx_cached
from mipcert.network import mlp


@pytest.fixture
def net_file(tmp_path):
    rng = np.random.default_rng(0)
    net = mlp([rng.normal(size=(4, 3)), rng.normal(size=(2, 4))], [rng.normal(size=4), np.zeros(2)])
    path = tmp_path / "net.onnx"
    save_onnx(net, path)
    return path


def _same(a, b):
    x = np.random.default_rng(1).normal(size=(16, a.input_size))
    assert a.layer_names == b.layer_names
    assert np.array_equal(a.forward(x), b.forward(x))


def test_hit_gives_the_checked_import(net_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MIPCERT_CACHE_DIR", str(tmp_path / "cache"))
    first = load_onnx_cached(net_file)
    entries = list((tmp_path / "cache" / "onnx").glob("*.npz"))
    assert len(entries) == 1 and entries[0].stem == cache_key(net_file)
    _same(first, load_onnx(net_file))
    _same(load_onnx_cached(net_file), first)   # from the cache


def test_changed_file_is_imported_again(net_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MIPCERT_CACHE_DIR", str(tmp_path / "cache"))
    load_onnx_cached(net_file)
    key = cache_key(net_file)
    rng = np.random.default_rng(5)
    save_onnx(mlp([rng.normal(size=(4, 3)), rng.normal(size=(2, 4))], [np.zeros(4), np.zeros(2)]),
              net_file)
    assert cache_key(net_file) != key
    _same(load_onnx_cached(net_file), load_onnx(net_file))


def test_damaged_entry_is_replaced_and_cache_can_be_off(net_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MIPCERT_CACHE_DIR", str(tmp_path / "cache"))
    load_onnx_cached(net_file)
    entry = tmp_path / "cache" / "onnx" / f"{cache_key(net_file)}.npz"
    entry.write_bytes(b"not a zip file")
    _same(load_onnx_cached(net_file), load_onnx(net_file))
    assert entry.stat().st_size > 100     # rewritten
    monkeypatch.setenv("MIPCERT_NO_CACHE", "1")
    monkeypatch.setenv("MIPCERT_CACHE_DIR", str(tmp_path / "other"))
    load_onnx_cached(net_file)
    assert not (tmp_path / "other").exists()
