"""The exact MILP of a graph (dpllnn.lp.graph_milp) and the CDCL root MILP stage
(dpllnn.search.root_milp): against the exhaustive oracle on tiny conv nets and dense chains,
against sampled points on residual and max-pool graphs, and through verify."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest

import dpllnn
from dpllnn.bounds import alpha_crown, compute_bounds, pack
from dpllnn.io.onnx_load import network_or_graph
from dpllnn.lp.graph_milp import GraphMILP, milp_size
from dpllnn.model.lower import graph_from_network, network_from_graph
from dpllnn.result import Verdict
from dpllnn.search.root_milp import unstable_depth
from dpllnn.settings import DEFAULT
from dpllnn.spec import Case, Disjunct, Spec
from graph_models import conv_net, pool_net, resnet
from naive import exhaustive_margin, random_network

MARGIN = 1e-6


def _graph(model, tmp_path, name):
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(model, path)
    return network_or_graph(model, path)


def _spec(rng, g, spread=(-15, 10)):
    n = g.n_inputs
    centre = rng.uniform(-1, 1, n)
    half = rng.uniform(0.05, 0.6, n)
    lb, ub = centre - half, centre + half
    Y = g.forward(lb + rng.random((512, n)) * (ub - lb))
    m = int(rng.integers(1, 3))
    C = rng.normal(size=(m, g.n_outputs))
    proj = Y @ C.T
    q = rng.uniform(*spread)
    lo, hi = proj.min(0), proj.max(0)
    d = np.percentile(proj, max(q, 0), axis=0) + min(q, 0) / 100 * (hi - lo)
    return Spec([Case(lb, ub, [Disjunct(C, d)])], n, g.n_outputs)


def _milp(g, case):
    lbd = compute_bounds(pack(g), case.lb, case.ub, None, "crown")
    dj = case.disjuncts[0]
    return GraphMILP(g, case.lb, case.ub, lbd.lb, lbd.ub, dj.C, dj.d)


def _check_point(g, case, x):
    assert case.contains(x), "MILP point outside the box"
    y = g.forward(x)
    dj = case.disjuncts[0]
    # the MILP's rows are loosened by 1e-6 relative: its point may miss by that much
    assert np.all(dj.C @ y - dj.d <= 1e-4 * (1 + np.abs(dj.C) @ np.abs(y))), \
        "MILP point does not reach the disjunct"


def _models(rng, seed):
    kind = seed % 4
    if kind == 0:
        return conv_net(rng, in_shape=(1, 4, 4), channels=(2,), kernel=3, stride=1,
                        pads=(0, 0, 0, 0), n_out=3)
    if kind == 1:
        return conv_net(rng, in_shape=(1, 4, 4), channels=(2, 2), kernel=2, stride=2,
                        pads=(0, 0, 0, 0), n_out=2)
    if kind == 2:
        return conv_net(rng, in_shape=(1, 4, 4), channels=(2, 2), kernel=3, stride=2,
                        pads=(1, 1, 1, 1), n_out=3)
    return None


def test_milp_matches_exhaustive_oracle(tmp_path):
    """infeasible exactly when the oracle's margin is positive, and a feasible point reaches the
    disjunct; tiny conv nets (one and two ReLU layers) and dense chains."""
    checked = {"infeasible": 0, "feasible": 0}
    for seed in range(24):
        rng = np.random.default_rng(9100 + seed)
        model = _models(rng, seed)
        if model is None:
            net = random_network(rng, n_in=3, hidden=[(5,), (4, 4), (3, 3, 3)][seed % 3], n_out=2)
            g = graph_from_network(net)
        else:
            g = _graph(model, tmp_path, f"m{seed}")
            net = network_from_graph(g)
        assert net.n_relus <= 12
        spec = _spec(rng, g)
        case = spec.cases[0]
        t = exhaustive_margin(net, case, case.disjuncts[0])
        if abs(t) <= MARGIN:
            continue
        status, x = _milp(g, case).refute(20.0)
        if t > 0:
            assert status == "infeasible", f"seed {seed}: margin {t}, MILP {status}"
        else:
            assert status == "feasible", f"seed {seed}: margin {t}, MILP {status}"
            _check_point(g, case, x)
        checked[status] += 1
    assert min(checked.values()) >= 5, checked


@pytest.mark.parametrize("kind", ["resnet", "maxpool", "avgpool"])
def test_milp_never_refutes_a_sampled_violation(kind, tmp_path):
    """Graphs with joins and lowered MaxPool: where sampling finds a violation the MILP finds
    a point too, and its points reach the disjunct; some disjuncts are refuted."""
    seen = set()
    for seed in range(5 if kind == "resnet" else 10):
        rng = np.random.default_rng(9300 + seed)
        if kind == "resnet":
            model = resnet(rng, in_shape=(1, 4, 4), width=2, blocks=1)
        else:
            model = pool_net(rng, kind=kind[:3], in_shape=(1, 4, 4), channels=2)
        g = _graph(model, tmp_path, f"{kind}{seed}")
        spec = _spec(rng, g, spread=(-60, 3))
        case = spec.cases[0]
        X = case.lb + rng.random((20000, g.n_inputs)) * (case.ub - case.lb)
        violated = bool(np.any(case.disjuncts[0].margin(g.forward(X)) <= 0))
        status, x = _milp(g, case).refute(20.0)
        assert status != "unknown", f"{kind} seed {seed}: no answer on a tiny net"
        if violated:
            assert status == "feasible", f"{kind} seed {seed}: sampled violation, MILP {status}"
        if status == "feasible":
            _check_point(g, case, x)
        seen.add(status)
    assert seen == {"feasible", "infeasible"}, seen


def test_milp_checks_its_inputs():
    rng = np.random.default_rng(3)
    g = graph_from_network(random_network(rng, n_in=2, hidden=(3,), n_out=2))
    lb, ub = -np.ones(2), np.ones(2)
    L, U = -np.ones(3), np.ones(3)
    C, d = np.ones((1, 2)), np.zeros(1)
    with pytest.raises(ValueError, match="box"):
        GraphMILP(g, lb[:1], ub[:1], L, U, C, d)
    with pytest.raises(ValueError, match="ReLUs"):
        GraphMILP(g, lb, ub, L[:2], U[:2], C, d)
    with pytest.raises(ValueError, match="above"):
        GraphMILP(g, lb, ub, U + 1, U, C, d)
    with pytest.raises(ValueError, match="outputs"):
        GraphMILP(g, lb, ub, L, U, np.ones((1, 3)), d)
    assert milp_size(g, L, U) == (2 + 3 + 3 + 2 + 3, 3)


def test_unstable_depth(tmp_path):
    rng = np.random.default_rng(5)
    g = graph_from_network(random_network(rng, n_in=2, hidden=(3, 2), n_out=2))
    stable = np.array([1.0, 1.0, 1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0, 2.0, 2.0])
    assert unstable_depth(g, *stable) == 0
    L, U = stable[0].copy(), stable[1]
    L[1] = -1.0                                  # layer 0 only
    assert unstable_depth(g, L, U) == 1
    L[4] = -1.0                                  # layer 0 and layer 1: one path holds both
    assert unstable_depth(g, L, U) == 2
    L[1] = 1.0                                   # layer 1 only
    assert unstable_depth(g, L, U) == 1
    # a residual graph: the depth counts ReLU nodes along a path, not ReLU nodes in all
    gr = _graph(resnet(rng, in_shape=(1, 4, 4), width=2, blocks=1), tmp_path, "r")
    n = gr.n_relus
    assert unstable_depth(gr, -np.ones(n), np.ones(n)) == gr.n_hidden_layers
    off = gr.layer_offsets
    L = np.ones(n)
    L[off[1]] = -1.0
    assert unstable_depth(gr, L, 2 * np.ones(n)) == 1


def _one_layer_unsat(seed):
    """A random one-hidden-layer net, a disjunct, its exhaustive margin and its root
    alpha-CROWN bound (an oracle-refuted disjunct alpha-CROWN leaves open is one only the MILP
    stage or the search can decide)."""
    rng = np.random.default_rng(seed)
    net = random_network(rng, n_in=4, hidden=(10,), n_out=3)
    spec = _spec(rng, graph_from_network(net), spread=(-8, -0.5))
    case = spec.cases[0]
    t = exhaustive_margin(net, case, case.disjuncts[0])
    dj = case.disjuncts[0]
    lbd = alpha_crown(pack(net), case.lb, case.ub, None, dj.C, dj.d)
    return net, spec, t, float(np.max(lbd.obj_lower))


def test_verify_root_milp_stage():
    """verify's root MILP stage proves one-layer properties CROWN leaves open (reason and
    stats say so), agrees with the oracle, and is skipped when switched off."""
    on = off = 0
    for seed in range(400, 600):
        net, spec, t, alpha = _one_layer_unsat(seed)
        if not (t > 1e-4 and alpha <= 0):
            continue
        res = dpllnn.verify(net, spec, timeout_s=20, workers=1, mode="cdcl")
        assert res.verdict is Verdict.UNSAT, f"seed {seed}: {res.verdict} (margin {t})"
        if res.stats.get("milp_refuted"):
            on += 1
            assert "MILP" in res.reason
        cfg = dataclasses.replace(DEFAULT, cdcl=dataclasses.replace(DEFAULT.cdcl,
                                                                     root_milp=False))
        res = dpllnn.verify(net, spec, timeout_s=20, workers=1, mode="cdcl", settings=cfg)
        assert res.verdict is Verdict.UNSAT and "milp_s" not in res.stats
        off += 1
        if on >= 3:
            break
    assert on >= 3, f"the MILP stage proved {on} of {off} properties"


def _child_refute(q, g, case):
    q.put(_milp(g, case).refute(10.0)[0])


def test_milp_runs_in_a_forked_child():
    """A forked process inherits HiGHS's thread scheduler without its threads: a MILP run in
    the parent and then in a forked child (the soundness campaign's process pool) hung in the
    child until the scheduler was made per process."""
    import multiprocessing as mp

    rng = np.random.default_rng(9300)
    g = graph_from_network(random_network(rng, n_in=3, hidden=(6, 6), n_out=2))
    case = _spec(rng, g, spread=(-60, 3)).cases[0]
    first = _milp(g, case).refute(10.0)[0]
    assert first in ("feasible", "infeasible")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_refute, args=(q, g, case))
    p.start()
    p.join(60)
    hung = p.is_alive()
    if hung:
        p.kill()
        p.join()
    assert not hung, "the MILP hung in a forked child"
    assert q.get(timeout=5) == first
