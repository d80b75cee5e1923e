"""Parallel search (dpllnn.search.portfolio): agreement with the sequential search and with the
exhaustive oracle, exact cube covers, and no surviving worker after a timeout."""
from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import dpllnn
from dpllnn.io.onnx_export import to_onnx
from dpllnn.result import Verdict
from dpllnn.bounds import pack
from dpllnn.search.inputsplit import search_case
from dpllnn.settings import DEFAULT
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


@pytest.mark.parametrize("mode,cdcl_parallel", [("inputsplit", "portfolio"), ("cdcl", "portfolio"),
                                                ("cdcl", "cubes"), ("cdcl", "hybrid")])
def test_two_workers_agree_with_one_and_with_oracle(mode, cdcl_parallel):
    s = replace(DEFAULT, parallel=replace(DEFAULT.parallel, scheme=cdcl_parallel))
    for net, spec, truth in _instances(12):
        r1 = dpllnn.verify(net, spec, timeout_s=30, workers=1, mode=mode, falsify_s=0.0,
                           settings=s)
        r2 = dpllnn.verify(net, spec, timeout_s=30, workers=2, mode=mode, falsify_s=0.0,
                           settings=s)
        for r in (r1, r2):
            assert r.verdict.value in (truth, "unknown", "timeout"), (truth, r)
            if r.verdict is Verdict.SAT:
                assert check_counterexample(net, spec, r.counterexample.x) is not None
        if r1.verdict.definitive and r2.verdict.definitive:
            assert r1.verdict == r2.verdict
        assert r1.verdict.definitive, r1  # tiny instances: the sequential search decides them
        assert not mp.active_children()


class _GiveAlways:
    """A work-sharing stub: asks for boxes at every chance, keeps what it is given."""

    def __init__(self, limit):
        self.parts, self.limit = [], limit

    def wants(self):
        return len(self.parts) < self.limit

    def give(self, part):
        self.parts.append(part)


def test_shared_boxes_together_decide_like_the_sequential_search():
    """Handing over half the open boxes (inputsplit ``share``/``start_pool``) loses none: the
    donor's boxes plus every handed-over part, each searched on its own (and sharing again), give
    the sequential verdict; the handed-over parts are sub-boxes of the case's box."""
    n_shared = 0
    rng = np.random.default_rng(7)
    for _ in range(12):
        net = random_network(rng, 3, (12, 12), 3)
        spec = random_spec(rng, net, 1, 2)
        packed = pack(net)
        for ci, case in enumerate(spec.cases):
            idx = list(range(len(case.disjuncts)))
            seq, _ = search_case(net, spec, ci, idx, packed=packed,
                                 deadline=time.monotonic() + 30, seed=0, stats={})
            verdicts, todo = [], [None]
            while todo:
                start = todo.pop()
                share = _GiveAlways(limit=2)
                v, cex = search_case(net, spec, ci, idx, packed=packed,
                                     deadline=time.monotonic() + 30, seed=0, stats={},
                                     share=share, start_pool=start)
                verdicts.append(v)
                if cex is not None:
                    assert check_counterexample(net, spec, cex.x) is not None
                for part in share.parts:
                    assert np.all(part["lo"] >= case.lb) and np.all(part["hi"] <= case.ub)
                    todo.append(part)
                n_shared += len(share.parts)
            combined = Verdict.combine(verdicts)
            if seq is Verdict.UNSAT:
                assert combined is Verdict.UNSAT
            if Verdict.SAT in verdicts:
                assert seq is not Verdict.UNSAT
    assert n_shared > 0  # the instances were big enough for boxes to be handed over


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


def test_phase_cubes_are_all_sign_patterns_of_distinct_unstable_neurons():
    from dpllnn.bounds import compute_bounds
    from dpllnn.search.portfolio import phase_cubes
    rng = np.random.default_rng(3)
    net = random_network(rng, 4, (10, 10), 3)
    spec = random_spec(rng, net, 1, 2)
    case = spec.cases[0]
    packed = pack(net)
    cubes = phase_cubes(packed, case, list(range(len(case.disjuncts))), 8)
    unstable = set(np.flatnonzero(compute_bounds(packed, case.lb, case.ub, None, "crown").unstable))
    k = min(3, len(unstable))
    assert len(cubes) == 2 ** k
    neurons = {abs(l) - 1 for l in cubes[0]}
    assert len(neurons) == k and neurons <= unstable
    assert len({tuple(sorted(c)) for c in cubes}) == 2 ** k  # every sign pattern once
    for c in cubes:
        assert {abs(l) - 1 for l in c} == neurons


