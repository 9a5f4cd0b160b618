"""An ONNX graph as it is, with a float64 interpreter: the reference of the general graph path.

The chain importer (:mod:`mipcert.io.onnx_import`) turns a network into a chain of layers;
graphs it cannot read as a chain (several inputs or outputs, branches that join, MaxPool,
comparisons, ``Where``, ``Split``, ...) are read here node by node instead. An
:class:`OnnxGraph` keeps the nodes in their (topological) file order, the constants as
float64 arrays and the input and output declarations; :meth:`OnnxGraph.run` evaluates every
tensor with the numpy operators of :mod:`mipcert.io.graph_ops`. Like every import, a graph is
checked against onnxruntime on random inputs before it is used (:func:`load_graph`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFileError, UnsupportedError
from ._common import CHECK_RTOL, CHECK_SAMPLES
from .graph_ops import OPS, _tensor

log = logging.getLogger(__name__)

#: ONNX operators the interpreter evaluates (the graph encoder covers the same set)
GRAPH_OPS = tuple(sorted(OPS))


@dataclass
class Node:
    op: str
    inputs: list[str]     # '' for an omitted optional input
    outputs: list[str]
    attrs: dict
    name: str


class OnnxGraph:
    """``inputs``/``outputs``: ``[(name, shape)]`` of the graph's data inputs (initializers
    excluded; an unknown leading dimension is read as a batch of 1) and its outputs;
    ``consts``: initializer name → array; ``nodes``: :class:`Node` list in file order."""

    def __init__(self, model, label: str = "model"):
        from onnx import helper

        graph = model.graph
        self.label = label
        self.consts = {t.name: _tensor(t) for t in graph.initializer}
        self.inputs = [(i.name, _shape(i, label)) for i in graph.input if i.name not in self.consts]
        self.outputs = [(o.name, None) for o in graph.output]
        self.nodes = []
        for k, n in enumerate(graph.node):
            if n.op_type not in OPS or n.domain not in ("", "ai.onnx"):
                raise UnsupportedError(
                    f"{label}: ONNX operator {n.op_type} (node {n.name or k}) is not supported "
                    "by mipcert; `mipcert supports --onnx-operators` lists the supported ones")
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            if n.op_type == "Split":
                attrs["_n_outputs"] = len(n.output)
            self.nodes.append(Node(n.op_type, list(n.input), list(n.output), attrs,
                                   n.name or f"{n.op_type}_{k}"))
        self.nodes = _topological(self.nodes, set(self.consts) | {n for n, _ in self.inputs},
                                  label)
        outs = self.run({name: np.zeros(shape) for name, shape in self.inputs})
        self.outputs = [(name, outs[name].shape) for name, _ in self.outputs]

    def run(self, feeds: dict, keep_all: bool = True) -> dict:
        """Every tensor's value (float64 for floating data) given ``feeds``: input name →
        array of its declared shape."""
        env = dict(self.consts)
        for name, shape in self.inputs:
            env[name] = np.asarray(feeds[name], np.float64).reshape(shape)
        for n in self.nodes:
            ops = [env[i] if i else None for i in n.inputs]
            try:
                outs = OPS[n.op](ops, n.attrs)
            except UnsupportedError as exc:
                raise UnsupportedError(f"{self.label}: node {n.name}: {exc}") from exc
            for name, v in zip(n.outputs, outs):
                if name:
                    v = np.asarray(v)
                    env[name] = v.astype(np.float64) if v.dtype.kind == "f" else v
        return env

    def output_values(self, feeds: dict) -> list[np.ndarray]:
        env = self.run(feeds)
        return [env[name] for name, _ in self.outputs]


def _topological(nodes: list[Node], known: set, label: str) -> list[Node]:
    """``nodes`` in an order where every input is computed before it is used: the file's
    order when it already is one (ONNX requires it, but onnxruntime also loads files that
    break the rule); a node whose input nothing computes is a broken file."""
    known, order, left = set(known), [], list(nodes)
    while left:
        ready = [n for n in left if all(not i or i in known for i in n.inputs)]
        if not ready:
            n = left[0]
            missing = [i for i in n.inputs if i and i not in known]
            raise ModelFileError(f"{label}: node {n.name} ({n.op}) reads {missing[0]!r}, which "
                                 "no input, initializer or other node provides (or the nodes "
                                 "form a cycle)")
        taken = {id(n) for n in ready}
        order += ready
        left = [n for n in left if id(n) not in taken]
        for n in ready:
            known.update(n.outputs)
    return order


def _shape(value_info, label) -> tuple[int, ...]:
    tt = value_info.type.tensor_type
    if tt.elem_type not in (1, 10, 11):
        raise UnsupportedError(f"{label}: input {value_info.name!r} is not a float tensor")
    dims = []
    for k, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif k == 0:
            dims.append(1)
        else:
            raise UnsupportedError(f"{label}: input {value_info.name!r} has an unknown "
                                   f"dimension {k}; mipcert needs fixed input shapes")
    return tuple(dims)


def load_graph(path: str | os.PathLike, check: bool = True) -> OnnxGraph:
    """Read ``path`` as an :class:`OnnxGraph`; with ``check`` compare every output with
    onnxruntime on the zero input and :data:`CHECK_SAMPLES` uniform[-1, 1] inputs."""
    from .onnx_import import _read_model

    path = Path(path)
    graph = OnnxGraph(_read_model(path), path.name)
    if check:
        check_graph(graph, path)
    return graph


def ort_outputs(path, graph: OnnxGraph, feeds: dict, extra=()) -> dict:
    """onnxruntime's values of the graph outputs (and of the intermediate tensors ``extra``,
    added to the model's outputs for the run) as float64 arrays, by name."""
    from .onnx_runtime import get_session, make_session

    if extra:
        import onnx

        model = onnx.load(str(path))
        have = {o.name for o in model.graph.output}
        for name in extra:
            if name not in have:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
        sess = make_session(model.SerializeToString())
    else:
        sess = get_session(path)
    types = {i.name: i.type for i in sess.get_inputs()}
    dt = {"tensor(float)": np.float32, "tensor(double)": np.float64,
          "tensor(float16)": np.float16}
    run_feeds = {name: np.asarray(feeds[name]).reshape(shape).astype(dt.get(types[name],
                                                                            np.float32))
                 for name, shape in graph.inputs}
    names = [o.name for o in sess.get_outputs()]
    vals = sess.run(names, run_feeds)
    return {n: np.asarray(v).astype(np.float64) for n, v in zip(names, vals)}


