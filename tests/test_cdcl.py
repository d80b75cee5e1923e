"""Hidden-phase CDCL (dpllnn.search.cdcl / theory / propagator / decide).

Soundness oracle: tests/naive.py's exhaustive phase enumeration + scipy LP.  A ``sat`` answer is
checked by exact float64 replay of its counterexample (that is a proof by itself); an ``unsat``
answer must agree with ``exhaustive_decide``; ``unknown``/``timeout`` is a failure unless some
exhaustive margin is within LP tolerance of 0.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dpllnn
from dpllnn.bounds import pack
from dpllnn.result import Verdict
from dpllnn.search.cdcl import luby, search_case
from dpllnn.validate import check_counterexample
from naive import (exhaustive_decide, exhaustive_margin, one_case_problem, random_network,
                   random_spec, spec_margins)

from conftest import read_instances, refdata_root

MARGIN = 1e-6
_REACHED = {"cdcl": 0, "examples": 0}


def test_luby():
    assert [luby(i) for i in range(1, 16)] == [1, 1, 2, 1, 1, 2, 4, 1, 1, 2, 1, 1, 2, 4, 8]


def _tiny_problem(seed, n_in, hidden, n_cases, n_disj, max_rows=2):
    rng = np.random.default_rng(seed)
    net = random_network(rng, n_in=n_in, hidden=hidden, n_out=3)
    spec = random_spec(rng, net, n_cases=n_cases, n_disjuncts=n_disj, max_rows=max_rows)
    return net, spec


def _check_against_oracle(net, spec, verdict, cex, use_ort=False):
    if verdict is Verdict.SAT:
        assert cex is not None
        assert check_counterexample(net, spec, cex.x, use_onnxruntime=use_ort) is not None
        return
    if verdict is Verdict.UNSAT:
        truth, x = exhaustive_decide(net, spec)
        if truth == "sat":   # the oracle's point may sit on an LP tolerance boundary
            assume(min(abs(m) for m in spec_margins(net, spec)) > MARGIN)
        assert truth == "unsat", "cdcl said unsat on a satisfiable property"
        return
    margins = spec_margins(net, spec)
    assume(min(abs(m) for m in margins) > MARGIN)
    pytest.fail(f"cdcl gave {verdict} on a tiny problem with margins {margins}")


_hidden = st.sampled_from([(2,), (4,), (6,), (3, 3), (4, 2), (2, 4), (4, 4), (3, 2, 2), (2, 2, 2, 2),
                           (5, 3), (8,)])


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(seed=st.integers(0, 2 ** 31 - 1), n_in=st.integers(2, 6), hidden=_hidden,
       n_cases=st.integers(1, 2), n_disj=st.integers(1, 3))
def test_verify_cdcl_matches_exhaustive(seed, n_in, hidden, n_cases, n_disj):
    net, spec = _tiny_problem(seed, n_in, hidden, n_cases, n_disj)
    res = dpllnn.verify(net, spec, mode="cdcl", timeout_s=30.0, falsify_s=0.0, seed=seed % 7)
    _REACHED["examples"] += 1
    _REACHED["cdcl"] += int(res.stats.get("cdcl_calls", 0) > 0)
    _check_against_oracle(net, spec, res.verdict, res.counterexample)


def test_hypothesis_examples_reached_the_search():
    if _REACHED["examples"] == 0:
        pytest.skip("run together with test_verify_cdcl_matches_exhaustive")
    assert _REACHED["cdcl"] >= 0.2 * _REACHED["examples"], _REACHED


@pytest.mark.parametrize("seed", range(24))
def test_search_case_direct_every_disjunct_open(seed):
    """No falsification and no root refutation: the search alone decides each case."""
    net, spec = one_case_problem(seed)
    packed = pack(net)
    case = spec.cases[0]
    stats = {}
    v, cex = search_case(net, spec, 0, list(range(len(case.disjuncts))), packed=packed,
                         deadline=time.monotonic() + 30, seed=seed, stats=stats, root=None)
    assert stats["cdcl_calls"] == 1
    margins = [exhaustive_margin(net, case, dj) for dj in case.disjuncts]
    if min(abs(m) for m in margins) <= MARGIN:
        pytest.skip("margin within LP tolerance")
    if v is Verdict.SAT:
        assert check_counterexample(net, spec, cex.x, use_onnxruntime=False) is not None
        assert min(margins) <= 0
    else:
        assert v is Verdict.UNSAT, (v, margins, stats)
        assert min(margins) > 0


def test_search_case_timeout_is_honoured():
    net, spec = _tiny_problem(7, 5, (8, 8, 8), 1, 2)
    packed = pack(net)
    t = time.monotonic()
    v, _ = search_case(net, spec, 0, [0, 1], packed=packed, deadline=t + 0.3, seed=0, stats={},
                       root=None)
    assert time.monotonic() - t < 1.3
    assert v in (Verdict.SAT, Verdict.UNSAT, Verdict.TIMEOUT)
    v, _ = search_case(net, spec, 0, [0, 1], packed=packed, deadline=time.monotonic() - 1, seed=0,
                       stats={}, root=None)
    assert v is Verdict.TIMEOUT


def test_stats_keys():
    net, spec = _tiny_problem(3, 3, (4, 4), 1, 2)
    stats = {}
    search_case(net, spec, 0, [0, 1], packed=pack(net), deadline=time.monotonic() + 30, seed=0,
                stats=stats, root=None)
    for k in ("nodes", "conflicts", "learned", "implied", "restarts", "lp_calls", "time_bounds_s",
              "time_lp_s", "time_sat_s"):
        assert k in stats


@pytest.mark.parametrize("seed", range(6))
def test_onnx_round_trip_sat_validated_by_onnxruntime(tmp_path, seed):
    from dpllnn.io.onnx_export import to_onnx

    net, spec = _tiny_problem(500 + seed, 3, (4, 4), 1, 2)
    path = tmp_path / "net.onnx"
    to_onnx(net, path, dtype="float64")
    net2 = dpllnn.load_network(path)
    res = dpllnn.verify(net2, spec, mode="cdcl", timeout_s=30.0, falsify_s=0.0)
    if res.verdict is Verdict.SAT:
        assert check_counterexample(net2, spec, res.counterexample.x, use_onnxruntime=True)
    else:
        _check_against_oracle(net, spec, res.verdict, None)


def test_vnncomp2021_test_instances(bench_root):
    folder = bench_root / "vnncomp2021" / "test"
    expected = {"test_nano": "unsat", "test_tiny": "unsat", "test_small": "unsat",
                "test_sat": "sat", "test_unsat": "unsat"}
    for onnx_path, vnnlib_path, _ in read_instances(folder):
        net = dpllnn.load_network(onnx_path)
        spec = dpllnn.load_spec(vnnlib_path, net.n_inputs, net.n_outputs)
        res = dpllnn.verify(net, spec, mode="cdcl", timeout_s=30.0)
        assert res.verdict.value == expected[onnx_path.stem], (onnx_path.name, res.reason)
        if res.verdict is Verdict.SAT:
            assert check_counterexample(net, spec, res.counterexample.x) is not None


# fast instances on mnist-net_256x2 (at least one decided inside the search, not at the root)
MNIST = [("prop_0_0.03", 20.0), ("prop_8_0.03", 20.0), ("prop_9_0.05", 20.0),
         ("prop_14_0.05", 20.0), ("prop_12_0.05", 20.0)]


def _reference(name):
    import csv

    ref = refdata_root() / "2022_mnist_fc.csv"
    with open(ref) as fh:
        for r in csv.DictReader(fh):
            if r["onnx"] == "onnx/mnist-net_256x2.onnx" and r["vnnlib"] == f"vnnlib/{name}.vnnlib":
                return r["vnncomp_result"] or r["consensus"]
    return None


@pytest.mark.parametrize("name,timeout", MNIST)
def test_mnist_fc_256x2(bench_root, name, timeout):
    folder = bench_root / "vnncomp2022" / "mnist_fc"
    if refdata_root() is None or not (folder / "onnx" / "mnist-net_256x2.onnx").exists():
        pytest.skip("mnist_fc or refdata absent")
    want = _reference(name)
    assert want in ("sat", "unsat")
    net = dpllnn.load_network(folder / "onnx" / "mnist-net_256x2.onnx")
    spec = dpllnn.load_spec(folder / "vnnlib" / f"{name}.vnnlib", net.n_inputs, net.n_outputs)
    res = dpllnn.verify(net, spec, mode="cdcl", timeout_s=timeout)
    assert res.verdict.value == want, (res.reason, res.stats)
    if res.verdict is Verdict.SAT:
        assert check_counterexample(net, spec, res.counterexample.x) is not None


@pytest.mark.parametrize("seed", range(6))
def test_fsb_picks_the_candidate_with_the_best_worse_child(seed):
    """Filtered smart branching: the chosen neuron is a free unstable one among the fsb_top best
    by BaBSR, its worse child's remaining negative bound mass is the largest among them, and
    every child bound FSB uses holds on samples of that child."""
    from dpllnn.bounds import babsr_scores
    from dpllnn.search import decide
    from dpllnn.search.theory import ReluTheory
    rng = np.random.default_rng(300 + seed)
    net = random_network(rng, n_in=4, hidden=(10, 10, 8), n_out=3)
    spec = random_spec(rng, net, n_cases=1, n_disjuncts=2)
    packed = pack(net)
    case = spec.cases[0]
    th = ReluTheory(net, spec, 0, [0, 1], packed, [packed.n_relus + 1, packed.n_relus + 2],
                    time.monotonic() + 30)
    snap = th.snaps[-1]
    lbd = snap.lbd
    unst = lbd.unstable
    if unst.sum() < 2 or snap.refuted.all():
        pytest.skip("nothing to branch on")
    br = decide.Brancher(th, "fsb")
    s = br.scores(snap)
    j = int(np.argmax(s))
    assert unst[j] and th.phase[j] == 0
    rows = [r for i in np.flatnonzero(~snap.refuted).tolist()
            for r in range(th.rows[i], th.rows[i + 1])][:4]
    base = np.where(unst, sum(babsr_scores(packed, lbd, th.C[r], float(th.d[r])) for r in rows), 0.0)
    cand = [int(c) for c in np.argsort(-base, kind="stable")[:br.fsb_top] if base[c] > 0]
    assert j in cand
    xs = np.vstack([rng.uniform(case.lb, case.ub, size=(3000, net.n_inputs)),
                    np.where(rng.random((1000, net.n_inputs)) < 0.5, case.lb, case.ub)])
    zs = np.concatenate(net.pre_activations(xs), axis=1)
    vals = net.forward(xs) @ th.C[rows].T - th.d[rows]
    from dataclasses import replace
    children = th.children_lower(lbd, cand, rows)
    masses = {}
    for k, c in enumerate(cand):
        worst = np.inf
        for side, sgn in enumerate((1, -1)):
            lo = children[k, side]
            inside = np.sign(zs[:, c]) == sgn
            assert np.all(vals[inside] >= lo - 1e-9), (c, sgn)
            worst = min(worst, float(np.minimum(lo, 0.0).sum()))
            # one pass for all children = the child's own bounds (phase set, bounds clamped)
            zl, zu, zp = lbd.z_lb.copy(), lbd.z_ub.copy(), lbd.z_phase.copy()
            zp[c] = sgn
            zl[c], zu[c] = (max(zl[c], 0.0), zu[c]) if sgn > 0 else (zl[c], min(zu[c], 0.0))
            own = th.objective_lower(replace(lbd, z_lb=zl, z_ub=zu, z_phase=zp), rows)
            np.testing.assert_allclose(lo, own, rtol=1e-9, atol=1e-9)
        masses[c] = worst
    assert masses[j] == max(masses.values())
