"""The general graph path's interpreter and encoder, op by op.

Each graph is checked three ways: the float64 interpreter against onnxruntime
(``load_graph`` does that on every load), and the MILP encoding at fixed inputs: with the
inputs fixed to a random point, the minimum and the maximum of a random combination of
the outputs both equal the interpreter's value (so the encoding reproduces the graph, and
nothing else, at that point)."""
import numpy as np
import pyomo.environ as pyo
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from mipcert.encode.graph import GraphEncoder, _varray
from mipcert.encode.varray import add_rows, linear, new_vars
from mipcert.io.onnx_graph import load_graph
from mipcert.solve import solve

F = TensorProto.FLOAT


def _typed(v):
    v = np.asarray(v)
    return v.astype(np.float32 if v.dtype.kind == "f" else np.int64)


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
                          [numpy_helper.from_array(_typed(v), n) for n, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _conv_pool():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
    inits = [("w", rng.normal(size=(2, 1, 3, 3))), ("b", rng.normal(size=2) * 0.1),
             ("W", rng.normal(size=(3, 8)))]
    return _model(nodes, [("x", [1, 1, 4, 4])], [("y", F)], inits), (-1.0, 1.0)


def _select():
    nodes = [helper.make_node("Greater", ["x", "t"], ["g"]),
             helper.make_node("Mul", ["x", "two"], ["x2"]),
             helper.make_node("Neg", ["x"], ["nx"]),
             helper.make_node("Where", ["g", "x2", "nx"], ["w"]),
             helper.make_node("LessOrEqual", ["x", "t"], ["le"]),
             helper.make_node("Not", ["le"], ["nle"]),
             helper.make_node("Cast", ["nle"], ["fle"], to=F),
             helper.make_node("Mul", ["fle", "x"], ["gated"]),       # a Boolean times a variable
             helper.make_node("Equal", ["x", "t"], ["e"]),
             helper.make_node("Cast", ["e"], ["fe"], to=F),
             helper.make_node("Max", ["w", "x", "t"], ["mx"]),
             helper.make_node("Min", ["w", "gated"], ["mn"]),
             helper.make_node("Concat", ["mx", "mn", "fe"], ["y"], axis=0)]
    inits = [("t", [0.1, -0.2, 0.3, 0.0]), ("two", [2.0])]
    return _model(nodes, [("x", [4])], [("y", F)], inits), (-1.0, 1.0)


def _structure():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
             helper.make_node("Reshape", ["t", "shape"], ["r"]),
             helper.make_node("Split", ["r", "sizes"], ["s1", "s2"], axis=0),
             helper.make_node("Slice", ["s2", "st", "en", "ax", "sp"], ["sl"]),
             helper.make_node("Gather", ["x", "idx"], ["ga"], axis=1),
             helper.make_node("Flatten", ["ga"], ["gf"], axis=0),
             helper.make_node("Squeeze", ["gf", "zero"], ["gs"]),
             helper.make_node("Expand", ["s1", "eshape"], ["ex"]),
             helper.make_node("ReduceSum", ["ex", "one"], ["rs"], keepdims=0),
             helper.make_node("ReduceMean", ["x"], ["rm"], axes=[0], keepdims=0),
             helper.make_node("Unsqueeze", ["rm", "zero"], ["ru"]),
             helper.make_node("Squeeze", ["ru", "zero"], ["rq"]),
             helper.make_node("Concat", ["sl", "gs", "rs", "rq"], ["y"], axis=0)]
    inits = [("shape", [6]), ("sizes", [2, 4]), ("st", [3]), ("en", [0]), ("ax", [0]),
             ("sp", [-2]), ("idx", [2, 0]), ("zero", [0]), ("eshape", [3, 2]), ("one", [0])]
    return _model(nodes, [("x", [2, 3])], [("y", F)], inits, opset=13), (-2.0, 3.0)


def _two_inputs_two_outputs():
    nodes = [helper.make_node("Sub", ["a", "b"], ["d"]),
             helper.make_node("Relu", ["d"], ["y1"]),
             helper.make_node("Cast", ["a"], ["ai"], to=TensorProto.INT64),
             helper.make_node("Cast", ["ai"], ["y2"], to=F)]
    return _model(nodes, [("a", [3]), ("b", [3])], [("y1", F), ("y2", F)]), (0.05, 2.95)


