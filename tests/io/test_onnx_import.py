"""ONNX import: every shared VNN-COMP network, hand-built graphs per op, and bad files."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from mipcert.errors import InputError, ModelFileError, UnsupportedError
from mipcert.io import load_network, load_onnx, onnx_forward
from mipcert.network import Affine, Dense, ReLU

RNG = np.random.default_rng(0)


def _agrees(net, path, n=6, scale=1.0):
    x = RNG.uniform(-scale, scale, size=(n, net.input_size))
    ref = onnx_forward(path, x)
    assert ref.shape == (n, net.output_size)
    assert np.max(np.abs(net.forward(x) - ref)) <= 1e-4 * (1 + np.max(np.abs(ref)))


def test_vnncomp_networks_match_onnxruntime(onnx_file):
    net = load_onnx(onnx_file)
    _agrees(net, onnx_file)
    assert all(n.replace("_", "").isalnum() for n in net.layer_names)


def test_vnncomp_shapes(vnncomp):
    acas = load_onnx(vnncomp / "acasxu" / "ACASXU_run2a_3_2_batch_2000.onnx")
    assert (acas.input_size, acas.output_size, acas.num_relus) == (5, 5, 300)
    assert isinstance(acas.layers[0], Affine)  # the Sub of the mean image
    mnist = load_network(vnncomp / "mnistfc" / "mnist-net_256x2.onnx")
    assert (mnist.input_size, mnist.output_size, mnist.num_relus) == (784, 10, 512)
    small = load_onnx(vnncomp / "test" / "test_small.onnx")  # MatMul(W, x), x of shape [1]
    assert [type(layer) for layer in small.layers] == [Dense, ReLU, Dense, ReLU, Dense]


def test_onnx_forward_batches_and_1d_input(vnncomp):
    path = vnncomp / "test" / "test_small.onnx"
    x = np.linspace(-1, 1, 5)[:, None]
    y = onnx_forward(path, x)
    assert y.shape == (5, 1) and y.dtype == np.float64
    assert np.allclose(onnx_forward(path, x[2]), y[2:3])


def test_conv_batchnorm_gemm(make_onnx):
    w = RNG.normal(size=(3, 2, 3, 3))
    inits = {"w": w, "cb": RNG.normal(size=3), "g": RNG.uniform(0.5, 2, 3), "beta": RNG.normal(size=3),
             "mean": RNG.normal(size=3), "var": RNG.uniform(0.5, 2, 3),
             "W": RNG.normal(size=(4, 3 * 3 * 2)), "b": RNG.normal(size=4)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "cb"], ["c"], name="conv 1", pads=[1, 0, 0, 1],
                         strides=[2, 2], dilations=[1, 2]),
        helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "W", "b"], ["y"], name="fc", transB=1, alpha=0.5, beta=2.0),
    ]
    path = make_onnx(nodes, inits, [1, 2, 6, 7], [1, 4])
    net = load_onnx(path)
    assert net.layer_names == ["conv_1", "relu", "flat", "fc"]  # BN folded into the conv
    assert net.input_shape == (2, 6, 7)
    _agrees(net, path, scale=3.0)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(make_onnx, auto_pad):
    inits = {"w": RNG.normal(size=(2, 1, 2, 3))}
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad, strides=[2, 1])]
    out = [1, 2, 3, 5] if auto_pad != "VALID" else [1, 2, 2, 3]
    path = make_onnx(nodes, inits, [1, 1, 5, 5], out)
    _agrees(load_onnx(path), path)


def test_elementwise_orders_reshape_squeeze(make_onnx):
    """c - x, x / c, c * x, Squeeze/Unsqueeze/Reshape/Identity and a Constant node."""
    inits = {"c": RNG.normal(size=(1, 6)), "d": RNG.uniform(1, 2, size=6),
             "W": RNG.normal(size=(3, 6)), "shape": np.array([0, -1], dtype=np.int64),
             "axes": np.array([0], dtype=np.int64)}
    nodes = [
        helper.make_node("Sub", ["c", "x"], ["a"]),
        helper.make_node("Div", ["a", "d"], ["b"]),
        helper.make_node("Constant", [], ["k"], value=helper.make_tensor("k", 1, [1], [3.0])),
        helper.make_node("Mul", ["k", "b"], ["m"]),
        helper.make_node("Squeeze", ["m", "axes"], ["s"]),
        helper.make_node("MatMul", ["W", "s"], ["h"]),      # weight on the left, 1-D x
        helper.make_node("Unsqueeze", ["h", "axes"], ["u"]),
        helper.make_node("Identity", ["u"], ["i"]),
        helper.make_node("Reshape", ["i", "shape"], ["y"]),
    ]
    path = make_onnx(nodes, inits, [1, 6], [1, 3])
    net = load_onnx(path)
    assert [type(layer).__name__ for layer in net.layers] == ["Affine", "Dense", "Reshape"]
    _agrees(net, path)


def test_constant_folding_of_shapes(make_onnx):
    """The torch ``x.view(x.size(0), -1)`` pattern: Shape → Gather → Unsqueeze → Concat."""
    inits = {"zero": np.array(0, dtype=np.int64), "minus1": np.array([-1], dtype=np.int64),
             "axes": np.array([0], dtype=np.int64), "W": RNG.normal(size=(8, 2))}
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["tgt"], axis=0),
        helper.make_node("Reshape", ["x", "tgt"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    path = make_onnx(nodes, inits, [1, 2, 2, 2], [1, 2])
    _agrees(load_onnx(path), path)


def test_old_onnx_initializers_among_inputs(vnncomp):
    # ACAS Xu files (IR 3) list every weight as a graph input as well
    import onnx

    model = onnx.load(str(vnncomp / "acasxu" / "ACASXU_run2a_4_5_batch_2000.onnx"))
    assert len(model.graph.input) > 1
    assert load_onnx(vnncomp / "acasxu" / "ACASXU_run2a_4_5_batch_2000.onnx").input_size == 5


# ------------------------------------------------------------------ bad input
def test_truncated_file(vnncomp, tmp_path):
    data = (vnncomp / "mnistfc" / "mnist-net_256x2.onnx").read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_onnx(bad)


def test_garbage_and_missing_file(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\xff not an onnx file at all" * 10)
    with pytest.raises(ModelFileError, match="garbage.onnx"):
        load_onnx(bad)
    with pytest.raises(ModelFileError, match="no such ONNX file"):
        load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(ModelFileError, match="unknown network file type"):
        load_network(tmp_path / "net.h5")


def test_unsupported_op_names_op_node_and_list(make_onnx):
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"], name="squash")]
    with pytest.raises(UnsupportedError, match=r"(?s)squash.*'Sigmoid'.*supported ops: .*Gemm"):
        load_onnx(make_onnx(nodes, {}, [1, 3], [1, 3]))


def test_nan_weights_name_the_file(make_onnx):
    W = np.ones((2, 3))
    W[0, 1] = np.nan
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    path = make_onnx(nodes, {"W": W.T}, [1, 3], [1, 2], name="nanny.onnx")
    with pytest.raises(InputError, match=r"nanny\.onnx.*'W'.*NaN"):
        load_onnx(path)


def test_two_inputs_and_branches_are_refused(make_onnx, tmp_path):
    import onnx
    from onnx import TensorProto

    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "two.onnx"))
    with pytest.raises(UnsupportedError, match="exactly one input"):
        load_onnx(tmp_path / "two.onnx")
    skip = [helper.make_node("Relu", ["x"], ["r"], name="r"),
            helper.make_node("Add", ["r", "x"], ["y"], name="residual")]
    with pytest.raises(UnsupportedError, match="skip connections"):
        load_onnx(make_onnx(skip, {}, [1, 2], [1, 2]))


def test_grouped_and_huge_convolutions_are_refused(make_onnx):
    grouped = [helper.make_node("Conv", ["x", "w"], ["y"], group=2)]
    with pytest.raises(UnsupportedError, match="group"):
        load_onnx(make_onnx(grouped, {"w": np.ones((2, 1, 1, 1))}, [1, 2, 3, 3], [1, 2, 3, 3]))
    huge = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    path = make_onnx(huge, {"w": np.ones((64, 3, 3, 3))}, [1, 3, 64, 64], [1, 64, 64, 64],
                     name="huge.onnx")
    with pytest.raises(UnsupportedError, match="dense .* matrix"):
        load_onnx(path)


def test_neg_and_1d_convolution_import_exactly(tmp_path):
    """Neg on data and a 1-D Conv (lifted to height 1), checked against onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mipcert.io import load_onnx, onnx_forward

    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 0], strides=[2]),
         helper.make_node("Neg", ["c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array([0.5, -0.25], np.float32), "b")])
    path = tmp_path / "conv1d.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    net = load_onnx(path)          # raises if it disagrees with onnxruntime on probes
    x = rng.uniform(-1, 1, size=(5, 21))
    assert np.allclose(net.forward(x), onnx_forward(str(path), x), atol=1e-5)
