"""VNN-LIB 2.0 queries, read with the official parser (the ``vnnlib`` package).

A 2.0 query declares its networks (``(declare-network N (declare-input X float32 [1,5])
(declare-output Y float32 [5]))``) and asserts Boolean formulas over their inputs and
outputs. The reference parser checks the query (syntax, types, shapes) and gives every
assertion as a formula in disjunctive normal form (``BoolExpr.to_dnf``) whose comparisons
are linear (``ArithExpr.to_linear_expr``). This module only maps that parsed form onto a
:class:`~mipcert.spec.Specification` (FORMULATIONS 1.5):

* the assertions are conjoined: the DNF of the query is the product of the assertions' DNFs;
* in each conjunct, comparisons on one input variable and a constant are its input box,
  comparisons on outputs only are rows ``C y <= d`` of one clause (``>=`` is negated, ``==``
  gives two rows, strict ``<``/``>`` are read as non-strict, as for VNN-LIB 1.0); conjuncts
  with the same box become one region with several clauses;
* variables are flattened row-major (``X[0,2]`` of shape ``[1,5]`` is input 2).

What mipcert cannot decide exactly is refused with :class:`UnsupportedError` naming the
construct: several networks or ``equal-to``/``isomorphic-to`` relations, hidden-node
variables, several inputs or outputs, input constraints other than bounds (for example
``X[0] + X[1] <= 1``), comparisons mixing inputs and outputs, ``!=``, products of variables.
``mipcert verify`` then decides the query on the general graph path
(:mod:`mipcert.io.vnnlib2_query`, :mod:`mipcert.verify.query`); only products of variables
are refused there too.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import MipcertError, SpecificationError, UnsupportedError
from ..spec import Clause, Region, Specification
from .vnnlib import _num, _read_source

#: VNN-LIB versions this reader accepts (min, max), as ``supports --vnnlib-versions`` says.
VERSIONS = ("1.0", "2.0")
# A query whose DNF has more conjuncts than this is refused (it would be a huge property).
MAX_CONJUNCTS = 100_000

_VERSION_RE = re.compile(r"^\s*\(\s*vnnlib-version\s*<", re.MULTILINE)


def is_vnnlib2(path_or_text) -> bool:
    """True when the query declares ``(vnnlib-version <2.x>)`` (VNN-LIB 1.0 files do not)."""
    try:
        text, _ = _read_source(path_or_text)
    except MipcertError:
        return False
    text = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    return bool(_VERSION_RE.search(text))


def _parse(path_or_text):
    import vnnlib

    text, name = _read_source(path_or_text)
    try:
        return vnnlib.parse_query_string(text), name
    except vnnlib.VNNLibException as exc:
        err = SpecificationError(f"{name}: VNN-LIB 2.0 query refused by the reference parser: "
                                 f"{parser_message(exc)}")
        err.parser_codes = [e.get("errorCode") for e in _parser_errors(exc) or []]
        raise err from exc


def _parser_errors(exc) -> list | None:
    """The reference parser's errors (it reports a JSON document), or None."""
    import json

    text = str(exc)
    try:
        errors = json.loads(text[text.index("{"):])["errors"]
    except (ValueError, KeyError, TypeError):
        return None
    return errors if isinstance(errors, list) else None


def parser_message(exc) -> str:
    """The reference parser's error in one line: each error's line, hint (or message) and
    offending symbol; anything that is not its JSON report is kept as it is."""
    errors = _parser_errors(exc)
    if errors is None:
        return " ".join(str(exc).split())
    parts = []
    for e in errors:
        where = f"line {e['line']}: " if e.get("line") is not None else ""
        what = e.get("hint") or e.get("message") or e.get("errorCode", "error")
        sym = f" ({e['offendingSymbol']})" if e.get("offendingSymbol") else ""
        parts.append(f"{where}{what}{sym}")
    return "; ".join(parts) or " ".join(str(exc).split())


def query_networks(path_or_text) -> list[str]:
    """Names of the networks the query declares (for matching ``--network NAME=PATH``)."""
    from .vnnlib2_query import _parse_query   # tolerates isomorphic networks' types

    query, _ = _parse_query(path_or_text)
    return [n.name for n in query.networks]


