"""ONNX import: benchmark networks and synthetic per-operator models agree with onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import all_onnx, benchmarks_root
from dpllnn.errors import OnnxError, UnsupportedOperator
from dpllnn.io.onnx_load import load_onnx
from dpllnn.io.onnx_import import network_from_model
from dpllnn.validate import onnxruntime_forward

_ROOT = benchmarks_root()
BENCH_FILES = all_onnx(_ROOT) if _ROOT is not None else []


def _close(y, y_ref, rtol=1e-5):
    y, y_ref = np.asarray(y), np.asarray(y_ref)
    return np.allclose(y, y_ref, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(y_ref)))))


def _input_range(path) -> tuple[float, float]:
    return (0.0, 1.0) if "mnist" in str(path) else (-1.0, 1.0)


def _agree(net, path, n_points=100, seed=0, lo=-1.0, hi=1.0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(lo, hi, size=(n_points, net.n_inputs))
    Y = net.forward(X)
    assert Y.shape == (n_points, net.n_outputs)
    for x, y in zip(X, Y):
        y_ort = onnxruntime_forward(str(path), x, net.input_shape)
        assert _close(y, y_ort), (x, y, y_ort)


# ---- every benchmark network ----------------------------------------------------------------
@pytest.mark.parametrize("path", BENCH_FILES, ids=lambda p: p.name)
def test_benchmark_forward_matches_onnxruntime(path):
    net = load_onnx(path)
    assert net.source == str(path)
    if getattr(net, "is_graph", False):   # conv / residual nets: the graph model
        assert len(net.relu_nodes) == net.n_hidden_layers and net.n_relus > 0
    else:
        assert len(net.affines) == net.n_hidden_layers + 1
    assert int(np.prod(net.input_shape)) == net.n_inputs
    _agree(net, path, lo=_input_range(path)[0], hi=_input_range(path)[1])


def test_benchmarks_present(bench_root):
    assert len(all_onnx(bench_root)) >= 59


def test_acasxu_shapes(bench_root):
    path = next(bench_root.rglob("ACASXU_run2a_1_1_batch_2000.onnx"))
    net = load_onnx(path)
    assert net.input_shape == (1, 1, 5) and net.output_shape == (5,)
    assert net.hidden_sizes == [50] * 6  # Sub(input, zeros) + Flatten folded into layer 0


def test_mnist_and_dynamic_batch_shapes(bench_root):
    mnist = load_onnx(next(bench_root.rglob("mnist-net_256x2.onnx")))
    assert mnist.input_shape == (784, 1) and mnist.output_shape == (10,)
    dubins = load_onnx(next(bench_root.rglob("dubinsrejoin.onnx")))  # input ['unk__6', 8]
    assert dubins.input_shape == (8,) and dubins.meta["onnx_input_dims"][0] is None


# ---- synthetic models -----------------------------------------------------------------------
def _model(nodes, in_shape, out_name="y", inits=(), opset=13, in_name="x", ir=8):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32)
                                             if np.asarray(v).dtype.kind == "f"
                                             else np.asarray(v), k) for k, v in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def _check(tmp_path, model, name="m", lo=-1.0, hi=1.0, n_points=30):
    p = tmp_path / f"{name}.onnx"
    onnx.save(model, p)
    net = load_onnx(p)
    _agree(net, p, n_points=n_points, lo=lo, hi=hi)
    return net


R = np.random.default_rng(42)


def _r(*shape):
    return R.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("transA,transB,alpha,beta", [(0, 0, 1.0, 1.0), (0, 1, 0.5, 2.0),
                                                      (1, 1, -1.5, 0.25), (1, 0, 2.0, 0.0)])
def test_gemm_attributes(tmp_path, transA, transB, alpha, beta):
    W1 = _r(3, 4) if transB else _r(4, 3)
    nodes = []
    if transA:  # Gemm needs A^T: feed a [4,1] input
        shape = [4, 1]
    else:
        shape = [1, 4]
    nodes.append(helper.make_node("Gemm", ["x", "W1", "c1"], ["h"], transA=transA, transB=transB,
                                  alpha=alpha, beta=beta))
    nodes += [helper.make_node("Relu", ["h"], ["r"]),
              helper.make_node("Gemm", ["r", "W2"], ["y"], transB=1)]
    m = _model(nodes, shape, inits=[("W1", W1), ("c1", _r(1, 3)), ("W2", _r(2, 3))])
    net = _check(tmp_path, m)
    assert net.hidden_sizes == [3]


def test_matmul_add_and_constant_either_side(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]),
             helper.make_node("Add", ["bias", "m"], ["a"]),          # constant on the left
             helper.make_node("Sub", ["a", "s"], ["s1"]),
             helper.make_node("Sub", ["s", "s1"], ["s2"]),           # constant - tensor
             helper.make_node("Mul", ["s2", "k"], ["m1"]),
             helper.make_node("Mul", ["k", "m1"], ["m2"]),           # constant * tensor
             helper.make_node("Div", ["m2", "k"], ["d"]),
             helper.make_node("Relu", ["d"], ["r"]),
             helper.make_node("MatMul", ["W2", "rT"], ["yT"]),       # constant @ tensor
             helper.make_node("Transpose", ["yT"], ["y"])]
    nodes.insert(8, helper.make_node("Transpose", ["r"], ["rT"]))
    k = (np.abs(_r(6)) + 0.5)
    m = _model(nodes, [1, 5], inits=[("W", _r(5, 6)), ("bias", _r(6)), ("s", _r(1, 6)),
                                     ("k", k), ("W2", _r(3, 6))])
    net = _check(tmp_path, m)
    assert net.hidden_sizes == [6] and net.n_outputs == 3


def test_column_vector_convention(tmp_path):
    """test_small style: 1-D input, ``MatMul(W, x)``."""
    nodes = [helper.make_node("MatMul", ["W", "x"], ["m"]), helper.make_node("Add", ["m", "b"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("MatMul", ["r", "V"], ["y"])]
    m = _model(nodes, [3], inits=[("W", _r(4, 3)), ("b", _r(4)), ("V", _r(4, 2))])
    net = _check(tmp_path, m)
    assert net.input_shape == (3,)


def test_batchnorm_dropout_identity_constant(tmp_path):
    c = 4
    nodes = [helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(_r(c, 3))),
             helper.make_node("Gemm", ["x", "W"], ["g"], transB=1),
             helper.make_node("BatchNormalization", ["g", "sc", "bb", "mu", "var"], ["bn"],
                              epsilon=1e-3),
             helper.make_node("Dropout", ["bn", "ratio"], ["dr"]),
             helper.make_node("Identity", ["dr"], ["id"]),
             helper.make_node("Relu", ["id"], ["r"]),
             helper.make_node("Constant", [], ["kk"], value_float=3.0),
             helper.make_node("Mul", ["r", "kk"], ["y"])]
    var = np.abs(_r(c)) + 0.1
    m = _model(nodes, [1, 3], inits=[("sc", _r(c)), ("bb", _r(c)), ("mu", _r(c)), ("var", var),
                                     ("ratio", np.float32(0.5))])
    net = _check(tmp_path, m)
    assert net.hidden_sizes == [c]


def test_batchnorm_on_images_and_reshape(tmp_path):
    nodes = [helper.make_node("BatchNormalization", ["x", "sc", "bb", "mu", "var"], ["bn"]),
             helper.make_node("Reshape", ["bn", "shp"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W"], ["y"], transB=1)]
    m = _model(nodes, [1, 2, 2, 3], inits=[("sc", _r(2)), ("bb", _r(2)), ("mu", _r(2)),
                                           ("var", np.abs(_r(2)) + 0.1),
                                           ("shp", np.array([0, -1], dtype=np.int64)),
                                           ("W", _r(5, 12))])
    net = _check(tmp_path, m)
    assert net.n_hidden_layers == 0 and net.input_shape == (2, 2, 3)


@pytest.mark.parametrize("opset", [11, 13])
def test_flatten_squeeze_unsqueeze(tmp_path, opset):
    if opset >= 13:
        sq = helper.make_node("Squeeze", ["u", "ax1"], ["s"])
        usq = helper.make_node("Unsqueeze", ["f", "ax1"], ["u"])
    else:
        sq = helper.make_node("Squeeze", ["u"], ["s"], axes=[1])
        usq = helper.make_node("Unsqueeze", ["f"], ["u"], axes=[1])
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1), usq, sq,
             helper.make_node("Gemm", ["s", "W"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["y"])]
    m = _model(nodes, [1, 2, 3], inits=[("ax1", np.array([1], dtype=np.int64)), ("W", _r(4, 6))],
               opset=opset)
    net = _check(tmp_path, m, name=f"sq{opset}")
    assert net.input_shape == (2, 3) and net.hidden_sizes == [4]


def test_relu_first_and_last(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r0"]),
             helper.make_node("MatMul", ["r0", "W"], ["m"]),
             helper.make_node("Relu", ["m"], ["r1"]),
             helper.make_node("Relu", ["r1"], ["y"])]           # two ReLUs in a row
    m = _model(nodes, [1, 3], inits=[("W", _r(3, 4))])
    net = _check(tmp_path, m)
    assert net.hidden_sizes == [3, 4, 4]
    np.testing.assert_array_equal(net.affines[0].W, np.eye(3))
    np.testing.assert_array_equal(net.affines[-1].W, np.eye(4))


def test_ir3_initializers_listed_as_inputs(tmp_path):
    W = _r(5, 4)
    nodes = [helper.make_node("Sub", ["x", "zeros"], ["s"]),
             helper.make_node("MatMul", ["s", "W"], ["y"])]
    m = _model(nodes, [1, 5], inits=[("zeros", np.zeros((1, 5))), ("W", W)], opset=8, ir=3)
    m.graph.input.insert(0, helper.make_tensor_value_info("zeros", TensorProto.FLOAT, [1, 5]))
    m.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [5, 4]))
    net = network_from_model(m, "mem.onnx")
    assert net.input_name == "x"
    np.testing.assert_allclose(net.affines[0].W, W.T.astype(np.float64))


def test_dynamic_batch_dimension(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    m = _model(nodes, ["N", 3], inits=[("W", _r(3, 2))])
    net = _check(tmp_path, m)
    assert net.input_shape == (3,) and net.output_shape == (2,)


def test_dead_branch_ignored(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]),
             helper.make_node("Sigmoid", ["x"], ["unused"])]
    m = _model(nodes, [1, 3], inits=[("W", _r(3, 2))])
    _check(tmp_path, m)


# ---- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Softmax"])
def test_unsupported_activation(tmp_path, op):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node(op, ["h"], ["y"], name="act1")]
    p = tmp_path / "a.onnx"
    onnx.save(_model(nodes, [1, 3], inits=[("W", _r(3, 2))]), p)
    with pytest.raises(UnsupportedOperator) as ei:
        load_onnx(p)
    assert ei.value.op == op and ei.value.node == "act1"
    assert op in str(ei.value) and "act1" in str(ei.value) and str(p) in str(ei.value)


def test_unsupported_conv3d_unnamed(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "K"], ["y"], kernel_shape=[3, 3, 3])]
    p = tmp_path / "c.onnx"
    onnx.save(_model(nodes, [1, 1, 5, 5, 5], inits=[("K", _r(2, 1, 3, 3, 3))]), p)
    with pytest.raises(UnsupportedOperator) as ei:
        load_onnx(p)
    assert ei.value.op == "Conv" and ei.value.node == "#0" and "3-D" in str(ei.value)


def test_conv_loads_as_graph(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "K"], ["y"], kernel_shape=[3, 3])]
    p = tmp_path / "c.onnx"
    onnx.save(_model(nodes, [1, 1, 5, 5], inits=[("K", _r(2, 1, 3, 3))]), p)
    net = load_onnx(p)
    assert net.is_graph and net.n_inputs == 25 and net.n_outputs == 2 * 3 * 3
    _agree(net, p, lo=-1.0, hi=1.0)


def test_nonlinear_product_and_skip_connection(tmp_path):
    prod = [helper.make_node("Mul", ["x", "x"], ["y"], name="sq")]
    with pytest.raises(UnsupportedOperator, match="sq"):
        network_from_model(_model(prod, [1, 3]), "p.onnx")
    skip = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"],
                                                                   name="res")]
    with pytest.raises(UnsupportedOperator, match="res"):
        network_from_model(_model(skip, [1, 3]), "s.onnx")


def test_shape_mismatch_names_node(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    with pytest.raises(OnnxError, match="mm"):
        network_from_model(_model(nodes, [1, 3], inits=[("W", _r(4, 2))]), "bad.onnx")


def test_missing_empty_truncated_garbage(tmp_path):
    with pytest.raises(OnnxError, match="not found"):
        load_onnx(tmp_path / "nope.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(OnnxError, match="empty"):
        load_onnx(empty)
    good = tmp_path / "good.onnx"
    onnx.save(_model([helper.make_node("MatMul", ["x", "W"], ["y"])], [1, 30],
                     inits=[("W", _r(30, 20))]), good)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not an onnx file\n" * 3)
    for p in (trunc, garbage):
        with pytest.raises(OnnxError) as ei:
            load_onnx(p)
        assert str(p) in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(OnnxError, match="directory"):
        load_onnx(tmp_path)


def test_no_nodes_and_multiple_inputs():
    g = helper.make_graph([], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])])
    with pytest.raises(OnnxError, match="no nodes"):
        network_from_model(helper.make_model(g), "e.onnx")
    m = _model([helper.make_node("Add", ["x", "x2"], ["y"])], [1, 2])
    m.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 2]))
    with pytest.raises(OnnxError, match="one graph input"):
        network_from_model(m, "two.onnx")


def test_pytorch_dynamic_flatten_pattern(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, plus Cast, Neg and a tensor Concat."""
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["tgt"], axis=0),
             helper.make_node("Reshape", ["x", "tgt"], ["flat"]),
             helper.make_node("Cast", ["flat"], ["fc"], to=TensorProto.FLOAT),
             helper.make_node("Neg", ["fc"], ["ng"]),
             helper.make_node("Concat", ["ng", "fc", "pad"], ["cat"], axis=1),
             helper.make_node("Gemm", ["cat", "W"], ["y"], transB=1)]
    m = _model(nodes, [1, 2, 3], inits=[("zero", np.array(0, dtype=np.int64)),
                                        ("ax0", np.array([0], dtype=np.int64)),
                                        ("minus1", np.array([-1], dtype=np.int64)),
                                        ("pad", _r(1, 2)), ("W", _r(4, 14))])
    net = _check(tmp_path, m)
    assert net.n_hidden_layers == 0 and net.n_inputs == 6


def test_missing_external_data(tmp_path):
    m = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [1, 3], inits=[("W", _r(3, 2))])
    p = tmp_path / "ext.onnx"
    onnx.save(m, p, save_as_external_data=True, location="ext.bin", size_threshold=0)
    assert load_onnx(p).n_outputs == 2
    (tmp_path / "ext.bin").unlink()
    with pytest.raises(OnnxError, match="ext.onnx"):
        load_onnx(p)


def test_unsorted_nodes_are_ordered(tmp_path):
    nodes = [helper.make_node("Gemm", ["r", "W2"], ["y"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["x", "W1"], ["h"], transB=1)]
    m = _model(nodes, [1, 3], inits=[("W1", _r(4, 3)), ("W2", _r(2, 4))])
    assert network_from_model(m, "u.onnx").hidden_sizes == [4]
