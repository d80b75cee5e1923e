"""dpllnn.verify on conv / residual / pooling graphs (dpllnn.model.graph.Graph).

Oracles: tiny conv chains are lowered with ``network_from_graph`` and decided exhaustively
(tests/naive.py).  Non-chain graphs (residual, maxpool) are checked by dense sampling: a ``sat``
must carry a counterexample the graph's float64 forward satisfies, an ``unsat`` must survive
20000 random samples.  One shared VNN-COMP sample (verivital avgpool) checks known verdicts.
"""
from __future__ import annotations

import numpy as np
import pytest

import dpllnn
from dpllnn.io.onnx_load import network_or_graph
from dpllnn.model.graph import Graph
from dpllnn.model.lower import network_from_graph
from dpllnn.result import Verdict
from dpllnn.spec import Case, Disjunct, Spec
from graph_models import conv_net, pool_net, resnet
from naive import exhaustive_decide, spec_margins

from conftest import benchmarks_root

MARGIN = 1e-6
UNDECIDED = (Verdict.UNKNOWN, Verdict.TIMEOUT)

# (channels, kernel, stride, pads): each gives <= 10 ReLUs on a 1x4x4 input
_CONV_SHAPES = [
    ((2,), 3, 1, (0, 0, 0, 0)),          # 2x2x2 = 8
    ((2,), 2, 2, (0, 0, 0, 0)),          # 8
    ((2,), 3, 2, (1, 1, 1, 1)),          # 8
    ((2, 2), 2, 2, (0, 0, 0, 0)),        # 8 + 2
    ((2, 2), 3, 2, (1, 1, 1, 1)),        # 8 + 2
]


def _random_spec(rng, g, n_samples=512):
    """One case, one disjunct C @ y <= d with d near the sampled range of C @ y."""
    n = g.n_inputs
    centre = rng.uniform(-1, 1, n)
    half = rng.uniform(0.05, 0.6, n)
    lb, ub = centre - half, centre + half
    Y = g.forward(lb + rng.random((n_samples, n)) * (ub - lb))
    m = int(rng.integers(1, 3))
    C = rng.normal(size=(m, g.n_outputs))
    proj = Y @ C.T
    q = rng.uniform(-15, 10)   # percentile; below 0 -> threshold under the sampled minimum
    lo, hi = proj.min(0), proj.max(0)
    d = np.percentile(proj, max(q, 0), axis=0) + min(q, 0) / 100 * (hi - lo)
    return Spec([Case(lb, ub, [Disjunct(C, d)])], n, g.n_outputs)


def _check_sat(g, spec, res):
    assert res.counterexample is not None, "sat without a counterexample"
    x = np.asarray(res.counterexample.x, np.float64).reshape(-1)
    case = spec.cases[0]
    assert case.contains(x), "counterexample outside the input box"
    y = g.forward(x)
    assert any(dj.holds(y) for dj in case.disjuncts), \
        f"counterexample does not satisfy the property: y={y}"