def parse_vnnlib2(path_or_text, n_inputs: int | None = None,
                  n_outputs: int | None = None) -> Specification:
    """The :class:`Specification` of a VNN-LIB 2.0 query over one network (see module doc)."""
    query, name = _parse(path_or_text)
    net = _single_network(query, name)
    x_def, y_def = net.inputs[0], net.outputs[0]
    nx, ny = int(np.prod(x_def.shape)), int(np.prod(y_def.shape))
    for want, got, what in ((n_inputs, nx, "inputs"), (n_outputs, ny, "outputs")):
        if want is not None and want != got:
            raise SpecificationError(
                f"{name} declares {got} {what} but the network has {want}: pair the query "
                "with the network it was written for")
    conjuncts = dnf_conjuncts(query, name)
    rows = _Rows(name, x_def, y_def, nx, ny)
    regions: dict[tuple, list[Clause]] = {}
    boxes: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for conj in conjuncts:
        case = rows.case(conj)
        if case is None:  # an empty input box or a false constant comparison
            continue
        lo, hi, clause = case
        key = (lo.tobytes(), hi.tobytes())
        boxes[key] = (lo, hi)
        regions.setdefault(key, []).append(clause)
    if not regions:
        raise SpecificationError(f"{name}: no case of the query has a non-empty input set")
    return Specification([Region(*boxes[k], cl) for k, cl in regions.items()], nx, ny, name=name)


def dnf_conjuncts(query, name) -> list[list]:
    """The disjunctive normal form of the conjunction of the query's assertions: a list of
    conjuncts, each a list of the parser's comparisons (the product of the assertions'
    DNFs); more than :data:`MAX_CONJUNCTS` is refused."""
    conjuncts = [[]]
    for assertion in query.assertions:
        dnf = assertion.expr.to_dnf()
        if len(conjuncts) * max(len(dnf), 1) > MAX_CONJUNCTS:
            raise UnsupportedError(f"{name}: the query's disjunctive normal form has more than "
                                   f"{MAX_CONJUNCTS} cases")
        conjuncts = [c + list(d) for c in conjuncts for d in dnf]
    return conjuncts


def _single_network(query, name):
    nets = query.networks
    if len(nets) != 1:
        raise UnsupportedError(f"{name} declares {len(nets)} networks; mipcert verifies queries "
                               "over one network (theory SNET)")
    net = nets[0]
    if net.equal_to or net.isometric_to:
        raise UnsupportedError(f"{name}: equal-to / isomorphic-to networks are not supported")
    if net.hidden:
        raise UnsupportedError(f"{name}: hidden-node variables are not supported (theory H)")
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise UnsupportedError(f"{name}: mipcert verifies networks with one input and one output "
                               "tensor (theory SIO)")
    return net


