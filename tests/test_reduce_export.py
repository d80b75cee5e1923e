"""Pruned and sliced networks are drop-in replacements: the source's element type, names and
shapes, and the equivalence proof holds for the weights as written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from dpllnn.cli import main
from dpllnn.io.onnx_export import to_onnx
from dpllnn.io.onnx_load import load_onnx
from dpllnn.network import Affine, Network
from dpllnn.reduce.equiv import check_equivalence
from dpllnn.reduce.export import interface_of
from dpllnn.reduce.stable import load_region

EX = Path(__file__).resolve().parent.parent / "dpllnn" / "examples"
NET, ROBUST = EX / "digits_mlp.onnx", EX / "digits_robust.vnnlib"


def _source(tmp_path, in_dims, out_dims, dtype="float32", seed=0):
    """A float32 model with its own names and shapes, and a box region over its inputs."""
    rng = np.random.default_rng(seed)
    n_in, n_out = int(np.prod([d for d in in_dims if isinstance(d, int)])), 3
    sizes = [n_in, 12, 12, n_out]
    net = Network([Affine(rng.normal(size=(sizes[k + 1], sizes[k])),
                          rng.normal(size=sizes[k + 1]) + (1.5 if k == 0 else 0))
                   for k in range(3)])
    path = tmp_path / "src.onnx"
    to_onnx(net, path, dtype=dtype, input_name="obs", output_name="act",
            input_dims=in_dims, output_dims=out_dims)
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"lb": [-0.1] * n_in, "ub": [0.1] * n_in}))
    return path, box


@pytest.mark.parametrize("in_dims,out_dims", [([1, 4], [1, 3]), (["N", 1, 4], ["N", 3]),
                                              ([1, 2, 2], [1, 1, 3]), ([4], [3])])
def test_prune_keeps_the_source_interface(tmp_path, in_dims, out_dims, capsys):
    src, box = _source(tmp_path, in_dims, out_dims)
    out = tmp_path / "small.onnx"
    assert main(["prune", str(src), "--region", str(box), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["equivalence"]["verdict"] == "equivalent"
    assert interface_of(out) == interface_of(src)
    assert interface_of(out).dtype == "float32"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 2 for d in in_dims]       # symbolic batch: 2
    x = np.random.default_rng(1).uniform(-0.1, 0.1, shape).astype(np.float32)
    y_small = sess.run(None, {"obs": x})[0]
    y_src = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(
        None, {"obs": x})[0]
    assert y_small.dtype == np.float32 and y_small.shape == y_src.shape
    np.testing.assert_allclose(y_small, y_src, rtol=1e-4, atol=1e-5)


def test_prune_proof_holds_for_the_file_as_written(tmp_path, capsys):
    out = tmp_path / "small.onnx"
    assert main(["prune", str(NET), "--region", str(ROBUST), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert interface_of(out) == interface_of(NET)
    net, written = load_onnx(NET), load_onnx(out)       # an independent proof on the file
    boxes = load_region(ROBUST, net)
    er = check_equivalence(net, written, boxes, doc["equivalence"]["eps"], timeout_s=60)
    assert doc["equivalence"]["verdict"] == er.verdict == "equivalent"


def test_dtype_float64_stays_an_option(tmp_path):
    out = tmp_path / "small64.onnx"
    assert main(["prune", str(NET), "--region", str(ROBUST), "-o", str(out),
                 "--dtype", "float64"]) == 0
    i = interface_of(out)
    assert i.dtype == "float64" and (i.input_name, i.output_name) == ("input", "output")


def test_slices_keep_the_source_interface(tmp_path):
    d = tmp_path / "slices"
    assert main(["slice", str(NET), "--region", str(ROBUST), "--max-regions", "2",
                 "-o", str(d)]) == 0
    man = json.loads((d / "manifest.json").read_text())
    assert man["dtype"] == "float32"
    for r in man["regions"]:
        assert interface_of(d / r["onnx"]) == interface_of(NET)
        assert r["proved"]