def check_graph(graph: OnnxGraph, path) -> None:
    """Raise :class:`ModelFileError` unless the interpreter agrees with onnxruntime."""
    rng = np.random.default_rng(0)
    for k in range(CHECK_SAMPLES + 1):
        feeds = {name: (np.zeros(shape) if k == 0 else rng.uniform(-1, 1, shape))
                 for name, shape in graph.inputs}
        ours = graph.run(feeds)
        theirs = ort_outputs(path, graph, feeds)
        for name, _ in graph.outputs:
            a, b = ours[name].astype(np.float64), theirs[name]
            if a.shape != b.shape:
                raise ModelFileError(f"{path}: output {name!r} has shape {a.shape} in mipcert's "
                                     f"interpreter but {b.shape} in onnxruntime; please report it")
            same = (a == b) | (np.isnan(a) & np.isnan(b))   # 0/0 and inf agree too
            diff = float(np.max(np.where(same, 0.0, np.abs(a - b)))) if a.size else 0.0
            fin = np.abs(b[np.isfinite(b)])
            tol = CHECK_RTOL * (1.0 + (float(fin.max()) if fin.size else 0.0))
            if not np.isfinite(diff) or diff > tol:
                raise ModelFileError(
                    f"{path}: output {name!r} of mipcert's interpreter and onnxruntime differ "
                    f"by {diff:.3g} on random inputs (tolerance {tol:.3g}); please report it")
    log.info("%s: graph interpreter agrees with onnxruntime", path)