class _Rows:
    """Turns one conjunct of comparisons into ``(lo, hi, Clause)``."""

    def __init__(self, name, x_def, y_def, nx, ny):
        self.name = name
        self.x_name, self.y_name = x_def.name, y_def.name
        self.x_shape, self.y_shape = list(x_def.shape), list(y_def.shape)
        self.nx, self.ny = nx, ny

    def _index(self, var, shape):
        return int(np.ravel_multi_index(tuple(var.indices), tuple(shape)))

    def _linear(self, cmp):
        """``(coef_x, coef_y, const)`` of ``lhs - rhs``."""
        cx, cy = np.zeros(self.nx), np.zeros(self.ny)
        const = 0.0
        for side, sign in ((cmp.lhs, 1.0), (cmp.rhs, -1.0)):
            try:
                lin = side.to_linear_expr()
            except Exception as exc:  # products of variables
                raise UnsupportedError(f"{self.name}: non-linear comparison {str(cmp).strip()} "
                                       "is not supported") from exc
            const += sign * float(lin.constant)
            for t in lin.terms:
                v = t.var
                if v.name == self.x_name:
                    cx[self._index(v, self.x_shape)] += sign * float(t.coeff)
                elif v.name == self.y_name:
                    cy[self._index(v, self.y_shape)] += sign * float(t.coeff)
                else:
                    raise UnsupportedError(f"{self.name}: variable {t.var_name} is not the "
                                           "network's input or output")
        return cx, cy, const

    def case(self, conj):
        import vnnlib

        lo, hi = np.full(self.nx, -np.inf), np.full(self.nx, np.inf)
        C, d = [], []
        for cmp in conj:
            if isinstance(cmp, vnnlib.NotEqual):
                raise UnsupportedError(f"{self.name}: '!=' ({str(cmp).strip()}) is not supported")
            cx, cy, c0 = self._linear(cmp)       # the comparison is on  cx x + cy y + c0
            if isinstance(cmp, (vnnlib.GreaterEqual, vnnlib.GreaterThan)):
                signs = [-1.0]                    # lhs - rhs >= 0  <=>  -(...) <= 0
            elif isinstance(cmp, vnnlib.Equal):
                signs = [1.0, -1.0]
            else:
                signs = [1.0]
            nzx, nzy = np.flatnonzero(cx), np.flatnonzero(cy)
            if nzx.size and nzy.size:
                raise UnsupportedError(f"{self.name}: comparison {str(cmp).strip()} mixes inputs "
                                       "and outputs")
            if nzx.size > 1:
                raise UnsupportedError(f"{self.name}: input constraint {str(cmp).strip()} is not "
                                       "a bound on one input; mipcert needs an input box")
            for s in signs:                       # s (cx x + cy y + c0) <= 0
                if nzx.size:
                    i = int(nzx[0])
                    a = s * cx[i]
                    if a > 0:
                        hi[i] = min(hi[i], -s * c0 / a)
                    else:
                        lo[i] = max(lo[i], -s * c0 / a)
                elif nzy.size:
                    C.append(s * cy)
                    d.append(-s * c0)
                elif s * c0 > 0:                  # a false constant comparison
                    return None
        if np.any(lo > hi):
            return None
        missing = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))
        if missing.size:
            raise SpecificationError(
                f"{self.name}: input {self.x_name} entry {int(missing[0])} has no finite lower "
                "and upper bound in some case of the query; mipcert needs an input box")
        if not C:   # no output constraint: every output is unsafe (0 <= 0 always holds)
            C, d = [np.zeros(self.ny)], [0.0]
        return lo, hi, Clause(np.array(C), np.array(d))


def vnnlib2_text(spec: Specification, input_shape=None, network: str = "N") -> str:
    """``spec`` written as a VNN-LIB 2.0 query over network ``network`` (input ``X`` of shape
    ``input_shape``, default ``[n_inputs]``; output ``Y`` of shape ``[n_outputs]``)."""
    shape = list(input_shape or [spec.n_inputs])
    idx = [",".join(map(str, np.unravel_index(i, shape))) for i in range(spec.n_inputs)]
    lines = ["(vnnlib-version <2.0>)", "",
             f"(declare-network {network}",
             f"    (declare-input X float32 [{','.join(map(str, shape))}])",
             f"    (declare-output Y float32 [{spec.n_outputs}])", ")", ""]

    def row(c, dv):
        terms = [f"(* {_num(v)} Y[{j}])" for j, v in enumerate(c) if v != 0]
        lhs = terms[0] if len(terms) == 1 else f"(+ {' '.join(terms)})" if terms else "0.0"
        return f"(<= {lhs} {_num(dv)})"

    cases = []
    for r in spec.regions:
        box = [f"(>= X[{idx[i]}] {_num(r.lo[i])}) (<= X[{idx[i]}] {_num(r.hi[i])})"
               for i in range(spec.n_inputs)]
        for cl in r.clauses:
            rows = [row(c, dv) for c, dv in zip(cl.C, cl.d)]
            cases.append(f"(and {' '.join(box + rows)})")
    body = cases[0] if len(cases) == 1 else "(or\n    " + "\n    ".join(cases) + ")"
    lines.append(f"(assert {body})")
    return "\n".join(lines) + "\n"
