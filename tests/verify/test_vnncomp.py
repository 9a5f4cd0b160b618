"""Verdicts on the VNN-COMP instances in ../shared/vnncomp agree with the agreed ones."""
import csv
import time
from pathlib import Path

import numpy as np
import pytest

from mipcert.io import load_network, onnx_forward, parse_vnnlib
from mipcert.verify import verify

VNNCOMP = Path(__file__).resolve().parents[2].parent / "shared" / "vnncomp"
ROWS = list(csv.DictReader(open(VNNCOMP / "verdicts.csv"))) if (VNNCOMP / "verdicts.csv").exists() else []
# per instance; the target is 60 s on 2 cores
TIME_LIMIT = 60.0


@pytest.mark.skipif(not ROWS, reason="../shared/vnncomp is not present")
@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{Path(r['onnx']).stem}-{Path(r['vnnlib']).stem}")
def test_verdict_agrees(row):
    onnx_path = VNNCOMP / row["onnx"]
    network = load_network(onnx_path)
    spec = parse_vnnlib(VNNCOMP / row["vnnlib"], network.input_size, network.output_size)
    start = time.perf_counter()
    result = verify(network, spec, timeout=TIME_LIMIT,
                    reference=lambda x: onnx_forward(str(onnx_path), x))
    assert time.perf_counter() - start < TIME_LIMIT + 15
    assert result.verdict == row["verdict"], result.stats
    if result.verdict == "sat":
        x, y = result.counterexample
        region = next(r for r in spec.regions if r.contains(x)[0])
        assert region.margin(network.forward(x))[0] <= 0
        y_ort = onnx_forward(str(onnx_path), x[None])[0]
        assert np.allclose(y_ort, y, atol=1e-4)
    else:
        assert result.bound is not None and result.bound > 0


# ACAS Xu property 1 (Katz et al., CAV 2017; written here from its published definition,
# in the competition's normalised inputs): it holds on all 45 networks.
PROP_1 = Path(__file__).resolve().parents[1] / "data" / "acasxu_prop_1.vnnlib"
ACAS = sorted((VNNCOMP / "acasxu").glob("*.onnx")) if VNNCOMP.exists() else []


@pytest.mark.skipif(not ACAS, reason="../shared/vnncomp is not present")
@pytest.mark.slow
@pytest.mark.parametrize("onnx_path", ACAS, ids=lambda p: p.stem)
def test_acasxu_property_1_holds(onnx_path):
    network = load_network(onnx_path)
    spec = parse_vnnlib(PROP_1, 5, 5)
    result = verify(network, spec, timeout=TIME_LIMIT)
    assert result.verdict == "unsat", result.stats
    # the proven bound really is below the margin everywhere we look
    region = spec.regions[0]
    xs = region.lo + (region.hi - region.lo) * np.random.default_rng(0).random((20000, 5))
    assert region.margin(network.forward(xs)).min() >= result.bound