def _sampled_violation(g, spec, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    case = spec.cases[0]
    X = case.lb + rng.random((n, g.n_inputs)) * (case.ub - case.lb)
    Y = g.forward(X)
    return bool(np.any(np.min([dj.margin(Y) for dj in case.disjuncts], axis=0) <= 0))


def _graph(model, tmp_path, name):
    import onnx

    path = str(tmp_path / f"{name}.onnx")   # the validator replays `source` in onnxruntime
    onnx.save(model, path)
    g = network_or_graph(model, path)
    assert isinstance(g, Graph), f"{name}: expected a Graph, got {type(g).__name__}"
    return g


def test_conv_chain_matches_exhaustive(tmp_path):
    decided, total, verdicts = 0, 0, []
    for seed in range(15):
        rng = np.random.default_rng(7000 + seed)
        channels, k, s, pads = _CONV_SHAPES[seed % len(_CONV_SHAPES)]
        model = conv_net(rng, in_shape=(1, 4, 4), channels=channels, kernel=k, stride=s,
                         pads=pads, n_out=int(rng.integers(2, 4)))
        g = _graph(model, tmp_path, f"conv_{seed}")
        net = network_from_graph(g)
        assert net.n_relus == g.n_relus <= 14
        spec = _random_spec(rng, g)
        margins = spec_margins(net, spec)
        if min(abs(t) for t in margins) <= MARGIN:   # oracle on an LP-tolerance boundary
            continue
        total += 1
        truth = "sat" if min(margins) <= 0 else "unsat"
        res = dpllnn.verify(g, spec, timeout_s=20, workers=1)
        verdicts.append((seed, truth, res.verdict.value))
        if res.verdict in UNDECIDED:
            continue
        decided += 1
        if res.verdict is Verdict.SAT:
            assert truth == "sat", f"seed {seed}: verify sat, oracle unsat (margins {margins})"
            _check_sat(g, spec, res)
        else:
            assert res.verdict is Verdict.UNSAT
            assert truth == "unsat", f"seed {seed}: verify unsat, oracle sat (margins {margins})"
    assert total >= 10, f"too few usable random problems: {total}"
    # with the graph LP deciding complete assignments the search is complete on these nets
    assert decided == total, f"only {decided}/{total} decided: {verdicts}"


def _check_nonchain(g, spec, res):
    try:
        net = network_from_graph(g)
    except ValueError:
        net = None
    if net is not None and net.n_relus <= 14:
        margins = spec_margins(net, spec)
        if min(abs(t) for t in margins) > MARGIN and res.verdict not in UNDECIDED:
            truth, _ = exhaustive_decide(net, spec)
            assert res.verdict.value == truth, f"verify {res.verdict}, oracle {truth}"
    if res.verdict is Verdict.SAT:
        _check_sat(g, spec, res)
    elif res.verdict is Verdict.UNSAT:
        assert not _sampled_violation(g, spec), "unsat, but a random sample violates the property"


@pytest.mark.parametrize("kind", ["residual", "maxpool"])
def test_nonchain_graphs(kind, tmp_path):
    seen = set()
    for seed in range(6):
        rng = np.random.default_rng(8100 + seed)
        if kind == "residual":
            model = resnet(rng, in_shape=(1, 2, 2), width=1, blocks=1, n_out=2)
        else:
            model = pool_net(rng, kind="max", in_shape=(1, 2, 2), channels=2, n_out=2)
        g = _graph(model, tmp_path, f"{kind}_{seed}")
        assert g.n_relus <= 16
        spec = _random_spec(rng, g)
        res = dpllnn.verify(g, spec, timeout_s=10, workers=1)
        _check_nonchain(g, spec, res)
        seen.add(res.verdict)
        if Verdict.SAT in seen and Verdict.UNSAT in seen:
            break
    assert seen - set(UNDECIDED), f"{kind}: never decided"


_AVG = "vnncomp2021/verivital"


@pytest.mark.parametrize("prop,expected", [("prop_0_0.02", Verdict.UNSAT),
                                           ("prop_10_0.04", Verdict.SAT)])
def test_verivital_avgpool_sample(prop, expected):
    root = benchmarks_root()
    if root is None:
        pytest.skip("shared VNN-COMP benchmarks not found (set DPLLNN_BENCHMARKS or put ../shared "
                    "beside the repo)")
    from dpllnn.io.onnx_load import load_onnx
    from dpllnn.io.vnnlib import parse_vnnlib
    from dpllnn.search.verify import verify

    folder = root / _AVG
    onnx_path = folder / "Convnet_avgpool.onnx"
    spec_path = folder / "specs" / "avgpool_specs" / f"{prop}.vnnlib"
    if not (onnx_path.is_file() and spec_path.is_file()):
        pytest.skip(f"{onnx_path} or {spec_path} missing")
    net = load_onnx(onnx_path)
    spec = parse_vnnlib(spec_path, n_inputs=net.n_inputs, n_outputs=net.n_outputs)
    res = verify(net, spec, timeout_s=60, workers=1)
    assert res.verdict is expected, f"{prop}: {res.verdict} ({getattr(res, 'reason', '')})"
    if expected is Verdict.SAT:
        x = np.asarray(res.counterexample.x, np.float64).reshape(-1)
        y = net.forward(x)
        assert any(c.contains(x) and any(dj.holds(y) for dj in c.disjuncts) for c in spec.cases)


def test_graph_root_bounds_stop_at_the_deadline(tmp_path):
    """A limit shorter than the root bound pass of a graph ends in ``timeout`` near the limit
    (the pass stops between nodes), not long after it: this net's root CROWN pass takes ~46 s,
    the run with a 0.05 s limit ~3 s (one node's rows are not interrupted)."""
    import time

    rng = np.random.default_rng(5)
    model = resnet(rng, in_shape=(3, 16, 16), width=8, blocks=3, n_out=10)
    g = _graph(model, tmp_path, "deadline_resnet")
    spec = _random_spec(rng, g, n_samples=16)
    t = time.monotonic()
    res = dpllnn.verify(g, spec, timeout_s=0.05, workers=1, falsify_s=0.0)
    took = time.monotonic() - t
    assert res.verdict is Verdict.TIMEOUT, res.verdict
    assert took < 12.0, took
