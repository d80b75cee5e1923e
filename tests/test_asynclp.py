"""Relaxation LPs on a background thread (dpllnn.search.asynclp) inside the CDCL search.

The search takes the asynchronous path when its process has kernel threads to spare
(``set_kernel_threads(2)``, as the parallel search's lender does); verdicts must still match the
exhaustive oracle, the thread's answers must equal the synchronous LP's, and a failing thread
must end in an exception, never a verdict.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from dpllnn.bounds import compute_bounds, pack
from dpllnn.bounds.threads import kernel_threads, lent_threads, set_kernel_threads
from dpllnn.lp.layered import LayeredLP
from dpllnn.result import Verdict
from dpllnn.search.asynclp import AsyncRelaxationLP, LPJob
from dpllnn.search.cdcl import search_case
from dpllnn.settings import DEFAULT
from dpllnn.validate import check_counterexample
from naive import exhaustive_margin, one_case_problem

MARGIN = 1e-6


def _search(seed, settings=None):
    """One oracle-sized problem searched by ``search_case`` (with CdclSettings ``settings``):
    ``(net, spec, verdict, cex, stats)``."""
    net, spec = one_case_problem(seed)
    case = spec.cases[0]
    stats = {}
    v, cex = search_case(net, spec, 0, list(range(len(case.disjuncts))), packed=pack(net),
                         deadline=time.monotonic() + 30, seed=seed, stats=stats, root=None,
                         settings=settings)
    return net, spec, v, cex, stats


@pytest.fixture
def two_threads():
    set_kernel_threads(2)
    yield
    set_kernel_threads(1)


def test_search_with_background_lp_matches_exhaustive(two_threads):
    assert lent_threads() == 2
    jobs = decided = n_unsat = 0
    for seed in range(30):
        net, spec, v, cex, stats = _search(seed)
        case = spec.cases[0]
        jobs += stats["lp_async_jobs"]
        assert kernel_threads() == 2, "the core reserved for the LP thread was not given back"
        margins = [exhaustive_margin(net, case, dj) for dj in case.disjuncts]
        if min(abs(m) for m in margins) <= MARGIN:
            continue
        if v is Verdict.SAT:
            assert check_counterexample(net, spec, cex.x, use_onnxruntime=False) is not None
            assert min(margins) <= 0
        else:
            assert v is Verdict.UNSAT, (seed, v, margins, stats)
            assert min(margins) > 0
            n_unsat += 1
        decided += 1
    assert decided >= 20 and n_unsat >= 5, (decided, n_unsat)
    assert jobs > 0, "no relaxation LP ran on the background thread"
    assert not [t for t in threading.enumerate() if t.name == "relaxation-lp"]


def _layered(seed):
    net, spec = one_case_problem(seed)
    case = spec.cases[0]
    packed = pack(net)
    C, d, rows = case.stack(list(range(len(case.disjuncts))))
    lbd = compute_bounds(packed, case.lb, case.ub, None, "crown")
    llp = LayeredLP(net, C, d, case.lb, case.ub, lbd.lb, lbd.ub)
    return net, packed, case, rows, llp, lbd


@pytest.mark.parametrize("seed", range(6))
def test_background_answers_equal_synchronous(seed, two_threads):
    net, packed, case, rows, llp, lbd = _layered(seed)
    rng = np.random.default_rng(seed)
    lock = threading.Lock()
    alp = AsyncRelaxationLP(llp, lock)
    try:
        for _ in range(4):
            # a random partial phase assignment over the unstable neurons, with its own bounds
            ph = np.zeros(packed.n_relus, dtype=np.int8)
            unst = np.flatnonzero((lbd.lb < 0) & (lbd.ub > 0))
            pick = unst[rng.random(unst.size) < 0.5]
            ph[pick] = rng.choice([-1, 1], size=pick.size).astype(np.int8)
            b = compute_bounds(packed, case.lb, case.ub, ph, "crown")
            if b.infeasible:
                continue
            todo = [(i, (rows[i], rows[i + 1])) for i in range(len(case.disjuncts))]
            sync = []
            for i, rr in todo:
                llp.set_time_limit(10.0)
                sync.append(llp.solve(ph, b.lb, b.ub, rr, mode="refute")[0])
            job = LPJob(ph.copy(), b.lb.copy(), b.ub.copy(), todo, 10.0,
                        time.monotonic() + 60, stop_first=False)
            with lock:      # the LP thread waits for the lock, so the job cannot end meanwhile
                assert alp.submit(job)
                assert alp.busy() and kernel_threads() == 1     # one core left to the kernels
                assert not alp.submit(job)                       # one job at a time
            t = time.monotonic()
            got = []
            while not got and time.monotonic() - t < 30:
                got = alp.finished()
                time.sleep(0.005)
            assert got == [job] and job.error is None
            assert [o[1] for o in job.out] == sync
            assert kernel_threads() == 2
    finally:
        alp.close()
    assert kernel_threads() == 2


def test_failing_thread_raises_instead_of_a_verdict(two_threads, monkeypatch):
    """An exception on the LP thread stops the search with RuntimeError (the parallel search
    turns a task's exception into ``unknown``), never into unsat."""
    def boom(self, *a, **k):
        if threading.current_thread().name == "relaxation-lp":
            raise ValueError("injected LP failure")
        return orig(self, *a, **k)
    orig = LayeredLP.solve
    monkeypatch.setattr(LayeredLP, "solve", boom)
    raised = 0
    for seed in range(12):
        try:
            _search(seed)
        except RuntimeError as e:
            assert "injected LP failure" in str(e)
            raised += 1
    assert raised > 0
    assert kernel_threads() == 2
    assert not [t for t in threading.enumerate() if t.name == "relaxation-lp"]


def test_background_lp_share_caps_the_jobs(two_threads, monkeypatch):
    """``TheorySettings.async_lp_share`` bounds the background LP's share of the wall time: at 0 a search runs
    its first job and, once that job's time is collected, no other; at 1 (never binding: the LP
    cannot take more than the wall time) every eligible node gets one.  The jobs run at once on
    the calling thread here, so the thread is never busy and only the cap limits them; verdicts
    stay exact either way."""
    def run_now(self, job):
        self._solve(job)
        self._done.append(job)
        return True

    monkeypatch.setattr(AsyncRelaxationLP, "submit", run_now)
    runs = {}
    for share in (1.0, 0.0):
        cfg = replace(DEFAULT.cdcl, theory=replace(DEFAULT.cdcl.theory, async_lp_share=share))
        jobs = []
        for seed in range(12):
            net, spec, v, _, stats = _search(seed, cfg)
            case = spec.cases[0]
            margins = [exhaustive_margin(net, case, dj) for dj in case.disjuncts]
            if min(abs(m) for m in margins) > MARGIN:
                assert v is (Verdict.SAT if min(margins) <= 0 else Verdict.UNSAT), (seed, v)
            jobs.append(stats["lp_async_jobs"])
        runs[share] = jobs
    assert max(runs[0.0]) <= 1, runs
    assert max(runs[1.0]) > 2, runs
