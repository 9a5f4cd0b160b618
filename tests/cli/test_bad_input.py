"""The command line's contract on bad input, from a fuzzing campaign of every sub-command:
one ``error:`` line on stderr naming the problem, exit 2, no traceback, and no file left
behind -- checked before any work is done where the problem is an output path."""
from __future__ import annotations

import shutil
from argparse import ArgumentTypeError
from pathlib import Path

import numpy as np
import pytest

from mipcert.cli import main
from mipcert.cli._common import device_name, natural, seconds

REPO = Path(__file__).resolve().parents[2]
VNNCOMP = REPO.parent / "shared" / "vnncomp" / "test"
needs_vnncomp = pytest.mark.skipif(not VNNCOMP.exists(), reason="../shared/vnncomp absent")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("fn,bad", [(seconds, "nan"), (seconds, "inf"), (seconds, "0"),
                                    (seconds, "-1"), (seconds, "x"), (natural, "-1"),
                                    (natural, "1.5"), (device_name, "tpu")])
def test_argument_types_refuse(fn, bad):
    with pytest.raises(ArgumentTypeError):
        fn(bad)


@needs_vnncomp
def test_numeric_options_are_checked_by_the_parser(capsys):
    net, prop = VNNCOMP / "test_small.onnx", VNNCOMP / "test_small.vnnlib"
    for extra in (["--timeout", "nan"], ["--seed", "-1"], ["--device", "tpu"], ["--bogus"]):
        code, out, err = run(capsys, "verify", net, prop, *extra)
        assert code == 2 and out == ""
        assert extra[0] in one_error_line(err) and "usage:" not in err


@needs_vnncomp
def test_a_result_file_that_is_a_folder_or_unwritable(capsys, tmp_path):
    net, prop = VNNCOMP / "test_small.onnx", VNNCOMP / "test_small.vnnlib"
    code, out, err = run(capsys, "verify", net, prop, "--result-file", tmp_path)
    assert code == 2 and "is a folder" in one_error_line(err) and out == ""
    code, _, err = run(capsys, "verify", net, prop, "--result-file", tmp_path / "no" / "r.txt")
    assert code == 2 and "does not exist" in one_error_line(err)


def test_outputs_are_checked_before_the_run_and_leave_nothing(capsys, tmp_path):
    """compare wrote --json and --csv, then failed on --plot in a missing folder."""
    inst = REPO / "instances" / "digits_mlp_robustness.toml"
    csv, js = tmp_path / "t.csv", tmp_path / "t.json"
    code, out, err = run(capsys, "compare", inst, "--csv", csv, "--json", js,
                         "--plot", tmp_path / "missing" / "p.png")
    assert code == 2 and "--plot" in one_error_line(err)
    assert not csv.exists() and not js.exists() and out == ""


def test_instance_files_refuse_nan_and_folders(capsys, tmp_path):
    src = REPO / "instances" / "digits_mlp_robustness.toml"
    text = src.read_text()
    bad = tmp_path / "nan.toml"
    bad.write_text(text + "\n[nan_table]\nvalue = nan\n")
    code, _, err = run(capsys, "compare", bad)
    assert code == 2 and "nan_table.value = nan" in one_error_line(err)
    code, _, err = run(capsys, "compare", tmp_path)
    assert code == 2 and "is a folder" in one_error_line(err)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run(capsys, "agt", binary)
    assert code == 2 and "not valid TOML" in one_error_line(err)


def test_points_file_problems_are_one_line(capsys, tmp_path):
    """An empty, truncated or NaN points file, or a label the network has no class for,
    gave tracebacks or was accepted."""
    inst = REPO / "instances" / "digits_mlp_robustness.toml"
    text = inst.read_text()
    net = (REPO / "instances" / "../models/digits_mlp.npz").resolve()
    cases = {"empty.npz": dict(X=np.zeros((0, 64)), y=np.zeros(0)),
             "nan.npz": dict(X=np.full((2, 64), np.nan), y=np.zeros(2)),
             "label.npz": dict(X=np.zeros((2, 64)), y=np.array([0, 100]))}
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04 not really")
    expect = {"empty.npz": "no points", "nan.npz": "NaN", "label.npz": "not a class",
              "trunc.npz": "cannot read"}
    import tomllib
    doc = tomllib.loads(text)
    for name, msg in expect.items():
        lines = [f'[network]\npath = "{net}"\n', '[data]\nsource = "points"\n'
                 f'points = "{tmp_path / name}"\n']
        for sec, table in doc.items():
            if sec in ("network", "data") or not isinstance(table, dict):
                continue
            lines.append(f"[{sec}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items()))
        top = "".join(f"{k} = {_toml(v)}\n" for k, v in doc.items() if not isinstance(v, dict))
        f = tmp_path / f"{name}.toml"
        f.write_text(top + "".join(lines))
        code, _, err = run(capsys, "compare", f)
        assert code == 2 and msg in one_error_line(err), (name, err)


def _toml(v):
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


@needs_vnncomp
def test_export_of_several_regions_is_all_or_nothing(capsys, tmp_path):
    """With two regions the files are OUT.r0 and OUT.r1; when r1 cannot be written, r0 was
    left behind (and the error was a traceback)."""
    prop = tmp_path / "two.vnnlib"
    lines = ["(declare-const X_0 Real)", "(declare-const Y_0 Real)",
             "(assert (or (and (>= X_0 0.0) (<= X_0 0.1)) (and (>= X_0 0.5) (<= X_0 0.6))))",
             "(assert (<= Y_0 -100.0))"]
    prop.write_text("\n".join(lines) + "\n")
    net = VNNCOMP / "test_nano.onnx"
    (tmp_path / "m.r1.lp").mkdir()               # r1 cannot be written
    code, _, err = run(capsys, "export", net, prop, "-o", tmp_path / "m.lp")
    assert code == 2 and one_error_line(err)
    assert not (tmp_path / "m.r0.lp").exists()
    shutil.rmtree(tmp_path / "m.r1.lp")
    code, out, _ = run(capsys, "export", net, prop, "-o", tmp_path / "m.lp")
    assert code == 0 and (tmp_path / "m.r0.lp").exists() and (tmp_path / "m.r1.lp").exists()


@needs_vnncomp
def test_a_network_named_twice_is_refused(capsys, tmp_path):
    q = tmp_path / "q.vnnlib"
    q.write_text("(vnnlib-version <2.0>)\n"
                 "(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [1]))\n"
                 "(assert (and (>= X[0] 0.0) (<= X[0] 1.0)))\n(assert (<= Y[0] -100.0))\n")
    code, _, err = run(capsys, "verify", q, "--network", f"N={VNNCOMP / 'test_nano.onnx'}",
                       "--network", f"N={VNNCOMP / 'test_tiny.onnx'}")
    assert code == 2 and "given twice" in one_error_line(err)
