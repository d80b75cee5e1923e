"""VNN-LIB 2.0 front end (dpllnn.io.vnnlib2), multi-network queries (dpllnn.query) and the
standard's solver interface (``dpllnn verify QUERY --network``, ``dpllnn supports``)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from dpllnn.cli import main
from dpllnn.errors import SpecError
from dpllnn.io.vnnlib import parse_vnnlib, parse_vnnlib_text
from dpllnn.io.vnnlib2 import is_vnnlib2, parse_query
from dpllnn.query import solve_query
from dpllnn.result import Verdict
from graph_models import conv_net, dense_chain, ort_forward
from vnnlib_convert import convert

EXAMPLES = Path(__file__).resolve().parents[1] / "dpllnn" / "examples"
HEAD = "(vnnlib-version <2.0>)\n"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def two_net_decl(t_in="float32", shape_in="[1,2]", shape_out="[1,2]", relation=""):
    return (HEAD + f"(declare-network f\n (declare-input X {t_in} {shape_in})\n"
            f" (declare-output Y float32 {shape_out})\n)\n"
            f"(declare-network g\n {relation}\n (declare-input X2 {t_in} {shape_in})\n"
            f" (declare-output Y2 float32 {shape_out})\n)\n")


def diff_query(eps=0.01, relation="", lo=-1.0, hi=1.0):
    """f and g on the same input in [lo, hi]^2; unsafe: some output differs by >= eps."""
    body = "".join(f"(assert (== X[0,{i}] X2[0,{i}]))\n(assert (>= X[0,{i}] {lo}))\n"
                   f"(assert (<= X[0,{i}] {hi}))\n" for i in range(2))
    body += ("(assert (or " + " ".join(
        f"(>= (- Y[0,{j}] Y2[0,{j}]) {eps}) (<= (- Y[0,{j}] Y2[0,{j}]) -{eps})"
        for j in range(2)) + "))\n")
    return two_net_decl(relation=relation) + body


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """A 2-8-8-2 float32 ReLU chain, and a copy with one output bias moved by 0.05."""
    d = tmp_path_factory.mktemp("nets")
    m = dense_chain(np.random.default_rng(3), sizes=(2, 8, 8, 2))
    a = d / "a.onnx"
    onnx.save(m, a)
    p = onnx.ModelProto()
    p.CopyFrom(m)
    last = [t for t in p.graph.initializer if t.dims == [2]][-1]
    arr = onnx.numpy_helper.to_array(last).copy()
    arr[0] += 0.05
    last.CopyFrom(onnx.numpy_helper.from_array(arr, last.name))
    b = d / "b.onnx"
    onnx.save(p, b)
    return str(a), str(b), m, p


# ---- parsing: boxes and DNF against hand-computed ones ----------------------------------------

def test_indexing_nested_and_or_several_asserts(tmp_path):
    text = HEAD + """; a comment
(declare-network f
    (declare-input  X float32 [1,3])   ; shape [1,3]: indexed X[0,j]
    (declare-output Y float64 [2])
)
(assert (and (>= X[0,0] -1.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 0.5)))
(assert (or (and (>= X[0,2] 0.0) (<= X[0,2] 1.0))
            (and (>= X[0,2] 2.0) (<= X[0,2] 3.0))))
(assert (or (<= Y[0] 0.5) (and (>= Y[1] 2.0) (<= (- Y[0] Y[1]) 1.5))))
(assert (or (<= (+ (* 2.0 Y[0]) Y[1]) 1.0) (>= Y[1] 7.0)))
"""
    q = parse_query(write(tmp_path, "q.vnnlib", text))
    assert (q.n_x, q.n_y) == (3, 2)
    assert [v.name for v in q.variables] == ["X", "Y"]
    assert q.variables[0].shape == (1, 3) and q.variables[1].dtype == "float64"
    assert len(q.cases) == 2
    assert np.array_equal(q.cases[0].lb, [-1, 0, 0]) and np.array_equal(q.cases[0].ub, [1, .5, 1])
    assert np.array_equal(q.cases[1].lb, [-1, 0, 2]) and np.array_equal(q.cases[1].ub, [1, .5, 3])
    # the two output asserts are conjoined: (A or (B and C)) and (D or E) -> 4 disjuncts
    A = ([0, 0, 0, 1, 0], 0.5)
    B = ([0, 0, 0, 0, -1], -2.0)
    C = ([0, 0, 0, 1, -1], 1.5)
    D = ([0, 0, 0, 2, 1], 1.0)
    E = ([0, 0, 0, 0, -1], -7.0)
    want = [[A, D], [A, E], [B, C, D], [B, C, E]]
    for case in q.cases:
        got = [sorted(zip(map(tuple, dj.C.tolist()), dj.d.tolist())) for dj in case.disjuncts]
        assert got == [sorted((tuple(map(float, r)), float(c)) for r, c in w) for w in want]


def test_compat_transform_joins_separate_disjunctive_asserts_wrongly(tmp_path):
    """(Y0 <= 0.5 or Y1 >= 2) and (Y0 <= -0.5 or Y1 >= 3): vnnlib.compat makes 4 single-row
    polytopes (their union, i.e. *or*); the standard conjoins asserts: 4 two-row disjuncts."""
    import vnnlib
    import vnnlib.compat

    text = HEAD + """(declare-network f (declare-input X real [2]) (declare-output Y real [2]))
