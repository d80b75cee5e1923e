"""ONNX export: round trips through onnxruntime in float32 and float64."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from conftest import all_onnx, benchmarks_root
from dpllnn.io.onnx_export import IR_VERSION, OPSET, to_onnx
from dpllnn.io.onnx_load import load_onnx
from dpllnn.network import Affine, Network
from dpllnn.validate import onnxruntime_forward

_ROOT = benchmarks_root()
_ALL = all_onnx(_ROOT) if _ROOT is not None else []
_ACAS = [p for p in _ALL if "ACASXU" in p.name]
# ten ACAS Xu networks spread over the 45, plus every other benchmark network
EXPORT_FILES = _ACAS[::5][:10] + [p for p in _ALL if "ACASXU" not in p.name]


def _points(net, n, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, net.n_inputs))


def _random_net(seed=0, sizes=(4, 7, 5, 3)):
    rng = np.random.default_rng(seed)
    affs = [Affine(rng.standard_normal((o, i)), rng.standard_normal(o))
            for i, o in zip(sizes[:-1], sizes[1:])]
    return Network(affs)


@pytest.mark.parametrize("path", EXPORT_FILES, ids=lambda p: p.name)
def test_benchmark_round_trip(tmp_path, path):
    net = load_onnx(path)
    out = tmp_path / "exp.onnx"
    to_onnx(net, out, input_shape=net.input_shape)
    lo = 0.0 if "mnist" in path.name else -1.0
    for x in _points(net, 30, lo=lo):
        y = net.forward(x)
        y_exp = onnxruntime_forward(str(out), x, net.input_shape)
        y_orig = onnxruntime_forward(str(path), x, net.input_shape)
        tol = 1e-5 * max(1.0, float(np.max(np.abs(y))))
        assert np.allclose(y_exp, y, rtol=1e-5, atol=tol)
        assert np.allclose(y_exp, y_orig, rtol=1e-5, atol=tol)
    back = load_onnx(out)
    assert back.hidden_sizes == net.hidden_sizes
    assert back.input_shape == tuple(net.input_shape)
    if getattr(net, "is_graph", False):  # a graph: same function up to float32 weights
        X = _points(net, 5, lo=lo)
        y = net.forward(X)
        np.testing.assert_allclose(back.forward(X), y, rtol=1e-5,
                                   atol=1e-5 * max(1.0, float(np.max(np.abs(y)))))
        return
    for a, b in zip(net.affines, back.affines):  # float32 weights: exact up to one rounding
        np.testing.assert_allclose(b.W, a.W, rtol=1e-7, atol=1e-30)


@pytest.mark.parametrize("path", EXPORT_FILES[:3] + EXPORT_FILES[-3:], ids=lambda p: p.name)
def test_benchmark_float64_export_is_exact(tmp_path, path):
    net = load_onnx(path)
    out = tmp_path / "exp64.onnx"
    to_onnx(net, out, dtype="float64")
    for x in _points(net, 20):
        y = net.forward(x)
        y_exp = onnxruntime_forward(str(out), x, (net.n_inputs,))
        assert np.allclose(y_exp, y, rtol=1e-12, atol=1e-12 * max(1.0, np.max(np.abs(y))))
    back = load_onnx(out)
    if getattr(net, "is_graph", False):  # float64 weights: the same function to rounding
        X = _points(net, 5)
        y = net.forward(X)
        np.testing.assert_allclose(back.forward(X), y, rtol=1e-12,
                                   atol=1e-12 * max(1.0, float(np.max(np.abs(y)))))
        return
    for a, b in zip(net.affines, back.affines):
        np.testing.assert_array_equal(b.W, a.W)
        np.testing.assert_array_equal(b.b, a.b)


@pytest.mark.parametrize("gemm", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_synthetic_round_trip(tmp_path, gemm, dtype):
    net = _random_net()
    out = tmp_path / "n.onnx"
    model = to_onnx(net, out, dtype=dtype, gemm=gemm)
    onnx.checker.check_model(model)
    assert model.ir_version == IR_VERSION
    assert [o.version for o in model.opset_import if o.domain == ""] == [OPSET]
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    ops = {n.op_type for n in model.graph.node}
    assert ops == ({"Gemm", "Relu"} if gemm else {"MatMul", "Add", "Relu"})
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for x in _points(net, 50):
        y = net.forward(x)
        assert np.allclose(onnxruntime_forward(str(out), x, (4,)), y, rtol=rtol,
                           atol=rtol * max(1.0, np.max(np.abs(y))))


def test_input_shape_adds_flatten(tmp_path):
    net = _random_net(sizes=(6, 3, 2))
    out = tmp_path / "s.onnx"
    model = to_onnx(net, out, input_shape=(1, 2, 3))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 2, 3] and model.graph.node[0].op_type == "Flatten"
    back = load_onnx(out)
    assert back.input_shape == (1, 2, 3)
    x = _points(net, 1)[0]
    assert np.allclose(onnxruntime_forward(str(out), x, (1, 2, 3)), net.forward(x), rtol=1e-5,
                       atol=1e-5)
    with pytest.raises(ValueError):
        to_onnx(net, input_shape=(5,))
    with pytest.raises(ValueError):
        to_onnx(net, dtype="float16")


def test_no_hidden_layer_and_in_memory(tmp_path):
    net = _random_net(sizes=(3, 2))
    model = to_onnx(net)  # no path: nothing written
    assert [n.op_type for n in model.graph.node] == ["Gemm"]
    assert not list(tmp_path.iterdir())


def test_atomic_write_leaves_no_temp_files(tmp_path):
    net = _random_net()
    out = tmp_path / "a.onnx"
    out.write_bytes(b"old")
    to_onnx(net, str(out))
    assert sorted(os.listdir(tmp_path)) == ["a.onnx"]
    assert load_onnx(out).hidden_sizes == net.hidden_sizes
    with pytest.raises(OSError):
        to_onnx(net, tmp_path / "missing_dir" / "b.onnx")
    assert sorted(os.listdir(tmp_path)) == ["a.onnx"]
