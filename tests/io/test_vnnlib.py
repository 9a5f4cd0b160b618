"""VNNLIB: the shared VNN-COMP properties, DNF grouping, round trips and every error."""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mipcert.errors import SpecificationError, UnsupportedError
from mipcert.io import parse_vnnlib, write_vnnlib
from mipcert.io.vnnlib import vnnlib_text
from mipcert.spec import Clause, Region, Specification

HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n" \
       "(declare-const Y_1 Real)\n"
BOX = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 2))\n"


def _same(a: Specification, b: Specification) -> None:
    assert (a.n_inputs, a.n_outputs, len(a.regions)) == (b.n_inputs, b.n_outputs, len(b.regions))
    for r, s in zip(a.regions, b.regions):
        assert np.array_equal(r.lo, s.lo) and np.array_equal(r.hi, s.hi)
        assert len(r.clauses) == len(s.clauses)
        for c, e in zip(r.clauses, s.clauses):
            assert np.array_equal(c.C, e.C) and np.array_equal(c.d, e.d)


def test_every_shared_property_parses_and_round_trips(vnnlib_file, tmp_path):
    spec = parse_vnnlib(vnnlib_file)
    assert spec.regions and all(r.clauses for r in spec.regions)
    write_vnnlib(spec, tmp_path / "again.vnnlib")
    _same(spec, parse_vnnlib(tmp_path / "again.vnnlib"))


@pytest.mark.parametrize("prop", ["prop_2", "prop_3", "prop_4"])
def test_acasxu_counts(vnncomp, prop):
    spec = parse_vnnlib(vnncomp / "acasxu" / f"{prop}.vnnlib", n_inputs=5, n_outputs=5)
    assert len(spec.regions) == 1 and len(spec.regions[0].clauses) == 1
    clause = spec.regions[0].clauses[0]
    assert clause.C.shape == (4, 5) and np.all(clause.d == 0)
    if prop == "prop_2":  # Y_j <= Y_0: rows -Y_0 + Y_j <= 0, the unsafe set "COC maximal"
        assert np.array_equal(clause.C[:, 0], -np.ones(4))
        assert np.array_equal(clause.C[:, 1:], np.eye(4))
        assert spec.regions[0].lo[0] == 0.6 and spec.regions[0].hi[0] == 0.679857769


def test_mnistfc_counts_and_speed(vnncomp):
    for path in sorted((vnncomp / "mnistfc").glob("*.vnnlib")):
        t0 = time.perf_counter()
        spec = parse_vnnlib(path, n_inputs=784, n_outputs=10)
        elapsed = time.perf_counter() - t0
        assert elapsed < 1.0  # ~20 ms in practice; generous for loaded CI machines
        (region,) = spec.regions
        assert len(region.clauses) == 9
        assert all(c.C.shape == (1, 10) for c in region.clauses)
        assert np.all(region.hi - region.lo > 0)


def test_small_box_inside_the_or(vnncomp):
    spec = parse_vnnlib(vnncomp / "test" / "test_small.vnnlib")
    (region,) = spec.regions
    assert region.lo.tolist() == [-1.0] and region.hi.tolist() == [1.0]
    (clause,) = region.clauses
    assert clause.C.tolist() == [[-1.0]] and clause.d.tolist() == [-100.0]  # Y_0 >= 100


def test_dnf_groups_by_box_and_adds_top_level_rows():
    text = HEAD + "(assert (<= (+ Y_0 (* 2 Y_1)) 3))\n" + """(assert (or
      (and (>= X_0 -1) (<= X_0 1) (>= X_1 0) (<= X_1 2) (> Y_0 Y_1))
      (and (>= X_0 -1) (<= X_0 1) (>= X_1 0) (<= X_1 2) (< (- Y_1 1.5) (- 2)) (>= Y_0 0))
      (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 2) (<= Y_0 (/ 1 4)))
    ))"""
    spec = parse_vnnlib(text, n_inputs=2, n_outputs=2, name="p")
    assert spec.name == "p" and len(spec.regions) == 2
    first, second = spec.regions
    assert [c.C.shape[0] for c in first.clauses] == [2, 3]
    assert np.allclose(first.clauses[0].C, [[-1, 1], [1, 2]]) and np.allclose(first.clauses[0].d, [0, 3])
    assert np.allclose(first.clauses[1].C, [[0, 1], [-1, 0], [1, 2]])
    assert np.allclose(first.clauses[1].d, [-0.5, 0, 3])
    assert second.lo.tolist() == [0, 0] and np.allclose(second.clauses[0].d, [0.25, 3])


def test_top_level_and_equality_and_unary_minus():
    text = HEAD + "(assert (and (>= X_0 (- 1)) (<= X_0 1) (= X_1 0.5) (<= Y_0 Y_1)))"
    (region,) = parse_vnnlib(text).regions
    assert region.lo.tolist() == [-1, 0.5] and region.hi.tolist() == [1, 0.5]