(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (>= X[1] -1.0)) (assert (<= X[1] 1.0))
(assert (or (<= Y[0] 0.5) (>= Y[1] 2.0)))
(assert (or (<= Y[0] -0.5) (>= Y[1] 3.0)))
"""
    path = write(tmp_path, "q.vnnlib", text)
    compat = vnnlib.compat.transform(vnnlib.parse_query_file(path))
    q = parse_query(path)
    y = np.array([0.4, 0.0])          # Y0 <= 0.5 but neither Y0 <= -0.5 nor Y1 >= 3: not unsafe
    assert any(np.all(np.array(p.coeff_matrix) @ y <= np.array(p.rhs))
               for p in compat[0].output_constraints)            # compat: unsafe (wrong)
    v = np.concatenate([[0.5, 0.0], y])
    assert not any(dj.holds(v) for dj in q.cases[0].disjuncts)    # ours: not unsafe
    assert [dj.C.shape[0] for dj in q.cases[0].disjuncts] == [2, 2, 2, 2]
    for y_bad in ([-0.6, 0.0], [0.4, 3.5], [-1.0, 2.5]):              # really unsafe points
        assert any(dj.holds(np.concatenate([[0.5, 0.0], y_bad])) for dj in q.cases[0].disjuncts)


def test_version_header_decides_the_parser(tmp_path):
    one = write(tmp_path, "one.vnnlib", "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= Y_0 1e-5))\n")
    two = write(tmp_path, "two.vnnlib", "; comment first\n" + HEAD
                + "(declare-network f (declare-input X real [1]) (declare-output Y real [1]))\n"
                "(assert (>= X[0] 0.0))\n(assert (<= X[0] 1.0))\n(assert (>= Y[0] 0.00001))\n")
    assert not is_vnnlib2(one) and is_vnnlib2(two)
    s1, q2 = parse_vnnlib(one), parse_query(two)
    assert np.array_equal(s1.cases[0].lb, q2.cases[0].lb)
    assert np.array_equal(s1.cases[0].disjuncts[0].C, q2.cases[0].disjuncts[0].C[:, 1:])
    assert np.array_equal(s1.cases[0].disjuncts[0].d, q2.cases[0].disjuncts[0].d)


def test_linked_inputs_share_bounds_and_inputs_in_rows(tmp_path):
    text = two_net_decl(relation="(isomorphic-to f)") + """
