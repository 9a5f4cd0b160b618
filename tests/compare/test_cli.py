"""``mipcert compare`` end to end on a reduced instance (real solvers)."""
from __future__ import annotations

import csv
import json

import pytest

from mipcert.cli import main

from .conftest import INSTANCE
from .test_instance import GOOD, write


def test_cli_end_to_end_with_outputs(tmp_path, capsys):
    out_csv, out_json, out_png = tmp_path / "r.csv", tmp_path / "r.json", tmp_path / "r.png"
    rc = main(["compare", str(INSTANCE), "--first", "3", "--csv", str(out_csv), "--json",
               str(out_json), "--plot", str(out_png), "--timeout", "20", "-q", "--plain"])
    assert rc == 0
    text = capsys.readouterr()
    assert "summary" in text.out and "eps = 0.05" in text.out
    for m in ("ibp bound", "crown bound", "lp bound", "milp bound"):
        assert m in text.out
    assert text.err == ""                        # -q: no progress
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 3 * 5 * 4                # points x eps x methods
    assert {r["method"] for r in rows} == {"ibp", "crown", "lp", "milp"}
    data = json.loads(out_json.read_text())
    assert data["eps"] == [0.01, 0.02, 0.03, 0.05, 0.08] and len(data["points"]) == 15
    assert data["conflicts"] == []
    assert sum(s["points"] for s in data["summary"]) == 15 * 4
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp files


def test_cli_methods_subset_and_progress(tmp_path, capsys):
    inst = write(tmp_path, GOOD)
    assert main(["compare", str(inst), "--methods", "ibp,crown", "--first", "2"]) == 0
    text = capsys.readouterr()
    assert "crown bound" in text.out and "milp bound" not in text.out
    assert text.err.splitlines()[-1] == "[4/4] done"   # progress on stderr


@pytest.mark.parametrize("argv, words", [
    (["--methods", "ibp,cplex"], ["cplex"]),
    (["--first", "0"], ["--first"]),
    (["--timeout", "-3"], ["--timeout"]),
])
def test_cli_bad_arguments_exit_2(tmp_path, capsys, argv, words):
    inst = write(tmp_path, GOOD)
    assert main(["compare", str(inst), "-q", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    for w in words:
        assert w in err


def test_cli_bad_instance_exit_2(tmp_path, capsys):
    inst = write(tmp_path, GOOD.replace("eps = [0.01, 0.02]", "eps = -0.1"))
    assert main(["compare", str(inst)]) == 2
    assert "eps" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing.toml")]) == 2


def test_cli_output_folder_must_exist(tmp_path, capsys):
    inst = write(tmp_path, GOOD)
    rc = main(["compare", str(inst), "-q", "--methods", "ibp", "--csv",
               str(tmp_path / "no" / "r.csv")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
