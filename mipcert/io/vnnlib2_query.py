"""VNN-LIB 2.0 queries in full generality, for the general graph path.

:mod:`mipcert.io.vnnlib2` maps the one-network, box-input subset onto a
:class:`~mipcert.spec.Specification` (the fast chain path). This module reads every query the
graph path decides, again through the reference parser (``vnnlib``): several networks
(``equal-to`` / ``isomorphic-to`` a declared one), several input and output tensors,
hidden-node variables (``declare-hidden`` naming an ONNX tensor), and any linear comparison
between any variables. A query becomes a :class:`Query`: the declared networks and the
disjunctive normal form of the conjunction of its assertions, each conjunct a list of
:class:`Row` ``sum_v c_v . v + c0  (<= | < | ==)  0`` over flattened variables. ``!=`` is
split into ``<`` or ``>`` (two conjuncts). Products of variables (the POLY theory) are
refused with :class:`UnsupportedError`.

Element types are not semantics for mipcert (everything is computed in float64, witnesses
are re-run through onnxruntime in the model's own types). The reference parser (1.0.2)
refuses an ``isomorphic-to`` network whose element types differ from its partner's
(``TypeMismatch``), although precision is what isomorphic networks may differ in; such a
query is parsed again with the partner's element types (:func:`_align_isomorphic_types`),
and only when type mismatches were the parser's only complaints.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import SpecificationError, UnsupportedError
from .vnnlib import _read_source
from .vnnlib2 import MAX_CONJUNCTS, _parse, dnf_conjuncts

log = logging.getLogger(__name__)
_NET_RE = re.compile(r"\(\s*declare-network\s+([A-Za-z_][A-Za-z0-9_]*)")
_DECL_RE = re.compile(r"(\(\s*declare-(?:input|hidden|output)\s+\S+\s+)([A-Za-z0-9_]+)")
_ISO_RE = re.compile(r"\(\s*isomorphic-to\s+([A-Za-z_][A-Za-z0-9_]*)\s*\)")


def _network_blocks(text):
    """``{name: (start, end)}`` of every ``(declare-network ...)`` form (balanced parens)."""
    out = {}
    for m in _NET_RE.finditer(text):
        depth, k = 0, m.start()
        while k < len(text):
            depth += {"(": 1, ")": -1}.get(text[k], 0)
            k += 1
            if depth == 0:
                break
        out[m.group(1)] = (m.start(), k)
    return out


def _align_isomorphic_types(text: str) -> str:
    """``text`` with each ``isomorphic-to`` network's element types replaced, declaration by
    declaration, by those of the network it is isomorphic to."""
    blocks = _network_blocks(text)
    for name, (a, b) in sorted(blocks.items(), key=lambda kv: -kv[1][0]):
        iso = _ISO_RE.search(text[a:b])
        if not iso or iso.group(1) not in blocks:
            continue
        pa, pb = blocks[iso.group(1)]
        types = [m.group(2) for m in _DECL_RE.finditer(text[pa:pb])]
        decls = list(_DECL_RE.finditer(text[a:b]))
        if len(types) != len(decls):
            continue
        block = text[a:b]
        for m, t in zip(reversed(decls), reversed(types)):
            block = block[:m.start(2)] + t + block[m.end(2):]
        text = text[:a] + block + text[b:]
    return text


def _parse_query(path_or_text):
    try:
        return _parse(path_or_text)
    except SpecificationError as exc:
        text, name = _read_source(path_or_text)
        codes = getattr(exc, "parser_codes", [])
        if not codes or any(c != "TypeMismatch" for c in codes) or not _ISO_RE.search(text):
            raise
        aligned = _align_isomorphic_types(text)
        try:
            parsed, _ = _parse(aligned)
        except SpecificationError:
            raise exc from None
        log.warning("%s: isomorphic networks with other element types; parsed with their "
                    "partners' types (mipcert computes in float64)", name)
        return parsed, name


@dataclass
class VarDecl:
    """One declared tensor: ``kind`` is 'input', 'hidden' or 'output'; ``onnx_name`` the
    ONNX tensor it names (None: the network's inputs / outputs in declaration order)."""
    name: str
    network: str
    kind: str
    shape: tuple[int, ...]
    onnx_name: str | None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class NetworkDecl:
    name: str
    inputs: list[VarDecl]
    hidden: list[VarDecl]
    outputs: list[VarDecl]
    equal_to: str | None = None       # the same network (needs no ONNX file of its own)
    isomorphic_to: str | None = None  # same structure, its own ONNX file


@dataclass
class Row:
    """``sum_v coefs[v] . v + const  (sense)  0``; ``sense`` in '<=', '<', '=='."""
    coefs: dict[str, np.ndarray]
    const: float
    sense: str

    def value(self, values: dict) -> float:
        """The left-hand side at ``values`` (variable name → flat array)."""
        return float(sum(c @ np.asarray(values[v], np.float64).reshape(-1)
                         for v, c in self.coefs.items()) + self.const)


@dataclass
class Query:
    name: str
    networks: list[NetworkDecl]
    conjuncts: list[list[Row]]
    variables: dict[str, VarDecl] = field(default_factory=dict)


def read_query(path_or_text) -> Query:
    """The :class:`Query` of a VNN-LIB 2.0 file or text (see the module docstring)."""
    import vnnlib

    parsed, name = _parse_query(path_or_text)
    nets, variables = [], {}
    for n in parsed.networks:
        decls = {}
        for kind, items in (("input", n.inputs), ("hidden", n.hidden), ("output", n.outputs)):
            decls[kind] = [VarDecl(v.name, n.name, kind, tuple(int(d) for d in v.shape),
                                   (v.onnx_name or "").strip('"') or None) for v in items]
            for d in decls[kind]:
                variables[d.name] = d
        nets.append(NetworkDecl(n.name, decls["input"], decls["hidden"], decls["output"],
                                (n.equal_to or "").strip() or None,
                                (n.isometric_to or "").strip() or None))
    conjuncts = dnf_conjuncts(parsed, name)
    rows_of = []
    for conj in conjuncts:
        cases = [[]]
        for cmp in conj:
            alternatives = _rows(cmp, variables, name, vnnlib)
            cases = [c + [r] for c in cases for r in alternatives]
            if len(cases) > MAX_CONJUNCTS:
                raise UnsupportedError(f"{name}: too many '!=' cases")
        rows_of.extend(cases)
    return Query(name, nets, rows_of, variables)


def _side(expr, variables, name, text):
    try:
        lin = expr.to_linear_expr()
    except Exception as exc:  # products of variables
        raise UnsupportedError(f"{name}: non-linear comparison {text} is not supported "
                               "(theory POLY)") from exc
    coefs: dict[str, np.ndarray] = {}
    for t in lin.terms:
        v = variables.get(t.var.name)
        if v is None:
            raise UnsupportedError(f"{name}: {t.var_name} is not a declared variable")
        c = coefs.setdefault(v.name, np.zeros(v.size))
        idx = int(np.ravel_multi_index(tuple(t.var.indices), v.shape)) if v.shape else 0
        c[idx] += float(t.coeff)
    return coefs, float(lin.constant)


def _rows(cmp, variables, name, vnnlib) -> list[Row]:
    """The alternatives (one Row, or two for '!=') of one comparison ``lhs OP rhs``."""
    text = str(cmp).strip()
    (cl, kl), (cr, kr) = (_side(s, variables, name, text) for s in (cmp.lhs, cmp.rhs))
    diff = {v: c.copy() for v, c in cl.items()}           # lhs - rhs
    for v, c in cr.items():
        diff[v] = diff.get(v, np.zeros_like(c)) - c
    k = kl - kr
    neg = {v: -c for v, c in diff.items()}
    if isinstance(cmp, vnnlib.LessEqual):
        return [Row(diff, k, "<=")]
    if isinstance(cmp, vnnlib.LessThan):
        return [Row(diff, k, "<")]
    if isinstance(cmp, vnnlib.GreaterEqual):
        return [Row(neg, -k, "<=")]
    if isinstance(cmp, vnnlib.GreaterThan):
        return [Row(neg, -k, "<")]
    if isinstance(cmp, vnnlib.Equal):
        return [Row(diff, k, "==")]
    if isinstance(cmp, vnnlib.NotEqual):
        return [Row(diff, k, "<"), Row(neg, -k, "<")]
    raise UnsupportedError(f"{name}: comparison {text} is not supported")
