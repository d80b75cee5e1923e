"""Build the bundled example: a small ReLU MLP on scikit-learn's digits data, and two properties.

Run ``python -m dpllnn.examples.make_example`` to regenerate the committed files:

- ``digits_mlp.onnx``: 64 inputs (8x8 image, pixels scaled to [0, 1]) -> 16 -> 16 -> 10 logits,
  trained with ``sklearn.neural_network.MLPClassifier`` (ReLU, fixed seed), exported with
  ``onnx.helper`` as MatMul/Add/Relu nodes (IR version 8, opset 13).
- ``digits_robust.vnnlib``: L-inf ball of radius 0.15 around a correctly classified test image;
  unsafe set = some other class scores at least as high as the true class (expected ``unsat``).
- ``digits_fragile.vnnlib``: the same image with radius 0.3 (expected ``sat``).

Needs scikit-learn (the ``test`` extra); the package itself does not import this module.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def train(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))
    tr, te = idx[:1400], idx[1400:]
    clf = MLPClassifier(hidden_layer_sizes=(16, 16), activation="relu", max_iter=600,
                        random_state=seed, alpha=1e-3)
    clf.fit(X[tr], y[tr])
    return clf, X[te], y[te], clf.score(X[te], y[te])


def export(clf, path: Path) -> None:
    nodes, inits = [], []
    prev = "input"
    n = len(clf.coefs_)
    for k, (W, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        inits.append(numpy_helper.from_array(W.astype(np.float32), f"W{k}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{k}"))
        nodes.append(helper.make_node("MatMul", [prev, f"W{k}"], [f"mm{k}"], name=f"matmul{k}"))
        out = "output" if k == n - 1 else f"z{k}"
        nodes.append(helper.make_node("Add", [f"mm{k}", f"b{k}"], [out], name=f"add{k}"))
        if k < n - 1:
            nodes.append(helper.make_node("Relu", [out], [f"a{k}"], name=f"relu{k}"))
            prev = f"a{k}"
    graph = helper.make_graph(
        nodes, "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="dpllnn.examples.make_example")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def robustness_vnnlib(x: np.ndarray, label: int, eps: float, n_out: int = 10) -> str:
    lines = [f"; digits MLP: L-inf radius {eps} around a test image of class {label}",
             "; unsafe: some other class scores >= the true class", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(x.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    lines.append("")
    for i, v in enumerate(x):
        lo, hi = max(0.0, v - eps), min(1.0, v + eps)
        lines.append(f"(assert (<= X_{i} {hi:.9f}))")
        lines.append(f"(assert (>= X_{i} {lo:.9f}))")
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(n_out) if j != label)
    lines.append(f"(assert (or {others}))")
    return "\n".join(lines) + "\n"


def main() -> None:
    clf, Xte, yte, acc = train()
    export(clf, HERE / "digits_mlp.onnx")
    probs = clf.predict_proba(Xte)
    # the most confidently and correctly classified test image
    ok = np.where(clf.predict(Xte) == yte)[0]
    i = ok[np.argmax(probs[ok, yte[ok]])]
    x, label = Xte[i], int(yte[i])
    (HERE / "digits_robust.vnnlib").write_text(robustness_vnnlib(x, label, 0.15))
    (HERE / "digits_fragile.vnnlib").write_text(robustness_vnnlib(x, label, 0.3))
    print(f"test accuracy {acc:.3f}; image {i} of class {label}; files written to {HERE}")


if __name__ == "__main__":
    main()
