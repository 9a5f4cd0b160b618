"""VNNLIB (the VNN-COMP subset of SMT-LIB) ↔ :class:`~mipcert.spec.Specification`.

Read: ``declare-const X_i Real`` / ``Y_j Real``, then asserts built from ``and``, ``or`` and
comparisons (``<=``, ``>=``, ``<``, ``>``, ``=``; strict read as non-strict) of linear terms
(``+``, ``-``, ``*`` and ``/`` by constants). The conjunction of all asserts (the UNSAFE set)
is put in disjunctive normal form; each term is an input box (bounds on single ``X_i``) plus
output rows ``C y <= d``. Terms with the same box form one :class:`Region` whose clauses
(a disjunction) are their output parts. Constraints on inputs other than bounds are refused.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..errors import SpecificationError, UnsupportedError
from ..spec import Clause, Region, Specification
from ._common import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = ["parse_vnnlib", "write_vnnlib"]

_TOKEN = re.compile(r";[^\n]*|\(|\)|[^\s();]+")
_VAR = re.compile(r"([XY])_(\d+)\Z")
_CMP = {"<=", ">=", "<", ">", "="}
_IGNORED = {"check-sat", "get-model", "set-logic", "set-info", "set-option", "exit"}
MAX_DNF_TERMS = 100_000


class _List(list):
    """A parenthesised expression remembering where it starts in the text."""

    __slots__ = ("pos",)


class _Reader:
    def __init__(self, text: str, name: str):
        self.text, self.name = text, name

    def line(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def error(self, msg: str, where=None, cls=SpecificationError):
        at = f" (line {self.line(where.pos)})" if isinstance(where, _List) else ""
        return cls(f"{self.name}{at}: {msg}")

    def parse(self) -> list[_List]:
        stack: list[list] = [[]]
        for m in _TOKEN.finditer(self.text):
            tok = m.group()
            if tok == "(":
                new = _List()
                new.pos = m.start()
                stack[-1].append(new)
                stack.append(new)
            elif tok == ")":
                if len(stack) == 1:
                    raise SpecificationError(
                        f"{self.name} (line {self.line(m.start())}): unbalanced parentheses: "
                        "a ')' closes nothing")
                stack.pop()
            elif tok[0] != ";":
                if len(stack) == 1:
                    raise SpecificationError(
                        f"{self.name} (line {self.line(m.start())}): syntax error: {tok!r} "
                        "outside parentheses")
                stack[-1].append(tok)
        if len(stack) > 1:
            raise SpecificationError(
                f"{self.name} (line {self.line(stack[-1].pos)}): unbalanced parentheses: "
                f"{len(stack) - 1} '(' never closed")
        return stack[0]


def _read_source(path_or_text) -> tuple[str, str]:
    if isinstance(path_or_text, os.PathLike) or (
            isinstance(path_or_text, str) and "(" not in path_or_text):
        p = Path(path_or_text)
        try:
            return p.read_text(encoding="utf-8"), p.name
        except FileNotFoundError:
            raise SpecificationError(f"{p}: no such VNNLIB file; check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecificationError(f"{p}: cannot read the VNNLIB file ({exc})") from None
    return str(path_or_text), "vnnlib"


def parse_vnnlib(path_or_text, n_inputs: int | None = None, n_outputs: int | None = None,
                 name: str | None = None) -> Specification:
    """Parse a VNNLIB property (a file path or the text itself) into a :class:`Specification`.

    ``n_inputs``/``n_outputs``: the network's sizes, checked when given. Returned regions
    have boxes of shape ``(n_inputs,)`` and clauses ``C``: ``(rows, n_outputs)``, ``d``: ``(rows,)``.
    Raises :class:`SpecificationError` (syntax, undeclared or missing variables, unbounded
    inputs, size mismatch) or :class:`UnsupportedError` (constraints on inputs other than
    bounds, inputs and outputs in one atom).
    """
    text, label = _read_source(path_or_text)
    rd = _Reader(text, label)
    exprs = rd.parse()
    declared: dict[str, dict[int, _List]] = {"X": {}, "Y": {}}
    asserts = []
    for e in exprs:
        head = e[0] if e and isinstance(e[0], str) else None
        if head == "assert" and len(e) == 2:
            asserts.append(e)
        elif head in ("declare-const", "declare-fun"):
            sort = e[-1] if len(e) in (3, 4) else None
            if sort != "Real" or not isinstance(e[1], str) or (len(e) == 4 and e[2] != []):
                raise rd.error(f"cannot read the declaration {_show(e)}; expected "
                               "(declare-const X_i Real)", e)
            m = _VAR.match(e[1])
            if m is None:
                raise rd.error(f"variable {e[1]!r}: only inputs X_i and outputs Y_j are "
                               "supported", e, UnsupportedError)
            kind, idx = m.group(1), int(m.group(2))
            if idx in declared[kind]:
                raise rd.error(f"{e[1]} is declared twice", e)
            declared[kind][idx] = e
        elif head in _IGNORED:
            continue
        else:
            raise rd.error(f"syntax error: unexpected command {_show(e)}", e)
    nx, ny = (_count(rd, declared[k], k) for k in "XY")
    if n_inputs is not None and nx != n_inputs:
        raise SpecificationError(f"{label} declares {nx} inputs X_i but the network has {n_inputs}")
    if n_outputs is not None and ny != n_outputs:
        raise SpecificationError(f"{label} declares {ny} outputs Y_j but the network has {n_outputs}")
    if not asserts:
        raise SpecificationError(f"{label} has no assert: nothing to verify")

    conv = _Converter(rd, nx, ny)
    common: list = []
    disjunctions: list[list[list]] = []
    for a in asserts:
        conv.split_top(a[1], common, disjunctions)
    lo, hi, ycommon, ok = conv.collect(common)
    if not ok:
        raise SpecificationError(f"{label}: the asserts contradict each other (a constant "
                                 "comparison is false): the unsafe set is empty")
    for i in np.flatnonzero(lo > hi):
        raise SpecificationError(f"{label}: the input set is empty: X_{i} must be >= {lo[i]} "
                                 f"and <= {hi[i]}")
    n_terms = int(np.prod([len(d) for d in disjunctions])) if disjunctions else 1
    if n_terms > MAX_DNF_TERMS:
        raise UnsupportedError(f"{label}: the disjunctive normal form has {n_terms} terms "
                               f"(limit {MAX_DNF_TERMS})")
    groups: dict[tuple, tuple[np.ndarray, np.ndarray, list[Clause]]] = {}
    for combo in itertools.product(*disjunctions):
        rows = [r for term in combo for r in term]
        tlo, thi, yrows, ok = conv.collect(rows, lo.copy(), hi.copy())
        if not ok or np.any(tlo > thi):
            log.warning("%s: dropping a disjunct whose constraints are contradictory", label)
            continue
        missing = np.flatnonzero(~np.isfinite(tlo) | ~np.isfinite(thi))
        if missing.size:
            i = int(missing[0])
            side = "lower" if not np.isfinite(tlo[i]) else "upper"
            raise SpecificationError(
                f"{label}: input X_{i} has no {side} bound; add (assert (>= X_{i} ...)) and "
                f"(assert (<= X_{i} ...)): mipcert needs a box on every input")
        allrows = yrows + ycommon
        if allrows:
            C = np.array([c for c, _ in allrows]).reshape(len(allrows), ny)
            d = np.array([r for _, r in allrows])
        else:
            log.warning("%s: a disjunct has no output constraint: every input in its box is "
                        "unsafe", label)
            C, d = np.zeros((1, ny)), np.zeros(1)
        tlo, thi = tlo + 0.0, thi + 0.0  # -0.0 → 0.0 so equal boxes group together
        key = (tlo.tobytes(), thi.tobytes())
        groups.setdefault(key, (tlo, thi, []))[2].append(Clause(C, d))
    if not groups:
        raise SpecificationError(f"{label}: every disjunct is contradictory: the unsafe set is empty")
    regions = [Region(tlo, thi, clauses) for tlo, thi, clauses in groups.values()]
    default = Path(label).stem if label != "vnnlib" else "property"
    return Specification(regions, nx, ny, name=name or default)


def _show(e, limit: int = 60) -> str:
    s = str(e).replace("'", "").replace("[", "(").replace("]", ")").replace(",", "")
    return s if len(s) <= limit else s[:limit] + "..."


def _count(rd: _Reader, decl: dict, kind: str) -> int:
    if not decl:
        raise SpecificationError(f"{rd.name}: no {kind}_i variable is declared")
    n = max(decl) + 1
    if len(decl) != n:
        gap = min(set(range(n)) - set(decl))
        raise SpecificationError(
            f"{rd.name}: {kind}_{gap} is not declared although {kind}_{n - 1} is: variable "
            f"indices must run 0..n-1 without gaps")
    return n


class _Converter:
    """Formulas → rows ``(kind, coefs, rhs, expr)`` meaning ``sum coefs * var <= rhs``."""

    def __init__(self, rd: _Reader, nx: int, ny: int):
        self.rd, self.nx, self.ny = rd, nx, ny

    def split_top(self, f, common: list, disjunctions: list) -> None:
        head = self._head(f)
        if head == "and":
            for g in f[1:]:
                self.split_top(g, common, disjunctions)
        elif head == "or":
            disjunctions.append(self.dnf(f))
        else:
            common.extend(self.atom(f))

    def dnf(self, f) -> list[list]:
        head = self._head(f)
        if head == "or":
            return [t for g in f[1:] for t in self.dnf(g)]
        if head == "and":
            terms: list[list] = [[]]
            for g in f[1:]:
                terms = [t + u for t in terms for u in self.dnf(g)]
                if len(terms) > MAX_DNF_TERMS:
                    raise self.rd.error("the disjunctive normal form is too large", f, UnsupportedError)
            return terms
        return [self.atom(f)]

    def _head(self, f) -> str:
        if not isinstance(f, _List) or not f or not isinstance(f[0], str):
            raise self.rd.error(f"syntax error: expected a formula, got {_show(f)}",
                                f if isinstance(f, _List) else None)
        if f[0] not in _CMP | {"and", "or"}:
            raise self.rd.error(f"unsupported formula {_show(f)}: only and, or, <=, >=, <, >, = "
                                "are supported", f, UnsupportedError)
        return f[0]

    def atom(self, f) -> list:
        if len(f) != 3:
            raise self.rd.error(f"syntax error: {f[0]} takes two arguments in {_show(f)}", f)
        a, ca = self.term(f[1], f)
        b, cb = self.term(f[2], f)
        diff = dict(a)  # a - b  (op)  cb - ca
        for k, v in b.items():
            diff[k] = diff.get(k, 0.0) - v
        diff = {k: v for k, v in diff.items() if v != 0.0}
        rhs = cb - ca
        kinds = {k[0] for k in diff}
        if kinds == {"X", "Y"}:
            raise self.rd.error(f"{_show(f)} relates inputs and outputs; only boxes on inputs "
                                "and constraints on outputs are supported", f, UnsupportedError)
        if kinds == {"X"} and len(diff) > 1:
            raise self.rd.error(f"{_show(f)} is a general linear constraint on inputs; only "
                                "boxes (bounds on single X_i) are supported", f, UnsupportedError)
        neg = {k: -v for k, v in diff.items()}
        op = f[0]
        if op in ("<=", "<"):
            return [(diff, rhs, f)]
        if op in (">=", ">"):
            return [(neg, -rhs, f)]
        return [(diff, rhs, f), (neg, -rhs, f)]

    def term(self, t, where) -> tuple[dict, float]:
        if isinstance(t, str):
            m = _VAR.match(t)
            if m:
                kind, idx = m.group(1), int(m.group(2))
                if idx >= (self.nx if kind == "X" else self.ny):
                    raise self.rd.error(f"{t} is used but not declared; add (declare-const {t} Real)", where)
                return {(kind, idx): 1.0}, 0.0
            try:
                v = float(t)
            except ValueError:
                raise self.rd.error(f"{t!r} is neither a number nor a declared variable X_i / Y_j; "
                                    "declare it with (declare-const ...)", where) from None
            if not np.isfinite(v):
                raise self.rd.error(f"{t!r} is not a finite number", where)
            return {}, v
        if not t or not isinstance(t[0], str):
            raise self.rd.error(f"syntax error in the term {_show(t)}", t)
        op, args = t[0], [self.term(s, t) for s in t[1:]]
        if op == "+" and args:
            return self._lin(args, [1.0] * len(args))
        if op == "-" and len(args) == 1:
            return self._lin(args, [-1.0])
        if op == "-" and args:
            return self._lin(args, [1.0] + [-1.0] * (len(args) - 1))
        if op == "*" and len(args) >= 2:
            var = [i for i, (c, _) in enumerate(args) if c]
            if len(var) > 1:
                raise self.rd.error(f"{_show(t)} is not linear", t, UnsupportedError)
            factor = float(np.prod([k for i, (_, k) in enumerate(args) if i not in var]))
            return self._lin([args[var[0]]], [factor]) if var else ({}, factor)
        if op == "/" and len(args) >= 2:
            if any(c for c, _ in args[1:]):
                raise self.rd.error(f"{_show(t)} is not linear", t, UnsupportedError)
            den = float(np.prod([k for _, k in args[1:]]))
            if den == 0.0:
                raise self.rd.error(f"division by zero in {_show(t)}", t)
            return self._lin(args[:1], [1.0 / den])
        raise self.rd.error(f"unsupported term {_show(t)}: only +, -, * and / by constants",
                            t, UnsupportedError)

    @staticmethod
    def _lin(args, weights) -> tuple[dict, float]:
        out: dict = {}
        const = 0.0
        for (c, k), w in zip(args, weights):
            const += w * k
            for key, v in c.items():
                out[key] = out.get(key, 0.0) + w * v
        return out, const

    def collect(self, rows, lo=None, hi=None):
        """Split rows into an input box (intersected with ``lo``/``hi``) and output rows."""
        lo = np.full(self.nx, -np.inf) if lo is None else lo
        hi = np.full(self.nx, np.inf) if hi is None else hi
        yrows, ok = [], True
        for coefs, rhs, _ in rows:
            if not coefs:
                ok &= 0.0 <= rhs
            elif next(iter(coefs))[0] == "X":
                (_, i), c = next(iter(coefs.items()))
                if c > 0:
                    hi[i] = min(hi[i], rhs / c)
                else:
                    lo[i] = max(lo[i], rhs / c)
            else:
                row = np.zeros(self.ny)
                for (_, j), c in coefs.items():
                    row[j] = c
                yrows.append((row, rhs))
        return lo, hi, yrows, ok


def _num(v: float) -> str:
    return repr(float(v))


def _row_text(c: np.ndarray, d: float) -> str:
    nz = [(j, float(v)) for j, v in enumerate(c) if v != 0.0]
    if len(nz) == 1 and nz[0][1] in (1.0, -1.0):
        j, v = nz[0]
        return f"(<= Y_{j} {_num(d)})" if v == 1.0 else f"(>= Y_{j} {_num(-d)})"
    if len(nz) == 2 and d == 0.0 and sorted(v for _, v in nz) == [-1.0, 1.0]:
        a = next(j for j, v in nz if v == 1.0)
        b = next(j for j, v in nz if v == -1.0)
        return f"(<= Y_{a} Y_{b})"
    terms = " ".join(f"(* {_num(v)} Y_{j})" for j, v in nz) or "0.0"
    return f"(<= (+ {terms}) {_num(d)})" if len(nz) > 1 else f"(<= {terms} {_num(d)})"


def _box_text(r: Region) -> list[str]:
    return [s for i in range(r.lo.size)
            for s in (f"(>= X_{i} {_num(r.lo[i])})", f"(<= X_{i} {_num(r.hi[i])})")]


def vnnlib_text(spec: Specification) -> str:
    """The specification as VNNLIB text (the reading of :func:`parse_vnnlib`)."""
    out = [f"; {spec.name} (written by mipcert)", ""]
    out += [f"(declare-const X_{i} Real)" for i in range(spec.n_inputs)] + [""]
    out += [f"(declare-const Y_{j} Real)" for j in range(spec.n_outputs)] + [""]
    if len(spec.regions) == 1:
        region = spec.regions[0]
        out += [f"(assert {s})" for s in _box_text(region)] + [""]
        clauses = region.clauses
        if len(clauses) == 1:
            out += [f"(assert {_row_text(c, d)})" for c, d in zip(clauses[0].C, clauses[0].d)]
        else:
            out.append("(assert (or")
            out += ["    (and " + " ".join(_row_text(c, d) for c, d in zip(cl.C, cl.d)) + ")"
                    for cl in clauses]
            out.append("))")
    else:
        out.append("(assert (or")
        for region in spec.regions:
            box = " ".join(_box_text(region))
            for cl in region.clauses:
                rows = " ".join(_row_text(c, d) for c, d in zip(cl.C, cl.d))
                out.append(f"    (and {box} {rows})")
        out.append("))")
    return "\n".join(out) + "\n"


def write_vnnlib(spec: Specification, path: str | os.PathLike) -> Path:
    """Write ``spec`` to ``path`` as VNNLIB (atomic write); :func:`parse_vnnlib` reads it back."""
    return atomic_write_bytes(path, vnnlib_text(spec).encode("utf-8"))