def test_falsification_task_reports_a_valid_counterexample():
    # the worker's falsification task (parallel CDCL runs half the up-front attack there):
    # run the worker loop in this process on a queue holding that task, then the stop sentinel
    import queue

    from dpllnn.search.workers import Falsified, FalsifyTask, WorkerPool, worker_loop
    from test_attack import spike_network, spike_spec
    net, spec = spike_network(k=5.0), spike_spec()
    tasks, results = queue.Queue(), queue.Queue()
    tasks.put(FalsifyTask(2.0, {}, 7))
    tasks.put(None)
    import signal
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:  # worker_loop installs a worker's signal handlers: give this process its own back
        worker_loop(0, WorkerPool(net, spec, "cdcl", tasks, results, time.monotonic() + 30.0))
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    msg = results.get_nowait()
    assert isinstance(msg, Falsified) and msg.error is None and msg.x is not None
    assert check_counterexample(net, spec, msg.x) is not None


def _cdcl_cases(n_nets):
    """(net, spec, case index, open disjuncts, oracle verdict) of random tiny CDCL cases."""
    rng = np.random.default_rng(99)
    out = []
    while len(out) < n_nets:
        net = random_network(rng, 3, (4, 4), 3)
        spec = random_spec(rng, net, 1, 2)
        margins = spec_margins(net, spec)
        if min(abs(m) for m in margins) < 1e-4:
            continue
        truth = Verdict.SAT if any(m <= 0 for m in margins) else Verdict.UNSAT
        out.append((net, spec, 0, list(range(len(spec.cases[0].disjuncts))), truth))
    return out


@pytest.mark.parametrize("interrupt", [True, False])
def test_lemmas_from_proved_cubes_keep_the_verdict(interrupt):
    """Hybrid CDCL: the negated cubes that a cube search proved, handed to a whole-case search
    through ``poll``, are valid lemmas: the verdict is the oracle's; when every cube is proved
    (unsat cases), the lemmas alone refute the case."""
    from dpllnn.search.cdcl import search_case as cdcl_case
    from dpllnn.search.portfolio import phase_cubes
    cdcl = DEFAULT.cdcl
    cfg = replace(cdcl, theory=replace(cdcl.theory, lemma_interrupt=interrupt, poll_s=0.0))
    n_fed = n_all = 0
    for net, spec, ci, idx, truth in _cdcl_cases(8):
        packed = pack(net)
        lemmas = []
        for cube in phase_cubes(packed, spec.cases[ci], idx, 8):
            v, _ = cdcl_case(net, spec, ci, idx, packed=packed, deadline=time.monotonic() + 30,
                             seed=0, stats={}, root=None, cube=cube)
            if v is Verdict.UNSAT and cube:
                lemmas.append([-c for c in cube])
        calls = []

        def poll():
            calls.append(1)
            return list(lemmas) if len(calls) == 1 else []
        stats: dict = {}
        v, cex = cdcl_case(net, spec, ci, idx, packed=packed, deadline=time.monotonic() + 30,
                           seed=0, stats=stats, root=None, poll=poll, settings=cfg)
        assert v is truth, (v, truth)
        if cex is not None:
            assert check_counterexample(net, spec, cex.x) is not None
        if calls and lemmas:
            n_fed += 1
            # imported when the solver stops for them, else at the next restart (if any)
            assert stats["lemmas_imported"] == (len(lemmas) if interrupt else 0) or \
                stats["lemmas_imported"] == len(lemmas)
            if interrupt and truth is Verdict.UNSAT:
                n_all += len(lemmas) == len(phase_cubes(packed, spec.cases[ci], idx, 8))
    assert n_fed > 0
    if interrupt:
        assert n_all > 0  # some case was refuted by the cubes' lemmas


