"""Fixtures for the io tests: the shared VNN-COMP files (``make_onnx`` is in tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
VNNCOMP = (REPO / ".." / "shared" / "vnncomp").resolve()


def vnncomp_files(pattern: str) -> list[Path]:
    """Files of the shared VNN-COMP folder (empty when the folder is absent)."""
    return sorted(VNNCOMP.glob(pattern)) if VNNCOMP.is_dir() else []


def pytest_generate_tests(metafunc):
    """Tests taking ``onnx_file`` / ``vnnlib_file`` run once per shared file (skip if none)."""
    for arg, pattern in (("onnx_file", "*/*.onnx"), ("vnnlib_file", "*/*.vnnlib")):
        if arg in metafunc.fixturenames:
            files = vnncomp_files(pattern)
            params = [pytest.param(f, id=str(f.relative_to(VNNCOMP))) for f in files] or [
                pytest.param(None, marks=pytest.mark.skip(reason=f"no {pattern} in {VNNCOMP}"))]
            metafunc.parametrize(arg, params)


@pytest.fixture
def vnncomp() -> Path:
    if not VNNCOMP.is_dir():
        pytest.skip(f"{VNNCOMP} is absent")
    return VNNCOMP