def test_or_without_output_rows_is_always_unsafe():
    spec = parse_vnnlib(HEAD + BOX + "(assert (or (and (>= X_0 0)) (and (<= X_0 0))))")
    assert len(spec.regions) == 2
    assert all(np.all(r.clauses[0].C == 0) for r in spec.regions)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("text, error, pattern", [
    (HEAD + BOX + "(assert (<= Y_0 1)", SpecificationError, r"line 9.*unbalanced"),
    (HEAD + BOX + "(assert (<= Y_0 1)))", SpecificationError, r"line 9.*unbalanced"),
    (HEAD + BOX + "(assert (<= Y_2 1))", SpecificationError, r"line 9.*Y_2 is used but not declared"),
    (HEAD + BOX + "(assert (<= Y_0 foo))", SpecificationError, r"'foo' is neither"),
    (HEAD + BOX + "(assert (=> Y_0 1))", UnsupportedError, r"unsupported formula"),
    (HEAD + BOX + "(assert (<= Y_0 1 2))", SpecificationError, r"two arguments"),
    (HEAD + BOX + "(assert (<= (* Y_0 Y_1) 1))", UnsupportedError, r"not linear"),
    (HEAD + BOX + "(assert (<= X_0 Y_0))", UnsupportedError, r"relates inputs and outputs"),
    (HEAD + BOX + "(assert (<= (+ X_0 X_1) 1))", UnsupportedError, r"general linear constraint on inputs"),
    (HEAD + "(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= Y_0 1))", SpecificationError,
     r"X_1 has no lower bound"),
    (HEAD + BOX + "(assert (>= X_0 2))(assert (<= Y_0 1))", SpecificationError, r"input set is empty"),
    ("(declare-const X_0 Real)(declare-const X_2 Real)(declare-const Y_0 Real)",
     SpecificationError, r"X_1 is not declared"),
    ("(declare-const X_0 Real)(declare-const X_0 Real)", SpecificationError, "declared twice"),
    ("(declare-const X_0 Int)", SpecificationError, "declaration"),
    ("(declare-const Z_0 Real)", UnsupportedError, "only inputs X_i and outputs Y_j"),
    (HEAD, SpecificationError, "no assert"),
    (HEAD + "(push 1)", SpecificationError, "unexpected command"),
    (HEAD + BOX + "stray", SpecificationError, "outside parentheses"),
], ids=["unclosed", "extra-close", "undeclared", "unknown-symbol", "implication", "arity",
        "nonlinear", "x-y-mixed", "x-linear", "unbounded-input", "empty-box", "index-gap",
        "redeclared", "int-sort", "bad-name", "no-assert", "unknown-command", "stray-token"])
def test_errors_name_the_problem(text, error, pattern):
    with pytest.raises(error, match=pattern):
        parse_vnnlib(text)


def test_size_mismatch_and_missing_file(vnncomp, tmp_path):
    with pytest.raises(SpecificationError, match="declares 5 inputs .* network has 784"):
        parse_vnnlib(vnncomp / "acasxu" / "prop_2.vnnlib", n_inputs=784)
    with pytest.raises(SpecificationError, match="declares 5 outputs .* network has 10"):
        parse_vnnlib(vnncomp / "acasxu" / "prop_2.vnnlib", n_inputs=5, n_outputs=10)
    with pytest.raises(SpecificationError, match="no such VNNLIB file"):
        parse_vnnlib(tmp_path / "nope.vnnlib")


# ------------------------------------------------------------------ writer
_num = st.floats(-10, 10, allow_nan=False).map(lambda v: round(v, 3))


@st.composite
def specs(draw):
    n, m = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    regions = []
    for _ in range(draw(st.integers(1, 3))):
        lo = np.array(draw(st.lists(_num, min_size=n, max_size=n)))
        hi = lo + np.array(draw(st.lists(st.floats(0, 5).map(lambda v: round(v, 2)),
                                         min_size=n, max_size=n)))
        clauses = []
        for _ in range(draw(st.integers(1, 3))):
            rows = draw(st.integers(1, 3))
            C = np.array(draw(st.lists(st.sampled_from([-1.0, 0.0, 1.0, 2.5]),
                                       min_size=rows * m, max_size=rows * m))).reshape(rows, m)
            C[np.all(C == 0, axis=1), 0] = 1.0  # keep every row meaningful
            clauses.append(Clause(C, np.array(draw(st.lists(_num, min_size=rows, max_size=rows)))))
        if any(np.array_equal(lo, r.lo) and np.array_equal(hi, r.hi) for r in regions):
            continue
        regions.append(Region(lo, hi, clauses))
    return Specification(regions, n, m)


@settings(max_examples=40, deadline=None)
@given(specs())
def test_write_then_parse_is_the_identity(spec):
    _same(spec, parse_vnnlib(vnnlib_text(spec)))


def test_write_is_atomic(tmp_path):
    spec = parse_vnnlib(HEAD + BOX + "(assert (<= Y_0 Y_1))")
    out = write_vnnlib(spec, tmp_path / "p.vnnlib")
    assert [p.name for p in tmp_path.iterdir()] == ["p.vnnlib"] and out.read_text().count("assert") == 5