def test_a_settled_case_stops_the_search():
    """``poll`` returning None (the case was settled by another worker) stops the search at its
    first poll with ``unknown``, never a verdict of its own."""
    from dpllnn.search.cdcl import search_case as cdcl_case
    n_polled = 0
    for net, spec, ci, idx, truth in _cdcl_cases(8):
        calls = []

        def poll():
            calls.append(1)
            return None
        stats: dict = {}
        v, cex = cdcl_case(net, spec, ci, idx, packed=pack(net), deadline=time.monotonic() + 30,
                           seed=0, stats=stats, root=None, poll=poll)
        if calls:  # (a case refuted at the root never reaches propagate)
            n_polled += 1
            assert v is Verdict.UNKNOWN and cex is None and len(calls) == 1
            assert stats["nodes"] == 0
    assert n_polled > 0


def test_attack_beside_the_root_bounds_finds_a_valid_counterexample():
    """Parallel CDCL runs the rest of the up-front attack in a forked process while the parent
    bounds the root: its counterexample is re-validated, and stop() leaves no process."""
    from dpllnn.search.verify import _AttackBeside
    from test_attack import spike_network, spike_spec
    net, spec = spike_network(k=5.0), spike_spec()
    b = _AttackBeside(net, spec, 2.0, 7, time.monotonic() + 30)
    try:
        cex = b.result()
    finally:
        b.stop()
    assert cex is not None and check_counterexample(net, spec, cex.x) is not None
    assert not mp.active_children()


def test_lender_gives_idle_cores_to_the_running_search():
    """``Lender``: a search takes ``workers // busy`` kernel threads, and one again when the
    other workers are busy."""
    from dpllnn.bounds.threads import kernel_threads, set_kernel_threads
    from dpllnn.search.workers import Lender
    busy = mp.Value("i", 1)
    lender = Lender(busy, 2)
    try:
        lender.update()
        assert lender.threads == 2 and kernel_threads() == 2
        busy.value = 2
        lender.update()
        assert lender.threads == 1 and kernel_threads() == 1
    finally:
        set_kernel_threads(1)


def test_hybrid_without_cube_time_still_decides():
    """Hybrid CDCL with no time for cubes (``hybrid_cube_s = 0``): every cube stops at once
    with a time-out, and the whole-case member (on the lent core) still gives the oracle's
    verdict."""
    s = replace(DEFAULT, parallel=replace(DEFAULT.parallel, scheme="hybrid", hybrid_cube_s=0.0))
    for net, spec, truth in _instances(6):
        r = dpllnn.verify(net, spec, timeout_s=30, workers=2, mode="cdcl", falsify_s=0.0,
                          settings=s)
        assert r.verdict.value == truth, (truth, r)
        if r.verdict is Verdict.SAT:
            assert check_counterexample(net, spec, r.counterexample.x) is not None
    assert not mp.active_children()


def test_a_dead_worker_gives_unknown(monkeypatch):
    """A worker process that dies with its task open (a crash, the OOM killer) turns the verdict
    into ``unknown`` naming the exit code, never ``unsat`` or ``timeout``."""
    import os as _os
    from dpllnn.search import workers
    if mp.get_start_method(allow_none=True) not in (None, "fork") or \
            "fork" not in mp.get_all_start_methods():
        pytest.skip("needs forked workers (they inherit the patched task runner)")

    def die(*a, **k):
        _os._exit(3)
    monkeypatch.setattr(workers, "run_task", die)
    net, spec, truth = _instances(1)[0]
    # The root MILP stage would decide this small case before any worker starts.
    s = replace(DEFAULT, cdcl=replace(DEFAULT.cdcl, root_milp=False))
    r = dpllnn.verify(net, spec, timeout_s=30, workers=2, mode="cdcl", falsify_s=0.0, settings=s)
    if r.reason == "root bounds" or "falsification" in (r.reason or ""):
        pytest.skip("decided before the search")
    assert r.verdict is Verdict.UNKNOWN, r
    assert "exit codes [3]" in r.reason
    assert not mp.active_children()


def test_stop_processes_skips_unstarted_ones():
    """An exception while the workers are being started leaves some never started:
    ``stop_processes`` stops the started ones and leaves the others alone (no AssertionError
    from joining an unstarted process, which turned a memory-limit stop into an internal
    error)."""
    from dpllnn.search.workers import stop_processes
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    started = ctx.Process(target=time.sleep, args=(30,), daemon=True)
    never = ctx.Process(target=time.sleep, args=(30,), daemon=True)
    started.start()
    stop_processes([started, never])
    assert not started.is_alive() and never.pid is None
    assert not mp.active_children()
