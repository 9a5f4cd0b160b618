"""The general graph path of ``mipcert verify``: exact optima on tiny random graphs, the
witness rule for closures, and VNN-LIB 2.0 queries with several networks, inputs, outputs,
hidden nodes and linear input constraints."""
import numpy as np
import pyomo.environ as pyo
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from mipcert.encode.graph import GraphEncoder, _varray
from mipcert.encode.varray import new_vars
from mipcert.io.onnx_graph import load_graph
from mipcert.io.vnnlib2_query import read_query
from mipcert.solve import solve
from mipcert.verify.query import verify_query

pytest.importorskip("vnnlib")
F = TensorProto.FLOAT


def _save(tmp_path, name, nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, F, s) for n, s in outputs],
                          [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in inits])
    path = tmp_path / f"{name}.onnx"
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _random_graph(tmp_path, seed):
    """x (2) -> Gemm 6 -> Relu -> Split 3+3 -> Max -> MaxPool over 3 -> y (1)."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Split", ["r", "sizes"], ["r1", "r2"], axis=1),
             helper.make_node("Sub", ["r1", "r2"], ["d"]),
             helper.make_node("Max", ["d", "r2"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["m4"]),
             helper.make_node("MaxPool", ["m4"], ["p"], kernel_shape=[1, 2]),
             helper.make_node("ReduceSum", ["p"], ["y"], keepdims=0)]
    inits = [("W", rng.normal(size=(6, 2))), ("b", rng.normal(size=6)),
             ("sizes", np.array([3, 3])), ("shape", np.array([1, 1, 1, 3]))]
    nodes[2].input[1] = "sizes"
    g = helper.make_graph(nodes, "rand", [helper.make_tensor_value_info("x", F, [1, 2])],
                          [helper.make_tensor_value_info("y", F, [])],
                          [numpy_helper.from_array(
                              np.asarray(v, np.float32 if k < 2 else np.int64), n)
                           for k, (n, v) in enumerate(inits)])
    path = tmp_path / f"rand{seed}.onnx"
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return load_graph(path)


@pytest.mark.parametrize("seed", range(4))
def test_milp_extremes_contain_samples_and_are_attained(tmp_path, seed):
    graph = _random_graph(tmp_path, seed)
    m = pyo.ConcreteModel()
    x = new_vars(m, "x", -np.ones(2), np.ones(2))
    y = _varray(GraphEncoder(m, graph).encode({"x": x})["y"]).reshape(-1).items[0]
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 61), np.linspace(-1, 1, 61)), -1).reshape(-1, 2)
    sampled = np.array([graph.output_values({"x": p})[0].item() for p in grid])
    for sense, best in ((pyo.maximize, sampled.max()), (pyo.minimize, sampled.min())):
        m.obj = pyo.Objective(expr=y if not isinstance(y, float) else 0.0 * x.items[0] + y,
                              sense=sense)
        out = solve(m, "highs")
        m.del_component(m.obj)
        # sound: the proven bound contains every sampled output
        assert (out.bound >= best - 1e-9) if sense == pyo.maximize else (out.bound <= best + 1e-9)
        # exact: the optimum is attained by a real input, re-run through the interpreter
        x_star = out.values(list(x.items))
        assert graph.output_values({"x": x_star})[0].item() == pytest.approx(out.value, abs=1e-6)
        assert out.value == pytest.approx(out.bound, abs=1e-6)


QUERY_HEAD = "(vnnlib-version <2.0>)\n"


def test_closure_point_is_never_reported_as_a_witness(tmp_path):
    # y = 1 if x > 0 else 0 on x in [-1, 0]: always 0, but the closure of x > 0 contains x = 0
    path = _save(tmp_path, "step", [helper.make_node("Greater", ["x", "z"], ["g"]),
                                    helper.make_node("Cast", ["g"], ["y"], to=F)],
                 [("x", [1])], [("y", [1])], [("z", [0.0])])
    q = read_query(QUERY_HEAD + """(declare-network N (declare-input X float32 [1])
        (declare-output Y float32 [1]))
        (assert (and (>= X[0] -1.0) (<= X[0] 0.0) (>= Y[0] 0.5)))""")
    res = verify_query(q, {"N": path}, attack=False)
    assert res.verdict == "unknown"
    # the true answer is unsat: with a strict bound the closure refutes it
    q = read_query(QUERY_HEAD + """(declare-network N (declare-input X float32 [1])
        (declare-output Y float32 [1]))
        (assert (and (>= X[0] -1.0) (<= X[0] -0.5) (>= Y[0] 0.5)))""")
    assert verify_query(q, {"N": path}).verdict == "unsat"


def test_two_networks_hidden_nodes_and_linear_input_rows(tmp_path):
    # N: h = 2 x (hidden), y = relu(h - 1); M (equal-to N) on its own input
    path = _save(tmp_path, "hid", [helper.make_node("Mul", ["x", "two"], ["h"]),
                                   helper.make_node("Sub", ["h", "one"], ["s"]),
                                   helper.make_node("Relu", ["s"], ["y"])],
                 [("x", [2])], [("y", [2])], [("two", [2.0]), ("one", [1.0])])
    decl = """(declare-network N (declare-input X float32 [2])
                 (declare-hidden H float32 [2] "h") (declare-output Y float32 [2]))
              (declare-network M (equal-to N) (declare-input X2 float32 [2])
                 (declare-output Y2 float32 [2]))
              (assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0)))
              (assert (and (>= X2[0] 0.0) (<= X2[0] 1.0) (>= X2[1] 0.0) (<= X2[1] 1.0)))
              (assert (<= (+ X[0] X[1]) 1.0))"""
    # Y[0] + Y[1] <= relu(2 x0 - 1) + relu(2 x1 - 1) <= 1 under x0 + x1 <= 1
    unsat = read_query(QUERY_HEAD + decl + "(assert (>= (+ Y[0] Y[1]) 1.1))")
    assert verify_query(unsat, {"N": path}).verdict == "unsat"
    # ... while the second copy (no linear row) reaches 2; and H = 2 X is visible
    sat = read_query(QUERY_HEAD + decl + """(assert (>= (+ Y2[0] Y2[1]) 1.5))
                                           (assert (>= H[0] 1.5))""")
    res = verify_query(sat, {"N": path})
    assert res.verdict == "sat"
    x = res.counterexample[0]   # X then X2
    assert x[0] + x[1] <= 1.0 and 2 * x[0] >= 1.5
    assert max(2 * x[2] - 1, 0) + max(2 * x[3] - 1, 0) >= 1.5


def test_several_inputs_and_outputs_are_bound_in_order(tmp_path):
    path = _save(tmp_path, "mio", [helper.make_node("Sub", ["a", "b"], ["d"]),
                                   helper.make_node("Add", ["a", "b"], ["s"])],
                 [("a", [1]), ("b", [1])], [("d", [1]), ("s", [1])])
    head = QUERY_HEAD + """(declare-network N (declare-input A float32 [1])
        (declare-input B float32 [1]) (declare-output D float32 [1]) (declare-output S float32 [1]))
        (assert (and (>= A[0] 0.0) (<= A[0] 1.0) (>= B[0] 10.0) (<= B[0] 11.0)))"""
    unsat = read_query(head + "(assert (>= D[0] -8.0))")
    assert verify_query(unsat, {"N": path}).verdict == "unsat"
    assert verify_query(read_query(head + "(assert (and (<= D[0] -10.5) (>= S[0] 11.5)))"),
                        {"N": path}).verdict == "sat"


def test_isomorphic_networks_may_differ_in_element_types(tmp_path):
    path = _save(tmp_path, "relu", [helper.make_node("Relu", ["x"], ["y"])], [("x", [1])],
                 [("y", [1])])
    text = QUERY_HEAD + """(declare-network N1 (declare-input X float32 [1])
        (declare-output Y float32 [1]))
        (declare-network N2 (isomorphic-to N1) (declare-input X2 float16 [1])
        (declare-output Y2 float16 [1]))
        (assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X2[0] 2.0) (<= X2[0] 3.0)))
        (assert (<= Y2[0] Y[0]))"""
    assert verify_query(read_query(text), {"N1": path, "N2": path}).verdict == "unsat"
    # any other complaint of the reference parser still refuses the query
    from mipcert.errors import SpecificationError

    with pytest.raises(SpecificationError):
        read_query(text.replace("(<= Y2[0] Y[0])", "(<= Y3[0] Y[0])"))


def test_matmul_by_a_stacked_constant_is_encoded_exactly(tmp_path):
    """MatMul of x (1, 2) by a constant of shape (2, 2, 3) broadcasts the batch of unit
    probes to (2, n, 3), not (n, 1, 3); the encoder read it as the latter and answered
    'unsat' where onnxruntime reaches the output (found by fuzzing). Every output's MILP
    extremes over the box must equal the true ones (the map is linear: attained at corners)."""
    W = np.array([[[1, 0, 2], [0, 1, -1]], [[3, 1, 0], [-2, 0, 1]]], np.float64)
    path = _save(tmp_path, "mm3", [helper.make_node("MatMul", ["x", "W"], ["p"]),
                                   helper.make_node("Reshape", ["p", "shape"], ["y"])],
                 [("x", [1, 2])], [("y", [1, 6])], [("W", W)])
    import onnx
    model = onnx.load(str(path))      # the shape is an int64 initialiser
    model.graph.initializer.append(numpy_helper.from_array(np.array([1, 6], np.int64), "shape"))
    save(model, str(path))
    graph = load_graph(path)
    m = pyo.ConcreteModel()
    x = new_vars(m, "x", np.zeros(2), np.ones(2))
    y = _varray(GraphEncoder(m, graph).encode({"x": x.reshape((1, 2))})["y"]).reshape(-1)
    corners = np.array([[a, b] for a in (0.0, 1.0) for b in (0.0, 1.0)])
    truth = np.stack([(c[None, :] @ W).reshape(-1) for c in corners])      # (4, 6)
    for k in range(6):
        for sense, best in ((pyo.maximize, truth[:, k].max()), (pyo.minimize, truth[:, k].min())):
            m.obj = pyo.Objective(expr=y.items[k] + 0.0 * x.items[0], sense=sense)
            out = solve(m, "highs")
            m.del_component(m.obj)
            assert out.bound == pytest.approx(best, abs=1e-7), (k, sense)


def test_cast_to_half_precision_of_variable_data_is_refused(tmp_path):
    """Cast to float16 rounds (onnxruntime reaches 10.0 where the identity gives 9.998): it
    was read as the identity and a reachable query was refuted (found by fuzzing)."""
    from mipcert.errors import UnsupportedError

    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Cast", ["r"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)]
    graph = load_graph(_save(tmp_path, "half", nodes, [("x", [1, 1])], [("y", [1, 1])]))
    m = pyo.ConcreteModel()
    x = new_vars(m, "x", np.full(1, 0.5), np.ones(1))
    with pytest.raises(UnsupportedError, match="half precision"):
        GraphEncoder(m, graph).encode({"x": x.reshape((1, 1))})


def test_nodes_out_of_file_order_are_sorted(tmp_path):
    """onnxruntime loads a graph whose nodes are not in topological order; the interpreter
    raised KeyError (a traceback, found by fuzzing). It now runs them in dependency order,
    and a node reading a tensor nothing provides is a one-line ModelFileError."""
    from mipcert.errors import ModelFileError

    nodes = [helper.make_node("Relu", ["h"], ["y"]),
             helper.make_node("Add", ["x", "b"], ["h"])]
    graph = load_graph(_save(tmp_path, "order", nodes, [("x", [1, 2])], [("y", [1, 2])],
                             [("b", np.array([[0.5, -0.5]]))]))
    out = graph.output_values({"x": np.array([[0.25, 0.25]])})[0]
    np.testing.assert_allclose(out, [[0.75, 0.0]])
    broken = [helper.make_node("Relu", ["nowhere"], ["y"])]
    with pytest.raises(ModelFileError, match="nowhere"):
        load_graph(_save(tmp_path, "broken", broken, [("x", [1, 2])], [("y", [1, 2])]))
