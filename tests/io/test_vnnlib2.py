"""VNN-LIB 2.0 queries through the official parser (the ``vnnlib`` package)."""
from pathlib import Path

import numpy as np
import pytest

from mipcert.errors import SpecificationError, UnsupportedError
from mipcert.io import parse_vnnlib
from mipcert.io.vnnlib2 import is_vnnlib2, parse_vnnlib2, query_networks, vnnlib2_text

pytest.importorskip("vnnlib")

REPO = Path(__file__).resolve().parents[2]
VNNCOMP = REPO.parent / "shared" / "vnncomp"
V1_FILES = sorted((REPO / "tests" / "data").glob("*.vnnlib")) + \
    (sorted(VNNCOMP.glob("*/*.vnnlib")) if VNNCOMP.exists() else [])

HEAD = """(vnnlib-version <2.0>)
(declare-network N
    (declare-input X float32 [1,2])
    (declare-output Y float32 [3])
)
(assert (>= X[0,0] 0.0))
(assert (<= X[0,0] 1.0))
(assert (and (>= X[0,1] -1.0) (<= X[0,1] 2.0)))
"""


def _same(s1, s2):
    assert len(s1.regions) == len(s2.regions)
    for a, b in zip(s1.regions, s2.regions):
        assert np.array_equal(a.lo, b.lo) and np.array_equal(a.hi, b.hi)
        assert len(a.clauses) == len(b.clauses)
        for c, e in zip(a.clauses, b.clauses):
            assert np.array_equal(c.C, e.C) and np.array_equal(c.d, e.d)


def _sizes(text):
    """(inputs, outputs) a VNN-LIB 1.0 file declares."""
    return text.count("declare-const X_"), text.count("declare-const Y_")


@pytest.mark.parametrize("path", V1_FILES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_1_0_files_converted_to_2_0_read_back_identically(path):
    nx, ny = _sizes(path.read_text())
    s1 = parse_vnnlib(path, nx, ny)
    text = vnnlib2_text(s1)
    assert is_vnnlib2(text) and not is_vnnlib2(path)
    _same(s1, parse_vnnlib2(text, nx, ny))


def test_disjunction_conjunction_and_equality_map_to_regions_and_clauses():
    spec = parse_vnnlib2(HEAD + "(assert (or (and (>= Y[0] 2.0) (<= Y[1] Y[2])) "
                                "(== (- Y[0] Y[2]) 0.5)))\n")
    assert spec.n_inputs == 2 and spec.n_outputs == 3 and len(spec.regions) == 1
    r = spec.regions[0]
    assert np.array_equal(r.lo, [0.0, -1.0]) and np.array_equal(r.hi, [1.0, 2.0])
    first, second = r.clauses
    # unsafe iff every row C y <= d holds: check against the formula on random outputs
    ys = np.random.default_rng(0).normal(scale=3, size=(2000, 3))
    ys[:50, 0] = ys[:50, 2] + 0.5                            # some points on the equality
    want1 = (ys[:, 0] >= 2.0) & (ys[:, 1] <= ys[:, 2])
    want2 = np.isclose(ys[:, 0] - ys[:, 2], 0.5, atol=1e-12, rtol=0)
    assert np.array_equal(first.margin(ys) <= 0, want1)
    assert np.array_equal(second.margin(ys) <= 1e-12, want2)


def test_input_disjunction_gives_one_region_per_box():
    spec = parse_vnnlib2("""(vnnlib-version <2.0>)
(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [1]))
(assert (or (and (>= X[0] 0.0) (<= X[0] 1.0)) (and (>= X[0] 2.0) (<= X[0] 3.0))))
(assert (>= Y[0] 1.0))
""")
    boxes = sorted((float(r.lo[0]), float(r.hi[0])) for r in spec.regions)
    assert boxes == [(0.0, 1.0), (2.0, 3.0)]
    assert all(np.array_equal(r.clauses[0].C, [[-1.0]]) for r in spec.regions)


def test_empty_cases_are_dropped_and_all_empty_is_an_error():
    spec = parse_vnnlib2("""(vnnlib-version <2.0>)
(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [1]))
(assert (or (and (>= X[0] 0.0) (<= X[0] 1.0)) (and (>= X[0] 3.0) (<= X[0] 2.0))))
(assert (<= Y[0] 0.0))
""")
    assert len(spec.regions) == 1
    with pytest.raises(SpecificationError, match="non-empty"):
        parse_vnnlib2("""(vnnlib-version <2.0>)
(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [1]))
(assert (>= X[0] 3.0))
(assert (<= X[0] 2.0))
(assert (<= Y[0] 0.0))
""")


def test_no_output_constraint_means_every_output_is_unsafe():
    spec = parse_vnnlib2("""(vnnlib-version <2.0>)
(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [2]))
(assert (>= X[0] 0.0))
(assert (<= X[0] 1.0))
""")
    assert (spec.regions[0].margin(np.array([[5.0, -5.0]])) <= 0).all()


@pytest.mark.parametrize("body, match", [
    ("(assert (>= (+ X[0,0] X[0,1]) 1.0))\n(assert (>= Y[0] 0.0))", "bound on one input"),
    ("(assert (>= (+ X[0,0] Y[0]) 1.0))", "mixes inputs and outputs"),
    ("(assert (!= Y[0] 1.0))", "!="),
])
def test_constructs_mipcert_cannot_decide_exactly_are_refused(body, match):
    with pytest.raises(UnsupportedError, match=match):
        parse_vnnlib2(HEAD + body + "\n")


def test_two_networks_and_hidden_nodes_are_refused():
    two = """(vnnlib-version <2.0>)
(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [1]))
(declare-network M (declare-input A float32 [1]) (declare-output B float32 [1]))
(assert (>= X[0] 0.0))
(assert (<= X[0] 1.0))
(assert (>= A[0] 0.0))
(assert (<= A[0] 1.0))
(assert (>= Y[0] B[0]))
"""
    assert query_networks(two) == ["N", "M"]
    with pytest.raises(UnsupportedError, match="SNET"):
        parse_vnnlib2(two)


def test_sizes_must_match_the_network_and_bad_syntax_is_a_clear_error():
    with pytest.raises(SpecificationError, match="declares 2 inputs"):
        parse_vnnlib2(HEAD + "(assert (>= Y[0] 0.0))\n", n_inputs=3)
    with pytest.raises(SpecificationError, match="reference parser"):
        parse_vnnlib2(HEAD + "(assert (>= Y[7] 0.0))\n")


def test_a_parser_refusal_is_one_line_with_line_and_symbol():
    """The reference parser reports a JSON document; the error was 15 lines of it."""
    text = ("(vnnlib-version <2.0>)\n"
            "(declare-network N (declare-input X float32 [1,2]) (declare-output Y float32 [1,2]))\n"
            "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
            "(assert (>= Y[0,3] 0.5))\n")
    with pytest.raises(SpecificationError) as info:
        parse_vnnlib2(text)
    msg = str(info.value)
    assert "\n" not in msg and "line 4" in msg and "Y[0,3]" in msg and "out of bounds" in msg
