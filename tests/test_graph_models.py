"""The random ONNX test models of graph_models.py are valid, run in onnxruntime and are deterministic."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from graph_models import all_models, ort_forward

MODELS = all_models(np.random.default_rng(0))


def _dims(vi) -> list[int]:
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


def test_names_unique_and_many():
    names = [n for n, _ in MODELS]
    assert len(names) == len(set(names))
    assert 25 <= len(names) <= 45


@pytest.mark.parametrize("name,model", MODELS, ids=[n for n, _ in MODELS])
def test_model_valid_and_runs(name, model):
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert len(model.graph.input) == 1 and len(model.graph.output) == 1
    in_vi, out_vi = model.graph.input[0], model.graph.output[0]
    assert in_vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_shape, out_shape = _dims(in_vi), _dims(out_vi)
    assert in_shape[0] == 1 and out_shape[0] == 1
    assert int(np.prod(in_shape)) < 200
    # ReLU count from inferred shapes
    inf = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {vi.name: _dims(vi) for vi in inf.graph.value_info}
    relus = sum(int(np.prod(shapes[n.output[0]])) for n in model.graph.node if n.op_type == "Relu")
    assert relus < 300
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.uniform(-1.0, 1.0, in_shape).astype(np.float32)
        y = ort_forward(model, x)
        assert y.dtype == np.float64
        assert list(y.shape) == out_shape
        assert np.all(np.isfinite(y))


def test_deterministic():
    again = all_models(np.random.default_rng(0))
    assert [n for n, _ in again] == [n for n, _ in MODELS]
    for (_, a), (_, b) in zip(MODELS, again):
        assert a.SerializeToString() == b.SerializeToString()
    other = all_models(np.random.default_rng(1))
    assert any(a.SerializeToString() != b.SerializeToString() for (_, a), (_, b) in zip(MODELS, other))


def test_empty_batch_forward_and_backward():
    """A batch of zero points (the attack may pass one) gives empty outputs and gradients."""
    from dpllnn.io.onnx_load import network_or_graph
    name, model = next((n, m) for n, m in MODELS if n.startswith("resnet"))
    g = network_or_graph(model, name)
    X = np.zeros((0, g.n_inputs))
    assert g.forward(X).shape == (0, g.n_outputs)
    Y, masks = g.forward_masks(X)
    assert Y.shape == (0, g.n_outputs)
    assert g.backward(masks, np.zeros((0, g.n_outputs))).shape == (0, g.n_inputs)
    assert all(z.shape[0] == 0 for z in g.pre_activations(X))
