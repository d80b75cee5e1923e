"""Bound propagation on the VNN-COMP networks (skipped when the benchmarks are absent)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dpllnn import load_network, load_spec
from dpllnn.bounds import batch_objective_bounds, compute_bounds, objective_bounds, pack
from dpllnn.bounds.report import bounds_report

ACAS = "vnncomp2021/acasxu"
MNIST = "vnncomp2022/mnist_fc"


def _load(root, net, spec):
    n = load_network(root / net)
    return n, load_spec(root / spec, n.n_inputs, n.n_outputs)


def _stack(case):
    return (np.vstack([dj.C for dj in case.disjuncts]), np.concatenate([dj.d for dj in case.disjuncts]))


def _check_samples(net, res, X, C, d):
    Z = np.concatenate(net.pre_activations(X), axis=1)
    Y = net.forward(X)
    tol = 1e-9
    assert np.all(Z >= res.lb - tol) and np.all(Z <= res.ub + tol)
    assert np.all(Y >= res.output_lb - tol) and np.all(Y <= res.output_ub + tol)
    obj = Y @ C.T - d
    assert np.all(obj >= res.obj_lower - tol) and np.all(obj <= res.obj_upper + tol)


def test_acas_prop1_all_methods_sound(bench_root):
    net, spec = _load(bench_root, f"{ACAS}/ACASXU_run2a_1_1_batch_2000.onnx", f"{ACAS}/prop_1.vnnlib")
    P = pack(net)
    case = spec.cases[0]
    C, d = _stack(case)
    rng = np.random.default_rng(0)
    X = rng.uniform(case.lb, case.ub, size=(4000, 5))
    unstable = {}
    for m in ("ibp", "symbolic", "crown", "alpha"):
        res = compute_bounds(P, case.lb, case.ub, None, m, C=C, d=d)
        _check_samples(net, res, X, C, d)
        unstable[m] = res.n_unstable
    assert unstable["crown"] <= unstable["ibp"]
    # a sub-box with a phase assignment taken from its centre, incremental from layer 3
    lb = case.lb + 0.45 * (case.ub - case.lb)
    ub = case.ub - 0.45 * (case.ub - case.lb)
    z_mid = np.concatenate(net.pre_activations(((lb + ub) / 2)[None]), axis=1)[0]
    base = compute_bounds(P, lb, ub, None, "crown")
    phase = np.where(base.unstable & (np.arange(P.n_relus) >= P.layer_offsets[3]),
                     np.where(z_mid >= 0, 1, -1), 0).astype(np.int8)
    inc = compute_bounds(P, lb, ub, phase, "crown", start_layer=3, prev=base, C=C, d=d)
    assert not inc.infeasible
    Xs = rng.uniform(lb, ub, size=(4000, 5))
    Zs = np.concatenate(net.pre_activations(Xs), axis=1)
    ok = np.all((Zs[:, phase == 1] >= 0), axis=1) & np.all((Zs[:, phase == -1] <= 0), axis=1)
    assert ok.any()
    _check_samples(net, inc, Xs[ok], C, d)


def test_acas_batch_symbolic(bench_root):
    net, spec = _load(bench_root, f"{ACAS}/ACASXU_run2a_1_1_batch_2000.onnx", f"{ACAS}/prop_1.vnnlib")
    P = pack(net)
    case = spec.cases[0]
    C, d = _stack(case)
    rng = np.random.default_rng(1)
    w = (case.ub - case.lb) / 8
    lbs = case.lb + rng.random((64, 5)) * (case.ub - case.lb - w)
    ubs = lbs + w
    low, unst = batch_objective_bounds(P, lbs, ubs, C, d, "symbolic", return_unstable=True)
    assert low.shape == (64, C.shape[0]) and unst.shape == (64,)
    for i in range(0, 64, 8):
        X = rng.uniform(lbs[i], ubs[i], size=(500, 5))
        assert np.all(net.forward(X) @ C.T - d >= low[i] - 1e-9)


def test_mnist_256x6_prop0_crown_proves_unsat(bench_root):
    """Reference answer (VNN-COMP 2022/2023): unsat; CROWN at the root already refutes every
    disjunct, and no sampled point contradicts the bounds."""
    net, spec = _load(bench_root, f"{MNIST}/onnx/mnist-net_256x6.onnx", f"{MNIST}/vnnlib/prop_0_0.03.vnnlib")
    P = pack(net)
    case = spec.cases[0]
    C, d = _stack(case)
    res = compute_bounds(P, case.lb, case.ub, None, "crown", C=C, d=d)
    assert np.all(res.obj_lower > 0)
    X = np.random.default_rng(2).uniform(case.lb, case.ub, size=(300, P.n_inputs))
    _check_samples(net, res, X, C, d)
    lo, _ = objective_bounds(P, case.lb, case.ub, res, C, d)
    np.testing.assert_array_equal(lo, res.obj_lower)


def test_bounds_report_json_shape(bench_root):
    net, spec = _load(bench_root, f"{ACAS}/ACASXU_run2a_1_1_batch_2000.onnx", f"{ACAS}/prop_1.vnnlib")
    rep = json.loads(json.dumps(bounds_report(net, spec, "crown")))
    assert set(rep) >= {"method", "time_s", "unstable", "layers", "cases"}
    assert len(rep["layers"]) == len(net.affines)
    assert len(rep["layers"][0]["lb"]) == 50
    dj = rep["cases"][0]["disjuncts"][0]
    assert len(dj["lower"]) == len(dj["upper"]) == spec.cases[0].disjuncts[0].C.shape[0]
    assert isinstance(rep["unstable"], int)