(assert (== X[0,0] X2[0,0]))
(assert (>= X[0,0] -1.0)) (assert (<= X2[0,0] 0.5))
(assert (>= X[0,1] 0.0)) (assert (<= X[0,1] 1.0)) (assert (>= X2[0,1] 0.0)) (assert (<= X2[0,1] 2.0))
(assert (<= (+ X[0,1] Y2[0,0]) 3.0))
"""
    q = parse_query(write(tmp_path, "q.vnnlib", text))
    assert q.links == [(0, 2)]
    c = q.cases[0]
    assert np.array_equal(c.lb, [-1, 0, -1, 0]) and np.array_equal(c.ub, [.5, 1, .5, 2])
    rows = {(tuple(r), v) for r, v in zip(c.disjuncts[0].C.tolist(), c.disjuncts[0].d.tolist())}
    assert ((0, 1, 0, 0, 0, 0, 1, 0), 3.0) in rows          # X[0,1] + Y2[0,0] <= 3 (mixed)


def test_same_verdicts_as_1_0_on_the_example(tmp_path):
    for name, want in (("digits_fragile", Verdict.SAT),):
        src = EXAMPLES / f"{name}.vnnlib"
        q2 = write(tmp_path, f"{name}.vnnlib", convert(src.read_text(), 64, 10, "float32",
                                                       [1, 64], [1, 10]))
        import dpllnn
        net = dpllnn.load_network(str(EXAMPLES / "digits_mlp.onnx"))
        r1 = dpllnn.verify(net, dpllnn.load_spec(str(src), 64, 10), timeout_s=60, workers=1)
        r2 = solve_query(parse_query(q2), {"N": str(EXAMPLES / "digits_mlp.onnx")},
                         timeout_s=60, workers=1)
        assert r1.verdict is want and r2.verdict is want
        x = r2.assignment["X"]
        y = ort_forward(onnx.load(str(EXAMPLES / "digits_mlp.onnx")), x.reshape(1, 64))
        assert np.allclose(y.reshape(-1), r2.assignment["Y"])


@pytest.mark.parametrize("radius,want", [(0.002, Verdict.UNSAT), (0.5, Verdict.SAT)])
def test_same_verdicts_as_1_0_on_a_graph_net(tmp_path, radius, want):
    import dpllnn
    model = conv_net(np.random.default_rng(0), in_shape=(1, 4, 4), channels=(2,), n_out=3)
    path = str(tmp_path / "conv.onnx")
    onnx.save(model, path)
    net = dpllnn.load_network(path)
    assert getattr(net, "is_graph", False)
    x0 = np.random.default_rng(1).uniform(0, 1, 16)
    y0 = net.forward(x0)
    top = int(np.argmax(y0))
    lines = [f"(declare-const X_{i} Real)" for i in range(16)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(3)]
    for i in range(16):
        lines.append(f"(assert (>= X_{i} {float(x0[i] - radius)!r}))")
        lines.append(f"(assert (<= X_{i} {float(x0[i] + radius)!r}))")
    others = [j for j in range(3) if j != top]
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_{top}))" for j in others) + "))")
    text1 = "\n".join(lines) + "\n"
    text2 = convert(text1, 16, 3, "float32", [1, 1, 4, 4], [1, 3])
    r1 = dpllnn.verify(net, parse_vnnlib_text(text1, n_inputs=16, n_outputs=3), timeout_s=60,
                       workers=1)
    r2 = solve_query(parse_query(write(tmp_path, "q.vnnlib", text2)), {"N": path},
                     timeout_s=60, workers=1)
    if want is Verdict.SAT and r1.verdict is not Verdict.SAT:
        pytest.skip("radius 0.5 happened to be robust for this seed")
    assert r1.verdict is want and r2.verdict is want


# ---- multi-network queries --------------------------------------------------------------------

def test_net_against_itself_is_unsat(tmp_path, nets):
    a, _, _, _ = nets
    q = parse_query(write(tmp_path, "q.vnnlib", diff_query(relation="(equal-to f)")))
    r = solve_query(q, {"f": a}, timeout_s=60, workers=1)
    assert r.verdict is Verdict.UNSAT, r.result.reason
    assert r.result.stats["shared_inputs"] == 2


def test_net_against_perturbed_copy_is_sat_on_both_models(tmp_path, nets):
    a, b, ma, mb = nets
    q = parse_query(write(tmp_path, "q.vnnlib", diff_query(relation="(isomorphic-to f)")))
    r = solve_query(q, {"f": a, "g": b}, timeout_s=60, workers=1)
    assert r.verdict is Verdict.SAT
    xa, xb = r.assignment["X"], r.assignment["X2"]
    assert np.array_equal(xa, xb) and np.all(np.abs(xa) <= 1.0)
    ya, yb = ort_forward(ma, xa.reshape(1, 2)), ort_forward(mb, xb.reshape(1, 2))
    assert np.allclose(ya.reshape(-1), r.assignment["Y"]) and np.allclose(yb.reshape(-1),
                                                                           r.assignment["Y2"])
    assert np.max(np.abs(ya - yb)) >= 0.01


def test_unlinked_inputs_are_concatenated(tmp_path, nets):
    """Separate inputs, a constraint linking outputs: Y[0] of f at X >= Y2[0] of g at X2 + 100
    is unsat when the nets are bounded by less; a graph model takes the graph path."""
    a, _, _, _ = nets
    body = "".join(f"(assert (>= {v}[0,{i}] -1.0))\n(assert (<= {v}[0,{i}] 1.0))\n"
                   for v in ("X", "X2") for i in range(2))
    q = parse_query(write(tmp_path, "q.vnnlib", two_net_decl(relation="(equal-to f)") + body
                          + "(assert (>= (- Y[0,0] Y2[0,0]) 100.0))\n"))
    r = solve_query(q, {"f": a}, timeout_s=30, workers=1)
    assert r.verdict is Verdict.UNSAT and r.result.stats["shared_inputs"] == 0