def _cast_int_negative():
    model, _ = _two_inputs_two_outputs()
    return model, (-2.95, -0.05)


def _maxpool_padded():
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["x"], ["q"], kernel_shape=[2, 2], ceil_mode=1,
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["pf"]),
             helper.make_node("Flatten", ["q"], ["qf"]),
             helper.make_node("Concat", ["pf", "qf"], ["y"], axis=1)]
    return _model(nodes, [("x", [1, 1, 3, 3])], [("y", F)]), (-1.0, 1.0)


def _products():
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("Div", ["sq", "d"], ["q"]),
             helper.make_node("Add", ["q", "x"], ["y"])]
    return _model(nodes, [("x", [2]), ("d", [2])], [("y", F)]), (0.5, 2.0)


GRAPHS = {"conv_relu_maxpool_gemm": _conv_pool, "comparisons_where_max_min": _select,
          "structural_ops": _structure, "two_inputs_outputs_cast_int": _two_inputs_two_outputs,
          "cast_int_negative": _cast_int_negative, "maxpool_padding_ceil": _maxpool_padded,
          "products_square_div": _products}


@pytest.mark.parametrize("name", GRAPHS)
def test_encoding_reproduces_the_interpreter_at_fixed_inputs(tmp_path, name):
    model, (lo, hi) = GRAPHS[name]()
    path = tmp_path / f"{name}.onnx"
    save(model, str(path))
    graph = load_graph(path)           # the interpreter agrees with onnxruntime
    rng = np.random.default_rng(1)
    m = pyo.ConcreteModel()
    feeds = {n: new_vars(m, f"in_{n}", np.full(int(np.prod(s)), lo), np.full(int(np.prod(s)), hi))
             for n, s in graph.inputs}
    env = GraphEncoder(m, graph, "miqcp" if name == "products_square_div" else "milp").encode(feeds)
    outs = [_varray(env[n]).reshape(-1) for n, _ in graph.outputs]
    for k in range(2):
        point = {n: rng.uniform(lo, hi, size=int(np.prod(s))) for n, s in graph.inputs}
        ref = np.concatenate([v.reshape(-1) for v in graph.output_values(point)])
        items = np.concatenate([o.items for o in outs])
        w = rng.normal(size=ref.size)
        fix = [linear([(1.0, v)]) == float(p) for n in feeds
               for v, p in zip(feeds[n].items, point[n])]
        add_rows(m, f"fix{k}", fix)
        for sense in (pyo.minimize, pyo.maximize):
            m.obj = pyo.Objective(expr=linear(list(zip(w, items))), sense=sense)
            out = solve(m, "scip" if name == "products_square_div" else "highs")
            assert out.status == "optimal"
            assert out.value == pytest.approx(float(w @ ref), abs=1e-6)
            m.del_component(m.obj)
        m.del_component(getattr(m, f"fix{k}"))


def test_bounds_of_every_tensor_contain_sampled_values(tmp_path):
    model, (lo, hi) = _conv_pool()
    save(model, str(tmp_path / "g.onnx"))
    graph = load_graph(tmp_path / "g.onnx")
    m = pyo.ConcreteModel()
    x = new_vars(m, "x", np.full(16, lo), np.full(16, hi))
    env = GraphEncoder(m, graph).encode({"x": x})
    rng = np.random.default_rng(3)
    for _ in range(200):
        vals = graph.run({"x": rng.uniform(lo, hi, 16)})
        for name in ("c", "r", "p", "y"):
            v = _varray(env[name])
            assert np.all(v.lo <= vals[name] + 1e-9) and np.all(vals[name] <= v.hi + 1e-9)


def test_cast_to_integer_of_a_sign_changing_range_is_refused(tmp_path):
    from mipcert.errors import UnsupportedError

    model, _ = _two_inputs_two_outputs()
    save(model, str(tmp_path / "c.onnx"))
    graph = load_graph(tmp_path / "c.onnx")
    m = pyo.ConcreteModel()
    feeds = {n: new_vars(m, f"in_{n}", -np.ones(3), np.ones(3)) for n, _ in graph.inputs}
    with pytest.raises(UnsupportedError, match="crosses 0"):
        GraphEncoder(m, graph).encode(feeds)
