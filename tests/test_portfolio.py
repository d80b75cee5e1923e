"""Parallel search (dpllnn.search.portfolio): agreement with the sequential search and with the
exhaustive oracle, exact cube covers, and no surviving worker after a timeout."""
from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import dpllnn
from dpllnn.io.onnx_export import to_onnx
from dpllnn.result import Verdict
from dpllnn.search.portfolio import make_cubes
from dpllnn.spec import Case, Disjunct
from dpllnn.validate import check_counterexample

from naive import random_network, random_spec, spec_margins

_TMP = Path(tempfile.mkdtemp(prefix="dpllnn_portfolio_"))


def _instances(n, n_in_max=4):
    """Seeded random tiny instances whose exact margins are all away from 0 (unambiguous)."""
    rng = np.random.default_rng(1234)
    out = []
    while len(out) < n:
        net = random_network(rng, int(rng.integers(2, n_in_max + 1)),
                             tuple(int(h) for h in rng.integers(2, 4, size=rng.integers(1, 3))),
                             int(rng.integers(2, 4)))
        spec = random_spec(rng, net, int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        margins = spec_margins(net, spec)
        if min(abs(m) for m in margins) < 1e-4:
            continue
        path = _TMP / f"net{len(out)}.onnx"
        to_onnx(net, path, dtype="float64")
        net.source = str(path)
        out.append((net, spec, "sat" if any(m <= 0 for m in margins) else "unsat"))
    return out


@pytest.mark.parametrize("mode", ["inputsplit", "cdcl"])
def test_two_workers_agree_with_one_and_with_oracle(mode):
    for net, spec, truth in _instances(12):
        r1 = dpllnn.verify(net, spec, timeout_s=30, workers=1, mode=mode, falsify_s=0.0)
        r2 = dpllnn.verify(net, spec, timeout_s=30, workers=2, mode=mode, falsify_s=0.0)
        for r in (r1, r2):
            assert r.verdict.value in (truth, "unknown", "timeout"), (truth, r)
            if r.verdict is Verdict.SAT:
                assert check_counterexample(net, spec, r.counterexample.x) is not None
        if r1.verdict.definitive and r2.verdict.definitive:
            assert r1.verdict == r2.verdict
        assert r1.verdict.definitive, r1  # tiny instances: the sequential search decides them
        assert not mp.active_children()


def test_cubes_cover_the_box_exactly():
    rng = np.random.default_rng(0)
    net = random_network(rng, 3, (4,), 2)
    case = Case(np.array([-1.0, 0.0, 2.0]), np.array([1.0, 0.5, 2.0]),
                [Disjunct(np.eye(2)[:1], np.zeros(1))])
    cubes = make_cubes(net, case, 8)
    vol = lambda lb, ub: float(np.prod(np.where(ub > lb, ub - lb, 1.0)))
    assert len(cubes) == 8
    assert np.isclose(sum(vol(lb, ub) for lb, ub in cubes), vol(case.lb, case.ub))
    for lb, ub in cubes:
        assert np.all(lb >= case.lb) and np.all(ub <= case.ub) and np.all(lb <= ub)
    pts = rng.uniform(case.lb, case.ub, size=(500, 3))
    inside = [sum(np.all((p >= lb) & (p <= ub)) for lb, ub in cubes) for p in pts]
    assert min(inside) >= 1  # every point lies in some cube


def test_no_worker_survives_a_timeout(bench_root):
    folder = bench_root / "vnncomp2021" / "acasxu"
    net = dpllnn.load_network(folder / "ACASXU_run2a_3_3_batch_2000.onnx")
    spec = dpllnn.load_spec(folder / "prop_2.vnnlib", net.n_inputs, net.n_outputs)
    t0 = time.monotonic()
    r = dpllnn.verify(net, spec, timeout_s=4.0, workers=2, mode="inputsplit")
    elapsed = time.monotonic() - t0
    assert r.verdict in (Verdict.TIMEOUT, Verdict.UNSAT)  # known answer: unsat
    assert elapsed < 4.0 + 1.5, elapsed
    time.sleep(0.2)
    assert not mp.active_children()
