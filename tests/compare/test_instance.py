"""Instance files of ``mipcert compare``: the bundled one, and every bad value named."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from mipcert.errors import InputError
from mipcert.verify.instance import load_instance, parse_methods

from .conftest import INSTANCE, MODELS

GOOD = """
name = "t"
[network]
path = "{net}"
[data]
source = "digits"
first = 3
[property]
kind = "robustness"
eps = [0.01, 0.02]
input_lo = 0.0
input_hi = 1.0
[methods]
use = ["milp", "ibp"]
[solver]
name = "highs"
timeout = 5
threads = 1
"""


def write(tmp_path: Path, text: str, name: str = "inst.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).replace("{net}", str(MODELS / "digits_mlp.npz")))
    return p


def test_bundled_instance():
    inst = load_instance(INSTANCE)
    assert inst.eps == [0.01, 0.02, 0.03, 0.05, 0.08]
    assert inst.methods == ["ibp", "crown", "lp", "milp"]
    assert Path(inst.network_path).resolve() == (MODELS / "digits_mlp.onnx").resolve()
    X, y = inst.load_points()
    assert X.shape == (20, 64) and y.shape == (20,)
    assert inst.solver == "highs" and inst.timeout == 30.0


def test_good_instance_and_method_order(tmp_path):
    inst = load_instance(write(tmp_path, GOOD))
    assert inst.methods == ["ibp", "milp"]          # canonical order
    assert inst.eps == [0.01, 0.02] and inst.timeout == 5.0
    assert inst.load_points()[0].shape == (3, 64)


def test_paths_are_relative_to_the_instance_file(tmp_path):
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (tmp_path / "a" / "net.npz").write_bytes((MODELS / "digits_mlp.npz").read_bytes())
    rng = np.random.default_rng(0)
    np.savez(sub / "pts.npz", X=rng.random((4, 64)), y=np.array([1, 2, 3, 4]))
    text = GOOD.replace('"{net}"', '"../net.npz"').replace(
        'source = "digits"', 'source = "points"\npoints = "pts.npz"')
    inst = load_instance(write(sub, text))
    X, y = inst.load_points()
    assert X.shape == (3, 64) and list(y) == [1, 2, 3]


@pytest.mark.parametrize("old, new, words", [
    ("eps = [0.01, 0.02]", "eps = [0.01, -0.02]", ["eps", ">= 0"]),
    ("eps = [0.01, 0.02]", "eps = []", ["eps"]),
    ("eps = [0.01, 0.02]", 'eps = ["a"]', ["eps", "not a number"]),
    ("eps = [0.01, 0.02]", "", ["eps"]),
    ('use = ["milp", "ibp"]', 'use = ["milp", "deeppoly"]', ["deeppoly", "ibp, crown, lp, milp"]),
    ('use = ["milp", "ibp"]', "use = []", ["use"]),
    ("{net}", "missing.onnx", ["[network] path", "does not exist"]),
    ('name = "t"', 'name = "t"\ncolour = "red"', ["'colour'", "top level"]),
    ("first = 3", "first = 3\nsplit_seed = 1", ["'split_seed'", "[data]"]),
    ("input_hi = 1.0", "input_hi = 1.0\ntarget = 3", ["'target'", "[property]"]),
    ("threads = 1", "threads = 1\ngap = 0.1", ["'gap'", "[solver]"]),
    ('kind = "robustness"', 'kind = "bogus"', ["kind", "cr", "fairness"]),
    ('kind = "robustness"', 'kind = "fairness"', ["fairness", "sensitive"]),
    ('kind = "robustness"', 'kind = "fairness"\nsensitive = [0]', ["values", "interval"]),
    ('kind = "robustness"', 'kind = "sr"\ndelta = -1.0', ["delta", "> 0"]),
    ('kind = "robustness"', 'kind = "scr"\neta = 0.2', ["eta", "(0.5, 1)"]),
    ('kind = "robustness"', 'kind = "sr"\nL = 1.0', ["'L'", "[property]"]),
    ('kind = "robustness"', 'kind = "fairness"\nsensitive = [0]\nvalues = [0, 1]',
     ["values", "list of lists"]),
    ('name = "highs"', 'name = "cplex"', ["cplex", "highs"]),
    ("timeout = 5", "timeout = -1", ["timeout", "> 0"]),
    ("threads = 1", "threads = 0", ["threads"]),
    ("first = 3", "first = 0", ["first", ">= 1"]),
    ("first = 3", "first = true", ["first", "int"]),
    ('source = "digits"', 'source = "mnist"', ["source", "digits, points"]),
    ('source = "digits"', 'source = "points"\npoints = "nope.npz"', ["points", "does not exist"]),
    ("input_hi = 1.0", "input_hi = -1.0", ["input_lo", "input_hi"]),
    ('use = ["milp", "ibp"]', "use = 3", ["use"]),
])
def test_bad_values_name_the_key(tmp_path, old, new, words):
    text = GOOD.replace(old, new)
    assert text != GOOD
    with pytest.raises(InputError) as info:
        load_instance(write(tmp_path, text))
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("extra, kind", [
    ("", "cr"), ('\ntarget = 3', "targeted"), ("\ndelta = 0.5", "sr"), ("\nL = 20.0", "lr"),
    ("\neta = 0.9", "scr"), ("\nsensitive = [0, 1]\nvalues = [[0, 1], [0, 0.5]]", "fairness"),
    ("\nsensitive = [3]\ninterval = [[0, 1]]", "fairness")])
def test_every_property_kind_parses(tmp_path, extra, kind):
    text = GOOD.replace('kind = "robustness"', f'kind = "{kind}"{extra}')
    inst = load_instance(write(tmp_path, text))
    assert inst.kind == kind and inst.prop.kind == kind
    for key in ("target", "delta", "L", "eta", "sensitive", "values", "interval"):
        if key in extra:
            assert getattr(inst.prop, key) not in (None, [])


def test_missing_sections_and_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_instance(tmp_path / "nope.toml")
    with pytest.raises(InputError, match="not valid TOML"):
        load_instance(write(tmp_path, "eps = [0.1"))
    with pytest.raises(InputError, match=r"\[property\]"):
        load_instance(write(tmp_path, GOOD.split("[property]")[0]))


def test_points_file_must_hold_X_and_y(tmp_path):
    np.savez(tmp_path / "pts.npz", X=np.zeros((2, 64)))
    text = GOOD.replace('source = "digits"', 'source = "points"\npoints = "pts.npz"')
    inst = load_instance(write(tmp_path, text))
    with pytest.raises(InputError, match="'X'"):
        inst.load_points()


def test_parse_methods_from_the_command_line():
    assert parse_methods("milp, ibp", "--methods") == ["ibp", "milp"]
    with pytest.raises(InputError, match="--methods"):
        parse_methods("ibp,foo", "--methods")
