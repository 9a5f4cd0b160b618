"""Write a Pyomo model as .lp or .mps, atomically, with readable deterministic names.

Linear models and models with a quadratic objective go through HiGHS's writers fed from the
:class:`StandardForm` (much faster than Pyomo's writers on big networks); models with
quadratic constraints go through Pyomo's own writers. Either way names are the Pyomo
component names sanitised as Pyomo's symbolic labels (``x[3,1]`` → ``x(3_1)``), and the file
is written to a temporary file in the target directory, then renamed over the target, so a
failure never leaves a partial file.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InputError, SolverError
from ..quiet import new_highs
from .standard_form import StandardForm, compile_model, symmetric_matrix

log = logging.getLogger(__name__)

FORMATS = ("lp", "mps")


def _format_of(path: Path, format: str | None) -> str:
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise InputError(f"cannot write {str(path)!r} as {fmt or 'an unknown format'!r}: "
                         "use format='lp' or 'mps' (or a .lp / .mps suffix)")
    return fmt


def write_model(model: Any, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write ``model`` (exactly one active Objective) to ``path`` as 'lp' or 'mps'.

    The format defaults to the suffix. Returns the path written. Raises InputError for an
    unknown format or a directory that does not exist; nothing is left behind on failure.
    """
    path = Path(path)
    fmt = _format_of(path, format)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"cannot write {str(path)!r}: directory {str(directory)!r} does not exist; create it first")
    sf = compile_model(model)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{fmt}", dir=directory)
    os.close(fd)
    try:
        if sf.q_rows:
            _write_pyomo(model, tmp, fmt)
        else:
            _write_highs(sf, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    log.info("wrote %s (%d rows, %d columns)", path, sf.n_rows, sf.n_cols)
    return path


def _write_highs(sf: StandardForm, tmp: str) -> None:
    import highspy

    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = sf.n_cols, sf.n_rows
    lp.col_cost_ = sf.c
    lp.col_lower_ = np.clip(sf.col_lo, -inf, inf)
    lp.col_upper_ = np.clip(sf.col_hi, -inf, inf)
    lp.row_lower_ = np.clip(sf.row_lo, -inf, inf)
    lp.row_upper_ = np.clip(sf.row_hi, -inf, inf)
    lp.offset_ = float(sf.c0)
    lp.sense_ = highspy.ObjSense.kMinimize if sf.sense == "min" else highspy.ObjSense.kMaximize
    A = sf.A.tocsc()
    A.sort_indices()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = sf.n_cols, sf.n_rows
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(np.float64)
    if sf.is_mip:
        lp.integrality_ = [highspy.HighsVarType.kInteger if t else highspy.HighsVarType.kContinuous
                           for t in sf.integrality]
    lp.col_names_ = sf.lp_col_names()
    lp.row_names_ = sf.lp_row_names()
    lp.model_name_ = "mipcert"
    h = new_highs()
    if h.passModel(lp) == highspy.HighsStatus.kError:
        raise SolverError("HiGHS rejected the model while exporting it")
    if sf.q_obj is not None and len(sf.q_obj):
        q = sp.tril(2.0 * symmetric_matrix(sf.q_obj, sf.n_cols)).tocsc()
        q.sort_indices()
        h.passHessian(sf.n_cols, q.nnz, 1, q.indptr.astype(np.int32), q.indices.astype(np.int32),
                      q.data.astype(np.float64))
    if h.writeModel(tmp) == highspy.HighsStatus.kError:
        raise SolverError(f"HiGHS could not write {tmp}")


def _write_pyomo(model: Any, tmp: str, fmt: str) -> None:
    model.write(tmp, format=fmt, io_options={"symbolic_solver_labels": True})
